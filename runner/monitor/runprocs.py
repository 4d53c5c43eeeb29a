"""Which processes belong to which run: a run's manifest names its supervisor, trainer
and every process it saw (pid + start time); their process trees are the run's processes.

Used to say "run X uses 31.2 GiB on GPU 1" and to check that a stopped run
left nothing on a GPU.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tunedeck.runner.control.manifest import read_manifest
from tunedeck.runner.monitor.discover import discover_runs
from tunedeck.runner.monitor.host import trees_pids


@dataclass(frozen=True)
class RunProcesses:
    """The live processes of one run (empty when nothing of it is running)."""

    run_id: str
    name: str
    run_dir: Path
    status: str
    pids: frozenset[int]


def run_processes(run_dirs: Iterable[str | os.PathLike[str]]) -> list[RunProcesses]:
    """For each run directory with a readable manifest: its live process-tree pids.

    Runs whose processes outlived their recorded end (a rank stuck holding VRAM)
    are included: the start times in the manifest guard against pid reuse.
    """
    manifests = []
    roots: list[tuple[int, float | None]] = []
    spans: list[tuple[int, int]] = []
    for d in run_dirs:
        m = read_manifest(Path(d))
        if m is None:
            continue
        refs = [r for r in (m.supervisor, m.trainer) if r is not None]
        refs += [a.trainer for a in m.attempts if a.trainer is not None and a.trainer not in refs]
        # torchrun workers are the launcher's children, but one orphaned by a killed launcher
        # is reparented away from its tree: the supervisor records each of them too.
        refs += [r for r in (m.procs or []) if r not in refs]
        spans.append((len(roots), len(roots) + len(refs)))
        roots.extend((r.pid, r.create_time) for r in refs)
        manifests.append((Path(d), m))
    trees = trees_pids(roots) if roots else []
    out = []
    for (run_dir, m), (lo, hi) in zip(manifests, spans, strict=True):
        pids: set[int] = set()
        for tree in trees[lo:hi]:
            pids |= tree
        out.append(RunProcesses(m.id, m.name, run_dir, str(m.status), frozenset(pids)))
    return out


def runs_under(root: str | os.PathLike[str], max_depth: int = 4) -> list[RunProcesses]:
    """:func:`run_processes` for every run discovered under ``root``."""
    return run_processes(discover_runs(root, max_depth=max_depth))
