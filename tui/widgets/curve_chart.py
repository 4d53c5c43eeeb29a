"""A line chart with axes (textual-plotext): one or several runs' curves, the min and
max of both axes labelled, raw lines faint under their EMA, eval loss as points."""

from __future__ import annotations

from collections.abc import Sequence

from textual_plotext import PlotextPlot

from tunedeck.tui.data.charts import X_LABELS, Axes, ChartLine, ChartView, axes_of, ticks

# Run colours in order (plotext names); the raw line under a smoothed one is grey.
PALETTE = ("blue+", "orange+", "green+", "magenta+", "cyan+", "red+", "yellow+", "white")


class CurveChart(PlotextPlot):
    """Draws :class:`ChartLine` lists; ``axes`` and ``drawn`` say what is on screen."""

    DEFAULT_CSS = """
    CurveChart { width: 1fr; height: 1fr; min-height: 8; }
    """

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002 - Textual's name
        super().__init__(id=id)
        self.lines: tuple[ChartLine, ...] = ()
        self.view = ChartView()
        self.axes: Axes | None = None
        self.empty_text = "nothing logged yet"

    @property
    def drawn(self) -> list[str]:
        """Labels of the lines drawn, in order (what the legend lists)."""
        return [ln.label for ln in self.lines]

    def set_lines(self, lines: Sequence[ChartLine], view: ChartView, empty_text: str | None = None) -> None:
        self.lines = tuple(lines)
        self.view = view
        self.axes = axes_of(self.lines)
        if empty_text is not None:
            self.empty_text = empty_text
        self.refresh()

    def render(self):  # type: ignore[no-untyped-def]
        self._draw()
        return super().render()

    def _draw(self) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        view = self.view
        width, height = max(20, self.size.width), max(6, self.size.height)
        if not self.lines or self.axes is None:
            plt.title(self.empty_text)
            plt.xticks([0, 1], ["", ""])
            plt.yticks([0, 1], ["", ""])
            return
        many = len({ln.run for ln in self.lines}) > 1
        for ln in self.lines:
            colour = PALETTE[ln.run % len(PALETTE)]
            if ln.kind == "raw":
                plt.plot(ln.xs, ln.ys, color="gray", marker="dot", label=None if many else ln.label)
            elif ln.kind == "eval":
                plt.scatter(ln.xs, ln.ys, color=colour, marker="o", label=ln.label)
            else:
                plt.plot(ln.xs, ln.ys, color=colour, marker="braille", label=ln.label)
        ax = self.axes
        if view.log_y:
            plt.yscale("log")
        xt, xl = ticks(ax.xmin, ax.xmax, max(2, min(6, width // 14)), view.x)
        yt, yl = ticks(ax.ymin, ax.ymax, max(2, min(5, height // 4)), "y", log=view.log_y)
        plt.xticks(xt, xl)
        plt.yticks(yt, yl)
        plt.xlabel(X_LABELS.get(view.x, view.x))
        plt.title(view.describe())
