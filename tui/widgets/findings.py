"""Findings list: every error, warning and advice of the whole config; enter jumps to the field."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from rich.text import Text
from textual import on
from textual.message import Message
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from tunedeck.tui import format as fmt

if TYPE_CHECKING:
    from tunedeck.tui.data.editor import Finding

ICONS = {"error": "✖", "warning": "▲", "advice": "ℹ"}
VARS = {"error": "status-failed", "warning": "status-stopped", "advice": "status-finished"}
ORDER = {"error": 0, "warning": 1, "advice": 2}


class FindingsList(OptionList):
    class JumpTo(Message):
        def __init__(self, key: str) -> None:
            super().__init__()
            self.key = key

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.findings: list[tuple[str, str | None, str]] = []  # (severity, key, text)

    def show(self, field_errors: Mapping[str, str], findings: Sequence[Finding]) -> None:
        """Field errors (typed just now) first, then the validator's findings by severity."""
        var = self.app.theme_variables
        items: list[tuple[str, str | None, str]] = []
        seen: set[tuple[str | None, str]] = set()
        for key, msg in field_errors.items():
            items.append(("error", key, msg))
            seen.add((key, msg))
        for f in sorted(findings, key=lambda f: (ORDER.get(f.severity, 3), f.line or 0)):
            sev: str = f.severity
            if f.key in field_errors and sev == "error":
                continue  # the field's own message already says it
            text = f.message + (f" Fix: {f.fix}" if f.fix else "")
            items.append((sev, f.key, text))
        if items == self.findings:
            return
        self.findings = items
        highlighted = self.highlighted
        self.clear_options()
        opts = []
        for i, (sev, item_key, text) in enumerate(items):
            t = Text()
            t.append(f"{ICONS.get(sev, '·')} {sev} ", style=fmt.style_for(var, VARS.get(sev, "muted"), bold=True))
            if item_key:
                t.append(f"{item_key}: ", style="bold")
            t.append(text)
            opts.append(Option(t, id=str(i)))
        self.add_options(opts)
        if highlighted is not None and items:
            self.highlighted = min(highlighted, len(items) - 1)

    def counts(self) -> dict[str, int]:
        out = {"error": 0, "warning": 0, "advice": 0}
        for sev, _k, _t in self.findings:
            out[sev] = out.get(sev, 0) + 1
        return out

    @on(OptionList.OptionSelected)
    def _selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        idx = int(event.option.id or 0)
        if 0 <= idx < len(self.findings):
            key = self.findings[idx][1]
            if key:
                self.post_message(self.JumpTo(key))
