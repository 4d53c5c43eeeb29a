"""The one declaration of every parameter tunedeck knows.

Form panes, the validator, ``tunedeck validate``, ``tunedeck schema --markdown``
and the runner's argument mapping all read :data:`PARAMS`. Never hand-write a
form field or a check for something declared here.

Sources: the guide (``guide`` = its section number; its table defaults win),
LLaMA-Factory's argument classes (where its default differs from the guide's the
help says so), transformers' ``TrainingArguments`` keys that LLaMA-Factory's
examples use, the environment variables the guide lists (``target="env"``) and
tunedeck's own keys (``target="tunedeck"``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from tunedeck.runner.errors import ConfigError

ParamType = Literal["bool", "int", "float", "str", "enum", "list", "json", "path", "number"]
# list   = comma-list string or YAML list (dataset, lora_target, ...); ``choices`` then
#          constrains each item
# json   = nested mapping/list, or a string holding JSON or naming a JSON file
# path   = str that names a file or directory (checked for existence where it matters)
# number = int or float accepted (val_size: fraction or count)

# Where a parameter goes at run time.
Target = Literal["model", "data", "finetuning", "training", "generating", "eval", "env", "tunedeck"]


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


@dataclass(frozen=True)
class Group:
    id: str
    title: str
    description: str = ""


@dataclass(frozen=True)
class Param:
    name: str
    group: str                     # Group.id: the form pane
    type: ParamType
    default: Any = None
    help: str = ""                 # one line
    choices: tuple[Any, ...] | None = None
    min: float | None = None       # inclusive bounds
    max: float | None = None
    min_exclusive: bool = False
    advice: str | None = None      # the guide's production advice, in our words
    recommended: Any = UNSET       # value the advice recommends (for advice findings)
    guide: str | None = None       # guide section, e.g. "1.2"
    target: Target = "training"
    secret: bool = False           # redacted everywhere it could be shown or written
    checked: bool = True           # False: a TrainingArguments pass-through tunedeck does not check
    required: bool = False
    aliases: tuple[str, ...] = field(default_factory=tuple)
    # -- checks beyond the type ------------------------------------------------------
    nullable: bool | None = None   # None: null is accepted exactly when the default is None
    max_exclusive: bool = False
    alt_types: tuple[ParamType, ...] = ()  # other accepted shapes (resume_from_checkpoint: bool)
    lf_default: Any = UNSET        # LLaMA-Factory/transformers default where the guide differs

    @property
    def accepts_null(self) -> bool:
        return self.default is None if self.nullable is None else self.nullable

    @property
    def allowed(self) -> str:
        """Human description of the allowed values (for docs and messages)."""
        if self.choices:
            return " | ".join(_fmt(c) for c in self.choices)
        lo = hi = ""
        if self.min is not None:
            lo = f"{'>' if self.min_exclusive else '>='} {_fmt(self.min)}"
        if self.max is not None:
            hi = f"{'<' if self.max_exclusive else '<='} {_fmt(self.max)}"
        return ", ".join(s for s in (lo, hi) if s)


def _fmt(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        return repr(v)
    return str(v)


GROUPS: tuple[Group, ...] = (
    Group("method", "Method", "Training stage, fine-tuning method and global switches (guide §1.1)."),
    Group("lora", "LoRA / OFT / Freeze", "Adapter and partial-freeze settings (guide §1.2)."),
    Group("rlhf", "RLHF", "Preference training: DPO, KTO, reward and reference models (guide §1.3)."),
    Group("optimizers", "GaLore / BAdam / APOLLO", "Memory-saving optimizers for full-parameter runs (guide §1.4)."),
    Group("data", "Data", "Datasets, templates, sequence length, mixing, packing (guide §2)."),
    Group("model", "Model", "Model and tokenizer loading, hub access, multimodal inputs (guide §3.1)."),
    Group("quantization", "Quantization", "On-the-fly quantization for QLoRA (guide §3.2)."),
    Group("performance", "Performance", "Attention kernels, fused kernels, precision, checkpointing (guide §3.3, §9.3)."),
    Group("training", "Training", "Hyperparameters, optimizer, schedule, checkpoints (guide §4.1, §4.2, §10.3)."),
    Group("distributed", "Distributed", "DeepSpeed, FSDP, DDP and Ray (guide §4.3)."),
    Group("evaluation", "Evaluation", "Evaluation during training and benchmark evaluation (guide §6)."),
    Group("generation", "Generation", "Decoding settings for prediction and chat (guide §5)."),
    Group("monitoring", "Monitoring", "Logging, loss plots, SwanLab, W&B and other trackers (guide §7, §10.3)."),
    Group("inference", "Export / inference", "Model export and inference back-ends such as vLLM (guide §10.4)."),
    Group("env", "Environment", "Environment variables set for the run (guide §8)."),
)


# ----------------------------------------------------------------------------
# Fixed vocabularies
# ----------------------------------------------------------------------------
STAGES = ("pt", "sft", "rm", "ppo", "dpo", "kto")
FINETUNING_TYPES = ("lora", "oft", "freeze", "full")
OPTIMIZERS = (
    "adamw_torch", "adamw_torch_fused", "adamw_torch_xla", "adamw_torch_npu_fused", "adafactor",
    "adamw_anyprecision", "adamw_torch_4bit", "adamw_torch_8bit", "ademamix", "sgd", "adagrad",
    "adamw_bnb_8bit", "adamw_8bit", "ademamix_8bit", "lion_8bit", "lion_32bit", "paged_adamw_32bit",
    "paged_adamw_8bit", "paged_ademamix_32bit", "paged_ademamix_8bit", "paged_lion_32bit",
    "paged_lion_8bit", "rmsprop", "rmsprop_bnb", "rmsprop_bnb_8bit", "rmsprop_bnb_32bit",
    "galore_adamw", "galore_adamw_8bit", "galore_adafactor", "galore_adamw_layerwise",
    "galore_adamw_8bit_layerwise", "galore_adafactor_layerwise", "lomo", "adalomo", "grokadamw",
    "schedule_free_radam", "schedule_free_adamw", "schedule_free_sgd", "apollo_adamw",
    "apollo_adamw_layerwise", "stable_adamw",
)  # transformers 5 OptimizerNames
SCHEDULERS = (
    "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
    "inverse_sqrt", "reduce_lr_on_plateau", "cosine_with_min_lr", "cosine_warmup_with_min_lr",
    "warmup_stable_decay", "greedy",
)  # transformers 5 SchedulerType
REPORT_TO = (
    "none", "all", "azure_ml", "comet_ml", "mlflow", "neptune", "tensorboard", "trackio", "wandb",
    "codecarbon", "clearml", "dagshub", "flyte", "dvclive", "swanlab", "kubeflow",
)
INTERVALS = ("no", "steps", "epoch")
FSDP_OPTIONS = ("full_shard", "shard_grad_op", "no_shard", "hybrid_shard", "hybrid_shard_zero2",
                "offload", "auto_wrap")


# ----------------------------------------------------------------------------
# The declaration
# ----------------------------------------------------------------------------
def _declare() -> list[Param]:  # noqa: C901 - one long table, read top to bottom
    out: list[Param] = []

    def p(name: str, group: str, type: ParamType, default: Any = None, help: str = "", *,
          target: Target, **kw: Any) -> None:
        out.append(Param(name=name, group=group, type=type, default=default, help=help,
                         target=target, **kw))

    # -- method (FinetuningArguments, guide §1.1) ------------------------------
    F: Target = "finetuning"
    p("stage", "method", "enum", "sft", "Training stage: pt pre-training, sft supervised, rm reward model, ppo, dpo, kto.",
      target=F, choices=STAGES, guide="1.1", advice="Pick the stage from the task: sft for instruction/chat data, dpo or kto for preference pairs, pt for raw text.")
    p("finetuning_type", "method", "enum", "lora", "Fine-tuning method: lora adapters, oft, freeze (train the last layers) or full.",
      target=F, choices=FINETUNING_TYPES, guide="1.1", advice="Prefer lora: it fits on far smaller GPUs and is rarely worse than full fine-tuning for instruction data.", recommended="lora")
    p("pure_bf16", "method", "bool", False, "Train in bf16 end to end, without AMP and without upcasting trainable weights to fp32.",
      target=F, guide="1.1", advice="Turn it on where the GPU supports bf16: less memory and faster steps (not with DeepSpeed ZeRO-3).", recommended=True)
    p("plot_loss", "method", "bool", False, "Save training_loss.png (and the eval loss plot) in output_dir at the end.",
      target=F, guide="1.1", advice="Keep it on in production so every run leaves a loss curve to compare.", recommended=True)
    p("compute_accuracy", "method", "bool", False, "Compute token-level accuracy during evaluation.", target=F, guide="1.1",
      advice="Useful on held-out data for SFT; cannot be combined with predict_with_generate.")
    p("use_llama_pro", "method", "bool", False, "LLaMA Pro: train only the expanded blocks (Freeze or LoRA only).", target=F)
    p("use_adam_mini", "method", "bool", False, "Use the Adam-mini optimizer (needs the adam-mini package).", target=F)
    p("use_muon", "method", "bool", False, "Use the Muon optimizer.", target=F)
    p("use_dft_loss", "method", "bool", False, "Use the DFT (dynamic fine-tuning) loss.", target=F)
    p("use_asft_loss", "method", "bool", False, "Use the ASFT loss.", target=F)
    p("asft_alpha", "method", "float", 0.1, "Weight of the ASFT loss term.", target=F, min=0)
    p("use_eaft_loss", "method", "bool", False, "Use the EAFT loss.", target=F)
    p("eaft_alpha", "method", "float", 1.0, "Weight of the EAFT loss term.", target=F, min=0)
    p("disable_shuffling", "method", "bool", False, "Do not shuffle the training set.", target=F)
    p("early_stopping_steps", "method", "int", None, "Stop when metric_for_best_model has not improved for this many evaluations.", target=F, min=1)
    p("include_effective_tokens_per_second", "method", "bool", False, "Report effective (non-padding) tokens per second.", target=F)
    p("use_mca", "method", "bool", False, "Megatron Core Adapter training (switched by the USE_MCA environment variable).", target=F)
    p("freeze_vision_tower", "method", "bool", True, "Freeze the vision tower when training a multimodal model.", target=F)
    p("freeze_multi_modal_projector", "method", "bool", True, "Freeze the multimodal projector when training a multimodal model.", target=F)
    p("freeze_language_model", "method", "bool", False, "Freeze the language model when training a multimodal model.", target=F)

    # -- LoRA / OFT / Freeze (guide §1.2) --------------------------------------
    p("lora_rank", "lora", "int", 8, "Rank of the LoRA update matrices; higher means more capacity and more memory.",
      target=F, min=1, guide="1.2", advice="Use 8-32 for most tasks (16 is a good start); 64 with use_rslora when memory allows.")
    p("lora_alpha", "lora", "int", None, "LoRA scaling factor; unset means 2 x lora_rank.", target=F, min=1, guide="1.2",
      advice="Keep it at twice lora_rank (16 -> 32, 32 -> 64).")
    p("lora_dropout", "lora", "float", 0.0, "Dropout on the LoRA branch.", target=F, min=0, max=1, max_exclusive=True, guide="1.2",
      advice="0 to 0.1; raise it only when a small dataset overfits.")
    p("lora_target", "lora", "list", "all", "Modules that get LoRA: all (every linear layer) or a comma list such as q_proj,v_proj.",
      target=F, guide="1.2", advice="all: adapting every linear layer is the robust default.", recommended="all")
    p("use_rslora", "lora", "bool", False, "Rank-stabilised LoRA scaling (alpha / sqrt(rank)).", target=F, guide="1.2",
      advice="Turn it on for large ranks (64 and up) to keep training stable.")
    p("use_dora", "lora", "bool", False, "Weight-decomposed LoRA (DoRA): more expressive, slower.", target=F, guide="1.2",
      advice="Consider it for hard tasks when plain LoRA plateaus.")
    p("additional_target", "lora", "list", None, "Extra modules (besides the adapters) to train and save, e.g. embed_tokens,lm_head.", target=F)
    p("loraplus_lr_ratio", "lora", "float", None, "LoRA+: learning-rate ratio lr_B / lr_A (LoRA only).", target=F, min=0, min_exclusive=True)
    p("loraplus_lr_embedding", "lora", "float", 1e-6, "LoRA+: learning rate of LoRA embedding layers.", target=F, min=0)
    p("pissa_init", "lora", "bool", False, "Initialise the adapter with PiSSA (LoRA only).", target=F)
    p("pissa_iter", "lora", "int", 16, "FSVD iterations for PiSSA; -1 disables FSVD.", target=F, min=-1)
    p("pissa_convert", "lora", "bool", False, "Convert the PiSSA adapter to a plain LoRA adapter when saving.", target=F)
    p("create_new_adapter", "lora", "bool", False, "Create a new randomly initialised adapter on top of adapter_name_or_path.", target=F)
    p("oft_rank", "lora", "int", 0, "OFT rank (0: use oft_block_size).", target=F, min=0)
    p("oft_block_size", "lora", "int", 32, "OFT block size.", target=F, min=1)
    p("oft_target", "lora", "list", "all", "Modules that get OFT: all or a comma list.", target=F)
    p("module_dropout", "lora", "float", 0.0, "Dropout for OFT modules.", target=F, min=0, max=1, max_exclusive=True)
    p("freeze_trainable_layers", "lora", "int", 2, "Freeze: train the last n layers (positive) or the first n (negative).", target=F)
    p("freeze_trainable_modules", "lora", "list", "all", "Freeze: modules inside the trainable layers to train (all or a comma list).", target=F)
    p("freeze_extra_modules", "lora", "list", None, "Freeze: extra modules outside the hidden layers to train.", target=F)

    # -- RLHF (guide §1.3) -----------------------------------------------------
    p("pref_beta", "rlhf", "float", 0.1, "Beta of the preference loss (strength of the pull towards the reference model).",
      target=F, min=0, min_exclusive=True, guide="1.3", advice="0.1 to 0.5; start at 0.1.")
    p("pref_loss", "rlhf", "enum", "sigmoid", "Preference loss: sigmoid (DPO), hinge, ipo, kto_pair, orpo, simpo.",
      target=F, choices=("sigmoid", "hinge", "ipo", "kto_pair", "orpo", "simpo"), guide="1.3", advice="sigmoid, the standard DPO loss.", recommended="sigmoid")
    p("dpo_label_smoothing", "rlhf", "float", 0.0, "cDPO label smoothing for noisy preference labels (sigmoid loss only).",
      target=F, min=0, max=0.5, guide="1.3", advice="0 to 0.1 when some preference labels are likely wrong.")
    p("pref_ftx", "rlhf", "float", 0.0, "Weight of an added SFT loss in DPO training.", target=F, min=0)
    p("pref_bco_weight", "rlhf", "float", 0.0, "Binary Classifier Optimization weight in DPO training.", target=F, min=0)
    p("simpo_gamma", "rlhf", "float", 0.5, "Target reward margin of the SimPO loss.", target=F)
    p("ld_alpha", "rlhf", "float", None, "LD-DPO alpha: weight of the verbose part of long responses.", target=F, min=0, max=1)
    p("kto_chosen_weight", "rlhf", "float", 1.0, "KTO weight of desirable examples.", target=F, min=0)
    p("kto_rejected_weight", "rlhf", "float", 1.0, "KTO weight of undesirable examples.", target=F, min=0)
    p("ppo_buffer_size", "rlhf", "int", 1, "PPO: mini-batches per experience buffer (PPO is not run by tunedeck yet).", target=F, min=1)
    p("ppo_epochs", "rlhf", "int", 4, "PPO: epochs per optimisation step (PPO is not run by tunedeck yet).", target=F, min=1)
    p("ppo_score_norm", "rlhf", "bool", False, "PPO: normalise scores.", target=F)
    p("ppo_target", "rlhf", "float", 6.0, "PPO: target KL for adaptive KL control.", target=F)
    p("ppo_whiten_rewards", "rlhf", "bool", False, "PPO: whiten rewards before computing advantages.", target=F)
    p("ref_model", "rlhf", "path", None, "Reference model for DPO/PPO (default: the model being trained, frozen).", target=F)
    p("ref_model_adapters", "rlhf", "path", None, "Adapters of the reference model.", target=F)
    p("ref_model_quantization_bit", "rlhf", "int", None, "Quantize the reference model to 4 or 8 bits.", target=F, choices=(4, 8))
    p("reward_model", "rlhf", "path", None, "Reward model for PPO.", target=F)
    p("reward_model_adapters", "rlhf", "path", None, "Adapters of the reward model.", target=F)
    p("reward_model_quantization_bit", "rlhf", "int", None, "Quantize the reward model to 4 or 8 bits.", target=F, choices=(4, 8))
    p("reward_model_type", "rlhf", "enum", "lora", "Reward model kind for PPO: lora, full or api.", target=F, choices=("lora", "full", "api"))

    # -- GaLore / APOLLO / BAdam (guide §1.4) ----------------------------------
    p("use_galore", "optimizers", "bool", False, "GaLore: project gradients to low rank to save optimizer memory in full fine-tuning.",
      target=F, guide="1.4", advice="For full-parameter training on limited memory; not with LoRA and not under DeepSpeed.")
    p("galore_target", "optimizers", "list", "all", "Modules GaLore applies to: all linear layers or a comma list.", target=F, guide="1.4")
    p("galore_rank", "optimizers", "int", 16, "Rank of the GaLore gradient projection.", target=F, min=1, guide="1.4", advice="16 in the guide's example.")
    p("galore_update_interval", "optimizers", "int", 200, "Steps between GaLore projection updates.", target=F, min=1, guide="1.4", advice="200 in the guide's example.")
    p("galore_scale", "optimizers", "float", 2.0, "GaLore scaling coefficient.", target=F, min=0, min_exclusive=True, guide="1.4",
      advice="The guide's example uses 0.25 (LLaMA-Factory's default is 2.0).")
    p("galore_proj_type", "optimizers", "enum", "std", "GaLore projection type.", target=F, choices=("std", "reverse_std", "right", "left", "full"), guide="1.4")
    p("galore_layerwise", "optimizers", "bool", False, "Layer-wise GaLore updates (saves more memory; single GPU only).", target=F, guide="1.4")
    p("use_badam", "optimizers", "bool", False, "BAdam: update one block of layers at a time to fit full fine-tuning in less memory.",
      target=F, guide="1.4", advice="For full-parameter training on one GPU; multi-GPU BAdam needs layer mode and ZeRO-3.")
    p("badam_mode", "optimizers", "enum", "layer", "BAdam mode: layer-wise or ratio-wise.", target=F, choices=("layer", "ratio"), guide="1.4")
    p("badam_start_block", "optimizers", "int", None, "First block index for layer-wise BAdam.", target=F, min=0, guide="1.4")
    p("badam_switch_mode", "optimizers", "enum", "ascending", "How layer-wise BAdam picks the next block.", target=F,
      choices=("ascending", "descending", "random", "fixed"), nullable=True, guide="1.4")
    p("badam_switch_interval", "optimizers", "int", 50, "Steps between block switches; -1 never switches.", target=F, min=-1, nullable=True, guide="1.4",
      advice="50 in the guide's example.")
    p("badam_update_ratio", "optimizers", "float", 0.05, "Fraction of parameters updated by ratio-wise BAdam.", target=F, min=0, max=1, min_exclusive=True, guide="1.4")
    p("badam_mask_mode", "optimizers", "enum", "adjacent", "Ratio-wise BAdam mask: adjacent or scatter.", target=F, choices=("adjacent", "scatter"), guide="1.4")
    p("badam_verbose", "optimizers", "int", 0, "BAdam verbosity: 0 quiet, 1 block names, 2 trainable parameters.", target=F, choices=(0, 1, 2), guide="1.4")
    p("use_apollo", "optimizers", "bool", False, "APOLLO: SGD-like memory with AdamW-level results for full fine-tuning.",
      target=F, guide="1.4", advice="For full-parameter training on limited memory; not with LoRA and not under DeepSpeed.")
    p("apollo_target", "optimizers", "list", "all", "Modules APOLLO applies to.", target=F, guide="1.4")
    p("apollo_rank", "optimizers", "int", 16, "Rank of the APOLLO projection.", target=F, min=1, guide="1.4", advice="16 in the guide's example.")
    p("apollo_update_interval", "optimizers", "int", 200, "Steps between APOLLO projection updates.", target=F, min=1, guide="1.4", advice="200 in the guide's example.")
    p("apollo_scale", "optimizers", "float", 32.0, "APOLLO scaling coefficient.", target=F, min=0, min_exclusive=True, guide="1.4")
    p("apollo_proj", "optimizers", "enum", "random", "APOLLO projection algorithm.", target=F, choices=("svd", "random"), guide="1.4")
    p("apollo_proj_type", "optimizers", "enum", "std", "APOLLO projection type.", target=F, choices=("std", "right", "left"), guide="1.4")
    p("apollo_scale_type", "optimizers", "enum", "channel", "APOLLO scaling granularity.", target=F, choices=("channel", "tensor"), guide="1.4")
    p("apollo_layerwise", "optimizers", "bool", False, "Layer-wise APOLLO updates (single GPU only).", target=F, guide="1.4")
    p("apollo_scale_front", "optimizers", "bool", False, "Apply the norm-growth limiter before gradient scaling.", target=F, guide="1.4")

    # -- data (DataArguments, guide §2) ----------------------------------------
    D: Target = "data"
    p("dataset", "data", "list", None, "Training dataset names from dataset_info.json, comma separated.", target=D, guide="2.1",
      advice="Required for training; several datasets can be mixed with mix_strategy.")
    p("eval_dataset", "data", "list", None, "Evaluation dataset names, comma separated (excludes val_size).", target=D)
    p("template", "data", "str", None, "Chat template that formats prompts, e.g. qwen, llama3, default; unset uses the tokenizer's chat template.",
      target=D, guide="2.1", advice="Use the template that matches the model family (qwen for Qwen, llama3 for Llama 3 ...).")
    p("dataset_dir", "data", "path", "data", "Folder holding dataset_info.json and the dataset files.", target=D, guide="11.1")
    p("media_dir", "data", "path", None, "Folder holding images, videos and audio (default: dataset_dir).", target=D)
    p("cutoff_len", "data", "int", 2048, "Maximum tokens per example after tokenisation; longer examples are truncated.",
      target=D, min=1, guide="2.1", advice="Set it from your data's token-length distribution (about the 99th percentile), not higher.")
    p("train_on_prompt", "data", "bool", False, "Also compute the loss on prompt tokens.", target=D, guide="2.1",
      advice="Leave off unless the task needs the model to learn the prompts too.", recommended=False)
    p("mask_history", "data", "bool", False, "Train on the last turn of a conversation only.", target=D, guide="2.1",
      advice="Turn on for multi-turn chat data so earlier turns are context, not targets.")
    p("streaming", "data", "bool", False, "Stream the dataset instead of loading it whole (needs max_steps).", target=D, guide="2.2",
      advice="Turn on for datasets too large to preprocess up front.")
    p("buffer_size", "data", "int", 16384, "Shuffle buffer size in streaming mode.", target=D, min=1, guide="10.2")
    p("packing", "data", "bool", None, "Pack several examples into each sequence; unset means on for pt, off otherwise.",
      target=D, guide="2.2", advice="Turn on for pre-training; it removes padding waste.")
    p("neat_packing", "data", "bool", False, "Packing without attention across packed examples (implies packing; SFT only).", target=D, guide="10.2")
    p("mix_strategy", "data", "enum", "concat", "How several datasets are mixed: concatenated or interleaved by probability.",
      target=D, choices=("concat", "interleave_under", "interleave_over", "interleave_once"), guide="2.2",
      advice="concat by default; interleave_under with interleave_probs to control the mix ratio.")
    p("interleave_probs", "data", "list", None, "Sampling probabilities per dataset for interleaving, e.g. 0.7,0.3 (sum to 1).", target=D, guide="10.2")
    p("preprocessing_num_workers", "data", "int", None, "Processes used to tokenise the dataset.", target=D, min=1, guide="2.2",
      advice="Set it to the number of CPU cores you can spare.")
    p("preprocessing_batch_size", "data", "int", 1000, "Examples per batch during preprocessing.", target=D, min=1)
    p("overwrite_cache", "data", "bool", False, "Re-tokenise even if a cached dataset exists.", target=D, guide="10.2")
    p("max_samples", "data", "int", None, "Use at most this many examples per dataset (not with streaming).", target=D, min=1, guide="10.2",
      advice="Handy to cap huge datasets or to run a quick smoke test.")
    p("val_size", "data", "number", 0.0, "Held-out validation split: a fraction in [0, 1) or an example count.", target=D, min=0, guide="10.2",
      advice="Hold out about 10% (0.1) so eval loss can show overfitting.")
    p("eval_on_each_dataset", "data", "bool", False, "Report eval metrics per evaluation dataset.", target=D, guide="10.3")
    p("tokenized_path", "data", "path", None, "Save tokenised data here, or load it if it exists.", target=D)
    p("tool_format", "data", "str", None, "Format of tool calls in function-calling data.", target=D)
    p("default_system", "data", "str", None, "System prompt used when an example has none.", target=D)
    p("enable_thinking", "data", "bool", True, "Reasoning templates: keep the thinking block (null lets the data decide).", target=D, nullable=True)
    p("preserve_thinking", "data", "bool", False, "Keep thinking blocks of earlier turns in the prompt.", target=D)
    p("eval_num_beams", "data", "int", None, "Beam count for generation during evaluation.", target=D, min=1)
    p("ignore_pad_token_for_loss", "data", "bool", True, "Ignore padding tokens in the loss.", target=D)

    # -- model (ModelArguments, guide §3.1) ------------------------------------
    M: Target = "model"
    p("model_name_or_path", "model", "path", None, "Local model folder or hub id (org/name).", target=M, required=True, guide="3.1",
      advice="Point at a local copy so a run never waits on a download.")
    p("adapter_name_or_path", "model", "list", None, "Adapter folders to load (LoRA only), comma separated.", target=M)
    p("adapter_folder", "model", "path", None, "Folder holding adapter weights to load.", target=M)
    p("cache_dir", "model", "path", None, "Where downloaded models are cached.", target=M, guide="3.1",
      advice="Set a local cache on a disk with room for the weights.")
    p("model_revision", "model", "str", "main", "Model revision: branch, tag or commit.", target=M, guide="3.1",
      advice="Pin a tag or commit so reruns use the same weights.")
    p("trust_remote_code", "model", "bool", False, "Run the model repository's own Python code.", target=M, guide="3.1",
      advice="Only for models that need custom code, and only from sources you trust.")
    p("hf_hub_token", "model", "str", None, "Hugging Face token (prefer the HF_TOKEN environment variable).", target=M, secret=True)
    p("ms_hub_token", "model", "str", None, "ModelScope token.", target=M, secret=True)
    p("om_hub_token", "model", "str", None, "Modelers hub token.", target=M, secret=True)
    p("use_fast_tokenizer", "model", "bool", True, "Use the fast (Rust) tokenizer.", target=M)
    p("split_special_tokens", "model", "bool", False, "Split special tokens while tokenising (slow tokenizers only).", target=M)
    p("resize_vocab", "model", "bool", False, "Resize the vocabulary and embeddings to the tokenizer.", target=M)
    p("add_tokens", "model", "list", None, "Ordinary tokens to add to the tokenizer.", target=M)
    p("add_special_tokens", "model", "list", None, "Special tokens to add to the tokenizer.", target=M)
    p("new_special_tokens_config", "model", "path", None, "YAML file describing new special tokens for semantic initialisation.", target=M)
    p("init_special_tokens", "model", "enum", "noise_init", "How new special tokens are initialised.", target=M,
      choices=("noise_init", "desc_init", "desc_init_w_noise"))
    p("low_cpu_mem_usage", "model", "bool", True, "Load the model with low host-memory usage.", target=M)
    p("train_from_scratch", "model", "bool", False, "Initialise the weights randomly instead of loading them.", target=M)
    p("print_param_status", "model", "bool", False, "Print which parameters are trainable (debugging).", target=M)
    p("offload_folder", "model", "path", "offload", "Folder for offloaded weights.", target=M)
    p("use_kv_cache", "model", "bool", True, "Use the KV cache when generating.", target=M)
    p("image_max_pixels", "model", "int", 768 * 768, "Maximum pixels of an image input.", target=M, min=1)
    p("image_min_pixels", "model", "int", 32 * 32, "Minimum pixels of an image input.", target=M, min=1)
    p("image_do_pan_and_scan", "model", "bool", False, "Pan-and-scan images (Gemma 3).", target=M)
    p("crop_to_patches", "model", "bool", False, "Crop images to patches (InternVL).", target=M)
    p("video_max_pixels", "model", "int", 256 * 256, "Maximum pixels of a video frame.", target=M, min=1)
    p("video_min_pixels", "model", "int", 16 * 16, "Minimum pixels of a video frame.", target=M, min=1)
    p("video_fps", "model", "float", 2.0, "Frames sampled per second of video.", target=M, min=0, min_exclusive=True)
    p("video_maxlen", "model", "int", 128, "Maximum frames sampled from a video.", target=M, min=1)
    p("use_audio_in_video", "model", "bool", False, "Use the audio track of video inputs.", target=M)
    p("audio_sampling_rate", "model", "int", 16000, "Sampling rate of audio inputs.", target=M, min=1)

    # -- quantization (guide §3.2) ---------------------------------------------
    p("quantization_bit", "quantization", "int", None, "Quantize the frozen base model on the fly to this many bits (QLoRA).",
      target=M, choices=(1, 2, 3, 4, 5, 6, 8), guide="3.2",
      advice="4 (or 8) when the model does not fit otherwise; LoRA/OFT only.")
    p("quantization_method", "quantization", "enum", "bnb", "Quantization back-end: bnb, hqq and eetq quantize on the fly; gptq/awq/aqlm load pre-quantized models.",
      target=M, choices=("bnb", "gptq", "awq", "aqlm", "quanto", "eetq", "hqq", "mxfp4", "fp8"))
    p("quantization_type", "quantization", "enum", "nf4", "4-bit data type for bitsandbytes.", target=M, choices=("fp4", "nf4"), guide="3.2",
      advice="nf4: it matches normally distributed weights better than fp4.", recommended="nf4")
    p("double_quantization", "quantization", "bool", True, "Also quantize the quantization constants (bitsandbytes 4-bit).", target=M, guide="3.2",
      advice="Keep it on: saves about 0.4 bits per parameter at no quality cost.", recommended=True)
    p("quantization_device_map", "quantization", "enum", None, "Device map for inference with a 4-bit model (not for training).", target=M, choices=("auto",))
    p("upcast_layernorm", "quantization", "bool", False, "Keep layer-norm weights in fp32 (recommended for quantized training).", target=M)
    p("upcast_lmhead_output", "quantization", "bool", False, "Compute the lm_head output in fp32.", target=M)
    p("fp8", "quantization", "bool", False, "FP8 mixed-precision training through accelerate (Hopper GPUs, torch 2.7+).", target=M)
    p("fp8_backend", "quantization", "enum", "auto", "FP8 back-end.", target=M, choices=("auto", "torchao", "te", "msamp"))
    p("fp8_enable_fsdp_float8_all_gather", "quantization", "bool", False, "FP8 all-gather under FSDP2.", target=M)

    # -- performance (guide §3.3, §9.3) ----------------------------------------
    p("flash_attn", "performance", "enum", "auto", "Attention kernel: auto, disabled (eager), sdpa, fa2 (FlashAttention-2), fa3.",
      target=M, choices=("auto", "disabled", "sdpa", "fa2", "fa3"), guide="3.3",
      advice="fa2 on GPUs that support it: faster and no quadratic attention memory.", recommended="fa2")
    p("enable_liger_kernel", "performance", "bool", False, "Liger fused kernels (RMSNorm, RoPE, SwiGLU, fused cross-entropy).", target=M, guide="3.3",
      advice="Turn it on: the cheapest memory saving there is, with a speed-up on top.", recommended=True)
    p("use_unsloth", "performance", "bool", False, "Unsloth kernels for LoRA training.", target=M, guide="3.3",
      advice="Worth trying with LoRA on a single GPU; not under ZeRO-3.")
    p("use_unsloth_gc", "performance", "bool", False, "Unsloth's gradient checkpointing (does not need unsloth installed).", target=M)
    p("rope_scaling", "performance", "enum", None, "RoPE scaling to extend the context window.", target=M, choices=("linear", "dynamic", "yarn", "llama3"))
    p("shift_attn", "performance", "bool", False, "LongLoRA shift short attention (S^2-Attn).", target=M)
    p("mixture_of_depths", "performance", "enum", None, "Convert to or load a mixture-of-depths model.", target=M, choices=("convert", "load"))
    p("moe_aux_loss_coef", "performance", "float", None, "Router auxiliary loss coefficient for mixture-of-experts models.", target=M, min=0)
    p("disable_gradient_checkpointing", "performance", "bool", False, "Turn off gradient checkpointing, which LLaMA-Factory enables by default.", target=M,
      advice="Leave checkpointing on unless memory is plentiful and speed matters more.")
    p("use_reentrant_gc", "performance", "bool", True, "Use re-entrant gradient checkpointing.", target=M)
    p("use_v1_kernels", "performance", "bool", False, "LLaMA-Factory's experimental high-performance kernels.", target=M, nullable=True)
    p("use_kt", "performance", "bool", False, "KTransformers optimisations for LoRA training.", target=M)
    p("kt_optimize_rule", "performance", "path", None, "KTransformers optimize-rule file.", target=M)
    p("cpu_infer", "performance", "int", 32, "KTransformers: CPU cores for computation.", target=M, min=1, nullable=True)
    p("chunk_size", "performance", "int", 8192, "KTransformers: CPU compute chunk size.", target=M, min=1, nullable=True)
    p("mode", "performance", "str", "normal", "KTransformers: normal or long_context.", target=M, nullable=True)
    p("kt_maxlen", "performance", "int", 4096, "KTransformers engine maximum length.", target=M, min=1)
    p("kt_use_cuda_graph", "performance", "bool", True, "KTransformers: use CUDA graphs.", target=M)
    p("kt_mode", "performance", "str", "normal", "KTransformers engine mode.", target=M)
    p("kt_force_think", "performance", "bool", False, "KTransformers: force thinking.", target=M)

    # -- training (TrainingArguments, guide §4.1, §4.2, §10.3) -----------------
    T: Target = "training"
    p("output_dir", "training", "path", None, "Run directory: checkpoints, logs, final weights.", target=T, guide="10.3",
      advice="One fresh directory per experiment; tunedeck resumes from checkpoints found there.")
    p("overwrite_output_dir", "training", "bool", False, "Start from scratch even if output_dir holds checkpoints (LLaMA-Factory key).", target=T,
      advice="Leave false so an interrupted run resumes from its newest checkpoint.")
    p("do_train", "training", "bool", True, "Run training (LLaMA-Factory's examples always set it; transformers defaults to false).", target=T,
      lf_default=False)
    p("do_eval", "training", "bool", False, "Run evaluation on the validation set after training.", target=T)
    p("do_predict", "training", "bool", False, "Run prediction on the evaluation set (SFT needs predict_with_generate).", target=T)
    p("learning_rate", "training", "float", 5e-5, "Peak learning rate.", target=T, min=0, min_exclusive=True, guide="4.1",
      advice="5e-5 to 1e-4 for LoRA (1e-5 for full fine-tuning, about 5e-6 for DPO); lower it if the loss spikes.")
    p("num_train_epochs", "training", "float", 3.0, "Passes over the training data (ignored when max_steps > 0).", target=T, min=0, min_exclusive=True, guide="4.1",
      advice="2 to 5; watch eval loss for overfitting past that.")
    p("max_steps", "training", "int", -1, "Total optimisation steps; overrides num_train_epochs when > 0 (required with streaming).", target=T, min=-1)
    p("per_device_train_batch_size", "training", "int", 1, "Examples per GPU per forward pass.", target=T, min=1, guide="4.1",
      advice="1 to 4; raise gradient_accumulation_steps instead when memory is short.")
    p("gradient_accumulation_steps", "training", "int", 1, "Forward passes accumulated before each optimizer step.", target=T, min=1, guide="4.1",
      advice="4 to 16, so the effective batch (batch x accumulation x GPUs) is 16 to 64.")
    p("max_grad_norm", "training", "float", 1.0, "Gradient clipping norm (0 disables clipping).", target=T, min=0, guide="4.1",
      advice="1.0: clipping keeps a bad batch from wrecking the run.", recommended=1.0)
    p("warmup_steps", "training", "number", 0, "Linear warm-up steps (a float below 1 is a fraction of all steps in transformers 5).",
      target=T, min=0, guide="4.1", advice="About 10% of the total steps (the guide's examples use 100 to 200).")
    p("warmup_ratio", "training", "float", None, "Warm-up as a fraction of total steps (removed in transformers 5; tunedeck maps it to warmup_steps).",
      target=T, min=0, max=1, guide="4.1", advice="0.1 is the usual LLaMA-Factory example value; set either this or warmup_steps.")
    p("optim", "training", "enum", "adamw_torch", "Optimizer.", target=T, choices=OPTIMIZERS, guide="4.2",
      advice="adamw_torch; paged_adamw_8bit can save memory with QLoRA.", lf_default="adamw_torch_fused (transformers 5 with torch >= 2.8)")
    p("optim_args", "training", "str", None, "Extra optimizer arguments as a comma list of key=value.", target=T)
    p("optim_target_modules", "training", "list", None, "Modules the GaLore/APOLLO-style optimizers in optim apply to.", target=T, guide="9.3")
    p("lr_scheduler_type", "training", "enum", "linear", "Learning-rate schedule after warm-up.", target=T, choices=SCHEDULERS, guide="4.2",
      advice="cosine: a smoother decay that usually ends at a lower loss.", recommended="cosine")
    p("lr_scheduler_kwargs", "training", "json", None, "Extra scheduler arguments, e.g. {\"min_lr\": 1e-6} for cosine_with_min_lr.", target=T)
    p("weight_decay", "training", "float", 0.0, "AdamW weight decay.", target=T, min=0, guide="4.2",
      advice="0.01: a little decay regularises long runs.", recommended=0.01)
    p("adam_beta1", "training", "float", 0.9, "AdamW beta1.", target=T, min=0, max=1, max_exclusive=True)
    p("adam_beta2", "training", "float", 0.999, "AdamW beta2.", target=T, min=0, max=1, max_exclusive=True)
    p("adam_epsilon", "training", "float", 1e-8, "AdamW epsilon.", target=T, min=0, min_exclusive=True)
    p("seed", "training", "int", 42, "Random seed for reproducible runs.", target=T, min=0, guide="11.1")
    p("data_seed", "training", "int", None, "Seed for data sampling (default: seed).", target=T, min=0)
    p("save_strategy", "training", "enum", "steps", "When to save checkpoints.", target=T, choices=(*INTERVALS, "best"), guide="10.3")
    p("save_steps", "training", "number", 500, "Save a checkpoint every N steps (a float below 1 is a fraction of all steps).",
      target=T, min=0, min_exclusive=True, guide="10.3", advice="500 to 1000: often enough to lose little work on a crash.")
    p("save_total_limit", "training", "int", None, "Keep at most this many checkpoints (older ones are deleted).", target=T, min=1, guide="10.3",
      advice="3 keeps disk use bounded while leaving checkpoints to fall back on.")
    p("save_only_model", "training", "bool", False, "Save weights only, without optimizer/scheduler/RNG state.", target=T,
      advice="Leave false: without optimizer state a resume restarts Adam from zero.")
    p("save_on_each_node", "training", "bool", False, "Save on every node in multi-node runs (non-shared filesystems).", target=T)
    p("resume_from_checkpoint", "training", "path", None, "Checkpoint folder to resume from (true or latest: the newest in output_dir).",
      target=T, alt_types=("bool",), guide="10.3")
    p("push_to_hub", "training", "bool", False, "Push checkpoints and the final model to the hub.", target=T)
    p("hub_model_id", "training", "str", None, "Hub repository to push to.", target=T)
    p("hub_token", "training", "str", None, "Hub token for pushing (prefer the HF_TOKEN environment variable).", target=T, secret=True)
    p("hub_private_repo", "training", "bool", None, "Create the hub repository as private.", target=T)
    p("hub_strategy", "training", "enum", "every_save", "What is pushed and when.", target=T,
      choices=("end", "every_save", "checkpoint", "all_checkpoints"))
    p("enable_jit_checkpoint", "training", "bool", False, "Save a checkpoint on SIGTERM at the next step (transformers 5).", target=T)
    p("gradient_checkpointing", "training", "bool", None, "transformers' switch for gradient checkpointing; unset follows disable_gradient_checkpointing (on).",
      target=T, guide="9.3", advice="On: trades about 20-30% speed for a large cut in activation memory.", lf_default=False)
    p("gradient_checkpointing_kwargs", "training", "json", None, "Arguments for gradient checkpointing, e.g. {\"use_reentrant\": false}.", target=T)
    p("label_smoothing_factor", "training", "float", 0.0, "Label smoothing for the LM loss.", target=T, min=0, max=1, max_exclusive=True)
    p("neftune_noise_alpha", "training", "float", None, "NEFTune embedding noise.", target=T, min=0)
    p("auto_find_batch_size", "training", "bool", False, "Halve the batch size on OOM and retry (needs accelerate).", target=T)
    p("torch_empty_cache_steps", "training", "int", None, "Empty the CUDA cache every N steps.", target=T, min=1)
    p("use_cpu", "training", "bool", False, "Train on the CPU even if a GPU is present.", target=T)
    p("full_determinism", "training", "bool", False, "Deterministic algorithms for reproducibility (slower).", target=T)
    p("ignore_data_skip", "training", "bool", False, "On resume, do not fast-forward the data to where the run stopped.", target=T)
    p("remove_unused_columns", "training", "bool", True, "Drop dataset columns the model does not take (LLaMA-Factory forces false).", target=T)
    p("label_names", "training", "list", None, "Names of the label inputs.", target=T)
    p("ray_run_name", "distributed", "str", None, "Ray: name of the run under ray_storage_path.", target=T)
    p("ray_storage_path", "distributed", "path", "./saves", "Ray: where results are stored.", target=T)
    p("ray_storage_filesystem", "distributed", "enum", None, "Ray: remote storage filesystem.", target=T, choices=("s3", "gs", "gcs"))
    p("ray_num_workers", "distributed", "int", 1, "Ray: number of workers.", target=T, min=1)
    p("resources_per_worker", "distributed", "json", {"GPU": 1}, "Ray: resources per worker.", target=T)
    p("placement_strategy", "distributed", "enum", "PACK", "Ray placement strategy.", target=T, choices=("SPREAD", "PACK", "STRICT_SPREAD", "STRICT_PACK"))
    p("ray_init_kwargs", "distributed", "json", None, "Ray: arguments for ray.init.", target=T)

    # -- performance-related TrainingArguments -----------------------------------
    p("bf16", "performance", "bool", False, "bf16 mixed precision (AMP).", target=T, guide="9.3",
      advice="On for Ampere or newer GPUs: half the activation memory of fp32 and stable, unlike fp16.")
    p("fp16", "performance", "bool", False, "fp16 mixed precision (for GPUs without bf16).", target=T)
    p("tf32", "performance", "bool", None, "Allow TF32 matmuls on Ampere or newer GPUs.", target=T)
    p("bf16_full_eval", "performance", "bool", False, "Evaluate in full bf16.", target=T)
    p("fp16_full_eval", "performance", "bool", False, "Evaluate in full fp16.", target=T)
    p("torch_compile", "performance", "bool", False, "Compile the model with torch.compile.", target=T)
    p("torch_compile_backend", "performance", "str", None, "torch.compile back-end.", target=T)
    p("torch_compile_mode", "performance", "str", None, "torch.compile mode.", target=T)
    p("use_liger_kernel", "performance", "bool", False, "transformers' own Liger switch (LLaMA-Factory uses enable_liger_kernel).", target=T)
    p("dataloader_num_workers", "performance", "int", 0, "Worker processes that load batches.", target=T, min=0, guide="9.3",
      advice="4 to 8 so data loading never starves the GPU.")
    p("dataloader_pin_memory", "performance", "bool", True, "Pin host memory for faster host-to-GPU copies.", target=T, guide="9.3",
      advice="Keep on.", recommended=True)
    p("dataloader_persistent_workers", "performance", "bool", False, "Keep data-loader workers alive between epochs.", target=T)
    p("dataloader_prefetch_factor", "performance", "int", None, "Batches prefetched per worker.", target=T, min=1)
    p("dataloader_drop_last", "performance", "bool", False, "Drop the last incomplete batch.", target=T)

    # -- distributed (guide §4.3) ----------------------------------------------
    p("deepspeed", "distributed", "json", None, "DeepSpeed config: a JSON file path (or an inline mapping).", target=T, guide="4.3",
      advice="ZeRO-3 (ds_z3_config.json) when the model does not fit on one GPU; ZeRO-2 is faster when it does.")
    p("deepspeed_config", "distributed", "json", None, "Inline DeepSpeed settings (guide §9.3); tunedeck writes them to a JSON file and passes that as deepspeed.",
      target="tunedeck", guide="9.3")
    p("ddp_timeout", "distributed", "int", 1800, "Seconds before a collective operation times out.", target=T, min=1, guide="4.3",
      advice="Raise it for long preprocessing or saving on big models (the guide's example uses 180000000).")
    p("ddp_find_unused_parameters", "distributed", "bool", None, "DDP: search for parameters without gradients each step.", target=T, guide="10.1",
      advice="false: the search costs time and LoRA does not need it.", recommended=False)
    p("ddp_backend", "distributed", "enum", None, "Distributed back-end.", target=T, choices=("nccl", "gloo", "mpi", "ccl", "hccl", "cncl", "mccl"))
    p("ddp_bucket_cap_mb", "distributed", "int", None, "DDP gradient bucket size in MB.", target=T, min=1)
    p("ddp_broadcast_buffers", "distributed", "bool", None, "DDP: broadcast buffers each step.", target=T)
    p("fsdp", "distributed", "list", None, "FSDP options, e.g. full_shard auto_wrap (space or comma separated).", target=T, choices=FSDP_OPTIONS)
    p("fsdp_config", "distributed", "json", None, "FSDP settings: a JSON file path or an inline mapping.", target=T)
    p("local_rank", "distributed", "int", -1, "Process rank on this node (set by the launcher, not by hand).", target=T, min=-1)
    p("accelerator_config", "distributed", "json", None, "accelerate Accelerator settings.", target=T)

    # -- evaluation (guide §6, §10.3) ------------------------------------------
    p("eval_strategy", "evaluation", "enum", "no", "When to evaluate during training.", target=T, choices=INTERVALS, guide="10.3",
      aliases=("evaluation_strategy",), advice="steps, with a validation set, so overfitting shows up during the run.")
    p("eval_steps", "evaluation", "number", None, "Evaluate every N steps (default: logging_steps).", target=T, min=0, min_exclusive=True, guide="10.3",
      advice="Same as save_steps (e.g. 500) so every checkpoint has an eval loss.")
    p("per_device_eval_batch_size", "evaluation", "int", 8, "Examples per GPU per evaluation batch.", target=T, min=1, guide="10.3")
    p("eval_accumulation_steps", "evaluation", "int", None, "Move predictions to the CPU every N eval steps.", target=T, min=1)
    p("eval_delay", "evaluation", "float", 0, "Steps or epochs to wait before the first evaluation.", target=T, min=0)
    p("eval_on_start", "evaluation", "bool", False, "Evaluate once before training (a sanity check).", target=T)
    p("prediction_loss_only", "evaluation", "bool", False, "Return only the loss when evaluating.", target=T)
    p("predict_with_generate", "evaluation", "bool", False, "Generate text in prediction to compute ROUGE/BLEU (SFT only).", target=T)
    p("generation_max_length", "evaluation", "int", None, "Maximum length when generating in evaluation (default: cutoff_len).", target=T, min=1)
    p("generation_num_beams", "evaluation", "int", None, "Beams when generating in evaluation.", target=T, min=1)
    p("load_best_model_at_end", "evaluation", "bool", False, "Load the best checkpoint at the end (needs matching save and eval schedules).", target=T)
    p("metric_for_best_model", "evaluation", "str", None, "Metric that picks the best checkpoint (e.g. eval_loss).", target=T)
    p("greater_is_better", "evaluation", "bool", None, "Whether a larger metric_for_best_model is better.", target=T)
    E: Target = "eval"
    p("task", "evaluation", "str", None, "Benchmark for `eval`: mmlu_test, ceval_validation or cmmlu_test.", target=E, guide="6.1",
      advice="Choose the benchmark for the model's language: mmlu for English, ceval or cmmlu for Chinese.")
    p("task_dir", "evaluation", "path", "evaluation", "Folder holding the benchmark data.", target=E)
    p("batch_size", "evaluation", "int", 4, "Batch size for benchmark evaluation.", target=E, min=1, guide="6.1", advice="8 to 16 if memory allows.")
    p("n_shot", "evaluation", "int", 5, "Few-shot examples per question.", target=E, min=0, guide="6.1", advice="5, the standard setting.", recommended=5)
    p("lang", "evaluation", "enum", "en", "Language of the evaluation prompts.", target=E, choices=("en", "zh"), guide="6.1",
      advice="zh for Chinese benchmarks, en otherwise.")
    p("save_dir", "evaluation", "path", None, "Where benchmark results are saved.", target=E)
    p("download_mode", "evaluation", "enum", "reuse_dataset_if_exists", "Benchmark download mode.", target=E,
      choices=("reuse_dataset_if_exists", "reuse_cache_if_exists", "force_redownload"))

    # -- generation (GeneratingArguments, guide §5) ----------------------------
    G: Target = "generating"
    p("do_sample", "generation", "bool", True, "Sample tokens (false: greedy decoding).", target=G, guide="5.1", advice="true for chat.", recommended=True)
    p("temperature", "generation", "float", 0.95, "Sampling temperature; lower is more deterministic.", target=G, min=0, guide="5.1",
      advice="0.7 to 1.0 (0.8 balances quality and variety).")
    p("top_p", "generation", "float", 0.7, "Nucleus sampling: keep the smallest token set with this total probability.", target=G, min=0, max=1, guide="5.1",
      advice="0.8 to 0.95.")
    p("top_k", "generation", "int", 50, "Keep only the k most likely tokens.", target=G, min=0, guide="5.1", advice="50 to 100.")
    p("num_beams", "generation", "int", 1, "Beam width (1: no beam search).", target=G, min=1, guide="5.1", advice="1 (beam search makes chat bland).", recommended=1)
    p("max_length", "generation", "int", 1024, "Maximum total length when generating (max_new_tokens wins when set).", target=G, min=1, guide="5.2")
    p("max_new_tokens", "generation", "int", 1024, "Maximum new tokens per reply.", target=G, min=1, guide="5.2", advice="512 to 2048.")
    p("repetition_penalty", "generation", "float", 1.0, "Penalty on repeated tokens (1.0: none).", target=G, min=0, min_exclusive=True, guide="5.2",
      advice="1.0 to 1.1 (1.05 curbs loops).")
    p("length_penalty", "generation", "float", 1.0, "Length penalty for beam search.", target=G)
    p("skip_special_tokens", "generation", "bool", True, "Drop special tokens from decoded text.", target=G)

    # -- monitoring (guide §7, §10.3) ------------------------------------------
    # SwanLab keys are LLaMA-Factory keys too, but tunedeck's runner drives SwanLab
    # itself (transformers' report_to="swanlab" is broken with swanlab 0.10), so they
    # are tunedeck's to interpret.
    S: Target = "tunedeck"
    p("logging_steps", "monitoring", "number", 500, "Log loss, learning rate and grad norm every N steps.", target=T, min=0, min_exclusive=True, guide="10.3",
      advice="10: frequent enough for a useful curve without flooding the log.")
    p("logging_strategy", "monitoring", "enum", "steps", "When to log.", target=T, choices=INTERVALS)
    p("logging_first_step", "monitoring", "bool", False, "Also log the very first step.", target=T)
    p("logging_nan_inf_filter", "monitoring", "bool", True, "Skip NaN/inf losses when averaging logged loss.", target=T)
    p("logging_dir", "monitoring", "path", None, "TensorBoard log folder (transformers 5 dropped the argument and reads TENSORBOARD_LOGGING_DIR instead).", target=T)
    p("log_level", "monitoring", "enum", "passive", "transformers log level on the main process.", target=T,
      choices=("passive", "debug", "info", "warning", "error", "critical"))
    p("disable_tqdm", "monitoring", "bool", None, "Hide progress bars.", target=T)
    p("report_to", "monitoring", "list", "none", "Trackers that receive metrics: none, tensorboard, wandb, mlflow, swanlab ...", target=T,
      choices=REPORT_TO, guide="7.2")
    p("run_name", "monitoring", "str", None, "Run name shown by trackers.", target=T)
    p("project", "monitoring", "str", None, "Tracker project name (transformers 5).", target=T)
    p("include_num_input_tokens_seen", "monitoring", "bool", False, "Count input tokens (shown as throughput and total_tokens).", target=T)
    p("skip_memory_metrics", "monitoring", "bool", True, "Skip memory profiling metrics.", target=T)
    p("use_swanlab", "monitoring", "bool", False, "Log the run to SwanLab.", target=S, guide="7.1",
      advice="Turn it on so every run has a browsable record (tunedeck logs offline unless an API key is set).")
    p("swanlab_project", "monitoring", "str", "llamafactory", "SwanLab project name.", target=S, guide="7.1", advice="Name the project after the model or product.")
    p("swanlab_mode", "monitoring", "enum", "cloud", "SwanLab mode: cloud uploads, local/offline keep logs on disk, disabled turns it off.",
      target=S, choices=("cloud", "local", "offline", "disabled"), guide="7.1",
      advice="cloud when the box can reach SwanLab and has a key; offline otherwise and sync later (LLaMA-Factory itself accepts only cloud or local).")
    p("swanlab_workspace", "monitoring", "str", None, "SwanLab workspace (organisation).", target=S)
    p("swanlab_run_name", "monitoring", "str", None, "SwanLab experiment name.", target=S)
    p("swanlab_api_key", "monitoring", "str", None, "SwanLab API key (prefer the SWANLAB_API_KEY environment variable).", target=S, secret=True)
    p("swanlab_logdir", "monitoring", "path", None, "Folder for SwanLab's local logs (tunedeck default: <output_dir>/swanlog).", target=S)
    p("swanlab_lark_webhook_url", "monitoring", "str", None, "Lark (Feishu) webhook for SwanLab notifications.", target=S, secret=True)
    p("swanlab_lark_secret", "monitoring", "str", None, "Lark (Feishu) webhook secret.", target=S, secret=True)

    # -- export / inference (guide §10.4) --------------------------------------
    p("export_dir", "inference", "path", None, "Folder for the exported (merged) model.", target=M)
    p("export_size", "inference", "number", 5, "Largest shard of the exported model, in GB (10**9 bytes); fractions are a tunedeck extension (LLaMA-Factory takes whole GB).",
      target=M, min=0, min_exclusive=True)
    p("export_device", "inference", "enum", "cpu", "Device used for export.", target=M, choices=("cpu", "auto"))
    p("export_quantization_bit", "inference", "int", None, "GPTQ bits for the exported model (needs a merged model: not with adapters attached).", target=M, choices=(2, 3, 4, 8))
    p("export_quantization_dataset", "inference", "path", None, "Calibration dataset for export quantization.", target=M)
    p("export_quantization_nsamples", "inference", "int", 128, "Calibration samples for export quantization.", target=M, min=1)
    p("export_quantization_maxlen", "inference", "int", 1024, "Maximum calibration length for export quantization.", target=M, min=1)
    p("export_legacy_format", "inference", "bool", False, "Save .bin files instead of .safetensors.", target=M)
    p("export_hub_model_id", "inference", "str", None, "Hub repository to push the exported model to.", target=M)
    p("infer_backend", "inference", "enum", "huggingface", "Inference engine for chat/API: huggingface, vllm or sglang (not for training).",
      target=M, choices=("huggingface", "vllm", "sglang", "ktransformers"), guide="10.4", advice="vllm for serving: far higher throughput.")
    p("infer_dtype", "inference", "enum", "auto", "Weight and activation dtype at inference.", target=M, choices=("auto", "float16", "bfloat16", "float32"))
    p("vllm_maxlen", "inference", "int", 4096, "vLLM: maximum prompt + reply length.", target=M, min=1, guide="10.4")
    p("vllm_gpu_util", "inference", "float", 0.7, "vLLM: fraction of GPU memory to use.", target=M, min=0, max=1, min_exclusive=True, guide="10.4",
      advice="0.9 on a GPU dedicated to serving.")
    p("vllm_enforce_eager", "inference", "bool", False, "vLLM: disable CUDA graphs.", target=M, guide="10.4", advice="false: CUDA graphs are faster.")
    p("vllm_max_lora_rank", "inference", "int", 32, "vLLM: largest LoRA rank it will load.", target=M, min=1, guide="10.4",
      advice="At least the lora_rank you trained with (64 in the guide's example).")
    p("vllm_config", "inference", "json", None, "Extra vLLM engine settings as JSON.", target=M)
    p("sglang_maxlen", "inference", "int", 4096, "SGLang: maximum prompt + reply length.", target=M, min=1)
    p("sglang_mem_fraction", "inference", "float", 0.7, "SGLang: fraction of GPU memory to use.", target=M, min=0, max=1, min_exclusive=True)
    p("sglang_tp_size", "inference", "int", -1, "SGLang tensor-parallel size (-1: all GPUs).", target=M, min=-1)
    p("sglang_config", "inference", "json", None, "Extra SGLang engine settings as JSON.", target=M)
    p("sglang_lora_backend", "inference", "enum", "triton", "SGLang LoRA kernel back-end.", target=M, choices=("triton", "flashinfer"))

    # -- environment variables (guide §8, §7.2, §10.4) -------------------------
    V: Target = "env"

    def env(name: str, help: str, *, guide: str | None = None, advice: str | None = None,
            secret: bool = False, type: ParamType = "str", choices: tuple[Any, ...] | None = None) -> None:
        p(name, "env", type, None, help, target=V, guide=guide, advice=advice, secret=secret, choices=choices)

    env("CUDA_VISIBLE_DEVICES", "GPUs the run may use, e.g. 0,1,2,3.", guide="8.1", advice="List exactly the GPUs this run should own, e.g. \"0,1,2,3\".")
    env("ASCEND_RT_VISIBLE_DEVICES", "Ascend NPUs the run may use.", guide="8.1", advice="Same idea as CUDA_VISIBLE_DEVICES, for NPUs.")
    env("MASTER_ADDR", "Address of the rank-0 node in multi-node runs.", guide="8.2", advice="The real IP of the first node.")
    env("MASTER_PORT", "Port of the rank-0 node.", guide="8.2", advice="29500, or any free port.")
    env("NPROC_PER_NODE", "Processes (GPUs) per node.", guide="8.2", advice="The number of GPUs on each node.")
    env("NNODES", "Number of nodes.", guide="8.2")
    env("NODE_RANK", "Rank of this node.", guide="8.2")
    env("RDZV_ID", "Rendezvous id for elastic launches.")
    env("FORCE_TORCHRUN", "LLaMA-Factory: launch through torchrun even on one GPU (needed for DeepSpeed).")
    env("LLAMAFACTORY_VERBOSITY", "Log level of LLaMA-Factory-style logging.", guide="8.3", advice="INFO.",
        choices=("DEBUG", "INFO", "WARN", "WARNING", "ERROR", "CRITICAL"))
    env("WANDB_DISABLED", "Turn Weights & Biases off.", guide="8.3", advice="Set it when you do not use W&B.")
    env("WANDB_PROJECT", "Weights & Biases project name.", guide="7.2")
    env("WANDB_API_KEY", "Weights & Biases API key.", secret=True)
    env("SWANLAB_API_KEY", "SwanLab API key.", secret=True)
    env("SWANLAB_MODE", "SwanLab mode (cloud, local, offline, disabled).", choices=("cloud", "online", "local", "offline", "disabled"))
    env("SWANLAB_LOG_DIR", "SwanLab local log folder.")
    env("SWANLAB_PROJECT", "SwanLab project name.")
    env("HF_TOKEN", "Hugging Face access token.", secret=True)
    env("HF_HOME", "Hugging Face cache root.")
    env("HF_ENDPOINT", "Hugging Face hub mirror URL.")
    env("HF_HUB_OFFLINE", "1: never contact the hub; use local files only.")
    env("USE_MODELSCOPE_HUB", "1: download models and datasets from ModelScope.")
    env("USE_OPENMIND_HUB", "1: download from the Modelers hub.")
    env("ALLOW_EXTRA_ARGS", "LLaMA-Factory: accept unknown config keys instead of failing.")
    env("DISABLE_VERSION_CHECK", "LLaMA-Factory: skip dependency version checks.")
    env("RECORD_VRAM", "1: record peak VRAM in trainer_log.jsonl.")
    env("PYTORCH_CUDA_ALLOC_CONF", "CUDA allocator settings, e.g. expandable_segments:True.")
    env("TORCH_NCCL_AVOID_RECORD_STREAMS", "NCCL memory behaviour for async collectives.")
    env("NCCL_DEBUG", "NCCL log level (INFO for hangs).")
    env("OMP_NUM_THREADS", "CPU threads per process.")
    env("TOKENIZERS_PARALLELISM", "Allow the Rust tokenizer to use threads.")
    env("USE_RAY", "1: train through Ray.")
    env("USE_MCA", "1: Megatron Core Adapter back-end.")
    env("USE_KT", "1: KTransformers back-end.")
    env("USE_MEGATRON_BRIDGE", "1: Megatron bridge back-end.")
    env("API_HOST", "Host the OpenAI-style API binds to.", guide="10.4")
    env("API_PORT", "Port of the OpenAI-style API.", guide="10.4", advice="8000, or any free port.")
    env("API_KEY", "Key clients must send to the API.", guide="10.4", secret=True, advice="Set one whenever the API is reachable from other machines.")
    env("MAX_CONCURRENT", "Concurrent requests the API serves.", guide="10.4")
    env("GRADIO_SERVER_NAME", "Web UI bind address.")
    env("GRADIO_SERVER_PORT", "Web UI port.")
    env("GRADIO_SHARE", "1: public Gradio link for the web UI.")
    env("MLFLOW_TRACKING_URI", "MLflow server URL.", guide="7.2")
    env("TENSORBOARD_LOGGING_DIR", "TensorBoard log folder (transformers 5).")

    # -- tunedeck's own ----------------------------------------------------------
    return out


PARAMS: dict[str, Param] = {p.name: p for p in _declare()}
GROUP_IDS: tuple[str, ...] = tuple(g.id for g in GROUPS)
_ALIASES: dict[str, str] = {a: p.name for p in PARAMS.values() for a in p.aliases}

# Key fragments that mark a value as a secret even when the key is not declared.
_SECRET_MARKERS = ("api_key", "apikey", "token", "secret", "password", "passwd")


# ----------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------
def get_param(name: str) -> Param | None:
    """The declared parameter ``name`` (or the one it is an old alias of), else None."""
    p = PARAMS.get(name)
    if p is None and name in _ALIASES:
        p = PARAMS[_ALIASES[name]]
    return p


def alias_target(name: str) -> str | None:
    """The current name of a renamed key (``evaluation_strategy`` -> ``eval_strategy``)."""
    return _ALIASES.get(name)


def params_in_group(group_id: str) -> list[Param]:
    """Parameters of one form pane, in declaration order."""
    return [p for p in PARAMS.values() if p.group == group_id]


def secret_keys() -> frozenset[str]:
    return frozenset(p.name for p in PARAMS.values() if p.secret)


def is_secret_key(key: str) -> bool:
    """Declared secrets, and any undeclared key whose name says it holds one."""
    p = PARAMS.get(key)
    if p is not None:
        return p.secret
    low = key.lower()
    return any(m in low for m in _SECRET_MARKERS)


def redact(values: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``values`` with every secret replaced by ``"***"`` (unset ones kept as None)."""
    out: dict[str, Any] = {}
    for k, v in values.items():
        if is_secret_key(str(k)) and v not in (None, ""):
            out[k] = "***"
        elif isinstance(v, Mapping):
            out[k] = redact(v)
        else:
            out[k] = v
    return out


