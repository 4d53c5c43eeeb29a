"""The ``local`` backend: the detached supervisor on this machine (today's path)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunedeck.runner.rundir.backends import LocalReader


class LocalBackend(LocalReader):
    def stop(self, run_dir: Path, *, timeout: float, wait: bool) -> Any:
        from tunedeck.runner.control.stop import stop_local

        return stop_local(run_dir, timeout=timeout, wait=wait)
