"""Load the tokenizer and the model, and make the right parameters trainable.

``lora`` (peft), ``freeze`` (last/first n layers, chosen sub-modules, extra modules)
and ``full``; compute dtype from ``bf16``/``fp16``/``pure_bf16``; trainable parameters
upcast to fp32 unless ``pure_bf16`` (LLaMA-Factory's behaviour); bitsandbytes
quantization; the attention implementation from ``flash_attn``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from typing import Any

import torch

from tunedeck.runner.train.args import FinetunePlan, ModelPlan, RunPlan
from tunedeck.runner.train.outcome import ConfigProblem

log = logging.getLogger("tunedeck.train")

# Output heads that `lora_target: all` must never adapt.
_HEAD_NAMES = {"lm_head", "output_layer", "output", "embed_out", "score", "classifier", "v_head"}


def compute_dtype(plan: RunPlan) -> torch.dtype:
    t = plan.training
    if plan.finetune.pure_bf16 or t.get("bf16"):
        return torch.bfloat16
    if t.get("fp16"):
        return torch.float16
    return torch.float32


def load_tokenizer(plan: ModelPlan):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(
        plan.model_name_or_path,
        use_fast=plan.use_fast_tokenizer,
        trust_remote_code=plan.trust_remote_code,
        revision=plan.revision,
        cache_dir=plan.cache_dir,
        padding_side="right",
    )
    if tok.pad_token is None and tok.eos_token is not None:
        tok.pad_token = tok.eos_token
    return tok


def _quantization_config(plan: ModelPlan, dtype: torch.dtype):
    if plan.quantization_bit is None:
        return None
    from transformers import BitsAndBytesConfig

    if plan.quantization_bit == 8:
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_compute_dtype=dtype,
        bnb_4bit_use_double_quant=plan.double_quantization,
        bnb_4bit_quant_type=plan.quantization_type,
        bnb_4bit_quant_storage=dtype,
    )


def _apply_rope_scaling(config: Any, plan: ModelPlan) -> None:
    if not plan.rope_scaling:
        return
    max_pos = getattr(config, "max_position_embeddings", None)
    if not max_pos or plan.cutoff_len <= max_pos:
        log.info("rope_scaling: cutoff_len %s fits max_position_embeddings %s; not scaling",
                 plan.cutoff_len, max_pos)
        return
    factor = float(math.ceil(plan.cutoff_len / max_pos))
    scaling = {"rope_type": str(plan.rope_scaling), "factor": factor}
    if plan.rope_scaling in ("yarn", "llama3"):
        scaling["original_max_position_embeddings"] = max_pos
    params = getattr(config, "rope_parameters", None)
    if isinstance(params, dict):
        config.rope_parameters = {**params, **scaling}
    else:
        config.rope_scaling = scaling
    config.max_position_embeddings = int(max_pos * factor)
    log.info("rope_scaling: %s with factor %s", plan.rope_scaling, factor)


def load_model(plan: RunPlan, tokenizer, *, resize: bool = False, device_map: Any = None):
    """Load the base model for ``plan`` and apply the fine-tuning method to it.

    ``resize``: the data side added tokens to the tokenizer; grow the embeddings to match.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

    mp = plan.model
    dtype = compute_dtype(plan)
    config = AutoConfig.from_pretrained(
        mp.model_name_or_path, trust_remote_code=mp.trust_remote_code, revision=mp.revision, cache_dir=mp.cache_dir
    )
    _apply_rope_scaling(config, mp)
    kwargs: dict[str, Any] = {"dtype": dtype, "trust_remote_code": mp.trust_remote_code}
    if mp.attn_implementation:
        kwargs["attn_implementation"] = mp.attn_implementation
    quant = _quantization_config(mp, dtype)
    if quant is not None:
        kwargs["quantization_config"] = quant
        kwargs["device_map"] = device_map or {"": torch.cuda.current_device()}
    is_rm = plan.finetune.stage == "rm"
    auto = AutoModelForSequenceClassification if is_rm else AutoModelForCausalLM
    if is_rm:
        config.num_labels = 1
        if getattr(config, "pad_token_id", None) is None:
            config.pad_token_id = tokenizer.pad_token_id
    if mp.train_from_scratch:
        model = auto.from_config(config, **{k: v for k, v in kwargs.items() if k != "device_map"})
    else:
        model = auto.from_pretrained(
            mp.model_name_or_path, config=config, revision=mp.revision, cache_dir=mp.cache_dir, **kwargs
        )
    if (mp.resize_vocab or resize) and len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=64)
    if quant is not None:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    model.config.use_cache = False  # the KV cache only costs memory during training
    model = apply_finetuning(model, plan.finetune, adapters=mp.adapter_name_or_path,
                             is_quantized=quant is not None)
    if mp.upcast_layernorm:
        for name, p in model.named_parameters():
            if p.ndim == 1 and "norm" in name:
                p.data = p.data.float()
    return model


# -- fine-tuning methods -------------------------------------------------------

def find_all_linear_modules(model: torch.nn.Module) -> list[str]:
    """Leaf names of every linear layer except the output head (``lora_target: all``).

    Any class whose name contains "Linear" counts (bitsandbytes' Linear4bit/Linear8bitLt
    too), embeddings do not.
    """
    names: set[str] = set()
    for full_name, module in model.named_modules():
        cls = type(module).__name__
        if "Linear" not in cls or "Embedding" in cls:
            continue
        leaf = full_name.split(".")[-1]
        if leaf in _HEAD_NAMES or full_name in _HEAD_NAMES:
            continue
        names.add(leaf)
    return sorted(names)