def is_env_key(key: str) -> bool:
    """True for keys written like environment variables (``ALL_CAPS``)."""
    return bool(key) and key.upper() == key and any(c.isalpha() for c in key) and key[0].isalpha()


def apply_defaults(values: Mapping[str, Any]) -> dict[str, Any]:
    """Fill every declared default and LLaMA-Factory's derived values.

    Derived values: ``lora_alpha`` = 2 x ``lora_rank`` when unset; ``packing`` on for
    ``stage: pt`` when unset; ``neat_packing`` forces ``packing``; gradient
    checkpointing is on unless ``disable_gradient_checkpointing`` is true or
    ``gradient_checkpointing: false`` is written explicitly, and the two keys are
    made to agree. Environment variables are not filled (unset means inherit).
    """
    out = dict(values)
    for p in PARAMS.values():
        if p.target == "env" or p.name in out:
            continue
        d = p.default
        out[p.name] = dict(d) if isinstance(d, dict) else d
    if out.get("lora_alpha") is None and isinstance(out.get("lora_rank"), int):
        out["lora_alpha"] = 2 * out["lora_rank"]
    if out.get("packing") is None:
        out["packing"] = out.get("stage") == "pt"
    if out.get("neat_packing"):
        out["packing"] = True
    gc_given = values.get("gradient_checkpointing")
    if "disable_gradient_checkpointing" not in values and gc_given is False:
        out["disable_gradient_checkpointing"] = True
    out["gradient_checkpointing"] = not bool(out.get("disable_gradient_checkpointing"))
    if out.get("warmup_ratio") is not None and not values.get("warmup_steps"):
        # transformers 5 reads a float below 1 in warmup_steps as a ratio.
        out["warmup_steps"] = float(out["warmup_ratio"])
    return out


