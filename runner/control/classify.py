"""Why did the trainer end? From ``trainer_exit.json``, the stop request, the exit code and the log tail.

``accelerate launch`` and torchrun turn any failing child into exit code 1, so
the exit code says little. The order of evidence is: what the trainer wrote
(``trainer_exit.json``), whether a user asked for a stop (recorded by the
supervisor), the signal named in the launcher's last words, the log tail (CUDA
OOM, the last exception), and only then the code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunedeck.runner.fsutil import read_json
from tunedeck.runner.rundir.protocol import STDOUT_LOG, TRAINER_EXIT, RunStatus, TrainerExit

TAIL_BYTES = 256 * 1024

_REASONS: dict[str, RunStatus] = {
    "finished": RunStatus.FINISHED,
    "completed": RunStatus.FINISHED,
    "ok": RunStatus.FINISHED,
    "done": RunStatus.FINISHED,
    "stopped": RunStatus.STOPPED,
    "stop": RunStatus.STOPPED,
    "preempted": RunStatus.PREEMPTED,
    "oom": RunStatus.OOM,
    "diverged": RunStatus.DIVERGED,
    "nan": RunStatus.DIVERGED,
    "config_error": RunStatus.FAILED,
    "config": RunStatus.FAILED,
    "disk_full": RunStatus.FAILED,
    "enospc": RunStatus.FAILED,
    "error": RunStatus.FAILED,
    "failed": RunStatus.FAILED,
    "crash": RunStatus.FAILED,
    "killed": RunStatus.KILLED,
}
_CODES: dict[int, RunStatus] = {
    TrainerExit.OK: RunStatus.FINISHED,
    TrainerExit.ERROR: RunStatus.FAILED,
    TrainerExit.CONFIG_ERROR: RunStatus.FAILED,
    TrainerExit.STOPPED: RunStatus.STOPPED,
    TrainerExit.PREEMPTED: RunStatus.PREEMPTED,
    TrainerExit.DIVERGED: RunStatus.DIVERGED,
    TrainerExit.OOM: RunStatus.OOM,
    TrainerExit.DISK_FULL: RunStatus.FAILED,
}

_OOM = re.compile(r"CUDA out of memory|OutOfMemoryError|CUDA error: out of memory|HIP out of memory")
# accelerate's simple launcher: "Command '[...]' died with <Signals.SIGKILL: 9>."
_DIED_WITH = re.compile(r"died with <Signals\.(SIG[A-Z0-9]+): (\d+)>")
# torchrun: "Signal 9 (SIGKILL) received by PID 1234"
_TORCHRUN_SIGNAL = re.compile(r"Signal (\d+) \((SIG[A-Z0-9]+)\) received by PID")
_EXC_LINE = re.compile(
    r"^(?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*(?:Error|Exception|Exit|Interrupt|Failure|Fault|Requested)\b(?::.*)?$"
)
# The launchers' own wrappers: the interesting exception is the one before them.
_WRAPPERS = ("CalledProcessError", "ChildFailedError", "SignalException")


@dataclass(frozen=True)
class ExitInfo:
    """The classified end of one attempt."""

    status: RunStatus
    exit_code: int | None
    message: str | None
    checkpoint: str | None = None
    config_error: bool = False       # never restart: the same config fails the same way
    signal: str | None = None        # e.g. "SIGKILL" when a signal ended the trainer
    trainer_exit: dict[str, Any] | None = None


def read_log_tail(run_dir: Path, offset: int = 0, max_bytes: int = TAIL_BYTES) -> str:
    """The end of stdout.log written since byte ``offset`` (this attempt's part)."""
    path = run_dir / STDOUT_LOG
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            start = max(offset if offset <= size else 0, size - max_bytes)
            fh.seek(start)
            data = fh.read()
    except OSError:
        return ""
    return data.decode("utf-8", "replace")


def last_exception_line(tail: str) -> str | None:
    """The last ``SomeError: message`` line, skipping the launchers' wrapper exceptions."""
    fallback = None
    for line in reversed(tail.splitlines()):
        s = line.strip()
        if not s or len(s) > 2000 or not _EXC_LINE.match(s):
            continue
        head = s.split(":", 1)[0]
        if any(head.endswith(w) for w in _WRAPPERS):
            fallback = fallback or s
            continue
        return s
    return fallback


def signal_in_tail(tail: str) -> str | None:
    """The signal that ended the trainer, as the launcher reported it (last mention)."""
    hits = _DIED_WITH.findall(tail)
    if hits:
        return str(hits[-1][0])
    hits = _TORCHRUN_SIGNAL.findall(tail)
    if hits:
        return str(hits[-1][1])
    return None


def classify_exit(
    run_dir: str | Path,
    returncode: int | None,
    *,
    log_offset: int = 0,
    stop_requested: bool = False,
) -> ExitInfo:
    """Classify the end of an attempt whose launcher exited with ``returncode``."""
    run_dir = Path(run_dir)
    te = read_json(run_dir / TRAINER_EXIT)
    te = te if isinstance(te, dict) else None
    tail = read_log_tail(run_dir, log_offset)
    exc = last_exception_line(tail)
    sig = signal_in_tail(tail)
    if returncode is not None and returncode < 0:
        import signal as _signal

        try:
            sig = sig or _signal.Signals(-returncode).name
        except ValueError:
            sig = sig or f"signal {-returncode}"

    if te is not None:
        reason = str(te.get("reason") or "").strip().lower()
        code = te.get("exit_code")
        status = _REASONS.get(reason)
        if status is None and isinstance(code, int):
            status = _CODES.get(code)
        if status is not None:
            if stop_requested and status is not RunStatus.FINISHED:
                status = RunStatus.STOPPED
            config_error = reason in ("config_error", "config") or code == TrainerExit.CONFIG_ERROR
            msg = te.get("message") or (exc if status is RunStatus.FAILED else None)
            ck = te.get("checkpoint")
            if ck and not Path(str(ck)).is_absolute():
                ck = str(run_dir / str(ck))  # the trainer may name it relative to output_dir
            return ExitInfo(
                status=status,
                exit_code=code if isinstance(code, int) else returncode,
                message=str(msg) if msg else None,
                checkpoint=str(ck) if ck else None,
                config_error=config_error,
                signal=sig if status is RunStatus.KILLED else None,
                trainer_exit=te,
            )

    if stop_requested:
        msg = "stopped on request"
        if sig:
            msg += f" (the trainer ended by {sig} before writing {TRAINER_EXIT})"
        return ExitInfo(RunStatus.STOPPED, returncode, msg, signal=sig)
    if _OOM.search(tail):
        oom_line = next((ln.strip() for ln in reversed(tail.splitlines()) if _OOM.search(ln)), None)
        return ExitInfo(RunStatus.OOM, returncode, oom_line or exc)
    if returncode == 0 and not sig:
        return ExitInfo(RunStatus.FINISHED, 0, None)
    if sig:
        return ExitInfo(
            RunStatus.KILLED,
            returncode,
            f"the trainer was killed by {sig}" + (f" (last error: {exc})" if exc and "CalledProcessError" not in exc else ""),
            signal=sig,
        )
    return ExitInfo(RunStatus.FAILED, returncode, exc or f"the trainer exited with code {returncode}")
