"""Helpers for the tests that run tunedeck on a real pseudo-terminal."""

from __future__ import annotations

import contextlib
import os
import select
import signal


def read_some(fd: int, wait: float) -> bytes | None:
    """What the terminal wrote within ``wait`` seconds: ``b""`` if nothing yet, ``None`` once it
    is closed (the other side went away)."""
    ready, _, _ = select.select([fd], [], [], wait)
    if not ready:
        return b""
    try:
        chunk = os.read(fd, 65536)
    except OSError:
        return None
    return chunk or None


def kill_child(pid: int) -> None:
    """SIGKILL a forked child and reap it; one that has already ended is fine."""
    with contextlib.suppress(ProcessLookupError, ChildProcessError):
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
