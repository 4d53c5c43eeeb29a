"""Launch a config: the dialog shows the exact command and a GPU picker (and, where ``sbatch``
exists, the choice of Slurm with its job script); ``y`` launches, after one more question when
the config runs code from the model repository (trust_remote_code)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunedeck.tui.data import control
from tunedeck.tui.data.gpus import gpu_snapshot
from tunedeck.tui.data.runs import FROZEN_CONFIG
from tunedeck.tui.flows import FlowHost, in_thread, run_started, tell

if TYPE_CHECKING:
    from tunedeck.tui.data.runs import RunSnapshot
    from tunedeck.tui.screens.modals import GpuChoice


@dataclass(frozen=True)
class LaunchRequest:
    """What to launch. ``text``: plan from this YAML rather than the file; ``before_launch``
    runs once everything is confirmed (the editor saves its edits there) and False stops it."""

    config_path: Path
    overrides: dict[str, Any] = field(default_factory=dict)
    title: str = "Launch"
    trust_remote_code: bool = False
    text: str | None = None
    before_launch: Callable[[], bool] | None = None


def launch_copy(h: FlowHost, run: RunSnapshot) -> None:
    """Launch the run's frozen config again into ``<run>-copyN`` beside it."""
    frozen = Path(run.run_dir) / FROZEN_CONFIG
    if not frozen.is_file():
        h.notify(f"{run.name} has no frozen config.yaml to copy.", severity="warning")
        return
    base = Path(run.run_dir)
    n = 2
    while (base.parent / f"{base.name}-copy{n}").exists():
        n += 1
    out = base.parent / f"{base.name}-copy{n}"
    start_launch(h, LaunchRequest(frozen, {"output_dir": str(out)}, title=f"Launch a copy of {run.name}"))


def start_launch(h: FlowHost, req: LaunchRequest) -> None:
    """Plan in a worker (the command for the first free GPU), then show the launch dialog."""
    if h.readonly:
        return
    in_thread(h, partial(_plan, h, req), group="control")


def _gpu_choices(h: FlowHost) -> list[GpuChoice]:
    """The picker's GPUs (the first one ticked), from the app's last sample or a new one."""
    from tunedeck.tui.screens.modals import GpuChoice

    snap = h.gpu_view.snapshot if h.gpu_view else gpu_snapshot()
    gpus: list[GpuChoice] = []
    if snap.available:
        for g in snap.gpus:
            if g.error:
                continue
            free = g.mem_free
            label = f"GPU {g.index}  {g.name or ''}  {'n/a' if free is None else f'{free / 2**30:.1f} GiB'} free"
            gpus.append(GpuChoice(g.index, label, selected=not gpus))
    return gpus


def _plan(h: FlowHost, req: LaunchRequest) -> None:
    """In a worker thread: the plan for the ticked GPUs, then the dialog on the UI thread."""
    gpus = _gpu_choices(h)
    try:
        plan = control.launch_plan(req.config_path, req.overrides,
                                [g.index for g in gpus if g.selected] or None, text=req.text)
    except Exception as exc:  # noqa: BLE001
        tell(h, str(exc), title="Cannot launch", error=True, timeout=12)
        return
    h.call_from_thread(_show_dialog, h, req, plan, gpus)


def _show_dialog(h: FlowHost, req: LaunchRequest, plan: control.PlannedLaunch, gpus: list[GpuChoice]) -> None:
    from tunedeck.tui.screens.modals import LaunchModal

    notes = list(plan.notes)
    if req.before_launch is not None:
        notes.insert(0, f"Your unsaved edits are saved to {req.config_path} when you launch (y); "
                        "cancel (n) leaves the file as it is.")

    def replan(chosen: list[int]) -> str:
        return control.launch_plan(req.config_path, req.overrides, chosen or None, text=req.text).command

    def slurm_script() -> str:
        return control.slurm_script(req.config_path, req.overrides, text=req.text)

    modal = LaunchModal(req.title, f"{req.config_path}  ->  {plan.run_dir}", plan.command, (), gpus,
                        " ".join(notes) or None, replan=replan,
                        slurm_script=slurm_script if shutil.which("sbatch") else None)

    def chosen(choice: list[int] | None) -> None:
        if choice is None:
            return
        go = partial(_go, h, req, choice, modal.target == "slurm")
        if req.trust_remote_code or plan.trust_remote_code:
            _confirm_trust(h, plan.model, go)
        else:
            go()

    h.push_screen(modal, chosen)


def _confirm_trust(h: FlowHost, model: str | None, go: Callable[[], None]) -> None:
    """One more question: the model repository's Python code runs on this machine."""
    from tunedeck.tui.screens.modals import ConfirmationModal

    lines = [
        "This config sets trust_remote_code: true.",
        f"Loading the model runs Python code shipped with it ({model or 'the model'}), "
        "with your user's permissions, on this machine.",
        "Only continue if you trust where that model came from.",
    ]

    def trusted(ok: bool | None) -> None:
        if ok:
            go()

    h.push_screen(ConfirmationModal("Run code from the model repository?", lines,
                                    yes="Trust and launch", id="confirm-trust"), trusted)


def _go(h: FlowHost, req: LaunchRequest, gpus: list[int], slurm: bool) -> None:
    if req.before_launch is not None and not req.before_launch():
        return  # e.g. the save was refused: it said why; nothing is launched
    in_thread(h, partial(_launch, h, req.config_path, req.overrides, gpus, slurm), group="control")


def _launch(h: FlowHost, config_path: Path, overrides: dict[str, Any], gpus: list[int], slurm: bool) -> None:
    """In a worker thread: launch (a supervisor here, or a Slurm job)."""
    try:
        manifest = control.launch(config_path, overrides, gpus or None, slurm=slurm)  # LaunchResult
    except Exception as exc:  # noqa: BLE001
        tell(h, str(exc), title="Launch failed", error=True, timeout=12)
        return
    run_started(h, Path(manifest.run_dir), f"Launched {manifest.name}.")
