"""GPU memory estimate for a LLaMA-Factory-style config, per component, per GPU.

The guide's formula (section 9.2: weights + optimizer states + activations +
framework overhead), made precise along the lines of the research notes
(reference/training_stack.md section 5):

* parameters counted exactly from ``config.json`` (or a reference shape of the size);
* bytes per parameter by method, precision, ``pure_bf16`` and quantization;
* gradients and optimizer states only for trainable parameters;
* activations per token per layer for LLaMA blocks, with/without gradient
  checkpointing, flash/sdpa vs eager attention, Liger kernels;
* the logits buffer (vocab x tokens, fp32 upcast for the loss);
* DeepSpeed ZeRO-1/2/3 sharding by world size and CPU offload.

Everything here is arithmetic on plain values: no torch, no transformers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunedeck.runner.config.yamlio import split_list
from tunedeck.runner.errors import ConfigError
from tunedeck.runner.fsutil import read_json
from tunedeck.runner.model_shape import (
    BLOCK_LINEARS,
    MLP_LINEARS,
    ModelShape,
    resolve_shape,
)

GiB = 1024**3
MiB = 1024**2

# CUDA context, cuBLAS/cuDNN workspaces and allocator slack: the guide's 9.2 table puts
# "framework overhead" at 1-2 GB (1.5 GB in its 7B example); measured CUDA contexts
# alone are 0.3-2 GiB depending on the driver and the kernels loaded.
FRAMEWORK_OVERHEAD = 1.5 * GiB
NCCL_OVERHEAD = 0.5 * GiB   # communicator buffers once there is more than one rank

@dataclass(frozen=True)
class Component:
    """One line of the estimate: what holds memory, how much per GPU, and why."""

    name: str
    bytes: float
    note: str


@dataclass(frozen=True)
class LevelOutcome:
    """One of the guide's 9.3 optimisation levels, applied on top of the previous ones."""

    level: int
    title: str
    patch: dict[str, Any]
    per_gpu_bytes: float
    fits: bool | None


@dataclass(frozen=True)
class MemoryEstimate:
    shape: ModelShape
    trainable_params: int
    components: tuple[Component, ...]
    per_gpu_bytes: float
    num_gpus: int
    gpu_mem_bytes: float | None
    fits: bool | None
    headroom_bytes: float | None
    levels: tuple[LevelOutcome, ...]
    assumptions: tuple[str, ...]
    gpu_source: str = "unknown"   # "--gpu-mem", "detected (NVML)", or "unknown"

    def component(self, name: str) -> Component | None:
        for c in self.components:
            if c.name == name:
                return c
        return None

    @property
    def fitting_level(self) -> LevelOutcome | None:
        """The first optimisation level (cumulative) whose estimate fits, if any."""
        for lv in self.levels:
            if lv.fits:
                return lv
        return None

    def verdict(self) -> str:
        """One sentence: fits / does not fit, with headroom, and the level that helps."""
        if self.gpu_mem_bytes is None:
            return (f"needs ~{format_bytes(self.per_gpu_bytes)} per GPU; "
                    "no GPU detected; pass --gpu-mem GiB for a verdict")
        gpu = format_bytes(self.gpu_mem_bytes)
        if self.fits:
            return (f"fits: ~{format_bytes(self.per_gpu_bytes)} of {gpu} per GPU "
                    f"({format_bytes(self.headroom_bytes or 0)} headroom)")
        short = format_bytes(-(self.headroom_bytes or 0))
        msg = (f"does not fit: ~{format_bytes(self.per_gpu_bytes)} needed per GPU, {gpu} "
               f"available ({short} short)")
        lv = self.fitting_level
        if lv is not None:
            msg += (f"; the guide's 9.3 levels up to {lv.title!r} would bring it to "
                    f"~{format_bytes(lv.per_gpu_bytes)}")
        elif self.levels:
            msg += "; even the guide's level 4 does not fit: more GPUs or a smaller model"
        return msg

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        d = asdict(self)
        d["verdict"] = self.verdict()
        return d


def format_bytes(b: float | int | None) -> str:
    """``15246000000`` -> ``"14.2 GiB"`` (binary units, one decimal)."""
    if b is None:
        return "?"
    v = float(b)
    sign = "-" if v < 0 else ""
    v = abs(v)
    if v >= GiB:
        return f"{sign}{v / GiB:.1f} GiB"
    if v >= MiB:
        return f"{sign}{v / MiB:.1f} MiB"
    if v >= 1024:
        return f"{sign}{v / 1024:.1f} KiB"
    return f"{sign}{v:.0f} B"


