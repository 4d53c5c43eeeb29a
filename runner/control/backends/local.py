"""The ``local`` backend: the detached supervisor on this machine (today's path)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunedeck.runner.rundir.protocol import RunStatus


class LocalBackend:
    name = "local"

    def status(self, m: dict[str, Any], now: float | None = None) -> RunStatus:
        from tunedeck.runner.rundir.runs import local_status

        return local_status(m, now)

    def ended(self, m: dict[str, Any]) -> bool:
        from tunedeck.runner.rundir.runs import local_run_ended

        return local_run_ended(m)

    def info(self, m: dict[str, Any]) -> dict[str, Any]:
        return {"backend": self.name}

    def stop(self, run_dir: Path, *, timeout: float, wait: bool) -> Any:
        from tunedeck.runner.control.stop import stop_local

        return stop_local(run_dir, timeout=timeout, wait=wait)
