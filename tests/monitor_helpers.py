"""Helpers for the monitoring tests: a real two-process tree and a run manifest naming it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

from tunedeck.runner.rundir.manifest import ProcRef, RunManifest
from tunedeck.runner.rundir.protocol import RunStatus

# A shell (think: supervisor) with a background sleep (think: trainer): it prints the
# child's pid, then waits. No interpreter start-up, so it is ready at once.
_PARENT = ["sh", "-c", "sleep 120 & echo $!; wait"]


@dataclass(frozen=True)
class Tree:
    parent: int
    child: int
    parent_create_time: float


@contextlib.contextmanager
def process_tree() -> Iterator[Tree]:
    """A real parent (think: supervisor) with one child (think: trainer); killed on exit."""
    proc = subprocess.Popen(_PARENT, stdout=subprocess.PIPE, text=True)
    child = None
    try:
        assert proc.stdout is not None
        child = int(proc.stdout.readline())
        # `$!` is known as soon as the shell forks; on a busy machine the child may not have
        # exec'd `sleep` yet (it still reads as `sh`). Wait for the exec, not for a time.
        deadline = time.monotonic() + 60
        while psutil.Process(child).cmdline() != ["sleep", "120"]:
            assert time.monotonic() < deadline, "the child never exec'd sleep"
            time.sleep(0.01)
        yield Tree(proc.pid, child, psutil.Process(proc.pid).create_time())
    finally:
        # Kill the child first: the shell's `wait` reaps it at once and the shell
        # then exits on its own (an orphan would wait for PID 1 to reap it).
        if child is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def write_manifest(
    run_dir: Path, tree: Tree, *, run_id: str = "run-abc", name: str = "demo-run", skew: float = 0.0
) -> RunManifest:
    """A manifest whose supervisor is ``tree.parent`` (``skew`` shifts its start time)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    m = RunManifest(
        id=run_id,
        name=name,
        output_dir=str(run_dir),
        config_path=str(run_dir / "config.yaml"),
        status=RunStatus.RUNNING,
        supervisor=ProcRef(pid=tree.parent, create_time=tree.parent_create_time + skew),
    )
    m.write(run_dir)
    return m


def make_llamafactory_resumed_run(d: Path) -> Path:
    """A LLaMA-Factory output dir whose run crashed after logging step 7 and was resumed
    from checkpoint-6: trainer_log.jsonl holds step 7 twice (12 steps, 13 lines)."""
    d.mkdir(parents=True)
    (d / "training_args.yaml").write_text(f"stage: sft\nfinetuning_type: lora\noutput_dir: {d}\n")
    lines = []
    for attempt, steps in ((1, range(1, 8)), (2, range(7, 13))):
        for s in steps:
            lines.append(json.dumps({
                "current_steps": s, "total_steps": 12, "loss": round(3.0 - 0.2 * s - 0.01 * attempt, 4),
                "lr": 1e-4, "epoch": s / 12, "percentage": round(100 * s / 12, 2),
                "elapsed_time": f"0:00:{s:02d}", "remaining_time": f"0:00:{12 - s:02d}",
                "throughput": 1000.0 * attempt, "total_tokens": 100 * s,
            }))
    (d / "trainer_log.jsonl").write_text("\n".join(lines) + "\n")
    for s in (6, 12):
        ck = d / f"checkpoint-{s}"
        ck.mkdir()
        for name in ("adapter_model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth"):
            (ck / name).write_bytes(b"\0" * 64)
        (ck / "adapter_config.json").write_text('{"r": 8}')
        (ck / "trainer_state.json").write_text(json.dumps({"global_step": s, "max_steps": 12,
                                                           "log_history": []}))
    (d / "train_results.json").write_text('{"epoch": 1.0}')
    return d
