"""``?``: every key of every screen, generated from the one action registry."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from tunedeck import themes
from tunedeck.tui import actions
from tunedeck.tui import format as fmt
from tunedeck.tui.screens.base import RegistryScreen
from tunedeck.tui.widgets.footer import AppFooter


class HelpScreen(RegistryScreen[None]):
    SCOPE = "help"
    CSS_PATH = str(themes.SCREENS_TCSS)

    def __init__(self) -> None:
        super().__init__(id="help")

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-body"):
            yield Static(id="help-intro")
            for title, acts in actions.iter_help(self.readonly):
                yield Static(self._table(title, acts), classes="help-section")
        yield AppFooter()

    def on_mount(self) -> None:
        self.query_one("#help-body").border_title = "Keys"
        var = self.app.theme_variables
        intro = Text()
        intro.append("tunedeck watches and controls runs; it never owns them: quitting, a lost SSH "
                     "link or a detached tmux leaves every run going. ")
        intro.append("ctrl+p", style="bold")
        intro.append(" opens the palette with every action; ")
        intro.append("esc", style="bold")
        intro.append(" backs out.")
        if self.readonly:
            intro.append("\nRead-only mode: actions that change a run or a file are not available.",
                         style=fmt.style_for(var, "status-stopped", bold=True))
        self.query_one("#help-intro", Static).update(intro)
        self.query_one("#help-body").focus()

    def _table(self, title: str, acts: list[actions.Action]) -> Table:
        var = self.app.theme_variables
        table = Table(title=title, title_justify="left", title_style="bold", show_header=False,
                      box=None, expand=True, padding=(0, 1))
        table.add_column("key", width=10, no_wrap=True, style=fmt.style_for(var, "status-finished", bold=True))
        table.add_column("action", width=11, no_wrap=True)
        table.add_column("what it does", ratio=1, overflow="fold")
        for a in acts:
            key = a.display_key or "palette"
            extra = ", ".join(k for k in (a.key or "").split(",")[1:] if k)
            if extra and not a.key_display:
                key = f"{key}/{extra}"
            table.add_row(key, a.label, a.help)
        return table

    def action_back(self) -> None:
        self.dismiss()
