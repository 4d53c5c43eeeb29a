"""The selected run: header, triage banner, metric sparkline with last/min, log tail, checkpoints."""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

from rich.markup import escape
from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.reactive import reactive
from textual.widget import MountError, Widget
from textual.widgets import Sparkline, Static

from tunedeck.tui import format as fmt
from tunedeck.tui.data.charts import ChartLine, ChartView
from tunedeck.tui.data.detail import METRICS, RunDetail
from tunedeck.tui.data.runs import RunStatus
from tunedeck.tui.widgets.palette import Palette

if TYPE_CHECKING:
    from tunedeck.tui.widgets.curve_chart import CurveChart

CHART_MIN_HEIGHT = 10  # rows the metric panel needs for a chart with axes (else a sparkline)
CHART_MIN_WIDTH = 40


def _mean(values: Sequence[float]) -> float:
    return statistics.fmean(values) if values else 0.0


class LogTail(Widget):
    """The newest lines of stdout.log that fit, newest at the bottom.

    How many fit is decided when it renders, from its own size, so a layout change
    (the triage banner appearing, a resize) never leaves the newest line cut off.
    """

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002 - Textual's name
        super().__init__(id=id)
        self._lines: tuple[str, ...] = ()
        self._empty = ""

    def set_lines(self, lines: Sequence[str], empty: str = "") -> None:
        lines = tuple(lines)
        if lines != self._lines or empty != self._empty:
            self._lines, self._empty = lines, empty
            self.refresh()

    def render(self) -> Text:
        height = max(1, self.size.height)
        t = Text(no_wrap=True, overflow="ellipsis")
        for i, line in enumerate(self._lines[-height:]):
            if i:
                t.append("\n")
            t.append(line.replace("\r", "").expandtabs(4))
        if not self._lines:
            t.append(self._empty)
        return t


