"""The Textual app: a view and a controller over run directories.

It never owns a run: runs belong to their supervisors, so quitting, losing the SSH
link or detaching tmux changes nothing about training. Sampling happens in thread
workers that post immutable snapshots (``tunedeck.tui.messages``); each poll schedules the
next one only after it finished, so a slow disk or driver never piles up work.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from textual import on, work
from textual.app import App
from textual.binding import BindingType
from textual.css.query import NoMatches
from textual.screen import Screen

from tunedeck import themes
from tunedeck.tui import actions
from tunedeck.tui.data import checkpoints, configs, control
from tunedeck.tui.data.detail import RunDetail, RunDetailSampler
from tunedeck.tui.data.gpus import GpuSampler, GpuView, failed_snapshot, gpu_snapshot
from tunedeck.tui.data.runs import (
    FROZEN_CONFIG,
    RunsSampler,
    RunsView,
    list_runs,
    read_manifest,
)
from tunedeck.tui.messages import GpusSampled, RunDetailSampled, RunsSampled
from tunedeck.tui.settings import Settings, load_settings, save_settings, user_themes_dir

if TYPE_CHECKING:
    from tunedeck.tui.data.checkpoints import CheckpointInfo
    from tunedeck.tui.data.gpus import GpuSnapshot
    from tunedeck.tui.data.runs import RunSnapshot
    from tunedeck.tui.screens.dashboard import DashboardScreen

GPU_INTERVAL = 1.0       # NVML devices ~1 Hz (processes are cached ~2 s by the facade)
RUNS_INTERVAL = 2.0      # run discovery + manifests
DETAIL_INTERVAL = 1.0    # the selected run's log/checkpoints
TTY_CHECK_INTERVAL = 2.0
TERMINAL_GONE_GRACE = 3.0  # seconds a clean exit may take once the terminal is gone


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
        self.gpu_view: GpuView | None = None
        self.runs_view: RunsView | None = None
        self._gpu_sampler = GpuSampler()
        self._detail_sampler = RunDetailSampler()
        self._runs_sampler = RunsSampler(self.root)
        self._theme_problems: list[str] = []
        self._polls_started = False
        self._hup_received = False
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

        return DashboardScreen()

    @property
    def dashboard(self) -> DashboardScreen | None:
        from tunedeck.tui.screens.dashboard import DashboardScreen

        try:
            base = self.screen_stack[0]
        except (IndexError, Exception):  # noqa: BLE001 - before the first screen exists
            return None
        return base if isinstance(base, DashboardScreen) else None

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
            self._install_terminal_watch()
        if self.start_config is not None:
            self.open_editor(self.start_config)

    def start_polls(self) -> None:
        if self._polls_started:
            return
        self._polls_started = True
        self._poll_gpus()
        self._poll_runs()

    # -- terminal loss: exit instead of spinning (dolphie's watchdog) --------------
    def _install_terminal_watch(self) -> None:
        import asyncio

        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGHUP, self._terminal_gone)
        self.set_interval(TTY_CHECK_INTERVAL, self._check_terminal, name="tty-watch")

    def _check_terminal(self) -> None:
        try:
            alive = (sys.__stdin__ is not None and sys.__stdout__ is not None
                     and os.isatty(sys.__stdin__.fileno()) and os.isatty(sys.__stdout__.fileno()))
        except (AttributeError, ValueError, OSError):
            alive = False
        if not alive:
            self._terminal_gone()

    def _terminal_gone(self) -> None:
        if self._hup_received:
            return
        self._hup_received = True
        # Textual's shutdown writes to the terminal; with the terminal gone its writer
        # thread dies on EIO and the shutdown then blocks forever on the full output
        # queue (seen under SSH drops). Runs do not depend on us: if the clean exit has
        # not finished in a few seconds, leave without it rather than linger.
        def last_resort() -> None:
            time.sleep(TERMINAL_GONE_GRACE)
            os._exit(0)

        threading.Thread(target=last_resort, name="tunedeck-hangup", daemon=True).start()
        self.exit(0)

    # -- samplers (thread workers; each poll schedules the next when it is done) ---
    def _poll_gpus(self) -> None:
        self.run_worker(self._sample_gpus, thread=True, group="gpu", exclusive=True,
                        exit_on_error=False, name="gpu-sampler")

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
        dash = self.dashboard
        if dash is not None and dash.is_mounted:
            with contextlib.suppress(NoMatches):  # its widgets go first while the app closes
                dash.apply_gpus(message.view)
        self.set_timer(GPU_INTERVAL, self._poll_gpus, name="gpu-poll")

    def _poll_runs(self) -> None:
        self.run_worker(self._sample_runs, thread=True, group="runs", exclusive=True,
                        exit_on_error=False, name="runs-sampler")

    def _sample_runs(self) -> None:
        try:
            view = self._runs_sampler.sample()
        except Exception as exc:  # noqa: BLE001
            view = RunsView(self.root, (), error=str(exc))
        self.post_message(RunsSampled(view))

    @on(RunsSampled)
    def _runs_sampled(self, message: RunsSampled) -> None:
        first = self.runs_view is None
        if message.view.root == self.root:  # not an answer for the root before a change
            self.runs_view = message.view
        dash = self.dashboard
        if dash is not None and dash.is_mounted and self.runs_view is message.view:
            with contextlib.suppress(NoMatches):  # its widgets go first while the app closes
                dash.apply_runs(message.view)
            if self._pending_select is not None and dash.select_run_dir(self._pending_select):
                self._pending_select = None
        self.set_timer(RUNS_INTERVAL, self._poll_runs, name="runs-poll")
        if first:
            self._poll_detail()

    _pending_select: Path | None = None

    def show_metric(self, metric: str) -> None:
        """The dashboard plots another metric: sample its series now."""
        self.shown_metric = metric
        if self._polls_started and self.selected_run_dir is not None:
            self._poll_detail_now()

    def select_run(self, run_dir: Path | None) -> None:
        changed = run_dir != self.selected_run_dir
        self.selected_run_dir = run_dir
        if changed and self._polls_started:
            self._poll_detail_now()

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
        run = next((r for r in (self.runs_view.runs if self.runs_view else ()) if Path(r.run_dir) == run_dir), None)
        gpus = self.gpu_view.snapshot if self.gpu_view else None
        metric = self.shown_metric
        self._detail_busy = True
        self._detail_again = False
        self.run_worker(lambda: self._sample_detail(run_dir, run, gpus, metric), thread=True,
                        group="detail", exit_on_error=False, name="detail-sampler")

    def _sample_detail(self, run_dir: Path, run: RunSnapshot | None, gpus: GpuSnapshot | None, metric: str) -> None:
        try:
            self._detail_sampler.forget({run_dir})
            detail = self._detail_sampler.sample(run_dir, run, gpus, metric=metric)
        except Exception as exc:  # noqa: BLE001
            detail = RunDetail(run_dir, run, {}, (f"cannot read run: {exc}",), (), ())
        self.post_message(RunDetailSampled(detail))

    @on(RunDetailSampled)
    def _detail_sampled(self, message: RunDetailSampled) -> None:
        self._detail_busy = False
        dash = self.dashboard
        if dash is not None and dash.is_mounted:
            with contextlib.suppress(NoMatches):  # its widgets go first while the app closes
                dash.apply_detail(message.detail)
        if self._detail_again:
            self.call_later(self._poll_detail)
        else:
            self._detail_timer = self.set_timer(DETAIL_INTERVAL, self._poll_detail, name="detail-poll")

    async def sample_once(self) -> None:
        """Sample GPUs, runs and the selected run once, off the UI thread, and show them.

        For tests, snapshots and the bench: deterministic, no timers involved.
        """
        import asyncio

        dash = self.dashboard
        while dash is not None and not dash.is_mounted:
            await asyncio.sleep(0.01)  # the first screen is still being composed
        runs = await asyncio.to_thread(list_runs, self.root)
        self._apply_runs_once(runs)
        gpus = await asyncio.to_thread(self._gpu_sampler.sample, runs.runs)
        self.gpu_view = gpus
        dash = self.dashboard
        if dash is not None and dash.is_mounted:
            with contextlib.suppress(NoMatches):  # its widgets go first while the app closes
                dash.apply_gpus(gpus)
        if self.selected_run_dir is not None:
            run_dir = self.selected_run_dir
            run = next((r for r in runs.runs if Path(r.run_dir) == run_dir), None)
            detail = await asyncio.to_thread(self._detail_sampler.sample, run_dir, run, gpus.snapshot,
                                             metric=self.shown_metric)
            if dash is not None and dash.is_mounted:
                with contextlib.suppress(NoMatches):  # its widgets go first while the app closes
                    dash.apply_detail(detail)

    def refresh_now(self) -> None:
        """Sample runs right away (after a launch/stop/resume)."""
        self._poll_runs_once()

    @work(thread=True, group="runs-now", exit_on_error=False)
    def _poll_runs_once(self) -> None:
        view = list_runs(self.root)
        self.call_from_thread(self._apply_runs_once, view)

    def _apply_runs_once(self, view: RunsView) -> None:
        if view.root != self.root:
            return  # listed for the root before a change
        self.runs_view = view
        dash = self.dashboard
        if dash is not None and dash.is_mounted:
            with contextlib.suppress(NoMatches):  # its widgets go first while the app closes
                dash.apply_runs(view)
            if self._pending_select is not None and dash.select_run_dir(self._pending_select):
                self._pending_select = None

    def set_root(self, root: Path) -> bool:
        """List the runs under another directory (besides the registered runs)."""
        root = root.expanduser()
        if not root.is_absolute():
            root = self.root / root
        if not root.is_dir():
            self.notify(f"Not a directory: {root}. Still listing runs under {self.root}.",
                        title="Runs root", severity="error", timeout=8)
            return False
        self.root = root.resolve()
        self._runs_sampler = RunsSampler(self.root)
        dash = self.dashboard
        if dash is not None and dash.is_mounted:
            dash.show_root(self.root)
        self.refresh_now()
        return True

    def prompt_root(self) -> None:
        from tunedeck.tui.screens.modals import PathPrompt

        def chosen(value: str | None) -> None:
            if value:
                self.set_root(Path(value))

        self.push_screen(PathPrompt("List runs under (registered runs are always listed)",
                                    str(self.root), placeholder="a directory"), chosen)

    # -- navigation ------------------------------------------------------------
    def action_help(self) -> None:
        from tunedeck.tui.screens.help import HelpScreen

        if isinstance(self.screen, HelpScreen):
            return
        self.push_screen(HelpScreen())

    def back_to_dashboard(self) -> None:
        while len(self.screen_stack) > 1:
            self.pop_screen()

    def open_logs(self, run_dir: Path) -> None:
        from tunedeck.tui.screens.logs import LogsScreen

        self.push_screen(LogsScreen(run_dir))

    def open_checkpoints(self, run_dir: Path) -> None:
        from tunedeck.tui.screens.checkpoints import CheckpointsScreen

        self.push_screen(CheckpointsScreen(run_dir))

    def open_triage(self, run_dir: Path) -> None:
        from tunedeck.tui.screens.triage import TriageScreen

        self.push_screen(TriageScreen(run_dir))

    def open_editor(self, path: Path | None = None, *, text: str | None = None,
                    title: str | None = None) -> None:
        from tunedeck.tui.screens.editor import EditorScreen

        try:
            screen = EditorScreen(path=path, text=text, title=title)
        except Exception as exc:  # noqa: BLE001 - ConfigError with file:line
            self.notify(str(exc), title="Cannot open config", severity="error", timeout=10)
            return
        current = next((s for s in self.screen_stack if isinstance(s, EditorScreen)), None)
        if current is not None:
            current.replace_with(screen)  # one editor at a time; asks about unsaved edits
            return
        self.push_screen(screen)

    def edit_run_config(self, run: RunSnapshot) -> None:
        m = read_manifest(run.run_dir)
        path = Path(m.config_path) if m and m.config_path and Path(m.config_path).is_file() else None
        if path is None:
            frozen = Path(run.run_dir) / FROZEN_CONFIG
            path = frozen if frozen.is_file() else None
        if path is None:
            self.notify(f"{run.name} has no config file to edit.", severity="warning")
            return
        self.open_editor(path)

    def prompt_open_config(self) -> None:
        from tunedeck.tui.screens.modals import PathPrompt

        def opened(value: str | None) -> None:
            if value:
                p = Path(value).expanduser()
                if not p.is_absolute():
                    p = self.root / p
                self.open_editor(p)

        self.push_screen(PathPrompt("Open a YAML config", placeholder=str(self.root / "config.yaml")), opened)

    def new_config(self) -> None:
        from tunedeck.tui.screens.modals import ChoiceModal

        choices: list[tuple[str, str]] = []
        for p in configs.sample_config_paths():
            choices.append((f"sample:{p}", f"sample  {p.name}"))
        try:
            for pr in configs.hardware_presets():
                choices.append((f"preset:{pr.name}", f"preset  {pr.title}"))
        except Exception:  # noqa: BLE001 - presets not available
            pass
        if not choices:
            self.notify("No sample configs or presets found.", severity="warning")
            return

        def chosen(cid: str | None) -> None:
            if not cid:
                return
            kind, _, ref = cid.partition(":")
            if kind == "sample":
                text = Path(ref).read_text(encoding="utf-8")
                self.open_editor(None, text=text, title=f"new config from {Path(ref).name}")
            else:
                self.open_editor(None, text=configs.preset_yaml(ref), title=f"new config from preset {ref}")

        self.push_screen(ChoiceModal("Start a config from", choices, id="new-config"), chosen)

    # -- run control flows (asked for by screens) --------------------------------
    def confirm_stop(self, run: RunSnapshot) -> None:
        from tunedeck.tui.screens.dashboard import describe_stop
        from tunedeck.tui.screens.modals import ConfirmationModal

        if self.readonly:
            return
        if not run.active:
            self.notify(f"{run.name} is {run.status.value}: nothing to stop.", severity="warning")
            return

        def done(ok: bool | None) -> None:
            if ok:
                self._do_stop(Path(run.run_dir), run.name)

        self.push_screen(ConfirmationModal(f"Stop run {run.name}?", describe_stop(run), yes="Stop",
                                           id="confirm-stop"), done)

    @work(thread=True, group="control", exit_on_error=False)
    def _do_stop(self, run_dir: Path, name: str) -> None:
        try:
            control.stop(run_dir)
        except Exception as exc:  # noqa: BLE001 - typed errors carry the fix
            self.call_from_thread(self.notify, str(exc), title=f"Stop {name}", severity="error", timeout=10)
            return
        self.call_from_thread(self.notify, f"Stop requested: {name} will checkpoint and exit.",
                              title="Stopping")
        self.call_from_thread(self.refresh_now)

    def choose_resume(self, run: RunSnapshot, *, checkpoint: Path | None = None,
                      overrides: dict[str, Any] | None = None) -> None:
        """Pick a checkpoint (unless given), confirm, resume."""
        from tunedeck.tui import format as fmt
        from tunedeck.tui.screens.modals import ChoiceModal

        if self.readonly:
            return
        kind = run.kind
        if kind != "tunedeck":
            # Said at once: a picker and a confirmation before "cannot" wastes the user's time.
            who = {"llamafactory": "LLaMA-Factory"}.get(kind, "plain transformers")
            self.notify(f"{run.name} was started by {who}, not tunedeck: there is no frozen config to "
                        f"resume from. Launch your config with output_dir: {run.run_dir} and it resumes "
                        "from the newest checkpoint.", title=f"Cannot resume {run.name}",
                        severity="warning", timeout=12)
            return
        if checkpoint is not None:
            self._confirm_resume(run, str(checkpoint), overrides)
            return

        def picked(cid: str | None) -> None:
            if cid:
                self._confirm_resume(run, cid, overrides)

        def offer(cks: tuple[CheckpointInfo, ...]) -> None:
            complete = [c for c in cks if c.complete]
            if not complete:
                self.notify(f"{run.name} has no complete checkpoint to resume from.", severity="warning")
                return
            choices = [(str(c.path), f"step {c.step:<7} {Path(c.path).name}"
                        + (f"  loss {shown}" if (shown := fmt.checkpoint_metric(
                            c.loss, c.loss_step, c.step)) else "")
                        + ("  (newest)" if i == 0 else "")) for i, c in enumerate(complete)]
            self.push_screen(ChoiceModal(f"Resume {run.name} from", choices, id="resume-choice"), picked)

        self._scan_then(Path(run.run_dir), offer)

    @work(thread=True, group="scan", exit_on_error=False)
    def _scan_then(self, run_dir: Path, then: Callable[[tuple[CheckpointInfo, ...]], None]) -> None:
        try:
            cks = checkpoints.scan_checkpoints(run_dir)
        except Exception:  # noqa: BLE001
            cks = ()
        self.call_from_thread(then, cks)

    def _confirm_resume(self, run: RunSnapshot, checkpoint: str, overrides: dict[str, Any] | None) -> None:
        from tunedeck.tui.screens.modals import ConfirmationModal

        lines = [
            f"Run: {run.name}  ({run.status.value})",
            f"Directory: {run.run_dir}",
            f"From: {checkpoint}",
            "What happens: a new supervised attempt starts from that checkpoint with the run's "
            "frozen config" + (" and these changes:" if overrides else "."),
        ]
        for k, v in (overrides or {}).items():
            lines.append(f"  {k}: {v}")
        if run.active:
            lines.append("The run is still active: resume will refuse until it has stopped.")

        def done(ok: bool | None) -> None:
            if ok:
                self._do_resume(Path(run.run_dir), run.name, checkpoint, overrides)

        self.push_screen(ConfirmationModal(f"Resume {run.name}?", lines, yes="Resume", danger=False,
                                           id="confirm-resume"), done)

    @work(thread=True, group="control", exit_on_error=False)
    def _do_resume(self, run_dir: Path, name: str, checkpoint: str, overrides: dict[str, Any] | None) -> None:
        try:
            control.resume(run_dir, checkpoint, overrides)
        except Exception as exc:  # noqa: BLE001
            self.call_from_thread(self.notify, str(exc), title=f"Resume {name}", severity="error", timeout=10)
            return
        self.call_from_thread(self._after_start, run_dir, f"Resumed {name} from {Path(checkpoint).name}.")

    def _after_start(self, run_dir: Path, text: str) -> None:
        self.notify(text, title="Run started")
        self.back_to_dashboard()
        self._pending_select = Path(run_dir)
        self.refresh_now()

    def launch_copy(self, run: RunSnapshot) -> None:
        frozen = Path(run.run_dir) / FROZEN_CONFIG
        if not frozen.is_file():
            self.notify(f"{run.name} has no frozen config.yaml to copy.", severity="warning")
            return
        base = Path(run.run_dir)
        n = 2
        while (base.parent / f"{base.name}-copy{n}").exists():
            n += 1
        out = base.parent / f"{base.name}-copy{n}"
        self.start_launch(frozen, {"output_dir": str(out)}, title=f"Launch a copy of {run.name}")

    def start_launch(self, config_path: Path, overrides: dict[str, Any], *, title: str,
                     trust_remote_code: bool = False, text: str | None = None,
                     before_launch: Callable[[], bool] | None = None) -> None:
        """Show the exact command and a GPU picker; launch on 'y' (and trust check).

        ``text``: plan from this YAML rather than the file; ``before_launch`` runs once
        everything is confirmed (the editor saves its edits there) and False stops the launch.
        """
        if self.readonly:
            return
        self._prepare_launch(config_path, dict(overrides), title, trust_remote_code, text, before_launch)

    @work(thread=True, group="control", exit_on_error=False)
    def _prepare_launch(self, config_path: Path, overrides: dict[str, Any], title: str,
                        trust_remote_code: bool, text: str | None = None,
                        before_launch: Callable[[], bool] | None = None) -> None:
        from tunedeck.tui.screens.modals import GpuChoice

        snap = self.gpu_view.snapshot if self.gpu_view else gpu_snapshot()
        gpus: list[GpuChoice] = []
        if snap.available:
            for g in snap.gpus:
                if g.error:
                    continue
                free = g.mem_free
                label = f"GPU {g.index}  {g.name or ''}  {'n/a' if free is None else f'{free / 2**30:.1f} GiB'} free"
                gpus.append(GpuChoice(g.index, label, selected=not gpus))
        try:
            plan = control.launch_plan(config_path, overrides, [g.index for g in gpus if g.selected] or None,
                                    text=text)
        except Exception as exc:  # noqa: BLE001
            self.call_from_thread(self.notify, str(exc), title="Cannot launch", severity="error", timeout=12)
            return
        self.call_from_thread(self._show_launch_modal, config_path, overrides, title, plan, gpus,
                              trust_remote_code, text, before_launch)

    def _show_launch_modal(self, config_path: Path, overrides: dict[str, Any], title: str,
                           plan: control.PlannedLaunch, gpus: list[Any], trust_remote_code: bool,
                           text: str | None = None, before_launch: Callable[[], bool] | None = None,
                           ) -> None:
        from tunedeck.tui.screens.modals import ConfirmationModal, LaunchModal

        notes = list(plan.notes)
        if before_launch is not None:
            notes.insert(0, f"Your unsaved edits are saved to {config_path} when you launch (y); "
                            "cancel (n) leaves the file as it is.")
        note = " ".join(notes) or None
        trust = trust_remote_code or plan.trust_remote_code

        def go(choice: list[int]) -> None:
            if before_launch is not None and not before_launch():
                return  # e.g. the save was refused: it said why; nothing is launched
            self._do_launch(config_path, overrides, choice, slurm=modal.target == "slurm")

        def launched(choice: list[int] | None) -> None:
            if choice is None:
                return
            if not trust:
                go(choice)
                return
            lines = [
                "This config sets trust_remote_code: true.",
                f"Loading the model runs Python code shipped with it ({plan.model or 'the model'}), "
                "with your user's permissions, on this machine.",
                "Only continue if you trust where that model came from.",
            ]

            def trusted(ok: bool | None) -> None:
                if ok:
                    go(choice)

            self.push_screen(ConfirmationModal("Run code from the model repository?", lines,
                                               yes="Trust and launch", id="confirm-trust"), trusted)

        def replan(chosen: list[int]) -> str:
            return control.launch_plan(config_path, overrides, chosen or None, text=text).command

        import shutil

        def slurm_script() -> str:
            return control.slurm_script(config_path, overrides, text=text)

        modal = LaunchModal(title, f"{config_path}  ->  {plan.run_dir}", plan.command, (), gpus, note,
                            replan=replan, slurm_script=slurm_script if shutil.which("sbatch") else None)
        self.push_screen(modal, launched)

    @work(thread=True, group="control", exit_on_error=False)
    def _do_launch(self, config_path: Path, overrides: dict[str, Any], gpus: list[int],
                   slurm: bool = False) -> None:
        try:
            manifest = control.launch(config_path, overrides, gpus or None, slurm=slurm)  # LaunchResult
        except Exception as exc:  # noqa: BLE001
            self.call_from_thread(self.notify, str(exc), title="Launch failed", severity="error", timeout=12)
            return
        self.call_from_thread(self._after_start, Path(manifest.run_dir), f"Launched {manifest.name}.")

