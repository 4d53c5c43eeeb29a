"""The runs list (every registered run plus the runs under a root) and the queue."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tunedeck.runner.rundir.protocol import ACTIVE_STATUSES, FROZEN_CONFIG, RunStatus

if TYPE_CHECKING:  # read in the samplers' threads, not before the dashboard's first frame
    from tunedeck.runner.control.runqueue import QueueEntry
    from tunedeck.runner.rundir.manifest import RunManifest
    from tunedeck.runner.rundir.runs import RunSnapshot

__all__ = ["ACTIVE_STATUSES", "FROZEN_CONFIG", "QueueEntry", "RunSnapshot", "RunStatus", "RunsSampler",
           "RunsView", "list_runs", "read_manifest", "read_run"]

# Queue entries the dashboard lists: not started yet, or could not start.
WAITING_STATES = ("queued", "starting", "invalid", "failed")


@dataclass(frozen=True)
class RunsView:
    root: Path
    runs: tuple[RunSnapshot, ...]
    error: str | None = None
    taken_at: float = field(default_factory=time.time)
    queue: tuple[QueueEntry, ...] = ()  # queue entries not yet started
    queue_note: str = ""                # "paused" / "runner not running" / ""


def list_runs(root: Path) -> RunsView:
    """Every registered run plus every run under ``root`` (one-off; the dashboard polls
    with :class:`RunsSampler`, which lists the same runs)."""
    return RunsSampler(root).sample()


class RunsSampler:
    """The dashboard's runs: ``list_runs`` with every registered run (the demo in the
    cache dir, a run launched into any directory) plus every run found under ``root``,
    each directory once. Polled: ended, unchanged runs are not read again
    (:class:`tunedeck.runner.rundir.runs.RunCache`). Used from one worker at a time."""

    def __init__(self, root: Path) -> None:
        from tunedeck.runner.rundir.runs import RunCache

        self.root = root
        self._cache = RunCache()

    def sample(self) -> RunsView:
        from tunedeck.runner.rundir import runs as runs_mod

        try:
            snaps = runs_mod.list_runs(self.root, cache=self._cache, every_registered=True)
            hidden = _archived()   # `tunedeck archive` hides a run from the dashboard
            snaps = [r for r in snaps if str(Path(r.run_dir).resolve()) not in hidden]
        except Exception as exc:  # noqa: BLE001 - a broken tree must not kill the dashboard
            return RunsView(self.root, (), error=f"cannot list runs under {self.root}: {exc}")
        queue, note = _queue()
        return RunsView(self.root, tuple(snaps), queue=queue, queue_note=note)


def _archived() -> set[str]:
    try:
        from tunedeck.runner.control.history import archived_dirs

        return archived_dirs()
    except Exception:  # noqa: BLE001 - the index is a convenience
        return set()


def _queue() -> tuple[tuple[QueueEntry, ...], str]:
    """Queue entries that have not started (and the ones that could not), for the dashboard."""
    try:
        from tunedeck.runner.control import runqueue as q

        waiting = tuple(e for e in q.load_entries() if e.state in WAITING_STATES)
        if not waiting:
            return (), ""
        note = "paused" if q.paused() else ("" if q.runner_info() else "runner not running")
        return waiting, note
    except Exception:  # noqa: BLE001
        return (), ""


def read_run(run_dir: Path) -> RunSnapshot | None:
    from tunedeck.runner.rundir import runs as runs_mod

    try:
        return runs_mod.read_run(run_dir)
    except Exception:  # noqa: BLE001
        return None


def read_manifest(run_dir: Path) -> RunManifest | None:
    """A run's manifest, or None (missing, truncated, not ours)."""
    from tunedeck.runner.rundir.manifest import read_manifest as read

    return read(run_dir)
