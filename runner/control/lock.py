"""One launch per output_dir: an ``flock`` on ``<output_dir>/.tunedeck.lock``.

The launcher takes the lock, prepares the run directory, and hands the locked
file descriptor to the supervisor it spawns (``pass_fds``). A flock belongs to
the open file description, so the supervisor keeps holding it after the
launcher exits, and the kernel drops it the moment the supervisor dies: no
stale lock files to clean up after a crash.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from tunedeck.runner.errors import RunBusy
from tunedeck.runner.rundir.protocol import LOCK_FILE

LOCK_FD_ENV = "TUNEDECK_LOCK_FD"


class RunLock:
    """A held lock on one output_dir; ``fd`` can be inherited by a child process."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.fd = fd

    def release(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def acquire(output_dir: str | Path) -> RunLock:
    """Take the output_dir lock without waiting, or raise :class:`RunBusy`."""
    d = Path(output_dir)
    path = d / LOCK_FILE
    fd = os.open(str(path), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RunBusy(
            f"{d} is in use by another tunedeck run (lock {path} is held)",
            hint="wait for it to end, `tunedeck stop` it, or launch with another output_dir",
        ) from None
    except OSError:
        os.close(fd)
        raise
    return RunLock(path, fd)


def adopt(fd: int, output_dir: str | Path) -> RunLock:
    """In the supervisor: take over the inherited, already locked descriptor."""
    os.set_inheritable(fd, False)
    return RunLock(Path(output_dir) / LOCK_FILE, fd)
