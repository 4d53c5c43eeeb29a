"""The one registry of every key binding and action in the TUI.

Each entry has a stable id, the key, the action it runs, a short footer label and
a one-sentence help. Screens build their bindings from here
(:func:`bindings_for`), the help screen and the command palette list from here,
and ``--readonly`` filters here: an action that changes a run (or writes a file)
is not registered at all in read-only mode, so no key, palette entry or footer
hint can reach it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from textual.binding import Binding

# Scopes, in the order the help screen lists them.
SCOPES: dict[str, str] = {
    "app": "Everywhere",
    "dashboard": "Dashboard",
    "editor": "Config editor",
    "checkpoints": "Checkpoints",
    "chart": "Chart and compare",
    "triage": "Triage",
    "logs": "Logs",
    "chat": "Chat",
    "help": "Help",
    "modal": "Confirmation dialogs",
    "unsaved": "Unsaved edits dialog",
}


@dataclass(frozen=True)
class Action:
    """One user action. ``key`` None means palette-only; ``builtin`` means Textual binds it."""

    id: str
    key: str | None
    action: str
    label: str
    help: str
    scope: str
    mutating: bool = False
    show: bool = True
    key_display: str | None = None
    priority: bool = False
    builtin: bool = False

    @property
    def display_key(self) -> str:
        if self.key is None:
            return ""
        if self.key_display:
            return self.key_display
        first = self.key.split(",")[0]
        return {"question_mark": "?", "slash": "/", "escape": "esc", "enter": "enter",
                "ctrl+pageup": "ctrl+pgup", "ctrl+pagedown": "ctrl+pgdn"}.get(first, first)

    def binding(self) -> Binding:
        assert self.key is not None
        return Binding(
            self.key,
            self.action,
            self.label,
            show=self.show,
            key_display=self.key_display,
            priority=self.priority,
            tooltip=self.help,
            id=self.id,
        )


def _a(*args: object, **kwargs: object) -> Action:
    return Action(*args, **kwargs)  # type: ignore[arg-type]


ACTIONS: tuple[Action, ...] = (
    # -- everywhere -----------------------------------------------------------
    _a("app.help", "question_mark,f1", "help", "Help", "Show every key of every screen.", "app",
       key_display="?"),
    _a("app.palette", "ctrl+p", "command_palette", "Palette",
       "Open the command palette: every action of this screen, themes, editor groups.", "app",
       builtin=True),
    _a("app.quit", "ctrl+q", "quit", "Quit",
       "Quit the TUI. Runs keep going: they belong to their supervisors, not to this window.", "app",
       priority=True, show=False),
    _a("app.focus_next", "tab", "app.focus_next", "Next field",
       "Move the focus to the next field, list or panel.", "app", builtin=True, show=False),
    _a("app.focus_previous", "shift+tab", "app.focus_previous", "Prev field",
       "Move the focus to the previous field, list or panel.", "app", builtin=True, show=False),
    _a("app.theme.next", None, "next_theme", "Next theme", "Switch to the next colour theme.", "app"),
    # -- dashboard ------------------------------------------------------------
    _a("dashboard.quit", "q", "app.quit", "Quit", "Quit the TUI (runs keep going).", "dashboard",
       show=False),
    _a("run.stop", "S", "stop_run", "Stop",
       "Stop the selected run: it saves a checkpoint at the next step and exits (asks first).",
       "dashboard", mutating=True),
    _a("run.resume", "R", "resume_run", "Resume",
       "Resume the selected run from a checkpoint you choose.", "dashboard", mutating=True),
    _a("run.launch_copy", "L", "launch_copy", "Copy",
       "Launch a copy of the selected run's frozen config into a new output directory.",
       "dashboard", mutating=True, show=False),  # not in the footer: "/ Filter" and "? Help" fit in 80
    _a("run.triage", "t", "open_triage", "Triage",
       "Diagnose the selected run and list ordered fixes with config patches.", "dashboard"),
    _a("run.logs", "l", "open_logs", "Logs", "Open the selected run's full stdout.log.", "dashboard"),
    _a("run.checkpoints", "c", "open_checkpoints", "Ckpts",
       "List the selected run's checkpoints (resume from one, delete one); with two or more runs "
       "marked (space), compare them instead.", "dashboard"),
    _a("run.mark", "space", "toggle_mark", "Mark",
       "Mark or unmark the selected run for comparing (c or C compares the marked runs).", "dashboard",
       key_display="space"),
    _a("run.compare", "C", "compare", "Compare",
       "Compare the marked runs: overlaid curves, the table with deltas, the hyperparameter diff; "
       "with fewer than two marked, chat with the selected run.", "dashboard"),
    _a("run.chat", None, "open_chat", "Chat",
       "Chat with the selected run's newest weights (ctrl+o in the chat opens another checkpoint "
       "or the base model beside it). Key: C when no runs are marked.", "dashboard"),
    _a("run.chart", "g", "open_chart", "Chart",
       "Open the selected run's chart: every metric, by step, tokens or time, smoothing, zoom, log.",
       "dashboard"),
    _a("run.edit_config", "e", "edit_config", "Edit",
       "Open the selected run's config in the editor.", "dashboard"),
    _a("dashboard.new_config", "n", "new_config", "New",
       "Start a config from a sample config or a 24/48/80GB hardware preset.", "dashboard"),
    _a("dashboard.open_config", "o", "open_config", "Open", "Open a YAML config file in the editor.",
       "dashboard"),
    _a("dashboard.root", "d", "change_root", "Root dir",
       "List the runs under another directory (registered runs are always listed).", "dashboard",
       show=False),
    _a("runs.down", "j", "runs_cursor(1)", "Down", "Move to the next run (like the down arrow).",
       "dashboard", show=False),
    _a("runs.up", "k", "runs_cursor(-1)", "Up", "Move to the previous run (like the up arrow).",
       "dashboard", show=False),
    _a("runs.filter", "slash", "filter_runs", "Filter",
       "Filter the runs by name, status or directory as you type; enter keeps it, esc clears it.",
       "dashboard", key_display="/"),
    _a("runs.clear_filter", "escape", "clear_filter", "Clear", "Clear the runs filter and close its box.",
       "dashboard", show=False),
    _a("run.metric.loss", "1", "metric('loss')", "Loss", "Plot the training loss.", "dashboard",
       show=False),
    _a("run.metric.eval_loss", "2", "metric('eval_loss')", "Eval", "Plot the evaluation loss.",
       "dashboard", show=False),
    _a("run.metric.lr", "3", "metric('lr')", "LR", "Plot the learning rate.", "dashboard", show=False),
    _a("run.metric.grad_norm", "4", "metric('grad_norm')", "Grad", "Plot the gradient norm.",
       "dashboard", show=False),
    _a("run.metric.throughput", "5", "metric('throughput')", "Tok/s", "Plot the throughput (tokens/s).",
       "dashboard", show=False),
    # -- config editor --------------------------------------------------------
    _a("editor.back", "escape", "back", "Back",
       "Leave the editor (asks to save, discard or stay when there are unsaved edits).", "editor"),
    _a("editor.save", "ctrl+s", "save", "Save",
       "Save the config (comments and key order kept; refused if the file changed on disk).",
       "editor", mutating=True),
    _a("editor.find", "ctrl+f", "find_param", "Find",
       "Jump to a parameter by name: type part of it (per_dev finds per_device_train_batch_size), "
       "enter focuses its field.", "editor"),
    _a("editor.save_as", None, "save_as", "Save as", "Save the config under a new path.", "editor",
       mutating=True),
    _a("editor.launch", "ctrl+r", "launch", "Launch",
       "Launch this config: shows the exact command and a GPU picker first; unsaved edits are "
       "saved only when you confirm.", "editor", mutating=True),
    _a("editor.next_group", "ctrl+t", "next_group", "Next group",
       "Show the next parameter group and focus its first field.", "editor"),
    _a("editor.next_group_page", "ctrl+pagedown", "next_group", "Next group",
       "Show the next parameter group (as ctrl+t).", "editor", show=False),
    _a("editor.previous_group", "ctrl+pageup", "previous_group", "Prev group",
       "Show the previous parameter group and focus its first field.", "editor", show=False),
    _a("editor.findings", "ctrl+l", "focus_findings", "Findings",
       "Jump to the findings list (enter on a finding jumps to its field).", "editor"),
    _a("editor.preview", "ctrl+y", "toggle_preview", "YAML/diff",
       "Switch the side panel between the memory estimate, the YAML preview and the diff on disk.",
       "editor"),
    _a("editor.memory_source", "ctrl+g", "cycle_memory_source", "GPU mem",
       "Estimate against the detected GPUs or the 24/48/80GB presets in turn.", "editor"),
    _a("editor.open", "ctrl+o", "open_config", "Open",
       "Open another YAML config file (asks first when there are unsaved edits).", "editor"),
    _a("editor.new", "ctrl+n", "new_config", "New",
       "Start from a sample config or a hardware preset (asks first when there are unsaved edits).",
       "editor"),
    # -- checkpoints ----------------------------------------------------------
    _a("checkpoints.back", "escape", "back", "Back", "Back to the dashboard.", "checkpoints"),
    _a("checkpoints.resume", "R", "resume_from", "Resume",
       "Resume the run from the selected checkpoint.", "checkpoints", mutating=True),
    _a("checkpoints.delete", "D", "delete", "Delete",
       "Delete the selected checkpoint (asks; twice for the newest complete one).", "checkpoints",
       mutating=True),
    _a("checkpoints.path", "p", "show_path", "Path",
       "Show the selected checkpoint's full path and copy it to the clipboard.", "checkpoints"),
    _a("checkpoints.chat", "C", "chat", "Chat",
       "Chat with the selected checkpoint (ctrl+o in the chat opens another one beside it).",
       "checkpoints", show=False),
    _a("checkpoints.export", "X", "export", "Export",
       "Merge the selected checkpoint into its base model and write a deployable folder "
       "(tunedeck export, with its progress here).", "checkpoints", mutating=True, show=False),
    # -- chat -----------------------------------------------------------------
    _a("chat.back", "escape", "back", "Back",
       "Interrupt the answer being written; when none is, leave the chat.", "chat"),
    # "Interrupt", not "Stop": in tunedeck "Stop" stops a run (and --readonly has none).
    _a("chat.stop", "ctrl+g", "stop_generation", "Interrupt", "Interrupt the answer at the next token.", "chat"),
    _a("chat.beside", "ctrl+o", "open_beside", "Beside",
       "Open another checkpoint (or the base model) beside this one: one prompt, two answers.", "chat"),
    # -- chart and compare ----------------------------------------------------
    _a("chart.back", "escape", "back", "Back", "Back to the dashboard.", "chart"),
    _a("chart.x", "x", "next_x", "X axis", "Plot by step, by tokens seen or by wall time, in turn.", "chart"),
    _a("chart.smooth", "s", "smooth", "Smooth",
       "EMA smoothing 0 / 0.6 / 0.9 / 0.97 in turn; the raw line stays, faint.", "chart"),
    _a("chart.zoom", "z", "zoom", "Zoom", "The whole run, then the last 1000, 200, 50 steps.", "chart"),
    _a("chart.log", "L", "log_scale", "Log y", "Logarithmic y axis on or off.", "chart"),
    _a("chart.baseline", "b", "next_baseline", "Baseline",
       "Compare: take the deltas against the next run.", "chart"),
    _a("chart.reload", "r", "reload", "Reload", "Read the logs again now.", "chart", show=False),
    *(_a(f"chart.metric.{m}", str(i), f"metric('{m}')", short, f"Plot {lab}.", "chart", show=False)
      for i, (m, short, lab) in enumerate((
          ("loss", "Loss", "the loss and eval loss"), ("eval_loss", "Eval", "the eval loss"),
          ("lr", "LR", "the learning rate"), ("grad_norm", "Grad", "the gradient norm"),
          ("throughput", "Tok/s", "tokens/s"), ("vram_reserved", "VRAM", "peak VRAM")), 1)),
    # -- triage ---------------------------------------------------------------
    _a("triage.back", "escape", "back", "Back", "Back to the dashboard.", "triage"),
    _a("triage.apply", "A", "apply", "Apply",
       "Write the selected suggestion's patched config as a new file, then offer to resume.",
       "triage", mutating=True),
    # -- logs -----------------------------------------------------------------
    _a("logs.back", "escape", "back", "Back", "Back (or close the search bar).", "logs"),
    _a("logs.follow", "f", "toggle_follow", "Follow", "Follow new lines as they are written.", "logs"),
    _a("logs.search", "slash", "search", "Search", "Search the log; n / N for the next / previous match.",
       "logs", key_display="/"),
    _a("logs.next", "n", "next_match", "Next", "Next search match.", "logs", show=False),
    _a("logs.previous", "N", "previous_match", "Prev", "Previous search match.", "logs", show=False),
    _a("logs.first_error", "E", "first_error", "1st error",
       "Jump to the first error (traceback, CUDA OOM, NaN).", "logs"),
    _a("logs.top", "g", "top", "Top", "Go to the first line.", "logs", show=False),
    _a("logs.bottom", "G", "bottom", "End", "Go to the last line.", "logs", show=False),
    # -- help -----------------------------------------------------------------
    _a("help.back", "escape,q", "back", "Back", "Close the help.", "help"),
    # -- confirmation dialogs -------------------------------------------------
    _a("modal.yes", "y", "yes", "Yes", "Confirm the action named in the dialog.", "modal"),
    _a("modal.no", "n,escape", "no", "No", "Cancel: nothing happens.", "modal"),
    _a("modal.target", "t", "toggle_target", "Target",
       "Launch dialog: run on this machine or submit to Slurm (shown where sbatch exists; "
       "the dialog then shows the job script).", "modal", show=False),
    # -- unsaved edits (leaving the editor or opening another file) -------------
    _a("unsaved.save", "s", "save", "Save", "Save the edits, then go on.", "unsaved"),
    _a("unsaved.discard", "d", "discard", "Discard", "Throw the edits away, then go on.", "unsaved"),
    _a("unsaved.cancel", "c,escape", "cancel", "Cancel", "Stay in the editor with the edits.",
       "unsaved"),
)

_BY_ID = {a.id: a for a in ACTIONS}
assert len(_BY_ID) == len(ACTIONS), "action ids must be unique"


def get(action_id: str) -> Action:
    return _BY_ID[action_id]


def actions_for(scope: str, *, readonly: bool) -> list[Action]:
    """The actions registered in ``scope``; read-only mode drops every mutating one."""
    return [a for a in ACTIONS if a.scope == scope and not (readonly and a.mutating)]


def bindings_for(scope: str, *, readonly: bool) -> list[Binding]:
    """Textual bindings for ``scope`` (palette-only and Textual-builtin entries excluded)."""
    return [a.binding() for a in actions_for(scope, readonly=readonly) if a.key and not a.builtin]


def iter_help(readonly: bool) -> Iterator[tuple[str, list[Action]]]:
    """(scope title, actions) in help order: what the help screen renders."""
    for scope, title in SCOPES.items():
        acts = actions_for(scope, readonly=readonly)
        if acts:
            yield title, acts

