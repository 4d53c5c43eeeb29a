"""Form fields generated from the schema's ``Param`` declarations (never hand-written).

Each field is two widgets, to keep a 47-field tab cheap to mount: a header
(:class:`FieldHeader`: name, type, default, help line, the guide's advice and, when the
value is wrong, the validator's sentence) and the control made for its type: Switch
for booleans (with the value in words beside it: the switch alone is only a coloured
block, and with NO_COLOR a grey one), Select for enumerations, Input for everything else. :class:`ParamField`
ties them together; the editor screen owns the config and reacts to the controls'
``Changed`` messages.
"""

from __future__ import annotations

import json
from typing import Any

from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widget import Widget
from textual.widgets import Input, Select, Static, Switch

from tunedeck.tui.data.schema import Param

CONTROL_PREFIX = "ctl-"


def value_to_text(value: Any) -> str:
    """How a config value looks in an Input (what the user would type)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        if all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in value):
            return ", ".join(str(v) for v in value)
        return json.dumps(value)
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


def control_kind(param: Param) -> str:
    if param.type == "bool":
        return "switch"
    if param.type == "enum" and param.choices:
        return "select"
    return "input"


_EDIT_KEYS = frozenset(
    k.strip() for b in Input.BINDINGS for k in (b.key if isinstance(b, Binding) else b[0]).split(",")
)


class FieldInput(Input):
    """An Input whose own editing keys (ctrl+u, backspace, home, end ...) act at once.

    Textual runs a focused widget's key bindings only once the key has bubbled up to the
    app, through every container between them, while typed characters are inserted right
    away. When the editor's screen is busy (mounting a group's fields on a loaded machine)
    the two fell out of order: ctrl+u then "abc" left the field empty.
    """

    async def _on_key(self, event: events.Key) -> None:
        # Only the Input's own editing keys: the scrolling keys it inherits step aside
        # (SkipAction) when there is nothing to scroll, so the screen's keys get them.
        bindings = self._bindings.key_to_bindings.get(event.key) if event.key in _EDIT_KEYS else None
        if bindings and not event.is_printable:
            event.stop()
            event.prevent_default()
            self._restart_blink()
            await self.run_action(bindings[0].action)
            return
        await super()._on_key(event)


class FieldHeader(Static):
    """Name, type and default, help, advice, and the current error of one field."""

    def __init__(self, field: ParamField) -> None:
        super().__init__(id=f"head-{field.param.name}", classes="field-head")
        self.field = field

    def on_mount(self) -> None:
        self.refresh_text()

    def refresh_text(self) -> None:
        f = self.field
        p = f.param
        t = Text()
        name_style = "bold reverse" if f.error else "bold underline" if f.is_set else "bold"
        # The focused field is marked in a character, not only a colour (NO_COLOR).
        t.append("▶ " if f.current else "", style="bold")
        t.append(p.name, style=name_style)
        meta = "choice" if p.type == "enum" else p.type
        default = value_to_text(p.default) if p.default is not None else "unset"
        t.append(f"  {meta}, default {default}", style="dim")
        if p.allowed and f.kind != "select":
            t.append(f", {p.allowed}", style="dim")
        if f.is_set:
            t.append("  (set in file)", style="dim")
        if f.error:
            t.append("\n✖ " + f.error, style="bold")
        if not f.detail:
            self.update(t)  # a short terminal: help and advice only for the focused field
            self.set_class(bool(f.error), "-invalid")
            return
        if p.help:
            t.append("\n" + p.help, style="italic")
        if p.advice:
            guide = f" (guide §{p.guide})" if p.guide else ""
            t.append(f"\nAdvice{guide}: {p.advice}")
        if not p.checked:
            t.append("\nPassed to transformers as is; tunedeck does not check it.", style="dim")
        self.update(t)
        self.set_class(bool(f.error), "-invalid")


class ParamField:
    """One parameter's field: its header and control (not a widget itself)."""

    def __init__(self, param: Param, value: Any, *, is_set: bool) -> None:
        self.param = param
        self.initial = value
        self.is_set = is_set
        self.error: str | None = None
        self.kind = control_kind(param)
        self.detail = True  # show help and advice (the editor folds them on short terminals)
        self.current = False  # has the focus: the header marks it
        self.header = FieldHeader(self)
        self.switch_word: Static | None = None
        self.control = self._make_control()
        self.touched = False  # set on the first change that is not the control's initial value

    @property
    def name(self) -> str:
        return str(self.param.name)

    def widgets(self) -> list[Widget]:
        if self.switch_word is not None:
            return [self.header, Horizontal(self.control, self.switch_word, classes="switch-row")]
        return [self.header, self.control]

    def show_switch_value(self, value: bool) -> None:
        """The switch's value in words: "true" / "false", and whether that is the default."""
        if self.switch_word is None:
            return
        word = "true" if value else "false"
        if not self.is_set:
            word += " (default)"
        self.switch_word.update(word)

    def _make_control(self) -> Widget:
        p = self.param
        cid = f"{CONTROL_PREFIX}{p.name}"
        if self.kind == "switch":
            current = self.initial if isinstance(self.initial, bool) else bool(p.default)
            self.initial_control_value: Any = current
            self.switch_word = Static(classes="switch-word")
            switch = Switch(value=current, id=cid, animate=False, classes="field-control")
            self.show_switch_value(current)
            return switch
        default = value_to_text(p.default) if p.default is not None else "unset"
        if self.kind == "select":
            choices = p.choices or ()  # a select is a param with choices
            options = [(value_to_text(c), c) for c in choices]
            value = self.initial if self.initial in choices else Select.NULL
            self.initial_control_value = value
            return Select(options, value=value, allow_blank=True, prompt=f"unset (default {default})",
                          id=cid, compact=True, classes="field-control")
        placeholder = "unset" if p.default is None else f"unset: {default}"
        text = value_to_text(self.initial)
        if p.secret and text:
            text = ""  # a secret never goes on screen; typing replaces it
            placeholder = "*** set in the file (type to replace)"
        self.initial_control_value = text
        return FieldInput(text, placeholder=placeholder, id=cid, compact=True, password=bool(p.secret),
                          classes="field-control")

    # -- state shown ----------------------------------------------------------
    def set_error(self, message: str | None) -> None:
        if message == self.error:
            return
        self.error = message
        self.control.set_class(message is not None, "-invalid")
        if self.header.is_mounted:
            self.header.refresh_text()

    def set_current(self, current: bool) -> None:
        if current != self.current:
            self.current = current
            if self.header.is_mounted:
                self.header.refresh_text()

    def set_detail(self, detail: bool) -> None:
        if detail != self.detail:
            self.detail = detail
            if self.header.is_mounted:
                self.header.refresh_text()

    def set_is_set(self, is_set: bool) -> None:
        if is_set != self.is_set:
            self.is_set = is_set
            if self.header.is_mounted:
                self.header.refresh_text()
            if isinstance(self.control, Switch):
                self.show_switch_value(self.control.value)

    def focus_control(self) -> None:
        """Focus the control now (the caller scrolls the header into view)."""
        self.control.screen.set_focus(self.control, scroll_visible=False)

    def is_initial_echo(self, value: Any) -> bool:
        """True for the Changed a control posts when mounted with its initial value."""
        if self.touched:
            return False
        if value == self.initial_control_value:
            return True
        self.touched = True
        return False

    def raw_from(self, widget: Widget, value: Any) -> Any:
        """The control's change as what :meth:`EditorScreen.apply_edit` expects."""
        if isinstance(widget, Select):
            return None if value is Select.NULL else value
        if isinstance(widget, Switch):
            return bool(value)
        return value