# -----------------------------------------------------------------------------------
# Settings: the handful of config values the estimate depends on, normalised.
# -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeepSpeedPlan:
    stage: int
    offload_optimizer: bool
    offload_param: bool
    source: str


@dataclass
class _Notes:
    items: list[str] = field(default_factory=list)

    def add(self, text: str) -> None:
        if text not in self.items:
            self.items.append(text)


def _bool(v: Any) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in ("1", "true", "yes", "on")
    return bool(v)


def _int(v: Any, default: int) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return default


def with_defaults(values: Mapping[str, Any]) -> dict[str, Any]:
    """The config with the schema's defaults filled in (a ``null`` counts as unset)."""
    from tunedeck.runner.config.schema import apply_defaults, fill_null_defaults

    try:
        out = dict(apply_defaults(dict(values)))
    except (TypeError, ValueError, ConfigError):
        out = dict(values)
    return fill_null_defaults(out)


_SAMPLE_DIR = Path(__file__).resolve().parents[1] / "sample_configs"


def _find_ds_file(ref: str, config_dir: Path | None) -> Path | None:
    p = Path(ref).expanduser()
    cands = [p]
    if not p.is_absolute():
        if config_dir is not None:
            cands.append(config_dir / p)
        cands.append(_SAMPLE_DIR / p)
    for c in cands:
        if c.is_file():
            return c
    # LLaMA-Factory's examples say "examples/deepspeed/ds_z3_config.json"; ours live in
    # sample_configs/: match on the file name.
    if _SAMPLE_DIR.is_dir():
        for hit in sorted(_SAMPLE_DIR.rglob(p.name)):
            if hit.is_file():
                return hit
    return None


def deepspeed_plan(values: Mapping[str, Any], config_dir: Path | None,
                   notes: _Notes | None = None) -> DeepSpeedPlan | None:
    """Read the ZeRO stage and offload settings from ``deepspeed`` (file or inline)."""
    notes = notes if notes is not None else _Notes()
    ref = values.get("deepspeed")
    inline = values.get("deepspeed_config")   # the guide's 9.3 level-4 inline form
    data: Any = None
    source = ""
    if isinstance(ref, Mapping):
        data, source = ref, "inline deepspeed mapping"
    elif isinstance(ref, str) and ref.strip():
        found = _find_ds_file(ref.strip(), config_dir)
        if found is not None:
            data = read_json(found)
            source = str(found)
            if not isinstance(data, Mapping):
                raise ConfigError("DeepSpeed config is not a JSON object", file=found,
                                  key="deepspeed")
        else:
            # Missing file: infer from its name (ds_z3_offload_config.json) and say so.
            name = Path(ref).name.lower()
            m = re.search(r"z(?:ero)?[_-]?([0-3])", name)
            stage = int(m.group(1)) if m else 2
            off = "offload" in name
            notes.add(f"DeepSpeed file {ref} not found; assumed ZeRO-{stage}"
                      f"{' with CPU offload' if off else ''} from its name")
            return DeepSpeedPlan(stage, off, off and stage == 3, f"{ref} (by name)")
    if data is None and isinstance(inline, Mapping):
        data, source = inline, "inline deepspeed_config"
    if data is None:
        return None
    zo = data.get("zero_optimization") or {}
    if not isinstance(zo, Mapping):
        zo = {}
    stage = _int(zo.get("stage", 0), 0)

    def _off(key: str, legacy: str) -> bool:
        blk = zo.get(key)
        if isinstance(blk, Mapping):
            return str(blk.get("device", "none")).lower() in ("cpu", "nvme")
        return _bool(zo.get(legacy, False))

    off_opt = _off("offload_optimizer", "cpu_offload")
    off_par = stage == 3 and _off("offload_param", "cpu_offload_params")
    return DeepSpeedPlan(stage, off_opt, off_par, source)


# -----------------------------------------------------------------------------------
# Trainable parameters
# -----------------------------------------------------------------------------------


def lora_targets(values: Mapping[str, Any], shape: ModelShape, notes: _Notes | None = None
                 ) -> list[str]:
    """The block linears LoRA wraps: ``all`` = every linear in the blocks (not lm_head)."""
    notes = notes if notes is not None else _Notes()
    raw = split_list(values.get("lora_target", "all")) or ["all"]
    if any(t.lower() == "all" for t in raw):
        return list(BLOCK_LINEARS)
    out: list[str] = []
    for t in raw:
        name = t.split(".")[-1]
        if name in BLOCK_LINEARS:
            if name not in out:
                out.append(name)
        else:
            notes.add(f"lora_target {t!r} is not a linear of a LLaMA block; not counted")
    return out


