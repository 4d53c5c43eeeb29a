"""Where run ids resolve from anywhere: ``$TUNEDECK_HOME/runs/<id>.json``.

Each launched run leaves one small JSON file ``{"id", "name", "run_dir",
"created_at"}`` here, so ``tunedeck status 20261129-1234-ab12`` works from any
directory. The registry is only an index: the run directory is the truth, and
entries whose directory was deleted are skipped, not errors.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

HOME_ENV = "TUNEDECK_HOME"
_ID_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class RegistryEntry:
    id: str
    name: str
    run_dir: Path
    created_at: float


def tunedeck_home() -> Path:
    """``$TUNEDECK_HOME``, default ``$XDG_STATE_HOME/tunedeck`` (``~/.local/state/tunedeck``)."""
    env = os.environ.get(HOME_ENV)
    if env:
        return Path(env).expanduser()
    state = os.environ.get("XDG_STATE_HOME")
    base = Path(state).expanduser() if state else Path.home() / ".local" / "state"
    return base / "tunedeck"


def runs_dir() -> Path:
    return tunedeck_home() / "runs"


def is_safe_id(run_id: str) -> bool:
    """Ids are file names in the registry: no separators, no dot-dot, no shell specials."""
    return bool(_ID_SAFE.match(run_id)) and ".." not in run_id


def new_run_id(now: float | None = None) -> str:
    """``YYYYMMDD-HHMMSS-xxxx``: sortable by start time, unique, safe as a file name."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now if now is not None else time.time()))
    while True:
        rid = f"{stamp}-{os.urandom(2).hex()}"
        if not (runs_dir() / f"{rid}.json").exists():
            return rid


def register(run_id: str, name: str, run_dir: str | Path) -> None:
    """Record ``run_id -> run_dir``; failure to write the index never fails a launch."""
    from tunedeck.runner.fsutil import atomic_write_json, ensure_dir

    if not is_safe_id(run_id):
        return
    with contextlib.suppress(OSError):
        d = ensure_dir(runs_dir())
        atomic_write_json(
            d / f"{run_id}.json",
            {
                "id": run_id,
                "name": name,
                "run_dir": str(Path(run_dir).resolve()),
                "created_at": time.time(),
            },
        )


def unregister(run_id: str) -> None:
    """Drop ``run_id`` from the index (its directory now belongs to another run). Never raises."""
    if is_safe_id(run_id):
        with contextlib.suppress(OSError):
            (runs_dir() / f"{run_id}.json").unlink()


def _parse(path: Path) -> RegistryEntry | None:
    try:
        data = json.loads(path.read_bytes())
        return RegistryEntry(
            id=str(data["id"]),
            name=str(data.get("name") or data["id"]),
            run_dir=Path(str(data["run_dir"])),
            created_at=float(data.get("created_at") or 0.0),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def lookup(run_id: str) -> RegistryEntry | None:
    if not is_safe_id(run_id):
        return None
    return _parse(runs_dir() / f"{run_id}.json")


def entries(*, existing_only: bool = True) -> list[RegistryEntry]:
    """All registered runs, newest first; entries whose directory is gone are dropped."""
    d = runs_dir()
    try:
        names = os.listdir(d)
    except OSError:
        return []
    out: list[RegistryEntry] = []
    for n in names:
        if not n.endswith(".json") or n.startswith("."):
            continue
        e = _parse(d / n)
        if e is None:
            continue
        if existing_only and not e.run_dir.is_dir():
            continue
        out.append(e)
    out.sort(key=lambda e: e.created_at, reverse=True)
    return out
