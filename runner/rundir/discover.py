"""Finding run directories under a root: ours, LLaMA-Factory's and plain transformers'.

A breadth-first walk with ``os.scandir`` (one syscall per directory, types from
the directory entry), bounded in depth, that never descends into checkpoints,
VCS/tooling directories or experiment-tracker caches, and never follows
symlinks below the root (no cycles, no wandering onto other disks).
"""

from __future__ import annotations

import os
from pathlib import Path

from tunedeck.runner.rundir.protocol import CHECKPOINT_PREFIX, MANIFEST, TRAINER_LOG, TRAINER_STATE

RUN_MARKERS = frozenset({MANIFEST, TRAINER_LOG, TRAINER_STATE})
# Never worth descending into: they hold no runs and can hold a great many files.
SKIP_DIRS = frozenset(
    {
        ".git", ".hg", ".svn", "node_modules", "__pycache__", "swanlog", "wandb", "mlruns",
        ".venv", "venv", "site-packages", ".cache", ".ipynb_checkpoints", ".mypy_cache",
        ".pytest_cache", ".ruff_cache", ".tox",
    }
)  # fmt: skip
LLAMAFACTORY_MARKERS = ("llamaboard_config.yaml", "training_args.yaml", "running_log.txt")


def _skip(name: str) -> bool:
    return (
        name in SKIP_DIRS
        or name.startswith(CHECKPOINT_PREFIX)
        or name.startswith("global_step")
        or name.startswith(".")
    )


def discover_runs(root: str | os.PathLike[str], max_depth: int = 4) -> list[Path]:
    """Run directories at depth <= ``max_depth`` under ``root`` (``root`` itself is depth 0).

    A run directory holds ``tunedeck_run.json``, ``trainer_log.jsonl``,
    ``trainer_state.json`` or a ``checkpoint-N/`` directory. Directories inside a run are searched too (sweeps
    nest runs), except ``checkpoint-*``. Sorted by path; unreadable parts skipped.
    """
    root_path = Path(root)
    found: list[Path] = []
    level = [os.fspath(root_path)]
    depth = 0
    while level:
        nxt: list[str] = []
        for d in level:
            try:
                with os.scandir(d) as it:
                    entries = list(it)
            except OSError:
                continue
            is_run = False
            for e in entries:
                name = e.name
                if name in RUN_MARKERS:
                    is_run = True
                elif name.startswith(CHECKPOINT_PREFIX):
                    # A plain transformers run still training has no top-level state
                    # file yet, only checkpoint-N/ directories.
                    if name[len(CHECKPOINT_PREFIX) :].isdigit():
                        is_run = True
                elif depth < max_depth and not _skip(name):
                    try:
                        if e.is_dir(follow_symlinks=False):
                            nxt.append(e.path)
                    except OSError:
                        continue
            if is_run:
                found.append(Path(d))
        level = nxt
        depth += 1
    found.sort()
    return found


def run_kind(path: str | os.PathLike[str]) -> str:
    """``"tunedeck"`` | ``"llamafactory"`` | ``"transformers"`` (``"unknown"`` for a non-run)."""
    p = Path(path)
    if (p / MANIFEST).is_file():
        return "tunedeck"
    if (p / TRAINER_LOG).is_file() or any((p / m).is_file() for m in LLAMAFACTORY_MARKERS):
        return "llamafactory"
    if (p / TRAINER_STATE).is_file():
        return "transformers"
    from tunedeck.runner.rundir.checkpoints import checkpoint_paths

    if any((c / TRAINER_STATE).is_file() for c in checkpoint_paths(p)):
        return "transformers"  # still training: transformers writes the top-level state at the end
    return "unknown"
