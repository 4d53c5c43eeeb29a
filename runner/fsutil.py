"""Small filesystem helpers every writer of the run-directory protocol uses."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import tempfile
from pathlib import Path
from typing import Any

# Run directories and everything in them: no group/world write.
FILE_MODE = 0o644
DIR_MODE = 0o755


def ensure_dir(path: str | Path) -> Path:
    """Create a directory (and parents) without group/world write permission.

    Parents created here get the same treatment (``mkdir(parents=True)`` gives them the
    umask's mode: group-writable under the common 002); existing ones are left alone.
    """
    p = Path(path)
    created: list[Path] = []
    q = p
    while not q.exists() and q != q.parent:
        created.append(q)
        q = q.parent
    p.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    for d in created or [p]:
        with contextlib.suppress(OSError):
            mode = d.stat().st_mode & 0o777
            if mode & 0o022:
                d.chmod(mode & ~0o022)
    return p


def atomic_write_bytes(path: str | Path, data: bytes, *, mode: int = FILE_MODE) -> None:
    """Write ``data`` to ``path`` atomically: temp file in the same dir, fsync, rename.

    A reader sees either the old file or the new one, never a truncated one; a crash
    in the middle leaves the old file in place.
    """
    p = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(p.name, os.getpid()), suffix=".tmp", dir=str(p.parent))
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(p.parent)
    sweep_stale_temps(p)


# A temp file is named after its writer: ".NAME.<host>-<pid>.<random>.tmp". A writer killed
# mid-write (SIGKILL, power) leaves it behind; the next write of NAME removes those whose
# writer on this host is gone. Another host's temps (a shared filesystem) are left alone.
_HOST = hashlib.blake2s(socket.gethostname().encode("utf-8", "replace"), digest_size=3).hexdigest()


def _temp_prefix(name: str, pid: int) -> str:
    return f".{name}.{_HOST}-{pid}."


def sweep_stale_temps(path: str | Path) -> list[Path]:
    """Remove the temp files of earlier writes of ``path`` whose writing process is dead.

    Returns what was removed. Never raises: tidying up must not fail a save.
    """
    p = Path(path)
    head = f".{p.name}.{_HOST}-"
    removed: list[Path] = []
    try:
        entries = list(os.scandir(p.parent))
    except OSError:
        return removed
    for entry in entries:
        name = entry.name
        if not (name.startswith(head) and name.endswith(".tmp")):
            continue
        pid_text = name[len(head):].split(".", 1)[0]
        if not pid_text.isdigit() or pid_alive(int(pid_text)):
            continue
        with contextlib.suppress(OSError):
            os.unlink(entry.path)
            removed.append(Path(entry.path))
    return removed


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` (one that left a temp file or folder named after it) still exists."""
    if pid <= 0:
        return True  # not a pid we wrote: leave it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # EPERM: alive, someone else's
    return True


def atomic_write_text(path: str | Path, text: str, *, mode: int = FILE_MODE) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), mode=mode)


def atomic_write_json(path: str | Path, obj: Any, *, mode: int = FILE_MODE) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n", mode=mode)


def _fsync_dir(d: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(str(d), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def read_json(path: str | Path) -> Any | None:
    """Parse a JSON file; ``None`` when it is missing, empty or not valid JSON."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: [[[[... 100k deep
        return None
