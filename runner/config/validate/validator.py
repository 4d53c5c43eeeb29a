""":func:`validate_doc` / :func:`validate_path`: every rule table over one document, findings
sorted by place.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from tunedeck.runner.config.schema import (
    apply_defaults,
)
from tunedeck.runner.config.validate.advice import _ADVICE_RULES
from tunedeck.runner.config.validate.context import _Ctx, detect_cuda
from tunedeck.runner.config.validate.files import _FILE_RULES
from tunedeck.runner.config.validate.findings import Finding, _sorted
from tunedeck.runner.config.validate.rules import _RULES, _check_keys
from tunedeck.runner.config.yamlio import ConfigDoc
from tunedeck.runner.errors import ConfigError


def validate_doc(doc: ConfigDoc, *, check_files: bool = True, cuda_available: bool | None = None) -> list[Finding]:
    """Every finding for ``doc`` (with its overrides), sorted by position in the file."""
    cuda = detect_cuda() if cuda_available is None else cuda_available
    ctx = _Ctx(doc, check_files, cuda)
    _check_keys(ctx)
    clean = {k: v for k, v in ctx.raw.items() if k not in ctx.bad}
    ctx.v = apply_defaults(clean)
    for rule in _RULES:
        rule(ctx)
    if check_files:
        for rule in _FILE_RULES:
            rule(ctx)
    for rule in _ADVICE_RULES:
        rule(ctx)
    return _sorted(ctx.findings)


def validate_path(path: str | Path, overrides: Iterable[str] | Mapping[str, Any] = (), **kw: Any) -> list[Finding]:
    """Load and validate one file; a file that cannot be loaded gives one error finding."""
    try:
        doc = ConfigDoc.load(path, overrides)
    except ConfigError as exc:
        code = "yaml-syntax" if "YAML" in exc.bare_message else "load"
        return [Finding("error", code, exc.key, exc.bare_message, exc.hint,
                        exc.file or str(path), exc.line, exc.column)]
    return validate_doc(doc, **kw)
