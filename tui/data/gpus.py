"""GPU snapshots (the NVML facade: never raises, says N/A) with a short history per GPU."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # loaded by the sampler's thread, not before the dashboard's first frame
    from tunedeck.runner.monitor.nvml import GpuInfo, GpuSnapshot
    from tunedeck.runner.rundir.runs import RunSnapshot

__all__ = ["GpuInfo", "GpuSampler", "GpuSnapshot", "GpuView", "failed_snapshot", "gpu_snapshot"]


@dataclass(frozen=True)
class GpuView:
    snapshot: GpuSnapshot
    history: Mapping[int, tuple[tuple[float, ...], tuple[float, ...]]]  # idx -> (vram %, util %)
    users: Mapping[int, tuple[tuple[str, int], ...]]                    # idx -> ((run name, bytes),)


def gpu_snapshot() -> GpuSnapshot:
    from tunedeck.runner.monitor.nvml import get_nvml

    return get_nvml().snapshot()


def failed_snapshot(message: str) -> GpuSnapshot:
    """What the panel shows when sampling itself failed."""
    from tunedeck.runner.monitor.nvml import GpuSnapshot

    return GpuSnapshot(available=False, message=message, driver_version=None, gpus=(), taken_at=time.time())


class GpuSampler:
    """Keeps a short VRAM/utilisation history per GPU. Used from one worker at a time."""

    def __init__(self, points: int = 120) -> None:
        self._vram: dict[int, deque[float]] = {}
        self._util: dict[int, deque[float]] = {}
        self._points = points

    def sample(self, runs: Sequence[RunSnapshot] = ()) -> GpuView:
        snap = gpu_snapshot()
        for g in snap.gpus:
            v = self._vram.setdefault(g.index, deque(maxlen=self._points))
            u = self._util.setdefault(g.index, deque(maxlen=self._points))
            if g.mem_used is not None and g.mem_total:
                v.append(100.0 * g.mem_used / g.mem_total)
            if g.util_gpu is not None:
                u.append(float(g.util_gpu))
        history = {i: (tuple(self._vram[i]), tuple(self._util.get(i, ()))) for i in self._vram}
        from tunedeck.runner.rundir.procs import gpu_users

        return GpuView(snap, history, gpu_users(snap, runs))
