"""Helpers for the run-control tests: run the real CLI in subprocesses, poll with deadlines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def control_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment every control test runs the CLI with: its own registry, one thread."""
    # Keep the session's shared caches (TUNEDECK_CACHE_DIR, HF_HOME); drop faults, fake GPUs
    # and run ids that a surrounding test or shell may have set.
    dropped = ("CUDA_VISIBLE_DEVICES", "TUNEDECK_FAULT", "TUNEDECK_FAKE_NVML", "TUNEDECK_RUN_ID",
               "TUNEDECK_SECRETS", "TUNEDECK_LOCK_FD")
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env.update(
        {
            "TUNEDECK_HOME": str(home),
            "OMP_NUM_THREADS": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "TUNEDECK_RESTART_BACKOFF": "0.1",
            "HF_HUB_OFFLINE": "1",
            "PYTHONPATH": str(REPO),
        }
    )
    env.update(extra)
    return env


def tunedeck(
    args: list[str], env: dict[str, str], *, cwd: Path | None = None, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    """Run ``tunedeck ARGS`` (the real CLI, argv list, no shell) and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "tunedeck.runner.cli", *args],
        env=env,
        cwd=str(cwd) if cwd else None,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def wait_for(pred: Callable[[], Any], timeout: float, what: str, poll: float = 0.1) -> Any:
    """Poll ``pred`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def manifest(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((run_dir / "tunedeck_run.json").read_text())
    except (OSError, ValueError):
        return {}


def status_json(run: str, env: dict[str, str]) -> dict[str, Any]:
    out = tunedeck(["status", run, "--json"], env, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def log_steps(run_dir: Path) -> list[int]:
    steps = []
    try:
        lines = (run_dir / "trainer_log.jsonl").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec.get("current_steps"), int) and "loss" in rec:
            steps.append(rec["current_steps"])
    return steps


def worker_pid(run_dir: Path) -> int | None:
    """The pid of the ``python -m tunedeck.runner.train`` process (not accelerate's launcher)."""
    for p in manifest(run_dir).get("procs") or []:
        if p.get("role") == "worker":
            return int(p["pid"])
    return None


def end_of_tail(run_dir: Path, n: int = 30) -> str:
    try:
        return "\n".join((run_dir / "stdout.log").read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no stdout.log)"


@dataclass(frozen=True)
class DemoRun:
    """A demo run as a control test drives it: its config, its output directory and the
    environment the CLI runs with (``conftest.demo_run`` makes one)."""

    config: Path
    out_dir: Path
    env: dict[str, str]

    def cli(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        """``tunedeck ARGS`` in this run's environment."""
        return tunedeck(list(args), self.env, timeout=timeout)

    def manifest(self) -> dict[str, Any]:
        return manifest(self.out_dir)

    def steps(self) -> list[int]:
        """The steps logged with a loss, in log order."""
        return log_steps(self.out_dir)

    def tail(self, n: int = 30) -> str:
        """The end of stdout.log, for assertion messages."""
        return end_of_tail(self.out_dir, n)

    def status(self, run: str) -> dict[str, Any]:
        """``tunedeck status RUN --json``."""
        return status_json(run, self.env)

    def worker_pid(self) -> int | None:
        return worker_pid(self.out_dir)
