"""``python -m tunedeck.runner.train CONFIG.yaml [key=value ...]``: one training process.

Run by ``accelerate launch`` (one process per device). Rank 0 writes
``trainer_log.jsonl`` and, on the way out, ``trainer_exit.json``; the exit code is a
:class:`tunedeck.runner.rundir.protocol.TrainerExit`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunedeck.runner.errors import ConfigError
from tunedeck.runner.rundir.checkpoints import checkpoint_paths, inspect_checkpoint, newest_complete
from tunedeck.runner.rundir.protocol import (
    TRAINER_EXIT,
    TRAINER_LOG,
)
from tunedeck.runner.train.args import RunPlan, build_plan
from tunedeck.runner.train.faults import Faults, faults_from_env
from tunedeck.runner.train.outcome import (
    ConfigProblem,
    Diverged,
    Outcome,
    disk_full_message,
    is_disk_full,
    is_oom,
    one_line,
    write_exit,
)
from tunedeck.runner.train.signals import StopRequested, StopSignals
from tunedeck.runner.train.startup import libraries_loaded

EXPECT_WORLD_SIZE_ENV = "TUNEDECK_EXPECT_WORLD_SIZE"

_WEIGHT_FILES = (
    "adapter_model.safetensors",
    "adapter_model.bin",
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


@dataclass
class _Context:
    """What the exit path needs to know, filled in as the run progresses."""

    rank: int = int(os.environ.get("RANK", "0") or 0)
    output_dir: Path | None = None
    step: int = 0
    trainer: Any = None
    flags: Any = None
    notes: list[str] = field(default_factory=list)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def say(ctx: _Context, message: str) -> None:
    """One diagnostic line on stderr from rank 0 (stdout.log collects both streams)."""
    if ctx.is_main:
        print(f"[tunedeck] {message}", file=sys.stderr, flush=True)


# -- checkpoints ---------------------------------------------------------------

def resolve_resume(plan: RunPlan, ctx: _Context) -> str | None:
    """LLaMA-Factory semantics plus ``latest``; returns the checkpoint path to resume from."""
    out = Path(plan.output_dir)
    r = plan.resume
    if r is True or (isinstance(r, str) and r.lower() in ("latest", "true", "auto")):
        ck = newest_complete(out)
        if ck is None:
            say(ctx, f"resume_from_checkpoint: {r}: no complete checkpoint in {out}; starting from scratch")
            return None
        say(ctx, f"resuming from the newest complete checkpoint: {ck}")
        return str(ck)
    if r:
        p = Path(str(r)).expanduser()
        if not p.exists() and not p.is_absolute() and (out / p).exists():
            p = out / p
        if not p.is_dir():
            raise ConfigProblem(f"resume_from_checkpoint: {r} does not exist")
        info = inspect_checkpoint(p)
        if not info.complete:
            raise ConfigProblem(
                f"resume_from_checkpoint: {p} is incomplete ({info.reason}); "
                "use 'latest' to pick the newest complete one"
            )
        say(ctx, f"resuming from {p}")
        return str(p)
    if plan.overwrite_output_dir or not out.is_dir():
        return None
    if checkpoint_paths(out):
        ck = newest_complete(out)
        if ck is not None:
            say(ctx, f"output_dir has checkpoints and overwrite_output_dir is false: resuming from {ck}")
            return str(ck)
        say(ctx, "output_dir has only incomplete checkpoints; starting from scratch")
        return None
    if any((out / f).is_file() for f in _WEIGHT_FILES):
        raise ConfigProblem(
            f"output_dir: {out} already holds a trained model and no checkpoint to resume from; "
            "set overwrite_output_dir: true or choose another output_dir"
        )
    return None


# -- training ------------------------------------------------------------------

def _training_args_class(stage: str):
    if stage == "dpo":
        from trl import DPOConfig

        return DPOConfig
    if stage == "kto":
        from trl import KTOConfig

        return KTOConfig
    if stage == "rm":
        from trl import RewardConfig

        return RewardConfig
    from transformers import TrainingArguments

    return TrainingArguments


def _stage_training_kwargs(plan: RunPlan) -> dict[str, Any]:
    """LLaMA-Factory's preference keys -> trl's config fields."""
    v, stage = plan.values, plan.finetune.stage
    kw: dict[str, Any] = {}
    if stage in ("dpo", "kto"):
        kw["beta"] = float(v["pref_beta"])
        cutoff = int(v.get("cutoff_len") or 2048)
        kw["max_length"] = cutoff
    if stage == "dpo":
        loss = str(v.get("pref_loss") or "sigmoid")
        if loss in ("orpo", "simpo"):
            raise ConfigProblem(f"pref_loss: {loss} is not supported by tunedeck yet (use sigmoid, hinge or ipo)")
        kw["loss_type"] = [loss]
        kw["label_smoothing"] = float(v.get("dpo_label_smoothing") or 0.0)
        if float(v.get("pref_ftx") or 0.0) > 0:
            kw["rpo_alpha"] = float(v["pref_ftx"])
    if stage == "kto":
        kw["desirable_weight"] = float(v.get("kto_chosen_weight") or 1.0)
        kw["undesirable_weight"] = float(v.get("kto_rejected_weight") or 1.0)
    return kw


def _make_training_args(plan: RunPlan):
    cls = _training_args_class(plan.finetune.stage)
    fields = {f.name for f in dataclasses.fields(cls)}
    kwargs = {k: v for k, v in plan.training.items() if k in fields}
    # transformers 5 renamed gradient checkpointing; the old names still work but warn.
    for old, new in (("gradient_checkpointing", "activation_checkpointing"),
                     ("gradient_checkpointing_kwargs", "activation_checkpointing_kwargs")):
        if old in kwargs and new in fields and new not in kwargs:
            kwargs[new] = kwargs.pop(old)
    for k, v in _stage_training_kwargs(plan).items():
        if k in fields:
            kwargs[k] = v
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise ConfigProblem(f"training arguments: {exc}") from exc


def _check_world_size(args, ctx: _Context) -> None:
    expected = os.environ.get(EXPECT_WORLD_SIZE_ENV)
    launched = int(os.environ.get("WORLD_SIZE", "1") or 1)
    actual = int(args.world_size)
    if launched > 1 and actual != launched:
        raise ConfigProblem(
            f"launched as {launched} processes but the trainer formed a group of {actual}: each process "
            "would train alone into the same output_dir. On a machine without a GPU set use_cpu: true "
            "(or ACCELERATE_USE_CPU=1) so the processes join one gloo group"
        )
    if expected and int(expected) != actual:
        raise ConfigProblem(
            f"expected {expected} training processes ({EXPECT_WORLD_SIZE_ENV}) but the group has {actual}; "
            "check num_processes and that no other run was started into the same output_dir"
        )
    say(ctx, f"world size {actual} ({args.parallel_mode.value if hasattr(args.parallel_mode, 'value') else args.parallel_mode}, "
             f"device {args.device})")


def _swanlab_callback(plan: RunPlan, ctx: _Context):
    sw = plan.swanlab
    if sw is None:
        return None
    from swanlab.integration.transformers import SwanLabCallback

    log_dir = sw.logdir or str(Path(plan.output_dir) / "swanlog")
    os.environ["SWANLAB_LOG_DIR"] = log_dir
    mode = sw.mode.lower()
    if sw.api_key:
        os.environ["SWANLAB_API_KEY"] = sw.api_key
    has_key = bool(os.environ.get("SWANLAB_API_KEY")) or any(
        (Path(d) / ".netrc").is_file()
        for d in (os.environ.get("SWANLAB_SAVE_DIR"), os.environ.get("SWANLAB_ROOT"), str(Path.home() / ".swanlab"))
        if d
    )
    if mode in ("cloud", "online") and not has_key:
        # Online mode without credentials would stop at an interactive login prompt.
        say(ctx, f"swanlab: no API key, logging offline to {log_dir} (upload later with `swanlab sync`)")
        mode = "offline"
    elif mode == "cloud":
        mode = "online"
    return SwanLabCallback(
        project=sw.project,
        workspace=sw.workspace,
        experiment_name=sw.run_name,
        log_dir=log_dir,
        mode=mode,
    )


def _trainer_base(stage: str) -> type:
    if stage in ("sft", "pt"):
        from transformers import Trainer

        return Trainer
    if stage == "dpo":
        from trl import DPOTrainer

        return DPOTrainer
    if stage == "kto":
        from trl import KTOTrainer

        return KTOTrainer
    from trl import RewardTrainer

    return RewardTrainer


def _load_libraries(stage: str) -> None:
    """Import the rest of what the run needs (datasets, the trainer class and accelerate),
    then let the collector freeze it all (tunedeck.runner.train.startup)."""
    import tunedeck.runner.data.loader  # noqa: F401 - datasets, pyarrow, pandas
    import tunedeck.runner.train.trainer  # noqa: F401

    _trainer_base(stage)
    libraries_loaded()


def _build_trainer(plan: RunPlan, args, model, tokenizer, bundle, flags, faults: Faults, callbacks: list):
    from tunedeck.runner.train.trainer import make_trainer_class

    cls = make_trainer_class(_trainer_base(plan.finetune.stage))
    kwargs: dict[str, Any] = {
        "model": model,
        "args": args,
        "train_dataset": bundle.train_dataset,
        "eval_dataset": bundle.eval_dataset,
        "processing_class": tokenizer,
        "callbacks": callbacks,
    }
    collator = getattr(bundle, "data_collator", None)
    if collator is not None:
        kwargs["data_collator"] = collator
    trainer = cls(**kwargs)
    badam = dict(plan.finetune.badam) if plan.finetune.use_badam else None
    trainer._tunedeck_setup(flags, faults, badam)
    return trainer


def _finish(trainer, plan: RunPlan, train_result, ctx: _Context) -> dict[str, Any]:
    """Save the final model, state, metrics and the loss plot (LLaMA-Factory's outputs);
    returns the whole-run train metrics."""
    trainer.save_model()
    # Whole-run figures (all attempts, weighted by steps) with each attempt's beside them.
    metrics = trainer.tunedeck_run_metrics(dict(train_result.metrics))
    attempts = metrics.pop("attempts", None)
    trainer.log_metrics("train", metrics)
    if attempts is not None:
        metrics["attempts"] = attempts
    trainer.save_metrics("train", metrics)
    trainer.save_state()
    if trainer.eval_dataset is not None and trainer.args.do_eval:
        eval_metrics = trainer.evaluate()
        trainer.log_metrics("eval", eval_metrics)
        trainer.save_metrics("eval", eval_metrics)
    if plan.plot_loss and trainer.is_world_process_zero():
        from tunedeck.runner.train.plot import plot_loss

        for path in plot_loss(plan.output_dir):
            say(ctx, f"saved {path}")
    return metrics


# The launcher keeps secrets out of the frozen config.yaml (a "***" placeholder stands
# there) and hands the real values over in this variable; see tunedeck.runner.control.secrets.
SECRETS_ENV = "TUNEDECK_SECRETS"
PLACEHOLDER = "***"


def with_secrets(values: dict[str, Any], environ: Any) -> dict[str, Any]:
    """The config with its secrets restored from the environment.

    A placeholder left without a real value is dropped rather than used as a key.
    ``hub_token`` goes to ``HF_TOKEN`` instead of TrainingArguments, which would
    pickle it into every checkpoint's ``training_args.bin``.
    """
    out = {k: v for k, v in values.items() if v != PLACEHOLDER}
    try:
        secrets = json.loads(environ.get(SECRETS_ENV) or "{}")
    except ValueError:
        secrets = {}
    if isinstance(secrets, dict):
        out.update({str(k): v for k, v in secrets.items() if v not in (None, "", PLACEHOLDER)})
    token = out.pop("hub_token", None)
    if token and not environ.get("HF_TOKEN"):
        os.environ["HF_TOKEN"] = str(token)
    return out


def _run(argv: list[str], signals: StopSignals, ctx: _Context) -> Outcome:
    config_path, values = _load_config(argv, ctx)
    faults = faults_from_env()

    import torch

    from tunedeck.runner.train.callbacks import (
        FaultCallback,
        RunFlags,
        StopCallback,
        TrainerLogCallback,
    )

    cuda = torch.cuda.is_available()
    stage = str(values.get("stage") or "sft")
    fields = {f.name for f in dataclasses.fields(_training_args_class(stage if stage != "ppo" else "sft"))}
    plan = build_plan(values, training_fields=fields, cuda=cuda)
    out = Path(plan.output_dir)
    resume = _prepare_output(plan, ctx, faults)
    args = _make_training_args(plan)
    _check_world_size(args, ctx)
    _seed(args)
    tokenizer, bundle, model = _load_model_and_data(plan, args, config_path, ctx)

    flags = RunFlags()
    ctx.flags = flags
    callbacks: list = [TrainerLogCallback(out), FaultCallback(faults), StopCallback(signals, flags)]
    swan = _swanlab_callback(plan, ctx)
    if swan is not None:
        callbacks.append(swan)
    trainer = _build_trainer(plan, args, model, tokenizer, bundle, flags, faults, callbacks)
    ctx.trainer = trainer

    if not args.do_train and args.do_eval and bundle.eval_dataset is not None:
        signals.deferred = True
        metrics = trainer.evaluate()
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)
        return Outcome.make("finished", trainer.state.global_step, "evaluation finished")

    if resume:
        nothing = _resume_at_end(resume, args, ctx, callbacks[0])
        if nothing is not None:
            return nothing
    try:
        result = trainer.train(resume_from_checkpoint=resume)
    finally:
        ctx.step = int(trainer.state.global_step)
        callbacks[0].close()
    step = ctx.step
    max_steps = int(trainer.state.max_steps or 0)
    if flags.stop_reason is not None and step < max_steps:
        ck = flags.last_checkpoint
        where = f"saved {ck}" if ck else "no checkpoint saved"
        return Outcome.make(flags.stop_reason, step, f"{flags.stop_reason} on request at step {step}; {where}", ck)
    signals.deferred = True
    loss = _finish(trainer, plan, result, ctx).get("train_loss")
    msg = f"finished {step} step{'' if step == 1 else 's'}" + (f", mean train loss {loss:.4f}" if isinstance(loss, float) else "")
    return Outcome.make("finished", step, msg, flags.last_checkpoint)


def _load_config(argv: list[str], ctx: _Context) -> tuple[str, dict[str, Any]]:
    """The command line's config with its overrides and secrets, validated: (path, values)."""
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m tunedeck.runner.train CONFIG.yaml [key=value ...]", file=sys.stderr)
        raise ConfigProblem("no config file given")
    config_path, overrides = argv[0], argv[1:]
    from tunedeck.runner.config.yamlio import ConfigDoc

    doc = ConfigDoc.load(config_path, overrides)
    values = with_secrets(doc.values(), os.environ)
    if isinstance(values.get("output_dir"), str) and values["output_dir"].strip():
        # Known before validation, so a config error still lands in trainer_exit.json.
        ctx.output_dir = Path(values["output_dir"]).expanduser()
    _validate(doc, ctx)
    return config_path, values


def _prepare_output(plan: RunPlan, ctx: _Context, faults: Faults) -> str | None:
    """Make the output directory ready for this attempt; return the checkpoint it resumes from."""
    out = Path(plan.output_dir)
    ctx.output_dir = out
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        # A trainer_exit.json from an earlier attempt would misdescribe this one if it crashes hard.
        with contextlib.suppress(FileNotFoundError):
            (out / TRAINER_EXIT).unlink()
    for note in plan.notes:
        say(ctx, note)
    if faults.any:
        say(ctx, f"fault injection active: {faults}")

    resume = resolve_resume(plan, ctx)
    if resume is None and plan.overwrite_output_dir and ctx.is_main:
        # LLaMA-Factory starts a fresh log when overwriting; a resume always appends.
        with contextlib.suppress(FileNotFoundError):
            (out / TRAINER_LOG).unlink()
    return resume


def _seed(args) -> None:
    from transformers import set_seed
    from transformers.trainer_utils import enable_full_determinism

    if args.full_determinism:
        enable_full_determinism(args.seed)
    else:
        set_seed(args.seed)


def _load_model_and_data(plan: RunPlan, args, config_path: str, ctx: _Context):
    """(tokenizer, datasets, model): the data first, since its added tokens resize the model."""
    from tunedeck.runner.train.model import load_model, load_tokenizer, trainable_summary

    tokenizer = load_tokenizer(plan.model)
    _load_libraries(plan.finetune.stage)
    bundle = _build_data(plan, tokenizer, args, config_path)
    added = (getattr(bundle, "stats", None) or {}).get("added_tokens")
    model = load_model(plan, tokenizer, resize=bool(added))
    n_train, n_total = trainable_summary(model)
    say(ctx, f"model {plan.model.model_name_or_path}: {plan.finetune.finetuning_type}, "
             f"trainable params {n_train:,} / {n_total:,} ({100 * n_train / max(1, n_total):.4f}%)")
    return tokenizer, bundle, model


def _resume_at_end(resume: str, args, ctx: _Context, log_callback: Any) -> Outcome | None:
    """The outcome when the checkpoint already reached the end (nothing trained), else None."""
    from tunedeck.runner.rundir.health import checkpoint_resume_end

    end = checkpoint_resume_end(Path(resume), {"max_steps": args.max_steps,
                                               "num_train_epochs": args.num_train_epochs})
    if end is None:
        return None
    # transformers would restore the step and still run one more before it checks
    # max_steps (checkpoint-300 -> checkpoint-301); the shared rule says the end is
    # reached, so nothing is trained and nothing is written.
    ctx.step = end.checkpoint_step
    log_callback.close()
    msg = f"a resume would do nothing: {end.message}; trained 0 steps"
    say(ctx, msg)
    return Outcome.make("finished", end.checkpoint_step, msg, Path(resume).name)


def _validate(doc, ctx: _Context) -> None:
    """The same validator as ``tunedeck validate``; errors end the run before any work.

    Every rank validates (it is pure Python and cheap) so that all of them leave
    together instead of some waiting forever for a rank that already exited.
    """
    import torch

    from tunedeck.runner.config.validate import validate_doc

    findings = validate_doc(doc, cuda_available=torch.cuda.is_available())
    errors = [f for f in findings if f.severity == "error"]
    for f in findings:
        if f.severity != "advice":
            say(ctx, f.format())
    if errors:
        first = errors[0]
        more = f" (and {len(errors) - 1} more error(s) above)" if len(errors) > 1 else ""
        key = f"{first.key}: " if first.key else ""
        fix = f" (fix: {first.fix})" if first.fix else ""
        raise ConfigProblem(f"{key}{first.message}{fix}{more}")


def _build_data(plan: RunPlan, tokenizer, args, config_path: str):
    from tunedeck.runner.data.loader import build_datasets

    # cache_dir None: the data side's default tokenized cache ($TUNEDECK_CACHE_DIR or
    # ~/.cache/tunedeck), shared by runs over the same data.
    return build_datasets(
        dict(plan.values),
        tokenizer,
        stage=plan.finetune.stage,
        seed=args.seed,
        config_dir=Path(config_path).resolve().parent,
        cache_dir=None,
        main_process_first=args.main_process_first,
    )


def _latest_name(ctx: _Context) -> str | None:
    if ctx.flags is not None and ctx.flags.last_checkpoint:
        return ctx.flags.last_checkpoint
    if ctx.output_dir is not None:
        ck = newest_complete(ctx.output_dir)
        return ck.name if ck is not None else None
    return None


def main(argv: list[str] | None = None) -> int:
    """Run one training process; returns the :class:`TrainerExit` code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    ctx = _Context()
    signals = StopSignals()
    signals.install()
    t0 = time.time()
    try:
        outcome = _run(argv, signals, ctx)
    except StopRequested as exc:
        outcome = Outcome.make(exc.reason, ctx.step, f"{exc.reason} on request before training started",
                               _latest_name(ctx))
    except (ConfigProblem, ConfigError) as exc:
        outcome = Outcome.make("config_error", ctx.step, str(exc))
    except Diverged as exc:
        outcome = Outcome.make("diverged", exc.step, str(exc), _latest_name(ctx))
    except KeyboardInterrupt:
        outcome = Outcome.make("stopped", _step(ctx), "interrupted (SIGINT)", _latest_name(ctx))
    except BaseException as exc:  # noqa: BLE001 - every way out must leave a trainer_exit.json
        if isinstance(exc, SystemExit) and exc.code in (0, None):
            raise
        step = _step(ctx)
        if is_oom(exc):
            outcome = Outcome.make("oom", step, one_line(exc), _latest_name(ctx))
        elif is_disk_full(exc):
            outcome = Outcome.make("disk_full", step, disk_full_message(exc, ctx.output_dir), _latest_name(ctx))
        else:
            outcome = Outcome.make("error", step, one_line(exc), _latest_name(ctx))
        traceback.print_exc()
    libraries_loaded()  # a run that ended before its data was built: restore the collector
    if ctx.is_main and ctx.output_dir is not None:
        with contextlib.suppress(OSError):
            ctx.output_dir.mkdir(parents=True, exist_ok=True)
        write_exit(ctx.output_dir, outcome)
    say(ctx, f"exit: {outcome.reason} at step {outcome.step} after {time.time() - t0:.1f}s "
             f"(code {outcome.exit_code}): {outcome.message}")
    signals.uninstall()
    _fault_hang_at_exit()
    distributed = _shutdown_distributed(clean=outcome.reason in ("finished", "stopped", "preempted"))
    if distributed:
        # Keep the trainer (and its DDP Reducer) alive past this frame: freeing it here
        # would destroy the gloo process group while holding the GIL, and the group's
        # worker thread may still need the GIL to free a finished work's tensor. That
        # deadlock hung ~1 in 20 two-process CPU runs at exit; __main__ leaves with os._exit.
        _KEEPALIVE.append(ctx)
    return outcome.exit_code


_KEEPALIVE: list[_Context] = []


def needs_hard_exit() -> bool:
    """True once a distributed run has ended: the entry point must not free its objects."""
    return bool(_KEEPALIVE)


def hard_exit(code: int) -> None:
    """Run the ``atexit`` hooks (SwanLab's finish, logging), flush, and leave at once.

    Skips the interpreter's teardown, where torch's gloo/DDP destructors can deadlock.
    """
    import atexit

    try:
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


def _fault_hang_at_exit() -> None:
    """``TUNEDECK_FAULT=hang@exit``: stay after the exit record, deaf to SIGTERM, like a
    worker deadlocked in native teardown code (only SIGKILL ends it)."""
    try:
        hang = faults_from_env().hang_at_exit
    except ValueError:
        return
    if hang:
        print("[tunedeck] fault injection: hanging after the exit record", file=sys.stderr, flush=True)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        while True:
            time.sleep(3600)


def _step(ctx: _Context) -> int:
    if ctx.trainer is not None:
        with contextlib.suppress(Exception):
            return int(ctx.trainer.state.global_step)
    return ctx.step


def _shutdown_distributed(clean: bool) -> bool:
    """Destroy the process group after a clean end; True when this was a distributed run."""
    try:
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return False
    except Exception:  # noqa: BLE001 - best effort at exit
        return False
    if clean:  # after a crash a peer may be gone; the launcher tears the group down
        with contextlib.suppress(Exception):
            dist.destroy_process_group()
    return True
