"""The chart and compare screens: curves read from the runs' logs (:mod:`tunedeck.runner.compare`),
what is drawn decided by :mod:`tunedeck.runner.chartdata`."""

from __future__ import annotations

from tunedeck.runner.chartdata import (
    CHART_METRICS,
    X_LABELS,
    Axes,
    ChartLine,
    ChartView,
    axes_of,
    chart_lines,
    ticks,
)
from tunedeck.runner.compare import (
    Comparison,
    RunCurves,
    compare_dirs,
    diff_rows,
    read_curves,
    table_rows,
)

__all__ = ["CHART_METRICS", "X_LABELS", "Axes", "ChartLine", "ChartView", "Comparison", "RunCurves", "axes_of",
           "chart_lines", "compare_dirs", "diff_rows", "read_curves", "table_rows", "ticks"]
