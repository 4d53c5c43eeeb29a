"""Triage of one run (diagnoses, each with ordered suggestions) and applying a suggestion's
patch as a new config file. Triage loads in the worker, not with the screen."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunedeck.runner.rundir.protocol import FROZEN_CONFIG

if TYPE_CHECKING:
    from tunedeck.runner.triage.model import Diagnosis, Suggestion

__all__ = ["Diagnosis", "Suggestion", "TriageView", "apply_suggestion", "triage"]


@dataclass(frozen=True)
class TriageView:
    run_dir: Path
    diagnoses: tuple[Diagnosis, ...]
    values: Mapping[str, Any]      # the frozen config the patches apply to
    error: str | None = None


def triage(run_dir: Path) -> TriageView:
    from tunedeck.runner import triage as triage_mod
    from tunedeck.runner.config import yamlio

    values: dict[str, Any] = {}
    with contextlib.suppress(Exception):
        values = yamlio.ConfigDoc.load(run_dir / FROZEN_CONFIG).values()
    try:
        diags = tuple(triage_mod.triage_run(run_dir))
    except Exception as exc:  # noqa: BLE001
        return TriageView(run_dir, (), values, error=f"triage failed: {exc}")
    return TriageView(run_dir, diags, values)


def apply_suggestion(run_dir: Path, suggestion: Suggestion) -> Path:
    from tunedeck.runner import triage as triage_mod

    return Path(triage_mod.apply_suggestion(run_dir, suggestion))
