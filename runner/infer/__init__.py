"""After training: one loader and the run's own template for chat, export, serve and predict.

``spec`` (no torch): :func:`resolve` a run / config / export dir to an :class:`InferSpec`.
``engine`` (torch): ``load_model``, ``format_chat``, ``generate_stream``, ``generate``.
``export``: merge adapters into the base model and write a deployable folder.
"""

from __future__ import annotations

from tunedeck.runner.infer.spec import GENERATION_KEYS, GenConfig, InferSpec, resolve

__all__ = ["GENERATION_KEYS", "GenConfig", "InferSpec", "resolve"]