def lora_trainable(shape: ModelShape, targets: list[str], rank: int, *, dora: bool = False
                   ) -> int:
    """Exact LoRA parameter count: ``r*(in+out)`` per target per layer (+ DoRA magnitudes)."""
    dims = shape.linear_dims()
    per_layer = 0
    experts = max(1, shape.num_experts)
    for t in targets:
        fan_in, fan_out = dims[t]
        n = rank * (fan_in + fan_out) + (fan_out if dora else 0)
        per_layer += n * (experts if t in MLP_LINEARS else 1)
    return per_layer * shape.num_layers


def _extra_module_params(shape: ModelShape, names: list[str], notes: _Notes, key: str) -> int:
    total = 0
    for name in names:
        n = name.split(".")[-1]
        if n in ("embed_tokens", "wte", "word_embeddings"):
            total += shape.embed_params
        elif n in ("lm_head", "output"):
            total += shape.lm_head_params or shape.embed_params
        elif n in ("norm", "final_layernorm", "ln_f"):
            total += shape.hidden_size
        else:
            notes.add(f"{key} {name!r} is not a module tunedeck knows on a LLaMA model; "
                      "not counted")
    return total


def freeze_trainable(values: Mapping[str, Any], shape: ModelShape, notes: _Notes) -> int:
    """Parameters left trainable by ``finetuning_type: freeze``."""
    n = _int(values.get("freeze_trainable_layers", 2), 2)
    layers = min(abs(n), shape.num_layers) if n else 0
    mods = split_list(values.get("freeze_trainable_modules", "all")) or ["all"]
    mp = shape.module_params()
    if any(m.lower() == "all" for m in mods):
        per_layer = shape.layer_params
    else:
        per_layer = 0
        for m in mods:
            if m == "self_attn":
                per_layer += sum(mp[k] for k in ("q_proj", "k_proj", "v_proj", "o_proj"))
            elif m == "mlp":
                per_layer += sum(mp[k] for k in MLP_LINEARS)
            elif m.split(".")[-1] in mp:
                per_layer += mp[m.split(".")[-1]]
            else:
                notes.add(f"freeze_trainable_modules {m!r} is not a LLaMA block module; "
                          "not counted")
    extra = _extra_module_params(shape, split_list(values.get("freeze_extra_modules")), notes,
                                 "freeze_extra_modules")
    return layers * per_layer + extra


# -----------------------------------------------------------------------------------
# The estimate
# -----------------------------------------------------------------------------------


def _optimizer_states(optim: str, values: Mapping[str, Any]) -> tuple[float, float, str]:
    """(number of states per param, bytes per state or 0 = param dtype, label)."""
    o = optim.lower()
    if _bool(values.get("use_adam_mini")):
        return 1.0, 0, "Adam-mini (one moment per param, second moment per block)"
    if "8bit" in o:
        return 2.0, 1, f"{optim}: two 8-bit moments"
    if o.startswith("sgd"):
        return 0.0, 0, "SGD without momentum: no state"
    if "adafactor" in o:
        return 0.05, 4, "Adafactor: factored second moment (approx.)"
    if "lion" in o:
        return 1.0, 0, "Lion: one moment"
    return 2.0, 0, f"{optim}: two moments (m, v)"


def _low_rank_states(shape: ModelShape, targets_raw: Any, rank: int) -> tuple[int, int]:
    """(params covered by GaLore/APOLLO, elements of their projected states per moment)."""
    names = split_list(targets_raw) or ["all"]
    if any(n.lower() == "all" for n in names):
        mods = list(BLOCK_LINEARS)
    else:
        mods = [n.split(".")[-1] for n in names if n.split(".")[-1] in BLOCK_LINEARS]
        if any(n in ("mlp", "self_attn") for n in names):
            mods += [m for m in BLOCK_LINEARS
                     if ("mlp" in names and m in MLP_LINEARS)
                     or ("self_attn" in names and m not in MLP_LINEARS)]
    covered = 0
    projected = 0
    for m in dict.fromkeys(mods):
        fan_in, fan_out = shape.linear_dims()[m]
        covered += fan_in * fan_out
        projected += min(rank, fan_in, fan_out) * max(fan_in, fan_out)
    return covered * shape.num_layers, projected * shape.num_layers


