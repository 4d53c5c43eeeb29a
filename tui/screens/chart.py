"""The chart screen (one run, every metric, axes) and the compare screen (marked runs'
curves overlaid, the compare table with deltas to a baseline, the hyperparameter diff).

The curves and the comparison come from :mod:`tunedeck.tui.data.charts` in a thread
worker (which also decides what is drawn).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Static

from tunedeck.tui.data.charts import (
    CHART_METRICS,
    ChartView,
    Comparison,
    RunCurves,
    chart_lines,
    compare_dirs,
    diff_rows,
    read_curves,
    table_rows,
)
from tunedeck.tui.screens.base import RegistryScreen
from tunedeck.tui.widgets.curve_chart import CurveChart
from tunedeck.tui.widgets.footer import AppFooter

RELOAD_EVERY = 5.0


class ChartScreen(RegistryScreen[None]):
    """``runs``: (label, run_dir) pairs; two or more make it the compare screen."""

    SCOPE = "chart"
    DEFAULT_CSS = """
    ChartScreen { layout: vertical; }
    ChartScreen #chart-title { height: 1; padding: 0 1; text-style: bold; }
    ChartScreen #chart { height: 1fr; min-height: 8; }
    ChartScreen #chart-tables { height: auto; max-height: 45%; }
    ChartScreen #compare-table { width: auto; max-width: 70%; height: auto; max-height: 100%; }
    ChartScreen #diff-table { width: 1fr; height: auto; max-height: 100%; margin-left: 1; }
    ChartScreen #chart-keys { height: 1; padding: 0 1; color: $text-muted; }
    """

    def __init__(self, runs: list[tuple[str, Path]], *, view: ChartView | None = None) -> None:
        super().__init__(id="chart-screen")
        self.runs = [(label, Path(d)) for label, d in runs]
        self.compare_mode = len(self.runs) > 1
        self.view = view or ChartView()
        self.baseline = 0
        self.curves: list[tuple[str, RunCurves]] = []
        self.comparison: Comparison | None = None
        self.loaded = False
        self._sizes: tuple[int, ...] = ()

    def compose(self) -> ComposeResult:
        names = ", ".join(label for label, _ in self.runs)
        title = f"Compare {len(self.runs)} runs: {names}" if self.compare_mode else f"Chart: {names}"
        yield Static(title, id="chart-title")
        yield CurveChart(id="chart")
        if self.compare_mode:
            with Horizontal(id="chart-tables"):
                yield DataTable(id="compare-table", cursor_type="row", zebra_stripes=False)
                yield DataTable(id="diff-table", cursor_type="none", zebra_stripes=False)
        yield Static(self._keys_text(), id="chart-keys")
        yield AppFooter()

    def _keys_text(self) -> str:
        return ("1-6 metric  x axis  s smooth  z zoom  L log  "
                + ("b baseline  " if self.compare_mode else "") + "r reload  esc back")

    def on_mount(self) -> None:
        self.query_one(CurveChart).set_lines([], self.view, "reading the logs...")
        self.load()
        self.set_interval(RELOAD_EVERY, self._maybe_reload)

    # -- loading -------------------------------------------------------------
    def _log_sizes(self) -> tuple[int, ...]:
        out = []
        for _, d in self.runs:
            try:
                out.append((d / "trainer_log.jsonl").stat().st_size)
            except OSError:
                out.append(-1)
        return tuple(out)

    def _maybe_reload(self) -> None:
        if self._log_sizes() != self._sizes:
            self.load()

    @work(thread=True, exclusive=True, group="chart-load", exit_on_error=False)
    def load(self) -> None:
        sizes = self._log_sizes()
        labels = [label for label, _ in self.runs]
        dirs = [d for _, d in self.runs]
        try:
            if self.compare_mode:
                comp = compare_dirs(dirs, labels, self.baseline)
                curves = list(zip(labels, comp.curves, strict=True))
            else:
                comp = None
                curves = [(labels[0], read_curves(dirs[0]))]
        except Exception as exc:  # noqa: BLE001 - a damaged run must not close the screen
            self.app.call_from_thread(self.notify, f"cannot read the runs: {exc}", severity="error")
            return
        self.app.call_from_thread(self._loaded, curves, comp, sizes)

    def _loaded(self, curves: list[tuple[str, RunCurves]], comp: Comparison | None,
                sizes: tuple[int, ...]) -> None:
        self.curves = curves
        self.comparison = comp
        self._sizes = sizes
        self.loaded = True
        self.redraw()
        if comp is not None:
            self._fill_tables(comp)

    # -- drawing ---------------------------------------------------------------
    def redraw(self) -> None:
        label = dict((m, lab) for m, lab, _ in CHART_METRICS).get(self.view.metric, self.view.metric)
        self.query_one(CurveChart).set_lines(chart_lines(self.curves, self.view), self.view,
                                             f"no {label} logged")

    def _fill_tables(self, comp: Comparison) -> None:
        for table_id, rows in (("#compare-table", table_rows(comp)), ("#diff-table", diff_rows(comp))):
            table = self.query_one(table_id, DataTable)
            table.clear(columns=True)
            header, *body = rows
            if table_id == "#diff-table" and not body:
                header, body = ["KEY"], [["no hyperparameter differs"]]
            for i, col in enumerate(header):
                table.add_column(col, key=str(i))
            for r in body:
                table.add_row(*r)

    # -- actions (ids and keys in tui/actions.py) ---------------------------------
    def action_metric(self, name: str) -> None:
        self.view = replace(self.view, metric=name)
        self.redraw()

    def action_next_x(self) -> None:
        self.view = self.view.next_x()
        self.redraw()

    def action_smooth(self) -> None:
        self.view = self.view.next_smoothing()
        self.redraw()

    def action_zoom(self) -> None:
        self.view = self.view.next_zoom()
        self.redraw()

    def action_log_scale(self) -> None:
        self.view = replace(self.view, log_y=not self.view.log_y)
        self.redraw()

    def action_reload(self) -> None:
        self.load()

    def action_next_baseline(self) -> None:
        if not self.compare_mode:
            return
        self.baseline = (self.baseline + 1) % len(self.runs)
        self.notify(f"baseline: {self.runs[self.baseline][0]}")
        self.load()

    def action_back(self) -> None:
        self.app.pop_screen()


__all__ = ["ChartScreen", "Vertical"]
