"""Reading runs: one :class:`RunSnapshot` per run directory, listing, resolving a reference.

Readers never write. A manifest that says a run is active while its supervisor
is gone (pid and start time no longer match) is *computed* as ``lost``; the file
is left alone. Reading is cheap: the manifest, the last lines of
``trainer_log.jsonl`` (read backwards from the end, never the whole file), and a
directory listing for checkpoints. Nothing here imports pydantic, psutil, torch
or Textual, so ``tunedeck status`` answers in a few tens of milliseconds.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tunedeck.runner.errors import RunNotFound
from tunedeck.runner.rundir.protocol import (
    ACTIVE_STATUSES,
    FROZEN_CONFIG,
    LF_CONFIG,
    MANIFEST,
    TRAINER_EXIT,
    TRAINER_LOG,
    TRAINER_STATE,
    RunStatus,
)

# A tunedeck run still "starting" with no supervisor recorded after this long is lost.
STARTING_GRACE_S = 60.0
# A run without a manifest whose log moved within this window is shown as running.
FOREIGN_ACTIVE_WINDOW_S = 600.0
_TAIL_LINES = 64
_TAIL_BYTES = 256 * 1024  # the end of trainer_log.jsonl that status reads (>= 64 records)


@dataclass(frozen=True)
class CheckpointRef:
    """A checkpoint as status shows it (``tunedeck checkpoints`` has the full scan)."""

    step: int
    path: str
    complete: bool


@dataclass(frozen=True)
class RunSnapshot:
    """One run at one moment, whatever wrote it (tunedeck, LLaMA-Factory, transformers)."""

    run_dir: Path
    id: str
    name: str
    kind: str                       # "tunedeck" | "llamafactory" | "transformers"
    status: RunStatus               # "lost" is computed, never read from a file
    current_steps: int | None = None
    total_steps: int | None = None
    percentage: float | None = None
    loss: float | None = None
    eval_loss: float | None = None
    lr: float | None = None
    throughput: float | None = None
    eta_seconds: float | None = None
    elapsed_seconds: float | None = None
    epoch: float | None = None
    attempts: int = 0
    restarts: int = 0
    checkpoints: tuple[CheckpointRef, ...] = ()
    gpus: tuple[int, ...] = ()
    pids: tuple[int, ...] = ()
    config_path: str | None = None
    message: str | None = None
    exit_code: int | None = None
    updated_at: float | None = None
    last_log_age_s: float | None = None
    supervisor_alive: bool = False
    host: str | None = None
    created_at: float | None = None
    finished_at: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def latest_checkpoint(self) -> CheckpointRef | None:
        done = [c for c in self.checkpoints if c.complete]
        return done[-1] if done else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; the field names are the ``status --json`` contract."""
        d = asdict(self)
        d["run_dir"] = str(self.run_dir)
        d["status"] = self.status.value
        d["checkpoints"] = [asdict(c) for c in self.checkpoints]
        d["gpus"] = list(self.gpus)
        d["pids"] = list(self.pids)
        latest = self.latest_checkpoint
        d["latest_checkpoint"] = latest.path if latest else None
        d.pop("extra", None)
        d.update({k: v for k, v in self.extra.items() if k not in d})
        for k, v in list(d.items()):
            if isinstance(v, float) and not math.isfinite(v):
                d[k] = None if math.isinf(v) else "NaN"
        return d


# ----------------------------------------------------------------------------
# Small readers
# ----------------------------------------------------------------------------
def raw_manifest(run_dir: Path) -> dict[str, Any] | None:
    """The manifest as plain JSON (no pydantic: this is the hot path of ``status``)."""
    try:
        raw = (run_dir / MANIFEST).read_bytes()
    except OSError:
        return None
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("id"), str):
        return None
    # Readers index into these: a damaged file must not turn into a TypeError three calls later.
    for key in ("attempts", "procs", "gpus", "survivors"):
        if key in data and not isinstance(data[key], list):
            data[key] = []
    for key in ("supervisor", "trainer"):
        if key in data and not isinstance(data[key], dict):
            data[key] = None
    # Text fields are shown and printed as JSON: a list holding Infinity is not a path.
    for key in ("name", "config_path", "message", "host", "checkpoint", "output_dir", "cwd"):
        if data.get(key) is not None and not isinstance(data[key], str):
            data[key] = None
    return data


