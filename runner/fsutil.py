"""Small filesystem helpers every writer of the run-directory protocol uses."""

from __future__ import annotations

import contextlib
import json
import os
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
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=str(p.parent))
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
