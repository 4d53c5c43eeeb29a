"""The guide's production advice, and where the guide departs from LLaMA-Factory's defaults."""

from __future__ import annotations

from collections.abc import Callable

from tunedeck.runner.config.schema import (
    PARAMS,
    UNSET,
)
from tunedeck.runner.config.validate.context import _Ctx, _distributed, _zero3
from tunedeck.runner.config.validate.values import _is_number, _show
from tunedeck.runner.config.yamlio import split_list

# -- advice -------------------------------------------------------------------------
# Recommendations that only make sense on a GPU.
_GPU_ONLY = frozenset({"pure_bf16", "flash_attn", "enable_liger_kernel", "dataloader_pin_memory"})


# Handled by dedicated rules below.
_SPECIAL = frozenset({"plot_loss", "lr_scheduler_type", "finetuning_type"})


def _advice(ctx: _Ctx) -> None:
    gpu = ctx.cuda and not ctx.on("use_cpu")
    training = ctx.on("do_train")
    ft = ctx.get("finetuning_type")
    for key in ctx.given:
        p = PARAMS.get(key)
        if p is None or key in ctx.bad or p.recommended is UNSET or key in _SPECIAL:
            continue
        if key in _GPU_ONLY and not gpu:
            continue
        if key == "pure_bf16" and _zero3(ctx):
            continue
        if key == "lora_target" and ft != "lora":
            continue
        if ctx.raw.get(key) != p.recommended:
            ctx.add("advice", "guide", key, f"the guide recommends {_show(p.recommended)}: {p.advice}")
    if not training:
        return
    if ctx.get("lr_scheduler_type") == "linear":
        ctx.add("advice", "guide", "lr_scheduler_type", "linear decay; the guide recommends cosine for a smoother end of training",
                "set lr_scheduler_type: cosine")
    if not ctx.on("plot_loss"):
        ctx.add("advice", "guide", "plot_loss", "is off; the guide keeps it on so every run leaves a loss curve",
                "set plot_loss: true")
    ws = ctx.get("warmup_steps") or 0
    if ws == 0 and not ctx.get("warmup_ratio"):
        ctx.add("advice", "guide", ctx.first_set("warmup_steps", "warmup_ratio"),
                "no learning-rate warm-up; the guide warms up for about 10% of the steps",
                "set warmup_steps to about a tenth of the total steps (or warmup_ratio: 0.1)")
    if ft == "lora":
        rank, alpha = ctx.get("lora_rank"), ctx.get("lora_alpha")
        if ctx.is_set("lora_alpha") and _is_number(rank) and _is_number(alpha) and alpha != 2 * rank:
            ctx.add("advice", "lora-alpha", "lora_alpha", f"{alpha} is not twice lora_rank ({rank})",
                    f"the guide uses lora_alpha: {2 * rank}")
        if _is_number(rank) and rank >= 64 and not ctx.on("use_rslora"):
            ctx.add("advice", "guide", "lora_rank", f"rank {rank} is large; the guide pairs large ranks with use_rslora",
                    "set use_rslora: true")
        if _is_number(ctx.get("lora_dropout")) and ctx.get("lora_dropout") > 0.1:
            ctx.add("advice", "guide", "lora_dropout", "is above the guide's 0-0.1 range")
    lr = ctx.get("learning_rate")
    if _is_number(lr) and "learning_rate" in ctx.given:
        limit = 5e-4 if ft in ("lora", "oft") else 1e-4
        if lr > limit:
            ctx.add("advice", "guide", "learning_rate",
                    f"{lr:g} is well above the guide's range (5e-5 to 1e-4, 1e-5 for full fine-tuning); watch for divergence")
    ep = ctx.get("num_train_epochs")
    if _is_number(ep) and ep > 5 and (ctx.get("max_steps") or -1) <= 0:
        ctx.add("advice", "guide", "num_train_epochs", f"{ep:g} epochs is past the guide's 2-5; watch eval loss for overfitting")
    val = ctx.get("val_size") or 0
    evals = split_list(ctx.get("eval_dataset"))
    if ctx.get("stage") == "sft" and not evals and not (_is_number(val) and val > 0) and not ctx.on("streaming"):
        ctx.add("advice", "guide", "val_size", "no validation data; the guide holds out a validation set to catch overfitting",
                "set val_size: 0.1 and eval_strategy: steps")
    elif (evals or (_is_number(val) and val > 0)) and ctx.get("eval_strategy") == "no":
        ctx.add("advice", "guide", ctx.first_set("eval_strategy", "val_size"),
                "validation data is never evaluated during training", "set eval_strategy: steps and eval_steps")
    if ctx.get("save_strategy") != "no" and ctx.get("save_total_limit") is None:
        ctx.add("advice", "guide", "save_total_limit", "checkpoints are never deleted; disks fill up on long runs",
                "set save_total_limit: 3")
    if _distributed(ctx) and ctx.get("ddp_timeout") == 1800:
        ctx.add("advice", "guide", "ddp_timeout", "1800 s can be too short for preprocessing or saving big models",
                "raise ddp_timeout (the guide's example uses 180000000)")
    if ft == "full" and "finetuning_type" in ctx.given and not (ctx.on("use_galore") or ctx.on("use_apollo") or ctx.on("use_badam")):
        ctx.add("advice", "guide", "finetuning_type",
                "full fine-tuning needs several times the memory of LoRA; the guide prefers lora unless you need it")
    if (ctx.on("use_galore") or ctx.on("use_apollo")) and not ctx.on("pure_bf16"):
        ctx.add("advice", "optimizer-pure-bf16", ctx.first_set("use_galore", "use_apollo"),
                "GaLore/APOLLO with mixed precision can use much more memory", "set pure_bf16: true")
    if ctx.get("quantization_bit") is not None and not ctx.on("upcast_layernorm"):
        ctx.add("advice", "quant-upcast", "quantization_bit", "quantized training is steadier with fp32 layer norms",
                "set upcast_layernorm: true")
    if gpu and not (ctx.on("bf16") or ctx.on("fp16") or ctx.on("pure_bf16")):
        ctx.add("advice", "mixed-precision", "bf16", "training in fp32; mixed precision halves activation memory",
                "set bf16: true")
    if gpu and ctx.get("flash_attn") == "auto" and "flash_attn" not in ctx.given:
        ctx.add("advice", "guide", "flash_attn", "is auto; the guide sets fa2 explicitly", "set flash_attn: fa2")
    if ctx.get("stage") == "sft" and not ctx.get("template"):
        ctx.add("advice", "guide", "template", "is unset, so the tokenizer's own chat template (or none) is used",
                "set the template of the model family, e.g. qwen or llama3")
    if not ctx.get("output_dir"):
        ctx.add("advice", "output-dir", "output_dir", "is unset; transformers writes to ./trainer_output",
                "set output_dir to a folder for this run")


def _lf_differences(ctx: _Ctx) -> None:
    """Where tunedeck's default deliberately differs from LLaMA-Factory's and the config
    leaves the key unset: say so, so a LLaMA-Factory config holds no surprise."""
    if not ctx.on("do_train"):
        return
    for key, p in PARAMS.items():
        if p.differs and key not in ctx.given and key not in ctx.bad:
            ctx.add("advice", "lf-default", key,
                    f"unset: tunedeck uses {_show(p.default)} where LLaMA-Factory uses {_show(p.lf_default)}, "
                    f"because {p.differs}", f"set {key}: {_show(p.lf_default)} to train as LLaMA-Factory does")


_ADVICE_RULES: tuple[Callable[[_Ctx], None], ...] = (_advice, _lf_differences)
