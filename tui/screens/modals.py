"""Modal dialogs: confirmation (y/n), unsaved edits (save/discard/cancel), launch (command +
GPU picker), path prompt, choice."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, OptionList, SelectionList, Static
from textual.widgets.option_list import Option
from textual.widgets.selection_list import Selection

from tunedeck.tui.screens.base import RegistryModal


class ConfirmationModal(RegistryModal[bool]):
    """Ask before doing something that changes a run. Names exactly what will happen.

    ``y`` confirms, ``n`` or ``Esc`` cancels; nothing happens until ``y``.
    """

    def __init__(self, title: str, lines: Sequence[str], *, yes: str = "Yes", danger: bool = True,
                 id: str | None = None) -> None:
        super().__init__(id=id)
        self.title_text = title
        self.lines = list(lines)
        self.yes_label = yes
        self.danger = danger

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="-danger" if self.danger else ""):
            yield Label(escape(self.title_text), id="dialog-title")
            with VerticalScroll(id="dialog-body"):
                for line in self.lines:
                    yield Static(escape(line), classes="dialog-line")
            with Horizontal(id="dialog-buttons"):
                yield Button(f"{self.yes_label} (y)", id="yes",
                             variant="error" if self.danger else "primary")
                yield Button("No (n)", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def action_yes(self) -> None:
        self.dismiss(True)

    def action_no(self) -> None:
        self.dismiss(False)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


class UnsavedModal(RegistryModal["str | None"]):
    """The editor has unsaved edits and is about to be left or replaced: returns "save",
    "discard", or None (stay). ``s`` / ``d`` / ``Esc``; the buttons say the same."""

    SCOPE = "unsaved"

    def __init__(self, title: str, lines: Sequence[str], *, id: str | None = "confirm-unsaved") -> None:
        super().__init__(id=id)
        self.title_text = title
        self.lines = list(lines)

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(escape(self.title_text), id="dialog-title")
            with VerticalScroll(id="dialog-body"):
                for line in self.lines:
                    yield Static(escape(line), classes="dialog-line")
            with Horizontal(id="dialog-buttons"):
                yield Button("Save (s)", id="save", variant="primary")
                yield Button("Discard (d)", id="discard", variant="error")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()

    def action_save(self) -> None:
        self.dismiss("save")

    def action_discard(self) -> None:
        self.dismiss("discard")

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(None if event.button.id == "cancel" else event.button.id)


@dataclass(frozen=True)
class GpuChoice:
    index: int
    label: str          # "GPU 0  NVIDIA A100 80GB  62.1 GiB free"
    selected: bool


class LaunchModal(RegistryModal["list[int] | None"]):
    """Shows the exact command and a GPU picker; returns the chosen GPU indices (or None).

    ``replan(gpus) -> command`` (called in a thread) gives the command for another
    choice of GPUs, so what is shown is always what will run.
    """

    def __init__(self, title: str, config_path: str, command: str, env: Sequence[str],
                 gpus: Sequence[GpuChoice], note: str | None = None,
                 replan: Callable[[list[int]], str] | None = None,
                 slurm_script: Callable[[], str] | None = None) -> None:
        super().__init__(id="launch-modal")
        # "local" (this machine, a supervisor) or "slurm" (sbatch); t switches when Slurm is here.
        self.target = "local"
        self.slurm_script = slurm_script
        self.title_text = title
        self.config_path = config_path
        self.command = command
        self.env = list(env)
        self.gpus = list(gpus)
        self.note = note
        self.replan = replan

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(escape(self.title_text), id="dialog-title")
            with VerticalScroll(id="dialog-body"):
                yield Static(f"config: {escape(self.config_path)}", classes="dialog-line")
                yield Label("Command (runs detached under a supervisor):", classes="dialog-heading",
                            id="launch-heading")
                yield Static(escape(self.command), id="launch-command", classes="command")
                if self.env:
                    yield Static(escape("env: " + " ".join(self.env)), id="launch-env", classes="command")
                if self.gpus:
                    yield Label("GPUs (space toggles; free memory now):", classes="dialog-heading")
                    yield SelectionList[int](
                        *[Selection(g.label, g.index, g.selected) for g in self.gpus], id="gpu-picker"
                    )
                else:
                    yield Static("No GPU detected: the run uses the CPU.", id="launch-cpu",
                                 classes="dialog-line")
                if self.note:
                    yield Static(escape(self.note), classes="dialog-line -warning")
            with Horizontal(id="dialog-buttons"):
                yield Button("Launch (y)", id="yes", variant="primary")
                yield Button("Cancel (n)", id="no")
                if self.slurm_script is not None:
                    yield Button(self._target_text(), id="target")

    def on_mount(self) -> None:
        if self.gpus:
            self.query_one("#gpu-picker", SelectionList).focus()
        else:
            self.query_one("#yes", Button).focus()

    def _target_text(self) -> str:
        return "On: Slurm (t)" if self.target == "slurm" else "On: this machine (t)"

    def action_toggle_target(self) -> None:
        """Switch between this machine and a Slurm job (only offered where sbatch exists)."""
        if self.slurm_script is None:
            return
        self.target = "slurm" if self.target == "local" else "local"
        self.query_one("#target", Button).label = self._target_text()
        slurm = self.target == "slurm"
        self.query_one("#launch-heading", Label).update(
            "Job script (sbatch; settings.json's slurm defaults; slurm_job.sh in the run directory):"
            if slurm
            else "Command (runs detached under a supervisor):")
        for wid in ("#gpu-picker", "#launch-cpu", "#launch-env"):
            for w in self.query(wid):
                w.display = not slurm
        if slurm:
            self.query_one("#launch-command", Static).update("(writing the script...)")
            self._script()
        else:
            self.query_one("#launch-command", Static).update(escape(self.command))

    @work(thread=True, exclusive=True, group="replan", exit_on_error=False)
    def _script(self) -> None:
        assert self.slurm_script is not None
        try:
            text = self.slurm_script()
        except Exception as exc:  # noqa: BLE001 - say why it cannot go to Slurm
            text = f"(cannot submit to Slurm: {exc})"
        self.app.call_from_thread(self._show_script, text)

    def _show_script(self, text: str) -> None:
        if self.target == "slurm":
            self.query_one("#launch-command", Static).update(escape(text))

    def selected_gpus(self) -> list[int]:
        if not self.gpus:
            return []
        return sorted(self.query_one("#gpu-picker", SelectionList).selected)

    @on(SelectionList.SelectedChanged, "#gpu-picker")
    def _gpus_changed(self) -> None:
        if self.replan is not None:
            self._replan(self.selected_gpus())

    @work(thread=True, exclusive=True, group="replan", exit_on_error=False)
    def _replan(self, gpus: list[int]) -> None:
        assert self.replan is not None
        try:
            command = self.replan(gpus)
        except Exception as exc:  # noqa: BLE001 - say why this choice cannot launch
            command = f"(cannot launch on GPUs {gpus}: {exc})"
        self.app.call_from_thread(self._show_command, command)

    def _show_command(self, command: str) -> None:
        self.command = command
        if self.target == "local":
            self.query_one("#launch-command", Static).update(escape(command))

    def action_yes(self) -> None:
        self.dismiss(self.selected_gpus())

    def action_no(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "yes":
            self.action_yes()
        elif event.button.id == "target":
            self.action_toggle_target()
        else:
            self.action_no()


class PathPrompt(ModalScreen["str | None"]):
    """Ask for a file path. Enter accepts, Esc cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="prompt.cancel")]

    def __init__(self, title: str, value: str = "", placeholder: str = "path/to/config.yaml") -> None:
        super().__init__(id="path-prompt")
        self.title_text = title
        self.value = value
        self.placeholder = placeholder

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(escape(self.title_text), id="dialog-title")
            yield Input(self.value, placeholder=self.placeholder, id="path-input")
            yield Static("enter: accept   esc: cancel", classes="dialog-hint")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ChoiceModal(ModalScreen["str | None"]):
    """Pick one item from a list (samples, presets, checkpoints). Enter picks, Esc cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="choice.cancel")]

    def __init__(self, title: str, choices: Sequence[tuple[str, str]], *, id: str | None = None) -> None:
        super().__init__(id=id or "choice-modal")
        self.title_text = title
        self.choices = list(choices)

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(escape(self.title_text), id="dialog-title")
            yield OptionList(*[Option(escape(label), id=cid) for cid, label in self.choices],
                             id="choice-list")
            yield Static("enter: choose   esc: cancel", classes="dialog-hint")

    def on_mount(self) -> None:
        self.query_one(OptionList).focus()

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)