def estimate(
    values: Mapping[str, Any],
    *,
    config_dir: Path | None = None,
    num_gpus: int | None = None,
    gpu_mem_gib: float | None = None,
    params: str | float | None = None,
    detect_gpus: bool = True,
    with_levels: bool = True,
) -> MemoryEstimate:
    """Estimate peak GPU memory per GPU for training with the config ``values``.

    ``gpu_mem_gib`` sets the card size (else NVML is asked when ``detect_gpus``);
    ``num_gpus`` the world size (else the detected GPU count, else 1); ``params`` a
    model size such as ``"7B"`` when the model's ``config.json`` is not local.
    """
    gpu_mem_bytes: float | None = gpu_mem_gib * GiB if gpu_mem_gib else None
    gpu_source = "--gpu-mem" if gpu_mem_bytes else "unknown"
    detected_n = 0
    if detect_gpus and (gpu_mem_bytes is None or num_gpus is None):
        det = detect_gpu_memory()
        if det is not None:
            detected_n, detected_mem = det
            if gpu_mem_bytes is None:
                n_used = min(num_gpus or detected_n, detected_n)
                gpu_mem_bytes = min(detected_mem[:n_used])
                gpu_source = "detected (NVML)"
    n = max(1, int(num_gpus if num_gpus is not None else (detected_n or 1)))

    base = _estimate_core(values, config_dir=config_dir, num_gpus=n, params=params,
                          detected_n=detected_n if num_gpus is None else 0)
    shape, trainable, comps, notes = base
    total = sum(c.bytes for c in comps)
    fits = None if gpu_mem_bytes is None else total <= gpu_mem_bytes
    headroom = None if gpu_mem_bytes is None else gpu_mem_bytes - total

    levels: list[LevelOutcome] = []
    if with_levels:
        cumulative: dict[str, Any] = dict(values)
        for lv in optimization_levels():
            cumulative = _apply_level(cumulative, lv.patch)
            try:
                _, _, lcomps, _ = _estimate_core(cumulative, config_dir=config_dir,
                                                 num_gpus=n, params=params, detected_n=0)
            except ConfigError:
                continue
            lt = sum(c.bytes for c in lcomps)
            levels.append(LevelOutcome(lv.level, lv.title, dict(lv.patch), lt,
                                       None if gpu_mem_bytes is None else lt <= gpu_mem_bytes))
    return MemoryEstimate(
        shape=shape,
        trainable_params=trainable,
        components=tuple(comps),
        per_gpu_bytes=total,
        num_gpus=n,
        gpu_mem_bytes=gpu_mem_bytes,
        fits=fits,
        headroom_bytes=headroom,
        levels=tuple(levels),
        assumptions=tuple(notes.items),
        gpu_source=gpu_source,
    )


@dataclass
class _Setup:
    """What every memory component is computed from: the config with defaults, the model
    shape, dtypes, the fine-tuning method, DeepSpeed and the trainable parameter count."""

    v: dict[str, Any]
    shape: ModelShape
    notes: _Notes
    world: int
    stage: str = "sft"
    ft: str = "lora"
    pure_bf16: bool = False
    bf16: bool = False
    fp16: bool = False
    cb: int = 2                     # bytes of the dtype the model is loaded in
    act_b: int = 2                  # bytes per activation element
    qbits: int = 0
    ds: Any = None                  # DeepSpeedPlan | None
    zero: int = -1
    use_galore: bool = False
    use_apollo: bool = False
    use_badam: bool = False
    targets: list[str] = field(default_factory=list)
    trainable: int = 0
    upcast: bool = False            # trainable params stored in fp32
    tw: int = 2                     # bytes per trainable weight
    grad_params: int = 0

    @property
    def mixed(self) -> bool:
        return (self.bf16 or self.fp16) and not self.pure_bf16

    @property
    def half(self) -> bool:
        return self.bf16 or self.fp16


def _setup(values_in: Mapping[str, Any], *, config_dir: Path | None, num_gpus: int,
           params: str | float | None, detected_n: int) -> _Setup:
    notes = _Notes()
    v = with_defaults(values_in)
    shape = resolve_shape(v.get("model_name_or_path"), params=params, config_dir=config_dir)
    if shape.source.startswith("assumed"):
        notes.add(f"model shape {shape.source}: {shape.total_params / 1e9:.2f}B params")
    if shape.num_experts:
        notes.add(f"mixture of experts ({shape.num_experts} experts): every expert's weights "
                  "counted; activations counted as one dense MLP (approximate)")
    if detected_n:
        notes.add(f"{detected_n} GPU(s) detected: assumed all of them train (pass --num-gpus)")
    if _bool(v.get("use_cpu")):
        notes.add("use_cpu is set: this run trains on the CPU; the figures are what one GPU "
                  "would need")
    s = _Setup(v, shape, notes, num_gpus)
    s.stage = str(v.get("stage", "sft")).lower()
    s.ft = str(v.get("finetuning_type", "lora")).lower()
    if s.ft == "oft":
        notes.add("OFT sized like LoRA of the same rank (approximate)")
        s.ft = "lora"
    _set_dtypes(s)
    qbits = v.get("quantization_bit")
    s.qbits = _int(qbits, 0) if qbits not in (None, "", False) else 0
    if s.qbits and s.ft != "lora":
        notes.add(f"quantization_bit {s.qbits} ignored: LLaMA-Factory allows quantization only "
                  "with LoRA/OFT (use QLoRA)")
        s.qbits = 0
    s.ds = deepspeed_plan(v, config_dir, notes)
    s.zero = s.ds.stage if s.ds else -1
    s.use_galore = _bool(v.get("use_galore")) and s.ft == "full"
    s.use_apollo = _bool(v.get("use_apollo")) and s.ft == "full"
    s.use_badam = _bool(v.get("use_badam")) and s.ft == "full"
    _set_trainable(s)
    return s


