"""Numbering suggestions for ``--apply N``, writing a patched copy of the frozen config, and
the JSON form of diagnoses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tunedeck.runner.config.yamlio import ConfigDoc
from tunedeck.runner.errors import RunNotFound, TunedeckError
from tunedeck.runner.fsutil import atomic_write_text
from tunedeck.runner.rundir.protocol import (
    FROZEN_CONFIG,
    LF_CONFIG,
)
from tunedeck.runner.rundir.runs import config_path_of
from tunedeck.runner.triage.model import Diagnosis, Suggestion
from tunedeck.runner.triage.suggestions import missing_requirements


def numbered(diagnoses: list[Diagnosis]) -> list[tuple[int, Diagnosis, Suggestion]]:
    """Suggestions across all diagnoses, numbered from 1 in display order (for --apply N)."""
    out = []
    n = 0
    for d in diagnoses:
        for s in d.suggestions:
            n += 1
            out.append((n, d, s))
    return out


def apply_suggestion(run_dir: str | Path, suggestion: Suggestion) -> Path:
    """Write ``config.triage-<n>.yaml`` next to the frozen config with the patch applied.

    The frozen config is never modified; comments, key order and quoting carry over.
    """
    rd = Path(run_dir)
    src = config_path_of(rd)
    if src is None:
        raise RunNotFound(f"{rd} has no {FROZEN_CONFIG} or {LF_CONFIG} to patch")
    if not suggestion.patch:
        raise TunedeckError(f"suggestion {suggestion.title!r} changes no config key",
                            hint="it is advice to act on by hand")
    doc = ConfigDoc.load(src)
    doc.apply(suggestion.patch)
    header = (f"# tunedeck triage: {suggestion.title} (guide {suggestion.guide_ref})\n"
              f"# patched copy of {src.name}; the original is unchanged\n")
    for n in range(1, 10_000):
        target = rd / f"config.triage-{n}.yaml"
        if not target.exists():
            break
    else:  # pragma: no cover - ten thousand patched configs
        raise TunedeckError(f"too many config.triage-*.yaml files in {rd}")
    atomic_write_text(target, header + doc.dumps())
    return target


def diagnoses_to_data(diagnoses: list[Diagnosis], values: Mapping[str, Any] | None = None
                      ) -> list[dict[str, Any]]:
    """Diagnoses as JSON-ready dicts; suggestions carry their --apply number and diff."""
    nums = {id(s): n for n, _, s in numbered(diagnoses)}
    out = []
    for d in diagnoses:
        dd = asdict(d)
        for sd, s in zip(dd["suggestions"], d.suggestions, strict=True):
            sd["number"] = nums[id(s)]
            sd["missing_packages"] = missing_requirements(s.patch)
            if values is not None:
                sd["diff"] = s.diff_lines(values)
        out.append(dd)
    return out
