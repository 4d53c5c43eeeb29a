"""Helpers for the monitoring tests: a real two-process tree and a run manifest naming it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

from tunedeck.runner.control.manifest import ProcRef, RunManifest
from tunedeck.runner.protocol import RunStatus

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
