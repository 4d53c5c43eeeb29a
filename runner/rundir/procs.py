"""Processes of a run: liveness that survives pid reuse, and which run owns a pid or a GPU.

A pid alone names nothing for long: after a process exits the kernel hands the
number to the next one. Every process a run owns is therefore recorded as
``(pid, create_time)``, and nothing reports a pid as alive unless its start time
still matches. The read side parses ``/proc`` directly on Linux, so ``tunedeck
status`` does not pay for importing psutil; psutil is the fallback elsewhere and the
tool for walking process trees. Signalling is :mod:`tunedeck.runner.control.procs`.

A run's manifest names its supervisor, trainer and every process it saw; their
process trees are the run's processes. :func:`owning_run` is THE rule for "which run
holds this pid" (and so "which run uses this GPU": :func:`gpu_users`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from tunedeck.runner.rundir.discover import discover_runs
from tunedeck.runner.rundir.manifest import read_manifest

# ----------------------------------------------------------------------------
# Liveness
# ----------------------------------------------------------------------------
# psutil's create_time is (starttime ticks / CLK_TCK) + btime; /proc/stat's btime
# can move by a second when the wall clock is stepped, so matching allows slack.
# A pid being recycled within half a second of the original's start is not a
# realistic event (it needs the whole pid space to wrap in that time).
CREATE_TIME_TOLERANCE = 0.5

_BOOT_TIME: float | None = None
_CLK_TCK: int | None = None


@dataclass(frozen=True)
class ProcId:
    """A process as we recorded it: pid plus start time (seconds since the epoch)."""

    pid: int
    create_time: float


def _boot_time() -> float | None:
    global _BOOT_TIME
    if _BOOT_TIME is None:
        try:
            with open("/proc/stat", "rb") as fh:
                for line in fh:
                    if line.startswith(b"btime"):
                        _BOOT_TIME = float(line.split()[1])
                        break
        except OSError:
            return None
    return _BOOT_TIME


def _proc_stat_fields(pid: int) -> list[bytes] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may contain spaces or ')'.
    end = raw.rfind(b")")
    if end < 0:
        return None
    return raw[end + 2 :].split()


def create_time(pid: int) -> float | None:
    """Start time of ``pid`` as psutil reports it, or ``None`` if no such process."""
    if pid <= 0:
        return None
    global _CLK_TCK
    if os.path.isdir("/proc/self"):
        fields = _proc_stat_fields(pid)
        if fields is None:
            return None
        # fields[0] is the state (field 3); starttime is field 22 -> index 19.
        if fields[0] in (b"Z", b"X"):
            return None  # a zombie holds its pid but is no longer running
        bt = _boot_time()
        if bt is None:
            return None
        if _CLK_TCK is None:
            _CLK_TCK = os.sysconf("SC_CLK_TCK")
        try:
            return float(fields[19]) / _CLK_TCK + bt
        except (IndexError, ValueError):
            return None
    import psutil  # not Linux: let psutil do it

    try:
        p = psutil.Process(pid)
        if p.status() == psutil.STATUS_ZOMBIE:
            return None
        return p.create_time()
    except (psutil.Error, OSError):
        return None


def pgid_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def alive(pid: int | None, ctime: float | None) -> bool:
    """Is the process we recorded as ``(pid, ctime)`` still running?

    A reused pid (same number, different start time) and a zombie are not alive.
    """
    # The pair comes from a file anyone may have damaged: anything but a positive int pid
    # and a finite number of seconds names no process ("abc", NaN, true, 1e999, a list).
    if type(pid) is not int or pid <= 0 or isinstance(ctime, bool) or not isinstance(ctime, (int, float)):
        return False
    if not math.isfinite(ctime):
        return False
    actual = create_time(pid)
    return actual is not None and abs(actual - float(ctime)) <= CREATE_TIME_TOLERANCE


def ref_alive(ref: Any) -> bool:
    """:func:`alive` for anything with ``pid``/``create_time`` (ProcRef, dict, ProcId)."""
    if ref is None:
        return False
    if isinstance(ref, dict):
        return alive(ref.get("pid"), ref.get("create_time"))
    return alive(getattr(ref, "pid", None), getattr(ref, "create_time", None))


def identify(pid: int) -> ProcId | None:
    """``pid`` with its start time, or ``None`` when it does not run."""
    ct = create_time(pid)
    return ProcId(pid, ct) if ct is not None else None



# ----------------------------------------------------------------------------
# A run's processes
# ----------------------------------------------------------------------------
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
    from tunedeck.runner.monitor.host import trees_pids  # psutil: only for the tree walk

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


# ----------------------------------------------------------------------------
# Which run owns a pid / a GPU
# ----------------------------------------------------------------------------
MAX_TREE_DEPTH = 32  # a process tree deeper than this is not a training run


def parent_pid(pid: int) -> int | None:
    """Parent pid from ``/proc`` (psutil elsewhere); ``None`` when gone or unknown."""
    fields = _proc_stat_fields(pid)
    if fields is not None:
        try:
            return int(fields[1])
        except (IndexError, ValueError):
            return None
    try:
        import psutil

        return int(psutil.Process(pid).ppid())
    except Exception:  # noqa: BLE001 - gone, or not ours to see
        return None


class _HasPids(Protocol):
    @property
    def pids(self) -> Iterable[int]: ...


R = TypeVar("R", bound=_HasPids)


def owner_table(runs: Iterable[R]) -> dict[int, R]:
    """pid -> run for every pid a run records or holds (the first run to name a pid wins)."""
    owners: dict[int, R] = {}
    for r in runs:
        for pid in r.pids or ():
            owners.setdefault(pid, r)
    return owners


def owning_run(pid: int, owners: Mapping[int, R],
               parents: dict[int, int | None] | None = None) -> R | None:
    """The run that owns ``pid``: the pid itself or its nearest ancestor is one a run
    records (``owners`` from :func:`owner_table`). ``parents`` caches parent lookups
    across calls; the cost grows with the processes asked about, not with the machine."""
    cache = parents if parents is not None else {}
    for _ in range(MAX_TREE_DEPTH):
        if pid in owners:
            return owners[pid]
        if pid not in cache:
            cache[pid] = parent_pid(pid)
        nxt = cache[pid]
        if nxt is None or nxt <= 1:
            return None
        pid = nxt
    return None


class _Named(_HasPids, Protocol):
    @property
    def name(self) -> str: ...


def gpu_users(snapshot: Any, runs: Sequence[_Named]) -> dict[int, tuple[tuple[str, int], ...]]:
    """GPU index -> ((run name, bytes), ...), biggest first: each GPU process is given to
    :func:`owning_run`. A process whose memory the driver cannot tell counts as 0 bytes
    (the run is still listed on that GPU)."""
    if not getattr(snapshot, "available", False) or not runs:
        return {}
    owners = owner_table(runs)
    if not owners:
        return {}
    parents: dict[int, int | None] = {}
    out: dict[int, dict[str, int]] = {}
    for g in snapshot.gpus:
        for proc in g.processes:
            run = owning_run(proc.pid, owners, parents)
            if run is not None:
                per = out.setdefault(g.index, {})
                per[run.name] = per.get(run.name, 0) + (proc.used_bytes or 0)
    return {i: tuple(sorted(per.items(), key=lambda kv: (-kv[1], kv[0]))) for i, per in out.items()}
