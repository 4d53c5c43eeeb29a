"""Reading a run's console log for symptoms: the error patterns (OOM, ENOSPC, NaN, killed),
the current attempt's lines, the last exception.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from tunedeck.runner.rundir.protocol import (
    STDOUT_LOG,
)

LOG_FILES = (STDOUT_LOG, "webui_subprocess.log", "running_log.txt")


LOG_TAIL_BYTES = 64 * 1024


# Case-insensitive substrings, except the regexes (case-sensitive, whole words).
OOM_PATTERNS = ("CUDA out of memory", "torch.OutOfMemoryError", "OutOfMemoryError",
                "out of memory")


ENOSPC_PATTERNS = ("No space left on device", "[Errno 28]", re.compile(r"\bENOSPC\b"))


NAN_PATTERNS = ("loss is nan", "loss became nan", "nan loss", "non-finite loss",
                "loss is inf", "loss became inf")


KILLED_PATTERNS = (re.compile(r"\bKilled\b"), "SIGKILL", "signal 9")


# Lines that quote settings rather than report an event (e.g. the fault-injection banner
# "Faults(oom_step=3, enospc_on_save=False, ...)") must not match.
_IGNORED_LINE = re.compile(r"^\[tunedeck\] fault injection")


# The supervisor marks each attempt in stdout.log; only the newest attempt's lines count.
_ATTEMPT_LINE = re.compile(r"^\[tunedeck [^\]]*\] attempt \d+: ")


def _matches(text: str, patterns: tuple[str | re.Pattern[str], ...]) -> str | None:
    """The last line matching any pattern (substrings case-insensitively, regexes as is)."""
    for line in reversed(text.splitlines()):
        if _IGNORED_LINE.match(line):
            continue
        low = line.lower()
        for p in patterns:
            hit = p.search(line) if isinstance(p, re.Pattern) else p.lower() in low
            if hit:
                return line.strip()[:300]
    return None


def current_attempt(lines: list[str]) -> list[str]:
    """The lines of ``stdout.log`` since the supervisor's last "attempt N:" marker."""
    for i in range(len(lines) - 1, -1, -1):
        if _ATTEMPT_LINE.match(lines[i]):
            return lines[i:]
    return lines


def _last_exception(tail: list[str]) -> str | None:
    for line in reversed(tail):
        s = line.strip()
        if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt)\b", s):
            return s[:300]
    return None


def _traceback_tail(tail: list[str], n: int = 6) -> list[str]:
    for i in range(len(tail) - 1, -1, -1):
        if tail[i].startswith("Traceback"):
            return [s.rstrip()[:300] for s in tail[i:][-n:]]
    return [s.rstrip()[:300] for s in tail[-n:] if s.strip()]


def _read_tail(path: Path, nbytes: int = LOG_TAIL_BYTES) -> list[str]:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - nbytes))
            data = fh.read(nbytes)
    except OSError:
        return []
    lines = data.decode("utf-8", errors="replace").splitlines()
    if size > nbytes and lines:
        lines = lines[1:]   # the first line is cut in the middle
    return lines
