"""Our additions to transformers' / trl's trainers, as a mixin.

- every checkpoint carries :data:`tunedeck.runner.rundir.protocol.INCOMPLETE_MARKER` while it is being
  written, so a SIGKILL in the middle leaves a checkpoint readers can tell is incomplete;
- a non-finite loss is recorded for :class:`tunedeck.runner.train.callbacks.StopCallback`;
- the tokens counted for throughput are the real (non-padding) ones, also for
  ``neat_packing`` masks that hold sub-sequence indices instead of 0/1;
- the in-step faults of ``TUNEDECK_FAULT`` (oom, nan, enospc, slow-save).
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import time
from typing import Any

import torch

from tunedeck.runner.rundir.protocol import CHECKPOINT_PREFIX, FAULT_ENV, INCOMPLETE_MARKER
from tunedeck.runner.train.callbacks import RunFlags
from tunedeck.runner.train.faults import Faults
from tunedeck.runner.train.outcome import is_disk_full


class TunedeckTrainerMixin:
    """Mix in before a ``transformers.Trainer`` subclass: ``class T(TunedeckTrainerMixin, Trainer)``."""

    tunedeck_flags: RunFlags
    tunedeck_faults: Faults
    tunedeck_badam: dict[str, Any] | None = None

    def _tunedeck_setup(self, flags: RunFlags, faults: Faults, badam: dict[str, Any] | None = None) -> None:
        self.tunedeck_flags = flags
        self.tunedeck_faults = faults
        self.tunedeck_badam = badam

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

    # -- per micro-batch -----------------------------------------------------
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
        n = n.to(device=self.args.device, dtype=torch.int64)  # type: ignore[attr-defined]
        self.state.num_input_tokens_seen += self.accelerator.gather(n).sum().item()  # type: ignore[attr-defined]
        return None

    # -- checkpoints ---------------------------------------------------------
    def _save_checkpoint(self, model, trial):  # type: ignore[override]
        name = f"{CHECKPOINT_PREFIX}{self.state.global_step}"  # type: ignore[attr-defined]
        ckpt = os.path.join(self._get_output_dir(trial=trial), name)  # type: ignore[attr-defined]
        marker = os.path.join(ckpt, INCOMPLETE_MARKER)
        main = self.args.should_save  # type: ignore[attr-defined]
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
        # Other ranks may still be writing their RNG state into the same directory.
        self.accelerator.wait_for_everyone()  # type: ignore[attr-defined]
        if main:
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
