"""Validate a config in one pass: every error, warning and piece of advice, with its place.

Severities: ``error`` (LLaMA-Factory or transformers would refuse it, or it would
fail at run time), ``warning`` (it may work but probably not as meant, or not on
this machine), ``advice`` (it departs from the guide's production recommendation,
or tunedeck passes it through unchecked). Only errors make ``tunedeck validate``
exit non-zero.

Nothing here imports torch or transformers.

By concern: :mod:`.findings`, :mod:`.values` (one value), :mod:`.context` (one pass),
:mod:`.rules` (across keys), :mod:`.files` (this machine's files), :mod:`.advice` (the
guide), :mod:`.validator` (the entry points).
"""

from __future__ import annotations

from tunedeck.runner.config.validate.context import detect_cuda
from tunedeck.runner.config.validate.files import WEIGHT_FILES, known_templates
from tunedeck.runner.config.validate.findings import (
    LAUNCH_BLOCKING,
    SEVERITIES,
    Finding,
    Severity,
    has_errors,
    summarize,
)
from tunedeck.runner.config.validate.validator import validate_doc, validate_path
from tunedeck.runner.config.validate.values import check_value

__all__ = [
    "Finding",
    "LAUNCH_BLOCKING",
    "SEVERITIES",
    "Severity",
    "WEIGHT_FILES",
    "check_value",
    "detect_cuda",
    "has_errors",
    "known_templates",
    "summarize",
    "validate_doc",
    "validate_path",
]
