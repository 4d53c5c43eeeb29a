"""Host sampling through psutil: CPU, RAM, swap, load, a run's process tree, free disk.

Nothing here raises for a process that vanished or a path that does not exist
yet: the answer is empty or ``None``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

# A process is the one a manifest names only if its start time matches (pid reuse).
# psutil derives create_time from boot time + jiffies: allow for rounding.
CREATE_TIME_TOLERANCE = 0.5


@dataclass(frozen=True)
class HostSnapshot:
    """The machine at one moment; bytes; ``cpu_percent`` is None on the very first sample."""

    cpu_percent: float | None
    mem_used: int
    mem_total: int
    swap_used: int
    swap_total: int
    load_avg: tuple[float, float, float]
    taken_at: float
    cpu_count: int | None = None
    mem_available: int | None = None


_cpu_primed = False
_cpu_lock = threading.Lock()


def host_snapshot(cpu_interval: float | None = None) -> HostSnapshot:
    """CPU (% since the previous call, or over ``cpu_interval`` seconds, blocking), RAM, swap, load."""
    global _cpu_primed
    with _cpu_lock:
        if cpu_interval:
            cpu: float | None = psutil.cpu_percent(interval=cpu_interval)
        else:
            value = psutil.cpu_percent(interval=None)
            # The first non-blocking call has nothing to compare with: psutil says 0.0.
            cpu = value if _cpu_primed else None
        _cpu_primed = True
    vm = psutil.virtual_memory()
    try:
        sw = psutil.swap_memory()
        swap_used, swap_total = int(sw.used), int(sw.total)
    except (OSError, RuntimeError):
        swap_used = swap_total = 0
    try:
        load = tuple(float(x) for x in os.getloadavg())
    except (OSError, AttributeError):
        load = (0.0, 0.0, 0.0)
    return HostSnapshot(
        cpu_percent=cpu,
        mem_used=int(vm.total - vm.available),
        mem_total=int(vm.total),
        swap_used=swap_used,
        swap_total=swap_total,
        load_avg=load,  # type: ignore[arg-type]
        taken_at=time.time(),
        cpu_count=psutil.cpu_count(),
        mem_available=int(vm.available),
    )


@dataclass(frozen=True)
class ProcStat:
    """One process of a run's tree. ``cpu_percent`` is None the first time a process is seen."""

    pid: int
    name: str | None
    cpu_percent: float | None
    rss: int | None
    cmdline: tuple[str, ...]
    ppid: int | None = None
    create_time: float | None = None
    status: str | None = None


# psutil computes cpu_percent against the previous call on the same Process
# object: keep them between calls, keyed by (pid, create_time) so a reused pid is a
# new entry.
_proc_cache: dict[tuple[int, float], psutil.Process] = {}
_proc_lock = threading.Lock()


def _tracked(proc: psutil.Process) -> tuple[psutil.Process, bool]:
    key = (proc.pid, proc.create_time())
    with _proc_lock:
        cached = _proc_cache.get(key)
        if cached is not None:
            return cached, True
        _proc_cache[key] = proc
        return proc, False


def _prune(alive: set[tuple[int, float]]) -> None:
    with _proc_lock:
        for key, proc in list(_proc_cache.items()):
            # is_running() also compares the start time, so a reused pid is dropped.
            if key not in alive and not proc.is_running():
                del _proc_cache[key]


