"""Our additions to transformers' / trl's trainers, as a mixin.

- every checkpoint carries :data:`tunedeck.runner.rundir.protocol.INCOMPLETE_MARKER` while it is being
  written, so a SIGKILL in the middle leaves a checkpoint readers can tell is incomplete;
- a non-finite loss is recorded for :class:`tunedeck.runner.train.callbacks.StopCallback`;
- the tokens counted for throughput are the real (non-padding) ones, also for
  ``neat_packing`` masks that hold sub-sequence indices instead of 0/1;
- the in-step faults of ``TUNEDECK_FAULT`` (oom, nan, enospc, slow-save);
- numbers that survive a stop: a stop on a step that is not a logging step still logs
  that step's loss; every checkpoint carries the loss not yet logged and the figures of
  every attempt so far (:data:`PROGRESS_FILE`), so a resumed run logs the same losses as
  an uninterrupted one and ends with whole-run ``train_loss``, runtime and throughput.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import time
from typing import Any

import torch
from transformers import TrainerCallback

from tunedeck.runner.rundir.protocol import CHECKPOINT_PREFIX, FAULT_ENV, INCOMPLETE_MARKER
from tunedeck.runner.train.callbacks import RunFlags
from tunedeck.runner.train.faults import Faults
from tunedeck.runner.train.outcome import is_disk_full

# Written into every checkpoint: the loss accumulated since the last log (so a resume
# continues the same averaging window) and the figures of each attempt up to that step.
PROGRESS_FILE = "tunedeck_progress.json"


class TunedeckTrainerMixin:
    """Mix in before a ``transformers.Trainer`` subclass: ``class T(TunedeckTrainerMixin, Trainer)``."""

    tunedeck_flags: RunFlags
    tunedeck_faults: Faults
    tunedeck_badam: dict[str, Any] | None = None

    def _tunedeck_setup(self, flags: RunFlags, faults: Faults, badam: dict[str, Any] | None = None) -> None:
        self.tunedeck_flags = flags
        self.tunedeck_faults = faults
        self.tunedeck_badam = badam
        self.tunedeck_resume: str | None = None
        self.tunedeck_carry: dict[str, Any] | None = None  # the resumed checkpoint's PROGRESS_FILE
        self.tunedeck_attempt_t0 = time.time()
        self.tunedeck_attempt_tokens0 = 0
        self.tunedeck_stop_logged: int | None = None
        self.add_callback(_CarryCallback(self))  # type: ignore[attr-defined]

    def train(self, resume_from_checkpoint=None, *args: Any, **kwargs: Any):  # type: ignore[override]
        self.tunedeck_resume = resume_from_checkpoint if isinstance(resume_from_checkpoint, str) else None
        return super().train(resume_from_checkpoint, *args, **kwargs)  # type: ignore[misc]

    # -- losses and figures across attempts -------------------------------------
    def _tunedeck_pending_loss(self) -> float:
        """Sum of the per-step losses since the last log (mean over ranks)."""
        tr = getattr(self, "_tr_loss", None)
        if not isinstance(tr, torch.Tensor):
            return 0.0
        from transformers.trainer_pt_utils import nested_gather

        return float(nested_gather(tr.detach(), self.args.parallel_mode).mean().item())  # type: ignore[attr-defined]

    def _tunedeck_restore(self) -> None:
        """At train begin: continue the loss window of the checkpoint we resumed from."""
        ck = self.tunedeck_resume
        step = self.state.global_step  # type: ignore[attr-defined]
        self.tunedeck_attempt_t0 = time.time()
        self.tunedeck_attempt_tokens0 = int(self.state.num_input_tokens_seen or 0)  # type: ignore[attr-defined]
        if not ck or step <= 0:
            return
        carry = _read_progress(os.path.join(ck, PROGRESS_FILE))
        if carry is None or carry.get("step") != step:
            return
        pending = float(carry.get("pending_loss") or 0.0)
        last = int(carry.get("last_logged_step", step))
        tr = getattr(self, "_tr_loss", None)
        if isinstance(tr, torch.Tensor) and 0 <= last <= step:
            tr += pending
            self._globalstep_last_logged = last
        else:
            carry = dict(carry, pending_loss=0.0, logged_loss=float(carry.get("logged_loss", 0.0)) + pending)
        self.tunedeck_carry = carry

    def _tunedeck_progress(self) -> dict[str, Any]:
        """What :data:`PROGRESS_FILE` holds at this step (collective: every rank calls it)."""
        step = int(self.state.global_step)  # type: ignore[attr-defined]
        pending = self._tunedeck_pending_loss()
        carry = self.tunedeck_carry or {}
        offset = float(carry.get("logged_loss", 0.0))
        logged = offset + float(getattr(self, "_total_loss_scalar", 0.0))
        return {
            "step": step,
            "pending_loss": pending,
            "last_logged_step": int(getattr(self, "_globalstep_last_logged", step)),
            "logged_loss": logged,
            "attempts": [*carry.get("attempts", []), self._tunedeck_attempt(step, logged + pending)],
        }

    def _tunedeck_attempt(self, step: int, loss_total: float, runtime: float | None = None) -> dict[str, Any]:
        carry = self.tunedeck_carry or {}
        start = _start_step(self)
        before = float(carry.get("logged_loss", 0.0)) + float(carry.get("pending_loss", 0.0))
        steps = max(0, step - start)
        runtime = time.time() - self.tunedeck_attempt_t0 if runtime is None else runtime
        args = self.args  # type: ignore[attr-defined]
        batch = args.per_device_train_batch_size * args.gradient_accumulation_steps * max(1, args.world_size)
        tokens = int(self.state.num_input_tokens_seen or 0) - self.tunedeck_attempt_tokens0  # type: ignore[attr-defined]
        out: dict[str, Any] = {
            "start_step": start,
            "end_step": step,
            "train_loss": (loss_total - before) / steps if steps else None,
            "train_runtime": round(runtime, 4),
            "train_samples": steps * batch,
            "train_samples_per_second": round(steps * batch / runtime, 3) if runtime > 0 else None,
            "train_steps_per_second": round(steps / runtime, 3) if runtime > 0 else None,
        }
        if tokens > 0:
            out["num_input_tokens_seen"] = tokens
            out["train_tokens_per_second"] = round(tokens / runtime, 3) if runtime > 0 else None
        return out

    def tunedeck_run_metrics(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """``metrics`` of ``train()`` with whole-run figures: loss weighted by steps over all
        attempts, runtime summed, throughput over the sum; ``attempts`` holds each one's."""
        step = int(self.state.global_step)  # type: ignore[attr-defined]
        carry = self.tunedeck_carry or {}
        # _finalize_training has already drained the last window into _total_loss_scalar.
        total = float(carry.get("logged_loss", 0.0)) + float(getattr(self, "_total_loss_scalar", 0.0))
        runtime = float(metrics.get("train_runtime") or (time.time() - self.tunedeck_attempt_t0))
        attempts = [*carry.get("attempts", []), self._tunedeck_attempt(step, total, runtime)]
        out = dict(metrics)
        if _start_step(self) > 0 and self.tunedeck_carry is None:
            # Resumed from a checkpoint without our figures (LLaMA-Factory's, or older):
            # transformers' own numbers for this attempt are all there is.
            out["attempts"] = attempts
            out["train_loss_covers"] = "this attempt only (the checkpoint carried no earlier figures)"
            return out
        all_runtime = sum(float(a.get("train_runtime") or 0.0) for a in attempts)
        samples = sum(int(a.get("train_samples") or 0) for a in attempts)
        steps = sum(int(a["end_step"]) - int(a["start_step"]) for a in attempts)
        out["train_loss"] = total / step if step else out.get("train_loss")
        out["train_runtime"] = round(all_runtime, 4)
        if all_runtime > 0:
            out["train_samples_per_second"] = round(samples / all_runtime, 3)
            out["train_steps_per_second"] = round(steps / all_runtime, 3)
            tokens = sum(int(a.get("num_input_tokens_seen") or 0) for a in attempts)
            if tokens:
                out["train_tokens_per_second"] = round(tokens / all_runtime, 3)
        out["attempts"] = attempts
        return out

    def _maybe_log_save_evaluate(self, tr_loss, grad_norm, model, trial, epoch, ignore_keys_for_eval,  # type: ignore[override]
                                 start_time, learning_rate=None):
        flags = self.tunedeck_flags
        step = self.state.global_step  # type: ignore[attr-defined]
        last = getattr(self, "_globalstep_last_logged", step)
        if (flags.stop_step == step and step > last and not self.control.should_log  # type: ignore[attr-defined]
                and self.tunedeck_stop_logged != step):
            # A stop between logging steps: log this step's loss (the mean since the last
            # log) without closing the window, which the checkpoint carries to the resume.
            self.tunedeck_stop_logged = step
            logs: dict[str, float] = {"loss": self._tunedeck_pending_loss() / (step - last)}
            if grad_norm is not None:
                logs["grad_norm"] = grad_norm.item() if isinstance(grad_norm, torch.Tensor) else grad_norm
            logs["learning_rate"] = learning_rate if learning_rate is not None else self._get_learning_rate()  # type: ignore[attr-defined]
            self.log(logs, start_time)  # type: ignore[attr-defined]
        return super()._maybe_log_save_evaluate(  # type: ignore[misc]
            tr_loss, grad_norm, model, trial, epoch, ignore_keys_for_eval, start_time, learning_rate=learning_rate)

    # -- BAdam (LLaMA-Factory's use_badam, layer mode) ---------------------------
    def create_optimizer(self, model=None):  # type: ignore[override]
        if not self.tunedeck_badam or getattr(self, "optimizer", None) is not None:
            return super().create_optimizer(model)  # type: ignore[misc]
        # Not exercised in CI: the badam package is not installed there (args.py refuses
        # use_badam without it). Block-coordinate AdamW over one decoder layer at a time.
        from badam import BlockOptimizer

        opt_model = self.model if model is None else model  # type: ignore[attr-defined]
        decay = set(self.get_decay_parameter_names(opt_model))  # type: ignore[attr-defined]
        named = list(opt_model.named_parameters())
        groups = [
            {"params": [p for n, p in named if n in decay], "weight_decay": self.args.weight_decay},  # type: ignore[attr-defined]
            {"params": [p for n, p in named if n not in decay], "weight_decay": 0.0},
        ]
        cls, kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)  # type: ignore[attr-defined]
        b = self.tunedeck_badam
        self.optimizer = BlockOptimizer(
            base_optimizer=cls(groups, **kwargs),
            named_parameters_list=named,
            block_prefix_list=None,
            switch_block_every=int(b.get("badam_switch_interval", 50)),
            start_block=b.get("badam_start_block"),
            switch_mode=str(b.get("badam_switch_mode", "ascending")),
            verbose=int(b.get("badam_verbose", 0)),
        )
        return self.optimizer

    # -- per optimizer step ----------------------------------------------------
    def _clip_grad_norm(self, model):  # type: ignore[override]
        # transformers hands accelerate ``model.parameters()``, a walk over every module on
        # each optimizer step (and checks SageMaker's settings, a JSON parse of an
        # environment variable, each time). Neither changes while training, so list the
        # parameters once: the same tensors in the same order, and torch skips those
        # without a gradient either way, so the norm and the clipping are identical.
        cached = getattr(self, "_tunedeck_clip_params", None)
        if cached is None or cached[0] is not model:
            from transformers.trainer import is_sagemaker_mp_enabled

            mixed = getattr(self, "_has_mixed_mesh_grads", None)  # not in every transformers 5.x
            special = (is_sagemaker_mp_enabled() and self.args.fp16) or (mixed is not None and mixed(model))  # type: ignore[attr-defined]
            cached = (model, None if special else list(model.parameters()))
            self._tunedeck_clip_params = cached
        if cached[1] is None:
            return super()._clip_grad_norm(model)  # type: ignore[misc]
        return self.accelerator.clip_grad_norm_(cached[1], self.args.max_grad_norm)  # type: ignore[attr-defined]

    # -- per micro-batch -----------------------------------------------------
    def floating_point_ops(self, inputs):  # type: ignore[override]
        # transformers recounts the model's parameters (a walk over every module) on each
        # micro-batch just to add 6 x tokens x parameters to total_flos. The count does not
        # change while training, so count once: about 4% of a small model's step on CPU.
        # The input name is looked up once too (on a PeftModel every attribute it does not
        # hold itself goes through a failed lookup and a second one on the base model).
        model = self.model  # type: ignore[attr-defined]
        cached = getattr(self, "_tunedeck_nparams", None)
        if cached is None or cached[0] is not model:
            counts = hasattr(model, "num_parameters")
            cached = (model, getattr(model, "main_input_name", "input_ids"),
                      model.num_parameters(exclude_embeddings=True) if counts else 0)
            self._tunedeck_nparams = cached
        _, name, n = cached
        if not n or name not in inputs:
            return 0
        return 6 * inputs[name].numel() * n

    def training_step(self, model, inputs, num_items_in_batch=None):  # type: ignore[override]
        step = self.state.global_step + 1  # type: ignore[attr-defined]
        faults = self.tunedeck_faults
        if faults.oom_step is not None and step == faults.oom_step:
            raise torch.cuda.OutOfMemoryError(
                "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of "
                f"79.19 GiB of which 1.06 GiB is free. (injected by {FAULT_ENV}=oom@{step})"
            )
        loss = super().training_step(model, inputs, num_items_in_batch)  # type: ignore[misc]
        # The Trainer's own NaN filter already reads this value back every micro-batch,
        # so reading it here adds no extra device sync.
        value = float(loss.detach().float().mean().item()) if loss.numel() != 1 else float(loss.item())
        if not math.isfinite(value):
            self.tunedeck_flags.mark_nonfinite(step, value)
        return loss

    def compute_loss(self, model, inputs, *args: Any, **kwargs: Any):  # type: ignore[override]
        result = super().compute_loss(model, inputs, *args, **kwargs)  # type: ignore[misc]
        nan_step = self.tunedeck_faults.nan_step
        training = getattr(model, "training", True)  # evaluation goes through here too
        if nan_step is not None and training and self.state.global_step + 1 >= nan_step:  # type: ignore[attr-defined]
            if isinstance(result, tuple):
                return (result[0] * float("nan"), *result[1:])
            return result * float("nan")
        return result

    def _track_num_input_tokens(self, inputs):  # type: ignore[override]
        ids = inputs.get("input_ids") if isinstance(inputs, dict) else None
        if self.args.include_num_input_tokens_seen != "non_padding" or not isinstance(ids, torch.Tensor):  # type: ignore[attr-defined]
            return super()._track_num_input_tokens(inputs)  # type: ignore[misc]
        mask = inputs.get("attention_mask")
        flat_mask = isinstance(mask, torch.Tensor) and mask.dim() == 2
        if flat_mask and "position_ids" not in inputs:
            n = mask.sum()  # ordinary padding: the mask is 0 exactly on the pads
        else:
            # Packed rows. neat_packing masks hold 1, 2, 3 ... per sub-sequence (or are 4-D,
            # or absent under flash attention); plain packing keeps mask 1 on a pack's padded
            # tail. Count non-zero mask slots that are not the pad id (when pad != eos).
            real = mask != 0 if flat_mask else torch.ones_like(ids, dtype=torch.bool)
            tok = getattr(self, "processing_class", None)
            pad_id = getattr(tok, "pad_token_id", None)
            if pad_id is not None and pad_id != getattr(tok, "eos_token_id", None):
                real = real & (ids != pad_id)
            n = torch.count_nonzero(real)
        # Kept on the device and summed into the state when something reads it (a log, a
        # checkpoint): transformers reads the count back (.item(), and an all-gather across
        # ranks) on every micro-batch, a host-device sync per forward pass on a GPU.
        n = n.to(dtype=torch.int64)
        pending = getattr(self, "_tunedeck_tokens", None)
        self._tunedeck_tokens = n if pending is None else pending + n
        return None

    def _tunedeck_flush_tokens(self) -> None:
        """Add the tokens counted since the last flush to ``state.num_input_tokens_seen``.
        Collective under DDP: every rank calls it at the same points (log, checkpoint)."""
        if self.args.include_num_input_tokens_seen != "non_padding":  # type: ignore[attr-defined]
            return
        pending = getattr(self, "_tunedeck_tokens", None)
        self._tunedeck_tokens = None
        device = self.args.device  # type: ignore[attr-defined]
        n = torch.zeros((), dtype=torch.int64, device=device) if pending is None else pending.to(device)
        if pending is None and self.args.world_size <= 1:  # type: ignore[attr-defined]
            return
        self.state.num_input_tokens_seen += int(self.accelerator.gather(n).sum().item())  # type: ignore[attr-defined]

    def log(self, logs, *args: Any, **kwargs: Any):  # type: ignore[override]
        self._tunedeck_flush_tokens()
        return super().log(logs, *args, **kwargs)  # type: ignore[misc]

    # -- checkpoints ---------------------------------------------------------
    def _save_checkpoint(self, model, trial):  # type: ignore[override]
        name = f"{CHECKPOINT_PREFIX}{self.state.global_step}"  # type: ignore[attr-defined]
        ckpt = os.path.join(self._get_output_dir(trial=trial), name)  # type: ignore[attr-defined]
        marker = os.path.join(ckpt, INCOMPLETE_MARKER)
        main = self.args.should_save  # type: ignore[attr-defined]
        self._tunedeck_flush_tokens()  # the saved trainer state holds the count so far
        if main:
            os.makedirs(ckpt, exist_ok=True)
            with open(marker, "w", encoding="utf-8") as fh:
                fh.write(f"tunedeck: checkpoint of step {self.state.global_step} is being written\n")  # type: ignore[attr-defined]
        # transformers rotates old checkpoints (save_total_limit) inside its save, while this
        # one is still marked incomplete: a kill there would leave nothing complete to resume.
        # Rotate here instead, once the new checkpoint is complete.
        limit = self.args.save_total_limit  # type: ignore[attr-defined]
        self.args.save_total_limit = None  # type: ignore[attr-defined]
        try:
            if self.tunedeck_faults.enospc_on_save:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.path.join(ckpt, "model.safetensors"))
            super()._save_checkpoint(model, trial)  # type: ignore[misc]
            if self.tunedeck_faults.slow_save_seconds > 0:
                time.sleep(self.tunedeck_faults.slow_save_seconds)  # still marked incomplete
        except BaseException as exc:
            if main and is_disk_full(exc):
                # The half-written files hold the space the exit record and the supervisor's
                # last status need; the marker stays, so the checkpoint still reads incomplete.
                _release_partial(ckpt)
            raise
        finally:
            self.args.save_total_limit = limit  # type: ignore[attr-defined]
        progress = self._tunedeck_progress()
        # Other ranks may still be writing their RNG state into the same directory.
        self.accelerator.wait_for_everyone()  # type: ignore[attr-defined]
        if main:
            from tunedeck.runner.fsutil import atomic_write_json

            atomic_write_json(os.path.join(ckpt, PROGRESS_FILE), progress)
            with contextlib.suppress(FileNotFoundError):
                os.remove(marker)
            if limit:
                from transformers import trainer as hf_trainer

                hf_trainer.rotate_checkpoints(
                    output_dir=self._get_output_dir(trial=trial),  # type: ignore[attr-defined]
                    save_total_limit=limit,
                    best_model_checkpoint=self.state.best_model_checkpoint,  # type: ignore[attr-defined]
                    use_mtime=True,
                )
        self.tunedeck_flags.last_checkpoint = name


