"""How a training process ended: ``trainer_exit.json`` and the process exit code.

``accelerate launch`` and torchrun collapse every non-zero worker code into 1, so
rank 0 writes :data:`tunedeck.runner.rundir.protocol.TRAINER_EXIT` (atomically) before leaving, and
the supervisor reads the reason from there first.
"""

from __future__ import annotations

import errno
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tunedeck.runner.fsutil import atomic_write_json
from tunedeck.runner.rundir.protocol import TRAINER_EXIT, TrainerExit

REASON_EXIT_CODES: dict[str, TrainerExit] = {
    "finished": TrainerExit.OK,
    "stopped": TrainerExit.STOPPED,
    "preempted": TrainerExit.PREEMPTED,
    "diverged": TrainerExit.DIVERGED,
    "oom": TrainerExit.OOM,
    "disk_full": TrainerExit.DISK_FULL,
    "config_error": TrainerExit.CONFIG_ERROR,
    "error": TrainerExit.ERROR,
}


@dataclass(frozen=True)
class Outcome:
    """The body of ``trainer_exit.json``."""

    reason: str
    step: int
    message: str
    checkpoint: str | None = None
    exit_code: int = 0

    @classmethod
    def make(cls, reason: str, step: int, message: str, checkpoint: str | None = None) -> Outcome:
        return cls(reason, int(step), message, checkpoint, int(REASON_EXIT_CODES[reason]))


class Diverged(Exception):
    """The loss became NaN or inf; raised at the step boundary, before anything is saved."""

    def __init__(self, step: int, value: float) -> None:
        super().__init__(
            f"loss became {value} at step {step}; stopped without saving a new checkpoint "
            "(lower the learning rate, enable gradient clipping with max_grad_norm, or check "
            "the data and fp16/bf16 settings)"
        )
        self.step = step
        self.value = value


class ConfigProblem(Exception):
    """A configuration the trainer cannot run; the message says which key and how to fix it."""


def is_oom(exc: BaseException) -> bool:
    try:
        import torch

        if isinstance(exc, torch.cuda.OutOfMemoryError):
            return True
    except ImportError:  # pragma: no cover - torch is always there inside the trainer
        pass
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def is_disk_full(exc: BaseException) -> bool:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, OSError) and cur.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "No space left on device" in str(cur):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def disk_full_message(exc: BaseException, output_dir: str | Path | None) -> str:
    """Name the path being written and how much room its disk has left."""
    path = getattr(exc, "filename", None) or (str(output_dir) if output_dir else None)
    where = f" while writing {path}" if path else ""
    free = ""
    probe = Path(path) if path else None
    while probe is not None and not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if probe is not None:
        try:
            usage = shutil.disk_usage(probe)
            free = f" (disk holding {probe}: {usage.free / 2**30:.2f} GiB free of {usage.total / 2**30:.1f} GiB)"
        except OSError:
            pass
    return f"No space left on device{where}{free}; free space or move output_dir, then resume"


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def write_exit(output_dir: str | Path, outcome: Outcome) -> None:
    """Atomically write ``trainer_exit.json``; never raises (the disk may be full)."""
    try:
        body = asdict(outcome) | {"timestamp": time.time(), "pid": os.getpid()}
        atomic_write_json(Path(output_dir) / TRAINER_EXIT, body)
    except OSError:
        pass
