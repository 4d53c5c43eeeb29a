"""A run's full ``stdout.log``: follow mode, ``/`` search (n / N), jump to the first error."""

from __future__ import annotations

import re
from pathlib import Path

from rich.highlighter import Highlighter
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.widgets import Input, Log, Static

from tunedeck.tui import format as fmt
from tunedeck.tui.data.logs import ERROR_RE, MAX_LOG_BYTES, STDOUT_LOG, read_log, read_log_from
from tunedeck.tui.screens.base import RunScreen
from tunedeck.tui.widgets.footer import AppFooter

FOLLOW_INTERVAL = 0.5


class _LogHighlighter(Highlighter):
    """Errors in the error colour, search matches reversed."""

    def __init__(self) -> None:
        self.search: re.Pattern[str] | None = None
        self.error_style = "bold red"

    def highlight(self, text: Text) -> None:
        plain = text.plain
        for m in ERROR_RE.finditer(plain):
            text.stylize(self.error_style, m.start(), m.end())
        if self.search is not None:
            for m in self.search.finditer(plain):
                text.stylize("reverse bold", m.start(), m.end())


class LogsScreen(RunScreen):
    SCOPE = "logs"

    def __init__(self, run_dir: Path) -> None:
        super().__init__(run_dir)
        self.path = self.run_dir / STDOUT_LOG
        self.log_offset = 0
        self.follow = True
        self.matches: list[int] = []
        self.match_index = -1
        self.query_text = ""
        self._highlighter = _LogHighlighter()

    def compose(self) -> ComposeResult:
        yield Static(f"Log of {self.run_dir.name}: {self.path}", classes="screen-title")
        log = Log(highlight=True, auto_scroll=True, id="log-view")
        log.highlighter = self._highlighter
        yield log
        yield Static(id="log-status")
        yield Input(placeholder="search (regex or text); enter: find, esc: close", id="log-search")
        yield AppFooter()

    def on_mount(self) -> None:
        var = self.app.theme_variables
        self._highlighter.error_style = fmt.style_for(var, "status-failed", bold=True)  # type: ignore[assignment]
        log = self.query_one(Log)
        log.border_title = "stdout.log"
        log.focus()
        self._load()

    @work(thread=True, exclusive=True, group="log-load", exit_on_error=False)
    def _load(self) -> None:
        lines, offset, truncated = read_log(self.path)
        self.app.call_from_thread(self._loaded, lines, offset, truncated)

    def _loaded(self, lines: list[str], offset: int, truncated: bool) -> None:
        log = self.query_one(Log)
        log.clear()
        if truncated:
            log.write_line(f"… showing the last {MAX_LOG_BYTES // 2**20} MiB of {self.path}")
        if not lines and offset == 0:
            log.write_line("(stdout.log is empty or missing)")
        log.write_lines(lines)
        self.log_offset = offset
        self._update_status()
        self.set_timer(FOLLOW_INTERVAL, self._poll)

    def _poll(self) -> None:
        if not self.is_attached:
            return
        self._read_more()

    @work(thread=True, exclusive=True, group="log-follow", exit_on_error=False)
    def _read_more(self) -> None:
        lines, offset = read_log_from(self.path, self.log_offset)
        self.app.call_from_thread(self._appended, lines, offset)

    def _appended(self, lines: list[str], offset: int) -> None:
        if offset < self.log_offset:  # replaced/truncated file: reload from the start
            self.log_offset = 0
            self._load()
            return
        self.log_offset = offset
        if lines:
            log = self.query_one(Log)
            log.auto_scroll = self.follow
            log.write_lines(lines)
            if self.query_text:
                self._find(self.query_text, keep_position=True)
            self._update_status()
        self.set_timer(FOLLOW_INTERVAL, self._poll)

    def _update_status(self) -> None:
        log = self.query_one(Log)
        parts = [f"{log.line_count} lines", "following" if self.follow else "paused (f to follow)"]
        if self.query_text:
            if self.matches:
                parts.append(f"match {self.match_index + 1}/{len(self.matches)} for {self.query_text!r}"
                             f" at line {self.matches[self.match_index] + 1}")
            else:
                parts.append(f"no match for {self.query_text!r}")
        self.query_one("#log-status", Static).update("  ·  ".join(parts))
        log.border_subtitle = "following" if self.follow else "paused"

    # -- actions ---------------------------------------------------------------
    def action_back(self) -> None:
        search = self.query_one("#log-search", Input)
        if search.has_class("-visible"):
            search.remove_class("-visible")
            self.query_one(Log).focus()
            return
        self.dismiss()

    def action_toggle_follow(self) -> None:
        self.follow = not self.follow
        log = self.query_one(Log)
        log.auto_scroll = self.follow
        if self.follow:
            log.scroll_end(animate=False)
        self._update_status()

    def action_search(self) -> None:
        search = self.query_one("#log-search", Input)
        search.add_class("-visible")
        search.focus()

    @on(Input.Submitted, "#log-search")
    def _search_submitted(self, event: Input.Submitted) -> None:
        self.query_text = event.value
        self._find(event.value)
        event.input.remove_class("-visible")
        self.query_one(Log).focus()

    def _find(self, text: str, keep_position: bool = False) -> None:
        log = self.query_one(Log)
        if not text:
            self._highlighter.search = None
            self.matches = []
        else:
            try:
                pat = re.compile(text, re.IGNORECASE)
            except re.error:
                pat = re.compile(re.escape(text), re.IGNORECASE)
            self._highlighter.search = pat
            self.matches = [i for i, line in enumerate(log.lines) if pat.search(line)]
        log.notify_style_update()
        log.refresh()
        if not keep_position:
            self.match_index = 0 if self.matches else -1
            if self.matches:
                self._goto(self.matches[0])
        self._update_status()

    def _goto(self, line: int) -> None:
        log = self.query_one(Log)
        self.follow = False
        log.auto_scroll = False
        log.scroll_to(y=max(0, line - log.size.height // 3), animate=False)
        self._update_status()

    def action_next_match(self) -> None:
        if self.matches:
            self.match_index = (self.match_index + 1) % len(self.matches)
            self._goto(self.matches[self.match_index])

    def action_previous_match(self) -> None:
        if self.matches:
            self.match_index = (self.match_index - 1) % len(self.matches)
            self._goto(self.matches[self.match_index])

    def action_first_error(self) -> None:
        log = self.query_one(Log)
        for i, line in enumerate(log.lines):
            if ERROR_RE.search(line):
                self._goto(i)
                self.query_one("#log-status", Static).update(f"first error at line {i + 1}: {line.strip()[:200]}")
                return
        self.notify("No error in this log.")

    def action_top(self) -> None:
        self.follow = False
        self.query_one(Log).auto_scroll = False
        self.query_one(Log).scroll_home(animate=False)
        self._update_status()

    def action_bottom(self) -> None:
        self.query_one(Log).scroll_end(animate=False)
