"""Start a supervised job that is not training: a server (``tunedeck serve``) or a batch
prediction (``tunedeck predict``).

Such a job is a run like any other: a directory with a manifest, a ``stdout.log`` and a
detached supervisor that outlives the terminal; ``runs``, ``status``, ``logs``, ``stop`` and
the dashboard see it. The manifest's ``job`` says what it is (``serve`` / ``predict``); the
supervisor runs ``argv`` in its own process group exactly as it runs a trainer.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunedeck.runner.errors import RunBusy


@dataclass(frozen=True)
class JobStart:
    run_id: str
    name: str
    run_dir: Path
    supervisor_pid: int


def start_job(
    run_dir: Path,
    argv: list[str],
    *,
    job: str,
    name: str,
    config_path: str,
    env: Mapping[str, str] | None = None,
    secret_env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    max_restarts: int = 0,
    details: Mapping[str, object] | None = None,
) -> JobStart:
    """Lock ``run_dir``, write a fresh manifest for ``argv`` and start its supervisor.

    ``env`` is recorded in the manifest (what the job adds to the environment);
    ``secret_env`` reaches the job's environment but is recorded as ``***`` only.
    Raises :class:`RunBusy` when a live job already owns the directory.
    """
    from tunedeck.runner.control.launch import _host, start_supervisor, wait_supervisor_up
    from tunedeck.runner.control.lock import acquire
    from tunedeck.runner.control.secrets import redact_env
    from tunedeck.runner.fsutil import ensure_dir
    from tunedeck.runner.rundir import registry
    from tunedeck.runner.rundir.manifest import Attempt, RunManifest, read_manifest
    from tunedeck.runner.rundir.procs import ref_alive

    ensure_dir(run_dir)
    cwd_p = cwd or Path.cwd()
    lock = acquire(run_dir)
    try:
        old = read_manifest(run_dir)
        if old is not None and old.status.active and (
                ref_alive(old.supervisor) or ref_alive(old.trainer) or any(ref_alive(p) for p in old.procs)):
            raise RunBusy(f"{old.job} job {old.id} is still active in "
                          f"{run_dir} (status {old.status.value})", hint=f"tunedeck stop {old.id}")
        added = dict(env or {})
        env_diff = redact_env({**added, **dict.fromkeys(secret_env or {}, "***")})
        if old is not None and old.job == job:
            # The same job again in its directory (a predict continuing after a crash, a
            # server restarted): one run with one more attempt, not a second run.
            m = old
            m.attempts.append(Attempt(number=len(m.attempts) + 1, started_at=time.time(), argv=list(argv)))
            m.argv, m.env_diff, m.name, m.config_path = list(argv), env_diff, name, config_path
        else:
            m = RunManifest(
                id=registry.new_run_id(),
                name=name,
                output_dir=str(run_dir),
                config_path=config_path,
                argv=list(argv),
                env_diff=env_diff,
                attempts=[Attempt(number=1, started_at=time.time(), argv=list(argv))],
            )
        m.job = job
        m.details = dict(details or {})
        m.host = _host()
        m.begin_attempt()
        m.max_restarts = max(0, max_restarts)
        m.cwd = str(cwd_p)
        m.write(run_dir)
        registry.register(m.id, name, run_dir)
        child_env = {**os.environ, **added, **dict(secret_env or {})}
        pid = start_supervisor(run_dir, lock.fd, child_env, cwd_p, m)
    finally:
        lock.release()
    wait_supervisor_up(run_dir, pid)
    return JobStart(run_id=m.id, name=name, run_dir=run_dir, supervisor_pid=pid)


def read_job_spec(argv: list[str] | None, module: str, what: str) -> tuple[Path, dict[str, Any]] | None:
    """The job directory and the JSON spec a job process was started with (``python -m
    MODULE JOB_DIR/WHAT``); ``None`` after saying why on stderr."""
    import sys

    from tunedeck.runner.fsutil import read_json

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print(f"usage: python -m {module} {what}", file=sys.stderr)
        return None
    doc = read_json(args[0])
    if not isinstance(doc, dict):
        print(f"cannot read {args[0]}", file=sys.stderr)
        return None
    return Path(args[0]).resolve().parent, doc
