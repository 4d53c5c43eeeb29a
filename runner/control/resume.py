"""Resuming a run: the same frozen config, ``resume_from_checkpoint`` set, a new attempt.

The frozen ``config.yaml`` the previous attempt ran is kept as
``config.attempt-N.yaml`` before anything changes, so ``config.attempt-1.yaml``
is always the config as first launched. Overrides (``key=value``, e.g. a triage
patch) are applied to the frozen copy. Before launching, a checkpoint that
already reached ``max_steps`` / ``num_train_epochs`` is reported (the run would
end at once: LLaMA-Factory's "resume does nothing"), and an incomplete
checkpoint is refused.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunedeck.runner.errors import RunBusy, TunedeckError
from tunedeck.runner.rundir.health import checkpoint_resume_end
from tunedeck.runner.rundir.protocol import (
    FROZEN_CONFIG,
    STOP_REQUEST,
    TRAINER_EXIT,
)

if TYPE_CHECKING:
    from tunedeck.runner.rundir.manifest import RunManifest


@dataclass(frozen=True)
class ResumeResult:
    run_id: str
    run_dir: Path
    checkpoint: Path
    attempt: int
    supervisor_pid: int | None
    warnings: list[str] = field(default_factory=list)
    job_id: str | None = None        # the new Slurm job (backend "slurm")


def pick_checkpoint(run_dir: Path, spec: str | None) -> Path:
    """``latest`` (default) / ``checkpoint-N`` / a path -> a checkpoint directory (complete)."""
    from tunedeck.runner.rundir.checkpoints import (
        checkpoint_paths,
        checkpoint_step,
        list_checkpoints,
        newest_complete,
    )

    spec = (spec or "latest").strip()
    if spec == "latest":
        ck = newest_complete(run_dir)
        if ck is None:
            have = ", ".join(c.name for c in checkpoint_paths(run_dir)) or "none"
            raise TunedeckError(f"{run_dir} has no complete checkpoint to resume from (checkpoints: {have})",
                                hint="launch it again from step 0 with `tunedeck launch CONFIG --overwrite`")
        return ck
    if checkpoint_step(spec) is not None:
        ck = run_dir / spec
    else:
        ck = Path(spec).expanduser()
        if not ck.is_absolute():
            ck = (Path.cwd() / ck)
    if not ck.is_dir():
        raise TunedeckError(f"checkpoint {ck} does not exist",
                            hint="`tunedeck checkpoints RUN` lists the checkpoints")
    ck = ck.resolve()
    info = next((c for c in list_checkpoints(ck.parent) if c.path.resolve() == ck), None)
    if info is None or not info.complete:
        why = info.reason if info is not None else f"{ck.name} is not named checkpoint-N"
        raise TunedeckError(
            f"{ck} is incomplete ({why}): resuming from it would fail or lose training state",
            hint="resume from an earlier checkpoint with --from checkpoint-N, or --from latest",
        )
    return ck


def end_of_training_warning(ck: Path, values: dict[str, Any]) -> str | None:
    """A warning when the checkpoint already reached the end the config asks for."""
    end = checkpoint_resume_end(ck, values)
    if end is None:
        return None
    (key, value), = end.patch.items()
    return (f"a resume would do nothing: {end.message}; the resumed run will train 0 steps. "
            f"Raise {key} (e.g. {key}={value:g}) to train further")


def _original_secrets(original: str | None, frozen: Path, secrets: dict[str, Any],
                      say: Callable[[str], None]) -> None:
    """Secrets are not in the frozen copy: add those of the user's original config (when it
    is still there) to ``secrets`` (the overrides' win); warn when it is gone."""
    from tunedeck.runner.config.yamlio import ConfigDoc
    from tunedeck.runner.control.secrets import REDACTED, is_secret_key

    if original and Path(original).is_file():
        try:
            orig = ConfigDoc.load(original).values()
        except TunedeckError:
            orig = {}
        for k, v in orig.items():
            if k not in secrets and is_secret_key(k) and v not in (None, "", REDACTED):
                secrets[k] = v
    elif "secret keys removed" in frozen.read_text(encoding="utf-8", errors="replace")[:300]:
        say(f"warning: the original config {original} is gone, so the secrets it held "
            "cannot be passed on; give them as key=value or through the environment")


def _resumable(run: Path) -> tuple[RunManifest, Path]:
    """The run's manifest and frozen config; raise when either is missing."""
    from tunedeck.runner.rundir.manifest import read_manifest

    m = read_manifest(run)
    if m is None:
        raise TunedeckError(
            f"{run} has no tunedeck manifest, so there is no frozen config to resume",
            hint="launch your config with output_dir set to it: `tunedeck launch CONFIG` resumes "
            "from its newest checkpoint",
        )
    cfg_path = run / FROZEN_CONFIG
    if not cfg_path.exists():
        raise TunedeckError(f"{cfg_path} is missing: cannot resume without the frozen config")
    return m, cfg_path


def _refreeze(doc: Any, cfg_path: Path, over: dict[str, Any], ck: Path) -> dict[str, Any]:
    """Write the frozen config again with the overrides and ``resume_from_checkpoint: ck``;
    secret overrides stay out of it and are returned (for the trainer's environment)."""
    from tunedeck.runner.control.secrets import REDACTED, is_secret_key
    from tunedeck.runner.fsutil import atomic_write_text

    secrets = {k: v for k, v in over.items() if is_secret_key(k) and v not in (None, "", REDACTED)}
    for k, v in over.items():
        if v is None:
            doc.delete(k)
        elif k not in secrets:
            doc.set(k, v)
    doc.set("resume_from_checkpoint", str(ck))
    atomic_write_text(cfg_path, doc.dumps())
    return secrets


def _slurm_options(m: RunManifest) -> Any:
    """A Slurm run resubmits: a new job of the same run, same allocation choices (else None)."""
    if m.backend == "slurm" and m.slurm is not None:
        from tunedeck.runner.control.backends.slurm import SlurmOptions

        return SlurmOptions.from_dict(m.slurm.options)
    return None


def resume(
    run_dir: str | Path,
    *,
    from_: str | None = None,
    overrides: Iterable[str] = (),
    max_restarts: int | None = None,
    auto_triage: bool | None = None,
    warn: Callable[[str], None] | None = None,
) -> ResumeResult:
    """``tunedeck resume``: relaunch the run's frozen config from a checkpoint (detached)."""
    from tunedeck.runner.config.yamlio import ConfigDoc, parse_overrides
    from tunedeck.runner.control.launch import (
        build_launch_plan,
        keep_attempt_copy,
        run_busy,
        start_attempt,
        write_plan_files,
    )
    from tunedeck.runner.control.lock import acquire
    from tunedeck.runner.control.requirements import require_training_stack
    from tunedeck.runner.control.secrets import redact_values
    from tunedeck.runner.rundir.manifest import Attempt

    say = warn or (lambda _t: None)
    run = Path(run_dir)
    # Before anything changes: a resume that cannot start must leave a finished run finished.
    require_training_stack("resume")
    m, cfg_path = _resumable(run)
    over = parse_overrides(list(overrides))
    ck = pick_checkpoint(run, from_)

    lock = acquire(run)  # RunBusy while the supervisor of this run lives
    try:
        if run_busy(run, m):
            raise RunBusy(f"run {m.id} is still running", hint=f"tunedeck stop {m.id}")
        doc = ConfigDoc.load(cfg_path)
        values = doc.values()
        values.update(over)
        w = end_of_training_warning(ck, values)
        if w:
            say(f"warning: {w}")
        attempt_no = len(m.attempts) + 1
        keep_attempt_copy(run, attempt_no - 1)
        secrets = _refreeze(doc, cfg_path, over, ck)
        _original_secrets(m.config_path, cfg_path, secrets, say)

        eff = doc.values()
        plan = build_launch_plan(eff, config_path=cfg_path, cwd=m.cwd or None, **m.launch_options)
        write_plan_files(plan, eff)
        m.attempts.append(Attempt(number=attempt_no, started_at=time.time(), resume_from=str(ck),
                                  argv=plan.argv, overrides=redact_values(over)))
        m.argv = plan.argv
        m.begin_attempt()
        if max_restarts is not None:
            m.max_restarts = max(0, max_restarts)
        if auto_triage is not None:
            m.auto_triage = auto_triage
        m.write(run)
        for stale in (TRAINER_EXIT, STOP_REQUEST):
            (run / stale).unlink(missing_ok=True)
        cwd = Path(m.cwd) if m.cwd and Path(m.cwd).is_dir() else run
        pid, job = start_attempt(run, lock, m, plan, secrets, cwd, slurm=_slurm_options(m), warn=say)
    finally:
        lock.release()
    return ResumeResult(m.id, run, ck, attempt_no, pid, job_id=job)

