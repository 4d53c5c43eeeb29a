"""Trainer callbacks: the LLaMA-Factory-compatible ``trainer_log.jsonl``, stop and
divergence handling at step boundaries, and the test-only fault switch."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

import torch
from transformers import TrainerCallback

from tunedeck.runner.fsutil import atomic_write_bytes
from tunedeck.runner.rundir.protocol import TRAINER_LOG
from tunedeck.runner.train.faults import Faults
from tunedeck.runner.train.outcome import Diverged
from tunedeck.runner.train.signals import StopSignals

_STOP_CODES = {None: 0, "stopped": 1, "preempted": 2}
_STOP_REASONS = {v: k for k, v in _STOP_CODES.items()}


@dataclass
class RunFlags:
    """State shared by the trainer mixin and the callbacks of one process."""

    nonfinite_step: int | None = None
    nonfinite_value: float | None = None
    stop_reason: str | None = None      # agreed across ranks at a step boundary
    stop_step: int | None = None
    last_checkpoint: str | None = None  # name of the newest checkpoint this process completed

    def mark_nonfinite(self, step: int, value: float) -> None:
        if self.nonfinite_step is None:
            self.nonfinite_step, self.nonfinite_value = step, value


def format_duration(seconds: float) -> str:
    """``H:MM:SS`` like LLaMA-Factory (``str(timedelta)`` of whole seconds; days as ``1 day, 2:03:04``)."""
    s = max(0, int(seconds))
    if s >= 86400:
        return str(timedelta(seconds=s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}"


class TrainerLogCallback(TrainerCallback):
    """Append one JSON object per log event to ``<output_dir>/trainer_log.jsonl`` (rank 0).

    Keys are LLaMA-Factory's (``current_steps, total_steps, loss, eval_loss, lr, epoch,
    percentage, elapsed_time, remaining_time, throughput, total_tokens``) plus ours
    (``grad_norm, timestamp, step_time, vram_allocated, vram_reserved``). The ETA and
    throughput use only this process's time and steps, so they are right after a resume.
    The file is opened in append mode and flushed per record. When training begins at
    step N (a resume), records past N (written by an attempt that died after its last
    checkpoint) are dropped in one atomic rewrite, so every step appears once, in order.
    """

    def __init__(self, output_dir: str | Path) -> None:
        self.path = Path(output_dir) / TRAINER_LOG
        self._fh: IO[str] | None = None
        self._t0 = time.time()
        self._step0 = 0
        self._tokens0 = 0
        self._last_t = self._t0
        self._last_step = 0
        self._cuda = torch.cuda.is_available()

    def on_train_begin(self, args, state, control, **kwargs):
        self._t0 = self._last_t = time.time()
        self._step0 = self._last_step = state.global_step
        self._tokens0 = state.num_input_tokens_seen or 0
        if state.is_world_process_zero:
            trim_log(self.path, state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        if "train_loss" in logs:  # the end-of-training summary, not a progress record
            return
        now = time.time()
        step, total = state.global_step, state.max_steps or 0
        elapsed = now - self._t0
        done_here = step - self._step0
        # Insertion order is the key order of the file: LLaMA-Factory's first, then ours.
        record: dict[str, Any] = {"current_steps": step, "total_steps": total}
        for src, dst in _LOG_KEYS:
            v = logs.get(src)
            if v is not None:
                record[dst] = _jsonable(v)
        if state.epoch is not None:
            record["epoch"] = round(float(state.epoch), 4)
        if total > 0:
            record["percentage"] = round(step / total * 100, 2)
        record["elapsed_time"] = format_duration(elapsed)
        if done_here > 0:
            record["remaining_time"] = format_duration(elapsed / done_here * max(0, total - step))
        tokens = state.num_input_tokens_seen or 0
        if tokens:
            if elapsed > 0:
                record["throughput"] = round((tokens - self._tokens0) / elapsed, 2)
            record["total_tokens"] = int(tokens)
        v = logs.get("grad_norm")
        if v is not None:
            record["grad_norm"] = _jsonable(v)
        record["timestamp"] = round(now, 4)
        if "loss" in logs and step > self._last_step:
            record["step_time"] = round((now - self._last_t) / (step - self._last_step), 4)
            self._last_t, self._last_step = now, step
        if self._cuda:
            record["vram_allocated"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
            record["vram_reserved"] = round(torch.cuda.max_memory_reserved() / 2**30, 2)
        self._write(record)

    def _write(self, record: dict[str, Any]) -> None:
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open for the run
        self._fh.write(_ENCODER.encode(record) + "\n")
        self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            with contextlib.suppress(OSError):
                self._fh.close()
            self._fh = None


def trim_log(path: Path, step: int) -> bool:
    """Drop the records of ``path`` past ``step`` (and a torn last line); True if it changed.

    Everything up to the first record past ``step`` is kept byte for byte (unreadable
    lines too: they are not ours to judge); after it, only records at or before ``step``
    survive. The new file replaces the old one atomically, so a crash here leaves one or
    the other, never a shortened log.
    """
    try:
        data = path.read_bytes()
    except OSError:
        return False
    keep: list[bytes] = []
    past = False
    changed = False
    lines = data.splitlines(keepends=True)
    for i, line in enumerate(lines):
        rec_step = _record_step(line)
        if rec_step is None:
            torn = i == len(lines) - 1 and not line.endswith(b"\n")
            if past or torn:
                changed = True
                continue
            keep.append(line)
        elif rec_step > step:
            past = changed = True
        else:
            keep.append(line)
    if changed:
        atomic_write_bytes(path, b"".join(keep))
    return changed


def _record_step(line: bytes) -> int | None:
    try:
        rec = json.loads(line)
    except ValueError:
        return None
    v = rec.get("current_steps") if isinstance(rec, dict) else None
    return v if isinstance(v, int) else None


def _jsonable(v: Any) -> Any:
    if type(v) is float:
        return v if math.isfinite(v) else str(v)  # json would write NaN, which strict readers reject
    if isinstance(v, torch.Tensor):
        return _jsonable(v.item())
    return v


# (key in transformers' logs, key in trainer_log.jsonl), in LLaMA-Factory's order.
_LOG_KEYS = (
    ("loss", "loss"),
    ("eval_loss", "eval_loss"),
    ("predict_loss", "predict_loss"),
    ("reward", "reward"),
    ("accuracy", "accuracy"),
    ("rewards/accuracies", "accuracy"),
    ("learning_rate", "lr"),
)
_ENCODER = json.JSONEncoder(ensure_ascii=False)


class StopCallback(TrainerCallback):
    """Turn a stop request or a non-finite loss into an action at the step boundary.

    Every rank takes part in one tiny all-reduce per optimizer step so that all ranks
    stop (or diverge) at the same step even when the signal reached them at different
    moments; otherwise the rank that stopped first would leave the others hanging in
    the next collective.
    """

    def __init__(self, signals: StopSignals, flags: RunFlags) -> None:
        self.signals = signals
        self.flags = flags
        self._distributed = False

    def on_train_begin(self, args, state, control, **kwargs):
        self.signals.deferred = True
        self._distributed = _distributed(args)

    def on_step_end(self, args, state, control, **kwargs):
        stop_code = _STOP_CODES.get(self.signals.state.reason, 1)
        nonfinite = 1 if self.flags.nonfinite_step is not None else 0
        if self._distributed:
            t = torch.tensor([stop_code, nonfinite], dtype=torch.int64, device=args.device)
            torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
            stop_code, nonfinite = int(t[0]), int(t[1])
        if nonfinite:
            step = self.flags.nonfinite_step or state.global_step
            value = self.flags.nonfinite_value if self.flags.nonfinite_value is not None else math.nan
            raise Diverged(step, value)
        if stop_code and self.flags.stop_reason is None:
            self.flags.stop_reason = _STOP_REASONS.get(stop_code, "stopped")
            self.flags.stop_step = state.global_step
            control.should_save = True
            control.should_training_stop = True
            if state.is_world_process_zero:
                print(
                    f"[tunedeck] {self.flags.stop_reason}: saving checkpoint-{state.global_step} and exiting",
                    file=sys.stderr,
                    flush=True,
                )
        return control


def _distributed(args) -> bool:
    return (
        args.world_size > 1
        and torch.distributed.is_available()
        and torch.distributed.is_initialized()
    )


class FaultCallback(TrainerCallback):
    """Step-boundary faults of ``TUNEDECK_FAULT`` (slow, exit, stop, preempt).

    Must be registered before :class:`StopCallback` so a ``stop@N`` request is acted
    on at step N exactly.
    """

    def __init__(self, faults: Faults) -> None:
        self.faults = faults

    def on_step_begin(self, args, state, control, **kwargs):
        if self.faults.exit_step is not None and state.global_step + 1 == self.faults.exit_step:
            print(f"[tunedeck] fault injection: hard exit at step {state.global_step + 1}",
                  file=sys.stderr, flush=True)
            os._exit(1)

    def on_step_end(self, args, state, control, **kwargs):
        if self.faults.slow_seconds > 0:
            time.sleep(self.faults.slow_seconds)
        # raise_signal runs the Python handler before it returns, so the request is
        # recorded before StopCallback looks at it in this same step.
        if self.faults.stop_step is not None and state.global_step == self.faults.stop_step:
            signal.raise_signal(signal.SIGTERM)
        if self.faults.preempt_step is not None and state.global_step == self.faults.preempt_step:
            signal.raise_signal(signal.SIGUSR1)
