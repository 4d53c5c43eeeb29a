"""The footer with the current screen's keys; compact on narrow terminals so more fit."""

from __future__ import annotations

from textual import events
from textual.app import ComposeResult
from textual.widgets import Footer
from textual.widgets._footer import FooterKey


class AppFooter(Footer):
    def on_resize(self, event: events.Resize) -> None:
        self.compact = event.size.width < 120
        # At 80 columns the screen's own keys matter more; ? and the help list ctrl+p.
        palette = event.size.width >= 100
        if palette != self.show_command_palette:
            self.show_command_palette = palette
            self.refresh(recompose=True)

    def compose(self) -> ComposeResult:
        items = list(super().compose())
        # When the keys do not all fit (80 columns, a screen with many keys), "? Help" goes
        # first: cut off at the right edge, it was the one key that lists all the others.
        keys = [w for w in items if isinstance(w, FooterKey)]
        per_key = 2 if self.compact else 4  # the gaps around each key and its label
        wanted = sum(len(k.key_display) + len(k.description) + per_key for k in keys)
        width = self.size.width or self.app.size.width
        if wanted > width:
            helps = [w for w in keys if w.action in ("help", "app.help")]
            items = helps + [w for w in items if w not in helps]
        yield from items
