"""Finished runs stay browsable: filters and sorts for ``runs``, archiving (hidden from
listings, nothing deleted) and deleting a run directory with its checkpoints.

The archive is an index under ``$TUNEDECK_HOME/archived/``, one small file per run
directory, so archiving works for LLaMA-Factory and transformers dirs we never write into.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from tunedeck.runner.errors import RunBusy, TunedeckError
from tunedeck.runner.rundir.registry import runs_dir, tunedeck_home
from tunedeck.runner.rundir.runs import RunSnapshot

SORT_KEYS = ("date", "eval_loss", "loss", "name", "status")


def _archive_dir() -> Path:
    return tunedeck_home() / "archived"


def _key(run_dir: str | os.PathLike[str]) -> str:
    return hashlib.sha1(str(Path(run_dir).resolve()).encode("utf-8", "surrogateescape")).hexdigest()[:20]


def is_archived(run_dir: str | os.PathLike[str]) -> bool:
    return (_archive_dir() / f"{_key(run_dir)}.json").is_file()


def archived_dirs() -> set[str]:
    """Resolved paths of the archived run directories."""
    out: set[str] = set()
    try:
        names = os.listdir(_archive_dir())
    except OSError:
        return out
    for n in names:
        if not n.endswith(".json"):
            continue
        try:
            data = json.loads((_archive_dir() / n).read_bytes())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("run_dir"), str):
            out.add(data["run_dir"])
    return out


def archive(run_dir: str | os.PathLike[str]) -> bool:
    """Hide a run from listings; False if it already was. Nothing in the run changes."""
    from tunedeck.runner.fsutil import atomic_write_json, ensure_dir

    if is_archived(run_dir):
        return False
    d = ensure_dir(_archive_dir())
    atomic_write_json(d / f"{_key(run_dir)}.json",
                      {"run_dir": str(Path(run_dir).resolve()), "archived_at": time.time()})
    return True


def unarchive(run_dir: str | os.PathLike[str]) -> bool:
    try:
        (_archive_dir() / f"{_key(run_dir)}.json").unlink()
    except FileNotFoundError:
        return False
    return True


# ----------------------------------------------------------------------------
# Filters and sorts
# ----------------------------------------------------------------------------
_REL = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(text: str, now: float | None = None) -> float:
    """``30m``, ``12h``, ``2d``, ``1w`` ago, or a date/time (``2026-11-01``, ISO 8601) -> epoch."""
    m = _REL.match(text)
    if m:
        return (now if now is not None else time.time()) - float(m.group(1)) * _UNITS[m.group(2)]
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        raise TunedeckError(f"--since {text!r}: not a duration or a date",
                            hint="e.g. 30m, 12h, 2d, 1w, 2026-11-01 or 2026-11-01T08:00") from None


def run_time(s: RunSnapshot) -> float:
    """When a run ended, else when it last did something (manifest or log), else its start."""
    return s.finished_at or s.updated_at or s.created_at or 0.0


def filter_runs(
    snaps: list[RunSnapshot],
    *,
    statuses: list[str] | None = None,
    since: float | None = None,
    name_glob: str | None = None,
    archived: str = "hide",  # "hide" | "only" | "show"
) -> list[RunSnapshot]:
    arch = archived_dirs() if archived != "show" else set()
    out = []
    for s in snaps:
        if statuses and s.status.value not in statuses:
            continue
        if since is not None and run_time(s) < since:
            continue
        if name_glob and not (fnmatch.fnmatchcase(s.name, name_glob) or fnmatch.fnmatchcase(s.id, name_glob)):
            continue
        hidden = str(Path(s.run_dir).resolve()) in arch
        if (archived == "hide" and hidden) or (archived == "only" and not hidden):
            continue
        out.append(s)
    return out


def best_eval_loss(s: RunSnapshot) -> float | None:
    from tunedeck.runner.rundir.logs import load_history

    return load_history(s.run_dir).min("eval_loss")


def sort_runs(snaps: list[RunSnapshot], key: str, reverse: bool = False) -> list[RunSnapshot]:
    """``date`` newest first; ``eval_loss`` (best of the run) and ``loss`` (last) lowest first,
    runs without one last; ``name``, ``status`` alphabetical. ``reverse`` flips the order."""
    import math

    if key == "date":
        out = sorted(snaps, key=run_time, reverse=True)
    elif key in ("eval_loss", "loss"):
        vals = {id(s): (best_eval_loss(s) if key == "eval_loss" else s.loss) for s in snaps}

        def k(s: RunSnapshot) -> tuple[int, float]:
            v = vals[id(s)]
            return (1, 0.0) if v is None or not math.isfinite(v) else (0, v)

        out = sorted(snaps, key=k)
    elif key == "name":
        out = sorted(snaps, key=lambda s: s.name)
    elif key == "status":
        out = sorted(snaps, key=lambda s: (s.status.value, s.name))
    else:
        raise TunedeckError(f"--sort {key!r}: unknown key", hint="one of " + ", ".join(SORT_KEYS))
    return out[::-1] if reverse else out


# ----------------------------------------------------------------------------
# Delete
# ----------------------------------------------------------------------------
@dataclass(frozen=True)
class DeletePlan:
    run_dir: Path
    name: str
    bytes: int
    files: int
    checkpoints: int


def dir_size(path: Path) -> tuple[int, int]:
    """(bytes, files) under ``path``, symlinks not followed."""
    total = files = 0
    for dirpath, _dirs, names in os.walk(path, followlinks=False):
        for n in names:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, n)).st_size
                files += 1
    return total, files


def plan_delete(snap: RunSnapshot) -> DeletePlan:
    """What deleting this run frees; raises :class:`RunBusy` for a live run and refuses a
    directory that holds other runs (a sweep's parent)."""
    from tunedeck.runner.control.lock import acquire
    from tunedeck.runner.rundir.discover import discover_runs
    from tunedeck.runner.rundir.protocol import LOCK_FILE

    run = Path(snap.run_dir)
    if snap.active:
        raise RunBusy(f"{snap.name} is {snap.status.value}: a live run is never deleted",
                      hint=f"`tunedeck stop {snap.id if snap.kind == 'tunedeck' else run}` first")
    if (run / LOCK_FILE).exists():
        acquire(run).release()  # RunBusy while a supervisor or launcher holds it
    others = [d for d in discover_runs(run, 4) if d.resolve() != run.resolve()]
    if others:
        raise TunedeckError(f"{run} holds other runs ({', '.join(str(o) for o in others[:3])}); not deleted",
                            hint="delete those runs one by one")
    size, files = dir_size(run)
    return DeletePlan(run, snap.name, size, files, len(snap.checkpoints))


def delete_run(plan: DeletePlan) -> None:
    """Remove the run directory, its registry entries and its archive entry."""
    run = plan.run_dir.resolve()
    shutil.rmtree(run)
    with contextlib.suppress(OSError):
        for n in os.listdir(runs_dir()):
            p = runs_dir() / n
            try:
                data = json.loads(p.read_bytes())
            except (OSError, ValueError):
                continue
            if isinstance(data, dict) and data.get("run_dir") == str(run):
                p.unlink()
    unarchive(run)


def fmt_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"
