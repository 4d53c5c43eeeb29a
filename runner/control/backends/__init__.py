"""Where a run executes, with the actions: the readers of :mod:`tunedeck.runner.rundir.backends`
plus ``stop``. Launch and resume submit through :func:`tunedeck.runner.control.backends.slurm.submit_run`
for ``slurm`` and start the local supervisor otherwise.

- ``local``: the detached supervisor on this machine (:mod:`tunedeck.runner.control.supervisor`);
- ``slurm``: a batch job (:mod:`tunedeck.runner.control.backends.slurm`).

``stop(run_dir, timeout=, wait=)`` stops the run (a checkpoint first) and reports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from tunedeck.runner.rundir.backends import BACKENDS, LOCAL, SLURM, RunReader, backend_name

__all__ = ["BACKENDS", "LOCAL", "SLURM", "Backend", "backend_for", "backend_name"]


class Backend(RunReader, Protocol):
    def stop(self, run_dir: Path, *, timeout: float, wait: bool) -> Any: ...


def backend_for(m: dict[str, Any] | None) -> Backend:
    """The backend a (raw) manifest was launched on; ``local`` when it does not say."""
    if backend_name(m) == SLURM:
        from tunedeck.runner.control.backends.slurm import SlurmBackend

        return SlurmBackend()
    from tunedeck.runner.control.backends.local import LocalBackend

    return LocalBackend()
