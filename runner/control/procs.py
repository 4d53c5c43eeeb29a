"""Process identity and signalling that survives pid reuse.

A pid alone names nothing for long: after a process exits the kernel hands the
number to the next one. Every process a run owns is therefore recorded as
``(pid, create_time)``, and nothing here reports a pid as alive, or signals it,
unless its start time still matches.

The read side (:func:`alive`, :func:`create_time`, :class:`ProcId`) is
:mod:`tunedeck.runner.rundir.procs`; it is re-exported here for the supervisor and stop.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable
from typing import Any

from tunedeck.runner.rundir.procs import CREATE_TIME_TOLERANCE as CREATE_TIME_TOLERANCE
from tunedeck.runner.rundir.procs import ProcId as ProcId
from tunedeck.runner.rundir.procs import _proc_stat_fields
from tunedeck.runner.rundir.procs import alive as alive
from tunedeck.runner.rundir.procs import create_time as create_time
from tunedeck.runner.rundir.procs import identify as identify
from tunedeck.runner.rundir.procs import pgid_of as pgid_of
from tunedeck.runner.rundir.procs import ref_alive as ref_alive


def signal_verified(pid: int, ctime: float, sig: int) -> bool:
    """Send ``sig`` to ``pid`` only if it is still the process started at ``ctime``.

    Returns whether the signal was delivered.
    """
    if not alive(pid, ctime):
        return False
    try:
        os.kill(pid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def group_members(pgid: int) -> list[ProcId]:
    """Every live (non-zombie) process whose process group is ``pgid``."""
    if _HAVE_PROC:
        want = b"%d" % pgid
        return _identified(pid for pid, fields in _proc_table() if fields[2] == want)
    import psutil

    out: list[ProcId] = []
    for p in psutil.process_iter(["pid", "create_time", "status"]):
        try:
            if p.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if os.getpgid(p.pid) == pgid:
                out.append(ProcId(p.pid, p.info["create_time"]))
        except (psutil.Error, OSError):
            continue
    return out


_HAVE_PROC = os.path.isdir("/proc/self")


def _proc_table() -> list[tuple[int, list[bytes]]]:
    """(pid, /proc/PID/stat fields after the name) of every running (non-zombie) process,
    read straight from /proc: one small file per process instead of psutil's objects,
    which made the end of every run (the survivors check) cost ~50 ms of CPU."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        fields = _proc_stat_fields(int(name))
        if fields is not None and fields[0] not in (b"Z", b"X"):
            out.append((int(name), fields))
    return out


def _identified(pids: Iterable[int]) -> list[ProcId]:
    return [p for p in (identify(pid) for pid in pids) if p is not None]


def descendants(pid: int, ctime: float) -> list[ProcId]:
    """The live process tree under ``(pid, ctime)``, the root included.

    torchrun starts each worker in a new session, so a process group alone does
    not cover a multi-process run; the tree does, while the parents live.
    """
    if not alive(pid, ctime):
        return []
    if _HAVE_PROC:
        children: dict[int, list[int]] = {}
        for child, fields in _proc_table():
            children.setdefault(int(fields[1]), []).append(child)
        tree: list[int] = []
        stack = [pid]
        while stack:
            for child in children.get(stack.pop(), ()):
                if child not in tree and child != pid:
                    tree.append(child)
                    stack.append(child)
        return [ProcId(pid, ctime), *_identified(tree)]
    import psutil

    try:
        root = psutil.Process(pid)
        kids = root.children(recursive=True)
    except psutil.Error:
        return []
    out = [ProcId(pid, ctime)]
    for k in kids:
        with contextlib.suppress(psutil.Error):
            if k.status() != psutil.STATUS_ZOMBIE:
                out.append(ProcId(k.pid, k.create_time()))
    return out


def survivors(procs: Iterable[ProcId | Any], pgids: Iterable[int] = ()) -> list[ProcId]:
    """Which of ``procs`` (verified by start time) and members of ``pgids`` still run."""
    seen: dict[int, ProcId] = {}
    for p in procs:
        pid = p["pid"] if isinstance(p, dict) else p.pid
        ct = p["create_time"] if isinstance(p, dict) else p.create_time
        if alive(pid, ct):
            seen[int(pid)] = ProcId(int(pid), float(ct))
    for g in pgids:
        if g and g > 1:
            for m in group_members(g):
                seen.setdefault(m.pid, m)
    return sorted(seen.values(), key=lambda p: p.pid)


def signal_all(procs: Iterable[ProcId], pgids: Iterable[int], sig: int) -> int:
    """Signal each process group in ``pgids`` and each verified process; count deliveries.

    Groups are signalled with ``killpg`` only when at least one verified member
    still belongs to them, so a recycled group id is never hit.
    """
    procs = list(procs)
    sent = 0
    live = [p for p in procs if alive(p.pid, p.create_time)]
    live_groups = {pgid_of(p.pid) for p in live}
    for g in pgids:
        if g and g > 1 and g in live_groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(g, sig)
                sent += 1
    for p in live:
        if signal_verified(p.pid, p.create_time, sig):
            sent += 1
    return sent


def wait_gone(
    procs: Iterable[ProcId], pgids: Iterable[int], timeout: float, poll: float = 0.1
) -> list[ProcId]:
    """Poll until none of ``procs``/``pgids`` runs or ``timeout`` passes; the survivors."""
    procs = list(procs)
    pgids = list(pgids)
    deadline = time.monotonic() + max(0.0, timeout)
    while True:
        left = survivors(procs, pgids)
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(poll)


def nvml_holders(pids: Iterable[int]) -> list[tuple[int, int, int | None]]:
    """``(gpu_index, pid, used_bytes)`` for each of ``pids`` NVML says holds GPU memory.

    Empty when there is no driver; never raises.
    """
    wanted = set(pids)
    if not wanted:
        return []
    try:
        from tunedeck.runner.monitor.nvml import get_nvml, pids_on_gpus

        snap = get_nvml().snapshot()
        hits = pids_on_gpus(snap, wanted)
    except Exception:  # NVML is optional; a broken driver must not break a stop
        return []
    return [(idx, p.pid, p.used_bytes) for idx, procs in sorted(hits.items()) for p in procs]



def find_by_env(name: str, value: str, *, exclude: Iterable[int] = ()) -> list[ProcId]:
    """Processes of this user whose environment has ``name=value``.

    Every process of a run inherits ``TUNEDECK_RUN_ID``, even a torchrun worker
    in its own session whose parent is gone: the last word on "did anything of
    this run survive?".
    """
    skip = set(exclude)
    uid = os.getuid()
    if _HAVE_PROC:
        needle = f"\0{name}={value}\0".encode()
        found = []
        for pid, _fields in _proc_table():
            if pid in skip:
                continue
            try:
                with open(f"/proc/{pid}/environ", "rb") as fh:
                    env = b"\0" + fh.read() + b"\0"
            except OSError:  # another user's process, or gone
                continue
            if needle in env and _real_uid(pid) == uid:
                found.append(pid)
        return _identified(found)
    import psutil

    out: list[ProcId] = []
    for p in psutil.process_iter(["pid", "uids", "create_time", "status"]):
        try:
            if p.pid in skip or p.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            uids = p.info["uids"]
            if uids is not None and uids.real != uid:
                continue
            if p.environ().get(name) == value:
                out.append(ProcId(p.pid, p.info["create_time"]))
        except (psutil.Error, OSError):
            continue
    return out


def _real_uid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"Uid:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def cmdline(pid: int) -> list[str]:
    import psutil

    try:
        return psutil.Process(pid).cmdline()
    except (psutil.Error, OSError):
        return []
