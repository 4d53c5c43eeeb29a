"""The dashboard banner's checks on the selected run: OOM, divergence, failure, stall,
disk, low GPU use. The stall rule is THE one triage uses (:mod:`tunedeck.runner.rundir.health`)."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tunedeck.runner.rundir.protocol import RunStatus

if TYPE_CHECKING:  # the checks run in the detail sampler's thread
    from tunedeck.runner.monitor.nvml import GpuSnapshot
    from tunedeck.runner.rundir.checkpoints import CheckpointInfo
    from tunedeck.runner.rundir.health import Stall
    from tunedeck.runner.rundir.runs import RunSnapshot

STALL_TAIL_BYTES = 128 * 1024  # enough records for the rule's medians
LOW_UTIL_PERCENT = 20


@dataclass(frozen=True)
class Alert:
    """A banner-worthy problem with a run (what the dashboard shows in red)."""

    kind: str   # oom | diverged | failed | lost | stalled | disk | low_util
    text: str


def _stall(run_dir: Path, run: RunSnapshot | None) -> Stall | None:
    """THE stall rule (the one triage uses) on the end of the run's log."""
    from tunedeck.runner.rundir.health import stall_check
    from tunedeck.runner.rundir.logs import read_log_records

    try:
        records = read_log_records(run_dir, tail_bytes=STALL_TAIL_BYTES).records
    except Exception:  # noqa: BLE001 - a broken log must not kill the dashboard
        return None
    return stall_check(records, run.last_log_age_s if run is not None else None)


def run_alerts(run_dir: Path, run: RunSnapshot | None, checkpoints: Sequence[CheckpointInfo],
               gpus: GpuSnapshot | None) -> tuple[Alert, ...]:
    """Cheap checks for the banner: OOM, divergence, failure, stall, disk, low GPU use."""
    if run is None:
        return ()
    out: list[Alert] = []
    status = run.status
    msg = run.message or ""
    if status is RunStatus.OOM:
        out.append(Alert("oom", "CUDA out of memory: press t for the fixes, smallest first."))
    elif status is RunStatus.DIVERGED:
        out.append(Alert("diverged", "Loss became NaN/inf: the run was stopped (t for triage)."))
    elif status in (RunStatus.FAILED, RunStatus.KILLED):
        out.append(Alert("failed", f"Run {status}: {msg or 'see the log (l)'}"))
    elif status is RunStatus.LOST:
        out.append(Alert("lost", "Supervisor vanished without a final status: the run is lost."))
    if status in (RunStatus.RUNNING, RunStatus.STARTING):
        stall = _stall(run_dir, run)
        if stall is not None and stall.stalled:
            out.append(Alert("stalled", f"No new log line for {stall.idle_s / 60:.0f} min "
                                        f"({stall.basis}): the run may be stalled."))
        with contextlib.suppress(Exception):
            from tunedeck.runner.rundir.checkpoints import disk_headroom

            head = disk_headroom(run_dir, sorted(checkpoints, key=lambda c: c.step))
            if head.low and head.message:
                out.append(Alert("disk", "Disk nearly full: " + head.message + "."))
        idx = list(run.gpus)
        if gpus is not None and gpus.available and idx:
            utils = [g.util_gpu for g in gpus.gpus if g.index in idx and g.util_gpu is not None]
            if utils and max(utils) < LOW_UTIL_PERCENT and status is RunStatus.RUNNING:
                out.append(Alert("low_util", f"GPU utilisation is {max(utils)}%: the GPUs are "
                                             "waiting (data loading? try dataloader_num_workers)."))
    return tuple(out)
