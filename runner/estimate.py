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
from collections.abc import Mapping
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


def _estimate_core(
    values_in: Mapping[str, Any],
    *,
    config_dir: Path | None,
    num_gpus: int,
    params: str | float | None,
    detected_n: int,
) -> tuple[ModelShape, int, list[Component], _Notes]:
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

    P = shape.total_params
    stage = str(v.get("stage", "sft")).lower()
    ft = str(v.get("finetuning_type", "lora")).lower()
    if ft == "oft":
        notes.add("OFT sized like LoRA of the same rank (approximate)")
        ft = "lora"
    pure_bf16 = _bool(v.get("pure_bf16"))
    bf16 = _bool(v.get("bf16")) or pure_bf16
    fp16 = _bool(v.get("fp16")) and not bf16
    # Bytes of the dtype the model is loaded in (frozen weights, activations). Without
    # bf16/fp16, LLaMA-Factory still loads the model in its own 16-bit dtype on a GPU
    # (infer_optim_dtype) and trains without autocast; only an fp32 checkpoint stays fp32.
    if bf16 or fp16:
        cb = 2
    elif str(shape.torch_dtype or "").lower() in ("float32", "fp32"):
        cb = 4
        notes.add("neither bf16 nor fp16 set and the checkpoint is float32: weights and "
                  "activations in fp32")
    else:
        cb = 2
        notes.add("neither bf16 nor fp16 set: the model loads in its 16-bit dtype (as "
                  "LLaMA-Factory does on a GPU) and trains without autocast")
    mixed = (bf16 or fp16) and not pure_bf16
    # Full fine-tuning without autocast computes with the fp32-upcast weights.
    act_b = 4 if (ft == "full" and not (bf16 or fp16) and not use_badam_flag(v)) else cb

    qbits = v.get("quantization_bit")
    qbits = _int(qbits, 0) if qbits not in (None, "", False) else 0
    if qbits and ft != "lora":
        notes.add(f"quantization_bit {qbits} ignored: LLaMA-Factory allows quantization only "
                  "with LoRA/OFT (use QLoRA)")
        qbits = 0
    ds = deepspeed_plan(v, config_dir, notes)
    zero = ds.stage if ds else -1
    world = num_gpus

    # ---- trainable parameters and per-method structure ----------------------------
    use_galore = _bool(v.get("use_galore")) and ft == "full"
    use_apollo = _bool(v.get("use_apollo")) and ft == "full"
    use_badam = _bool(v.get("use_badam")) and ft == "full"
    dropout = float(v.get("lora_dropout") or 0.0)
    targets: list[str] = []
    extra_trainable = 0
    if ft == "full":
        trainable = P
    elif ft == "freeze":
        trainable = freeze_trainable(v, shape, notes)
    else:
        rank = _int(v.get("lora_rank", 8), 8)
        targets = lora_targets(v, shape, notes)
        dora = _bool(v.get("use_dora"))
        trainable = lora_trainable(shape, targets, rank, dora=dora)
        add = split_list(v.get("additional_target"))
        if add:
            extra_trainable = _extra_module_params(shape, add, notes, "additional_target")
            trainable += extra_trainable

    # ---- weights --------------------------------------------------------------------
    comps: list[Component] = []
    frozen = P - trainable if ft != "lora" else P
    if ft == "lora" and qbits:
        consts = 0.0
        method = str(v.get("quantization_method", "bnb")).lower()
        if qbits == 4 and method == "bnb":
            consts = 0.127 if _bool(v.get("double_quantization", True)) else 0.5
        elif qbits == 8:
            consts = 32.0 / shape.hidden_size   # one fp32 scale per row
        else:
            consts = 0.5
        qbytes = (qbits + consts) / 8
        q_params = shape.block_linear_params
        base_bytes = q_params * qbytes + (P - q_params) * cb
        wnote = (f"{q_params / 1e9:.2f}B block linears at {qbits}-bit "
                 f"(+{consts:.3g} bits/param quantization constants), "
                 f"{(P - q_params) / 1e9:.2f}B embeddings/norms/lm_head at {cb * 8}-bit")
        notes.add(f"{qbits}-bit quantization: quantization constants at {consts:.3g} bits/param"
                  + (" (double quantization)" if qbits == 4 and consts < 0.2 else ""))
    else:
        base_bytes = frozen * cb
        wnote = f"{frozen / 1e9:.2f}B frozen params at {cb * 8}-bit" if ft != "full" else ""

    # Trainable parameter storage dtype: LLaMA-Factory upcasts trainable params to fp32
    # unless pure_bf16, BAdam, or ZeRO-3 without quantization.
    upcast = cb == 2 and not pure_bf16 and not use_badam and not (zero == 3 and not qbits)
    if ds is not None and (bf16 or fp16):
        upcast = False    # DeepSpeed keeps the module in the compute dtype (fp32 master in optim)
    tw = 4 if (upcast or cb == 4) else 2       # bytes per trainable weight
    train_weight_bytes = trainable * tw
    if ft == "full":
        wnote = f"{P / 1e9:.2f}B params at {tw * 8}-bit" + (
            " (trainable params upcast to fp32)" if upcast else "")
    elif trainable:
        wnote += f"; {trainable / 1e6:.1f}M trainable at {tw * 8}-bit"
    # LoRA: the base weights stay and adapters (and modules_to_save copies) add on top;
    # full/freeze: frozen part plus trainable part.
    weights_bytes = base_bytes + train_weight_bytes

    ws_note = ""
    if zero == 3:
        # Parameters are partitioned; each rank gathers a couple of layers at a time.
        gather = 2 * shape.layer_params * cb
        if ds and ds.offload_param:
            weights_bytes = gather
            ws_note = " ZeRO-3 offload_param: weights live in CPU memory; GPU holds ~2 gathered layers"
        else:
            weights_bytes = weights_bytes / world + gather
            ws_note = f" ZeRO-3: sharded over {world} GPU(s) + ~2 gathered layers"
    comps.append(Component("weights", weights_bytes, (wnote + ws_note).strip()))

    if mixed and upcast and trainable:
        # torch.autocast caches a 16-bit copy of every fp32 leaf weight it casts during the
        # forward; autograd keeps them until backward. This is where 18 bytes/param comes from.
        comps.append(Component("autocast weight copies", trainable * 2,
                               "16-bit copies of fp32 trainable weights cached by autocast"))

    # ---- gradients ------------------------------------------------------------------
    grad_params = trainable
    gnote = f"{trainable / 1e6:,.1f}M trainable params"
    if use_badam:
        grad_params = _badam_active(v, shape)
        gnote = f"BAdam: only the active block ({grad_params / 1e6:,.1f}M params) has gradients"
        notes.add("BAdam: gradients and optimizer states for the active block only "
                  "(approximate)")
    gbytes_per = 2 if ds is not None and (bf16 or fp16) else tw
    grad_bytes = float(grad_params * gbytes_per)
    if (use_galore and _bool(v.get("galore_layerwise"))) or (
            use_apollo and _bool(v.get("apollo_layerwise"))):
        grad_bytes = float(shape.layer_params * gbytes_per)
        gnote = "layer-wise update: gradients of ~one layer at a time"
    if zero >= 2:
        grad_bytes /= world
        gnote += f"; ZeRO-{zero} sharded over {world} GPU(s)"
    comps.append(Component("gradients", grad_bytes, f"{gnote} at {gbytes_per * 8}-bit"))

    # ---- optimizer states -----------------------------------------------------------
    optim = str(v.get("optim", "adamw_torch"))
    n_states, sbytes, olabel = _optimizer_states(optim, v)
    state_b = sbytes or (4 if ds is not None else tw)
    opt_params = grad_params
    opt_bytes = opt_params * n_states * state_b
    onote = olabel
    if use_galore or use_apollo:
        which = "galore" if use_galore else "apollo"
        rank = _int(v.get(f"{which}_rank", 16), 16)
        covered, projected = _low_rank_states(shape, v.get(f"{which}_target", "all"), rank)
        opt_bytes = ((trainable - covered) + projected) * n_states * state_b
        if use_galore:
            # GaLore stores its projection matrices: rank x min(in, out) per covered matrix.
            # (APOLLO regenerates its random projection from a seed.)
            opt_bytes += _projector_elems(shape, v.get("galore_target", "all"), rank) * 4
        onote = (f"{which.upper()} rank {rank}: moments of {covered / 1e9:.2f}B params kept in "
                 f"a rank-{rank} projection (approximate)")
        notes.add(f"{which.upper()}: optimizer state from the rank-{rank} projection; "
                  "approximate")
    if ds is not None:
        master = 4 * opt_params if (bf16 or fp16) else 0
        opt_bytes += master
        if master:
            onote += " + fp32 master copy"
    if ds is not None and ds.offload_optimizer:
        opt_bytes = 0.0
        onote += "; offloaded to CPU"
    elif zero >= 1:
        opt_bytes /= world
        onote += f"; ZeRO-{zero} sharded over {world} GPU(s)"
    comps.append(Component("optimizer states", opt_bytes, onote))

    # ---- reference / reward models --------------------------------------------------
    if stage in ("dpo", "kto") and ft != "lora" and str(v.get("pref_loss")) not in (
            "orpo", "simpo"):
        rq = _int(v.get("ref_model_quantization_bit"), 0)
        rb = (rq / 8) if rq else cb
        ref_bytes = P * rb / (world if zero == 3 else 1)
        comps.append(Component("reference model", ref_bytes,
                               f"frozen copy of the policy for {stage.upper()}"))
    if stage == "ppo":
        notes.add("PPO: value head and generation buffers not modelled; reward model counted "
                  "only when reward_model_type is full")
        if str(v.get("reward_model_type", "lora")) == "full":
            comps.append(Component("reward model", P * cb, "full reward model copy"))

    # ---- activations ----------------------------------------------------------------
    batch = max(1, _int(v.get("per_device_train_batch_size", 1), 1))
    seq = max(1, _int(v.get("cutoff_len", 2048), 2048))
    seqs = batch * (2 if stage in ("dpo", "kto", "rm") else 1)
    tokens = seqs * seq
    notes.add(f"activations for {batch} x {seq} tokens per micro-batch"
              + (" (chosen + rejected pairs)" if seqs > batch else "")
              + ", every sequence at cutoff_len (an upper bound without packing)")
    attn = str(v.get("flash_attn", "auto")).lower()
    eager = attn in ("disabled", "eager", "off")
    liger = _bool(v.get("enable_liger_kernel"))
    h, i_, kv, a = shape.hidden_size, shape.intermediate_size, shape.kv_width, shape.num_heads
    # bytes per token per layer for a LLaMA block with 16-bit activations (derivation in
    # reference/training_stack.md section 5): fp32 norm inputs 8h, q/k/v 2h+4kv, attention
    # output + o_proj input 4h, qkv input 2h, SwiGLU 8i. Liger: 16-bit norms, fused SwiGLU.
    per_tok_layer = (12 * h + 4 * kv + 6 * i_) if liger else (16 * h + 4 * kv + 8 * i_)
    if eager:
        # Softmax output saved in fp32 (4) and its 16-bit cast (2) for each head: s^2 term.
        per_tok_layer += 6 * a * seq
    if ft == "lora" and dropout > 0:
        dims = shape.linear_dims()
        per_tok_layer += sum(dims[t][0] * 2 + dims[t][0] for t in targets)   # copy + mask
    scale = act_b / 2
    ckpt = _gradient_checkpointing(v)
    if ckpt:
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
    comps.append(Component("activations", act, anote))

    # ---- logits ---------------------------------------------------------------------
    if liger:
        comps.append(Component("logits", 0.0,
                               "Liger fused linear cross-entropy: logits never materialised"))
    else:
        per = act_b + 8   # logits + fp32 upcast for the loss + fp32 log-softmax saved
        comps.append(Component("logits", tokens * shape.vocab_size * per,
                               f"{tokens} tokens x {shape.vocab_size} vocab x {per} bytes "
                               "(logits + fp32 upcast + log-softmax)"))

    # ---- DDP gradient buckets -------------------------------------------------------
    if world > 1 and ds is None and trainable:
        comps.append(Component("DDP gradient buckets", trainable * tw,
                               "DDP's reducer keeps a bucketed copy of the gradients"))

    # ---- framework ------------------------------------------------------------------
    fw = FRAMEWORK_OVERHEAD + (NCCL_OVERHEAD if world > 1 else 0)
    comps.append(Component("framework overhead", fw,
                           "CUDA context, kernels, workspaces, allocator slack (guide 9.2: 1-2 GB)"
                           + ("; NCCL buffers" if world > 1 else "")))

    if ds is not None:
        notes.add(f"DeepSpeed ZeRO-{ds.stage} from {ds.source}"
                  + (", optimizer offloaded to CPU" if ds.offload_optimizer else "")
                  + (", parameters offloaded to CPU" if ds.offload_param else ""))
    if not ckpt:
        notes.add("gradient checkpointing off")
    notes.add(f"{_int(v.get('gradient_accumulation_steps', 1), 1)} gradient accumulation "
              "step(s): no effect on peak memory")
    return shape, trainable, comps, notes


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
