"""The log viewer's reads: a whole log (its last 32 MiB), then what is appended."""

from __future__ import annotations

import re
from pathlib import Path

from tunedeck.runner.rundir.protocol import STDOUT_LOG

__all__ = ["ERROR_RE", "MAX_LOG_BYTES", "STDOUT_LOG", "read_log", "read_log_from"]

MAX_LOG_BYTES = 32 * 1024 * 1024

ERROR_RE = re.compile(
    r"Traceback \(most recent call last\)|out of memory|OutOfMemoryError|\bError\b|error:|"
    r"\bnan\b|\binf\b loss|Killed|FAILED|RuntimeError|ValueError",
    re.IGNORECASE,
)


def read_log(path: Path) -> tuple[list[str], int, bool]:
    """All lines of a log (its last 32 MiB when bigger), the end offset, truncated?"""
    try:
        size = path.stat().st_size
    except OSError:
        return [], 0, False
    start = max(0, size - MAX_LOG_BYTES)
    with open(path, "rb") as fh:
        fh.seek(start)
        data = fh.read(size - start)
    text = data.decode("utf-8", "replace")
    if start:
        text = text.split("\n", 1)[-1]
    return text.splitlines(), start + len(data), bool(start)


def read_log_from(path: Path, offset: int) -> tuple[list[str], int]:
    """Complete lines appended since ``offset`` and the new offset (follow mode)."""
    try:
        size = path.stat().st_size
    except OSError:
        return [], offset
    if size < offset:  # truncated or replaced: start over
        offset = 0
    if size == offset:
        return [], offset
    with open(path, "rb") as fh:
        fh.seek(offset)
        data = fh.read(min(size - offset, MAX_LOG_BYTES))
    cut = data.rfind(b"\n")
    if cut < 0:
        return [], offset
    return data[: cut + 1].decode("utf-8", "replace").splitlines(), offset + cut + 1
