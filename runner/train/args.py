"""From a config's values to what the trainer needs: a :class:`RunPlan`.

The schema (``tunedeck.runner.config.schema``) declares every key with a ``target``. Keys that
are fields of transformers' ``TrainingArguments`` (or of trl's config classes for the
preference stages) go to those classes as they are, including TrainingArguments keys
tunedeck does not declare (the validator reports them as "not checked"). Everything
else is read here into :class:`ModelPlan` / :class:`FinetunePlan`.

This module imports no torch, so it can be tested quickly; the trainer imports the
heavy parts itself.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tunedeck.runner.train.outcome import ConfigProblem

# LLaMA-Factory keys that are not TrainingArguments fields but that LF examples
# commonly carry; handled above or deliberately ignored with a note in the log.
IGNORED_TRAINING_KEYS = {"save_safetensors": "always on in transformers 5 (not a TrainingArguments field any more)"}


def split_list(value: Any) -> list[str]:
    """A comma string or a YAML list -> list of stripped non-empty strings."""
    if value is None:
        return []
    if isinstance(value, str):
        return [p.strip() for p in value.split(",") if p.strip()]
    if isinstance(value, Iterable):
        return [str(p).strip() for p in value if str(p).strip()]
    return [str(value)]


def tokens_seen_mode(value: Any) -> str:
    """``include_num_input_tokens_seen`` as transformers 5 takes it: ``no``, ``all`` or
    ``non_padding``. Unset counts real tokens (the throughput column needs them); a YAML
    ``no``/``false`` turns counting off, ``true`` means ``all`` as in transformers."""
    if value is None:
        return "non_padding"
    if isinstance(value, bool):
        return "all" if value else "no"
    text = str(value).strip().lower()
    if text in ("no", "false", "off", "0", "none"):
        return "no"
    if text in ("yes", "true", "on", "1", "all"):
        return "all"
    return text


def with_defaults(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` with old key names renamed and every default filled from the schema
    (:func:`tunedeck.runner.config.schema.apply_defaults`, the one table of defaults)."""
    from tunedeck.runner.config import schema

    out = dict(values)
    for key in list(out):
        new = schema.alias_target(key)
        if new and new not in out:
            out[new] = out.pop(key)
    out = schema.fill_null_defaults(schema.apply_defaults(out))
    if out.get("lora_alpha") in (None, 0):
        out["lora_alpha"] = int(out["lora_rank"]) * 2
    return out


@dataclass(frozen=True)
class ModelPlan:
    model_name_or_path: str
    adapter_name_or_path: tuple[str, ...] = ()
    cache_dir: str | None = None
    revision: str = "main"
    trust_remote_code: bool = False
    use_fast_tokenizer: bool = True
    resize_vocab: bool = False
    attn_implementation: str | None = None
    rope_scaling: str | None = None
    train_from_scratch: bool = False
    quantization_bit: int | None = None
    quantization_type: str = "nf4"
    double_quantization: bool = True
    upcast_layernorm: bool = False
    cutoff_len: int = 2048


@dataclass(frozen=True)
class FinetunePlan:
    stage: str = "sft"
    finetuning_type: str = "lora"
    pure_bf16: bool = False
    lora_rank: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    lora_target: tuple[str, ...] = ("all",)
    additional_target: tuple[str, ...] = ()
    use_rslora: bool = False
    use_dora: bool = False
    create_new_adapter: bool = False
    freeze_trainable_layers: int = 2
    freeze_trainable_modules: tuple[str, ...] = ("all",)
    freeze_extra_modules: tuple[str, ...] = ()
    use_badam: bool = False
    badam: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SwanlabPlan:
    project: str = "llamafactory"
    workspace: str | None = None
    run_name: str | None = None
    mode: str = "offline"
    api_key: str | None = None
    logdir: str | None = None


@dataclass(frozen=True)
class RunPlan:
    """Everything the trainer process needs, derived once from the config values."""

    values: Mapping[str, Any]
    model: ModelPlan
    finetune: FinetunePlan
    training: Mapping[str, Any]          # kwargs for TrainingArguments (or trl's config)
    output_dir: str
    resume: Any = None                   # None | "latest" | True | path
    overwrite_output_dir: bool = False
    plot_loss: bool = False
    swanlab: SwanlabPlan | None = None
    notes: tuple[str, ...] = ()          # decisions worth one log line each


