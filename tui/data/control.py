"""Actions that change a run: launch (and its plan, its Slurm script), stop, resume.
The launcher and its helpers load when an action is taken, not at start-up."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunedeck.runner.rundir.protocol import FROZEN_CONFIG

if TYPE_CHECKING:
    from tunedeck.runner.control.launch import LaunchResult
    from tunedeck.runner.control.resume import ResumeResult
    from tunedeck.runner.control.stop import StopResult

__all__ = ["PlannedLaunch", "launch", "launch_plan", "resume", "slurm_script", "stop"]


@dataclass(frozen=True)
class PlannedLaunch:
    """What the launch modal shows: the exact command and where the run will go."""

    command: str          # shell-quoted, secrets redacted
    run_dir: Path
    env: tuple[str, ...]  # KEY=value lines added to the environment (redacted)
    notes: tuple[str, ...]
    trust_remote_code: bool
    model: str | None


def _override_strings(overrides: Mapping[str, Any]) -> list[str]:
    return [f"{k}={'null' if v is None else (v if isinstance(v, str) and v and _plain(v) else json.dumps(v))}"
            for k, v in overrides.items()]


def _plain(text: str) -> bool:
    return re.fullmatch(r"[A-Za-z0-9_./:@+-]+", text) is not None and text.lower() not in (
        "true", "false", "null", "yes", "no", "on", "off", "~")


def launch_plan(config_path: Path, overrides: Mapping[str, Any], gpus: Sequence[int] | None,
                *, text: str | None = None) -> PlannedLaunch:
    """The command a launch of ``config_path`` would run. ``text``: plan from this YAML (an
    editor's unsaved buffer, to be saved to ``config_path`` on confirm) instead of the file."""
    from tunedeck.runner.config import yamlio
    from tunedeck.runner.control import launch as launch_mod
    from tunedeck.runner.control.secrets import redact_env

    if text is None:
        doc = yamlio.ConfigDoc.load(config_path, _override_strings(overrides))
    else:
        doc = yamlio.ConfigDoc.loads(text, source=str(config_path), path=config_path)
        doc.apply(dict(overrides))
    values = doc.values()
    run_dir = launch_mod.resolve_output_dir(values, Path.cwd(), doc.source)
    plan = launch_mod.build_launch_plan(values, config_path=run_dir / FROZEN_CONFIG,
                                        gpus=list(gpus) if gpus else None)
    env = tuple(f"{k}={v}" for k, v in sorted(redact_env(plan.env).items()))
    return PlannedLaunch(plan.shell_command(redact=True), run_dir, env, tuple(plan.notes),
                         values.get("trust_remote_code") is True,
                         str(values.get("model_name_or_path") or "") or None)


def launch(config_path: Path, overrides: Mapping[str, Any], gpus: Sequence[int] | None,
           *, slurm: bool = False) -> LaunchResult:
    """Start a detached supervised run (or submit it to Slurm with the settings' defaults)."""
    from tunedeck.runner.control import launch as launch_mod

    if slurm:
        from tunedeck.runner.control.backends.slurm import (
            DEFAULT_MAX_RESTARTS,
            options_with_settings,
        )

        opts = launch_mod.LaunchOptions(max_restarts=DEFAULT_MAX_RESTARTS)
        return launch_mod.launch(config_path, _override_strings(overrides), opts,
                                 slurm=options_with_settings({}))
    opts = launch_mod.LaunchOptions(gpus=list(gpus) if gpus else None)
    return launch_mod.launch(config_path, _override_strings(overrides), opts)


def slurm_script(config_path: Path, overrides: Mapping[str, Any], *, text: str | None = None) -> str:
    """The ``slurm_job.sh`` a Slurm launch of ``config_path`` would submit (nothing written).
    ``text``: an editor's unsaved buffer, as in :func:`launch_plan`."""
    from tunedeck.runner.config import yamlio
    from tunedeck.runner.control.backends.slurm import options_with_settings, script_preview
    from tunedeck.runner.control.launch import LaunchOptions

    if text is None:
        doc = yamlio.ConfigDoc.load(config_path, _override_strings(overrides))
    else:
        doc = yamlio.ConfigDoc.loads(text, source=str(config_path), path=config_path)
        doc.apply(dict(overrides))
    return script_preview(config_path, [], LaunchOptions(), options_with_settings({}), doc=doc)


def stop(run_dir: Path) -> StopResult:
    """Ask the supervisor to stop (returns at once; the dashboard shows the rest)."""
    from tunedeck.runner.control import stop as stop_mod

    return stop_mod.stop_run(run_dir, wait=False)


def resume(run_dir: Path, from_: str | None = None, overrides: Mapping[str, Any] | None = None) -> ResumeResult:
    from tunedeck.runner.control import resume as resume_mod

    return resume_mod.resume(run_dir, from_=from_ or "latest", overrides=_override_strings(overrides or {}))
