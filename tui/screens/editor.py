"""Config editor: one tab per schema group with generated fields, a findings panel that
jumps to fields, a live memory estimate, the YAML preview and its diff against disk.

The ``ConfigDoc`` (ruamel round-trip) is the state: every edit goes through
``ConfigDoc.set``/``delete`` so saving keeps comments and key order. Validation,
estimation and the diff run in a thread worker on a copy of the YAML text.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Input, Select, Static, Switch, TabbedContent, TabPane

from tunedeck import themes
from tunedeck.tui import actions
from tunedeck.tui import format as fmt
from tunedeck.tui.data import schema
from tunedeck.tui.data.configs import hardware_presets
from tunedeck.tui.data.editor import ConfigDoc, ConfigError, EditorAnalysis, StaleFileError, analyse
from tunedeck.tui.flows import configs, host, launch
from tunedeck.tui.messages import EditorAnalysed
from tunedeck.tui.screens.base import RegistryScreen
from tunedeck.tui.screens.modals import PathPrompt, UnsavedModal
from tunedeck.tui.screens.param_search import ParamSearch, Target
from tunedeck.tui.widgets.estimate_panel import render_estimate
from tunedeck.tui.widgets.findings import FindingsList
from tunedeck.tui.widgets.footer import AppFooter
from tunedeck.tui.widgets.param_field import CONTROL_PREFIX, ParamField
from tunedeck.tui.widgets.yaml_view import render_diff, render_yaml

if TYPE_CHECKING:
    from tunedeck.tui.data.configs import Preset
    from tunedeck.tui.data.gpus import GpuSnapshot


class GroupTabs(TabbedContent):
    """TabbedContent that does not switch tabs when a widget inside a pane gets focus.

    Textual activates a pane when something in it is focused, through a queued
    message: one about an earlier focus, handled after a jump to another group,
    would switch back to the old tab. The editor always activates the group first
    and then focuses, so that switch is never needed here.
    """

    def _on_tab_pane_focused(self, event: TabPane.Focused) -> None:
        event.stop()
        event.prevent_default()  # Textual calls every class's handler up the MRO otherwise


ANALYSE_DELAY = 0.25
FIRST_BATCH = 8     # fields mounted before a tab first paints
BATCH = 12          # then this many per frame, so keys stay answered while a tab fills
SIDE_MODES = ("estimate", "yaml", "diff")
DETECTED = "this machine's GPUs (NVML)"
COMPACT_BELOW = 36  # terminal rows: fewer, and fields fold their help until focused


class EditorScreen(RegistryScreen[None]):
    SCOPE = "editor"
    CSS_PATH = str(themes.EDITOR_TCSS)

    def __init__(self, *, path: Path | None = None, text: str | None = None,
                 title: str | None = None) -> None:
        super().__init__(id="editor")
        if path is not None:
            self.doc = ConfigDoc.load(path)  # ConfigError -> caller notifies
        else:
            self.doc = ConfigDoc.loads(text or "", source="<new config>")
        self.path: Path | None = Path(path) if path else None
        self.title_text = title or (str(path) if path else "new config")
        self.groups = [g for g in schema.GROUPS if schema.params_in_group(g.id)]
        self.built: set[str] = set()
        self.fields: dict[str, ParamField] = {}
        self.field_errors: dict[str, str] = {}
        self.dirty = False
        self.generation = 0
        self.analysis: EditorAnalysis | None = None
        self.side_mode = "estimate"
        self.memory_sources: list[tuple[str, int | None, float | None]] = [(DETECTED, None, None)]
        self.memory_index = 0
        self.compact = False
        self.gpus_here: bool | None = None  # did NVML find a GPU on this machine (None: not asked yet)
        self._timer: Any = None
        self._pending: dict[str, list[ParamField]] = {}
        self._pending_clear: set[str] = set()

    # -- layout ----------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Static(id="editor-header")
        yield Static(id="group-bar")
        yield Static(id="editor-status")
        with Horizontal(id="editor-main"):
            with GroupTabs(id="editor-tabs"):
                for g in self.groups:
                    with TabPane(g.title, id=f"tab-{g.id}"), \
                            VerticalScroll(id=f"pane-{g.id}", classes="group-pane"):
                        yield Static(g.description, classes="group-description")
            with Vertical(id="editor-side"):
                with Vertical(id="findings-box"):
                    yield FindingsList(id="findings")
                with VerticalScroll(id="side-box"):
                    yield Static(id="side-content")
        yield AppFooter()

    async def on_mount(self) -> None:
        self.query_one("#findings-box").border_title = "Findings"
        self._load_memory_sources()
        self._layout_for(self.size.width, self.size.height)
        # The group bar replaces the (hidden) tab strip; keep focus out of it. Tab goes
        # field to field, then the findings and the side panel: the group's scroll
        # container is no stop of its own (a focused field scrolls itself into view).
        for tabs in self.query("ContentTabs"):
            tabs.can_focus = False
        for pane in self.query(".group-pane"):
            pane.can_focus = False
        if self.groups:
            await self._build_group(self.groups[0].id)
            first = next(iter(self.fields.values()), None)
            if first is not None:
                # Synchronously: a deferred focus landing after a jump would switch the tab
                # back (focusing inside a TabPane activates that pane).
                self.set_focus(first.control, scroll_visible=False)
        self._update_group_bar()
        self._update_header()
        self._update_side()
        self._schedule_analysis(0)

    def on_resize(self) -> None:
        self._layout_for(self.size.width, self.size.height)

    def _layout_for(self, width: int, height: int | None = None) -> None:
        narrow = width < 120
        if narrow != self.has_class("-narrow"):
            self.set_class(narrow, "-narrow")
            if self.is_mounted and self.fields:
                self._update_group_bar()
        if height is not None:
            # A short terminal (80x24 shows ~11 rows of fields): each field folds to its
            # name, type and control; the focused one shows its help and advice.
            compact = height < COMPACT_BELOW
            if compact != self.compact:
                self.compact = compact
                focused = self._field_of(self.focused)
                for f in self.fields.values():
                    f.set_detail(not compact or f is focused)

    def _load_memory_sources(self) -> None:
        try:
            for pr in hardware_presets():
                self.memory_sources.append((_preset_label(pr), int(pr.num_gpus), float(pr.gpu_mem_gib)))
        except Exception:  # noqa: BLE001 - presets module missing: NVML only
            pass
        gv = host(self).gpu_view
        if gv is not None:
            self.gpus_here = _has_gpus(gv.snapshot)
            if not self.gpus_here and len(self.memory_sources) > 1:
                self.memory_index = 1  # no GPU here: start from the smallest preset, say so

    def memory_label(self) -> str:
        """Where the estimate's GPU size comes from, as the panel says it."""
        label = self.memory_sources[self.memory_index][0]
        if self.gpus_here is False:
            if self.memory_index == 0:
                return "no GPU found here (NVML); ctrl+g picks a preset"
            return f"no GPU found here, so {label}"
        return label

    # -- fields (built lazily, per tab, on first show) -------------------------
    async def _build_group(self, gid: str, *, complete: bool = False, until: str | None = None) -> None:
        """Mount the fields of ``gid``: a first batch now, the rest in later frames.

        ``complete`` waits for every field; ``until`` for field ``until`` and one batch
        after it (room to scroll it to the top), the rest following in later frames.
        """
        if gid not in self.built:
            self.built.add(gid)
            fields = []
            for p in schema.params_in_group(gid):
                is_set = p.name in self.doc.data
                f = ParamField(p, self.doc.get(p.name) if is_set else None, is_set=is_set)
                f.detail = not self.compact
                if p.name in self.field_errors:
                    f.error = self.field_errors[p.name]
                elif is_set:
                    f.error = schema.check_value(p.name, self.doc.get(p.name))
                    if f.error:
                        self.field_errors[p.name] = f.error
                self.fields[p.name] = f
                fields.append(f)
            self._pending[gid] = fields
            await self._mount_batch(gid, FIRST_BATCH)
        if complete:
            while self._pending.get(gid):
                await self._mount_batch(gid, BATCH)
        elif until is not None:
            while self._pending.get(gid) and any(f.name == until for f in self._pending[gid]):
                await self._mount_batch(gid, BATCH)
            if self._pending.get(gid):
                await self._mount_batch(gid, BATCH)

    async def _mount_batch(self, gid: str, n: int) -> None:
        pending = self._pending.get(gid) or []
        batch, self._pending[gid] = pending[:n], pending[n:]
        if batch:
            pane = self.query_one(f"#pane-{gid}", VerticalScroll)
            await pane.mount_all([w for f in batch for w in f.widgets()])
        if self._pending[gid]:
            self.call_after_refresh(self._continue_batches, gid)

    async def _continue_batches(self, gid: str) -> None:
        if self._pending.get(gid) and self.is_attached:
            await self._mount_batch(gid, BATCH)

    @on(TabbedContent.TabActivated)
    async def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        pane_id = event.pane.id or ""
        if pane_id.startswith("tab-"):
            await self._build_group(pane_id[4:])
            self._update_group_bar()

    def palette_groups(self) -> list[tuple[str, str]]:
        return [(g.id, g.title) for g in self.groups]

    async def show_group(self, gid: str, *, complete: bool = False, until: str | None = None) -> None:
        self.query_one(TabbedContent).active = f"tab-{gid}"
        await self._build_group(gid, complete=complete, until=until)
        self._update_group_bar()

    def _update_group_bar(self) -> None:
        var = self.app.theme_variables
        active = self.query_one(TabbedContent).active
        t = Text()
        if self.has_class("-narrow"):
            ids = [f"tab-{g.id}" for g in self.groups]
            i = ids.index(active) if active in ids else 0
            t.append(f"Group {i + 1}/{len(ids)}: ", style=fmt.style_for(var, "muted"))
            t.append(self.groups[i].title, style="bold")
            keys = [actions.get(a).display_key for a in ("editor.next_group", "editor.previous_group",
                                                             "editor.find")]
            t.append("   {} next · {} prev · {} find".format(*keys), style=fmt.style_for(var, "muted"))
            self.query_one("#group-bar", Static).update(t)
            return
        for i, g in enumerate(self.groups):
            if i:
                t.append(" · ", style=fmt.style_for(var, "muted"))
            n_err = sum(1 for k in self.field_errors if schema.PARAMS.get(k) and schema.PARAMS[k].group == g.id)
            label = g.title + (f" ✖{n_err}" if n_err else "")
            style = "reverse bold" if active == f"tab-{g.id}" else ""
            t.append(label.replace(" ", "\u00a0"), style=style)
        self.query_one("#group-bar", Static).update(t)

    async def jump_to(self, key: str) -> bool:
        """Show the field for ``key`` (switching tabs) and focus it."""
        p = schema.PARAMS.get(key)
        if p is None:
            target = schema.alias_target(key)
            p = schema.PARAMS.get(target) if target else None
        if p is None:
            self.notify(f"{key} has no field (unknown key): edit it in the YAML file.", severity="warning")
            return False
        await self.show_group(p.group, until=p.name)
        f = self.fields.get(p.name)
        if f is None:
            return False
        f.focus_control()
        # Put the field at the top of its pane once the pane has laid it out (a group
        # mounted just now may need a frame or two; scrolling earlier would be lost).
        pane = self.query_one(f"#pane-{p.group}", VerticalScroll)
        for _ in range(100):
            if f.header.region.height and pane.virtual_size.height > pane.size.height:
                break
            await asyncio.sleep(0.01)
        pane.scroll_to_widget(f.header, animate=False, top=True, immediate=True)
        return True

    def go_to(self, key: str) -> None:
        """:meth:`jump_to` from a key press (find box, findings, palette), as a worker.

        Not awaited in a message handler: that would hold this screen's messages (key
        bindings among them) while the field's group mounts, so ctrl+u typed right after
        the jump ran after the letters that followed it and emptied the field. The focus
        leaves the old field at once: keys typed meanwhile must not edit it.
        """
        self.set_focus(None)
        self.run_worker(self.jump_to(key), group="editor-jump", exclusive=True, exit_on_error=False)

    def go_to_group(self, gid: str) -> None:
        """:meth:`focus_group` from a key press, as a worker (see :meth:`go_to`)."""
        self.set_focus(None)
        self.run_worker(self.focus_group(gid), group="editor-jump", exclusive=True, exit_on_error=False)

    @on(FindingsList.JumpTo)
    def _jump(self, event: FindingsList.JumpTo) -> None:
        self.go_to(event.key)

    # -- edits ------------------------------------------------------------------
    def _field_of(self, widget: Any) -> ParamField | None:
        wid = getattr(widget, "id", None) or ""
        if not wid.startswith(CONTROL_PREFIX):
            return None
        return self.fields.get(wid[len(CONTROL_PREFIX):])

    @on(Input.Changed)
    @on(Select.Changed)
    @on(Switch.Changed)
    def _control_changed(self, event: Input.Changed | Select.Changed | Switch.Changed) -> None:
        widget = event.control
        f = self._field_of(widget)
        if f is None:
            return
        event.stop()
        if isinstance(widget, Switch):
            f.show_switch_value(bool(event.value))
        # Controls post Changed when mounted with their initial value: not an edit.
        if f.is_initial_echo(event.value):
            return
        self.apply_edit(f, f.raw_from(widget, event.value))

    def apply_edit(self, field: ParamField, raw: Any) -> None:
        p = field.param
        name = p.name
        try:
            value = schema.coerce(p, raw) if isinstance(raw, str) else raw
        except ConfigError as exc:
            self._field_error(field, getattr(exc, "bare_message", str(exc)) + (f" ({exc.hint})" if exc.hint else ""))
            return
        if value is None:
            self._field_error(field, None)
            if isinstance(raw, str):
                # An Input emptied while retyping: unset the key only when the user leaves
                # the field empty (blur, save, launch), so its place and comment survive.
                self._pending_clear.add(name)
                return
            self._unset(field)
            return
        self._pending_clear.discard(name)
        problem = schema.check_value(name, value)
        self._field_error(field, problem)
        if name not in self.doc.data and value == field.initial and field.kind == "switch" and value == bool(p.default):
            return  # a switch showing its default is not an edit
        if self.doc.get(name) != value or name not in self.doc.data:
            self.doc.set(name, value)
            field.set_is_set(True)
            self._changed()

    def _unset(self, field: ParamField) -> None:
        self._pending_clear.discard(field.name)
        if field.name in self.doc.data:
            self.doc.delete(field.name)
            self._changed()
        field.set_is_set(False)

    def _flush_clears(self) -> None:
        for name in list(self._pending_clear):
            f = self.fields.get(name)
            if f is not None:
                self._unset(f)
        self._pending_clear.clear()

    @on(Input.Blurred)
    def _input_blurred(self, event: Input.Blurred) -> None:
        f = self._field_of(event.input)
        if f is not None and f.name in self._pending_clear:
            self._unset(f)

    def _field_error(self, field: ParamField, message: str | None) -> None:
        name = field.param.name
        if message is None:
            self.field_errors.pop(name, None)
        else:
            self.field_errors[name] = message
        field.set_error(message)
        self._show_findings()
        self._update_header()
        self._update_group_bar()

    def _changed(self) -> None:
        self.dirty = True
        self._update_header()
        self._schedule_analysis()

    # -- analysis (thread worker) ----------------------------------------------
    def _schedule_analysis(self, delay: float = ANALYSE_DELAY) -> None:
        self.generation += 1
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_timer(delay, self._analyse) if delay else None
        if not delay:
            self._analyse()

    def _analyse(self) -> None:
        text = self.doc.dumps()
        label, n, gib = self.memory_sources[self.memory_index]
        self._run_analysis(self.generation, text, self.path, n, gib, label)

    @work(thread=True, exclusive=True, group="editor-analysis", exit_on_error=False)
    def _run_analysis(self, gen: int, text: str, path: Path | None, n: int | None, gib: float | None,
                      label: str) -> None:
        analysis = analyse(gen, text, path, num_gpus=n, gpu_mem_gib=gib, memory_label=label)
        self.post_message(EditorAnalysed(analysis))

    @on(EditorAnalysed)
    def _analysed(self, message: EditorAnalysed) -> None:
        a = message.analysis
        if a.gpus_detected is not None and self.gpus_here is None:
            self.gpus_here = a.gpus_detected
            if not a.gpus_detected and self.memory_index == 0 and len(self.memory_sources) > 1:
                # No GPU here (known only now, from the worker): estimate for the smallest
                # preset rather than against nothing, and say so in the panel.
                self.memory_index = 1
                self._schedule_analysis(0)
        if a.generation != self.generation:
            return  # an answer to an older edit
        self.analysis = a
        self._show_findings()
        self._update_header()
        self._update_side()

    def _show_findings(self) -> None:
        findings = self.analysis.findings if self.analysis else ()
        lst = self.query_one(FindingsList)
        lst.show(self.field_errors, findings)
        c = lst.counts()
        self.query_one("#findings-box").border_subtitle = ", ".join(
            (fmt.count(c["error"], "error"), fmt.count(c["warning"], "warning"), f"{c['advice']} advice"))

    def _update_header(self) -> None:
        var = self.app.theme_variables
        t = Text()
        t.append(self.title_text, style="bold")
        if self.dirty:
            t.append("  ● modified", style=fmt.style_for(var, "status-stopped", bold=True))
        if self.readonly:
            t.append("  read-only", style=fmt.style_for(var, "muted"))
        self.query_one("#editor-header", Static).update(t)

    def _update_side(self) -> None:
        var = self.app.theme_variables
        box = self.query_one("#side-box")
        content = self.query_one("#side-content", Static)
        a = self.analysis
        if self.side_mode == "estimate":
            label = self.memory_label()
            box.border_title = "Memory estimate"
            box.border_subtitle = "ctrl+g: GPU size  ctrl+y: YAML"
            if a is None:
                content.update(Text("estimating…", style=fmt.style_for(var, "muted")))
            else:
                content.update(render_estimate(a.estimate, a.estimate_error, label, var))
        elif self.side_mode == "yaml":
            box.border_title = "YAML to be saved"
            box.border_subtitle = "ctrl+y: diff"
            content.update(render_yaml(a.yaml_text if a else self.doc.dumps(), var))
        else:
            box.border_title = "Diff against the file on disk"
            box.border_subtitle = "ctrl+y: estimate"
            if a is not None and a.disk_changed:
                content.update(Text("The file is gone from disk.", style=fmt.style_for(var, "status-failed")))
            else:
                content.update(render_diff(a.diff if a else (), var))

    def status(self, text: str, *, error: bool = False) -> None:
        s = self.query_one("#editor-status", Static)
        s.update(text)
        s.set_class(error, "-error")

    # -- actions -----------------------------------------------------------------
    def action_back(self) -> None:
        self.leave(self.dismiss, doing="leave the editor")

    def leave(self, then: Callable[[], Any], *, doing: str) -> None:
        """Run ``then`` (which leaves or replaces this editor) once unsaved edits are dealt
        with: save, discard, or cancel (stay, edits kept)."""
        if not self.dirty or self.readonly:
            then()
            return

        def answered(choice: str | None) -> None:
            if choice == "discard":
                then()
            elif choice == "save":
                self._save_then(then)

        where = str(self.path) if self.path else "this new config (not saved yet)"
        self.app.push_screen(UnsavedModal(
            "Unsaved edits", [f"{where} has changes that are not saved.",
                              f"Save them before you {doing}, discard them, or cancel and stay here?"]),
            answered)

    def _save_then(self, then: Callable[[], Any]) -> None:
        if self.path is not None:
            if self._save(self.path):
                then()
            return
        self.action_save_as(then=then)

    def replace_with(self, other: EditorScreen) -> None:
        """Show ``other`` (another file) in place of this editor: asks first about unsaved
        edits. Two editors never stack (they would share the id and the CSS)."""
        name = other.path.name if other.path else other.title_text

        def swap() -> None:
            self.app.run_worker(self._swap(other), group="editor-swap", exclusive=True)

        self.leave(swap, doing=f"open {name}")

    async def _swap(self, other: EditorScreen) -> None:
        app = self.app
        while app.screen is not self and len(app.screen_stack) > 1:
            await app.pop_screen()  # a dialog above us (none in practice)
        await app.pop_screen()      # removed (and its id freed) before the next one mounts
        await app.push_screen(other)

    def action_toggle_preview(self) -> None:
        self.side_mode = SIDE_MODES[(SIDE_MODES.index(self.side_mode) + 1) % len(SIDE_MODES)]
        self._update_side()

    def action_cycle_memory_source(self) -> None:
        self.memory_index = (self.memory_index + 1) % len(self.memory_sources)
        self.side_mode = "estimate"
        self._update_side()
        self._schedule_analysis(0)
        self.notify(f"Estimating for: {self.memory_label()}")

    def action_focus_findings(self) -> None:
        lst = self.query_one(FindingsList)
        lst.focus()
        if lst.option_count and lst.highlighted is None:
            lst.highlighted = 0

    def action_next_group(self) -> None:
        self._step_group(1)

    def action_previous_group(self) -> None:
        self._step_group(-1)

    def _step_group(self, delta: int) -> None:
        tabs = self.query_one(TabbedContent)
        ids = [f"tab-{g.id}" for g in self.groups]
        i = ids.index(tabs.active) if tabs.active in ids else 0
        gid = self.groups[(i + delta) % len(ids)].id
        # The tab switches now (so two quick presses move two groups); the fields and
        # the focus follow in a worker.
        tabs.active = f"tab-{gid}"
        self.go_to_group(gid)

    async def focus_group(self, gid: str) -> None:
        """Show group ``gid`` from its top, with its first field focused."""
        await self.show_group(gid)
        first = next((p.name for p in schema.params_in_group(gid)), None)
        if first is not None and first in self.fields:
            self.fields[first].focus_control()
            self.query_one(f"#pane-{gid}", VerticalScroll).scroll_home(animate=False, immediate=True)

    def action_find_param(self) -> None:
        params = [p for g in self.groups for p in schema.params_in_group(g.id)]

        def found(target: Target | None) -> None:
            if target is None:
                return
            if target.kind == "group":
                self.go_to_group(target.key)
            else:
                self.go_to(target.key)

        self.app.push_screen(ParamSearch(params, self.groups), found)

    def palette_params(self) -> list[tuple[str, str, str]]:
        """(name, group title, help) of every parameter with a field: the palette finds them."""
        titles = {g.id: g.title for g in self.groups}
        return [(p.name, titles[g.id], p.help) for g in self.groups for p in schema.params_in_group(g.id)]

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        # Tab scrolls the focused control into view, but its name, help and advice sit
        # above it: bring the whole field into view (the control wins if both can't fit).
        f = self._field_of(event.widget)
        for other in self.fields.values():
            if other.current and other is not f:
                other.set_current(False)
        if f is None:
            return
        f.set_current(True)
        if self.compact:
            for other in self.fields.values():
                if other.detail and other is not f:
                    other.set_detail(False)
            f.set_detail(True)
        if f.header.is_mounted:
            self.call_after_refresh(self._show_field, f)

    def _show_field(self, f: ParamField) -> None:
        if not f.header.is_attached or not f.control.has_focus:
            return
        pane = f.header.parent
        if isinstance(pane, VerticalScroll):
            pane.scroll_to_widget(f.header, animate=False, immediate=True)
            pane.scroll_to_widget(f.control, animate=False, immediate=True)

    def action_open_config(self) -> None:
        configs.prompt_open_config(host(self))

    def action_new_config(self) -> None:
        configs.new_config(host(self))

    def action_save(self) -> None:
        if self.readonly:
            return
        if self.path is None:
            self.action_save_as()
            return
        self._save(self.path)

    def action_save_as(self, then: Callable[[], Any] | None = None) -> None:
        if self.readonly:
            return
        root = host(self).root
        default = str(self.path) if self.path else str(root / "config.yaml")

        def chosen(value: str | None) -> None:
            if value:
                p = Path(value).expanduser()
                if not p.is_absolute():
                    p = root / p
                if self._save(p) and then is not None:
                    then()

        self.app.push_screen(PathPrompt("Save config as", value=default), chosen)

    def _save(self, target: Path) -> bool:
        self._flush_clears()
        if self.field_errors:
            keys = ", ".join(sorted(self.field_errors))
            self.status(f"Not saved: fix the invalid field(s) first: {keys}", error=True)
            self.notify(f"Not saved: invalid {keys}", severity="error")
            return False
        try:
            saved = self.doc.save(target)
        except StaleFileError:
            msg = (f"Not saved: {target} changed on disk since it was opened, and saving would "
                   "overwrite those changes. Open it again (ctrl+o) or save under another name "
                   "(palette: Save as).")
            self.status(msg, error=True)
            self.notify(msg, title="File changed on disk", severity="error", timeout=12)
            return False
        except (ConfigError, OSError) as exc:
            self.status(f"Not saved: {exc}", error=True)
            self.notify(f"Not saved: {exc}", severity="error", timeout=10)
            return False
        self.path = saved
        self.title_text = str(saved)
        self.dirty = False
        errors = sum(1 for f in (self.analysis.findings if self.analysis else ()) if str(f.severity) == "error")
        self.status(f"Saved {saved}" + (f" (with {fmt.count(errors, 'error')} still listed)" if errors else ""))
        self.notify(f"Saved {saved.name}", title="Saved")
        self._update_header()
        self._schedule_analysis(0)
        return True

    def action_launch(self) -> None:
        if self.readonly:
            return
        self._flush_clears()
        if self.field_errors:
            self.notify("Fix the invalid fields before launching.", severity="error")
            return
        errors = [f for f in (self.analysis.findings if self.analysis else ())
                  if f.severity == "error"]
        if errors:
            self.notify(f"The config has {fmt.count(len(errors), 'error')}; the findings list names "
                        f"them ({actions.get('editor.findings').display_key}).", severity="error", timeout=8)
            return
        if self.path is None:
            self.notify("Save the config first (ctrl+s): a run launches from a file.", severity="warning")
            return
        values = self.doc.values()
        path = self.path
        trust = values.get("trust_remote_code") is True
        if not self.dirty:
            launch.start_launch(host(self), launch.LaunchRequest(
                path, title=f"Launch {path.name}", trust_remote_code=trust))
            return
        # Unsaved edits: the dialog shows the command for the edited config, and the file is
        # written only when the launch is confirmed. Cancelling leaves the file untouched
        # and the edits in the editor. (Not a frozen temporary copy: the run's manifest
        # would then point at a file that is not yours, and "edit the run's config" would
        # open that copy instead of the file you were editing.)
        launch.start_launch(host(self), launch.LaunchRequest(
            path, title=f"Launch {path.name} (with your unsaved edits)", trust_remote_code=trust,
            text=self.doc.dumps(), before_launch=lambda: self._save(path)))


def _has_gpus(snapshot: GpuSnapshot) -> bool:
    return snapshot.available and bool(snapshot.gpus)


def _preset_label(preset: Preset) -> str:
    """"preset 1 x 24 GiB (RTX 3090/4090)": the card, not the preset's whole title."""
    label = f"preset {preset.num_gpus} x {preset.gpu_mem_gib:g} GiB"
    card = re.search(r"\(([^)]*)\)", str(preset.title).split(":")[0])
    return f"{label} ({card.group(1)})" if card else label
