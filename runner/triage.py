"""Symptoms of a run -> diagnoses with ordered, concrete config patches.

The rules follow the guide: its troubleshooting table (section 10.6: OOM, slow
training, loss not converging), its memory levels (9.3) and priorities (10.5),
its checkpoint advice (10.3). Each suggestion carries a patch (key -> new value,
``None`` removes the key) and the memory estimate before and after it, from
:mod:`tunedeck.runner.estimate`. Steps a config already has are skipped.

:func:`diagnose` is pure (a :class:`TriageInput` in, diagnoses out);
:func:`triage_run` gathers the input from a run directory; :func:`apply_suggestion`
writes a patched copy of the frozen config next to it, comments kept.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tunedeck.runner.config.yamlio import ConfigDoc
from tunedeck.runner.errors import ConfigError, RunNotFound, TunedeckError
from tunedeck.runner.estimate import (
    GiB,
    MemoryEstimate,
    deepspeed_plan,
    estimate,
    format_bytes,
    with_defaults,
)
from tunedeck.runner.fsutil import atomic_write_text, read_json
from tunedeck.runner.rundir.health import stall_check, step_times
from tunedeck.runner.rundir.protocol import (
    FROZEN_CONFIG,
    STDOUT_LOG,
    TRAINER_EXIT,
    TRAINER_LOG,
    TRAINER_STATE,
)

LF_CONFIG = "training_args.yaml"     # what LLaMA Board writes into a run's output_dir
LOG_FILES = (STDOUT_LOG, "webui_subprocess.log", "running_log.txt")
LOG_TAIL_BYTES = 64 * 1024

# Case-insensitive substrings, except the regexes (case-sensitive, whole words).
OOM_PATTERNS = ("CUDA out of memory", "torch.OutOfMemoryError", "OutOfMemoryError",
                "out of memory")
ENOSPC_PATTERNS = ("No space left on device", "[Errno 28]", re.compile(r"\bENOSPC\b"))
NAN_PATTERNS = ("loss is nan", "loss became nan", "nan loss", "non-finite loss",
                "loss is inf", "loss became inf")
KILLED_PATTERNS = (re.compile(r"\bKilled\b"), "SIGKILL", "signal 9")
# Lines that quote settings rather than report an event (e.g. the fault-injection banner
# "Faults(oom_step=3, enospc_on_save=False, ...)") must not match.
_IGNORED_LINE = re.compile(r"^\[tunedeck\] fault injection")
# The supervisor marks each attempt in stdout.log; only the newest attempt's lines count.
_ATTEMPT_LINE = re.compile(r"^\[tunedeck [^\]]*\] attempt \d+: ")

FLAT_WINDOW = 20           # last N loss values looked at for "not converging"
FLAT_MIN_POINTS = 8

# Order of diagnoses: what killed the run first, then what will hurt it next.
_KIND_ORDER = ("oom", "disk_full", "diverged", "killed", "failed", "resume_past_end", "stalled",
               "disk_low", "slow", "not_converging", "healthy")


@dataclass(frozen=True)
class Suggestion:
    """One fix: what to change, why (in the guide's terms), and what it does to memory."""

    title: str
    rationale: str
    patch: dict[str, Any]
    before_bytes: float | None
    after_bytes: float | None
    guide_ref: str

    def diff_lines(self, values: Mapping[str, Any]) -> list[str]:
        """``["per_device_train_batch_size: 4 -> 1", ...]`` against the current config."""
        out = []
        for k, new in self.patch.items():
            old = values.get(k, "(unset)")
            out.append(f"{k}: {_show(old)} -> {'(removed)' if new is None else _show(new)}")
        return out

    def overrides(self) -> list[str]:
        """The patch as ``key=value`` overrides for ``tunedeck resume``."""
        return [f"{k}={'null' if v is None else _show(v)}" for k, v in self.patch.items()]


@dataclass(frozen=True)
class Diagnosis:
    kind: str   # oom | diverged | stalled | slow | not_converging | disk_full | disk_low |
    #             resume_past_end | failed | killed | healthy
    summary: str
    evidence: tuple[str, ...]
    suggestions: tuple[Suggestion, ...]


@dataclass(frozen=True)
class TriageInput:
    status: str | None                 # a RunStatus value, or None (no manifest)
    exit_message: str | None
    log_tail: list[str]
    values: dict[str, Any]
    config_dir: Path | None
    gpu_mem_bytes: float | None
    num_gpus: int
    history: list[dict[str, Any]]      # trainer_log.jsonl records
    disk_free_bytes: float | None
    checkpoint_bytes: float | None
    last_log_age_s: float | None
    checkpoint_step: int | None        # the checkpoint a resume would start from
    checkpoint_epoch: float | None = None
    disk_path: str | None = None       # mount point (and device) holding output_dir
    gpu_util_pct: float | None = None  # mean utilisation of the run's GPUs right now
    exit_reason: str | None = None     # trainer_exit.json "reason"
    gpu_name: str | None = None        # e.g. "NVIDIA A100-SXM4-80GB" (for the throughput check)


def _delta(b: float) -> str:
    return ("+" if b > 0 else "-" if b < 0 else "") + format_bytes(abs(b))


def _show(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (dict, list)):
        return json.dumps(v)
    return str(v)


# -----------------------------------------------------------------------------------
# Helpers over the input
# -----------------------------------------------------------------------------------


class _Ctx:
    """The input plus memoised estimates and effective values."""

    def __init__(self, inp: TriageInput) -> None:
        self.inp = inp
        self.v = with_defaults(inp.values)
        self._mem: dict[str, MemoryEstimate | None] = {}
        self.tail = "\n".join(inp.log_tail[-400:])
        self.exit = inp.exit_message or ""

    def estimate(self, patch: Mapping[str, Any] | None = None) -> MemoryEstimate | None:
        """The memory estimate of the config with ``patch`` applied (None: model unknown)."""
        vals = dict(self.inp.values)
        for k, val in (patch or {}).items():
            if val is None:
                vals.pop(k, None)
            else:
                vals[k] = val
        key = json.dumps(vals, sort_keys=True, default=str)
        if key not in self._mem:
            try:
                self._mem[key] = estimate(
                    vals, config_dir=self.inp.config_dir, num_gpus=max(1, self.inp.num_gpus),
                    gpu_mem_gib=(self.inp.gpu_mem_bytes / GiB if self.inp.gpu_mem_bytes
                                 else None),
                    detect_gpus=False, with_levels=False)
            except (ConfigError, ValueError, TypeError, ZeroDivisionError):
                self._mem[key] = None
        return self._mem[key]

    def mem(self, patch: Mapping[str, Any] | None = None) -> float | None:
        est = self.estimate(patch)
        return est.per_gpu_bytes if est is not None else None

    def suggest(self, title: str, rationale: str, patch: dict[str, Any], ref: str,
                *, memory: bool = True) -> Suggestion:
        before = self.mem() if memory else None
        after = self.mem(patch) if memory and patch else before
        if memory and before is not None and after is not None and patch:
            rationale += (f" Estimated peak per GPU: {format_bytes(before)} -> "
                          f"{format_bytes(after)} ({_delta(after - before)})")
            if self.inp.gpu_mem_bytes:
                fits = after <= self.inp.gpu_mem_bytes
                rationale += (f" ({'fits' if fits else 'still over'} "
                              f"{format_bytes(self.inp.gpu_mem_bytes)})")
            rationale += "."
        return Suggestion(title, rationale, patch, before, after, ref)

    def num(self, key: str, default: float) -> float:
        val = self.v.get(key)
        try:
            return float(val) if val is not None else default
        except (TypeError, ValueError):
            return default

    def int_(self, key: str, default: int) -> int:
        return int(self.num(key, default))

    def flag(self, key: str) -> bool:
        val = self.v.get(key)
        if isinstance(val, str):
            return val.strip().lower() in ("1", "true", "yes", "on")
        return bool(val)


def _losses(history: list[dict[str, Any]]) -> list[tuple[int, float]]:
    out = []
    for i, rec in enumerate(history):
        loss = rec.get("loss")
        if isinstance(loss, (int, float)) and not isinstance(loss, bool):
            step = rec.get("current_steps", i)
            out.append((int(step) if isinstance(step, (int, float)) else i, float(loss)))
    return out


def _total_steps(ctx: _Ctx) -> int | None:
    ms = ctx.int_("max_steps", -1)
    if ms > 0:
        return ms
    for rec in reversed(ctx.inp.history):
        t = rec.get("total_steps")
        if isinstance(t, (int, float)) and t > 0:
            return int(t)
    return None


def _matches(text: str, patterns: tuple[str | re.Pattern[str], ...]) -> str | None:
    """The last line matching any pattern (substrings case-insensitively, regexes as is)."""
    for line in reversed(text.splitlines()):
        if _IGNORED_LINE.match(line):
            continue
        low = line.lower()
        for p in patterns:
            hit = p.search(line) if isinstance(p, re.Pattern) else p.lower() in low
            if hit:
                return line.strip()[:300]
    return None


def current_attempt(lines: list[str]) -> list[str]:
    """The lines of ``stdout.log`` since the supervisor's last "attempt N:" marker."""
    for i in range(len(lines) - 1, -1, -1):
        if _ATTEMPT_LINE.match(lines[i]):
            return lines[i:]
    return lines


def _nonfinite(x: Any) -> bool:
    return isinstance(x, float) and (math.isnan(x) or math.isinf(x))


# -----------------------------------------------------------------------------------
# Rules
# -----------------------------------------------------------------------------------


def _sample_file(*, offload: bool) -> str:
    """Our sample DeepSpeed ZeRO-3 config (absolute path), or the conventional name."""
    name = "ds_z3_offload_config.json" if offload else "ds_z3_config.json"
    try:
        from tunedeck.runner.config.presets import launch_file

        shipped = Path(launch_file(name))
        if shipped.is_file():
            return str(shipped)
    except (ImportError, AttributeError, OSError, ValueError):
        pass
    root = Path(__file__).resolve().parents[1] / "sample_configs"
    hits: list[Path] = []
    if root.is_dir():
        for p in sorted(root.rglob("*.json")):
            n = p.name.lower()
            if ("z3" in n or "zero3" in n) and (("offload" in n) == offload):
                hits.append(p)
    if hits:
        hits.sort(key=lambda p: (len(p.name), str(p)))
        return str(hits[0])
    return name


def _installed(package: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):
        return False


def _missing(package: str, pip_name: str) -> str:
    """A sentence when ``package`` is not installed here (the run would fail at start-up)."""
    return "" if _installed(package) else (
        f" Note: {pip_name} is not installed on this machine "
        f"(pip install {pip_name}); without it the run fails at start-up.")


# What a patched key needs installed to start at all: (key, test on the new value, module, pip name).
_REQUIREMENTS: tuple[tuple[str, Any, str, str], ...] = (
    ("enable_liger_kernel", lambda v: v is True, "liger_kernel", "liger-kernel"),
    ("flash_attn", lambda v: str(v).lower() in ("fa2", "fa3"), "flash_attn", "flash-attn"),
    ("quantization_bit", lambda v: v not in (None, 0, "", False), "bitsandbytes", "bitsandbytes"),
    ("deepspeed", lambda v: bool(v), "deepspeed", "deepspeed"),
    ("use_galore", lambda v: v is True, "galore_torch", "galore-torch"),
    ("use_apollo", lambda v: v is True, "apollo_torch", "apollo-torch"),
    ("use_badam", lambda v: v is True, "badam", "badam"),
)


def missing_requirements(patch: Mapping[str, Any]) -> list[str]:
    """The pip packages a patch needs that are not installed here (a run with the patch
    would fail at start-up); ``--auto-triage`` passes over such a patch."""
    out = []
    for key, wants, module, pip_name in _REQUIREMENTS:
        if key in patch and wants(patch[key]) and not _installed(module) and pip_name not in out:
            out.append(pip_name)
    return out


def _oom(ctx: _Ctx) -> list[Suggestion]:
    """The guide's 10.6 OOM steps, in order, skipping what the config already does."""
    v, inp, out = ctx.v, ctx.inp, []
    bs = max(1, ctx.int_("per_device_train_batch_size", 1))
    ga = max(1, ctx.int_("gradient_accumulation_steps", 1))
    n = max(1, inp.num_gpus)
    # 1. micro-batch 1, accumulation raised so the effective batch holds.
    if bs > 1:
        out.append(ctx.suggest(
            f"Micro-batch 1 with {ga * bs} accumulation steps",
            f"Guide 10.6 (OOM, step 1) and 9.3 level 2: activations and logits grow with the "
            f"micro-batch. per_device_train_batch_size {bs} -> 1 with "
            f"gradient_accumulation_steps {ga} -> {ga * bs} keeps the effective batch at "
            f"{bs * ga * n} sequences per optimizer step, so the learning rate still fits.",
            {"per_device_train_batch_size": 1, "gradient_accumulation_steps": ga * bs},
            "10.6 OOM step 1"))
    # 2. Liger kernels.
    if not ctx.flag("enable_liger_kernel"):
        out.append(ctx.suggest(
            "Enable the Liger kernel",
            "Guide 10.6 (OOM, step 2); 10.5 lists it first among memory fixes because it costs "
            "no speed: fused RMSNorm/SwiGLU keep fewer activations and the fused linear "
            "cross-entropy never materialises the vocab x tokens logits in fp32."
            + _missing("liger_kernel", "liger-kernel"),
            {"enable_liger_kernel": True}, "10.6 OOM step 2"))
    # (10.5 priority 3 / 9.3 level 2: gradient checkpointing, when someone turned it off.)
    if ("gradient_checkpointing" in v and v["gradient_checkpointing"] is False) or ctx.flag(
            "disable_gradient_checkpointing"):
        patch: dict[str, Any] = {"gradient_checkpointing": True}
        if "disable_gradient_checkpointing" in inp.values:
            patch["disable_gradient_checkpointing"] = None
        out.append(ctx.suggest(
            "Turn gradient checkpointing back on",
            "Guide 10.5 (memory priority 3) and 9.3 level 2: recomputing each layer in the "
            "backward pass keeps only the layer inputs; about 20-30% slower.",
            patch, "10.5 memory 3"))
    # 3. Shorter cutoff_len, with what it would truncate.
    cutoff = ctx.int_("cutoff_len", 2048)
    if cutoff > 256:
        out.append(_cutoff_suggestion(ctx, cutoff))
    # 4. 4-bit quantization (QLoRA).
    qb = ctx.int_("quantization_bit", 0) if v.get("quantization_bit") else 0
    ft = str(v.get("finetuning_type", "lora"))
    if not qb or qb > 4:
        if ft in ("lora", "oft"):
            patch = {"quantization_bit": 4}
            why = ("Guide 10.6 (OOM, step 4) and 9.3 level 3: NF4 weights with double "
                   "quantization take ~0.52 bytes per parameter instead of 2; the LoRA "
                   "adapters still train in 16/32 bits.")
        else:
            patch = {"finetuning_type": "lora", "quantization_bit": 4, "lora_rank": 16,
                     "lora_target": "all"}
            for k in ("use_galore", "use_apollo", "use_badam", "pure_bf16"):
                if k in inp.values:
                    patch[k] = None
            why = (f"Guide 10.6 (OOM, step 4) and 9.3 level 3: quantization only works with "
                   f"LoRA, so this switches {ft} fine-tuning to QLoRA (rank 16, all linears). "
                   "Full-parameter learning rates are too low for LoRA: raise learning_rate "
                   "towards 1e-4.")
        out.append(ctx.suggest("4-bit quantization (QLoRA)", why, patch, "10.6 OOM step 4"))
    # 5. DeepSpeed ZeRO-3, then with CPU offload.
    ds = deepspeed_plan(inp.values, inp.config_dir)
    stage = ds.stage if ds else -1
    pure_note = ("; pure_bf16 is rejected under ZeRO-3, so it becomes bf16"
                 if ctx.flag("pure_bf16") else "")
    if stage < 3 and n > 1:
        # On one GPU ZeRO-3 shards nothing (it only adds gather buffers): offload below.
        patch = {"deepspeed": _sample_file(offload=False)}
        if ctx.flag("pure_bf16"):
            patch.update({"pure_bf16": None, "bf16": True})
        out.append(ctx.suggest(
            "DeepSpeed ZeRO-3",
            f"Guide 10.6 (OOM, step 5) and 9.3 level 4: ZeRO-3 shards weights, gradients and "
            f"optimizer states over the {n} GPUs instead of holding a full copy on each "
            f"(plain DDP replicates the model){pure_note}.",
            patch, "10.6 OOM step 5"))
    if not (ds and stage == 3 and ds.offload_optimizer and ds.offload_param):
        patch = {"deepspeed": _sample_file(offload=True)}
        if ctx.flag("pure_bf16"):
            patch.update({"pure_bf16": None, "bf16": True})
        out.append(ctx.suggest(
            "DeepSpeed ZeRO-3 with CPU offload",
            "Guide 10.6 (OOM, step 5) and 9.3 level 4 (CPU offload): optimizer states and "
            "parameters move to host RAM; GPU memory drops to about the activations, at a "
            "large cost in speed. Host RAM needs roughly 16 bytes per trainable parameter plus "
            f"2 per parameter{pure_note}.",
            patch, "9.3 level 4 offload"))
    return out


def _cutoff_suggestion(ctx: _Ctx, cutoff: int) -> Suggestion:
    from tunedeck.runner.triage_data import dataset_lengths

    new = max(256, cutoff // 2)
    stats = None
    try:
        stats = dataset_lengths(ctx.inp.values, ctx.inp.config_dir)
    except (OSError, ValueError):
        stats = None
    if stats is not None and stats.count:
        p99 = stats.percentile(99)
        if p99 < new:
            # The guide (10.2) sets cutoff_len from the P99 length: no need to halve blindly.
            new = max(128, int(math.ceil(p99 / 64) * 64))
        over_now = stats.over(cutoff)
        over_new = stats.over(new)
        pct = 100 * over_new / stats.count
        data = (f" In the data ({', '.join(stats.datasets)}: {stats.count} examples"
                f"{', first records only' if stats.sampled else ''}; tokens counted with "
                f"{stats.method}) cutoff_len {new} truncates {over_new} examples "
                f"({pct:.1f}%), against {over_now} at {cutoff}; P99 length is {p99}.")
        if stats.count and stats.lengths[-1] <= new:
            data += (" No example is longer than that, so the real peak only drops if "
                     "packing fills sequences to cutoff_len; the estimate assumes full-length "
                     "sequences.")
    else:
        data = " (Could not read the training data to count truncated examples.)"
    return ctx.suggest(
        f"Shorter cutoff_len ({cutoff} -> {new})",
        "Guide 10.6 (OOM, step 3): activations and logits scale with the sequence length, "
        "and 10.2 sets cutoff_len from the P99 example length." + data,
        {"cutoff_len": new}, "10.6 OOM step 3")


def _diverged(ctx: _Ctx) -> list[Suggestion]:
    v, out = ctx.v, []
    if ctx.flag("fp16") and not ctx.flag("bf16"):
        out.append(ctx.suggest(
            "bf16 instead of fp16",
            "Guide 9.3 level 1 (mixed precision: bf16). fp16 overflows above 65504 and its "
            "loss scaler can turn a spike into inf/NaN; bf16 has fp32's exponent range. Needs "
            "an Ampere or newer GPU.",
            {"fp16": None, "bf16": True}, "9.3 level 1", memory=False))
    lr = ctx.num("learning_rate", 5e-5)
    new_lr = 5e-5 if lr > 5e-5 else lr / 2
    out.append(ctx.suggest(
        f"Lower the learning rate ({lr:g} -> {new_lr:g})",
        "Guide 4.1 and 10.6 (loss step 1): 5e-5 is the recommended starting point; a loss "
        "that becomes NaN usually means the updates are too large.",
        {"learning_rate": new_lr}, "4.1 learning_rate", memory=False))
    mgn = v.get("max_grad_norm", 1.0)
    try:
        mgn_f = float(mgn) if mgn is not None else 1.0
    except (TypeError, ValueError):
        mgn_f = 1.0
    if mgn_f <= 0 or mgn_f > 1.0:
        out.append(ctx.suggest(
            "Clip gradients at 1.0",
            f"Guide 4.1: max_grad_norm 1.0. It is {mgn} here, so one bad batch can push the "
            "weights far enough to produce NaN.",
            {"max_grad_norm": 1.0}, "4.1 max_grad_norm", memory=False))
    wu = _warmup_suggestion(ctx)
    if wu is not None:
        out.append(wu)
    return out


def _warmup_suggestion(ctx: _Ctx) -> Suggestion | None:
    if ctx.num("warmup_steps", 0) > 0 or ctx.num("warmup_ratio", 0) > 0:
        return None
    total = _total_steps(ctx)
    if total:
        patch: dict[str, Any] = {"warmup_steps": max(1, round(total * 0.1))}
    else:
        patch = {"warmup_ratio": 0.1}
    return ctx.suggest(
        "Add learning-rate warmup",
        "Guide 4.1: warmup_steps about 10% of the total steps (10.6 loss step 4). Without "
        "warmup the first updates hit freshly initialised adapters/optimizer moments at "
        "full learning rate.",
        patch, "4.1 warmup_steps", memory=False)


def _not_converging(ctx: _Ctx) -> list[Suggestion]:
    from tunedeck.runner.triage_data import render_sample

    out = []
    lr = ctx.num("learning_rate", 5e-5)
    if not math.isclose(lr, 5e-5, rel_tol=0.01):
        ft = str(ctx.v.get("finetuning_type", "lora"))
        hint = (" Full fine-tuning usually wants less (1e-5)." if ft == "full" and lr > 5e-5
                else "")
        out.append(ctx.suggest(
            f"Learning rate {lr:g} -> 5e-05",
            "Guide 10.6 (loss not converging, step 1): check the learning rate; 5e-5 is a "
            "good starting point. Too high and the loss bounces or rises; too low and it sits "
            "flat." + hint,
            {"learning_rate": 5e-5}, "10.6 loss step 1", memory=False))
    sample = None
    try:
        sample = render_sample(ctx.inp.values, ctx.inp.config_dir)
    except (OSError, ValueError):
        sample = None
    template = ctx.v.get("template") or "(none: the tokenizer's chat template, else empty)"
    if sample is not None:
        text, how = sample
        body = f" First training example ({how}):\n{text}"
    else:
        body = " (No local training data to show.)"
    out.append(ctx.suggest(
        "Check the data format against the template",
        "Guide 10.6 (loss not converging, step 2): confirm the data format. A wrong "
        f"formatting/columns mapping in dataset_info.json or the wrong template ({template}) "
        "trains on empty or garbled turns." + body,
        {}, "10.6 loss step 2", memory=False))
    if ctx.flag("mask_history"):
        out.append(ctx.suggest(
            "Train on every turn (mask_history false)",
            "Guide 10.6 (loss not converging, step 3): check mask_history. With it on only "
            "the last turn of each conversation is trained, so multi-turn data gives few "
            "labelled tokens per step.",
            {"mask_history": False}, "10.6 loss step 3", memory=False))
    wu = _warmup_suggestion(ctx)
    if wu is not None:
        out.append(Suggestion(wu.title, wu.rationale.replace("4.1:", "10.6 (step 4) and 4.1:"),
                              wu.patch, None, None, "10.6 loss step 4"))
    return out


def _slow(ctx: _Ctx) -> list[Suggestion]:
    out = []
    nw = ctx.int_("dataloader_num_workers", 0)
    if nw < 4:
        patch: dict[str, Any] = {"dataloader_num_workers": 4}
        if not ctx.flag("dataloader_pin_memory") and "dataloader_pin_memory" in ctx.inp.values:
            patch["dataloader_pin_memory"] = True
        out.append(ctx.suggest(
            f"More data-loader workers ({nw} -> 4)",
            "Guide 10.6 (slow training, step 1) and 10.5: with few workers the GPU waits for "
            "batches to be collated; 9.3 level 1 uses 4 workers and pinned memory.",
            patch, "10.6 slow step 1", memory=False))
    fa = str(ctx.v.get("flash_attn", "auto")).lower()
    if fa not in ("fa2", "fa3"):
        out.append(ctx.suggest(
            "FlashAttention-2",
            "Guide 10.6 (slow training, step 2) and 10.5 (compute): flash_attn fa2 is faster "
            "than sdpa/eager attention and does not store the attention matrix. Needs the "
            "flash-attn package and an Ampere or newer GPU." + _missing("flash_attn", "flash-attn"),
            {"flash_attn": "fa2"}, "10.6 slow step 2"))
    if not ctx.flag("enable_liger_kernel"):
        out.append(ctx.suggest(
            "Enable the Liger kernel",
            "Guide 10.6 (slow training, step 3): fused Triton kernels for RMSNorm, RoPE, "
            "SwiGLU and the loss; faster and lighter." + _missing("liger_kernel", "liger-kernel"),
            {"enable_liger_kernel": True}, "10.6 slow step 3"))
    if ctx.inp.num_gpus > 1:
        patch = {}
        if ctx.v.get("ddp_find_unused_parameters") is not False:
            patch["ddp_find_unused_parameters"] = False
        out.append(ctx.suggest(
            "Check the interconnect (multi-GPU)",
            "Guide 10.6 (slow training, step 4) and 10.5 (communication): every step "
            "all-reduces gradients. Check the links with `nvidia-smi topo -m` (PCIe without "
            "P2P, or GPUs on different CPU sockets, are slow), keep NCCL_P2P/NCCL_IB enabled, "
            "and set ddp_find_unused_parameters false so DDP does not scan the graph each "
            "step.",
            patch, "10.6 slow step 4", memory=False))
    return out


def _disk(ctx: _Ctx, full: bool) -> list[Suggestion]:
    out = []
    stl = ctx.v.get("save_total_limit")
    if not isinstance(stl, int) or stl <= 0 or stl > 2:
        out.append(ctx.suggest(
            "Keep at most 2 checkpoints",
            "Guide 10.3 (checkpoint management) sets save_total_limit so old checkpoints are "
            "deleted as new ones are written.",
            {"save_total_limit": 2}, "10.3 save_total_limit", memory=False))
    if not ctx.flag("save_only_model"):
        out.append(ctx.suggest(
            "Save only the model in checkpoints",
            "Guide 10.3: checkpoints hold optimizer and scheduler state too (for full "
            "fine-tuning the optimizer is ~2x the model). save_only_model true drops it; a "
            "resume then restarts the optimizer and learning-rate schedule.",
            {"save_only_model": True}, "10.3 checkpoints", memory=False))
    return out


# -----------------------------------------------------------------------------------
# diagnose
# -----------------------------------------------------------------------------------


def _status(ctx: _Ctx) -> str:
    return (ctx.inp.status or "").lower()


def _reason(ctx: _Ctx) -> str:
    return (ctx.inp.exit_reason or "").lower()


def _text(ctx: _Ctx) -> str:
    return ctx.tail + "\n" + ctx.exit


def _oom_diag(ctx: _Ctx, found: Sequence[Diagnosis]) -> Diagnosis | None:
    inp = ctx.inp
    oom_line = _matches(_text(ctx), OOM_PATTERNS)
    if not (_status(ctx) == "oom" or _reason(ctx) == "oom" or oom_line):
        return None
    ev = []
    if oom_line:
        ev.append(f"log: {oom_line}")
    if _status(ctx) == "oom":
        ev.append("run status: oom")
    before = ctx.mem()
    if before is not None:
        gm = (f" on a {format_bytes(inp.gpu_mem_bytes)} GPU" if inp.gpu_mem_bytes else "")
        ev.append(f"estimated peak {format_bytes(before)} per GPU{gm}")
    return Diagnosis("oom", "CUDA ran out of memory", tuple(ev), tuple(_oom(ctx)))


def _disk_diag(ctx: _Ctx, found: Sequence[Diagnosis]) -> Diagnosis | None:
    inp = ctx.inp
    reason = _reason(ctx)
    disk_line = _matches(_text(ctx), ENOSPC_PATTERNS)
    where = inp.disk_path or "the output_dir's filesystem"
    if disk_line or reason in ("disk_full", "enospc"):
        ev = [f"log: {disk_line}"] if disk_line else [f"trainer exit reason: {reason}"]
        if inp.disk_free_bytes is not None:
            ev.append(f"{format_bytes(inp.disk_free_bytes)} free on {where}")
        return Diagnosis("disk_full", f"the disk filled up ({where})", tuple(ev),
                         tuple(_disk(ctx, True)))
    if (inp.disk_free_bytes is not None and inp.checkpoint_bytes
            and inp.disk_free_bytes < 1.5 * inp.checkpoint_bytes
            and _status(ctx) not in ("finished",)):
        ev = [f"{format_bytes(inp.disk_free_bytes)} free on {where}",
              f"last checkpoint is {format_bytes(inp.checkpoint_bytes)}; the next save needs "
              f"about that much again (checked with a 1.5x margin)"]
        return Diagnosis("disk_low", f"the next checkpoint may not fit on {where}",
                         tuple(ev), tuple(_disk(ctx, False)))
    return None


def _diverged_diag(ctx: _Ctx, found: Sequence[Diagnosis]) -> Diagnosis | None:
    inp = ctx.inp
    bad = [r for r in inp.history if _nonfinite(r.get("loss")) or _nonfinite(r.get("grad_norm"))]
    nan_line = _matches(_text(ctx), NAN_PATTERNS)
    if not (_status(ctx) == "diverged" or _reason(ctx) == "diverged" or bad or nan_line):
        return None
    ev = []
    if bad:
        first = bad[0]
        ev.append(f"loss {first.get('loss')} / grad_norm {first.get('grad_norm')} at step "
                  f"{first.get('current_steps', '?')}")
    if nan_line:
        ev.append(f"log: {nan_line}")
    if _status(ctx) == "diverged":
        ev.append("run status: diverged")
    gn = [float(r["grad_norm"]) for r in inp.history
          if isinstance(r.get("grad_norm"), (int, float)) and not _nonfinite(r["grad_norm"])]
    if len(gn) >= 3:
        ev.append(f"grad_norm median {statistics.median(gn):.3g}, max {max(gn):.3g}")
    return Diagnosis("diverged", "the loss became NaN/inf", tuple(ev), tuple(_diverged(ctx)))


def _killed_diag(ctx: _Ctx, found: Sequence[Diagnosis]) -> Diagnosis | None:
    if _status(ctx) != "killed":
        return None
    kl = _matches(_text(ctx), KILLED_PATTERNS)
    ev = [f"log: {kl}"] if kl else []
    if ctx.inp.exit_message:
        ev.append(ctx.inp.exit_message)
    sugg = [ctx.suggest(
        "Check for the host's OOM killer",
        "A SIGKILL nobody sent is usually the kernel's OOM killer: host RAM ran out "
        "(`dmesg | grep -i kill`). Tokenisation workers and data-loader workers each hold "
        "a copy of the data; ZeRO offload needs host RAM too.",
        {"preprocessing_num_workers": 2} if ctx.int_("preprocessing_num_workers", 0) > 2
        else {}, "10.6", memory=False)]
    return Diagnosis("killed", "the trainer was killed by a signal", tuple(ev), tuple(sugg))


def _failed_diag(ctx: _Ctx, found: Sequence[Diagnosis]) -> Diagnosis | None:
    """A failure nothing more specific explains."""
    if found or _status(ctx) == "killed":
        return None
    if not (_status(ctx) in ("failed", "lost") or _reason(ctx) in ("error", "config_error")):
        return None
    inp = ctx.inp
    msg = inp.exit_message or _last_exception(inp.log_tail) or "no message"
    return Diagnosis(
        "failed", f"the run failed: {msg}",
        tuple(_traceback_tail(inp.log_tail)),
        (ctx.suggest("Validate the config",
                     "Many failures are config problems LLaMA-Factory reports only at "
                     "start-up: `tunedeck validate` lists them all with file:line.",
                     {}, "10.6", memory=False),))


def _not_converging_unless_diverged(ctx: _Ctx, found: Sequence[Diagnosis]) -> Diagnosis | None:
    if any(d.kind == "diverged" for d in found):
        return None
    return _not_converging_diag(ctx)


def _healthy(ctx: _Ctx, found: Sequence[Diagnosis]) -> Diagnosis | None:
    if any(d.kind != "resume_past_end" for d in found):
        return None
    ev = []
    losses = _losses(ctx.inp.history)
    if losses:
        ev.append(f"step {losses[-1][0]}: loss {losses[-1][1]:.4g}")
    if ctx.inp.status:
        ev.append(f"status: {ctx.inp.status}")
    return Diagnosis("healthy", "no problem found", tuple(ev), ())


# The detectors, in the order they look (each sees what the earlier ones found); the
# result is then sorted by _KIND_ORDER, most important first.
DETECTORS: tuple[Callable[[_Ctx, Sequence[Diagnosis]], Diagnosis | None], ...] = (
    _oom_diag,
    _disk_diag,
    _diverged_diag,
    _killed_diag,
    _failed_diag,
    lambda ctx, found: _resume_past_end(ctx),
    lambda ctx, found: _stalled(ctx),
    lambda ctx, found: _slow_diag(ctx),
    _not_converging_unless_diverged,
    _healthy,
)


def diagnose(inp: TriageInput) -> list[Diagnosis]:
    """Every problem found, most important first; ``healthy`` when there is none."""
    ctx = _Ctx(inp)
    found: list[Diagnosis] = []
    for detect in DETECTORS:
        d = detect(ctx, found)
        if d is not None:
            found.append(d)
    found.sort(key=lambda d: _KIND_ORDER.index(d.kind))
    return found


def _last_exception(tail: list[str]) -> str | None:
    for line in reversed(tail):
        s = line.strip()
        if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt)\b", s):
            return s[:300]
    return None


def _traceback_tail(tail: list[str], n: int = 6) -> list[str]:
    for i in range(len(tail) - 1, -1, -1):
        if tail[i].startswith("Traceback"):
            return [s.rstrip()[:300] for s in tail[i:][-n:]]
    return [s.rstrip()[:300] for s in tail[-n:] if s.strip()]


def _resume_past_end(ctx: _Ctx) -> Diagnosis | None:
    from tunedeck.runner.control.resume import resume_end

    inp = ctx.inp
    if inp.checkpoint_step is None or (inp.status or "") in ("running", "starting", "stopping"):
        return None
    end = resume_end(inp.checkpoint_step, inp.checkpoint_epoch, ctx.v, _total_steps(ctx))
    if end is None:
        return None
    ck = end.checkpoint_step
    if end.key == "max_steps":
        max_steps = ctx.int_("max_steps", -1)
        return Diagnosis(
            "resume_past_end",
            f"a resume would do nothing: {end.message}",
            (f"checkpoint step {ck} >= max_steps {max_steps}",),
            (ctx.suggest(f"Raise max_steps above {ck}",
                         f"The trainer restores global_step {ck}, finds max_steps {max_steps} "
                         "reached and trains 0 steps. Raise max_steps (the patch adds another "
                         f"{max_steps} steps).",
                         end.patch, "10.3 resume", memory=False),))
    epochs = ctx.num("num_train_epochs", 3.0)
    total = _total_steps(ctx)
    ev = []
    if total:
        ev.append(f"checkpoint step {ck} >= total steps {total}")
    if inp.checkpoint_epoch is not None:
        ev.append(f"checkpoint epoch {inp.checkpoint_epoch:g} of num_train_epochs {epochs:g}")
    return Diagnosis(
        "resume_past_end",
        f"a resume would do nothing: {end.message}",
        tuple(ev),
        (ctx.suggest(f"Raise num_train_epochs above {epochs:g}",
                     "The trainer restores the epoch counter and finds no epoch left, so "
                     "it skips straight to the end (LLaMA-Factory issues #2776/#7085). "
                     "Raise num_train_epochs; the learning-rate schedule is recomputed "
                     "over the new total.",
                     end.patch, "10.3 resume", memory=False),))


def _stalled(ctx: _Ctx) -> Diagnosis | None:
    inp = ctx.inp
    status = inp.status
    if inp.last_log_age_s is None:
        return None
    if status is not None and status not in ("running", "starting"):
        return None
    if status is None:
        # No manifest (a LLaMA-Factory run): only a run that has not reached its end.
        last = inp.history[-1] if inp.history else {}
        cur, tot = last.get("current_steps"), last.get("total_steps")
        if not (isinstance(cur, (int, float)) and isinstance(tot, (int, float)) and cur < tot):
            return None
    stall = stall_check(inp.history, inp.last_log_age_s)  # THE stall rule (rundir.health)
    if stall is None or not stall.stalled:
        return None
    ev = [stall.describe()]
    if inp.gpu_util_pct is not None:
        ev.append(f"GPU utilisation now {inp.gpu_util_pct:.0f}%")
    if status is None:
        ev.append("no tunedeck manifest: the process may also have died without a trace")
    sugg = [ctx.suggest(
        "See where it is stuck",
        "Dump the trainer's Python stacks with `py-spy dump --pid <trainer pid>` (tunedeck "
        "status shows the pid). A data-loader worker deadlock, a hung NCCL collective "
        "(other ranks crashed) and a full disk are the usual causes.",
        {}, "10.6", memory=False)]
    if ctx.int_("dataloader_num_workers", 0) > 0:
        sugg.append(ctx.suggest(
            "Load data in the main process",
            "If the stack shows the main process waiting on a worker queue, "
            "dataloader_num_workers 0 rules out a worker deadlock (at some cost in speed).",
            {"dataloader_num_workers": 0}, "10.6 slow step 1", memory=False))
    if inp.num_gpus > 1 and ctx.int_("ddp_timeout", 1800) > 7200:
        sugg.append(ctx.suggest(
            "A shorter ddp_timeout while diagnosing",
            f"A hung collective waits ddp_timeout ({ctx.int_('ddp_timeout', 1800)} s) before "
            "it fails; 3600 s turns a silent hang into an error with a stack trace. (Guide "
            "4.3 raises it so long preprocessing does not time out: restore it afterwards.)",
            {"ddp_timeout": 3600}, "4.3 ddp_timeout", memory=False))
    return Diagnosis("stalled", "training stopped making progress", tuple(ev), tuple(sugg))


def _slow_diag(ctx: _Ctx) -> Diagnosis | None:
    inp = ctx.inp
    ev: list[str] = []
    st = step_times(inp.history)
    if len(st) >= 8:
        q = max(2, len(st) // 4)
        early, late = statistics.median(st[:q]), statistics.median(st[-q:])
        if late > 2 * early:
            ev.append(f"steps slowed down: median {early:.2f} s/step early, {late:.2f} s/step "
                      "recently (memory creep or throttling)")
    if inp.gpu_util_pct is not None and inp.gpu_util_pct < 50 and (inp.status or "") == "running":
        ev.append(f"GPU utilisation {inp.gpu_util_pct:.0f}%: the GPUs wait on something")
    mfu = _mfu(ctx)
    if mfu is not None and mfu[0] < LOW_MFU:
        ev.append(mfu[1])
    if not ev:
        return None
    return Diagnosis("slow", "training is slower than it should be", tuple(ev),
                     tuple(_slow(ctx)))


# Dense bf16/fp16 tensor-core peaks (TFLOP/s, no sparsity), matched on the NVML name.
# Most specific names first.
GPU_PEAK_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756.0), ("H100", 989.0), ("H200", 989.0), ("H800", 989.0), ("H20", 148.0),
    ("GH200", 989.0), ("B200", 2250.0), ("A100", 312.0), ("A800", 312.0), ("L40S", 362.0),
    ("L40", 181.0), ("L4", 121.0), ("A6000", 155.0), ("A40", 150.0), ("A10", 125.0),
    ("4090", 165.0), ("4080", 97.0), ("3090", 71.0), ("V100", 125.0), ("T4", 65.0),
)
LOW_MFU = 0.10   # well-tuned fine-tuning runs reach 0.3-0.5 of peak


