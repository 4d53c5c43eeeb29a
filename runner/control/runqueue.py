"""The run queue: runs wait in order and start when the GPUs they ask for are free.

One machine. The queue is a directory, ``$TUNEDECK_HOME/queue/``: one JSON file per
entry (``entries/<seq>-<id>.json``, written atomically), a ``paused`` flag file and the
queue runner's lock. The queue runner (``tunedeck queue run``) is started on demand,
detached like a supervisor, one per machine (an ``flock``); it survives nothing and
needs to: killed, it is started again by the next ``queue add/resume/start`` and picks
up where the files say.

Strictly first in, first out: the head waits for its GPUs and nothing overtakes it,
except an entry whose config is invalid, which is marked and skipped.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from tunedeck.runner.errors import ConfigError, TunedeckError
from tunedeck.runner.rundir.registry import tunedeck_home

POLL = 1.0
FREE_MEM_BYTES = 1 << 30  # a GPU using more than this (not ours) is taken
STATES = ("queued", "starting", "launched", "invalid", "failed")


@dataclass(frozen=True)
class QueueEntry:
    id: str
    seq: int
    config: str
    overrides: list[str] = field(default_factory=list)
    gpus: list[int] | None = None
    name: str | None = None
    cwd: str = ""
    output_dir: str | None = None
    state: str = "queued"
    added_at: float = 0.0
    started_at: float | None = None
    run_id: str | None = None
    run_dir: str | None = None
    error: str | None = None
    waiting: str | None = None
    sweep: dict[str, Any] | None = None

    @property
    def filename(self) -> str:
        return f"{self.seq:020d}-{self.id}.json"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QueueEntry:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


def queue_dir() -> Path:
    return tunedeck_home() / "queue"


def entries_dir() -> Path:
    return queue_dir() / "entries"


def _write(e: QueueEntry) -> None:
    from tunedeck.runner.fsutil import atomic_write_json, ensure_dir

    ensure_dir(entries_dir())
    atomic_write_json(entries_dir() / e.filename, asdict(e))


def load_entries() -> list[QueueEntry]:
    """Every entry, in queue order; unreadable files are skipped."""
    out: list[QueueEntry] = []
    try:
        names = sorted(os.listdir(entries_dir()))
    except OSError:
        return out
    for n in names:
        if not n.endswith(".json") or n.startswith("."):
            continue
        try:
            data = json.loads((entries_dir() / n).read_bytes())
            out.append(QueueEntry.from_dict(data))
        except (OSError, ValueError, TypeError):
            continue
    out.sort(key=lambda e: (e.seq, e.id))
    return out


def find_entry(ref: str) -> QueueEntry:
    hits = [e for e in load_entries() if e.id == ref or e.id.startswith(ref) or e.name == ref]
    if len(hits) != 1:
        from tunedeck.runner.errors import RunNotFound

        raise RunNotFound(f"no queue entry {ref!r}" if not hits else f"{ref!r} matches {len(hits)} entries",
                          hint="`tunedeck queue list` shows the ids")
    return hits[0]


def remove_entry(ref: str) -> QueueEntry:
    e = find_entry(ref)
    if e.state == "starting":
        raise TunedeckError(f"entry {e.id} is being started right now", hint="try again in a moment")
    (entries_dir() / e.filename).unlink()
    return e


def paused() -> bool:
    return (queue_dir() / "paused").exists()


def set_paused(value: bool) -> None:
    from tunedeck.runner.fsutil import atomic_write_text, ensure_dir

    p = queue_dir() / "paused"
    if value:
        ensure_dir(queue_dir())
        atomic_write_text(p, f"{time.time()}\n")
    else:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


# ----------------------------------------------------------------------------
# Adding, sweeps
# ----------------------------------------------------------------------------
_SAFE = re.compile(r"[^A-Za-z0-9._=-]+")


def parse_sweep(items: list[str]) -> list[tuple[str, list[str]]]:
    """``["learning_rate=1e-4,2e-4", "lora_rank=8,16"]`` -> the keys and their values."""
    out = []
    for it in items:
        key, eq, vals = it.partition("=")
        values = [v.strip() for v in vals.split(",") if v.strip()]
        if not eq or not key.strip() or not values:
            raise ConfigError(f"--sweep {it!r}: expected key=v1,v2,...", key=key or None,
                              hint="e.g. --sweep learning_rate=1e-4,2e-4 lora_rank=8,16")
        out.append((key.strip(), values))
    keys = [k for k, _ in out]
    if len(set(keys)) != len(keys):
        raise ConfigError("--sweep names a key twice", hint="one key=v1,v2 per key")
    return out


def sweep_points(spec: list[tuple[str, list[str]]]) -> list[dict[str, str]]:
    """The grid, in order (the last key varies fastest)."""
    keys = [k for k, _ in spec]
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(v for _, v in spec))]


def point_suffix(point: dict[str, str]) -> str:
    return _SAFE.sub("_", "_".join(f"{k}-{v}" for k, v in point.items()))


def add(config: str | Path, overrides: list[str] | None = None, *, gpus: list[int] | None = None,
        name: str | None = None, sweep: list[str] | None = None, cwd: str | Path | None = None) -> list[QueueEntry]:
    """Queue a config (one entry, or one per sweep point, each with its own output_dir
    ``<output_dir>/<key-value_...>`` and name). The config is checked to load; a config
    that does not validate is still queued and marked invalid when its turn comes."""
    from tunedeck.runner.config.yamlio import ConfigDoc
    from tunedeck.runner.control.launch import resolve_output_dir

    cfg = Path(config).expanduser().resolve()
    cwd_p = Path(cwd) if cwd else Path.cwd()
    base_over = list(overrides or [])
    doc = ConfigDoc.load(cfg, base_over)  # ConfigError (exit 2) for a file that does not parse
    out_dir = resolve_output_dir(doc.values(), cwd_p, doc.source)
    base_name = name or out_dir.name
    points = sweep_points(parse_sweep(sweep)) if sweep else [{}]
    now = time.time()
    added = []
    for i, point in enumerate(points):
        over = list(base_over)
        run_out = out_dir
        run_name = base_name
        if point:
            suffix = point_suffix(point)
            run_out = out_dir / suffix
            run_name = f"{base_name}-{suffix}"
            over += [f"{k}={v}" for k, v in point.items()] + [f"output_dir={run_out}"]
        e = QueueEntry(
            id=os.urandom(3).hex(),
            seq=time.time_ns() + i,
            config=str(cfg),
            overrides=over,
            gpus=gpus,
            name=run_name,
            cwd=str(cwd_p),
            output_dir=str(run_out),
            added_at=now,
            sweep=dict(point) or None,
        )
        _write(e)
        added.append(e)
    return added


# ----------------------------------------------------------------------------
# Resources
# ----------------------------------------------------------------------------
def slots_free(gpus: list[int] | None, nvml: Any = None) -> tuple[bool, str]:
    """Whether a run asking for ``gpus`` (None: all of them) can start now, and why not.

    Taken: a GPU a live tunedeck run was given (a live run with no GPUs recorded takes
    them all), a GPU whose memory is used beyond ``FREE_MEM_BYTES``. Without NVML (a CPU
    box) there is one slot: free when no tunedeck run is live.
    """
    from tunedeck.runner.monitor.nvml import get_nvml
    from tunedeck.runner.rundir.runs import list_runs

    live = [s for s in list_runs() if s.active]
    snap = (nvml or get_nvml()).snapshot()
    if not snap.available or not snap.gpus:
        if live:
            return False, f"one slot on this machine (no GPU): {live[0].name} is {live[0].status.value}"
        return True, ""
    wanted = set(gpus) if gpus else {g.index for g in snap.gpus}
    missing = wanted - {g.index for g in snap.gpus}
    if missing:
        return False, f"GPU {', '.join(map(str, sorted(missing)))} not on this machine"
    for s in live:
        taken = set(s.gpus) if s.gpus else {g.index for g in snap.gpus}
        both = wanted & taken
        if both:
            return False, f"GPU {', '.join(map(str, sorted(both)))} used by {s.name}"
    for g in snap.gpus:
        if g.index in wanted and (g.mem_used or 0) > FREE_MEM_BYTES:
            return False, f"GPU {g.index} has {(g.mem_used or 0) / 2**30:.1f} GiB in use"
    return True, ""


# ----------------------------------------------------------------------------
# The runner
# ----------------------------------------------------------------------------
def runner_info() -> dict[str, Any] | None:
    """The live queue runner's pid/host, or None when none runs."""
    from tunedeck.runner.fsutil import read_json
    from tunedeck.runner.rundir.procs import ref_alive

    data = read_json(queue_dir() / "runner.json")
    if isinstance(data, dict) and ref_alive(data):
        return data
    return None


