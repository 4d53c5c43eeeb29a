"""Stopping a run: ask its supervisor, or, when the supervisor is gone, do it ourselves.

The normal path writes the ``tunedeck_stop`` request file; the supervisor sends
SIGTERM to the trainer's group, the trainer saves a complete checkpoint at the
next step boundary and exits, the supervisor escalates to SIGKILL after the
timeout and verifies nothing of the run survives. If the supervisor itself was
killed (the run shows as ``lost``), :func:`stop_run` signals the trainer's
processes directly, each verified by its start time, and records the outcome.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from tunedeck.runner.errors import TunedeckError
from tunedeck.runner.rundir.protocol import STOP_REQUEST, TRAINER_EXIT, RunStatus

DEFAULT_TIMEOUT = 300.0
_GRACE_AFTER_TIMEOUT = 30.0  # the supervisor's SIGKILL + verification take a moment


@dataclass(frozen=True)
class StopResult:
    stopped_cleanly: bool            # stopped (not killed) with a complete checkpoint
    status: RunStatus
    checkpoint: str | None
    survivors: list[int] = field(default_factory=list)
    gpu_holders: list[tuple[int, int, int | None]] = field(default_factory=list)
    message: str = ""
    waited: bool = True


def request_stop(run_dir: Path, *, timeout: float, by: str = "tunedeck stop") -> None:
    """Write the stop request the supervisor polls for."""
    from tunedeck.runner.fsutil import atomic_write_json

    atomic_write_json(
        run_dir / STOP_REQUEST,
        {"by": by, "at": time.time(), "pid": os.getpid(), "timeout": timeout},
    )


def _checkpoint_complete(path: str | None, run_dir: Path) -> bool:
    if not path:
        return False
    from tunedeck.runner.rundir.checkpoints import checkpoint_complete

    p = Path(path)
    return checkpoint_complete(p if p.is_absolute() else run_dir / p)


def stop_run(run_dir: str | Path, *, timeout: float = DEFAULT_TIMEOUT, wait: bool = True,
             poll: float = 0.2) -> StopResult:
    """Stop the run in ``run_dir`` the way its backend does it (local supervisor, Slurm job)."""
    from tunedeck.runner.control.backends import LOCAL, backend_for, backend_name
    from tunedeck.runner.rundir.runs import raw_manifest

    raw = raw_manifest(Path(run_dir))
    if raw is not None and backend_name(raw) != LOCAL:
        result: StopResult = backend_for(raw).stop(Path(run_dir), timeout=timeout, wait=wait)
        return result
    return stop_local(run_dir, timeout=timeout, wait=wait, poll=poll)


def stop_local(run_dir: str | Path, *, timeout: float = DEFAULT_TIMEOUT, wait: bool = True,
               poll: float = 0.2) -> StopResult:
    """Stop a local run; with ``wait``, block until it has stopped.

    ``timeout`` is the grace period before SIGKILL. Raises TunedeckError for a
    directory that is not a tunedeck run or a manifest we may not act on.
    """
    from tunedeck.runner.control import procs as P
    from tunedeck.runner.rundir.manifest import manifest_trusted, read_manifest
    from tunedeck.runner.rundir.runs import computed_status, raw_manifest, run_ended

    run = Path(run_dir)
    m = read_manifest(run)
    if m is None:
        raise TunedeckError(
            f"{run} has no tunedeck manifest: tunedeck did not launch it, so it cannot stop it",
            hint="stop the process that trains it (LLaMA Board: Abort; else Ctrl-C in its terminal)",
        )
    raw = raw_manifest(run) or {}
    status = computed_status(raw)
    if status not in (RunStatus.STARTING, RunStatus.RUNNING, RunStatus.STOPPING, RunStatus.LOST):
        return StopResult(
            stopped_cleanly=status is RunStatus.STOPPED and _checkpoint_complete(m.checkpoint, run),
            status=status, checkpoint=m.checkpoint, message=f"run {m.id} is not running (status {status.value})",
            waited=False,
        )
    if not manifest_trusted(run):
        raise TunedeckError(
            f"refusing to signal processes named by {run / 'tunedeck_run.json'}: it is writable by "
            "others or not owned by you",
            hint="check the file's owner and permissions",
        )
    if status is RunStatus.LOST:
        return _stop_orphans(run, m, timeout=timeout)

    request_stop(run, timeout=timeout)
    if not wait:
        return StopResult(False, RunStatus.STOPPING, None, message=f"stop requested for run {m.id}",
                          waited=False)
    deadline = time.monotonic() + timeout + _GRACE_AFTER_TIMEOUT
    while time.monotonic() < deadline:
        raw = raw_manifest(run) or {}
        if run_ended(raw):
            break
        time.sleep(poll)
    m2 = read_manifest(run) or m
    st = computed_status(raw_manifest(run) or {})
    if st is RunStatus.LOST:
        # The supervisor died while stopping: finish the job ourselves.
        return _stop_orphans(run, m2, timeout=timeout)
    left = [p.pid for p in P.survivors(m2.procs or ([m2.trainer] if m2.trainer else []))]
    holders = P.nvml_holders([p.pid for p in m2.procs])
    ck = m2.checkpoint
    # A server or a predict job keeps no checkpoint: clean is ended on request, nothing left.
    saved = _checkpoint_complete(ck, run) if m2.job == "train" else True
    clean = st is RunStatus.STOPPED and saved and not left and "SIGKILL" not in (m2.message or "")
    if st in (RunStatus.STARTING, RunStatus.RUNNING, RunStatus.STOPPING):
        msg = f"run {m.id} did not stop within {timeout + _GRACE_AFTER_TIMEOUT:.0f}s (status {st.value})"
    else:
        msg = f"run {m.id} {st.value}" + (f": {m2.message}" if m2.message else "")
    return StopResult(clean, st, ck, left, holders, msg)


def _stop_orphans(run: Path, m, *, timeout: float) -> StopResult:  # type: ignore[no-untyped-def]
    """The supervisor is gone: signal the trainer's processes ourselves, then record it."""
    from tunedeck.runner.control import procs as P
    from tunedeck.runner.control.launch import RUN_ID_ENV
    from tunedeck.runner.control.lock import acquire
    from tunedeck.runner.fsutil import read_json
    from tunedeck.runner.rundir.checkpoints import newest_complete

    refs = list(m.procs) or ([m.trainer] if m.trainer else [])
    known = [P.ProcId(r.pid, r.create_time) for r in refs]
    known += P.find_by_env(RUN_ID_ENV, m.id, exclude=[os.getpid()])
    pgids = [m.trainer.pgid] if m.trainer and m.trainer.pgid else []
    live = P.survivors(known, [])
    killed = False
    if live:
        P.signal_all(live, pgids, signal.SIGTERM)
        left = P.wait_gone(live, [], timeout)
        if left:
            killed = True
            P.signal_all(left, pgids, signal.SIGKILL)
            left = P.wait_gone(left, [], 10.0)
    else:
        left = []
    holders = P.nvml_holders([p.pid for p in known])
    te = read_json(run / TRAINER_EXIT)
    ck = (te or {}).get("checkpoint") if isinstance(te, dict) else None
    if ck and not Path(str(ck)).is_absolute():
        ck = str(run / str(ck))
    if not ck:
        newest = newest_complete(run)
        ck = str(newest) if newest else None
    if not live:
        msg = f"run {m.id}: the supervisor is gone and no process of the run was running"
    elif killed:
        msg = f"run {m.id}: the supervisor was gone; the trainer did not stop within {timeout:.0f}s and was killed"
    else:
        msg = f"run {m.id}: the supervisor was gone; the trainer stopped on SIGTERM"
    # Record the end, since nobody else will. Holding the lock proves no supervisor runs.
    with contextlib.suppress(TunedeckError, OSError), acquire(run):
        from tunedeck.runner.rundir.manifest import ProcRef

        m.status = RunStatus.STOPPED if live else RunStatus.LOST
        m.message = msg
        m.checkpoint = ck
        m.finished_at = time.time()
        m.survivors = [ProcRef(pid=p.pid, create_time=p.create_time) for p in left]
        if m.attempts and m.attempts[-1].ended_at is None:
            m.attempts[-1].ended_at = time.time()
            m.attempts[-1].end_reason = m.status.value
            m.attempts[-1].message = msg
        m.write(run)
    with contextlib.suppress(FileNotFoundError):
        (run / STOP_REQUEST).unlink()
    clean = bool(live) and not killed and not left and _checkpoint_complete(ck, run)
    return StopResult(clean, RunStatus.STOPPED if live else RunStatus.LOST, ck,
                      [p.pid for p in left], holders, msg)