def _set_dtypes(s: _Setup) -> None:
    v = s.v
    s.pure_bf16 = _bool(v.get("pure_bf16"))
    s.bf16 = _bool(v.get("bf16")) or s.pure_bf16
    s.fp16 = _bool(v.get("fp16")) and not s.bf16
    # Bytes of the dtype the model is loaded in (frozen weights, activations). Without
    # bf16/fp16, LLaMA-Factory still loads the model in its own 16-bit dtype on a GPU
    # (infer_optim_dtype) and trains without autocast; only an fp32 checkpoint stays fp32.
    if s.half:
        s.cb = 2
    elif str(s.shape.torch_dtype or "").lower() in ("float32", "fp32"):
        s.cb = 4
        s.notes.add("neither bf16 nor fp16 set and the checkpoint is float32: weights and "
                    "activations in fp32")
    else:
        s.cb = 2
        s.notes.add("neither bf16 nor fp16 set: the model loads in its 16-bit dtype (as "
                    "LLaMA-Factory does on a GPU) and trains without autocast")
    # Full fine-tuning without autocast computes with the fp32-upcast weights.
    s.act_b = 4 if (s.ft == "full" and not s.half and not use_badam_flag(v)) else s.cb


def _set_trainable(s: _Setup) -> None:
    """Trainable parameters, their storage dtype, and how many carry gradients."""
    v, shape = s.v, s.shape
    if s.ft == "full":
        s.trainable = shape.total_params
    elif s.ft == "freeze":
        s.trainable = freeze_trainable(v, shape, s.notes)
    else:
        rank = _int(v.get("lora_rank", 8), 8)
        s.targets = lora_targets(v, shape, s.notes)
        s.trainable = lora_trainable(shape, s.targets, rank, dora=_bool(v.get("use_dora")))
        add = split_list(v.get("additional_target"))
        if add:
            s.trainable += _extra_module_params(shape, add, s.notes, "additional_target")
    # Trainable parameter storage dtype: LLaMA-Factory upcasts trainable params to fp32
    # unless pure_bf16, BAdam, or ZeRO-3 without quantization.
    s.upcast = (s.cb == 2 and not s.pure_bf16 and not s.use_badam
                and not (s.zero == 3 and not s.qbits))
    if s.ds is not None and s.half:
        s.upcast = False    # DeepSpeed keeps the module in the compute dtype (fp32 master in optim)
    s.tw = 4 if (s.upcast or s.cb == 4) else 2
    s.grad_params = _badam_active(v, shape) if s.use_badam else s.trainable


def _base_weights(s: _Setup) -> tuple[float, str]:
    """Bytes and description of the frozen (or quantized) base weights."""
    v, shape, cb = s.v, s.shape, s.cb
    P = shape.total_params
    if s.ft == "lora" and s.qbits:
        method = str(v.get("quantization_method", "bnb")).lower()
        if s.qbits == 4 and method == "bnb":
            consts = 0.127 if _bool(v.get("double_quantization", True)) else 0.5
        elif s.qbits == 8:
            consts = 32.0 / shape.hidden_size   # one fp32 scale per row
        else:
            consts = 0.5
        qbytes = (s.qbits + consts) / 8
        q_params = shape.block_linear_params
        s.notes.add(f"{s.qbits}-bit quantization: quantization constants at {consts:.3g} bits/param"
                    + (" (double quantization)" if s.qbits == 4 and consts < 0.2 else ""))
        return (q_params * qbytes + (P - q_params) * cb,
                f"{q_params / 1e9:.2f}B block linears at {s.qbits}-bit "
                f"(+{consts:.3g} bits/param quantization constants), "
                f"{(P - q_params) / 1e9:.2f}B embeddings/norms/lm_head at {cb * 8}-bit")
    frozen = P - s.trainable if s.ft != "lora" else P
    return frozen * cb, (f"{frozen / 1e9:.2f}B frozen params at {cb * 8}-bit" if s.ft != "full" else "")


