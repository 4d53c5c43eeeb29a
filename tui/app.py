"""The Textual app: a view and a controller over run directories.

It never owns a run: runs belong to their supervisors, so quitting, losing the SSH
link or detaching tmux changes nothing about training. Sampling happens in thread
workers that post immutable snapshots (``tunedeck.tui.messages``); each poll schedules the
next one only after it finished, so a slow disk or driver never piles up work.

The app holds the samplers, the themes, the first screen and the app-wide keys. What the
samplers saw lives in its reactives (``root``, ``runs_view``, ``gpu_view``, ``detail``), which
the dashboard binds; screens and flows (``tunedeck.tui.flows``) reach it by messages. See
``tunedeck.tui`` for the rule.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from textual import on
from textual.app import App
from textual.binding import BindingType
from textual.reactive import reactive
from textual.screen import Screen

from tunedeck import themes
from tunedeck.tui import actions
from tunedeck.tui.data.detail import RunDetail, RunDetailSampler
from tunedeck.tui.data.gpus import GpuSampler, GpuView, failed_snapshot
from tunedeck.tui.data.runs import RunsSampler, RunsView, list_runs
from tunedeck.tui.flows import configs
from tunedeck.tui.messages import (
    GpusSampled,
    MetricChosen,
    RootChosen,
    RunDetailSampled,
    RunsChanged,
    RunSelected,
    RunsSampled,
)
from tunedeck.tui.settings import Settings, load_settings, save_settings, user_themes_dir
from tunedeck.tui.terminal import TerminalWatch

if TYPE_CHECKING:
    from tunedeck.tui.data.gpus import GpuSnapshot
    from tunedeck.tui.data.runs import RunSnapshot

GPU_INTERVAL = 1.0       # NVML devices ~1 Hz (processes are cached ~2 s by the facade)
RUNS_INTERVAL = 2.0      # run discovery + manifests
DETAIL_INTERVAL = 1.0    # the selected run's log/checkpoints


def tunedeck_commands() -> type[Any]:
    """The palette provider, imported when the palette first opens (not at start-up)."""
    from tunedeck.tui.commands import TunedeckCommands

    return TunedeckCommands


class TunedeckApp(App[int]):
    """``tunedeck`` with no command. See ``tunedeck tui --help`` for the options."""

    TITLE = "tunedeck"
    CSS_PATH = [str(p) for p in themes.APP_TCSS]
    COMMANDS = App.COMMANDS | {tunedeck_commands}
    BINDINGS: ClassVar[list[BindingType]] = list(actions.bindings_for("app", readonly=False))
    ENABLE_COMMAND_PALETTE = True

    # What the samplers saw; the dashboard binds these (DashboardScreen.data_bind).
    root: reactive[Path] = reactive(Path, init=False)
    runs_view: reactive[RunsView | None] = reactive(None, always_update=True, init=False)
    gpu_view: reactive[GpuView | None] = reactive(None, always_update=True, init=False)
    detail: reactive[RunDetail | None] = reactive(None, always_update=True, init=False)  # selected run
    started_run: reactive[Path | None] = reactive(None, always_update=True, init=False)  # to select

    def __init__(
        self,
        *,
        root: str | Path | None = None,
        readonly: bool = False,
        theme: str | None = None,
        config: str | Path | None = None,
        poll: bool = True,
        settings_file: Path | None = None,
    ) -> None:
        self.readonly = readonly  # set before super().__init__: screens read it
        super().__init__()
        self.root = Path(root or os.getcwd()).resolve()
        self.start_config = Path(config).resolve() if config else None
        self.poll_enabled = poll
        self.settings_file = settings_file
        self.settings: Settings = load_settings(settings_file)
        self.cli_theme = theme
        self.selected_run_dir: Path | None = None
        self.shown_metric = "loss"  # the dashboard's sparkline: only it is downsampled
        self._gpu_sampler = GpuSampler()
        self._detail_sampler = RunDetailSampler()
        self._runs_sampler = RunsSampler(self.root)
        self._theme_problems: list[str] = []
        self._polls_started = False
        self._mounted_once = False  # theme changes before mount are not "choices" to remember
        for t in themes.BUILTIN.values():
            self.register_theme(t)
        user, problems = themes.load_user_themes(user_themes_dir())
        for t in user:
            self.register_theme(t)
        self.user_theme_names = tuple(t.name for t in user)
        self._theme_problems = [str(p) for p in problems]
        self.theme = self._initial_theme()

    # -- themes -------------------------------------------------------------------
    def get_theme_variable_defaults(self) -> dict[str, str]:
        return dict(themes.VARIABLE_DEFAULTS)

    def _initial_theme(self) -> str:
        for source, name in (("--theme", self.cli_theme), ("settings", self.settings.theme)):
            resolved = themes.resolve_name(name)
            if not resolved:
                continue
            if resolved in self.available_themes:
                return resolved
            self._theme_problems.append(
                f"theme {name!r} (from {source}) does not exist; using {themes.DEFAULT_THEME}. "
                f"Known: {', '.join(sorted(self._our_theme_names()))}"
            )
            break
        return themes.DEFAULT_THEME

    def _our_theme_names(self) -> list[str]:
        return [n for n in self.available_themes if n in themes.BUILTIN or n in self.user_theme_names]

    def watch_theme(self, theme_name: str) -> None:
        # Remember the choice (palette switch or --theme). Widgets recolour themselves: their
        # colours are component classes styled with the theme's variables.
        if self._mounted_once and theme_name != self.settings.theme:
            self.settings = self.settings.with_theme(theme_name)
            save_settings(self.settings, self.settings_file)

    def action_next_theme(self) -> None:
        names = self._our_theme_names()
        i = names.index(self.theme) if self.theme in names else -1
        self.theme = names[(i + 1) % len(names)]
        self.notify(f"Theme: {self.theme}")

    def action_command_palette(self) -> None:
        """ctrl+p: our palette (Enter runs the match for what was typed, however fast)."""
        from textual.command import CommandPalette

        from tunedeck.tui.commands import TunedeckPalette

        if self.use_command_palette and not CommandPalette.is_open(self):  # type: ignore[arg-type]
            self.push_screen(TunedeckPalette(id="--command-palette"))

    # -- start-up -----------------------------------------------------------------
    def get_default_screen(self) -> Screen[Any]:
        from tunedeck.tui.screens.dashboard import DashboardScreen

        return DashboardScreen().data_bind(TunedeckApp.root, TunedeckApp.runs_view, TunedeckApp.gpu_view,
                                           TunedeckApp.detail, TunedeckApp.started_run)

    def on_mount(self) -> None:
        self._mounted_once = True
        if self.cli_theme and self.theme != self.settings.theme and \
                themes.resolve_name(self.cli_theme) == self.theme:
            self.settings = self.settings.with_theme(self.theme)  # --theme is remembered too
            save_settings(self.settings, self.settings_file)
        for problem in self._theme_problems:
            self.notify(problem, severity="error", timeout=10)
        if self.readonly:
            self.sub_title = "read-only"
        if self.poll_enabled:
            self.start_polls()
        if not self.is_headless:
            TerminalWatch(self).install()  # exit when the terminal goes away
        if self.start_config is not None:
            configs.open_editor(self, self.start_config)

    def start_polls(self) -> None:
        if self._polls_started:
            return
        self._polls_started = True
        self._poll(self._sample_gpus, "gpu")
        self._poll(self._sample_runs, "runs")

    # -- samplers (thread workers; each poll schedules the next when it is done) ---
    # What they saw goes into the reactives above, which the dashboard binds.
    def _poll(self, sample: Callable[[], None], group: str) -> None:
        self.run_worker(sample, thread=True, group=group, exclusive=True, exit_on_error=False,
                        name=f"{group}-sampler")

    def _sample_gpus(self) -> None:
        runs = self.runs_view.runs if self.runs_view else ()
        try:
            view = self._gpu_sampler.sample(runs)
        except Exception as exc:  # noqa: BLE001 - the facade never raises, but be sure
            view = GpuView(failed_snapshot(str(exc)), {}, {})
        self.post_message(GpusSampled(view))

    @on(GpusSampled)
    def _gpus_sampled(self, message: GpusSampled) -> None:
        self.gpu_view = message.view
        self.set_timer(GPU_INTERVAL, partial(self._poll, self._sample_gpus, "gpu"), name="gpu-poll")

    def _sample_runs(self) -> None:
        try:
            view = self._runs_sampler.sample()
        except Exception as exc:  # noqa: BLE001
            view = RunsView(self.root, (), error=str(exc))
        self.post_message(RunsSampled(view))

    @on(RunsSampled)
    def _runs_sampled(self, message: RunsSampled) -> None:
        first = self.runs_view is None
        self._take_runs(message.view)
        self.set_timer(RUNS_INTERVAL, partial(self._poll, self._sample_runs, "runs"), name="runs-poll")
        if first:
            self._poll_detail()

    def _take_runs(self, view: RunsView) -> None:
        if view.root == self.root:  # not an answer for the root before a change
            self.runs_view = view

    def refresh_now(self) -> None:
        """List the runs right away (after a launch/stop/resume, a new root)."""
        self.run_worker(self._list_runs_now, thread=True, group="runs-now", exit_on_error=False)

    def _list_runs_now(self) -> None:
        view = list_runs(self.root)
        self.call_from_thread(self._take_runs, view)

    # The selected run is sampled by one chain of polls: at most one sample in flight, and
    # each answer schedules the next. A request for a sample now (another run selected,
    # another metric) never starts a second sampler beside it (the incremental readers are
    # not shared between threads, and two answers in the queue coalesce into one: the
    # chain's own answer could be dropped and the panel froze, e.g. after a resume).
    _detail_busy = False
    _detail_again = False
    _detail_timer: Any = None

    def _poll_detail_now(self) -> None:
        if self._detail_busy:
            self._detail_again = True  # the answer in flight schedules the next poll at once
            return
        if self._detail_timer is not None:
            self._detail_timer.stop()
        self._poll_detail()

    def _poll_detail(self) -> None:
        self._detail_timer = None
        if self._detail_busy:
            self._detail_again = True
            return
        run_dir = self.selected_run_dir
        if run_dir is None:
            self._detail_timer = self.set_timer(DETAIL_INTERVAL, self._poll_detail, name="detail-poll")
            return
        run = self._listed(run_dir)
        gpus = self.gpu_view.snapshot if self.gpu_view else None
        metric = self.shown_metric
        self._detail_busy = True
        self._detail_again = False
        self.run_worker(lambda: self._sample_detail(run_dir, run, gpus, metric), thread=True,
                        group="detail", exit_on_error=False, name="detail-sampler")

    def _listed(self, run_dir: Path) -> RunSnapshot | None:
        return next((r for r in (self.runs_view.runs if self.runs_view else ()) if Path(r.run_dir) == run_dir), None)

    def _sample_detail(self, run_dir: Path, run: RunSnapshot | None, gpus: GpuSnapshot | None,
                       metric: str) -> None:
        try:
            self._detail_sampler.forget({run_dir})
            detail = self._detail_sampler.sample(run_dir, run, gpus, metric=metric)
        except Exception as exc:  # noqa: BLE001
            detail = RunDetail(run_dir, run, {}, (f"cannot read run: {exc}",), (), ())
        self.post_message(RunDetailSampled(detail))

    @on(RunDetailSampled)
    def _detail_sampled(self, message: RunDetailSampled) -> None:
        self._detail_busy = False
        self.detail = message.detail
        if self._detail_again:
            self.call_later(self._poll_detail)
        else:
            self._detail_timer = self.set_timer(DETAIL_INTERVAL, self._poll_detail, name="detail-poll")

    async def sample_once(self) -> None:
        """Sample GPUs, runs and the selected run once, off the UI thread, and show them.

        For tests, snapshots and the bench (called from outside the app's message loop):
        deterministic, no timers involved.
        """
        runs = await asyncio.to_thread(list_runs, self.root)
        self._take_runs(runs)
        await self._settled()  # the dashboard shows them and said which run is selected
        gpus = await asyncio.to_thread(self._gpu_sampler.sample, runs.runs)
        self.gpu_view = gpus
        if self.selected_run_dir is not None:
            run_dir = self.selected_run_dir
            self.detail = await asyncio.to_thread(self._detail_sampler.sample, run_dir, self._listed(run_dir),
                                                  gpus.snapshot, metric=self.shown_metric)
        await self._settled()

    async def _settled(self) -> None:
        """Wait until the base screen, then the app, have handled what is queued for them."""
        for node in (self.screen_stack[0], self):
            done = asyncio.Event()
            node.call_later(done.set)
            await done.wait()

    # -- requests from screens and flows (tunedeck.tui.messages) -----------------
    @on(RunSelected)
    def _run_selected(self, message: RunSelected) -> None:
        changed = message.run_dir != self.selected_run_dir
        self.selected_run_dir = message.run_dir
        if changed and self._polls_started:
            self._poll_detail_now()

    @on(MetricChosen)
    def _metric_chosen(self, message: MetricChosen) -> None:
        self.shown_metric = message.metric  # the dashboard's sparkline: only it is downsampled
        if self._polls_started and self.selected_run_dir is not None:
            self._poll_detail_now()

    @on(RunsChanged)
    def _runs_changed(self, message: RunsChanged) -> None:
        if message.started is not None:
            self.back_to_dashboard()
            self.started_run = message.started  # the dashboard selects it once listed
        self.refresh_now()

    @on(RootChosen)
    def _root_chosen(self, message: RootChosen) -> None:
        self.root = message.root
        self._runs_sampler = RunsSampler(self.root)
        self.refresh_now()

    # -- navigation ------------------------------------------------------------
    def action_help(self) -> None:
        from tunedeck.tui.screens.help import HelpScreen

        if isinstance(self.screen, HelpScreen):
            return
        self.push_screen(HelpScreen())

    def back_to_dashboard(self) -> None:
        while len(self.screen_stack) > 1:
            self.pop_screen()