def parse_duration(text: Any) -> float | None:
    """``"1:02:03"``, ``"2 days, 3:04:05"`` (str(timedelta)) or a number -> seconds."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    if not isinstance(text, str) or not text.strip():
        return None
    s = text.strip()
    days = 0.0
    if "day" in s:
        head, _, s = s.partition(",")
        try:
            days = float(head.split()[0])
        except (ValueError, IndexError):
            return None
        s = s.strip()
    parts = s.split(":")
    try:
        nums = [float(p) for p in parts]
    except ValueError:
        return None
    total = 0.0
    for n in nums:
        total = total * 60 + n
    return days * 86400 + total


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    try:
        return float(v)
    except OverflowError:  # an int no float holds (a corrupt log line): not a number we can show
        return None


def _int(v: Any) -> int | None:
    f = _num(v)
    return int(f) if f is not None and math.isfinite(f) else None


def checkpoint_refs(run_dir: Path) -> tuple[CheckpointRef, ...]:
    """``checkpoint-N`` directories, oldest first, each judged by THE completeness rule
    (:func:`tunedeck.runner.rundir.checkpoints.checkpoint_complete`)."""
    from tunedeck.runner.rundir.checkpoints import checkpoint_complete, checkpoint_dirs

    return tuple(CheckpointRef(step, str(p), checkpoint_complete(p))
                 for step, p in checkpoint_dirs(run_dir))


def _kind(run_dir: Path) -> str:
    from tunedeck.runner.rundir.discover import run_kind

    kind = run_kind(run_dir)
    return kind if kind != "unknown" else "transformers"


def _mtime(p: Path) -> float | None:
    try:
        return p.stat().st_mtime
    except OSError:
        return None


# ----------------------------------------------------------------------------
# read_run
# ----------------------------------------------------------------------------
def computed_status(m: dict[str, Any], now: float | None = None) -> RunStatus:
    """The status a reader should show for a raw manifest, as the run's backend sees it
    (:mod:`tunedeck.runner.rundir.backends`: local supervisor or Slurm job)."""
    from tunedeck.runner.rundir.backends import LOCAL, backend_name, reader_for

    if backend_name(m) == LOCAL:
        return local_status(m, now)
    return reader_for(m).status(m, now)


def local_status(m: dict[str, Any], now: float | None = None) -> RunStatus:
    """A local run: ``lost`` when the manifest claims an active run but its supervisor is
    gone (pid + start time)."""
    from tunedeck.runner.rundir.procs import ref_alive

    try:
        status = RunStatus(m.get("status"))
    except ValueError:
        return RunStatus.LOST
    if status not in ACTIVE_STATUSES:
        return status
    sup = m.get("supervisor")
    if sup is None:
        created = _num(m.get("updated_at")) or _num(m.get("created_at")) or 0.0
        if (now or time.time()) - created < STARTING_GRACE_S:
            return status  # the launcher wrote it a moment ago; the supervisor is coming up
        return RunStatus.LOST
    return status if ref_alive(sup) else RunStatus.LOST


def run_ended(m: dict[str, Any]) -> bool:
    """Has the run (not just an attempt) ended? Asks the run's backend."""
    from tunedeck.runner.rundir.backends import LOCAL, backend_name, reader_for

    if backend_name(m) == LOCAL:
        return local_run_ended(m)
    return reader_for(m).ended(m)


def local_run_ended(m: dict[str, Any]) -> bool:
    """A local run has ended: a terminal status with the supervisor done (``finished_at``
    written) or gone. During an automatic restart the supervisor lives on."""
    from tunedeck.runner.rundir.procs import ref_alive

    st = local_status(m)
    if st in ACTIVE_STATUSES:
        return False
    return st is RunStatus.LOST or m.get("finished_at") is not None or not ref_alive(m.get("supervisor"))


def _backend_info(m: dict[str, Any]) -> dict[str, Any]:
    """``backend`` and, for a scheduler, its job id and queue state (``status --json``)."""
    from tunedeck.runner.rundir.backends import reader_for

    return reader_for(m).info(m)


