"""``ctrl+f`` in the editor: jump to any of the schema's parameters (or groups) by name.

With ~370 parameters in 15 groups, typing part of a name is how people get to a
field: ``per_dev`` finds ``per_device_train_batch_size``, ``lora`` the LoRA group and
its fields. :func:`find_matches` ranks; the command palette uses it too, so both
answer the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.markup import escape
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from tunedeck import themes

if TYPE_CHECKING:
    from tunedeck.tui.data.schema import Group, Param

MAX_SHOWN = 40


@dataclass(frozen=True)
class Target:
    """Something the editor can jump to: a parameter (``key``) or a group."""

    kind: str    # "param" | "group"
    key: str     # parameter name or group id
    label: str   # what the list shows first (the name / the group title)
    detail: str  # the group title / the group description
    score: float # 0 < score <= 1; higher first


def _subsequence(query: str, text: str) -> bool:
    it = iter(text)
    return all(ch in it for ch in query)


def name_score(query: str, name: str, extra: str = "") -> float:
    """How well ``query`` names ``name`` (0: not at all). Case-insensitive; ``-``, space
    and ``_`` count as the same so "per dev" and "per-dev" work too."""
    q = query.lower().replace("-", "_").replace(" ", "_")
    n = name.lower().replace("-", "_").replace(" ", "_")
    if not q:
        return 0.0
    if n == q:
        return 1.0
    if n.startswith(q):
        return 0.9
    if f"_{q}" in n:
        return 0.8  # starts a word of the name: "batch" in per_device_train_batch_size
    if q in n:
        return 0.7
    # initials / abbreviations: "pdtbs", "grad_acc"
    words = [w for w in n.split("_") if w]
    if "".join(w[0] for w in words).startswith(q):
        return 0.65
    if _subsequence(q, n):
        return 0.5
    if extra and q.replace("_", " ") in extra.lower():
        return 0.3  # said in its help text
    return 0.0


def find_matches(query: str, params: Iterable[Param], groups: Sequence[Group],
                 limit: int = MAX_SHOWN) -> list[Target]:
    """Parameters and groups that ``query`` names, best first (ties keep schema order)."""
    titles = {g.id: g.title for g in groups}
    out: list[tuple[float, int, Target]] = []
    for i, g in enumerate(groups):
        s = max(name_score(query, g.title), name_score(query, g.id))
        if s:
            out.append((s, i, Target("group", g.id, g.title, g.description, s)))
    for i, p in enumerate(params):
        s = name_score(query, p.name, p.help)
        if s:
            out.append((s, len(groups) + i,
                        Target("param", p.name, p.name, titles.get(p.group) or p.group, s)))
    out.sort(key=lambda t: (-t[0], t[1]))
    return [t for _s, _i, t in out[:limit]]


class ParamSearch(ModalScreen["Target | None"]):
    """A search box over parameter names and groups. Enter jumps to the highlighted one,
    up/down choose, Esc cancels."""

    CSS_PATH = str(themes.EDITOR_TCSS)
    BINDINGS = [
        Binding("escape", "cancel", "Cancel", show=False, id="search.cancel"),
        Binding("down", "move(1)", "Next", show=False, id="search.down"),
        Binding("up", "move(-1)", "Previous", show=False, id="search.up"),
    ]

    def __init__(self, params: Sequence[Param], groups: Sequence[Group], *, query: str = "") -> None:
        super().__init__(id="param-search")
        self.params = list(params)
        self.groups = list(groups)
        self.query_text = query
        self.matches: list[Target] = []
        self._shown: str | None = None  # the query the list shows

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(f"Find a parameter ({len(self.params)}) or a group", id="dialog-title")
            yield Input(self.query_text, placeholder="part of a name: per_dev, lora, grad", id="search-input")
            yield OptionList(id="search-results")
            yield Static("enter: go to it   up/down: choose   esc: cancel", classes="dialog-hint")

    def on_mount(self) -> None:
        self.query_one(Input).focus()
        self._show(self.query_text)

    @on(Input.Changed, "#search-input")
    def _changed(self, event: Input.Changed) -> None:
        event.stop()
        self._show(event.value)

    def _show(self, query: str) -> None:
        if query == self._shown:
            return
        self._shown = query
        self.matches = find_matches(query.strip(), self.params, self.groups)
        lst = self.query_one(OptionList)
        lst.clear_options()
        opts = []
        for i, m in enumerate(self.matches):
            t = Text()
            if m.kind == "group":
                t.append("group ", style="dim")
                t.append(m.label, style="bold")
            else:
                t.append(m.label, style="bold")
                t.append(f"  {m.detail}", style="dim")
            opts.append(Option(t, id=str(i)))
        if not opts:
            what = "type part of a parameter's name" if not query.strip() else f"nothing is called {query.strip()!r}"
            opts.append(Option(Text(escape(what), style="dim"), id="none", disabled=True))
        lst.add_options(opts)
        lst.highlighted = 0 if self.matches else None

    def action_move(self, delta: int) -> None:
        lst = self.query_one(OptionList)
        if not self.matches:
            return
        cur = lst.highlighted if lst.highlighted is not None else -delta
        lst.highlighted = max(0, min(len(self.matches) - 1, cur + delta))

    def chosen(self) -> Target | None:
        i = self.query_one(OptionList).highlighted
        return self.matches[i] if i is not None and 0 <= i < len(self.matches) else None

    @on(Input.Submitted, "#search-input")
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        # Enter goes to what the list shows for the text as typed, never to the answer
        # for an earlier prefix (the list is rebuilt here if a Changed is still queued).
        self._show(event.value)
        target = self.chosen()
        if target is not None:
            self.dismiss(target)

    @on(OptionList.OptionSelected, "#search-results")
    def _selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option.id and event.option.id.isdigit():
            self.dismiss(self.matches[int(event.option.id)])

    def action_cancel(self) -> None:
        self.dismiss(None)
