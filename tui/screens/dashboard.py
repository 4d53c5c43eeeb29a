"""The dashboard: GPUs, runs, and the selected run (metrics, alerts, log tail, checkpoints)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.css.query import NoMatches
from textual.reactive import reactive
from textual.widgets import DataTable, Input, Static

from tunedeck.tui.data.detail import RunDetail
from tunedeck.tui.data.gpus import GpuView
from tunedeck.tui.data.runs import RunStatus, RunsView
from tunedeck.tui.desktop import desktop_notify
from tunedeck.tui.flows import configs, host, launch, resume, runs_root, stop
from tunedeck.tui.messages import MetricChosen, RunSelected
from tunedeck.tui.screens.base import RegistryScreen
from tunedeck.tui.widgets.footer import AppFooter
from tunedeck.tui.widgets.gpu_panel import GpuPanel
from tunedeck.tui.widgets.run_panel import RunPanel
from tunedeck.tui.widgets.runs_table import RunsTable

if TYPE_CHECKING:
    from tunedeck.tui.data.runs import RunSnapshot


class DashboardScreen(RegistryScreen[None]):
    """GPUs, runs and the selected run.

    The app's samples arrive in the reactives below (bound to the app's, see
    ``TunedeckApp.get_default_screen``) and are painted by their ``watch_`` methods; the
    screen tells the app which run is selected and which metric is plotted by posting
    :class:`~tunedeck.tui.messages.RunSelected` / :class:`~tunedeck.tui.messages.MetricChosen`,
    and starts the user flows of :mod:`tunedeck.tui.flows`.
    """

    SCOPE = "dashboard"
    AUTO_FOCUS = "#runs"  # the runs table, never the (hidden) filter box

    root: reactive[Path] = reactive(Path, init=False)
    """The directory whose runs are listed (besides the registered runs)."""
    runs_view: reactive[RunsView | None] = reactive(None, always_update=True, init=False)
    gpu_view: reactive[GpuView | None] = reactive(None, always_update=True, init=False)
    detail: reactive[RunDetail | None] = reactive(None, always_update=True, init=False)
    """The newest sample of the selected run (shown while that run is selected)."""
    started_run: reactive[Path | None] = reactive(None, always_update=True, init=False)
    """A run just launched or resumed: selected as soon as it is listed."""

    def __init__(self) -> None:
        super().__init__(id="dashboard")
        self._empty_text: str | None = "\0"  # never a real message: the first call applies
        self.filter_text = ""  # the runs filter (/): name, status or directory, any case
        self._selected: Path | None = None  # the run the app was last told about
        self._pending_select: Path | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="gpu-box"):
            yield GpuPanel(id="gpus")
        with Vertical(id="runs-box"):
            box = Input(placeholder="filter runs: name, status or directory  (enter: keep, esc: clear)",
                        id="runs-filter", select_on_focus=False)
            box.display = False  # until / (hidden from the start: never the first focus)
            yield box
            yield Static(id="runs-empty")
            yield RunsTable(id="runs")
            yield Static(id="queue-line")
        yield RunPanel(id="run-panel")
        yield AppFooter()

    def on_mount(self) -> None:
        self.query_one("#gpu-box").border_title = "GPUs"
        self.query_one("#run-panel").border_title = "Selected run"
        self._layout_for(self.size.width, self.size.height)
        self._show_empty()

    def watch_root(self, root: Path) -> None:
        self.query_one("#runs-box").border_title = f"Runs: registered + under {root}"

    def on_resize(self) -> None:
        self._layout_for(self.size.width, self.size.height)

    def _layout_for(self, width: int, height: int) -> None:
        # Collapse on small terminals: the log tail goes first, then the checkpoints.
        self.set_class(width < 120, "-narrow")
        self.set_class(height < 34, "-short")
        table = self.query_one(RunsTable)
        old = (table.name_width, table.bar_width)
        table.set_widths(width)
        if old != (table.name_width, table.bar_width) and self.runs_view:
            table.rebuild(self.runs_view.runs)

    # -- snapshots from the app's samplers ----------------------------------------
    def watch_gpu_view(self, view: GpuView | None) -> None:
        if view is None:
            return
        with contextlib.suppress(NoMatches):  # its widgets go first while the app closes
            self.query_one(GpuPanel).update_view(view)
            self.query_one("#gpu-box").set_class(not view.snapshot.available, "-off")

    def watch_runs_view(self, old: RunsView | None, view: RunsView | None) -> None:
        if view is None:
            return
        with contextlib.suppress(NoMatches):  # its widgets go first while the app closes
            self._announce_ends(old, view)
            self._show_runs(view)
            self._select_started()

    def watch_started_run(self, run_dir: Path | None) -> None:
        self._pending_select = run_dir
        self._select_started()

    def _select_started(self) -> None:
        if self._pending_select is not None and self.select_run_dir(self._pending_select):
            self._pending_select = None

    def _show_runs(self, view: RunsView, *, refilter: bool = False) -> None:
        self._show_queue(view)
        table = self.query_one(RunsTable)
        shown = self.visible_runs(view.runs)
        if refilter:
            table.rebuild(shown)  # rows in the listing's order again, the cursor on its run
        else:
            table.update_runs(shown)
        box = self.query_one("#runs-box")
        n = len(view.runs)
        active = sum(1 for r in view.runs if r.active)
        subtitle = f"{n} run{'s' if n != 1 else ''}, {active} active"
        if self.filter_text:
            subtitle = f"{len(shown)} of {n} match “{self.filter_text}” (esc clears), {active} active"
        if box.border_subtitle != subtitle:
            box.border_subtitle = subtitle
        self._show_empty()
        self._selection_changed()

    def _announce_ends(self, old: RunsView | None, new: RunsView) -> None:
        """A run seen active that has now ended: the bell, a notification, its row flashes."""
        if old is None:
            return
        was = {str(r.run_dir): r.active for r in old.runs}
        for r in new.runs:
            now = r.status
            if was.get(str(r.run_dir)) and not r.active:
                self.app.bell()
                desktop_notify(self.app, f"tunedeck: {r.name} {now}", str(r.run_dir))
                self.notify(f"{r.name} ended: {now}", severity="information" if now is RunStatus.FINISHED else "error",
                            timeout=10)
                self.query_one(RunsTable).flash(str(r.run_dir))

    def _show_queue(self, view: RunsView) -> None:
        line = self.query_one("#queue-line", Static)
        if not view.queue:
            line.display = False
            return
        queued = [e for e in view.queue if e.state in ("queued", "starting")]
        t = f"Queue: {len(queued)} waiting" + (f" ({view.queue_note})" if view.queue_note else "")
        for e in view.queue[:3]:
            why = e.waiting or e.error or ""
            t += f"  · {e.name} {e.state}" + (f": {why.splitlines()[0][:60]}" if why else "")
        if len(view.queue) > 3:
            t += f"  · +{len(view.queue) - 3} more (tunedeck queue list)"
        line.update(t)
        line.display = True

    def watch_detail(self, detail: RunDetail | None) -> None:
        if detail is None:
            return
        with contextlib.suppress(NoMatches):  # its widgets go first while the app closes
            sel = self.selected_run()
            if sel is not None and Path(sel.run_dir) != detail.run_dir:
                return  # an answer for a run that is no longer selected
            self.query_one(RunPanel).show(detail)

    def _show_empty(self) -> None:
        empty = self.query_one("#runs-empty", Static)
        view = self.runs_view
        text = None
        if view is not None and view.error:
            text = view.error
        elif view is not None and view.runs and self.filter_text and not self.visible_runs(view.runs):
            text = f"No run matches “{self.filter_text}” (esc clears the filter)."
        elif view is not None and not view.runs:
            text = (f"No registered runs and none under {view.root} (d: another directory). "
                    "Press n for a new config or o to open one; or: tunedeck demo --headless")
        if text != self._empty_text:  # no repaint when nothing changed
            self._empty_text = text
            if text is not None:
                empty.update(text)
            empty.display = text is not None

    # -- the runs filter (/) and vi keys ----------------------------------------
    def visible_runs(self, runs: tuple[RunSnapshot, ...]) -> tuple[RunSnapshot, ...]:
        q = self.filter_text.lower()
        if not q:
            return runs
        return tuple(r for r in runs if q in (r.name or r.id or "").lower()
                     or q in str(r.status)
                     or q in str(r.run_dir).lower())

    def action_filter_runs(self) -> None:
        box = self.query_one("#runs-filter", Input)
        box.display = True
        box.focus()
        box.cursor_position = len(box.value)  # / again: go on typing where the filter ends

    def action_clear_filter(self) -> None:
        box = self.query_one("#runs-filter", Input)
        if not box.display and not self.filter_text:
            return
        with box.prevent(Input.Changed):
            box.value = ""
        box.display = False
        self.query_one(RunsTable).focus()
        self._set_filter("")

    def action_runs_cursor(self, delta: int) -> None:
        table = self.query_one(RunsTable)
        table.focus()
        if delta > 0:
            table.action_cursor_down()
        else:
            table.action_cursor_up()

    @on(Input.Changed, "#runs-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        event.stop()
        self._set_filter(event.value.strip())

    @on(Input.Submitted, "#runs-filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if not event.value.strip():
            event.input.display = False
        self.query_one(RunsTable).focus()

    def _set_filter(self, text: str) -> None:
        if text == self.filter_text:
            return
        self.filter_text = text
        if self.runs_view is not None:
            self._show_runs(self.runs_view, refilter=True)

    # -- selection ------------------------------------------------------------
    def selected_run(self) -> RunSnapshot | None:
        return self.query_one(RunsTable).run_at_cursor()

    def select_run_dir(self, run_dir: Path) -> bool:
        ok = self.query_one(RunsTable).select_run_dir(str(run_dir))
        if ok:
            self._selection_changed()
        return ok

    @on(DataTable.RowHighlighted)
    def _row_highlighted(self, _event: DataTable.RowHighlighted) -> None:
        self._selection_changed()

    def _selection_changed(self) -> None:
        run = self.selected_run()
        new = Path(run.run_dir) if run is not None else None
        if new != self._selected:
            self._selected = new
            self.post_message(RunSelected(new))
            shown = self.query_one(RunPanel).detail
            if shown is None or shown.run_dir != new:
                self.query_one(RunPanel).show(None if new is None else RunDetail(new, run, {}, (), (), ()))

    def _need_run(self) -> RunSnapshot | None:
        run = self.selected_run()
        if run is None:
            self.notify("No run selected.", severity="warning")
        return run

    # -- actions (ids and keys in tui/actions.py) ----------------------------
    def action_metric(self, name: str) -> None:
        self.query_one(RunPanel).set_metric(name)
        self.post_message(MetricChosen(name))

    def action_stop_run(self) -> None:
        run = self._need_run()
        if run is not None:
            stop.confirm_stop(host(self), run)

    def action_resume_run(self) -> None:
        run = self._need_run()
        if run is not None:
            resume.choose_resume(host(self), run)

    def action_launch_copy(self) -> None:
        run = self._need_run()
        if run is not None:
            launch.launch_copy(host(self), run)

    def action_open_triage(self) -> None:
        from tunedeck.tui.screens.triage import TriageScreen

        run = self._need_run()
        if run is not None:
            self.app.push_screen(TriageScreen(Path(run.run_dir)))

    def action_open_logs(self) -> None:
        from tunedeck.tui.screens.logs import LogsScreen

        run = self._need_run()
        if run is not None:
            self.app.push_screen(LogsScreen(Path(run.run_dir)))

    def action_toggle_mark(self) -> None:
        run = self.query_one(RunsTable).toggle_mark()
        if run is None:
            self.notify("No run selected.", severity="warning")

    def action_compare(self) -> None:
        from tunedeck.tui.screens.chart import ChartScreen

        marked = self.query_one(RunsTable).marked_runs()
        if len(marked) == 1:
            self.notify("Mark two or more runs with space, then press c to compare them.",
                        severity="warning")
            return
        if not marked:  # C with nothing marked: talk to the selected run (issue 14's key)
            self.action_open_chat()
            return
        self.app.push_screen(ChartScreen([(r.name or r.id, Path(r.run_dir)) for r in marked]))

    def action_open_chart(self) -> None:
        from tunedeck.tui.screens.chart import ChartScreen

        run = self._need_run()
        if run is not None:
            self.app.push_screen(ChartScreen([(run.name or run.id, Path(run.run_dir))]))

    def action_open_checkpoints(self) -> None:
        from tunedeck.tui.screens.checkpoints import CheckpointsScreen

        if len(self.query_one(RunsTable).marked_runs()) >= 2:
            self.action_compare()
            return
        run = self._need_run()
        if run is not None:
            self.app.push_screen(CheckpointsScreen(Path(run.run_dir)))

    def action_open_chat(self) -> None:
        from tunedeck.tui.screens.chat import ChatScreen, ChatTarget

        run = self._need_run()
        if run is not None:
            self.app.push_screen(ChatScreen([ChatTarget(str(run.run_dir))]))

    def action_edit_config(self) -> None:
        run = self._need_run()
        if run is not None:
            configs.edit_run_config(host(self), run)

    def action_new_config(self) -> None:
        configs.new_config(host(self))

    def action_open_config(self) -> None:
        configs.prompt_open_config(host(self))

    def action_change_root(self) -> None:
        runs_root.prompt_root(host(self))


__all__ = ["DashboardScreen"]
