"""Resume a run: pick a complete checkpoint (unless one is given), confirm, and start a new
supervised attempt from it with the run's frozen config (and the given overrides)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunedeck.tui import format as fmt
from tunedeck.tui.data import checkpoints, control
from tunedeck.tui.flows import FlowHost, in_thread, run_started, tell

if TYPE_CHECKING:
    from tunedeck.tui.data.checkpoints import CheckpointInfo
    from tunedeck.tui.data.runs import RunSnapshot


def choose_resume(h: FlowHost, run: RunSnapshot, *, checkpoint: Path | None = None,
                  overrides: dict[str, Any] | None = None) -> None:
    """Pick a checkpoint (unless given), confirm, resume."""
    if h.readonly:
        return
    kind = run.kind
    if kind != "tunedeck":
        # Said at once: a picker and a confirmation before "cannot" wastes the user's time.
        who = {"llamafactory": "LLaMA-Factory"}.get(kind, "plain transformers")
        h.notify(f"{run.name} was started by {who}, not tunedeck: there is no frozen config to "
                 f"resume from. Launch your config with output_dir: {run.run_dir} and it resumes "
                 "from the newest checkpoint.", title=f"Cannot resume {run.name}",
                 severity="warning", timeout=12)
        return
    if checkpoint is not None:
        _confirm(h, run, str(checkpoint), overrides)
        return

    def then(cks: tuple[CheckpointInfo, ...]) -> None:
        _offer(h, run, cks, overrides)

    in_thread(h, partial(_scan_then, h, Path(run.run_dir), then), group="scan")


def _scan_then(h: FlowHost, run_dir: Path, then: Callable[[tuple[CheckpointInfo, ...]], None]) -> None:
    """In a worker thread: the run's checkpoints, handed to ``then`` on the UI thread."""
    try:
        cks = checkpoints.scan_checkpoints(run_dir)
    except Exception:  # noqa: BLE001
        cks = ()
    h.call_from_thread(then, cks)


def _offer(h: FlowHost, run: RunSnapshot, cks: tuple[CheckpointInfo, ...], overrides: dict[str, Any] | None) -> None:
    """The checkpoint picker: complete checkpoints, newest first."""
    from tunedeck.tui.screens.modals import ChoiceModal

    complete = [c for c in cks if c.complete]
    if not complete:
        h.notify(f"{run.name} has no complete checkpoint to resume from.", severity="warning")
        return
    choices = [(str(c.path), f"step {c.step:<7} {Path(c.path).name}"
                + (f"  loss {shown}" if (shown := fmt.checkpoint_metric(
                    c.loss, c.loss_step, c.step)) else "")
                + ("  (newest)" if i == 0 else "")) for i, c in enumerate(complete)]

    def picked(cid: str | None) -> None:
        if cid:
            _confirm(h, run, cid, overrides)

    h.push_screen(ChoiceModal(f"Resume {run.name} from", choices, id="resume-choice"), picked)


def _confirm(h: FlowHost, run: RunSnapshot, checkpoint: str, overrides: dict[str, Any] | None) -> None:
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
            in_thread(h, partial(_resume, h, Path(run.run_dir), run.name, checkpoint, overrides),
                      group="control")

    h.push_screen(ConfirmationModal(f"Resume {run.name}?", lines, yes="Resume", danger=False,
                                    id="confirm-resume"), done)


def _resume(h: FlowHost, run_dir: Path, name: str, checkpoint: str,
            overrides: dict[str, Any] | None) -> None:
    """In a worker thread: start the new attempt."""
    try:
        control.resume(run_dir, checkpoint, overrides)
    except Exception as exc:  # noqa: BLE001
        tell(h, str(exc), title=f"Resume {name}", error=True, timeout=10)
        return
    run_started(h, run_dir, f"Resumed {name} from {Path(checkpoint).name}.")
