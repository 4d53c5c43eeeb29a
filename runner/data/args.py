"""The data-related config keys, read from a plain config dict with LLaMA-Factory's defaults.

No heavy imports. :meth:`DataArgs.from_values` checks what would otherwise fail deep inside
preprocessing (with LLaMA-Factory's wording where it has one) and raises
:class:`ConfigError` naming the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from tunedeck.runner.data.dataset_info import split_names
from tunedeck.runner.errors import ConfigError

STAGES = ("sft", "pt", "rm", "dpo", "kto")
MIX_STRATEGIES = {
    "concat": None,
    "interleave_under": "first_exhausted",
    "interleave_over": "all_exhausted",
    "interleave_once": "all_exhausted_without_replacement",
}

# Keys whose value changes the tokenized dataset: they feed the cache key.
CACHE_KEYS = (
    "dataset", "eval_dataset", "template", "cutoff_len", "train_on_prompt", "mask_history",
    "max_samples", "val_size", "eval_on_each_dataset", "mix_strategy", "interleave_probs",
    "packing", "neat_packing", "default_system", "enable_thinking", "preprocessing_batch_size",
)  # fmt: skip


def _bool(values: Mapping[str, Any], key: str, default: bool | None) -> bool | None:
    v = values.get(key, default)
    if v is None or isinstance(v, bool):
        return v
    if isinstance(v, str) and v.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return v.strip().lower() in ("true", "1", "yes")
    raise ConfigError(f"expected true or false, got {v!r}", key=key)


def _int(values: Mapping[str, Any], key: str, default: int | None, minimum: int | None = None) -> int | None:
    v = values.get(key, default)
    if v is None:
        return None
    try:
        if isinstance(v, bool) or (isinstance(v, float) and not v.is_integer()):
            raise ValueError
        iv = int(v)
    except (TypeError, ValueError):
        raise ConfigError(f"expected an integer, got {v!r}", key=key) from None
    if minimum is not None and iv < minimum:
        raise ConfigError(f"must be >= {minimum}, got {iv}", key=key)
    return iv


@dataclass(frozen=True)
class DataArgs:
    stage: str
    dataset: tuple[str, ...]
    eval_dataset: tuple[str, ...]
    dataset_dir: str = "data"
    template: str | None = None
    cutoff_len: int = 2048
    train_on_prompt: bool = False
    mask_history: bool = False
    max_samples: int | None = None
    val_size: float = 0.0
    eval_on_each_dataset: bool = False
    streaming: bool = False
    buffer_size: int = 16384
    mix_strategy: str = "concat"
    interleave_probs: tuple[float, ...] | None = None
    overwrite_cache: bool = False
    preprocessing_batch_size: int = 1000
    preprocessing_num_workers: int | None = None
    tokenized_path: str | None = None
    packing: bool = False              # effective: None -> True for pt; neat_packing forces it
    neat_packing: bool = False
    default_system: str | None = None
    enable_thinking: bool | None = True
    max_steps: int | None = None
    flash_attn: str = "auto"

    @property
    def encode_cutoff(self) -> int:
        """Budget for one encoded example: LLaMA-Factory packs into ``cutoff_len - 1`` tokens
        and pads every pack to exactly ``cutoff_len`` (always at least one pad)."""
        return self.cutoff_len - 1 if self.packing and self.stage == "sft" else self.cutoff_len

    @property
    def val_is_count(self) -> bool:
        return self.val_size >= 1 and float(self.val_size).is_integer()

    def cache_fields(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: d[k] for k in ("stage", *CACHE_KEYS)}

    @classmethod
    def from_values(cls, values: Mapping[str, Any], stage: str) -> DataArgs:
        if stage not in STAGES:
            raise ConfigError(f"stage {stage!r} has no data pipeline here", key="stage",
                              hint=f"one of {', '.join(STAGES)}")
        dataset = tuple(split_names(values.get("dataset")))
        eval_dataset = tuple(split_names(values.get("eval_dataset")))
        if not dataset and not values.get("tokenized_path"):
            raise ConfigError("no training dataset given", key="dataset",
                              hint="set `dataset:` to names from dataset_info.json")
        cutoff = _int(values, "cutoff_len", 2048, minimum=2)
        assert cutoff is not None
        streaming = bool(_bool(values, "streaming", False))
        neat, packing, train_on_prompt, mask_history = _masking_and_packing(values, stage)
        val_size = _val_size(values, eval_dataset, streaming)
        max_samples, max_steps = _limits(values, streaming)
        mix, probs = _mixing(values, dataset)

        enable_thinking = values.get("enable_thinking", True)
        if enable_thinking is not None:
            enable_thinking = _bool(values, "enable_thinking", True)
        return cls(
            stage=stage,
            dataset=dataset,
            eval_dataset=eval_dataset,
            dataset_dir=str(values.get("dataset_dir") or "data"),
            template=(str(values["template"]) if values.get("template") else None),
            cutoff_len=cutoff,
            train_on_prompt=train_on_prompt,
            mask_history=mask_history,
            max_samples=max_samples,
            val_size=val_size,
            eval_on_each_dataset=bool(_bool(values, "eval_on_each_dataset", False)),
            streaming=streaming,
            buffer_size=_int(values, "buffer_size", 16384, minimum=1) or 16384,
            mix_strategy=mix,
            interleave_probs=probs,
            overwrite_cache=bool(_bool(values, "overwrite_cache", False)),
            preprocessing_batch_size=_int(values, "preprocessing_batch_size", 1000, minimum=1) or 1000,
            preprocessing_num_workers=_int(values, "preprocessing_num_workers", None, minimum=1),
            tokenized_path=(str(values["tokenized_path"]) if values.get("tokenized_path") else None),
            packing=packing,
            neat_packing=neat,
            default_system=values.get("default_system"),
            enable_thinking=enable_thinking,
            max_steps=max_steps,
            flash_attn=str(values.get("flash_attn", "auto") or "auto"),
        )


def _masking_and_packing(values: Mapping[str, Any], stage: str) -> tuple[bool, bool, bool, bool]:
    """(neat_packing, packing, train_on_prompt, mask_history), checked against ``stage``."""
    neat = bool(_bool(values, "neat_packing", False))
    packing_raw = _bool(values, "packing", None)
    packing = bool(neat or (packing_raw if packing_raw is not None else stage == "pt"))
    train_on_prompt = bool(_bool(values, "train_on_prompt", False))
    mask_history = bool(_bool(values, "mask_history", False))
    if mask_history and train_on_prompt:
        raise ConfigError("`mask_history` is incompatible with `train_on_prompt`.", key="mask_history")
    if stage != "sft":
        for k, on in (("mask_history", mask_history), ("train_on_prompt", train_on_prompt),
                      ("neat_packing", neat)):
            if on:
                raise ConfigError(f"`{k}` is only valid for stage sft (stage is {stage}).", key=k)
        if packing and stage in ("rm", "dpo", "kto"):
            raise ConfigError(f"`packing` is not supported for stage {stage}.", key="packing")
    return neat, packing, train_on_prompt, mask_history


def _val_size(values: Mapping[str, Any], eval_dataset: tuple[str, ...], streaming: bool) -> float:
    """``val_size``: a fraction in [0, 1) or a whole count of examples."""
    vs = values.get("val_size", 0.0) or 0.0
    try:
        val_size = float(vs)
    except (TypeError, ValueError):
        raise ConfigError(f"expected a fraction or a count, got {vs!r}", key="val_size") from None
    if val_size < 0 or (val_size > 1 and not val_size.is_integer()):
        raise ConfigError(f"must be a fraction in [0, 1) or a whole count, got {vs!r}", key="val_size")
    if eval_dataset and val_size > 1e-6:
        raise ConfigError("Cannot specify `val_size` if `eval_dataset` is not None.", key="val_size")
    if streaming and val_size > 1e-6 and not float(val_size).is_integer():
        raise ConfigError("Streaming mode should have an integer val size.", key="val_size")
    return val_size


def _limits(values: Mapping[str, Any], streaming: bool) -> tuple[int | None, int | None]:
    """(max_samples, max_steps); a streamed dataset needs max_steps, takes no max_samples."""
    max_samples = _int(values, "max_samples", None, minimum=1)
    max_steps = _int(values, "max_steps", None)
    if max_steps is not None and max_steps <= 0:
        max_steps = None
    if streaming and max_steps is None:
        raise ConfigError("Please specify `max_steps` in streaming mode.", key="max_steps")
    if streaming and max_samples is not None:
        raise ConfigError("`max_samples` is incompatible with `streaming`.", key="max_samples")
    return max_samples, max_steps


def _mixing(values: Mapping[str, Any], dataset: tuple[str, ...]) -> tuple[str, tuple[float, ...] | None]:
    """(mix_strategy, interleave_probs) for several training datasets."""
    mix = str(values.get("mix_strategy", "concat") or "concat")
    if mix not in MIX_STRATEGIES:
        raise ConfigError(f"Unknown mixing strategy: {mix}.", key="mix_strategy",
                          hint=f"one of {', '.join(MIX_STRATEGIES)}")
    probs_raw = values.get("interleave_probs")
    probs: tuple[float, ...] | None = None
    if probs_raw not in (None, ""):
        try:
            probs = tuple(float(p) for p in split_names(probs_raw if isinstance(probs_raw, str)
                                                        else [str(x) for x in probs_raw]))
        except (TypeError, ValueError):
            raise ConfigError(f"expected a comma list of numbers, got {probs_raw!r}",
                              key="interleave_probs") from None
        if mix == "concat":
            raise ConfigError("`interleave_probs` is only valid for interleaved mixing.",
                              key="interleave_probs", hint="set mix_strategy: interleave_under")
        if len(probs) != len(dataset):
            raise ConfigError(
                f"`interleave_probs` has {len(probs)} value(s) for {len(dataset)} dataset(s)",
                key="interleave_probs")
        if abs(sum(probs) - 1.0) > 1e-6 or any(p < 0 for p in probs):
            raise ConfigError(f"`interleave_probs` must be non-negative and sum to 1, got {probs_raw!r}",
                              key="interleave_probs")
    return mix, probs