def _newest(recs: list[dict[str, Any]], key: str, *alts: str) -> float | None:
    """The newest numeric value of ``key`` (or an alternative name) in the records."""
    for r in reversed(recs):
        for k in (key, *alts):
            v = _num(r.get(k))
            if v is not None:
                return v
    return None


def _progress(recs: list[dict[str, Any]], state: dict[str, Any]
              ) -> tuple[int | None, int | None, float | None]:
    """(current step, total steps, percentage) from the newest records, else trainer_state."""
    last = recs[-1] if recs else {}
    current = _int(last.get("current_steps"))
    if current is None:
        current = _int(_newest(recs, "step"))
    if current is None:
        current = _int(state.get("global_step"))
    total = _int(last.get("total_steps")) or _int(state.get("max_steps"))
    pct = _num(last.get("percentage"))
    if pct is None and current is not None and total:
        pct = round(100.0 * current / total, 2)
    return current, total, pct


def _tunedeck_fields(run: Path, m: dict[str, Any], now: float
                     ) -> tuple[RunStatus, str, str, dict[str, Any]]:
    """(status, id, name, RunSnapshot fields) of a run with a tunedeck manifest."""
    status = computed_status(m, now)
    rid = str(m.get("id"))
    name = str(m.get("name") or rid)
    pids = []
    for ref in [m.get("supervisor"), *(m.get("procs") or [])]:
        if isinstance(ref, dict) and isinstance(ref.get("pid"), int):
            pids.append(ref["pid"])
    msg = m.get("message")
    binfo = _backend_info(m)
    if binfo.get("slurm_message") and (status is RunStatus.LOST or not msg):
        msg = str(binfo["slurm_message"])
    elif status is RunStatus.LOST and m.get("status") != RunStatus.LOST.value:
        msg = (f"the supervisor is gone but the manifest says {m.get('status')}"
               + (f" ({msg})" if msg else ""))
    fields: dict[str, Any] = {
        "attempts": len(m.get("attempts") or []),
        "restarts": _int(m.get("restarts")) or 0,
        "gpus": tuple(int(g) for g in (m.get("gpus") or []) if isinstance(g, int)),
        "pids": tuple(pids),
        "config_path": str(run / FROZEN_CONFIG) if (run / FROZEN_CONFIG).exists() else m.get("config_path"),
        "message": msg,
        "exit_code": _int(m.get("exit_code")),
        "updated_at": _num(m.get("updated_at")),
        "supervisor_alive": status in ACTIVE_STATUSES and m.get("supervisor") is not None,
        "host": m.get("host") or None,
        "created_at": _num(m.get("created_at")),
        "finished_at": _num(m.get("finished_at")),
        "extra": {
            **binfo,
            "launched_config": m.get("config_path"),
            "max_restarts": _int(m.get("max_restarts")) or 0,
            "stop_requested_at": _num(m.get("stop_requested_at")),
            # what the supervised process is: "train", or "serve" / "predict" after training
            "job": m.get("job") if isinstance(m.get("job"), str) else "train",
            **({"details": m["details"]} if isinstance(m.get("details"), dict) and m["details"] else {}),
        },
    }
    return status, rid, name, fields


def _foreign_fields(run: Path, current: int | None, total: int | None, age: float | None,
                    log_mtime: float | None) -> tuple[RunStatus, dict[str, Any]]:
    """(status, RunSnapshot fields) of a LLaMA-Factory / transformers dir (no manifest):
    finished at its last step or with results written, running while its log moves."""
    finished = bool(current is not None and total and current >= total)
    if (run / "all_results.json").exists() or (run / "train_results.json").exists():
        finished = True
    if finished:
        status = RunStatus.FINISHED
    elif age is not None and age < FOREIGN_ACTIVE_WINDOW_S:
        status = RunStatus.RUNNING
    else:
        status = RunStatus.LOST
    cfg = run / LF_CONFIG
    return status, {
        "config_path": str(cfg) if cfg.exists() else None,
        "message": None if status is not RunStatus.LOST else
        "no tunedeck manifest; the log has not moved for a while and the run did not reach its last step",
        "updated_at": log_mtime,
    }