def start_runner() -> int | None:
    """Start the detached queue runner unless one runs; its pid (None if one already ran)."""
    from tunedeck.runner.fsutil import ensure_dir

    if runner_info() is not None:
        return None
    ensure_dir(queue_dir())
    log_fd = os.open(queue_dir() / "runner.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    with os.fdopen(log_fd, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tunedeck.runner.cli", "queue", "run"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, close_fds=True,
        )
    return proc.pid


def _reap() -> None:
    """Collect the supervisors we started that have ended (they are detached, not waited on)."""
    with contextlib.suppress(ChildProcessError, OSError):
        while True:
            pid, _ = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                return


class QueueRunner:
    def __init__(self, say: Any = None, nvml: Any = None) -> None:
        self.say = say or (lambda t: print(f"[tunedeck queue {time.strftime('%H:%M:%S')}] {t}", flush=True))
        self.nvml = nvml
        self.notifier: Any = None
        with contextlib.suppress(Exception):
            from tunedeck.runner.control.alerts import Notifier, notify_urls

            urls = notify_urls()
            if urls:
                self.notifier = Notifier(urls, log=self.say)

    def _save(self, e: QueueEntry) -> QueueEntry:
        if (entries_dir() / e.filename).exists():  # removed meanwhile: leave it removed
            _write(e)
        return e

    def recover(self, e: QueueEntry) -> QueueEntry:
        """An entry left 'starting' by a runner that died mid-launch: launched if its run
        was registered, else queued again."""
        from tunedeck.runner.rundir.registry import entries

        for r in entries():
            if e.output_dir and str(r.run_dir) == str(Path(e.output_dir).resolve()) \
                    and r.created_at >= (e.started_at or 0) - 1:
                self.say(f"entry {e.id}: found its run {r.id} (the last runner died while starting it)")
                return self._save(replace(e, state="launched", run_id=r.id, run_dir=str(r.run_dir)))
        self.say(f"entry {e.id}: queued again (the last runner died before starting it)")
        return self._save(replace(e, state="queued", started_at=None))

    def step(self) -> bool:
        """One pass; False when there is nothing left to do (or the queue is paused)."""
        from tunedeck.runner.config.yamlio import ConfigDoc
        from tunedeck.runner.control.launch import LaunchOptions, _validate, launch
        from tunedeck.runner.errors import RunBusy

        _reap()
        if paused():
            self.say("paused: `tunedeck queue resume` starts the queue again")
            return False
        entries = [self.recover(e) if e.state == "starting" else e for e in load_entries()]
        queued = [e for e in entries if e.state == "queued"]
        if not queued:
            return False
        head = queued[0]
        try:
            doc = ConfigDoc.load(head.config, head.overrides)
            _validate(doc)
        except (ConfigError, OSError) as exc:
            self.say(f"entry {head.id} ({head.name}): invalid, skipped: {exc}")
            self._save(replace(head, state="invalid", error=str(exc), waiting=None))
            return True
        ok, why = slots_free(head.gpus, self.nvml)
        if not ok:
            if why != head.waiting:
                self.say(f"entry {head.id} ({head.name}) waits: {why}")
                self._save(replace(head, waiting=why))
            time.sleep(POLL)
            return True
        head = self._save(replace(head, state="starting", started_at=time.time(), waiting=None))
        try:
            res = launch(head.config, head.overrides, LaunchOptions(gpus=head.gpus, name=head.name),
                         cwd=head.cwd or None, warn=lambda t: self.say(f"entry {head.id}: {t}"))
        except ConfigError as exc:
            self.say(f"entry {head.id} ({head.name}): invalid, skipped: {exc}")
            self._save(replace(head, state="invalid", error=str(exc)))
            return True
        except RunBusy as exc:
            self._save(replace(head, state="queued", started_at=None, waiting=str(exc)))
            time.sleep(POLL)
            return True
        except TunedeckError as exc:
            self.say(f"entry {head.id} ({head.name}): launch failed: {exc}")
            self._save(replace(head, state="failed", error=str(exc)))
            return True
        self._save(replace(head, state="launched", run_id=res.run_id, run_dir=str(res.run_dir)))
        self.say(f"entry {head.id}: started run {res.run_id} ({res.name}) in {res.run_dir}")
        if self.notifier is not None:
            with contextlib.suppress(Exception):
                from tunedeck.runner.control.alerts import make_alert

                self.notifier.send(make_alert(Path(res.run_dir), "started",
                                              detail=f"started from the queue (entry {head.id})"))
        return True

    def run(self) -> int:
        """Hold the one-per-machine lock and work the queue until it is empty or paused."""
        from tunedeck.runner.fsutil import atomic_write_json, ensure_dir
        from tunedeck.runner.rundir.manifest import ProcRef
        from tunedeck.runner.rundir.procs import create_time

        ensure_dir(queue_dir())
        fd = os.open(queue_dir() / "runner.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            self.say("another queue runner holds the lock; leaving")
            return 0
        try:
            me = ProcRef(pid=os.getpid(), create_time=create_time(os.getpid()) or time.time(), role="queue")
            atomic_write_json(queue_dir() / "runner.json", me.model_dump())
            self.say(f"queue runner {os.getpid()} started")
            while self.step():
                pass
            self.say("queue runner: nothing queued; leaving")
            return 0
        finally:
            with contextlib.suppress(OSError):
                (queue_dir() / "runner.json").unlink()
            os.close(fd)
            if self.notifier is not None:
                self.notifier.close(timeout=60.0)
