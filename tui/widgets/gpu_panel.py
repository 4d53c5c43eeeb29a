"""GPU panel: a row per GPU (VRAM bar, utilisation, temperature, power, who uses it,
VRAM and utilisation sparklines). With no driver, one line and the space goes to the rest."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.console import RenderableType
from rich.text import Text
from textual.widget import Widget

from tunedeck.tui import format as fmt
from tunedeck.tui.widgets.palette import Palette

if TYPE_CHECKING:
    from tunedeck.tui.data.gpus import GpuInfo, GpuView


class GpuPanel(Widget):
    """Renders a :class:`tunedeck.tui.data.gpus.GpuView`; wide terminals get one line per GPU,
    narrow ones pack several compact GPUs per line."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "gpu-panel--gauge-low",
        "gpu-panel--gauge-mid",
        "gpu-panel--gauge-high",
        "gpu-panel--gauge-empty",
        "gpu-panel--spark-max",
        "gpu-panel--muted",
        "gpu-panel--error",
    }
    """
    | Class | Description |
    | :- | :- |
    | `gpu-panel--gauge-low` | A VRAM bar's fill below 70%. |
    | `gpu-panel--gauge-mid` | A VRAM bar's fill from 70%. |
    | `gpu-panel--gauge-high` | A VRAM bar's fill from 90%. |
    | `gpu-panel--gauge-empty` | The empty part of a bar. |
    | `gpu-panel--spark-max` | The VRAM and utilisation sparklines. |
    | `gpu-panel--muted` | Labels, who uses a GPU, "no driver". |
    | `gpu-panel--error` | A GPU that answered with an error. |
    """

    DEFAULT_CSS = """
    GpuPanel {
        height: auto;
        & > .gpu-panel--gauge-low { color: $gauge-low; }
        & > .gpu-panel--gauge-mid { color: $gauge-mid; }
        & > .gpu-panel--gauge-high { color: $gauge-high; }
        & > .gpu-panel--gauge-empty { color: $gauge-empty; }
        & > .gpu-panel--spark-max { color: $spark-max; }
        & > .gpu-panel--muted { color: $muted; }
        & > .gpu-panel--error { color: $status-failed; text-style: bold; }
    }
    """

    view: GpuView | None = None
    _text: Text | None = None
    _width = 0

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002 - Textual's name
        super().__init__(id=id)
        self.palette = Palette(self, "gpu-panel")

    def update_view(self, view: GpuView) -> None:
        # Repaint only when what is shown changed, and lay out again only when the
        # number of lines did: an idle dashboard then costs next to nothing.
        old = self.view
        self.view = view
        width = self._current_width()
        text = self._build(width)
        relayout = old is None or len(old.snapshot.gpus) != len(view.snapshot.gpus) or \
            old.snapshot.available != view.snapshot.available
        if relayout or text != self._text:
            self._text, self._width = text, width
            self.refresh(layout=relayout)

    def notify_style_update(self) -> None:
        # The theme (or CSS) changed: build the text again when it is next drawn, with the
        # component classes' new colours.
        super().notify_style_update()
        self._text = None
        self.refresh()

    def on_resize(self) -> None:
        self._text = None
        self.refresh(layout=True)  # one line per GPU or several per line

    def _current_width(self) -> int:
        return self.content_region.width or self.size.width or 80

    def render(self) -> RenderableType:
        width = self._current_width()
        if self._text is None or width != self._width:
            self._text, self._width = self._build(width), width
        return self._text

    def _build(self, width: int) -> Text:
        v = self.view
        paint = self.palette
        if v is None:
            return Text("GPUs: sampling…", style=paint("muted"))
        snap = v.snapshot
        if not snap.available:
            msg = snap.message or "no NVIDIA driver found"
            return Text(f"GPUs: {msg}", style=paint("muted"))
        if not snap.gpus:
            return Text("GPUs: none visible", style=paint("muted"))
        if width >= 118:
            return Text("\n").join(self._wide_row(g, v, width) for g in snap.gpus)
        return self._compact(snap.gpus, v, width)

    # one GPU per line ------------------------------------------------------
    def _wide_row(self, g: GpuInfo, v: GpuView, width: int) -> Text:
        paint = self.palette
        t = Text()
        name = fmt.truncate(short_name(g.name), 18)
        t.append(f"{g.index:>2} ", style="bold")
        t.append(f"{name:<18} ")
        if g.error:
            t.append(f"error: {g.error}", style=paint("error"))
            return t
        frac = (g.mem_used / g.mem_total) if (g.mem_used is not None and g.mem_total) else None
        t.append_text(fmt.bar(frac, 16, paint))
        t.append(f" {fmt.gib(g.mem_used):>5}/{fmt.gib(g.mem_total, 0):<3}GiB ")
        t.append(f"{'n/a' if g.util_gpu is None else str(g.util_gpu) + '%':>4} ")
        t.append(f"{'n/a' if g.temperature is None else str(g.temperature) + '°C':>5} ")
        power = "n/a" if g.power_w is None else f"{g.power_w:.0f}"
        limit = "" if g.power_limit_w is None else f"/{g.power_limit_w:.0f}"
        t.append(f"{power + limit + 'W':>9} ")
        vram_hist, util_hist = v.history.get(g.index, ((), ()))
        spark_w = max(6, min(20, (width - 110) // 2))
        t.append("vram ", style=paint("muted"))
        t.append_text(fmt.spark(vram_hist, spark_w, paint, lo=0, hi=100))
        t.append(" util ", style=paint("muted"))
        t.append_text(fmt.spark(util_hist, spark_w, paint, lo=0, hi=100))
        users = v.users.get(g.index, ())
        room = width - len(t.plain) - 1
        if room > 8:
            if users:
                who = ", ".join(f"{n} {fmt.gib(b)}G" for n, b in users)
            elif g.processes:
                who = f"{len(g.processes)} other process{'es' if len(g.processes) > 1 else ''}"
            else:
                who = "idle"
            t.append(" " + fmt.truncate(who, room), style=paint("muted"))
        return t

    # several GPUs per line ---------------------------------------------------
    def _compact(self, gpus: tuple[GpuInfo, ...], v: GpuView, width: int) -> Text:
        paint = self.palette
        cell = 38
        per_line = max(1, width // cell)
        out = Text()
        for i, g in enumerate(gpus):
            if i and i % per_line == 0:
                out.append("\n")
            elif i:
                out.append(" ")
            t = Text()
            t.append(f"{g.index}", style="bold")
            if g.error:
                t.append(f" {fmt.truncate('error: ' + g.error, cell - 3)}",
                         style=paint("error"))
                t.pad_right(cell - 1 - len(t.plain))
                out.append_text(t)
                continue
            frac = (g.mem_used / g.mem_total) if (g.mem_used is not None and g.mem_total) else None
            t.append(" ")
            t.append_text(fmt.bar(frac, 8, paint))
            t.append(f" {fmt.gib(g.mem_used, 0):>2}/{fmt.gib(g.mem_total, 0):<2}G")
            t.append(f" {'--' if g.util_gpu is None else str(g.util_gpu):>3}%")
            users = v.users.get(g.index, ())
            vram_hist, util_hist = v.history.get(g.index, ((), ()))
            t.append(" ")
            t.append_text(fmt.spark(util_hist, 6, paint, lo=0, hi=100))
            if users:
                t.append(" " + fmt.truncate(users[0][0], 6), style=paint("muted"))
            t.truncate(cell - 1)
            t.pad_right(cell - 1 - len(t.plain))
            out.append_text(t)
        return out


def short_name(name: str | None) -> str:
    """``NVIDIA GeForce RTX 4090`` -> ``RTX 4090``: the vendor words carry nothing."""
    if not name:
        return "GPU"
    for word in ("NVIDIA ", "GeForce ", "Tesla "):
        name = name.replace(word, "")
    return name.strip() or "GPU"
