"""The guide's hardware presets (§10.1) and memory-optimisation levels (§9.3), as data.

A preset's ``values`` and a level's ``patch`` are plain ``{key: value}`` mappings
that can be applied with :meth:`tunedeck.runner.config.yamlio.ConfigDoc.apply` (a value of
``None`` removes the key). DeepSpeed files are referenced by the absolute path of
the copies shipped in ``sample_configs/launch/``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from tunedeck import sample_configs


def launch_file(name: str) -> str:
    """Absolute path of a shipped DeepSpeed/accelerate file, e.g. ``ds_z3_config.json``."""
    return str(sample_configs.path(f"launch/{name}"))


@dataclass(frozen=True)
class Preset:
    name: str
    title: str
    gpu_mem_gib: float        # memory of one card
    num_gpus: int
    values: MappingProxyType[str, Any]
    sample_config: str | None = None   # the matching file in sample_configs/
    note: str = ""


@dataclass(frozen=True)
class Level:
    number: int
    title: str
    patch: MappingProxyType[str, Any]
    note: str = ""
    cost: str = ""            # what it costs in speed or quality
    omitted: dict[str, Any] = field(default_factory=dict)  # guide keys left out of the patch, and why


def _ro(d: dict[str, Any]) -> MappingProxyType[str, Any]:
    return MappingProxyType(dict(d))


def _preset(name: str, title: str, gpu_mem_gib: float, num_gpus: int, finetuning_type: str, *,
            batch: int, accumulation: int, cutoff_len: int, more: dict[str, Any], note: str) -> Preset:
    """A row of §10.1: SFT with the guide's batch size, accumulation and sequence length for that
    hardware, then the row's other keys (``more``); its sample config is ``sample_configs/NAME.yaml``."""
    values = {"stage": "sft", "finetuning_type": finetuning_type, "per_device_train_batch_size": batch,
              "gradient_accumulation_steps": accumulation, "cutoff_len": cutoff_len, **more}
    return Preset(name=name, title=title, gpu_mem_gib=gpu_mem_gib, num_gpus=num_gpus, values=_ro(values),
                  sample_config=f"{name}.yaml", note=note)


HARDWARE_PRESETS: dict[str, Preset] = {p.name: p for p in (
    _preset(
        "single_24gb", "One 24 GB card (RTX 3090/4090): LoRA on a 7B model", 24, 1, "lora",
        batch=1, accumulation=8, cutoff_len=2048,
        more={"enable_liger_kernel": True, "flash_attn": "fa2", "lora_rank": 16, "lora_alpha": 32,
              "lora_target": "all", "learning_rate": 5e-5, "num_train_epochs": 3,
              "lr_scheduler_type": "cosine", "warmup_steps": 100},
        note="Batch 1 with 8-step accumulation keeps activations small; move to QLoRA if it still does not fit.",
    ),
    _preset(
        "dual_48gb", "Two 48 GB cards (A6000 class): LoRA with longer sequences", 48, 2, "lora",
        batch=2, accumulation=8, cutoff_len=4096,
        more={"lora_rank": 32, "lora_alpha": 64, "ddp_find_unused_parameters": False,
              "dataloader_num_workers": 8},
        note="Data parallel: each card holds the whole 7B model plus its own batch.",
    ),
    _preset(
        "multi_80gb_lora", "Several 80 GB cards (A100/H100): LoRA at 8K context with a high rank", 80, 8,
        "lora", batch=4, accumulation=4, cutoff_len=8192,
        more={"lora_rank": 64, "lora_alpha": 128, "use_rslora": True},
        note="Rank 64 uses rank-stabilised scaling (use_rslora) to stay stable.",
    ),
    _preset(
        "multi_80gb_full", "Several 80 GB cards (A100/H100): full fine-tuning with ZeRO-3", 80, 8, "full",
        batch=4, accumulation=4, cutoff_len=8192,
        more={"learning_rate": 1e-5, "bf16": True, "pure_bf16": False,
              "deepspeed": launch_file("ds_z3_config.json")},
        note="The guide lists only the batch, length and learning rate; full fine-tuning of a 7B model "
             "needs its states sharded, so tunedeck adds DeepSpeed ZeRO-3 (pure_bf16 is off: ZeRO-3 rejects it).",
    ),
)}


OPTIMIZATION_LEVELS: list[Level] = [
    Level(
        number=1,
        title="Level 1: free wins (no loss of quality)",
        patch=_ro({
            "flash_attn": "fa2",
            "enable_liger_kernel": True,
            "bf16": True,
            "pure_bf16": True,
            "dataloader_num_workers": 4,
            "dataloader_pin_memory": True,
        }),
        note="Efficient attention, fused kernels and bf16 weights; faster and smaller at once.",
        cost="none (needs an Ampere or newer GPU for bf16 and FlashAttention-2)",
    ),
    Level(
        number=2,
        title="Level 2: smaller micro-batches and gradient checkpointing",
        patch=_ro({
            "per_device_train_batch_size": 1,
            "gradient_accumulation_steps": 16,
            "gradient_checkpointing": True,
        }),
        note="Fewer activations held at once; accumulation keeps the effective batch size. "
             "Scale gradient_accumulation_steps so batch x accumulation stays what it was.",
        cost="about 20-30% slower steps (activations are recomputed)",
        omitted={"optim_target_modules": "the guide lists [gate_proj, up_proj], but the key only acts with "
                 "GaLore/APOLLO optimizers, so it is not part of the patch"},
    ),
    Level(
        number=3,
        title="Level 3: 4-bit QLoRA",
        patch=_ro({
            "quantization_bit": 4,
            "quantization_type": "nf4",
            "double_quantization": True,
            "finetuning_type": "lora",
            "lora_rank": 16,
        }),
        note="The frozen base weights shrink to about half a byte per parameter.",
        cost="slightly lower quality and slower steps (dequantisation); needs a CUDA GPU",
    ),
    Level(
        number=4,
        title="Level 4: DeepSpeed ZeRO-3 with CPU offload",
        patch=_ro({
            "deepspeed": launch_file("ds_z3_offload_config.json"),
            "pure_bf16": False,
        }),
        note="Parameters, gradients and optimizer states are sharded across GPUs and moved to CPU memory. "
             "The guide writes the offload inline with the retired cpu_offload keys; the shipped file uses "
             "DeepSpeed's current offload_optimizer/offload_param. pure_bf16 is switched off because ZeRO-3 rejects it.",
        cost="much slower (PCIe traffic); needs plenty of host RAM",
    ),
]


def get_preset(name: str) -> Preset | None:
    return HARDWARE_PRESETS.get(name)


def get_level(number: int) -> Level | None:
    return next((lv for lv in OPTIMIZATION_LEVELS if lv.number == number), None)