_TRUE = {"true", "yes", "on", "1", "y", "t"}
_FALSE = {"false", "no", "off", "0", "n", "f"}


def coerce(param: Param | str, raw: Any) -> Any:
    """Turn form input (usually a string) into the value the schema expects.

    ``""`` means unset (None). Raises :class:`ConfigError` with a one-sentence
    message naming the key when the text cannot be read as the parameter's type.
    """
    p = get_param(param) if isinstance(param, str) else param
    if p is None:
        raise ConfigError(f"unknown parameter {param!r}")
    if not isinstance(raw, str):
        return raw
    text = raw.strip()
    if text == "" or (text.lower() in ("null", "none", "~") and p.type not in ("str", "path")):
        return None
    kinds = (p.type, *p.alt_types)

    def bad(what: str) -> ConfigError:
        return ConfigError(f"{text!r} is not {what}", key=p.name, hint=f"allowed: {p.allowed}" if p.allowed else None)

    if "bool" in kinds and text.lower() in _TRUE | _FALSE:
        return text.lower() in _TRUE
    if p.type == "bool":
        raise bad("true or false")
    if p.type == "int" or (p.type == "enum" and p.choices and all(isinstance(c, int) for c in p.choices)):
        try:
            f = float(text.replace("_", ""))
        except ValueError:
            raise bad("a whole number") from None
        if not f.is_integer():
            raise bad("a whole number")
        v: Any = int(f)
        return v
    if p.type == "float":
        try:
            return float(text)
        except ValueError:
            raise bad("a number") from None
    if p.type == "number":
        try:
            f = float(text)
        except ValueError:
            raise bad("a number") from None
        if f.is_integer() and not any(c in text for c in ".eE"):
            return int(f)
        return f
    if p.type == "list":
        items = [s.strip() for s in text.replace("\n", ",").split(",") if s.strip()]
        return ",".join(items) if items else None
    if p.type == "json":
        if text[:1] in "{[":
            try:
                return json.loads(text)
            except json.JSONDecodeError as exc:
                raise bad(f"valid JSON ({exc.msg} at column {exc.colno})") from None
        return text
    return text


