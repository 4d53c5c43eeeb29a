"""Stop a run: a dialog names the run, its processes and what happens; ``y`` asks its
supervisor to stop (the trainer checkpoints at the next step and exits)."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from tunedeck.tui.data import control
from tunedeck.tui.flows import FlowHost, in_thread, tell
from tunedeck.tui.messages import RunsChanged

if TYPE_CHECKING:
    from tunedeck.tui.data.runs import RunSnapshot


def confirm_stop(h: FlowHost, run: RunSnapshot) -> None:
    """Ask (naming the run, its pids and what happens), then stop it."""
    from tunedeck.tui.screens.modals import ConfirmationModal

    if h.readonly:
        return
    if not run.active:
        h.notify(f"{run.name} is {run.status.value}: nothing to stop.", severity="warning")
        return

    def done(ok: bool | None) -> None:
        if ok:
            in_thread(h, partial(_stop, h, Path(run.run_dir), run.name), group="control")

    h.push_screen(ConfirmationModal(f"Stop run {run.name}?", describe_stop(run), yes="Stop",
                                    id="confirm-stop"), done)


def _stop(h: FlowHost, run_dir: Path, name: str) -> None:
    """In a worker thread: ask the run's supervisor to stop."""
    try:
        control.stop(run_dir)
    except Exception as exc:  # noqa: BLE001 - typed errors carry the fix
        tell(h, str(exc), title=f"Stop {name}", error=True, timeout=10)
        return
    tell(h, f"Stop requested: {name} will checkpoint and exit.", title="Stopping")
    h.post_message(RunsChanged())


def describe_stop(run: RunSnapshot) -> list[str]:
    """The stop dialog's lines: the run, its processes, what happens, how to resume."""
    pids = list(run.pids)
    lines = [
        f"Run: {run.name}  ({run.status})",
        f"Directory: {run.run_dir}",
        f"Processes: {', '.join(map(str, pids)) if pids else 'none recorded'}",
        "What happens: the supervisor sends SIGTERM to the trainer's process group; the trainer "
        "saves a checkpoint at the next step boundary and exits; the run ends as 'stopped'. "
        "If it has not exited after the grace period it is killed (SIGKILL).",
        "You can resume it later from that checkpoint (R).",
    ]
    if run.current_steps is not None and run.total_steps:
        lines.insert(2, f"Progress: step {run.current_steps}/{run.total_steps}")
    return lines