class MetricPanel(Vertical):
    """The chosen metric's sparkline (mean per column) plus its last and minimum as text."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {"metric-panel--muted"}
    """
    | Class | Description |
    | :- | :- |
    | `metric-panel--muted` | The metrics not shown in the tabs, the labels of the stats. |
    """

    DEFAULT_CSS = """
    MetricPanel > .metric-panel--muted { color: $muted; }
    """

    metric: reactive[str] = reactive("loss")
    _detail: RunDetail | None = None
    _ready = False
    _last_key: object = None

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002 - Textual's name
        super().__init__(id=id)
        self.palette = Palette(self, "metric-panel")

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self.call_later(self._recolour_if_changed)  # once the component classes are styled

    def _recolour_if_changed(self) -> None:
        if self.palette.changed():
            self.show(self._detail, force=True)

    def compose(self) -> ComposeResult:
        yield Static(id="metric-tabs")
        yield Sparkline([], summary_function=_mean, id="metric-spark")
        # The chart (plotext) is mounted the first time there is something to chart: the
        # dashboard's first frame does not wait for plotext's import.
        yield Static(id="metric-stats")

    def on_mount(self) -> None:
        self._ready = bool(self.query("#metric-tabs"))  # not when torn down at start-up
        self.show(self._detail)

    def on_resize(self) -> None:
        # The chart or the sparkline is chosen by this panel's size: choose again once it is
        # laid out (a first sample can arrive before that) and whenever it changes.
        self.show(self._detail)

    def show(self, detail: RunDetail | None, *, force: bool = False) -> None:
        self._detail = detail
        if not self._ready:
            return  # shown from on_mount, once the children exist
        key = (self.metric, detail.series.get(self.metric) if detail else None,
               detail.series.get("eval_loss") if detail else None, tuple(self.size))
        if not force and key == self._last_key:
            return
        self._last_key = key
        muted = self.palette("muted")
        tabs = Text()
        for i, (name, label) in enumerate(METRICS, 1):
            if i > 1:
                tabs.append(" ")
            style = "reverse bold" if name == self.metric else muted
            tabs.append(f"{i} {label}", style=style)
        self.query_one("#metric-tabs", Static).update(tabs)
        series = detail.series.get(self.metric) if detail else None
        spark = self.query_one("#metric-spark", Sparkline)
        values = list(series.values) if series else []
        # A chart with axes where it fits; the one-line sparkline where space is tight.
        use_chart = self.size.height >= CHART_MIN_HEIGHT and self.size.width >= CHART_MIN_WIDTH
        spark.display = bool(values) and not use_chart
        chart = self._chart(create=bool(values) and use_chart)
        if chart is not None:
            chart.display = bool(values) and use_chart
        if chart is not None and use_chart:
            lines = []
            if series and series.xy[0]:
                lines.append(ChartLine(dict(METRICS)[self.metric], *series.xy, 0, "smooth"))
            ev = detail.series.get("eval_loss") if detail and self.metric == "loss" else None
            if ev is not None and ev.xy[0]:
                lines.append(ChartLine("eval loss", *ev.xy, 0, "eval"))
            chart.set_lines(lines, ChartView(metric=self.metric))
        elif values != list(spark.data or []):
            spark.data = values
        stats = self.query_one("#metric-stats", Static)
        if not series or not series.count:
            stats.update(Text(f"no {dict(METRICS)[self.metric]} logged yet", style=muted))
            return
        t = Text()
        t.append("last ", style=muted)
        t.append(fmt.number(series.last), style="bold")
        t.append("  min ", style=muted)
        t.append(fmt.number(series.minimum), style="bold")
        t.append(f"  ({series.count} points)", style=muted)
        stats.update(t)


    def _chart(self, *, create: bool) -> CurveChart | None:
        """The chart widget; mounted on first need when ``create``."""
        from tunedeck.tui.widgets.curve_chart import CurveChart

        found = self.query("#metric-chart")
        if found:
            return found.first(CurveChart)
        if not create:
            return None
        chart = CurveChart(id="metric-chart")
        self.mount(chart, before=self.query_one("#metric-stats"))
        return chart


class RunPanel(Vertical):
    """Everything about the selected run; renders a :class:`RunDetail` snapshot."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "run-panel--status-running",
        "run-panel--status-finished",
        "run-panel--status-stopped",
        "run-panel--status-failed",
        "run-panel--muted",
    }
    """
    | Class | Description |
    | :- | :- |
    | `run-panel--status-running` | The header's status: starting, running. |
    | `run-panel--status-finished` | The header's status: finished. |
    | `run-panel--status-stopped` | The header's status: stopping, stopped, preempted. |
    | `run-panel--status-failed` | The header's status: failed, oom, diverged, killed, lost. |
    | `run-panel--muted` | Directory, pids, "none yet", and a status word we do not know (bold). |
    """

    DEFAULT_CSS = """
    RunPanel {
        & > .run-panel--status-running { color: $status-running; text-style: bold; }
        & > .run-panel--status-finished { color: $status-finished; text-style: bold; }
        & > .run-panel--status-stopped { color: $status-stopped; text-style: bold; }
        & > .run-panel--status-failed { color: $status-failed; text-style: bold; }
        & > .run-panel--muted { color: $muted; }
    }
    """

    detail: RunDetail | None = None
    metric = "loss"
    _body_ready = False

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._shown: dict[str, Text] = {}
        self.palette = Palette(self, "run-panel")

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self.call_later(self._recolour_if_changed)  # once the component classes are styled

    def _recolour_if_changed(self) -> None:
        if self.palette.changed() and self.is_mounted:
            with contextlib.suppress(NoMatches):  # the app closes
                self._repaint_text()

    def _repaint_text(self) -> None:
        """The header and the checkpoints again, in the new colours (the metric panel
        repaints itself)."""
        self._show(self.detail, force=True, metric_panel=False)

    def compose(self) -> ComposeResult:
        yield Static(id="run-header")
        yield Static(id="run-alert")

    def on_mount(self) -> None:
        self.query_one("#run-alert", Static).display = False
        self.show(None)
        # The body (sparkline, checkpoints, log) comes right after the first frame:
        # the dashboard paints sooner, and there is nothing to plot before a sample.
        self.call_after_refresh(self._build_body)

    async def _build_body(self) -> None:
        if self._body_ready or not self.is_mounted:
            return  # already built, or the app is closing before its first sample
        panel = MetricPanel(id="metric-panel")
        panel.metric = self.metric
        left = Vertical(panel, Static(id="run-checkpoints"), id="run-left")
        body = Horizontal(left, LogTail(id="run-log"), id="run-body")
        try:
            await self.mount(body)
        except MountError:
            return  # the app closed before its first sample
        self._body_ready = True
        with contextlib.suppress(NoMatches):  # the app closed while the body was mounting
            self.show(self.detail, force=True)

    def on_resize(self) -> None:
        if self._body_ready:
            self.show(self.detail, force=True)  # the sparkline and checkpoints follow the new size

    def set_metric(self, metric: str) -> None:
        self.metric = metric
        if self._body_ready:
            panel = self.query_one(MetricPanel)
            panel.metric = metric
            panel.show(self.detail, force=True)

    def show(self, detail: RunDetail | None, *, force: bool = False) -> None:
        self._show(detail, force=force, metric_panel=True)

    def _show(self, detail: RunDetail | None, *, force: bool, metric_panel: bool) -> None:
        if not force and detail is not None and self.detail is not None and self._body_ready and \
                _same(detail, self.detail):
            # Nothing new to read: only the checkpoints' ages move on ("12s ago" must not
            # freeze); _put repaints only when their text changed.
            self.detail = detail
            self._put(self.query_one("#run-checkpoints", Static), self._checkpoints(detail), False)
            return
        self.detail = detail
        paint = self.palette
        header = self.query_one("#run-header", Static)
        alert = self.query_one("#run-alert", Static)
        if detail is None or detail.run is None:
            header.update(Text("No run selected. Launch one from a config (n: new, o: open).",
                               style=paint("muted")))
            alert.display = False
            if not self._body_ready:
                return
            if metric_panel:
                self.query_one(MetricPanel).show(None)
            self.query_one("#run-checkpoints", Static).update("")
            self.query_one(LogTail).set_lines(())
            return
        run = detail.run
        status = run.status
        h = Text()
        h.append(run.name or run.id, style="bold")
        h.append("  ")
        h.append_text(fmt.status_text(status, self._status_paint))
        if run.total_steps:
            h.append(f"  step {run.current_steps or 0}/{run.total_steps}")
        if status in (RunStatus.RUNNING, RunStatus.STARTING) and run.eta_seconds is not None:
            h.append(f"  ETA {fmt.duration(run.eta_seconds)}")
        pids = list(run.pids)
        if pids and (run.active or status is RunStatus.LOST):  # not the pids of a run long gone
            h.append(f"  pid {','.join(map(str, pids[:3]))}", style=paint("muted"))
        h.append(f"\n{run.run_dir}", style=paint("muted"))
        self._put(header, h, force)
        if detail.alerts:
            self._put(alert, Text("\n".join(f"⚠ {a.text}" for a in detail.alerts)), force)
            alert.display = True
        else:
            alert.display = False
        if not self._body_ready:
            return
        if metric_panel:
            self.query_one(MetricPanel).show(detail, force=force)
        self._put(self.query_one("#run-checkpoints", Static), self._checkpoints(detail), force)
        self.query_one(LogTail).set_lines(detail.log_tail, _no_log_text(detail))

    def _status_paint(self, role: str) -> Style:
        """Status words are bold, the unknown one (muted) too."""
        style = self.palette(role)
        return style + Style(bold=True) if role == "muted" else style

    def _put(self, widget: Static, text: Text, force: bool) -> None:
        """Update only what changed: a repaint per sample adds up on an idle dashboard."""
        key = widget.id or ""
        if force or self._shown.get(key) != text:
            self._shown[key] = text
            widget.update(text)

    def _checkpoints(self, detail: RunDetail) -> Text:
        t = Text("Checkpoints", style="bold")
        if not detail.checkpoints:
            t.append("  none yet", style=self.palette("muted"))
            return t
        now = time.time()
        for c in detail.checkpoints[:4]:
            ok = "✔" if c.complete else "… incomplete"
            shown = fmt.checkpoint_metric(c.loss, c.loss_step, c.step)
            loss = f" loss {shown}" if shown else ""
            ago = fmt.duration(now - c.mtime, coarse=True)
            t.append(f"\n step {c.step:<6} {ago:>7} ago  {fmt.size(c.size_bytes):>9}{loss} {ok}")
        if len(detail.checkpoints) > 4:
            t.append(f"\n +{len(detail.checkpoints) - 4} older (c)", style=self.palette("muted"))
        return t



__all__ = ["LogTail", "MetricPanel", "RunPanel", "escape"]


def _no_log_text(detail: RunDetail) -> str:
    """What the log pane says when it has no line to show."""
    if detail.has_stdout_log:
        return "(stdout.log is empty)"
    if detail.run is not None and detail.run.kind != "tunedeck":
        return "(no stdout.log: this run was not started by tunedeck, so its output is not captured here)"
    return "(no stdout.log yet)"


def _same(a: RunDetail, b: RunDetail) -> bool:
    """Equal but for the sampling time."""
    return (a.run_dir, a.run, a.series, a.log_tail, a.checkpoints, a.alerts, a.has_stdout_log) == \
        (b.run_dir, b.run, b.series, b.log_tail, b.checkpoints, b.alerts, b.has_stdout_log)
