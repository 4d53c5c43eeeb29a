"""The footer with the current screen's keys; compact on narrow terminals so more fit."""

from __future__ import annotations

from textual import events
from textual.widgets import Footer


class AppFooter(Footer):
    def on_resize(self, event: events.Resize) -> None:
        self.compact = event.size.width < 120
        # At 80 columns the screen's own keys matter more; ? and the help list ctrl+p.
        palette = event.size.width >= 100
        if palette != self.show_command_palette:
            self.show_command_palette = palette
            self.refresh(recompose=True)