def gpu_peak_flops(name: str | None) -> float | None:
    if not name:
        return None
    for key, tflops in GPU_PEAK_TFLOPS:
        if key.lower() in name.lower():
            return tflops * 1e12
    return None


def _mfu(ctx: _Ctx) -> tuple[float, str] | None:
    """(model FLOPs utilisation, sentence) from the logged throughput, if it can be known."""
    inp = ctx.inp
    peak = gpu_peak_flops(inp.gpu_name)
    if peak is None or (inp.status or "") != "running":
        return None
    tput = next((r["throughput"] for r in reversed(inp.history)
                 if isinstance(r.get("throughput"), (int, float)) and r["throughput"] > 0), None)
    est = ctx.estimate()
    if tput is None or est is None:
        return None
    n = est.shape.total_params
    # 6N per token for a full step; frozen weights need no weight gradient (~2N less);
    # gradient checkpointing recomputes the forward (+2N).
    per_token = 6 * n if est.trainable_params >= 0.5 * n else 4 * n
    if any(c.name == "activations" and c.note.startswith("gradient checkpointing")
           for c in est.components):
        per_token += 2 * n
    mfu = tput * per_token / (peak * max(1, inp.num_gpus))
    return mfu, (f"{tput:,.0f} tokens/s is {100 * mfu:.1f}% of the {inp.gpu_name} bf16 peak "
                 f"(x{max(1, inp.num_gpus)}); well-tuned runs reach 30-50%")