def _start_step(trainer: Any) -> int:
    return int(getattr(trainer, "_initial_global_step", 0) or 0)


def _read_progress(path: str) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("step"), int) else None


class _CarryCallback(TrainerCallback):
    """Hands ``on_train_begin`` to the trainer: transformers resets its loss window just
    before it, so this is the one moment to continue the checkpoint's window."""

    def __init__(self, trainer: TunedeckTrainerMixin) -> None:
        self.trainer = trainer

    def on_train_begin(self, args, state, control, **kwargs):
        self.trainer._tunedeck_restore()


def _release_partial(ckpt: str) -> None:
    """Delete what a failed save wrote into ``ckpt``, except the incompleteness marker."""
    import shutil

    try:
        entries = list(os.scandir(ckpt))
    except OSError:
        return
    for e in entries:
        if e.name == INCOMPLETE_MARKER:
            continue
        with contextlib.suppress(OSError):
            if e.is_dir(follow_symlinks=False):
                shutil.rmtree(e.path, ignore_errors=True)
            else:
                os.remove(e.path)


def make_trainer_class(base: type) -> type:
    """``TunedeckTrainerMixin`` in front of ``base`` (Trainer, DPOTrainer, ...)."""
    return type(f"Tunedeck{base.__name__}", (TunedeckTrainerMixin, base), {})
