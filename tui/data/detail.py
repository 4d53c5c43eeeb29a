"""The selected run: metric series (incremental), the log tail, checkpoints and alerts."""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tunedeck.runner.rundir.protocol import STDOUT_LOG
from tunedeck.tui.data.alerts import Alert, run_alerts

if TYPE_CHECKING:  # the readers load in the sampler's thread, not before the first frame
    from tunedeck.runner.monitor.nvml import GpuSnapshot
    from tunedeck.runner.rundir.checkpoints import CheckpointInfo, CheckpointWatcher
    from tunedeck.runner.rundir.logs import MetricHistory, RunHistory
    from tunedeck.runner.rundir.runs import RunSnapshot

__all__ = ["METRICS", "SPARK_POINTS", "Alert", "CheckpointInfo", "MetricSeries", "RunDetail",
           "RunDetailSampler", "newest_first"]

METRICS: tuple[tuple[str, str], ...] = (
    ("loss", "loss"),
    ("eval_loss", "eval loss"),
    ("lr", "learning rate"),
    ("grad_norm", "grad norm"),
    ("throughput", "tokens/s"),
)
SPARK_POINTS = 400  # enough for any sparkline width; the widget buckets further

XY = tuple[tuple[float, ...], tuple[float, ...]]


@dataclass(frozen=True)
class MetricSeries:
    name: str
    values: tuple[float, ...]      # downsampled for display, NaN/inf removed
    last: float | None
    minimum: float | None
    count: int
    xy: XY = ((), ())              # (steps, values) for the chart


@dataclass(frozen=True)
class RunDetail:
    run_dir: Path
    run: RunSnapshot | None
    series: Mapping[str, MetricSeries]
    log_tail: tuple[str, ...]
    checkpoints: tuple[CheckpointInfo, ...]  # newest first
    alerts: tuple[Alert, ...]
    taken_at: float = field(default_factory=time.time)
    has_stdout_log: bool = True    # False: the run directory has no stdout.log at all


# per (run, metric): points folded in, rewinds seen, minimum, sparkline points, chart points
_Cached = tuple[int, int, float | None, tuple[float, ...], XY]


class RunDetailSampler:
    """Incremental readers for the selected run; only one worker uses it at a time.

    Each sample reads only what was appended. Per metric, the count, last and
    minimum are updated incrementally; the (downsampled) sparkline series is
    computed only for the metric on screen and only when its history grew, so a
    long run (a million log lines) costs the same per second as a short one.
    """

    def __init__(self) -> None:
        self._histories: dict[Path, RunHistory] = {}
        self._ckpt: dict[Path, CheckpointWatcher] = {}
        self._series: dict[tuple[Path, str], _Cached] = {}
        # The readers keep byte offsets: two threads polling one would read a chunk twice.
        # The app has one sample in flight; the lock covers a test's sample_once beside it.
        self._lock = threading.Lock()

    def forget(self, keep: set[Path]) -> None:
        with self._lock:
            self._forget(keep)

    def _forget(self, keep: set[Path]) -> None:
        for d in list(self._histories):
            if d not in keep:
                self._histories.pop(d, None)
                self._ckpt.pop(d, None)
                for key in [k for k in self._series if k[0] == d]:
                    self._series.pop(key, None)

    def history(self, run_dir: Path) -> RunHistory:
        from tunedeck.runner.rundir.logs import RunHistory

        h = self._histories.get(run_dir)
        if h is None:
            h = self._histories[run_dir] = RunHistory(run_dir)
        return h

    def _metric(self, run_dir: Path, hist: MetricHistory, name: str, shown: bool) -> MetricSeries:
        vals = hist.values(name)
        n = len(vals)
        rewinds = hist.rewinds
        cached = self._series.get((run_dir, name))
        minimum: float | None
        points: tuple[float, ...]
        xy: XY
        if cached is not None and cached[1] == rewinds and cached[0] <= n:
            done, _, minimum, points, xy = cached
        else:
            done, minimum, points, xy = 0, None, (), ((), ())
        if n > done:  # fold in only what is new
            new_min = min((v for v in vals[done:] if math.isfinite(v)), default=None)
            if new_min is not None and (minimum is None or new_min < minimum):
                minimum = new_min
        if shown and (n != done or (not points and n)):
            from tunedeck.runner.chartdata import downsample_xy
            from tunedeck.runner.rundir.logs import downsample

            points = tuple(downsample(vals, SPARK_POINTS))
            xy = downsample_xy(hist.steps(name), vals, SPARK_POINTS)
        elif not shown:
            points = points if n == done else ()  # stale series are dropped, not shown
            xy = xy if n == done else ((), ())
        self._series[(run_dir, name)] = (n, rewinds, minimum, points, xy)
        last = next((vals[k] for k in range(n - 1, max(-1, n - 50), -1) if math.isfinite(vals[k])), None)
        return MetricSeries(name, points, last, minimum, n, xy)

    def sample(self, run_dir: Path, run: RunSnapshot | None, gpus: GpuSnapshot | None = None,
               tail_lines: int = 60, metric: str = "loss") -> RunDetail:
        with self._lock:
            return self._sample(run_dir, run, gpus, tail_lines, metric)

    def _sample(self, run_dir: Path, run: RunSnapshot | None, gpus: GpuSnapshot | None,
                tail_lines: int, metric: str) -> RunDetail:
        from tunedeck.runner.rundir import logs

        follower = self.history(run_dir)
        with contextlib.suppress(Exception):
            follower.poll()
        hist = follower.history
        # Eval loss is drawn on the loss chart's axes: sampled with it.
        series = {name: self._metric(run_dir, hist, name,
                                     shown=name == metric or (metric, name) == ("loss", "eval_loss"))
                  for name, _ in METRICS}
        try:
            tail = tuple(logs.tail_lines(run_dir / STDOUT_LOG, tail_lines))
        except Exception:  # noqa: BLE001
            tail = ()
        has_log = bool(tail) or (run_dir / STDOUT_LOG).exists()
        try:
            cks = self._checkpoints(run_dir, hist)
        except Exception:  # noqa: BLE001
            cks = ()
        alerts = run_alerts(run_dir, run, cks, gpus)
        return RunDetail(run_dir, run, series, tail, cks, alerts, has_stdout_log=has_log)

    def _checkpoints(self, run_dir: Path, hist: MetricHistory) -> tuple[CheckpointInfo, ...]:
        from tunedeck.runner.rundir.checkpoints import CheckpointWatcher

        watcher = self._ckpt.get(run_dir)
        if watcher is None:
            watcher = self._ckpt[run_dir] = CheckpointWatcher(run_dir)
        return newest_first(watcher.poll(hist))


def newest_first(cks: Iterable[CheckpointInfo]) -> tuple[CheckpointInfo, ...]:
    return tuple(sorted(cks, key=lambda c: c.step, reverse=True))