def _not_converging_diag(ctx: _Ctx) -> Diagnosis | None:
    losses = [x for _, x in _losses(ctx.inp.history) if math.isfinite(x)]
    if len(losses) < FLAT_MIN_POINTS:
        return None
    window = losses[-FLAT_WINDOW:]
    half = len(window) // 2
    first, second = statistics.mean(window[:half]), statistics.mean(window[half:])
    start = statistics.mean(losses[: max(2, len(losses) // 10)])
    rising = second > first * 1.05
    flat = abs(second - first) <= 0.01 * max(abs(first), 1e-9) and min(window) >= 0.95 * start
    if not (rising or flat):
        return None
    how = "rising" if rising else "flat"
    ev = (f"loss over the last {len(window)} logs: {first:.4g} -> {second:.4g} ({how})",
          f"loss at the start {start:.4g}")
    return Diagnosis("not_converging", f"the loss is {how}", ev, tuple(_not_converging(ctx)))


# -----------------------------------------------------------------------------------
# Gathering input from a run directory
# -----------------------------------------------------------------------------------


def _read_tail(path: Path, nbytes: int = LOG_TAIL_BYTES) -> list[str]:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - nbytes))
            data = fh.read(nbytes)
    except OSError:
        return []
    lines = data.decode("utf-8", errors="replace").splitlines()
    if size > nbytes and lines:
        lines = lines[1:]   # the first line is cut in the middle
    return lines


def _mount_of(path: Path) -> str:
    p = path.resolve()
    while not os.path.ismount(p) and p != p.parent:
        p = p.parent
    device = None
    try:
        import psutil

        for part in psutil.disk_partitions(all=True):
            if part.mountpoint == str(p):
                device = part.device
    except Exception:   # psutil is optional for naming the device
        device = None
    return f"{p} ({device})" if device else str(p)


def config_path_of(run_dir: Path) -> Path | None:
    """The run's frozen config: ``config.yaml``, else LLaMA Board's ``training_args.yaml``."""
    for name in (FROZEN_CONFIG, LF_CONFIG):
        p = run_dir / name
        if p.is_file():
            return p
    return None


def gather(run_dir: str | Path) -> TriageInput:
    """Build a :class:`TriageInput` from the files of ``run_dir``."""
    from tunedeck.runner.rundir.checkpoints import list_checkpoints, tree_size
    from tunedeck.runner.rundir.logs import read_log_records
    from tunedeck.runner.rundir.manifest import read_manifest
    from tunedeck.runner.rundir.runs import computed_status, raw_manifest

    rd = Path(run_dir)
    if not rd.is_dir():
        raise RunNotFound(f"no run directory at {rd}")
    man = read_manifest(rd)
    cfg_path = config_path_of(rd)
    values: dict[str, Any] = {}
    config_dir: Path | None = rd
    if cfg_path is not None:
        try:
            values = ConfigDoc.load(cfg_path).values()
        except ConfigError:
            values = {}
    if man is not None and man.config_path:
        config_dir = Path(man.config_path).expanduser().resolve().parent
    logged = read_log_records(rd)
    history = logged.records
    if logged.source == TRAINER_STATE:  # transformers' log_history: the training records
        history = [r for r in history if "loss" in r]
    tail: list[str] = []
    for name in LOG_FILES:   # ours, then what LLaMA Board leaves behind
        if (rd / name).is_file():
            tail = current_attempt(_read_tail(rd / name))
            break
    exit_info = read_json(rd / TRAINER_EXIT)
    exit_reason = exit_msg = None
    if isinstance(exit_info, dict):
        exit_reason = str(exit_info.get("reason") or "") or None
        exit_msg = str(exit_info.get("message") or "") or None
    status = None
    if man is not None:
        # what status shows: an active manifest whose supervisor is gone reads as lost
        raw = raw_manifest(rd)
        status = computed_status(raw).value if raw is not None else man.status.value
        exit_msg = man.message or exit_msg
    ckpts = list_checkpoints(rd)
    complete = [c for c in ckpts if c.complete]
    ck = complete[-1] if complete else None
    ck_epoch = None
    if ck is not None:
        state = read_json(ck.path / TRAINER_STATE)
        if isinstance(state, dict) and isinstance(state.get("epoch"), (int, float)):
            ck_epoch = float(state["epoch"])
    ck_bytes = float(tree_size(ckpts[-1].path)) if ckpts else None
    try:
        free = float(shutil.disk_usage(rd).free)
    except OSError:
        free = None
    age = None
    # Before the first log line (loading, tokenising) the console output is the heartbeat.
    for name in (TRAINER_LOG, *LOG_FILES):
        try:
            age = time.time() - (rd / name).stat().st_mtime
            break
        except OSError:
            continue
    num_gpus = 1
    gpu_mem = util = None
    gpu_name = None
    gpu_idx: list[int] = []
    if man is not None:
        gpu_idx = list(man.gpus)
        num_gpus = max(1, int(man.num_processes or len(gpu_idx) or 1))
    if gpu_idx:
        gpu_mem, util, gpu_name = _gpu_facts(gpu_idx)
    return TriageInput(
        status=status, exit_message=exit_msg, log_tail=tail, values=values,
        config_dir=config_dir, gpu_mem_bytes=gpu_mem, num_gpus=num_gpus, history=history,
        disk_free_bytes=free, checkpoint_bytes=ck_bytes, last_log_age_s=age,
        checkpoint_step=ck.step if ck else None, checkpoint_epoch=ck_epoch,
        disk_path=_mount_of(rd), gpu_util_pct=util, exit_reason=exit_reason, gpu_name=gpu_name,
    )


def _gpu_facts(indices: list[int]) -> tuple[float | None, float | None, str | None]:
    """(smallest memory, mean utilisation, name) of the run's GPUs, from NVML."""
    try:
        from tunedeck.runner.monitor.nvml import get_nvml
    except ImportError:
        return None, None, None
    try:
        snap = get_nvml().snapshot(with_processes=False)
    except Exception:   # NVML never breaks triage
        return None, None, None
    if not getattr(snap, "available", False):
        return None, None, None
    mems, utils, names = [], [], []
    for g in snap.gpus:
        if g.index in indices:
            if g.mem_total:
                mems.append(float(g.mem_total))
            if g.util_gpu is not None:
                utils.append(float(g.util_gpu))
            if g.name:
                names.append(str(g.name))
    return ((min(mems) if mems else None), (statistics.mean(utils) if utils else None),
            (names[0] if names else None))


def triage_run(run_dir: str | Path) -> list[Diagnosis]:
    """Diagnose the run in ``run_dir`` from its files."""
    return diagnose(gather(run_dir))


def numbered(diagnoses: list[Diagnosis]) -> list[tuple[int, Diagnosis, Suggestion]]:
    """Suggestions across all diagnoses, numbered from 1 in display order (for --apply N)."""
    out = []
    n = 0
    for d in diagnoses:
        for s in d.suggestions:
            n += 1
            out.append((n, d, s))
    return out


def apply_suggestion(run_dir: str | Path, suggestion: Suggestion) -> Path:
    """Write ``config.triage-<n>.yaml`` next to the frozen config with the patch applied.

    The frozen config is never modified; comments, key order and quoting carry over.
    """
    rd = Path(run_dir)
    src = config_path_of(rd)
    if src is None:
        raise RunNotFound(f"{rd} has no {FROZEN_CONFIG} or {LF_CONFIG} to patch")
    if not suggestion.patch:
        raise TunedeckError(f"suggestion {suggestion.title!r} changes no config key",
                            hint="it is advice to act on by hand")
    doc = ConfigDoc.load(src)
    doc.apply(suggestion.patch)
    header = (f"# tunedeck triage: {suggestion.title} (guide {suggestion.guide_ref})\n"
              f"# patched copy of {src.name}; the original is unchanged\n")
    for n in range(1, 10_000):
        target = rd / f"config.triage-{n}.yaml"
        if not target.exists():
            break
    else:  # pragma: no cover - ten thousand patched configs
        raise TunedeckError(f"too many config.triage-*.yaml files in {rd}")
    atomic_write_text(target, header + doc.dumps())
    return target


def diagnoses_to_data(diagnoses: list[Diagnosis], values: Mapping[str, Any] | None = None
                      ) -> list[dict[str, Any]]:
    """Diagnoses as JSON-ready dicts; suggestions carry their --apply number and diff."""
    nums = {id(s): n for n, _, s in numbered(diagnoses)}
    out = []
    for d in diagnoses:
        dd = asdict(d)
        for sd, s in zip(dd["suggestions"], d.suggestions, strict=True):
            sd["number"] = nums[id(s)]
            sd["missing_packages"] = missing_requirements(s.patch)
            if values is not None:
                sd["diff"] = s.diff_lines(values)
        out.append(dd)
    return out


__all__ = [
    "Diagnosis",
    "Suggestion",
    "TriageInput",
    "apply_suggestion",
    "config_path_of",
    "diagnose",
    "diagnoses_to_data",
    "gather",
    "missing_requirements",
    "numbered",
    "triage_run",
]
