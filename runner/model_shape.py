"""The shape of a LLaMA-type decoder, read from ``config.json`` or assumed from a size.

Used by the memory estimator and the triage engine. Reads JSON only: importing
transformers costs seconds and this runs on the control path.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tunedeck.runner.errors import ConfigError
from tunedeck.runner.fsutil import read_json

# The linear modules of one LLaMA decoder block, in the order peft sees them.
ATTN_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP_LINEARS = ("gate_proj", "up_proj", "down_proj")
BLOCK_LINEARS = ATTN_LINEARS + MLP_LINEARS


@dataclass(frozen=True)
class ModelShape:
    """Dimensions of a LLaMA-type causal LM and its exact parameter count."""

    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    tie_word_embeddings: bool
    attention_bias: bool       # Qwen2 has q/k/v biases; LLaMA has none
    total_params: int
    source: str                # "config.json at ..." or "assumed 7B llama shape (...)"
    model_type: str = "llama"
    num_experts: int = 0       # >0: a mixture-of-experts config (counted, not modelled in detail)
    torch_dtype: str | None = None   # config.json's dtype ("bfloat16", "float32"...); None: unknown

    @property
    def q_width(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_width(self) -> int:
        return self.num_kv_heads * self.head_dim

    def linear_dims(self) -> dict[str, tuple[int, int]]:
        """``{module: (in_features, out_features)}`` for one decoder block."""
        h, i = self.hidden_size, self.intermediate_size
        return {
            "q_proj": (h, self.q_width),
            "k_proj": (h, self.kv_width),
            "v_proj": (h, self.kv_width),
            "o_proj": (self.q_width, h),
            "gate_proj": (h, i),
            "up_proj": (h, i),
            "down_proj": (i, h),
        }

    def module_params(self) -> dict[str, int]:
        """Parameters per sub-module of one block (weights + biases, norms included)."""
        out: dict[str, int] = {}
        experts = max(1, self.num_experts)
        for name, (fan_in, fan_out) in self.linear_dims().items():
            n = fan_in * fan_out
            if self.attention_bias and name in ("q_proj", "k_proj", "v_proj"):
                n += fan_out
            if name in MLP_LINEARS:
                n *= experts
            out[name] = n
        out["input_layernorm"] = self.hidden_size
        out["post_attention_layernorm"] = self.hidden_size
        return out

    @property
    def layer_params(self) -> int:
        return sum(self.module_params().values())

    @property
    def block_linear_params(self) -> int:
        """Weights of every linear inside the blocks: what quantization shrinks."""
        mp = self.module_params()
        return self.num_layers * sum(mp[n] for n in BLOCK_LINEARS)

    @property
    def embed_params(self) -> int:
        return self.vocab_size * self.hidden_size

    @property
    def lm_head_params(self) -> int:
        return 0 if self.tie_word_embeddings else self.vocab_size * self.hidden_size

    @property
    def non_block_params(self) -> int:
        """Embeddings, final norm and lm_head: kept in 16 bits even under quantization."""
        return self.embed_params + self.lm_head_params + self.hidden_size


def count_params(
    *,
    hidden_size: int,
    num_layers: int,
    num_heads: int,
    num_kv_heads: int,
    head_dim: int,
    intermediate_size: int,
    vocab_size: int,
    tie_word_embeddings: bool,
    attention_bias: bool = False,
    num_experts: int = 0,
) -> int:
    shape = ModelShape(
        hidden_size, num_layers, num_heads, num_kv_heads, head_dim, intermediate_size,
        vocab_size, tie_word_embeddings, attention_bias, 0, "", num_experts=num_experts,
    )
    return shape.num_layers * shape.layer_params + shape.non_block_params


def _make(
    h: int, layers: int, heads: int, kv: int, inter: int, vocab: int, tied: bool,
    bias: bool, source: str, model_type: str = "llama", head_dim: int | None = None,
    experts: int = 0,
) -> ModelShape:
    hd = head_dim or h // heads
    total = count_params(
        hidden_size=h, num_layers=layers, num_heads=heads, num_kv_heads=kv, head_dim=hd,
        intermediate_size=inter, vocab_size=vocab, tie_word_embeddings=tied,
        attention_bias=bias, num_experts=experts,
    )
    return ModelShape(h, layers, heads, kv, hd, inter, vocab, tied, bias, total, source,
                      model_type, experts)


# Reference shapes for a size given as "7B" or read from a model name. Values are the
# published configs of the model named in each entry (hidden, layers, heads, kv heads,
# intermediate, vocab, tied embeddings, q/k/v bias).
_QWEN = {
    0.5: ("Qwen2.5-0.5B", 896, 24, 14, 2, 4864, 151936, True, True),
    1.5: ("Qwen2.5-1.5B", 1536, 28, 12, 2, 8960, 151936, True, True),
    3.0: ("Qwen2.5-3B", 2048, 36, 16, 2, 11008, 151936, True, True),
    7.0: ("Qwen2.5-7B", 3584, 28, 28, 4, 18944, 152064, False, True),
    14.0: ("Qwen2.5-14B", 5120, 48, 40, 8, 13824, 152064, False, True),
    32.0: ("Qwen2.5-32B", 5120, 64, 40, 8, 27648, 152064, False, True),
    72.0: ("Qwen2.5-72B", 8192, 80, 64, 8, 29568, 152064, False, True),
}
_LLAMA = {
    1.0: ("Llama-3.2-1B", 2048, 16, 32, 8, 8192, 128256, True, False),
    3.0: ("Llama-3.2-3B", 3072, 28, 24, 8, 8192, 128256, True, False),
    7.0: ("Llama-2-7B", 4096, 32, 32, 32, 11008, 32000, False, False),
    8.0: ("Llama-3-8B", 4096, 32, 32, 8, 14336, 128256, False, False),
    13.0: ("Llama-2-13B", 5120, 40, 40, 40, 13824, 32000, False, False),
    70.0: ("Llama-3-70B", 8192, 80, 64, 8, 28672, 128256, False, False),
}
# Any other name: LLaMA where LLaMA has that size, else the Qwen2.5 shape (same block).
_GENERIC = {
    0.5: _QWEN[0.5], 1.5: _QWEN[1.5], 3.0: _QWEN[3.0], 7.0: _LLAMA[7.0], 8.0: _LLAMA[8.0],
    13.0: _LLAMA[13.0], 14.0: _QWEN[14.0], 32.0: _QWEN[32.0], 70.0: _LLAMA[70.0],
    72.0: _QWEN[72.0],
}
REFERENCE_SIZES: tuple[float, ...] = tuple(sorted(_GENERIC))

_SIZE_RE = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)\s*([bBmM])(?![a-zA-Z])")


def parse_size(value: str | float | int) -> float:
    """``"7B"`` / ``"1.5b"`` / ``"500M"`` / ``7e9`` / ``7`` -> size in billions of params."""
    if isinstance(value, (int, float)):
        v = float(value)
        return v / 1e9 if v >= 1e4 else v
    text = str(value).strip()
    m = re.fullmatch(r"(\d+(?:\.\d+)?(?:[eE]\d+)?)\s*([bBmMkK]?)", text)
    if not m:
        raise ConfigError(
            f"cannot read a model size from {value!r}",
            key="--params",
            hint="write it like 7B, 1.5B, 500M or 7e9",
        )
    num, unit = float(m.group(1)), m.group(2).lower()
    if unit == "m":
        return num / 1000
    if unit == "k":
        return num / 1e6
    if unit == "b":
        return num
    return num / 1e9 if num >= 1e4 else num


def size_from_name(name: str) -> float | None:
    """The size written in a model name, e.g. ``Qwen2.5-7B-Instruct`` -> 7.0."""
    base = Path(str(name).rstrip("/")).name
    best: float | None = None
    for m in _SIZE_RE.finditer(base):
        v = float(m.group(1))
        if m.group(2).lower() == "m":
            v /= 1000
        # "Qwen2.5-7B": the first match that is a plausible size wins; skip "x8" etc.
        if 0.01 <= v <= 2000:
            best = v
            break
    return best


def assumed_shape(size_b: float, name: str = "") -> ModelShape:
    """A LLaMA-shaped model of ``size_b`` billion params, from the reference table.

    The table entry of the nearest size is used; if the size is not in the table the
    layer count is scaled so the total lands on the requested size.
    """
    if size_b <= 0:
        raise ConfigError(f"model size must be positive, got {size_b}B", key="--params")
    lname = name.lower()
    table = _QWEN if "qwen" in lname else _LLAMA if "llama" in lname else _GENERIC
    nearest = min(table, key=lambda s: abs(math.log(s / size_b)))
    ref, h, layers, heads, kv, inter, vocab, tied, bias = table[nearest]
    mtype = "qwen2" if ref.startswith("Qwen") else "llama"
    shape = _make(h, layers, heads, kv, inter, vocab, tied, bias, "", mtype)
    label = f"{size_b:g}B"
    if abs(shape.total_params / 1e9 - size_b) / size_b > 0.15:
        # Not a tabled size: keep the block shape, scale the depth.
        per_layer = shape.layer_params
        want_layers = max(1, round((size_b * 1e9 - shape.non_block_params) / per_layer))
        shape = _make(h, want_layers, heads, kv, inter, vocab, tied, bias, "", mtype)
        src = f"assumed {label} llama shape ({ref} block, {want_layers} layers)"
    else:
        src = f"assumed {label} llama shape ({ref})"
    return replace(shape, source=src)


def _text_config(cfg: dict[str, Any]) -> dict[str, Any]:
    # Multimodal configs nest the language model's config.
    for key in ("text_config", "llm_config", "language_config"):
        sub = cfg.get(key)
        if isinstance(sub, dict) and sub.get("hidden_size"):
            return sub
    return cfg


def shape_from_config(config: dict[str, Any], source: str) -> ModelShape:
    """Build a :class:`ModelShape` from a parsed ``config.json``."""
    cfg = _text_config(config)

    def need(*keys: str) -> int:
        for k in keys:
            v = cfg.get(k)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0:
                return int(v)
        raise ConfigError(
            f"config.json has no {keys[0]}; cannot size the model",
            file=source,
            key="model_name_or_path",
            hint="pass --params 7B to assume a LLaMA shape of that size",
        )

    h = need("hidden_size", "n_embd", "d_model")
    layers = need("num_hidden_layers", "n_layer", "num_layers")
    heads = need("num_attention_heads", "n_head")
    kv = int(cfg.get("num_key_value_heads") or heads)
    inter = int(cfg.get("intermediate_size") or cfg.get("ffn_hidden_size") or 4 * h)
    vocab = need("vocab_size")
    head_dim = int(cfg.get("head_dim") or h // heads)
    tied = bool(cfg.get("tie_word_embeddings", config.get("tie_word_embeddings", False)))
    mtype = str(cfg.get("model_type") or config.get("model_type") or "llama")
    bias = bool(cfg.get("attention_bias", mtype.startswith("qwen2")))
    experts = int(cfg.get("num_local_experts") or cfg.get("num_experts") or 0)
    if experts and cfg.get("moe_intermediate_size"):
        inter = int(cfg["moe_intermediate_size"])
    dtype = cfg.get("torch_dtype") or cfg.get("dtype") or config.get("torch_dtype") \
        or config.get("dtype")
    shape = _make(h, layers, heads, kv, inter, vocab, tied, bias, source, mtype, head_dim, experts)
    return replace(shape, torch_dtype=str(dtype) if isinstance(dtype, str) else None)


def resolve_shape(
    model: str | None,
    *,
    params: str | float | None = None,
    config_dir: Path | None = None,
) -> ModelShape:
    """Shape of the model a config names.

    Order: ``params`` (explicit size) wins; else a local ``config.json`` under the
    model path; else a size written in the model name; else a ConfigError that says
    to pass ``--params``.
    """
    if params is not None:
        try:
            size = parse_size(params)
            name = model or ""
        except ConfigError:
            # "--params Qwen2.5-7B": a model name that carries its size (and family).
            named = size_from_name(str(params))
            if named is None:
                raise
            size, name = named, str(params)
        return assumed_shape(size, name)
    if model:
        for base in _candidates(model, config_dir):
            cfg_path = base / "config.json"
            if cfg_path.is_file():
                data = read_json(cfg_path)
                if not isinstance(data, dict):
                    raise ConfigError("config.json is not a JSON object", file=cfg_path,
                                      key="model_name_or_path")
                return shape_from_config(data, f"config.json at {cfg_path}")
        named = size_from_name(model)
        if named is not None:
            return assumed_shape(named, model)
    raise ConfigError(
        f"cannot tell the size of model {model!r}: no local config.json and no size in its name",
        key="model_name_or_path",
        hint="pass --params 7B (or the size of your model)",
    )


def _candidates(model: str, config_dir: Path | None) -> list[Path]:
    p = Path(model).expanduser()
    out = [p]
    if not p.is_absolute() and config_dir is not None:
        out.append(config_dir / p)
    return out
