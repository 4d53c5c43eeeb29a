"""What a chart draws, decided without a UI: which metric on which x axis, EMA smoothing
(the raw line kept, faint), zoom to the last N steps, log scale, and the axis bounds
and ticks (min and max always labelled). The TUI's chart and compare screens render
these :class:`ChartLine` lists; tests check them without a terminal.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from tunedeck.runner.compare import RunCurves

# (metric, label, unit) in key order 1..6; "loss" also draws eval_loss on the same axes.
CHART_METRICS: tuple[tuple[str, str, str], ...] = (
    ("loss", "loss", ""),
    ("eval_loss", "eval loss", ""),
    ("lr", "learning rate", ""),
    ("grad_norm", "grad norm", ""),
    ("throughput", "tokens/s", "tok/s"),
    ("vram_reserved", "VRAM", "GiB"),
)
X_LABELS = {"step": "step", "tokens": "tokens seen", "time": "wall time"}
SMOOTHING = (0.0, 0.6, 0.9, 0.97)      # EMA weight of the past; cycled by a key
ZOOMS: tuple[int | None, ...] = (None, 1000, 200, 50)   # last N steps; None = the whole run


@dataclass(frozen=True)
class ChartView:
    metric: str = "loss"
    x: str = "step"
    smoothing: float = 0.0
    zoom: int | None = None
    log_y: bool = False

    def next_x(self) -> ChartView:
        axes = list(X_LABELS)
        return replace(self, x=axes[(axes.index(self.x) + 1) % len(axes)])

    def next_smoothing(self) -> ChartView:
        i = SMOOTHING.index(self.smoothing) if self.smoothing in SMOOTHING else 0
        return replace(self, smoothing=SMOOTHING[(i + 1) % len(SMOOTHING)])

    def next_zoom(self) -> ChartView:
        i = ZOOMS.index(self.zoom) if self.zoom in ZOOMS else 0
        return replace(self, zoom=ZOOMS[(i + 1) % len(ZOOMS)])

    def describe(self) -> str:
        label = dict((m, lab) for m, lab, _ in CHART_METRICS).get(self.metric, self.metric)
        parts = [f"{label} by {X_LABELS.get(self.x, self.x)}"]
        parts.append(f"EMA {self.smoothing:g}" if self.smoothing else "raw")
        parts.append(f"last {self.zoom} steps" if self.zoom else "whole run")
        if self.log_y:
            parts.append("log y")
        return " · ".join(parts)


@dataclass(frozen=True)
class ChartLine:
    label: str
    xs: tuple[float, ...]
    ys: tuple[float, ...]
    run: int            # which run (colour)
    kind: str           # "raw" | "smooth" | "eval"


@dataclass(frozen=True)
class Axes:
    xmin: float
    xmax: float
    ymin: float
    ymax: float


def ema(values: Sequence[float], weight: float) -> list[float]:
    """Exponential moving average with bias correction (TensorBoard's smoothing): the
    first points are not dragged towards zero."""
    if weight <= 0:
        return list(values)
    out: list[float] = []
    acc = 0.0
    for n, v in enumerate(values, 1):
        acc = acc * weight + (1 - weight) * v
        out.append(acc / (1 - weight ** n))
    return out


def _zoomed(steps: Sequence[float], zoom: int | None, last_step: float | None) -> int:
    """Index of the first point within the last ``zoom`` steps."""
    if not zoom or last_step is None:
        return 0
    lo = last_step - zoom
    for i, s in enumerate(steps):
        if s > lo:
            return i
    return len(steps)


def chart_lines(runs: Sequence[tuple[str, RunCurves]], view: ChartView) -> list[ChartLine]:
    """The lines to draw for ``runs`` (label, curves) under ``view``."""
    metrics = [view.metric] + (["eval_loss"] if view.metric == "loss" else [])
    out: list[ChartLine] = []
    for i, (label, cur) in enumerate(runs):
        loss = cur.metrics.get("loss")
        last_step = None
        for m in metrics:
            s = cur.metrics.get(m)
            if s and s.steps:
                last_step = max(last_step or s.steps[-1], s.steps[-1])
        if loss is None and last_step is None:
            continue
        for m in metrics:
            s = cur.metrics.get(m)
            if s is None:
                continue
            xs_all = cur.x(m, view.x)
            start = _zoomed(s.steps, view.zoom, last_step)
            pts = [(x, y) for x, y in zip(xs_all[start:], s.values[start:], strict=True)
                   if x is not None and math.isfinite(y) and (y > 0 or not view.log_y)]
            if not pts:
                continue
            xs = tuple(p[0] for p in pts)
            ys = tuple(p[1] for p in pts)
            if m != view.metric:  # eval loss beside train loss: points, never smoothed
                out.append(ChartLine(f"{label} {m}", xs, ys, i, "eval"))
                continue
            name = label if len(metrics) == 1 else f"{label} {m}"
            if view.smoothing:
                out.append(ChartLine(name + " (raw)", xs, ys, i, "raw"))
                out.append(ChartLine(name, xs, tuple(ema(ys, view.smoothing)), i, "smooth"))
            else:
                out.append(ChartLine(name, xs, ys, i, "smooth"))
    return out


def downsample_xy(xs: Sequence[float], ys: Sequence[float], width: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """At most ``width`` (x, y) points: the mean of each bucket's finite points (x and y
    stay paired, unlike two separate downsamples once a NaN drops a bucket)."""
    n = min(len(xs), len(ys))
    if n == 0 or width <= 0:
        return (), ()
    ox: list[float] = []
    oy: list[float] = []
    cols = min(width, n)
    for col in range(cols):
        lo, hi = col * n // cols, (col + 1) * n // cols
        sx = sy = 0.0
        k = 0
        for j in range(lo, hi):
            y = ys[j]
            if math.isfinite(y):
                sx += xs[j]
                sy += y
                k += 1
        if k:
            ox.append(sx / k)
            oy.append(sy / k)
    return tuple(ox), tuple(oy)


def axes_of(lines: Sequence[ChartLine]) -> Axes | None:
    xs = [x for ln in lines for x in ln.xs]
    ys = [y for ln in lines for y in ln.ys]
    if not xs:
        return None
    return Axes(min(xs), max(xs), min(ys), max(ys))


def fmt_tick(v: float, axis: str = "y") -> str:
    """Short tick labels: 1.2k steps, 3.4M tokens, 1:05:00, 2.5e-04."""
    if axis == "time":
        s = int(round(v))
        h, rem = divmod(s, 3600)
        m, sec = divmod(rem, 60)
        return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"
    a = abs(v)
    if a and (a < 1e-3 or a >= 1e7) and axis == "y":
        return f"{v:.1e}"
    if axis in ("step", "tokens") or a >= 1000:
        for div, suf in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
            if a >= div:
                return f"{v / div:.3g}{suf}"
        return f"{v:.0f}" if float(v).is_integer() or a >= 10 else f"{v:.3g}"
    return f"{v:.4g}"


def ticks(lo: float, hi: float, n: int, axis: str, log: bool = False) -> tuple[list[float], list[str]]:
    """``n`` ticks from ``lo`` to ``hi`` inclusive (the min and max are always labelled)."""
    if n < 2 or hi <= lo:
        return [lo], [fmt_tick(lo, axis)]
    if log and lo > 0:
        a, b = math.log10(lo), math.log10(hi)
        vals = [10 ** (a + (b - a) * k / (n - 1)) for k in range(n)]
    else:
        vals = [lo + (hi - lo) * k / (n - 1) for k in range(n)]
    return vals, [fmt_tick(v, axis) for v in vals]