def _weights(s: _Setup) -> list[Component]:
    base_bytes, wnote = _base_weights(s)
    if s.ft == "full":
        wnote = f"{s.shape.total_params / 1e9:.2f}B params at {s.tw * 8}-bit" + (
            " (trainable params upcast to fp32)" if s.upcast else "")
    elif s.trainable:
        wnote += f"; {s.trainable / 1e6:.1f}M trainable at {s.tw * 8}-bit"
    # LoRA: the base weights stay and adapters (and modules_to_save copies) add on top;
    # full/freeze: frozen part plus trainable part.
    weights_bytes = base_bytes + s.trainable * s.tw
    ws_note = ""
    if s.zero == 3:
        # Parameters are partitioned; each rank gathers a couple of layers at a time.
        gather = 2 * s.shape.layer_params * s.cb
        if s.ds and s.ds.offload_param:
            weights_bytes = gather
            ws_note = " ZeRO-3 offload_param: weights live in CPU memory; GPU holds ~2 gathered layers"
        else:
            weights_bytes = weights_bytes / s.world + gather
            ws_note = f" ZeRO-3: sharded over {s.world} GPU(s) + ~2 gathered layers"
    out = [Component("weights", weights_bytes, (wnote + ws_note).strip())]
    if s.mixed and s.upcast and s.trainable:
        # torch.autocast caches a 16-bit copy of every fp32 leaf weight it casts during the
        # forward; autograd keeps them until backward. This is where 18 bytes/param comes from.
        out.append(Component("autocast weight copies", s.trainable * 2,
                             "16-bit copies of fp32 trainable weights cached by autocast"))
    return out


def _gradients(s: _Setup) -> list[Component]:
    v = s.v
    gnote = f"{s.trainable / 1e6:,.1f}M trainable params"
    if s.use_badam:
        gnote = f"BAdam: only the active block ({s.grad_params / 1e6:,.1f}M params) has gradients"
        s.notes.add("BAdam: gradients and optimizer states for the active block only "
                    "(approximate)")
    gbytes_per = 2 if s.ds is not None and s.half else s.tw
    grad_bytes = float(s.grad_params * gbytes_per)
    if (s.use_galore and _bool(v.get("galore_layerwise"))) or (
            s.use_apollo and _bool(v.get("apollo_layerwise"))):
        grad_bytes = float(s.shape.layer_params * gbytes_per)
        gnote = "layer-wise update: gradients of ~one layer at a time"
    if s.zero >= 2:
        grad_bytes /= s.world
        gnote += f"; ZeRO-{s.zero} sharded over {s.world} GPU(s)"
    return [Component("gradients", grad_bytes, f"{gnote} at {gbytes_per * 8}-bit")]


def _optimizer(s: _Setup) -> list[Component]:
    v = s.v
    n_states, sbytes, olabel = _optimizer_states(str(v.get("optim", "adamw_torch")), v)
    state_b = sbytes or (4 if s.ds is not None else s.tw)
    opt_bytes = s.grad_params * n_states * state_b
    onote = olabel
    if s.use_galore or s.use_apollo:
        which = "galore" if s.use_galore else "apollo"
        rank = _int(v.get(f"{which}_rank", 16), 16)
        covered, projected = _low_rank_states(s.shape, v.get(f"{which}_target", "all"), rank)
        opt_bytes = ((s.trainable - covered) + projected) * n_states * state_b
        if s.use_galore:
            # GaLore stores its projection matrices: rank x min(in, out) per covered matrix.
            # (APOLLO regenerates its random projection from a seed.)
            opt_bytes += _projector_elems(s.shape, v.get("galore_target", "all"), rank) * 4
        onote = (f"{which.upper()} rank {rank}: moments of {covered / 1e9:.2f}B params kept in "
                 f"a rank-{rank} projection (approximate)")
        s.notes.add(f"{which.upper()}: optimizer state from the rank-{rank} projection; "
                    "approximate")
    if s.ds is not None:
        master = 4 * s.grad_params if s.half else 0
        opt_bytes += master
        if master:
            onote += " + fp32 master copy"
    if s.ds is not None and s.ds.offload_optimizer:
        opt_bytes = 0.0
        onote += "; offloaded to CPU"
    elif s.zero >= 1:
        opt_bytes /= s.world
        onote += f"; ZeRO-{s.zero} sharded over {s.world} GPU(s)"
    return [Component("optimizer states", opt_bytes, onote)]


