"""The selected run: header, triage banner, metric sparkline with last/min, log tail, checkpoints."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Sequence

from rich.markup import escape
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.reactive import reactive
from textual.widgets import Sparkline, Static

from tui import format as fmt
from tui.data import METRICS, RunDetail


def _mean(values: Sequence[float]) -> float:
    return statistics.fmean(values) if values else 0.0


class MetricPanel(Vertical):
    """The chosen metric's sparkline (mean per column) plus its last and minimum as text."""

    metric: reactive[str] = reactive("loss")

    def compose(self) -> ComposeResult:
        yield Static(id="metric-tabs")
        yield Sparkline([], summary_function=_mean, id="metric-spark")
        yield Static(id="metric-stats")

    def show(self, detail: RunDetail | None) -> None:
        var = self.app.theme_variables
        tabs = Text()
        for i, (name, label) in enumerate(METRICS, 1):
            if i > 1:
                tabs.append(" ")
            style = "reverse bold" if name == self.metric else fmt.style_for(var, "muted")
            tabs.append(f"{i} {label}", style=style)
        self.query_one("#metric-tabs", Static).update(tabs)
        series = detail.series.get(self.metric) if detail else None
        spark = self.query_one("#metric-spark", Sparkline)
        values = list(series.values) if series else []
        spark.display = bool(values)
        if values != list(spark.data or []):
            spark.data = values
        stats = self.query_one("#metric-stats", Static)
        if not series or not series.count:
            stats.update(Text(f"no {dict(METRICS)[self.metric]} logged yet", style=fmt.style_for(var, "muted")))
            return
        t = Text()
        t.append("last ", style=fmt.style_for(var, "muted"))
        t.append(fmt.number(series.last), style="bold")
        t.append("  min ", style=fmt.style_for(var, "muted"))
        t.append(fmt.number(series.minimum), style="bold")
        t.append(f"  ({series.count} points)", style=fmt.style_for(var, "muted"))
        stats.update(t)


class RunPanel(Vertical):
    """Everything about the selected run; renders a :class:`RunDetail` snapshot."""

    detail: RunDetail | None = None

    def compose(self) -> ComposeResult:
        yield Static(id="run-header")
        yield Static(id="run-alert")
        with Horizontal(id="run-body"):
            with Vertical(id="run-left"):
                yield MetricPanel(id="metric-panel")
                yield Static(id="run-checkpoints")
            yield Static(id="run-log", markup=False)

    def on_mount(self) -> None:
        self.query_one("#run-alert", Static).display = False
        self.show(None)

    def set_metric(self, metric: str) -> None:
        panel = self.query_one(MetricPanel)
        panel.metric = metric
        panel.show(self.detail)

    def show(self, detail: RunDetail | None) -> None:
        self.detail = detail
        var = self.app.theme_variables
        header = self.query_one("#run-header", Static)
        alert = self.query_one("#run-alert", Static)
        if detail is None or detail.run is None:
            header.update(Text("No run selected. Launch one from a config (n: new, o: open).",
                               style=fmt.style_for(var, "muted")))
            alert.display = False
            self.query_one(MetricPanel).show(None)
            self.query_one("#run-checkpoints", Static).update("")
            self.query_one("#run-log", Static).update("")
            return
        run = detail.run
        status = str(getattr(run.status, "value", run.status))
        h = Text()
        h.append(run.name or run.id, style="bold")
        h.append("  ")
        h.append_text(fmt.status_text(status, var))
        if run.total_steps:
            h.append(f"  step {run.current_steps or 0}/{run.total_steps}")
        if status in ("running", "starting") and run.eta_seconds is not None:
            h.append(f"  ETA {fmt.duration(run.eta_seconds)}")
        pids = list(getattr(run, "pids", ()) or ())
        if pids:
            h.append(f"  pid {','.join(map(str, pids[:3]))}", style=fmt.style_for(var, "muted"))
        h.append(f"\n{run.run_dir}", style=fmt.style_for(var, "muted"))
        header.update(h)
        if detail.alerts:
            alert.update(Text("\n".join(f"⚠ {a.text}" for a in detail.alerts)))
            alert.display = True
        else:
            alert.display = False
        self.query_one(MetricPanel).show(detail)
        self.query_one("#run-checkpoints", Static).update(self._checkpoints(detail))
        self.query_one("#run-log", Static).update(self._log(detail))

    def _checkpoints(self, detail: RunDetail) -> Text:
        var = self.app.theme_variables
        t = Text("Checkpoints", style="bold")
        if not detail.checkpoints:
            t.append("  none yet", style=fmt.style_for(var, "muted"))
            return t
        now = time.time()
        for c in detail.checkpoints[:4]:
            ok = "✔" if c.complete else "… incomplete"
            loss = "" if c.loss is None or not math.isfinite(c.loss) else f" loss {fmt.number(c.loss)}"
            t.append(f"\n step {c.step:<6} {fmt.duration(now - c.mtime):>7} ago  {fmt.size(c.size_bytes):>9}{loss} {ok}")
        if len(detail.checkpoints) > 4:
            t.append(f"\n +{len(detail.checkpoints) - 4} older (c)", style=fmt.style_for(var, "muted"))
        return t

    def _log(self, detail: RunDetail) -> Text:
        # The newest lines that fit; long lines end in an ellipsis instead of wrapping.
        height = max(1, self.query_one("#run-log", Static).size.height or 20)
        t = Text(no_wrap=True, overflow="ellipsis")
        for i, line in enumerate(detail.log_tail[-height:]):
            if i:
                t.append("\n")
            t.append(line.replace("\r", "").expandtabs(4))
        if not detail.log_tail:
            t.append("(stdout.log is empty)")
        return t


__all__ = ["MetricPanel", "RunPanel", "escape"]
