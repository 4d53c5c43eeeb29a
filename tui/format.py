"""Text formatting shared by the widgets: sizes, durations, bars, text sparklines, status words.

Colours come from the current theme's variables (``themes.VARIABLE_DEFAULTS``), looked
up by name at render time, so a theme switch recolours everything.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from rich.color import Color as RichColor
from rich.style import Style
from rich.text import Text
from textual.color import Color, ColorParseError

GiB = 1024**3
SPARK_CHARS = "▁▂▃▄▅▆▇█"

# status word -> theme variable
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
# A shape per status too, so the word is never the only cue besides colour (and reads in NO_COLOR).
STATUS_ICON: dict[str, str] = {
    "starting": "◌", "running": "▶", "stopping": "◍", "finished": "✔", "stopped": "■",
    "preempted": "■", "failed": "✖", "oom": "✖", "diverged": "✖", "killed": "✖", "lost": "?",
}


def style_for(variables: Mapping[str, str], name: str, *, bold: bool = False) -> Style:
    value = variables.get(name)
    if not value:
        return Style(bold=bold)
    try:
        c = Color.parse(value.split()[0])
    except ColorParseError:
        return Style(bold=bold)
    rc: RichColor = c.rich_color
    return Style(color=rc, bold=bold)


def status_text(status: str, variables: Mapping[str, str]) -> Text:
    s = str(status or "unknown")
    return Text(f"{STATUS_ICON.get(s, '·')} {s}", style=style_for(variables, STATUS_VAR.get(s, "muted"), bold=True))


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


def bar(frac: float | None, width: int, variables: Mapping[str, str], *, level_colours: bool = True) -> Text:
    """A block bar ``███░░░`` of ``width`` cells; colour by fill level when asked."""
    width = max(1, width)
    if frac is None or not math.isfinite(frac):
        return Text("·" * width, style=style_for(variables, "gauge-empty"))
    frac = min(1.0, max(0.0, frac))
    full = frac * width
    n = int(full)
    part = " ▏▎▍▌▋▊▉"[int((full - n) * 8)] if n < width else ""
    fill_var = "gauge-low"
    if level_colours:
        fill_var = "gauge-high" if frac >= 0.9 else "gauge-mid" if frac >= 0.7 else "gauge-low"
    t = Text("█" * n + (part.strip() or ""), style=style_for(variables, fill_var))
    rest = width - len(t.plain)
    if rest > 0:
        t.append("░" * rest, style=style_for(variables, "gauge-empty"))
    return t


def spark(values: Sequence[float], width: int, variables: Mapping[str, str], *,
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
    t = Text(chars, style=style_for(variables, "spark-max"))
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