def _other_models(s: _Setup) -> list[Component]:
    """Reference model (DPO/KTO with full/freeze) and PPO's reward model."""
    v, P = s.v, s.shape.total_params
    out = []
    if s.stage in ("dpo", "kto") and s.ft != "lora" and str(v.get("pref_loss")) not in (
            "orpo", "simpo"):
        rq = _int(v.get("ref_model_quantization_bit"), 0)
        rb = (rq / 8) if rq else s.cb
        out.append(Component("reference model", P * rb / (s.world if s.zero == 3 else 1),
                             f"frozen copy of the policy for {s.stage.upper()}"))
    if s.stage == "ppo":
        s.notes.add("PPO: value head and generation buffers not modelled; reward model counted "
                    "only when reward_model_type is full")
        if str(v.get("reward_model_type", "lora")) == "full":
            out.append(Component("reward model", P * s.cb, "full reward model copy"))
    return out


def _tokens(s: _Setup) -> tuple[int, int, int]:
    """(micro-batch sequences, sequence length, tokens per micro-batch)."""
    batch = max(1, _int(s.v.get("per_device_train_batch_size", 1), 1))
    seq = max(1, _int(s.v.get("cutoff_len", 2048), 2048))
    seqs = batch * (2 if s.stage in ("dpo", "kto", "rm") else 1)
    return seqs, seq, seqs * seq


def _activations(s: _Setup) -> list[Component]:
    v, shape = s.v, s.shape
    batch = max(1, _int(v.get("per_device_train_batch_size", 1), 1))
    seqs, seq, tokens = _tokens(s)
    s.notes.add(f"activations for {batch} x {seq} tokens per micro-batch"
                + (" (chosen + rejected pairs)" if seqs > batch else "")
                + ", every sequence at cutoff_len (an upper bound without packing)")
    eager = str(v.get("flash_attn", "auto")).lower() in ("disabled", "eager", "off")
    liger = _bool(v.get("enable_liger_kernel"))
    h, i_, kv, a = shape.hidden_size, shape.intermediate_size, shape.kv_width, shape.num_heads
    # bytes per token per layer for a LLaMA block with 16-bit activations (derivation in
    # reference/training_stack.md section 5): fp32 norm inputs 8h, q/k/v 2h+4kv, attention
    # output + o_proj input 4h, qkv input 2h, SwiGLU 8i. Liger: 16-bit norms, fused SwiGLU.
    per_tok_layer = (12 * h + 4 * kv + 6 * i_) if liger else (16 * h + 4 * kv + 8 * i_)
    if eager:
        # Softmax output saved in fp32 (4) and its 16-bit cast (2) for each head: s^2 term.
        per_tok_layer += 6 * a * seq
    if s.ft == "lora" and float(v.get("lora_dropout") or 0.0) > 0:
        dims = shape.linear_dims()
        per_tok_layer += sum(dims[t][0] * 2 + dims[t][0] for t in s.targets)   # copy + mask
    scale = s.act_b / 2
    if _gradient_checkpointing(v):
        act = tokens * scale * (shape.num_layers * 2 * h + per_tok_layer)
        anote = (f"gradient checkpointing: layer inputs kept ({shape.num_layers} x 2h bytes/token)"
                 f" + one layer recomputed ({per_tok_layer / 1024:.1f} KiB/token)")
    else:
        act = tokens * scale * shape.num_layers * per_tok_layer
        anote = (f"no gradient checkpointing: {per_tok_layer / 1024:.1f} KiB/token/layer x "
                 f"{shape.num_layers} layers")
    anote += f"; {'eager attention (s^2 scores)' if eager else 'flash/sdpa attention'}"
    if liger:
        anote += "; Liger RMSNorm/SwiGLU"
    return [Component("activations", act, anote)]


def _logits(s: _Setup) -> list[Component]:
    if _bool(s.v.get("enable_liger_kernel")):
        return [Component("logits", 0.0,
                          "Liger fused linear cross-entropy: logits never materialised")]
    tokens = _tokens(s)[2]
    per = s.act_b + 8   # logits + fp32 upcast for the loss + fp32 log-softmax saved
    return [Component("logits", tokens * s.shape.vocab_size * per,
                      f"{tokens} tokens x {s.shape.vocab_size} vocab x {per} bytes "
                      "(logits + fp32 upcast + log-softmax)")]


def _ddp_buckets(s: _Setup) -> list[Component]:
    if s.world > 1 and s.ds is None and s.trainable:
        return [Component("DDP gradient buckets", s.trainable * s.tw,
                          "DDP's reducer keeps a bucketed copy of the gradients")]
    return []


def _framework(s: _Setup) -> list[Component]:
    multi = s.world > 1
    return [Component("framework overhead", FRAMEWORK_OVERHEAD + (NCCL_OVERHEAD if multi else 0),
                      "CUDA context, kernels, workspaces, allocator slack (guide 9.2: 1-2 GB)"
                      + ("; NCCL buffers" if multi else ""))]


