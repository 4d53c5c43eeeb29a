"""Rules across keys: unknown keys, method, stage, data, training, DeepSpeed, no CUDA."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from pathlib import Path

from tunedeck.runner.config.hf_training_keys import HF_TRAINING_KEYS
from tunedeck.runner.config.schema import (
    PARAMS,
    alias_target,
    is_env_key,
)
from tunedeck.runner.config.validate.context import (
    _Ctx,
    _distributed,
    _fsdp_on,
    _load_deepspeed,
    _zero3,
)
from tunedeck.runner.config.validate.findings import MAX_SUGGESTIONS
from tunedeck.runner.config.validate.values import _HF_KEYS, _is_number, _value_problem
from tunedeck.runner.config.yamlio import split_list


# -- keys and values --------------------------------------------------------------
def _known_names() -> list[str]:
    return list(PARAMS) + [k for k in HF_TRAINING_KEYS if k not in PARAMS]


def _check_keys(ctx: _Ctx) -> None:
    keys = ctx.doc.keys()
    suggested = 0
    for key in keys:
        value = ctx.raw.get(key)
        p = PARAMS.get(key)
        if p is None:
            new = alias_target(key)
            if new is not None:
                ctx.bad.add(key)
                ctx.add("error", "renamed-key", key, f"was renamed to {new}", f"write {new}: instead", at="key")
                continue
            if key in _HF_KEYS:
                ctx.add("advice", "unchecked-key", key,
                        "passed to transformers as is; not checked by tunedeck", None, at="key")
                continue
            if is_env_key(key):
                ctx.add("warning", "unknown-env", key,
                        "is not an environment variable tunedeck knows; it will be exported to the run as is",
                        "check the spelling", at="key")
                continue
            ctx.bad.add(key)
            close = []
            # "Did you mean" costs a comparison with every known name; a file of thousands of
            # unknown keys (not a config) must not cost minutes, so only the first ones get one.
            suggested += 1
            if suggested <= MAX_SUGGESTIONS:
                close = difflib.get_close_matches(key, _known_names(), n=1, cutoff=0.7)
                if not close:
                    close = difflib.get_close_matches(key.lower(), _known_names(), n=1, cutoff=0.7)
            fix = f"did you mean {close[0]}?" if close else "remove it, or see `tunedeck schema` for the known keys"
            ctx.add("error", "unknown-key", key, "is not a parameter tunedeck or LLaMA-Factory knows", fix, at="key")
            continue
        prob = _value_problem(p, value)
        if prob is not None:
            ctx.bad.add(key)
            ctx.add("error", prob[0], key, prob[1], prob[2])
    for p in PARAMS.values():
        if p.required and (p.name not in ctx.given or ctx.raw.get(p.name) in (None, "")):
            ctx.add("error", "required", p.name, "is required", f"add {p.name}: to the config")


def _rule_deepspeed(ctx: _Ctx) -> None:
    _load_deepspeed(ctx)
    if (ctx.get("deepspeed") or ctx.get("deepspeed_config")) and _fsdp_on(ctx):
        ctx.add("error", "deepspeed-fsdp", ctx.first_set("fsdp", "deepspeed"),
                "DeepSpeed and FSDP cannot be used together", "pick one of deepspeed or fsdp")


def _rule_method(ctx: _Ctx) -> None:
    ft = ctx.get("finetuning_type")
    stage = ctx.get("stage")
    qbit = ctx.get("quantization_bit")
    qmethod = ctx.get("quantization_method")
    adapters = split_list(ctx.get("adapter_name_or_path"))
    if stage == "ppo":
        ctx.add("error", "ppo-unsupported", "stage", "PPO is not supported by tunedeck yet",
                "train with sft, dpo, kto, rm or pt, or run PPO with LLaMA-Factory directly")
        if not ctx.get("reward_model"):
            ctx.add("error", "ppo-needs-reward-model", "stage", "PPO needs a reward_model", "set reward_model")
    if qbit is not None:
        if ft not in ("lora", "oft"):
            ctx.add("error", "quant-needs-lora", ctx.first_set("quantization_bit", "finetuning_type"),
                    f"quantization only works with the LoRA or OFT method, not {ft}",
                    "set finetuning_type: lora, or remove quantization_bit")
        if ctx.on("pissa_init"):
            ctx.add("error", "quant-pissa", "pissa_init", "PiSSA cannot be initialised on a quantized model",
                    "initialise PiSSA offline first, or drop quantization_bit")
        if ctx.on("resize_vocab"):
            ctx.add("error", "quant-resize-vocab", "resize_vocab", "embeddings of a quantized model cannot be resized",
                    "drop resize_vocab or quantization_bit")
        if adapters and ctx.on("create_new_adapter"):
            ctx.add("error", "quant-new-adapter", "create_new_adapter", "a new adapter cannot be created on a quantized model")
        if len(adapters) > 1:
            ctx.add("error", "quant-multi-adapter", "adapter_name_or_path",
                    "a quantized model accepts a single adapter", "merge the adapters first")
        allowed = {"bnb": (4, 8), "hqq": (1, 2, 3, 4, 5, 6, 8), "eetq": (8,)}.get(str(qmethod))
        if allowed is not None and qbit not in allowed:
            ctx.add("error", "quant-bits", "quantization_bit",
                    f"{qmethod} quantization takes {', '.join(map(str, allowed))} bits, not {qbit}",
                    f"use quantization_bit: {allowed[-1] if qmethod != 'bnb' else 4}")
        if ctx.on("fp8"):
            ctx.add("error", "fp8-quant", "fp8", "fp8 training cannot be combined with quantization", "drop one of them")
        if qmethod in ("hqq", "eetq") and (_zero3(ctx) or _fsdp_on(ctx)):
            ctx.add("error", "quant-sharded", "quantization_method",
                    f"{qmethod} quantization does not work under DeepSpeed ZeRO-3 or FSDP", "use bnb, or ZeRO-2")
    if ctx.on("use_dora") and qmethod in ("gptq", "awq", "aqlm"):
        ctx.add("error", "dora-ptq", "use_dora", f"DoRA does not work on {qmethod} (pre-quantized) models")
    if adapters and ft != "lora":
        ctx.add("error", "adapter-needs-lora", "adapter_name_or_path",
                f"adapters can only be loaded for the LoRA method, not {ft}", "set finetuning_type: lora")
    if ft != "lora":
        for key in ("use_rslora", "use_dora", "pissa_init"):
            if ctx.on(key):
                ctx.add("error", "lora-only", key, f"only works with finetuning_type lora, not {ft}",
                        "set finetuning_type: lora or remove it")
        if ctx.get("loraplus_lr_ratio") is not None:
            ctx.add("error", "lora-only", "loraplus_lr_ratio", f"only works with finetuning_type lora, not {ft}",
                    "set finetuning_type: lora or remove it")
    if ctx.on("use_llama_pro") and ft == "full":
        ctx.add("error", "llama-pro-full", "use_llama_pro", "LLaMA Pro works with freeze or LoRA, not full fine-tuning")
    opts = [k for k in ("use_galore", "use_apollo", "use_badam") if ctx.on(k)]
    if ft == "lora" and opts:
        ctx.add("error", "lora-with-optimizer", opts[0],
                "GaLore, APOLLO and BAdam are for full-parameter training and cannot be combined with LoRA",
                "set finetuning_type: full, or turn the optimizer off")
    if len(opts) > 1:
        ctx.add("error", "optimizers-exclusive", opts[1], f"{' and '.join(opts)} cannot be used together",
                "keep only one of use_galore, use_apollo, use_badam")
    if (ctx.on("use_galore") or ctx.on("use_apollo")) and (ctx.get("deepspeed") or ctx.get("deepspeed_config")):
        ctx.add("error", "optimizer-deepspeed", ctx.first_set("use_galore", "use_apollo"),
                "GaLore and APOLLO do not work under DeepSpeed", "remove deepspeed, or use BAdam with ZeRO-3")
    if _distributed(ctx):
        if ctx.on("use_galore") and ctx.on("galore_layerwise"):
            ctx.add("error", "layerwise-distributed", "galore_layerwise", "layer-wise GaLore only works on a single GPU")
        if ctx.on("use_apollo") and ctx.on("apollo_layerwise"):
            ctx.add("error", "layerwise-distributed", "apollo_layerwise", "layer-wise APOLLO only works on a single GPU")
        if ctx.on("use_badam"):
            if ctx.get("badam_mode") == "ratio":
                ctx.add("error", "badam-distributed", "badam_mode", "ratio-wise BAdam does not support distributed training",
                        "use badam_mode: layer with DeepSpeed ZeRO-3")
            elif not _zero3(ctx):
                ctx.add("error", "badam-distributed", "use_badam", "distributed BAdam needs DeepSpeed ZeRO-3",
                        "set deepspeed to a ZeRO-3 config, or train on one GPU")
    if ctx.on("pissa_init"):
        if stage in ("ppo", "kto") or (stage == "dpo" and ctx.get("pref_loss") not in ("orpo", "simpo")):
            ctx.add("error", "pissa-stage", "pissa_init", f"PiSSA cannot be used for stage {stage} with a reference model")
        if _zero3(ctx):
            ctx.add("error", "pissa-zero3", "pissa_init", "PiSSA cannot be initialised under DeepSpeed ZeRO-3")


def _rule_engines(ctx: _Ctx) -> None:
    """Kernels, engines, tokenizer and export switches that rule each other out."""
    if ctx.on("use_unsloth") and _zero3(ctx):
        ctx.add("error", "unsloth-zero3", "use_unsloth", "Unsloth does not work under DeepSpeed ZeRO-3")
    if ctx.on("use_kt") and _zero3(ctx):
        ctx.add("error", "kt-zero3", "use_kt", "KTransformers does not work under DeepSpeed ZeRO-3")
    if ctx.get("infer_backend") not in (None, "huggingface"):
        ctx.add("error", "infer-backend-training", "infer_backend",
                f"{ctx.get('infer_backend')} is an inference engine for chat/API and cannot train",
                "remove infer_backend (or set huggingface) in a training config")
    if ctx.on("split_special_tokens") and ctx.on("use_fast_tokenizer"):
        ctx.add("error", "split-special-fast", "split_special_tokens", "only works with slow tokenizers",
                "set use_fast_tokenizer: false")
    if ctx.get("export_quantization_bit") is not None and not ctx.get("export_quantization_dataset"):
        ctx.add("error", "export-quant-dataset", "export_quantization_bit", "export quantization needs a calibration dataset",
                "set export_quantization_dataset")
    if ctx.get("export_quantization_bit") is not None and ctx.get("adapter_name_or_path"):
        # LLaMA-Factory's export refuses it too ("Please merge adapters before quantizing the model.").
        ctx.add("error", "export-quant-adapters", ctx.first_set("export_quantization_bit", "adapter_name_or_path"),
                "cannot quantize while adapters are attached",
                "export the merged model first (without export_quantization_bit), then quantize that "
                "folder as model_name_or_path with no adapter_name_or_path")
    for a, b in (("image_max_pixels", "image_min_pixels"), ("video_max_pixels", "video_min_pixels")):
        if _is_number(ctx.get(a)) and _is_number(ctx.get(b)) and ctx.get(a) < ctx.get(b):
            ctx.add("error", "pixels-range", ctx.first_set(a, b), f"{a} is smaller than {b}")


def _rule_stage(ctx: _Ctx) -> None:
    stage = ctx.get("stage")
    if stage != "sft":
        for key in ("predict_with_generate", "neat_packing", "train_on_prompt", "mask_history"):
            if ctx.on(key):
                ctx.add("error", "sft-only", key, f"only works with stage sft, not {stage}", "remove it or set stage: sft")
    if stage == "sft" and ctx.on("do_predict") and not ctx.on("predict_with_generate"):
        ctx.add("error", "predict-needs-generate", "do_predict", "SFT prediction needs predict_with_generate: true",
                "set predict_with_generate: true")
    if ctx.on("predict_with_generate"):
        if _zero3(ctx):
            ctx.add("error", "generate-zero3", "predict_with_generate", "does not work under DeepSpeed ZeRO-3")
        if not ctx.get("eval_dataset"):
            ctx.add("error", "generate-needs-eval-dataset", "predict_with_generate", "needs an eval_dataset to generate from",
                    "set eval_dataset")
        if ctx.on("compute_accuracy"):
            ctx.add("error", "generate-accuracy", ctx.first_set("compute_accuracy", "predict_with_generate"),
                    "predict_with_generate and compute_accuracy cannot be used together")
    if stage in ("rm", "ppo") and ctx.on("load_best_model_at_end"):
        ctx.add("error", "stage-best-model", "load_best_model_at_end", f"stage {stage} does not support it")
    if stage == "dpo" and ctx.get("pref_loss") != "sigmoid" and (ctx.get("dpo_label_smoothing") or 0) > 1e-6:
        ctx.add("error", "label-smoothing-loss", "dpo_label_smoothing",
                f"label smoothing only works with pref_loss sigmoid, not {ctx.get('pref_loss')}",
                "set pref_loss: sigmoid or dpo_label_smoothing: 0")
    if ctx.on("do_train") and not split_list(ctx.get("dataset")):
        ctx.add("error", "dataset-required", "dataset", "training needs a dataset", "set dataset: <name from dataset_info.json>")


def _rule_data(ctx: _Ctx) -> None:
    datasets = split_list(ctx.get("dataset"))
    evals = split_list(ctx.get("eval_dataset"))
    val = ctx.get("val_size") or 0
    if ctx.on("mask_history") and ctx.on("train_on_prompt"):
        ctx.add("error", "mask-history-train-on-prompt", ctx.first_set("train_on_prompt", "mask_history"),
                "mask_history and train_on_prompt cannot be used together", "turn one of them off")
    if _is_number(val) and val > 1e-6:
        if not datasets:
            ctx.add("error", "val-size-no-dataset", "val_size", "needs a dataset to split", "set dataset")
        if evals:
            ctx.add("error", "val-size-eval-dataset", "val_size", "cannot be used together with eval_dataset",
                    "use either val_size or eval_dataset")
    probs_raw = ctx.get("interleave_probs")
    if probs_raw is not None and "interleave_probs" not in ctx.bad:
        if ctx.get("mix_strategy") == "concat":
            ctx.add("error", "interleave-concat", "interleave_probs", "only works with an interleave mix_strategy",
                    "set mix_strategy: interleave_under (or remove interleave_probs)")
        try:
            probs = [float(x) for x in split_list(probs_raw)]
        except ValueError:
            ctx.add("error", "type", "interleave_probs", "must be a comma list of numbers, e.g. 0.7,0.3")
            probs = []
        if probs:
            if datasets and len(probs) != len(datasets):
                ctx.add("error", "interleave-length", "interleave_probs",
                        f"has {len(probs)} probabilities for {len(datasets)} datasets",
                        "give one probability per dataset, in the same order")
            if evals and len(probs) != len(evals):
                ctx.add("error", "interleave-length", "interleave_probs",
                        f"has {len(probs)} probabilities for {len(evals)} eval datasets",
                        "give one probability per eval dataset")
            if any(x < 0 for x in probs) or abs(sum(probs) - 1.0) > 1e-6:
                ctx.add("error", "interleave-sum", "interleave_probs",
                        f"probabilities must be non-negative and add up to 1 (they add up to {sum(probs):g})")
    if ctx.on("streaming"):
        if (ctx.get("max_steps") or -1) <= 0:
            ctx.add("error", "streaming-max-steps", "streaming", "streaming needs max_steps (the dataset length is unknown)",
                    "set max_steps")
        if ctx.get("max_samples") is not None:
            ctx.add("error", "streaming-max-samples", "max_samples", "cannot be used with streaming", "remove max_samples")
        if _is_number(val) and 1e-6 < val < 1:
            ctx.add("error", "streaming-val-size", "val_size", "must be a whole number of examples in streaming mode",
                    "write a count, e.g. val_size: 1000")
    elif _is_number(val) and val >= 1 and not float(val).is_integer():
        ctx.add("error", "range", "val_size", f"{val} is neither a fraction below 1 nor a whole count")
    if (ctx.on("do_eval") or ctx.on("do_predict")) and not evals and not (_is_number(val) and val > 1e-6):
        ctx.add("error", "eval-needs-data", ctx.first_set("do_eval", "do_predict"),
                "evaluation needs eval_dataset or val_size", "set val_size: 0.1 or eval_dataset")


def _rule_training(ctx: _Ctx) -> None:
    if ctx.on("bf16") and ctx.on("fp16"):
        ctx.add("error", "bf16-fp16", ctx.first_set("fp16", "bf16"), "bf16 and fp16 cannot both be on",
                "keep bf16 on GPUs that support it, fp16 otherwise")
    if ctx.on("pure_bf16") and _zero3(ctx):
        ctx.add("error", "pure-bf16-zero3", "pure_bf16", "does not work with DeepSpeed ZeRO-3",
                "turn pure_bf16 off (keep bf16: true) or use ZeRO-2")
    if ctx.on("pure_bf16") and ctx.on("fp16"):
        ctx.add("error", "pure-bf16-fp16", "fp16", "fp16 cannot be combined with pure_bf16", "remove fp16")
    ws = ctx.raw.get("warmup_steps") if ctx.is_set("warmup_steps") else None
    if ws and ctx.is_set("warmup_ratio") and ctx.get("warmup_ratio"):
        ctx.add("warning", "warmup-both", "warmup_ratio", "is set together with warmup_steps, which wins",
                "keep one of warmup_steps or warmup_ratio")
    if (ctx.is_set("gradient_checkpointing") and ctx.is_set("disable_gradient_checkpointing")
            and ctx.raw["gradient_checkpointing"] is bool(ctx.raw["disable_gradient_checkpointing"])):
        ctx.add("error", "gradient-checkpointing-conflict", "gradient_checkpointing",
                "contradicts disable_gradient_checkpointing", "keep only disable_gradient_checkpointing")
    strat = ctx.get("eval_strategy")
    evals = split_list(ctx.get("eval_dataset"))
    val = ctx.get("val_size") or 0
    has_eval = bool(evals) or (_is_number(val) and val > 1e-6)
    if strat in ("steps", "epoch") and not has_eval and ctx.on("do_train"):
        ctx.add("error", "eval-strategy-no-data", "eval_strategy",
                f"eval_strategy {strat} needs evaluation data, and there is none",
                "set val_size: 0.1 (or eval_dataset), or eval_strategy: no")
    if ctx.is_set("eval_steps") and strat == "no":
        ctx.add("warning", "eval-steps-unused", "eval_steps", "has no effect while eval_strategy is no",
                "set eval_strategy: steps")
    if ctx.on("load_best_model_at_end"):
        save = ctx.get("save_strategy")
        if strat == "no" or (save != strat and save != "best"):
            ctx.add("error", "best-model-strategy", "load_best_model_at_end",
                    f"needs save_strategy to match eval_strategy (they are {save} and {strat})",
                    "set both to steps")
        elif strat == "steps":
            es = ctx.get("eval_steps") or ctx.get("logging_steps")
            ss = ctx.get("save_steps")
            if _is_number(es) and _is_number(ss) and es >= 1 and ss >= 1 and ss % es:
                ctx.add("error", "best-model-steps", "save_steps",
                        f"must be a multiple of eval_steps ({es:g}) when load_best_model_at_end is on")
    if ctx.on("quantization_device_map") and ctx.on("do_train"):
        ctx.add("error", "quant-device-map-train", "quantization_device_map", "a device map cannot be used for training",
                "remove quantization_device_map")
    if ctx.is_set("max_steps") and (ctx.get("max_steps") or 0) > 0 and ctx.is_set("num_train_epochs"):
        ctx.add("advice", "max-steps-epochs", "num_train_epochs", "is ignored because max_steps is set")
    report = split_list(ctx.get("report_to"))
    if "swanlab" in report:
        ctx.add("warning", "report-to-swanlab", "report_to",
                "transformers' own SwanLab reporter crashes with swanlab 0.10", "use use_swanlab: true instead")
    if len(report) > 1 and "none" in report:
        ctx.add("error", "report-to-none", "report_to", "'none' cannot be combined with other trackers")
    if ctx.on("use_swanlab") and ctx.get("swanlab_mode") == "cloud":
        has_key = bool(ctx.get("swanlab_api_key")) or bool(ctx.env_value("SWANLAB_API_KEY")) or any(
            (Path(d).expanduser() / ".netrc").exists() for d in ("~/.swanlab", ".swanlab"))
        if not has_key:
            ctx.add("warning", "swanlab-no-key", ctx.first_set("swanlab_mode", "use_swanlab"),
                    "SwanLab cloud mode has no API key here, so it cannot log in without a terminal",
                    "set SWANLAB_API_KEY in the environment, or swanlab_mode: offline and sync later")
    for key in sorted(ctx.given):
        p = PARAMS.get(key)
        if p is not None and p.secret and p.target != "env" and ctx.raw.get(key):
            env = {"swanlab_api_key": "SWANLAB_API_KEY", "hf_hub_token": "HF_TOKEN", "hub_token": "HF_TOKEN"}.get(key)
            ctx.add("warning", "secret-in-file", key, "a secret is written in the config file",
                    f"export {env} instead" if env else "pass it through the environment instead")
    if ctx.on("trust_remote_code"):
        ctx.add("warning", "trust-remote-code", "trust_remote_code",
                "runs Python code shipped with the model repository", "keep it only for models you trust that need it")
    if ctx.on("use_cpu") and (ctx.get("deepspeed") or ctx.get("deepspeed_config")):
        ctx.add("error", "cpu-deepspeed", "deepspeed", "DeepSpeed cannot train on the CPU (use_cpu is true)")


def _rule_no_cuda(ctx: _Ctx) -> None:
    if ctx.cuda:
        return
    tail = "on this machine; this config will fail here (fine if it runs on a GPU box)"
    if ctx.get("quantization_bit") is not None:
        ctx.add("warning", "no-cuda", "quantization_bit", f"needs a CUDA GPU and there is none {tail}")
    if ctx.get("flash_attn") in ("fa2", "fa3"):
        ctx.add("warning", "no-cuda", "flash_attn", f"{ctx.get('flash_attn')} (FlashAttention) needs a CUDA GPU and there is none {tail}",
                "use flash_attn: sdpa or auto on machines without a GPU")
    if ctx.on("pure_bf16"):
        ctx.add("warning", "no-cuda", "pure_bf16", f"needs a bf16-capable GPU and there is none {tail}")
    if ctx.get("deepspeed") or ctx.get("deepspeed_config"):
        ctx.add("warning", "no-cuda", ctx.first_set("deepspeed", "deepspeed_config"),
                f"DeepSpeed needs CUDA GPUs and there are none {tail}")
    if ctx.on("enable_liger_kernel") or ctx.on("use_unsloth"):
        ctx.add("warning", "no-cuda", ctx.first_set("enable_liger_kernel", "use_unsloth"),
                f"needs a CUDA GPU and there is none {tail}")


_RULES: tuple[Callable[[_Ctx], None], ...] = (
    _rule_deepspeed, _rule_method, _rule_engines, _rule_stage, _rule_data, _rule_training,
    _rule_no_cuda,
)