def iter_guide_params() -> Iterable[Param]:
    """Parameters the guide itself discusses (those with a guide section)."""
    return (p for p in PARAMS.values() if p.guide)


# ----------------------------------------------------------------------------
# Docs faces (``tunedeck schema``, docs/parameters.md)
# ----------------------------------------------------------------------------
def param_dict(p: Param) -> dict[str, Any]:
    """JSON-ready description of one parameter."""
    return {
        "name": p.name,
        "group": p.group,
        "type": p.type,
        "default": p.default,
        "choices": list(p.choices) if p.choices else None,
        "min": p.min,
        "max": p.max,
        "min_exclusive": p.min_exclusive,
        "max_exclusive": p.max_exclusive,
        "nullable": p.accepts_null,
        "help": p.help,
        "advice": p.advice,
        "recommended": None if p.recommended is UNSET else p.recommended,
        "has_recommended": p.recommended is not UNSET,
        "lf_default": None if p.lf_default is UNSET else p.lf_default,
        "guide": p.guide,
        "target": p.target,
        "secret": p.secret,
        "checked": p.checked,
        "required": p.required,
        "aliases": list(p.aliases),
        "alt_types": list(p.alt_types),
    }


def schema_as_json(group: str | None = None) -> dict[str, Any]:
    groups = [g for g in GROUPS if group is None or g.id == group]
    return {
        "groups": [{"id": g.id, "title": g.title, "description": g.description} for g in groups],
        "params": [param_dict(p) for g in groups for p in params_in_group(g.id)],
    }


