"""Streaming a run's progress until it ends (``launch --follow``, ``resume --follow``).

One line per ``trainer_log.jsonl`` record on stdout, status changes on stderr;
returns the final status, which :func:`outcome_exit_code` maps to the exit
code a script can test.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from tunedeck.runner.rundir.protocol import TRAINER_LOG, RunStatus, TrainerExit

# The exit code of `--follow` for each way a run can end (same numbers as the trainer's).
OUTCOME_EXIT_CODES: dict[RunStatus, int] = {
    RunStatus.FINISHED: 0,
    RunStatus.STOPPED: int(TrainerExit.STOPPED),
    RunStatus.PREEMPTED: int(TrainerExit.PREEMPTED),
    RunStatus.DIVERGED: int(TrainerExit.DIVERGED),
    RunStatus.OOM: int(TrainerExit.OOM),
    RunStatus.FAILED: 1,
    RunStatus.KILLED: 1,
    RunStatus.LOST: 1,
}


def outcome_exit_code(status: RunStatus) -> int:
    return OUTCOME_EXIT_CODES.get(status, 1)


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    s = int(round(max(0.0, seconds)))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}"


def _f(v: Any, spec: str) -> str | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    return format(v, spec)


def progress_line(rec: dict[str, Any]) -> str:
    """``step 5/20 (25.0%)  loss 1.2345  lr 1.00e-04  eta 0:00:12`` from one log record."""
    parts = []
    cur, tot = rec.get("current_steps"), rec.get("total_steps")
    if cur is not None:
        pct = _f(rec.get("percentage"), ".1f")
        parts.append(f"step {cur}/{tot if tot is not None else '?'}" + (f" ({pct}%)" if pct else ""))
    for key, label, spec in (("loss", "loss", ".4f"), ("eval_loss", "eval_loss", ".4f"),
                             ("lr", "lr", ".2e"), ("learning_rate", "lr", ".2e"),
                             ("throughput", "tok/s", ".0f")):
        v = _f(rec.get(key), spec)
        if v is not None and not (label == "lr" and any(p.startswith("lr ") for p in parts)):
            parts.append(f"{label} {v}")
    if rec.get("remaining_time"):
        parts.append(f"eta {rec['remaining_time']}")
    return "  ".join(parts) if parts else str(rec)


def follow(
    run_dir: str | Path,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
    from_start: bool = True,
    poll: float = 0.1,
    timeout: float | None = None,
    as_json: bool = False,
) -> RunStatus:
    """Print progress until the run is no longer active; its final (computed) status.

    ``from_start=False`` skips the records already in the log (a resumed run);
    ``as_json`` prints each record as one JSON line instead of a progress line.
    A poll reads one small JSON file and stats the log (~0.1 ms), so polling ten times a
    second costs nothing and ends ``launch --follow`` within 0.1 s of the run.
    """
    import json

    from tunedeck.runner.rundir.logs import TrainerLogReader
    from tunedeck.runner.rundir.runs import computed_status, raw_manifest, run_ended

    out = out or sys.stdout
    err = err or sys.stderr
    run = Path(run_dir)
    reader = TrainerLogReader(run / TRAINER_LOG)
    if not from_start:
        reader.poll(limit=0)
    last_status: RunStatus | None = None
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        for rec in reader.poll():
            print(json.dumps(rec) if as_json else progress_line(rec), file=out, flush=True)
        m = raw_manifest(run) or {}
        status = computed_status(m) if m else RunStatus.LOST
        if status is not last_status:
            print(f"[{m.get('id', run.name)}] {status.value}", file=err, flush=True)
            last_status = status
        if not m or run_ended(m):
            for rec in reader.poll():
                print(json.dumps(rec) if as_json else progress_line(rec), file=out, flush=True)
            msg = m.get("message")
            if msg:
                print(f"[{m.get('id', run.name)}] {msg}", file=err, flush=True)
            return status
        if deadline is not None and time.monotonic() > deadline:
            return status
        time.sleep(poll)