def read_run(run_dir: str | os.PathLike[str]) -> RunSnapshot:
    """A snapshot of one run directory (tunedeck's, LLaMA-Factory's or transformers')."""
    from tunedeck.runner.rundir.logs import read_log_records

    run = Path(run_dir)
    now = time.time()
    m = raw_manifest(run)
    logged = read_log_records(run, tail_bytes=_TAIL_BYTES)
    recs = logged.records[-_TAIL_LINES:]
    log_mtime = _mtime(logged.path) if logged.path else _mtime(run / TRAINER_LOG)
    last = recs[-1] if recs else {}
    current, total, pct = _progress(recs, logged.state)
    age = (now - log_mtime) if log_mtime is not None else None
    if m is not None:
        kind = "tunedeck"
        status, rid, name, snap_kw = _tunedeck_fields(run, m, now)
    else:
        kind, rid, name = _kind(run), str(run), run.name
        status, snap_kw = _foreign_fields(run, current, total, age, log_mtime)
    results = _train_results(run)
    if results:
        snap_kw["extra"] = {**snap_kw.get("extra", {}), **results}
    eta = parse_duration(last.get("remaining_time"))
    if eta is not None and age is not None and status in ACTIVE_STATUSES:
        eta = max(0.0, eta - age)
    if status not in ACTIVE_STATUSES:
        eta = None if status is not RunStatus.FINISHED else 0.0
    return RunSnapshot(
        run_dir=run, id=rid, name=name, kind=kind, status=status,
        current_steps=current, total_steps=total, percentage=pct,
        loss=_newest(recs, "loss"), eval_loss=_newest(recs, "eval_loss"),
        lr=_newest(recs, "lr", "learning_rate"), throughput=_newest(recs, "throughput"),
        eta_seconds=eta, elapsed_seconds=parse_duration(last.get("elapsed_time")),
        epoch=_newest(recs, "epoch"), checkpoints=checkpoint_refs(run), last_log_age_s=age,
        **snap_kw,
    )


_RESULT_KEYS = ("train_loss", "train_runtime", "train_samples_per_second", "train_steps_per_second",
                "train_tokens_per_second", "num_input_tokens_seen")


def _train_results(run: Path) -> dict[str, Any]:
    """The final whole-run figures of ``train_results.json`` (tunedeck's, LLaMA-Factory's and
    transformers' name), with tunedeck's per-attempt figures as ``attempt_results``."""
    try:
        with open(run / "train_results.json", "rb") as fh:
            data = json.loads(fh.read())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    out: dict[str, Any] = {k: data[k] for k in _RESULT_KEYS if isinstance(data.get(k), (int, float))}
    attempts = data.get("attempts")
    if isinstance(attempts, list):
        out["attempt_results"] = [a for a in attempts if isinstance(a, dict)]
    return out


# ----------------------------------------------------------------------------
# Listing and resolving
# ----------------------------------------------------------------------------
def config_path_of(run_dir: Path) -> Path | None:
    """The run's frozen config: ``config.yaml``, else LLaMA Board's ``training_args.yaml``."""
    for name in (FROZEN_CONFIG, LF_CONFIG):
        p = run_dir / name
        if p.is_file():
            return p
    return None


def is_run_dir(p: Path) -> bool:
    """Does ``p`` hold a run (a manifest, a trainer log or state, or a checkpoint)?"""
    return any((p / n).exists() for n in (MANIFEST, TRAINER_LOG, TRAINER_STATE)) or bool(
        checkpoint_refs(p)
    )


def _discover(root: Path, max_depth: int) -> list[Path]:
    from tunedeck.runner.rundir.discover import discover_runs

    return discover_runs(root, max_depth)


_SIGNATURE_FILES = ("", MANIFEST, TRAINER_LOG, TRAINER_STATE, TRAINER_EXIT)


def _signature(run_dir: Path) -> tuple[Any, ...]:
    sig: list[Any] = []
    for name in _SIGNATURE_FILES:
        try:
            st = os.stat(run_dir / name)
            sig.append((st.st_mtime_ns, st.st_size))
        except OSError:
            sig.append(None)
    return tuple(sig)


