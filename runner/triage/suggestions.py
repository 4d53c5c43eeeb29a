"""The guide's remedies as concrete config patches, in its order (10.6 OOM/slow/loss, 9.3
memory levels, 10.3 checkpoints), and what a patch needs installed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tunedeck.runner.estimate import (
    deepspeed_plan,
)
from tunedeck.runner.triage.model import Suggestion, _Ctx, _total_steps

FLAT_WINDOW = 20           # last N loss values looked at for "not converging"


FLAT_MIN_POINTS = 8


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
