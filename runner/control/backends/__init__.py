"""Where a run executes: the one place that knows there is more than one kind.

A run is launched on a *backend*, recorded in its manifest (``backend``):

- ``local``: the detached supervisor on this machine (:mod:`tunedeck.runner.control.supervisor`);
  liveness is the supervisor's pid + start time.
- ``slurm``: a batch job (:mod:`tunedeck.runner.control.backends.slurm`); liveness and
  the queue state come from the scheduler (``scontrol``/``squeue``), the rest from the
  run directory, which the job's runner keeps current.

Readers (status, runs, watch, the TUI), ``stop`` and ``resume`` ask :func:`backend_for`
instead of branching on the kind themselves. The interface is small on purpose:

- ``status(manifest, now)``: the status to show (``lost`` and the queue included);
- ``ended(manifest)``: has the run (not just an attempt) ended?
- ``info(manifest)``: extra fields for ``status --json``/``runs``/the TUI (backend, job id,
  scheduler state); empty for local runs;
- ``stop(run_dir, timeout=, wait=)``: stop the run (a checkpoint first), report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from tunedeck.runner.rundir.protocol import RunStatus

LOCAL = "local"
SLURM = "slurm"
BACKENDS = (LOCAL, SLURM)


class Backend(Protocol):
    name: str

    def status(self, m: dict[str, Any], now: float | None = None) -> RunStatus: ...

    def ended(self, m: dict[str, Any]) -> bool: ...

    def info(self, m: dict[str, Any]) -> dict[str, Any]: ...

    def stop(self, run_dir: Path, *, timeout: float, wait: bool) -> Any: ...


def backend_name(m: dict[str, Any] | None) -> str:
    name = (m or {}).get("backend")
    return name if isinstance(name, str) and name in BACKENDS else LOCAL


def backend_for(m: dict[str, Any] | None) -> Backend:
    """The backend a (raw) manifest was launched on; ``local`` when it does not say."""
    if backend_name(m) == SLURM:
        from tunedeck.runner.control.backends.slurm import SlurmBackend

        return SlurmBackend()
    from tunedeck.runner.control.backends.local import LocalBackend

    return LocalBackend()