# One function per memory component, in the order the estimate lists them.
COMPONENTS: tuple[Callable[[_Setup], list[Component]], ...] = (
    _weights, _gradients, _optimizer, _other_models, _activations, _logits, _ddp_buckets,
    _framework,
)


def _estimate_core(
    values_in: Mapping[str, Any],
    *,
    config_dir: Path | None,
    num_gpus: int,
    params: str | float | None,
    detected_n: int,
) -> tuple[ModelShape, int, list[Component], _Notes]:
    s = _setup(values_in, config_dir=config_dir, num_gpus=num_gpus, params=params,
               detected_n=detected_n)
    comps = [c for component in COMPONENTS for c in component(s)]
    if s.ds is not None:
        s.notes.add(f"DeepSpeed ZeRO-{s.ds.stage} from {s.ds.source}"
                    + (", optimizer offloaded to CPU" if s.ds.offload_optimizer else "")
                    + (", parameters offloaded to CPU" if s.ds.offload_param else ""))
    if not _gradient_checkpointing(s.v):
        s.notes.add("gradient checkpointing off")
    s.notes.add(f"{_int(s.v.get('gradient_accumulation_steps', 1), 1)} gradient accumulation "
                "step(s): no effect on peak memory")
    return s.shape, s.trainable, comps, s.notes


def _projector_elems(shape: ModelShape, targets_raw: Any, rank: int) -> int:
    names = split_list(targets_raw) or ["all"]
    mods = BLOCK_LINEARS if any(n.lower() == "all" for n in names) else tuple(
        n.split(".")[-1] for n in names if n.split(".")[-1] in BLOCK_LINEARS)
    total = 0
    for m in dict.fromkeys(mods):
        fan_in, fan_out = shape.linear_dims()[m]
        total += min(rank, fan_in, fan_out) * min(fan_in, fan_out)
    return total * shape.num_layers


def use_badam_flag(v: Mapping[str, Any]) -> bool:
    return _bool(v.get("use_badam"))


def _badam_active(v: Mapping[str, Any], shape: ModelShape) -> int:
    if str(v.get("badam_mode", "layer")) == "ratio":
        ratio = float(v.get("badam_update_ratio") or 0.05)
        return int(shape.total_params * ratio)
    return shape.layer_params


def _gradient_checkpointing(v: Mapping[str, Any]) -> bool:
    """LLaMA-Factory turns it on unless ``disable_gradient_checkpointing``; an explicit
    ``gradient_checkpointing`` key (the guide's level 2 sets it) wins."""
    if "gradient_checkpointing" in v and v["gradient_checkpointing"] is not None:
        return _bool(v["gradient_checkpointing"])
    return not _bool(v.get("disable_gradient_checkpointing"))


# -----------------------------------------------------------------------------------
# The guide's optimisation levels (tunedeck.runner.config.presets owns them)
# -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Level:
    level: int
    title: str
    patch: dict[str, Any]


def optimization_levels() -> list[_Level]:
    """The guide's 9.3 levels (:data:`tunedeck.runner.config.presets.OPTIMIZATION_LEVELS`)."""
    from tunedeck.runner.config.presets import OPTIMIZATION_LEVELS

    return [_Level(lv.number, lv.title, dict(lv.patch)) for lv in OPTIMIZATION_LEVELS]


def _apply_level(values: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(values)
    for k, val in patch.items():
        if val is None:
            out.pop(k, None)
        else:
            out[k] = val
    if out.get("quantization_bit") and str(out.get("finetuning_type", "lora")) != "lora":
        out["finetuning_type"] = "lora"   # the guide's level 3 is QLoRA
    if patch.get("gradient_checkpointing") is True:
        out.pop("disable_gradient_checkpointing", None)   # else the old switch still wins
    return out


# -----------------------------------------------------------------------------------
# GPUs
# -----------------------------------------------------------------------------------


def detect_gpu_memory() -> tuple[int, list[float]] | None:
    """(count, total bytes per GPU) from NVML, or ``None`` without a driver/module."""
    try:
        from tunedeck.runner.monitor.nvml import get_nvml

        snap = get_nvml().snapshot()
    except Exception:   # NVML must never break an estimate
        return None
    if not getattr(snap, "available", False):
        return None
    mems: list[float] = []
    for g in getattr(snap, "gpus", ()) or ():
        m = getattr(g, "mem_total", None)
        if isinstance(m, (int, float)) and m > 0:
            mems.append(float(m))
    if not mems:
        return None
    return len(mems), mems