def _md(text: Any) -> str:
    s = _fmt(text) if not isinstance(text, str) else text
    return s.replace("|", "\\|").replace("\n", " ")


def _md_default(p: Param) -> str:
    if isinstance(p.default, dict):
        s = "`" + json.dumps(p.default) + "`"
    elif p.default is None:
        s = "—"
    else:
        s = f"`{_fmt(p.default)}`"
    if p.lf_default is not UNSET:
        s += f" (LLaMA-Factory/transformers: {_md(p.lf_default)})"
    return s


def schema_markdown(group: str | None = None) -> str:
    """The parameter reference as Markdown tables, one per form pane."""
    lines = [
        "# tunedeck parameters",
        "",
        "<!-- Generated by `tunedeck schema --markdown`; do not edit by hand. -->",
        "",
        "Every key tunedeck understands, grouped by form pane. *Guide* is the section of the",
        "LLaMA-Factory parameter guide the default and advice come from. Environment variables",
        "(the last pane) are written in a config as top-level `ALL_CAPS` keys and exported to the",
        "run. Other transformers `TrainingArguments` keys are passed through unchecked.",
        "",
    ]
    for g in GROUPS:
        if group is not None and g.id != group:
            continue
        lines += [f"## {g.title} (`{g.id}`)", "", g.description, "",
                  "| name | type | default | allowed | help | guide advice |",
                  "|---|---|---|---|---|---|"]
        for p in params_in_group(g.id):
            name = f"`{p.name}`"
            if p.secret:
                name += " (secret)"
            if p.required:
                name += " (required)"
            allowed = _md(p.allowed) if p.allowed else ""
            advice = _md(p.advice or "")
            if p.guide:
                advice = (advice + f" (§{p.guide})").strip()
            help_text = _md(p.help)
            if p.aliases:
                help_text += f" Formerly: {', '.join(p.aliases)}."
            lines.append(f"| {name} | {p.type} | {_md_default(p)} | {allowed} | {help_text} | {advice} |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
