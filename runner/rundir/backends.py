"""Which backend a run was launched on, and how a reader asks it about the run.

The manifest's ``backend`` says where the run executes: ``local`` (the detached
supervisor on this machine; liveness is its pid + start time) or ``slurm`` (a batch
job; liveness and the queue state come from the scheduler). This is the one place
readers choose between them; :mod:`tunedeck.runner.control.backends` adds the
actions (submit, stop) on top of these readers.

A reader answers three questions about a raw manifest:

- ``status(m, now)``: the status to show (``lost`` and the queue included);
- ``ended(m)``: has the run (not just an attempt) ended?
- ``info(m)``: extra fields for ``status --json``, ``runs`` and the TUI (``backend``,
  and for Slurm the job id, queue state, nodes, requeues).
"""

from __future__ import annotations

from typing import Any, Protocol

from tunedeck.runner.rundir.protocol import RunStatus

LOCAL = "local"
SLURM = "slurm"
BACKENDS = (LOCAL, SLURM)


class RunReader(Protocol):
    name: str

    def status(self, m: dict[str, Any], now: float | None = None) -> RunStatus: ...

    def ended(self, m: dict[str, Any]) -> bool: ...

    def info(self, m: dict[str, Any]) -> dict[str, Any]: ...


class LocalReader:
    name = LOCAL

    def status(self, m: dict[str, Any], now: float | None = None) -> RunStatus:
        from tunedeck.runner.rundir.runs import local_status

        return local_status(m, now)

    def ended(self, m: dict[str, Any]) -> bool:
        from tunedeck.runner.rundir.runs import local_run_ended

        return local_run_ended(m)

    def info(self, m: dict[str, Any]) -> dict[str, Any]:
        return {"backend": LOCAL}


def backend_name(m: dict[str, Any] | None) -> str:
    name = (m or {}).get("backend")
    return name if isinstance(name, str) and name in BACKENDS else LOCAL


def reader_for(m: dict[str, Any] | None) -> RunReader:
    """The reader for the backend a (raw) manifest names; ``local`` when it names none."""
    if backend_name(m) == SLURM:
        from tunedeck.runner.rundir.slurm import SlurmReader

        return SlurmReader()
    return LocalReader()
