"""Helpers for the training-runner tests: run the trainer as a real subprocess and read
what it wrote (``trainer_log.jsonl``, ``trainer_exit.json``, checkpoints)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil

from tunedeck.runner.rundir.protocol import (
    INCOMPLETE_MARKER,
    TRAINER_EXIT,
    TRAINER_LOG,
    TRAINER_STATE,
)

REPO = Path(__file__).resolve().parents[1]
RUN_TIMEOUT = 240


def accelerate_argv(nproc: int = 1) -> list[str]:
    """``accelerate launch`` as run control builds it, minus the per-run config file."""
    argv = [sys.executable, "-m", "accelerate.commands.launch"]
    if nproc > 1:
        argv += ["--multi_gpu", "--main_process_port", "0"]
    else:
        argv += ["--cpu"]
    return argv + ["--num_processes", str(nproc), "--num_machines", "1",
                   "--mixed_precision", "no", "--dynamo_backend", "no"]


def trainer_argv(cfg: Path, overrides: Sequence[str] = (), *, launcher: str = "python",
                 nproc: int = 1) -> list[str]:
    head = [sys.executable] if launcher == "python" else accelerate_argv(nproc)
    return [*head, "-m", "tunedeck.runner.train", str(cfg), *overrides]


def trainer_env(extra: Mapping[str, str] | None = None, *, nproc: int = 1) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["TUNEDECK_EXPECT_WORLD_SIZE"] = str(nproc)
    env["ACCELERATE_USE_CPU"] = "1"
    env.pop("TUNEDECK_FAULT", None)
    env.update(extra or {})
    return env


def run_trainer(cfg: Path, *overrides: str, fault: str | None = None, launcher: str = "python",
                nproc: int = 1, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run one training process (or ``accelerate launch`` of ``nproc``) to completion."""
    extra = dict(env or {})
    if fault:
        extra["TUNEDECK_FAULT"] = fault
    argv = trainer_argv(cfg, overrides, launcher=launcher, nproc=nproc)
    # Its own session, so a run that overstays is killed with all its workers, and the
    # failure shows where each process was (faulthandler's dump on SIGABRT) and the log.
    proc = subprocess.Popen(argv, env={**trainer_env(extra, nproc=nproc), "PYTHONFAULTHANDLER": "1"},
                            cwd=cfg.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGABRT)
        try:
            out, err = proc.communicate(timeout=15)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        tail = "\n".join((err or "").splitlines()[-80:])
        raise AssertionError(f"{' '.join(argv)} did not end within {RUN_TIMEOUT}s; its stderr ends:\n{tail}") from None
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def read_log(out_dir: Path) -> list[dict[str, Any]]:
    path = out_dir / TRAINER_LOG
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def losses_by_step(out_dir: Path) -> dict[int, float]:
    return {r["current_steps"]: r["loss"] for r in read_log(out_dir) if "loss" in r}


def read_exit(out_dir: Path) -> dict[str, Any]:
    return json.loads((out_dir / TRAINER_EXIT).read_text(encoding="utf-8"))


def checkpoint_complete(path: Path) -> bool:
    return (
        path.is_dir()
        and not (path / INCOMPLETE_MARKER).exists()
        and (path / TRAINER_STATE).is_file()
        and any((path / f).is_file() for f in ("adapter_model.safetensors", "model.safetensors"))
    )


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    """Poll ``predicate`` until it holds; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` still runs; a zombie (ended, not yet reaped) counts as gone."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def diagnostics(proc: subprocess.CompletedProcess[str], n: int = 40) -> str:
    tail = (proc.stderr or "").splitlines()[-n:]
    return f"rc={proc.returncode}\n" + "\n".join(tail)