def _flash_attn_to_impl(value: Any) -> str | None:
    v = str(value or "auto").lower()
    if v in ("auto", "none", ""):
        return None  # transformers picks sdpa when available
    if v in ("disabled", "eager", "false"):
        return "eager"
    if v == "sdpa":
        return "sdpa"
    if v in ("fa2", "flash_attention_2", "flashattn2"):
        if importlib.util.find_spec("flash_attn") is None:
            raise ConfigProblem(
                "flash_attn: fa2 needs the flash-attn package, which is not installed "
                "(pip install flash-attn --no-build-isolation), or use flash_attn: sdpa"
            )
        return "flash_attention_2"
    if v in ("fa3", "flash_attention_3"):
        if importlib.util.find_spec("flash_attn_interface") is None:
            raise ConfigProblem(
                "flash_attn: fa3 needs FlashAttention-3 (flash_attn_interface), which is not "
                "installed; use flash_attn: fa2 or sdpa"
            )
        return "flash_attention_3"
    raise ConfigProblem(f"flash_attn: unknown value {value!r} (use auto, disabled, sdpa, fa2 or fa3)")


def _require(module: str, key: str, install: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise ConfigProblem(f"{key} needs the {install} package, which is not installed (pip install {install})")


def _target_regex(targets: list[str]) -> list[str] | str:
    # GaLore/APOLLO take module-name patterns; "all" = every linear in attention and MLP.
    if not targets or targets == ["all"]:
        return [r".*(attn|attention|mlp|feed_forward).*"]
    return targets


def _low_rank_optimizer(v: Mapping[str, Any], training: dict[str, Any], notes: list[str],
                        method: str, label: str, extra: tuple[str, ...]) -> None:
    """GaLore / APOLLO (``method``): transformers' optimizer with its ``<method>_*`` keys as
    ``optim_args`` (rank, update_proj_gap, scale, then the ``extra`` keys in order)."""
    _require(f"{method}_torch", f"use_{method}", f"{method}-torch")
    training["optim"] = f"{method}_adamw_layerwise" if v.get(f"{method}_layerwise") else f"{method}_adamw"
    training["optim_target_modules"] = _target_regex(split_list(v.get(f"{method}_target")))
    training["optim_args"] = ",".join([
        f"rank={int(v[f'{method}_rank'])}",
        f"update_proj_gap={int(v[f'{method}_update_interval'])}",
        f"scale={float(v[f'{method}_scale'])}",
        *(f"{k}={v[f'{method}_{k}']}" for k in extra),
    ])
    notes.append(f"optimizer: {training['optim']} ({label} rank {v[f'{method}_rank']})")


def _optimizer_kwargs(v: Mapping[str, Any], training: dict[str, Any], notes: list[str]) -> None:
    chosen = [k for k in ("use_galore", "use_apollo", "use_badam") if v.get(k)]
    if len(chosen) > 1:
        raise ConfigProblem(f"{' and '.join(chosen)}: use at most one of GaLore, APOLLO and BAdam")
    if chosen and v.get("finetuning_type") == "lora":
        raise ConfigProblem(f"{chosen[0]}: cannot be combined with finetuning_type: lora")
    if v.get("use_galore"):
        _low_rank_optimizer(v, training, notes, "galore", "GaLore", ("proj_type",))
    if v.get("use_apollo"):
        _low_rank_optimizer(v, training, notes, "apollo", "APOLLO", ("proj", "proj_type", "scale_type"))
    if v.get("use_badam"):
        _require("badam", "use_badam", "badam")
        if v.get("badam_mode") != "layer":
            raise ConfigProblem("badam_mode: only 'layer' is supported by tunedeck")
        notes.append("optimizer: BAdam block-wise AdamW (layer mode)")


def _report_to(v: Mapping[str, Any], notes: list[str]) -> tuple[list[str] | str, bool]:
    """(report_to for TrainingArguments, whether swanlab was asked for through report_to)."""
    raw = split_list(v.get("report_to")) or ["none"]
    wants_swanlab = "swanlab" in raw
    if "all" in raw:
        from transformers.integrations import get_available_reporting_integrations

        raw = [r for r in get_available_reporting_integrations() if r != "swanlab"]
        wants_swanlab = False
    out: list[str] = []
    for r in raw:
        if r in ("none", "swanlab"):
            continue
        if r == "wandb":
            _require("wandb", "report_to: wandb", "wandb")
        elif r == "tensorboard" and (
            importlib.util.find_spec("tensorboard") is None and importlib.util.find_spec("tensorboardX") is None
        ):
            raise ConfigProblem(
                    "report_to: tensorboard needs the tensorboard package, which is not installed "
                    "(pip install tensorboard)"
                )
        out.append(r)
    if wants_swanlab:
        # transformers' built-in swanlab reporter crashes with swanlab 0.10; we use
        # swanlab's own callback instead (reference/training_stack.md section 3).
        notes.append("report_to: swanlab -> swanlab's transformers callback (use_swanlab)")
    return (out or "none"), wants_swanlab


def build_plan(values: Mapping[str, Any], *, training_fields: Iterable[str], cuda: bool) -> RunPlan:
    """Derive a :class:`RunPlan`. ``training_fields`` are the accepted TrainingArguments keys.

    Raises :class:`ConfigProblem` for a configuration this machine cannot run.
    """
    v = with_defaults(values)
    notes: list[str] = []
    stage, ftype = _check_supported(v, cuda, notes)
    training, resume = _training_kwargs(v, values, set(training_fields), stage, ftype, cuda, notes)
    report_to, swan_via_report = _report_to(v, notes)
    training["report_to"] = report_to
    _optimizer_kwargs(v, training, notes)
    swan = _swanlab_plan(v) if bool(v.get("use_swanlab")) or swan_via_report else None
    model = _model_plan(v)
    if (v.get("use_rslora") or v.get("use_dora")) and ftype != "lora":
        raise ConfigProblem("use_rslora / use_dora: only valid with finetuning_type: lora")
    if model.adapter_name_or_path and ftype != "lora":
        raise ConfigProblem("adapter_name_or_path: adapters are only valid with finetuning_type: lora")
    return RunPlan(
        values=v,
        model=model,
        finetune=_finetune_plan(v, stage, ftype),
        training=training,
        output_dir=str(v["output_dir"]),
        resume=resume,
        overwrite_output_dir=bool(v.get("overwrite_output_dir")),
        plot_loss=bool(v.get("plot_loss")),
        swanlab=swan,
        notes=tuple(notes),
    )


def _check_supported(v: Mapping[str, Any], cuda: bool, notes: list[str]) -> tuple[str, str]:
    """Refuse what tunedeck or this machine cannot run; return (stage, finetuning_type)."""
    if not v.get("model_name_or_path"):
        raise ConfigProblem("model_name_or_path: required (a local directory or a hub id)")
    if not v.get("output_dir"):
        raise ConfigProblem("output_dir: required")
    stage = str(v["stage"])
    if stage == "ppo":
        raise ConfigProblem("stage: ppo is not supported by tunedeck yet (use sft, pt, dpo, kto or rm)")
    if stage not in ("sft", "pt", "dpo", "kto", "rm"):
        raise ConfigProblem(f"stage: unknown stage {stage!r} (use sft, pt, dpo, kto or rm)")
    ftype = str(v["finetuning_type"])
    if ftype not in ("lora", "freeze", "full"):
        raise ConfigProblem(f"finetuning_type: {ftype!r} is not supported (use lora, freeze or full)")
    if v.get("use_unsloth"):
        raise ConfigProblem("use_unsloth: Unsloth is not supported by tunedeck; remove the key")
    if v.get("pissa_init"):
        raise ConfigProblem("pissa_init: PiSSA initialisation is not supported by tunedeck yet")
    if v.get("quantization_bit") is not None:
        bit = int(v["quantization_bit"])
        if v.get("quantization_method", "bnb") != "bnb":
            raise ConfigProblem("quantization_method: only bnb (bitsandbytes) is supported by tunedeck")
        if bit not in (4, 8):
            raise ConfigProblem(f"quantization_bit: bitsandbytes takes 4 or 8, not {bit}")
        if ftype != "lora":
            raise ConfigProblem("quantization_bit: quantization is only compatible with finetuning_type: lora")
        if not cuda:
            raise ConfigProblem("quantization_bit: bitsandbytes quantization needs a CUDA GPU; this machine has none")
        _require("bitsandbytes", "quantization_bit", "bitsandbytes")
    if v.get("enable_liger_kernel"):
        _require("liger_kernel", "enable_liger_kernel", "liger-kernel")
    if v.get("pure_bf16") and not cuda:
        notes.append("pure_bf16 on CPU: bf16 weights without autocast (slow on most CPUs)")
    return stage, ftype


def _training_kwargs(v: Mapping[str, Any], values: Mapping[str, Any], fields: set[str], stage: str,
                     ftype: str, cuda: bool, notes: list[str]) -> tuple[dict[str, Any], Any]:
    """(TrainingArguments kwargs without report_to and the optimizer, resume_from_checkpoint).

    ``v`` is the config with defaults, ``values`` as written (what the user set explicitly)."""
    training: dict[str, Any] = {}
    for key, value in v.items():
        if key in fields:
            training[key] = value
        elif key in IGNORED_TRAINING_KEYS:
            notes.append(f"{key}: ignored, {IGNORED_TRAINING_KEYS[key]}")
    resume = training.pop("resume_from_checkpoint", None)
    if isinstance(resume, str) and resume.strip().lower() in ("", "none", "null", "false"):
        resume = None
    if resume is False:
        resume = None

    training["output_dir"] = str(v["output_dir"])
    if "label_names" not in values and stage in ("sft", "pt"):
        training["label_names"] = ["labels"]
    training["include_num_input_tokens_seen"] = tokens_seen_mode(v.get("include_num_input_tokens_seen"))
    if v.get("disable_gradient_checkpointing"):
        training["gradient_checkpointing"] = False
    if training.get("gradient_checkpointing") and "gradient_checkpointing_kwargs" not in values:
        # LLaMA-Factory's flavour: re-entrant unless use_reentrant_gc is false.
        reentrant = v.get("use_reentrant_gc")
        training["gradient_checkpointing_kwargs"] = {"use_reentrant": True if reentrant is None else bool(reentrant)}
    if v.get("enable_liger_kernel"):
        training["use_liger_kernel"] = True
    if v.get("pure_bf16"):
        # The weights are bf16 already: no autocast, no fp32 master copy.
        training["bf16"] = False
        training["fp16"] = False
    if not cuda and "use_cpu" not in values:
        # Without use_cpu, `accelerate launch --multi_gpu` on a GPU-less box runs N
        # independent single-process trainings into the same output_dir.
        training["use_cpu"] = True
    if ftype == "lora" and training.get("ddp_find_unused_parameters") is None:
        training["ddp_find_unused_parameters"] = False
    return training, resume


def _swanlab_plan(v: Mapping[str, Any]) -> SwanlabPlan:
    _require("swanlab", "use_swanlab", "swanlab")
    return SwanlabPlan(
        project=str(v.get("swanlab_project") or "llamafactory"),
        workspace=v.get("swanlab_workspace"),
        run_name=v.get("swanlab_run_name") or v.get("run_name"),
        mode=str(v.get("swanlab_mode") or "cloud"),
        api_key=v.get("swanlab_api_key"),
        logdir=v.get("swanlab_logdir"),
    )


def _model_plan(v: Mapping[str, Any]) -> ModelPlan:
    return ModelPlan(
        model_name_or_path=str(v["model_name_or_path"]),
        adapter_name_or_path=tuple(split_list(v.get("adapter_name_or_path"))),
        cache_dir=v.get("cache_dir"),
        revision=str(v.get("model_revision") or "main"),
        trust_remote_code=bool(v.get("trust_remote_code")),
        use_fast_tokenizer=bool(v.get("use_fast_tokenizer", True)),
        resize_vocab=bool(v.get("resize_vocab")),
        attn_implementation=_flash_attn_to_impl(v.get("flash_attn")),
        rope_scaling=v.get("rope_scaling"),
        train_from_scratch=bool(v.get("train_from_scratch")),
        quantization_bit=int(v["quantization_bit"]) if v.get("quantization_bit") is not None else None,
        quantization_type=str(v.get("quantization_type") or "nf4"),
        double_quantization=bool(v.get("double_quantization", True)),
        upcast_layernorm=bool(v.get("upcast_layernorm")),
        cutoff_len=int(v.get("cutoff_len") or 2048),
    )


def _finetune_plan(v: Mapping[str, Any], stage: str, ftype: str) -> FinetunePlan:
    return FinetunePlan(
        stage=stage,
        finetuning_type=ftype,
        pure_bf16=bool(v.get("pure_bf16")),
        lora_rank=int(v["lora_rank"]),
        lora_alpha=int(v["lora_alpha"]),
        lora_dropout=float(v["lora_dropout"]),
        lora_target=tuple(split_list(v.get("lora_target")) or ["all"]),
        additional_target=tuple(split_list(v.get("additional_target"))),
        use_rslora=bool(v.get("use_rslora")),
        use_dora=bool(v.get("use_dora")),
        create_new_adapter=bool(v.get("create_new_adapter")),
        freeze_trainable_layers=int(v["freeze_trainable_layers"]),
        freeze_trainable_modules=tuple(split_list(v.get("freeze_trainable_modules")) or ["all"]),
        freeze_extra_modules=tuple(split_list(v.get("freeze_extra_modules"))),
        use_badam=bool(v.get("use_badam")),
        badam={k: v[k] for k in v if k.startswith("badam_")},
    )