class RunCache:
    """For a caller that lists runs again and again (the dashboard): a run that has ended
    and whose files did not change is not read again (its status cannot change without a
    write); active runs are always read (liveness and ages depend on the clock)."""

    def __init__(self) -> None:
        self._snaps: dict[Path, tuple[tuple[Any, ...], RunSnapshot]] = {}

    def read(self, run_dir: Path) -> RunSnapshot:
        sig = _signature(run_dir)
        cached = self._snaps.get(run_dir)
        if cached is not None and cached[0] == sig and not cached[1].active:
            return cached[1]
        snap = read_run(run_dir)
        self._snaps[run_dir] = (sig, snap)
        return snap

    def keep_only(self, run_dirs: Iterable[Path]) -> None:
        keep = set(run_dirs)
        self._snaps = {d: v for d, v in self._snaps.items() if d in keep}


def list_runs(root: str | os.PathLike[str] | None = None, *, max_depth: int = 4,
              cache: RunCache | None = None, every_registered: bool = False) -> list[RunSnapshot]:
    """Runs under ``root`` (discovered: tunedeck, LLaMA-Factory, transformers) plus the
    registered runs that live under it (``every_registered``: wherever they live); with no
    root, every registered run. Newest first. ``cache`` skips re-reading ended runs whose
    files did not change."""
    from tunedeck.runner.rundir.registry import entries

    dirs: dict[str, Path] = {}
    root_p = Path(root).resolve() if root is not None else None
    if root_p is not None:
        for d in _discover(root_p, max_depth):
            dirs.setdefault(str(d.resolve()), d.resolve() if cache is not None else d)
    for e in entries():
        rd = e.run_dir.resolve()
        if every_registered or root_p is None or rd == root_p or root_p in rd.parents:
            dirs.setdefault(str(rd), rd)
    if cache is not None:
        cache.keep_only(dirs.values())
        snaps = [cache.read(d) for d in dirs.values()]
    else:
        snaps = [read_run(d) for d in dirs.values()]
    snaps.sort(key=lambda s: (s.updated_at or s.created_at or 0.0), reverse=True)
    return snaps


def resolve_run(ref: str, root: str | os.PathLike[str] | None = None) -> Path:
    """A run directory from a run id (or unique id prefix), a run name, or a path.

    Raises :class:`RunNotFound` naming close matches.
    """
    from tunedeck.runner.rundir import registry

    if not ref or "\x00" in ref:
        raise RunNotFound("empty run reference")
    try:
        p = Path(ref).expanduser()
        is_dir = p.is_dir()
    except (OSError, RuntimeError):  # a name too long to be a path; ~nosuchuser
        p, is_dir = Path(ref), False
    if is_dir:
        if is_run_dir(p):
            return p.resolve()
        raise RunNotFound(f"{ref} is a directory but not a run (no {MANIFEST}, {TRAINER_LOG}, "
                          f"{TRAINER_STATE} or checkpoint-N inside)")
    e = registry.lookup(ref)
    if e is not None and e.run_dir.is_dir():
        return e.run_dir
    known = registry.entries()
    by_prefix = [x for x in known if x.id.startswith(ref)] if registry.is_safe_id(ref) else []
    if len(by_prefix) == 1:
        return by_prefix[0].run_dir
    # Entries pointing at one directory are one run (a registry written before a relaunch
    # replaced the directory's manifest can hold both ids).
    by_name = list({x.run_dir.resolve(): x for x in known if x.name == ref}.values())
    if len(by_name) == 1:
        return by_name[0].run_dir
    if len(by_name) > 1 or len(by_prefix) > 1:
        many = by_name or by_prefix
        raise RunNotFound(
            f"{ref!r} matches {len(many)} runs: " + ", ".join(f"{x.id} ({x.run_dir})" for x in many[:8]),
            hint="use the run id or the path",
        )
    if root is not None:
        hits = [d for d in _discover(Path(root), 4) if d.name == ref]
        if len(hits) == 1:
            return hits[0].resolve()
    names = [x.id for x in known] + [x.name for x in known]
    import difflib

    close = difflib.get_close_matches(ref, names, n=5, cutoff=0.5)
    hint = ("did you mean: " + ", ".join(close)) if close else "`tunedeck runs` lists the runs"
    if e is not None:
        raise RunNotFound(f"run {ref} is registered but its directory {e.run_dir} is gone", hint=hint)
    raise RunNotFound(f"no run {ref!r} (not a run id, a run name or a run directory)", hint=hint)
