"""Text formatting shared by the widgets: sizes, durations, bars, text sparklines, status words.

Colours are named by role, a theme variable's name (``"status-failed"``, ``"gauge-high"``,
``"muted"``): the functions here take a :data:`Paint` that turns a role into the Rich style
to paint with. A widget's paint reads its Textual component classes, styled with the theme
variables in its ``DEFAULT_CSS`` (:class:`tunedeck.tui.widgets.palette.Palette`), so a
theme switch recolours it without any code of ours in between.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

from rich.color import Color as RichColor
from rich.style import Style
from rich.text import Text
from textual.color import Color, ColorParseError

GiB = 1024**3
SPARK_CHARS = "▁▂▃▄▅▆▇█"

Paint = Callable[[str], Style]
"""A colour role (a theme variable's name) -> the Rich style to paint it with."""

# status word -> colour role (theme variable)
STATUS_VAR: dict[str, str] = {
    "starting": "status-running",
    "running": "status-running",
    "stopping": "status-stopped",
    "finished": "status-finished",
    "stopped": "status-stopped",
    "preempted": "status-stopped",
    "failed": "status-failed",
    "oom": "status-failed",
    "diverged": "status-failed",
    "killed": "status-failed",
    "lost": "status-failed",
}
STATUS_ROLES: tuple[str, ...] = ("status-running", "status-finished", "status-stopped", "status-failed")
# A shape per status too, so the word is never the only cue besides colour (and reads in NO_COLOR).
STATUS_ICON: dict[str, str] = {
    "starting": "◌", "running": "▶", "stopping": "◍", "finished": "✔", "stopped": "■",
    "preempted": "■", "failed": "✖", "oom": "✖", "diverged": "✖", "killed": "✖", "lost": "?",
}


def style_for(variables: Mapping[str, str], name: str, *, bold: bool = False) -> Style:
    """The style of theme variable ``name`` in ``variables`` (for text built once, on screens
    that are rebuilt when shown; widgets that stay on screen paint through a :data:`Paint`)."""
    value = variables.get(name)
    if not value:
        return Style(bold=bold)
    try:
        c = Color.parse(value.split()[0])
    except ColorParseError:
        return Style(bold=bold)
    rc: RichColor = c.rich_color
    return Style(color=rc, bold=bold)


def no_paint(_role: str) -> Style:
    """A :data:`Paint` with no colours (for measuring text)."""
    return Style()


def status_role(status: str) -> str:
    """The colour role of a status word (``muted`` for one we do not know)."""
    return STATUS_VAR.get(str(status), "muted")


def status_text(status: str, paint: Paint) -> Text:
    """``✖ failed`` in the status's colour (the widget's CSS makes status roles bold)."""
    s = str(status or "unknown")
    return Text(f"{STATUS_ICON.get(s, '·')} {s}", style=paint(status_role(s)))


def gib(b: float | int | None, digits: int = 1) -> str:
    if b is None:
        return "n/a"
    return f"{b / GiB:.{digits}f}"


def size(b: float | int | None) -> str:
    if b is None:
        return "n/a"
    v = float(b)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(v) < 1024 or unit == "TiB":
            return f"{v:.0f} {unit}" if unit == "B" else f"{v:.1f} {unit}"
        v /= 1024
    return f"{v:.1f} TiB"


def duration(seconds: float | None, *, coarse: bool = False) -> str:
    """``1h05m``; ``coarse`` drops the seconds above ten minutes (an ETA that does not
    repaint the runs table every second)."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "--"
    s = int(round(seconds))
    if coarse and 600 <= s < 3600:
        return f"{s // 60}m"
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    if h < 48:
        return f"{h}h{m:02d}m"
    d, h = divmod(h, 24)
    return f"{d}d{h:02d}h"


def number(v: float | None, *, digits: int = 4) -> str:
    """Loss-like values: 4 significant digits; tiny/huge ones in e-notation."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "--" if v is None else str(v)
    if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
        return f"{v:.2e}"
    return f"{v:.{digits}g}"


def rate(v: float | None) -> str:
    if v is None:
        return "--"
    if v >= 1e6:
        return f"{v / 1e6:.1f}M"
    if v >= 1e3:
        return f"{v / 1e3:.1f}k"
    return f"{v:.0f}"


def gauge_role(frac: float) -> str:
    """The colour role of a gauge filled to ``frac``: low, mid (70%) or high (90%)."""
    return "gauge-high" if frac >= 0.9 else "gauge-mid" if frac >= 0.7 else "gauge-low"


def bar(frac: float | None, width: int, paint: Paint, *, level_colours: bool = True) -> Text:
    """A block bar ``███░░░`` of ``width`` cells; colour by fill level when asked."""
    width = max(1, width)
    if frac is None or not math.isfinite(frac):
        return Text("·" * width, style=paint("gauge-empty"))
    frac = min(1.0, max(0.0, frac))
    full = frac * width
    n = int(full)
    part = " ▏▎▍▌▋▊▉"[int((full - n) * 8)] if n < width else ""
    t = Text("█" * n + (part.strip() or ""), style=paint(gauge_role(frac) if level_colours else "gauge-low"))
    rest = width - len(t.plain)
    if rest > 0:
        t.append("░" * rest, style=paint("gauge-empty"))
    return t


def spark(values: Sequence[float], width: int, paint: Paint, *,
          lo: float | None = None, hi: float | None = None) -> Text:
    """A one-line text sparkline of the last ``width`` values, scaled to [lo, hi]."""
    width = max(1, width)
    vals = [v for v in values if math.isfinite(v)][-width:]
    if not vals:
        return Text(" " * width)
    lo = min(vals) if lo is None else lo
    hi = max(vals) if hi is None else hi
    span = (hi - lo) or 1.0
    chars = "".join(SPARK_CHARS[min(7, max(0, int((v - lo) / span * 7.999)))] for v in vals)
    # Oldest at the left, newest at the right end of what has been sampled so far.
    t = Text(chars, style=paint("spark-max"))
    t.append(" " * (width - len(chars)))
    return t


def truncate(text: str, width: int) -> str:
    """Cut at a word boundary when possible, marking the cut with an ellipsis."""
    if len(text) <= width:
        return text
    if width <= 1:
        return "…"[:width]
    cut = text[: width - 1]
    # Prefer a break between words (or between the parts of a run name).
    sp = max(cut.rfind(" "), cut.rfind("-"), cut.rfind("_"), cut.rfind("/"))
    if sp > width // 2:
        cut = cut[: sp + (0 if cut[sp] == " " else 1)]
    return cut.rstrip() + "…"


def count(n: int, noun: str, plural: str | None = None) -> str:
    """"1 error", "2 errors", "0 errors"."""
    return f"{n} {noun if n == 1 else (plural or noun + 's')}"


def checkpoint_metric(value: float | None, logged_step: int | None, step: int) -> str:
    """A checkpoint's loss as text, naming the step it was logged at when that is not the
    checkpoint's own (a checkpoint between logging steps); "" when none was logged."""
    if value is None or not math.isfinite(value):
        return "" if value is None else "nan"
    text = number(value)
    if logged_step is not None and logged_step != step:
        text += f" (at step {logged_step})"
    return text
