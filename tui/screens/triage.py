"""Triage for one run: the diagnosis, ordered suggestions (rationale, patch as a diff,
memory before/after); apply writes the patched config as a new file and offers resume."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Group, RenderableType
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from tunedeck.tui import format as fmt
from tunedeck.tui.data import triage
from tunedeck.tui.data.runs import read_run
from tunedeck.tui.data.triage import TriageView
from tunedeck.tui.flows import host, resume
from tunedeck.tui.screens.base import RunScreen
from tunedeck.tui.widgets.footer import AppFooter

if TYPE_CHECKING:
    from tunedeck.tui.data.triage import Diagnosis, Suggestion


class TriageScreen(RunScreen):
    SCOPE = "triage"

    def __init__(self, run_dir: Path) -> None:
        super().__init__(run_dir)
        self.view: TriageView | None = None
        self.suggestions: list[tuple[Diagnosis, Suggestion]] = []  # (diagnosis, suggestion)
        self.applied: Path | None = None

    def compose(self) -> ComposeResult:
        yield Static(f"Triage of {self.run_dir.name}  ({self.run_dir})", classes="screen-title")
        yield Static("Diagnosing…", id="diagnosis")
        with Horizontal(id="triage-main"):
            yield OptionList(id="suggestions")
            with VerticalScroll(id="suggestion-detail-box"):
                yield Static(id="suggestion-detail")
        yield AppFooter()

    def on_mount(self) -> None:
        self.query_one("#suggestions").border_title = "Suggestions, in order"
        self.query_one("#suggestion-detail-box").border_title = "Patch"
        self.set_class(self.size.width < 110, "-narrow")
        self.query_one(OptionList).focus()
        self._diagnose()

    def on_resize(self) -> None:
        self.set_class(self.size.width < 110, "-narrow")

    @work(thread=True, exclusive=True, group="triage", exit_on_error=False)
    def _diagnose(self) -> None:
        view = triage.triage(self.run_dir)
        self.app.call_from_thread(self._show, view)

    def _show(self, view: TriageView) -> None:
        self.view = view
        diag = self.query_one("#diagnosis", Static)
        opts = self.query_one(OptionList)
        opts.clear_options()
        self.suggestions = []
        if view.error:
            diag.update(view.error)
            return
        if not view.diagnoses:
            diag.update("Nothing wrong found: no OOM, divergence, stall, disk or speed problem in "
                        "this run's files.")
            self.query_one("#suggestion-detail", Static).update("")
            return
        lines = []
        for d in view.diagnoses:
            lines.append(f"{d.kind.upper()}: {d.summary}")
            for ev in d.evidence[:3]:
                lines.append(f"  · {ev}")
        diag.update(Text("\n".join(lines)))
        n = 0
        for d in view.diagnoses:
            for s in d.suggestions:
                n += 1
                self.suggestions.append((d, s))
                opts.add_option(Option(f"{n}. {s.title}", id=str(n - 1)))
        if self.suggestions:
            opts.highlighted = 0
            self._detail(0)

    @on(OptionList.OptionHighlighted, "#suggestions")
    def _highlighted(self, event: OptionList.OptionHighlighted) -> None:
        if event.option.id is not None:
            self._detail(int(event.option.id))

    def selected_index(self) -> int | None:
        h = self.query_one(OptionList).highlighted
        return h if h is not None and 0 <= h < len(self.suggestions) else None

    def _detail(self, i: int) -> None:
        if not (0 <= i < len(self.suggestions)) or self.view is None:
            return
        _d, s = self.suggestions[i]
        var = self.app.theme_variables
        parts: list[RenderableType] = []
        parts.append(Text(s.title, style="bold"))
        parts.append(Text(s.rationale or ""))
        if s.guide_ref:
            parts.append(Text(f"guide: {s.guide_ref}", style=fmt.style_for(var, "muted")))
        before, after = s.before_bytes, s.after_bytes
        if before is not None or after is not None:
            mem = Text("\nMemory per GPU: ")
            mem.append(fmt.size(before), style="bold")
            mem.append(" → ")
            mem.append(fmt.size(after), style=fmt.style_for(var, "diff-added", bold=True))
            parts.append(mem)
        parts.append(Text("\nConfig patch:", style="bold"))
        diff_lines = patch_diff(s.patch or {}, self.view.values)
        if not diff_lines:
            diff_lines = ["(no config change: an action to take by hand)"]
        diff = Text()
        for j, line in enumerate(diff_lines):
            if j:
                diff.append("\n")
            style = (fmt.style_for(var, "diff-added") if line.startswith("+")
                     else fmt.style_for(var, "diff-removed") if line.startswith("-") else "")
            diff.append(line, style=style)
        parts.append(diff)
        if self.applied is not None:
            parts.append(Text(f"\nLast applied: {self.applied}", style=fmt.style_for(var, "muted")))
        self.query_one("#suggestion-detail", Static).update(Group(*parts))

    # -- actions -------------------------------------------------------------
    def action_back(self) -> None:
        self.dismiss()

    def action_apply(self) -> None:
        i = self.selected_index()
        if i is None:
            self.notify("No suggestion selected.", severity="warning")
            return
        _d, s = self.suggestions[i]
        if not s.patch:
            self.notify("This suggestion has no config patch to apply; it is a step to take by hand.",
                        severity="warning")
            return
        self._apply(s)

    @work(thread=True, group="triage-apply", exit_on_error=False)
    def _apply(self, suggestion: Suggestion) -> None:
        try:
            path = triage.apply_suggestion(self.run_dir, suggestion)
        except Exception as exc:  # noqa: BLE001
            self.app.call_from_thread(self.notify, f"apply failed: {exc}", severity="error", timeout=10)
            return
        self.app.call_from_thread(self._applied, suggestion, path)

    def _applied(self, suggestion: Suggestion, path: Path) -> None:
        self.applied = path
        self.notify(f"Wrote {path}", title="Patched config")
        i = self.selected_index()
        if i is not None:
            self._detail(i)
        if self.readonly:
            return
        run = read_run(self.run_dir)
        if run is None:
            return
        if run.active:
            return
        resume.choose_resume(host(self), run, checkpoint=None, overrides=dict(suggestion.patch))


def patch_diff(patch: dict[str, Any], values: Any) -> list[str]:
    """The patch as diff lines against the frozen config: ``- key: old`` / ``+ key: new``."""
    out: list[str] = []
    for key, new in patch.items():
        if key in values and values[key] is not None:
            out.append(f"- {key}: {_yaml_value(values[key])}")
        if new is not None:
            out.append(f"+ {key}: {_yaml_value(new)}")
    return out


def _yaml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return ", ".join(str(x) for x in v)
    return str(v)
