"""A run's checkpoints: every one with its losses, deleting one, exporting one."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from tunedeck.tui.data.detail import newest_first

if TYPE_CHECKING:
    from tunedeck.runner.rundir.checkpoints import CheckpointInfo

__all__ = ["CheckpointInfo", "delete_checkpoint", "export_argv", "scan_checkpoints"]


def scan_checkpoints(run_dir: Path) -> tuple[CheckpointInfo, ...]:
    """Every checkpoint of a run, newest first, with loss/eval loss at its step."""
    from tunedeck.runner.rundir import checkpoints as ck
    from tunedeck.runner.rundir.logs import load_history

    return newest_first(ck.scan_checkpoints(run_dir, load_history(run_dir)))


def delete_checkpoint(path: Path) -> None:
    """Remove one checkpoint directory (the caller confirmed it)."""
    from tunedeck.runner.rundir.checkpoints import checkpoint_step

    if checkpoint_step(path.name) is None or not path.is_dir():
        raise ValueError(f"{path} is not a checkpoint directory")
    shutil.rmtree(path)


def export_argv(run_dir: Path, checkpoint: Path, export_dir: Path) -> list[str]:
    """``tunedeck export`` of one checkpoint, run in its own process (its memory goes when it
    ends; its progress lines come on stderr, prefixed ``export: ``)."""
    return [sys.executable, "-m", "tunedeck.runner.cli", "export", str(run_dir),
            "--checkpoint", str(checkpoint), f"export_dir={export_dir}"]