def process_tree(root_pid: int, create_time: float | None = None) -> list[ProcStat]:
    """The root and all its descendants; [] if the root is gone or its pid was reused.

    ``create_time`` is the root's psutil start time as recorded in a manifest;
    when given and different, the pid belongs to another process now.
    """
    try:
        root = psutil.Process(root_pid)
        if (
            create_time is not None
            and abs(root.create_time() - create_time) > CREATE_TIME_TOLERANCE
        ):
            return []
        procs = [root]
        with contextlib.suppress(psutil.Error):  # children vanishing mid-walk
            procs.extend(root.children(recursive=True))
    except (psutil.Error, ValueError, OSError):
        return []
    out: list[ProcStat] = []
    seen: set[tuple[int, float]] = set()
    for raw in procs:
        try:
            proc, known = _tracked(raw)
            seen.add((proc.pid, proc.create_time()))
            with proc.oneshot():
                cpu = proc.cpu_percent(interval=None)
                name = proc.name()
                rss = proc.memory_info().rss
                ppid = proc.ppid()
                status = proc.status()
                ctime = proc.create_time()
            try:
                cmdline = tuple(proc.cmdline())
            except psutil.AccessDenied:
                cmdline = ()
        except psutil.NoSuchProcess:
            continue  # exited while we looked
        except psutil.Error:
            out.append(ProcStat(raw.pid, None, None, None, ()))
            continue
        out.append(ProcStat(proc.pid, name, cpu if known else None, int(rss), cmdline,
                            ppid, ctime, status))  # fmt: skip
    _prune(seen)
    return out


def tree_pids(root_pid: int, create_time: float | None = None) -> set[int]:
    """Just the pids of :func:`process_tree` (cheaper: no per-process stats)."""
    try:
        root = psutil.Process(root_pid)
        if (
            create_time is not None
            and abs(root.create_time() - create_time) > CREATE_TIME_TOLERANCE
        ):
            return set()
        pids = {root.pid}
        pids.update(c.pid for c in root.children(recursive=True))
        return pids
    except (psutil.Error, ValueError, OSError):
        return set()


@dataclass(frozen=True)
class DiskInfo:
    """Free space on the filesystem holding ``path`` (bytes); ``mount`` is its mount point."""

    path: str
    mount: str
    free_bytes: int
    total_bytes: int

    @property
    def used_fraction(self) -> float:
        return 1.0 - self.free_bytes / self.total_bytes if self.total_bytes else 0.0


def _existing_ancestor(p: Path) -> Path | None:
    # An output_dir that does not exist yet lives on its nearest existing parent's disk.
    for candidate in (p, *p.parents):
        if candidate.exists():
            return candidate
    return None


def disk_info(path: str | os.PathLike[str]) -> DiskInfo | None:
    """Free/total bytes of the filesystem holding ``path`` (or its nearest existing parent)."""
    p = Path(os.path.abspath(os.fspath(path)))
    anchor = _existing_ancestor(p)
    if anchor is None:
        return None
    try:
        usage = shutil.disk_usage(anchor)
    except OSError:
        return None
    mount = anchor if anchor.is_dir() else anchor.parent
    try:
        while not os.path.ismount(mount) and mount != mount.parent:
            mount = mount.parent
    except OSError:
        pass
    return DiskInfo(str(p), str(mount), int(usage.free), int(usage.total))


def trees_pids(roots: list[tuple[int, float | None]]) -> list[set[int]]:
    """:func:`tree_pids` for many roots at once, reading the process table once.

    Each root is (pid, create_time or None); a root that is gone or whose pid was
    reused gives an empty set.
    """
    children: dict[int, list[int]] = {}
    try:
        for proc in psutil.process_iter(["ppid"]):
            ppid = proc.info.get("ppid")
            if ppid is not None:
                children.setdefault(ppid, []).append(proc.pid)
    except (psutil.Error, OSError):
        return [tree_pids(pid, ct) for pid, ct in roots]
    out: list[set[int]] = []
    for pid, ctime in roots:
        try:
            if (
                ctime is not None
                and abs(psutil.Process(pid).create_time() - ctime) > CREATE_TIME_TOLERANCE
            ):
                out.append(set())
                continue
        except (psutil.Error, ValueError, OSError):
            out.append(set())
            continue
        seen = {pid}
        stack = [pid]
        while stack:
            for child in children.get(stack.pop(), ()):
                if child not in seen:
                    seen.add(child)
                    stack.append(child)
        out.append(seen)
    return out
