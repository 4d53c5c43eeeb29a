"""What the validator reports: :class:`Finding` (severity, key, place, message, fix) and the
summaries ``tunedeck validate`` prints.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, Literal

Severity = Literal["error", "warning", "advice"]


SEVERITIES: tuple[Severity, ...] = ("error", "warning", "advice")


MAX_SUGGESTIONS = 50  # unknown keys that get a "did you mean" (each costs a fuzzy search)


@dataclass(frozen=True)
class Finding:
    """One problem (or suggestion) about one key, with where it is."""

    severity: Severity
    code: str          # stable id: "unknown-key", "type", "range", "choice", "quant-needs-lora" ...
    key: str | None
    message: str       # one sentence
    fix: str | None
    file: str | None
    line: int | None
    column: int | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def where(self) -> str:
        if not self.file:
            return "<config>"
        if self.line is None:
            return self.file
        return f"{self.file}:{self.line}:{self.column or 1}"

    def format(self) -> str:
        """``file:line:col: error: key: message (fix: ...)``"""
        s = f"{self.where}: {self.severity}: "
        if self.key:
            s += f"{self.key}: "
        s += self.message
        if self.fix:
            s += f" (fix: {self.fix})"
        return s


def _sorted(findings: list[Finding]) -> list[Finding]:
    rank = {s: i for i, s in enumerate(SEVERITIES)}
    return sorted(
        findings,
        key=lambda f: (f.file != "command line", f.line is None, f.line or 0, f.column or 0, rank[f.severity]),
    )


# Warnings in `validate` (a config may be meant for another machine) that `tunedeck launch`
# treats as errors: on this machine the run would fail seconds after starting.
LAUNCH_BLOCKING = frozenset({"model-path-missing", "dataset-dir-path-missing"})


def summarize(findings: Iterable[Finding]) -> dict[str, int]:
    """Counts per severity: ``{"errors": n, "warnings": n, "advice": n}``."""
    counts = {"errors": 0, "warnings": 0, "advice": 0}
    for f in findings:
        counts[{"error": "errors", "warning": "warnings", "advice": "advice"}[f.severity]] += 1
    return counts


def has_errors(findings: Iterable[Finding]) -> bool:
    return any(f.severity == "error" for f in findings)