def _hidden_layers(model: torch.nn.Module) -> tuple[str, int]:
    """(qualified name of the ModuleList of decoder layers, number of layers)."""
    config = getattr(model, "config", None)
    n = None
    for attr in ("num_hidden_layers", "num_layers", "n_layer"):
        n = getattr(config, attr, None)
        if n:
            break
    if not n:
        raise ConfigProblem("finetuning_type: freeze: this model does not say how many layers it has; "
                            "freeze tuning is not supported for it")
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n:
            return name, int(n)
    raise ConfigProblem("finetuning_type: freeze: cannot find the model's list of decoder layers")


def apply_freeze(model: torch.nn.Module, ft: FinetunePlan) -> list[str]:
    """Make only the chosen layers/modules trainable; returns the trainable parameter names."""
    prefix, n = _hidden_layers(model)
    k = ft.freeze_trainable_layers
    if k == 0:
        raise ConfigProblem("freeze_trainable_layers: must not be 0 (last n layers when > 0, first n when < 0)")
    ids = list(range(max(0, n - k), n)) if k > 0 else list(range(min(-k, n)))
    layer0 = f"{prefix}.0."
    available = sorted({name[len(layer0):].split(".")[0]
                        for name, _ in model.named_parameters() if name.startswith(layer0)})
    modules = list(ft.freeze_trainable_modules)
    if modules != ["all"]:
        for m in modules:
            if m not in available:
                raise ConfigProblem(f"freeze_trainable_modules: module {m!r} is not found, "
                                    f"choose from {', '.join(available)}")
    non_layer = sorted({name.split(".")[-2] for name, _ in model.named_parameters()
                        if not name.startswith(prefix + ".") and name.count(".") >= 1})
    for m in ft.freeze_extra_modules:
        if m not in non_layer:
            raise ConfigProblem(f"freeze_extra_modules: module {m!r} is not found, "
                                f"choose from {', '.join(non_layer)}")
    allowed_prefixes = []
    for i in ids:
        if modules == ["all"]:
            allowed_prefixes.append(f"{prefix}.{i}.")
        else:
            allowed_prefixes.extend(f"{prefix}.{i}.{m}." for m in modules)
    extra = set(ft.freeze_extra_modules)
    trainable: list[str] = []
    for name, p in model.named_parameters():
        on = name.startswith(tuple(allowed_prefixes)) or (
            not name.startswith(prefix + ".") and name.count(".") >= 1 and name.split(".")[-2] in extra
        )
        p.requires_grad_(on)
        if on:
            trainable.append(name)
    return trainable


def _lora_targets(model: torch.nn.Module, targets: Iterable[str]) -> list[str]:
    t = list(targets)
    if t == ["all"]:
        return find_all_linear_modules(model)
    return t


def apply_finetuning(model, ft: FinetunePlan, *, adapters: tuple[str, ...] = (), is_quantized: bool = False):
    """Set ``requires_grad`` for ``ft.finetuning_type``; for lora, returns the peft model."""
    if ft.finetuning_type == "full":
        for p in model.parameters():
            p.requires_grad_(True)
    elif ft.finetuning_type == "freeze":
        apply_freeze(model, ft)
    elif ft.finetuning_type == "lora":
        continuing = False
        if adapters:
            model, continuing = attach_adapters(model, adapters, ft)
        if not continuing:
            model = _apply_lora(model, ft)
    if not ft.pure_bf16:
        # LLaMA-Factory upcasts trainable parameters to fp32 (stable optimizer updates
        # under bf16/fp16 autocast); pure_bf16 keeps them in bf16 on purpose.
        for p in model.parameters():
            if p.requires_grad and p.dtype != torch.float32:
                p.data = p.data.float()
    return model


def _apply_lora(model, ft: FinetunePlan):
    from peft import LoraConfig, TaskType, get_peft_model

    task = TaskType.SEQ_CLS if ft.stage == "rm" else TaskType.CAUSAL_LM
    targets = _lora_targets(model, ft.lora_target)
    if not targets:
        raise ConfigProblem("lora_target: no linear layers found to adapt")
    config = LoraConfig(
        task_type=task,
        r=ft.lora_rank,
        lora_alpha=ft.lora_alpha,
        lora_dropout=ft.lora_dropout,
        target_modules=targets,
        use_rslora=ft.use_rslora,
        use_dora=ft.use_dora,
        modules_to_save=list(ft.additional_target) or None,
    )
    try:
        return get_peft_model(model, config)
    except ValueError as exc:
        raise ConfigProblem(f"lora_target: {exc}") from exc


def attach_adapters(model, adapter_paths: tuple[str, ...], ft: FinetunePlan):
    """Load existing adapters: all but the last are merged; the last keeps training
    unless ``create_new_adapter`` (then a fresh LoRA goes on top of the merged model).
    Returns ``(model, continuing)``."""
    from peft import PeftModel

    to_merge = list(adapter_paths[:-1]) if not ft.create_new_adapter else list(adapter_paths)
    for path in to_merge:
        model = PeftModel.from_pretrained(model, path).merge_and_unload()
    if ft.create_new_adapter:
        return model, False
    return PeftModel.from_pretrained(model, adapter_paths[-1], is_trainable=True), True


def trainable_summary(model: torch.nn.Module) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total
