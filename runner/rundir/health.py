"""Health rules over a run's records, shared by triage and the dashboard banner so the two
never disagree: how long a step takes, and when a quiet log means a stalled run.

THE stall rule: a run is stalled when no log line arrived for longer than
``max(STALL_FLOOR_S, STALL_FACTOR x the expected gap between log lines)``, where the
expected gap is the median seconds per optimizer step times the median number of steps
between log lines (over the last :data:`RECENT` records). Without a step time (too few
lines), the limit is :data:`STALL_NO_BASIS_S`.

THE resume-past-the-end rule (:func:`resume_end`): a checkpoint that already reached the
``max_steps`` / ``num_train_epochs`` the config asks for trains nothing when resumed.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunedeck.runner.rundir.protocol import TRAINER_STATE
from tunedeck.runner.rundir.runs import parse_duration

STALL_FACTOR = 10            # times the expected gap between two log lines
STALL_FLOOR_S = 120.0        # ... and never less than this
STALL_NO_BASIS_S = 30 * 60.0  # too few log lines for a median
RECENT = 200                 # the records the medians look at


def _num(v: Any) -> float | None:
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return None
    try:
        return float(v)
    except OverflowError:  # an int no float holds (a corrupt log line)
        return None


def _time_of(rec: dict[str, Any]) -> float | None:
    t = _num(rec.get("timestamp"))
    return t if t is not None else parse_duration(rec.get("elapsed_time"))


def log_intervals(records: Sequence[dict[str, Any]]) -> list[float]:
    """Seconds between consecutive log lines (from timestamps, else elapsed_time)."""
    times = [t for t in (_time_of(r) for r in records) if t is not None]
    return [b - a for a, b in zip(times, times[1:], strict=False) if b > a]


def step_times(records: Sequence[dict[str, Any]]) -> list[float]:
    """Seconds per optimizer step, in log order: ``step_time`` where logged, else from the
    time and step between two log lines."""
    out: list[float] = []
    prev: tuple[float, float] | None = None
    for rec in records:
        st = _num(rec.get("step_time"))
        if st is not None and st > 0:
            out.append(st)
            continue
        step, t = _num(rec.get("current_steps")), _time_of(rec)
        if step is not None and t is not None:
            if prev is not None and step > prev[0] and t > prev[1]:
                out.append((t - prev[1]) / (step - prev[0]))
            prev = (step, t)
    return out


def steps_per_log_line(records: Sequence[dict[str, Any]]) -> float | None:
    """The median number of optimizer steps between two log lines (``logging_steps``)."""
    steps = [s for s in (_num(r.get("current_steps")) for r in records) if s is not None]
    deltas = [b - a for a, b in zip(steps, steps[1:], strict=False) if b > a]
    return statistics.median(deltas) if deltas else None


@dataclass(frozen=True)
class Stall:
    """The stall rule's answer for one run at one moment."""

    stalled: bool
    idle_s: float
    limit_s: float
    basis: str       # how the limit was found, for the user

    def describe(self) -> str:
        return f"no new log line for {self.idle_s:.0f} s ({self.basis}; limit {self.limit_s:.0f} s)"


def stall_limit(records: Sequence[dict[str, Any]]) -> tuple[float, str]:
    """The quiet time after which the run counts as stalled, and why."""
    recent = list(records[-RECENT:])
    per_step = step_times(recent)
    per_line = steps_per_log_line(recent)
    if per_step and per_line:
        med = statistics.median(per_step)
        gap = med * per_line
        return (max(STALL_FACTOR * gap, STALL_FLOOR_S),
                f"median step {med:.1f} s x {per_line:g} steps per log line")
    return STALL_NO_BASIS_S, "too few log lines for a median; using 30 min"


def stall_check(records: Sequence[dict[str, Any]], idle_s: float | None) -> Stall | None:
    """THE stall rule for an active run whose newest log line is ``idle_s`` old (None: no
    log yet, no verdict)."""
    if idle_s is None:
        return None
    limit, basis = stall_limit(records)
    return Stall(idle_s > limit, idle_s, limit, basis)


@dataclass(frozen=True)
class ResumeEnd:
    """A checkpoint that already reached the end the config asks for: a resume trains nothing."""

    checkpoint_step: int
    key: str                      # "max_steps" or "num_train_epochs": the key to raise
    message: str                  # "checkpoint-300 is already at max_steps 300"
    patch: dict[str, Any]         # a value of ``key`` that would train further


def resume_end(step: int | None, epoch: float | None, values: dict[str, Any] | Any,
               total_steps: int | None = None) -> ResumeEnd | None:
    """Whether resuming at ``step`` (``epoch``) would train nothing under ``values``.

    The one rule shared by ``tunedeck resume``'s warning, triage's "a resume would do
    nothing", the TUI's resume dialog and the trainer itself (which then does zero steps
    instead of transformers' one extra step). ``max_steps > 0`` wins over epochs, as in
    transformers; ``total_steps`` (from the log) also counts as the end of the epochs.
    """
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        return None
    raw_max = values.get("max_steps")
    try:
        max_steps = int(raw_max) if raw_max is not None else -1
    except (TypeError, ValueError):
        max_steps = -1
    if max_steps > 0:
        if step >= max_steps:
            return ResumeEnd(step, "max_steps",
                             f"checkpoint-{step} is already at max_steps {max_steps}",
                             {"max_steps": step + max_steps})
        return None
    try:
        epochs = float(values.get("num_train_epochs", 3.0))
    except (TypeError, ValueError):
        return None
    done_epochs = isinstance(epoch, (int, float)) and math.isfinite(epoch) and epoch >= epochs - 1e-6
    if done_epochs or (total_steps and step >= total_steps):
        return ResumeEnd(step, "num_train_epochs",
                         f"checkpoint-{step} already finished all {epochs:g} epochs",
                         {"num_train_epochs": float(math.floor(max(epochs, float(epoch or 0))) + 1)})
    return None


def checkpoint_state(ck: Path) -> tuple[int | None, float | None]:
    """``(global_step, epoch)`` from a checkpoint's trainer_state.json (None where unreadable)."""
    try:
        state = json.loads((ck / TRAINER_STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None, None
    if not isinstance(state, dict):
        return None, None
    step, epoch = state.get("global_step"), state.get("epoch")
    return (step if isinstance(step, int) else None,
            float(epoch) if isinstance(epoch, (int, float)) else None)


def checkpoint_resume_end(ck: Path, values: dict[str, Any] | Any) -> ResumeEnd | None:
    """:func:`resume_end` for a checkpoint directory."""
    step, epoch = checkpoint_state(ck)
    return resume_end(step, epoch, values)
