"""Theme colours for widgets that paint Rich text (a status word, a gauge, a sparkline).

A widget declares one Textual component class per colour role, ``<prefix>--<role>``, in its
``COMPONENT_CLASSES`` and styles it in its ``DEFAULT_CSS`` with our theme variables::

    COMPONENT_CLASSES = {"gpu-panel--gauge-high", ...}
    DEFAULT_CSS = '''
    GpuPanel > .gpu-panel--gauge-high { color: $gauge-high; }
    '''

and paints with ``self.palette("gauge-high")``. When the theme changes Textual applies the CSS
again and calls the widget's ``notify_style_update``: a widget that builds its text in
``render`` only drops what it cached; one that hands text to others (table cells, child
Statics) asks :meth:`Palette.changed` once the component classes are styled and builds its
text again when they did. Nothing outside the widget takes part.
"""

from __future__ import annotations

from rich.style import Style
from textual.widget import Widget

_NOT_BOLD = Style(bold=False)


class Palette:
    """The Rich styles of ``widget``'s component classes named ``<prefix>--<role>``."""

    def __init__(self, widget: Widget, prefix: str) -> None:
        self._widget = widget
        self._prefix = f"{prefix}--"
        self._classes = tuple(sorted(c for c in type(widget).COMPONENT_CLASSES if c.startswith(self._prefix)))
        self._seen: tuple[Style, ...] | None = None

    def __call__(self, role: str) -> Style:
        """The style to paint ``role`` with: its colour, bold only where the CSS says so (not
        inherited from e.g. a table's cursor row)."""
        return _NOT_BOLD + self._widget.get_component_rich_style(self._prefix + role, partial=True)

    def changed(self) -> bool:
        """Whether any colour differs from when this was last asked (never on the first ask)."""
        now = tuple(self._widget.get_component_rich_style(c, partial=True) for c in self._classes)
        before, self._seen = self._seen, now
        return before is not None and before != now
