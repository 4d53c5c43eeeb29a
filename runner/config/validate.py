"""Validate a config in one pass: every error, warning and piece of advice, with its place.

Severities: ``error`` (LLaMA-Factory or transformers would refuse it, or it would
fail at run time), ``warning`` (it may work but probably not as meant, or not on
this machine), ``advice`` (it departs from the guide's production recommendation,
or tunedeck passes it through unchecked). Only errors make ``tunedeck validate``
exit non-zero.

Nothing here imports torch or transformers.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from tunedeck.runner.config import datasets_check as dsc
from tunedeck.runner.config.hf_training_keys import HF_TRAINING_KEYS
from tunedeck.runner.config.schema import (
    PARAMS,
    UNSET,
    Param,
    alias_target,
    apply_defaults,
    get_param,
    is_env_key,
)
from tunedeck.runner.config.yamlio import ConfigDoc, Location, split_list
from tunedeck.runner.errors import ConfigError
from tunedeck.runner.rundir.checkpoints import CheckpointInfo, inspect_checkpoint, list_checkpoints

Severity = Literal["error", "warning", "advice"]
SEVERITIES: tuple[Severity, ...] = ("error", "warning", "advice")

_HF_KEYS = frozenset(HF_TRAINING_KEYS)
MAX_SUGGESTIONS = 50  # unknown keys that get a "did you mean" (each costs a fuzzy search)


@dataclass(frozen=True)
class Finding:
    """One problem (or suggestion) about one key, with where it is."""

    severity: Severity
    code: str          # stable id: "unknown-key", "type", "range", "choice", "quant-needs-lora" ...
    key: str | None
    message: str       # one sentence
    fix: str | None
    file: str | None
    line: int | None
    column: int | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def where(self) -> str:
        if not self.file:
            return "<config>"
        if self.line is None:
            return self.file
        return f"{self.file}:{self.line}:{self.column or 1}"

    def format(self) -> str:
        """``file:line:col: error: key: message (fix: ...)``"""
        s = f"{self.where}: {self.severity}: "
        if self.key:
            s += f"{self.key}: "
        s += self.message
        if self.fix:
            s += f" (fix: {self.fix})"
        return s


# ----------------------------------------------------------------------------
# Single values
# ----------------------------------------------------------------------------
_NUM_RE = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def _show(v: Any) -> str:
    if isinstance(v, str):
        return repr(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, (dict, list)):
        return "a mapping" if isinstance(v, dict) else "a list"
    return str(v)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _type_problem(p: Param, value: Any) -> tuple[str, str | None] | None:
    """(message, fix) when ``value`` has the wrong shape for ``p``."""
    kinds = (p.type, *p.alt_types)
    if "bool" in kinds and isinstance(value, bool):
        return None
    t = p.type
    if p.target == "env":
        if isinstance(value, (str, int, float, bool)):
            return None
        return f"must be a single value (an environment variable), not {_show(value)}", "write it as a string"
    if t == "bool":
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no", "on", "off"):
            word = "true" if value.strip().lower() in ("true", "yes", "on") else "false"
            return f"must be true or false, not the string {value!r}", f"write {word} without quotes"
        return f"must be true or false, not {_show(value)}", None
    if t == "int" or (t == "enum" and p.choices and all(isinstance(c, int) for c in p.choices)):
        if isinstance(value, int) and not isinstance(value, bool):
            return None
        if isinstance(value, float) and value.is_integer():
            return f"must be a whole number, not {value!r}", f"write {int(value)}"
        if isinstance(value, str) and _NUM_RE.match(value.strip()):
            return f"must be a number, not the string {value!r}", "remove the quotes"
        return f"must be a whole number, not {_show(value)}", None
    if t in ("float", "number"):
        if _is_number(value):
            if isinstance(value, float) and not math.isfinite(value):
                return f"must be a finite number, not {value!r}", None
            return None
        if isinstance(value, str) and _NUM_RE.match(value.strip()):
            return f"must be a number, not the string {value!r}", "remove the quotes"
        return f"must be a number, not {_show(value)}", None
    if t in ("str", "path", "enum"):
        if isinstance(value, str):
            return None
        if t == "enum" and p.choices and _is_number(value) and str(value) in map(str, p.choices):
            return None
        if t == "str" and _is_number(value) and p.name in ("model_revision", "mode", "kt_mode"):
            return None
        return f"must be text, not {_show(value)}", (f"write {str(value)!r} in quotes" if _is_number(value) else None)
    if t == "list":
        if isinstance(value, str):
            return None
        if isinstance(value, list) and all(isinstance(x, (str, int, float)) and not isinstance(x, bool) for x in value):
            return None
        return f"must be a comma-separated string or a list of names, not {_show(value)}", None
    if t == "json":
        if isinstance(value, (dict, list)):
            return None
        if isinstance(value, str):
            s = value.strip()
            if s[:1] in "{[":
                try:
                    json.loads(s)
                except json.JSONDecodeError as exc:
                    return f"is not valid JSON ({exc.msg} at column {exc.colno})", "fix the JSON, or write it as a YAML mapping"
            return None
        return f"must be a mapping, a JSON string or a file path, not {_show(value)}", None
    return None


def _items(p: Param, value: Any) -> list[str]:
    if p.name == "fsdp" and isinstance(value, str):
        return [s for s in re.split(r"[\s,]+", value) if s]
    return split_list(value)


def _value_problem(p: Param, value: Any) -> tuple[str, str, str | None] | None:
    """(code, message, fix) for a value that is invalid for ``p``; None when fine."""
    if value is None:
        if p.accepts_null:
            return None
        return ("null", "has no value",
                f"give it a value (default {_show(p.default)}) or delete the line")
    tp = _type_problem(p, value)
    if tp is not None:
        return ("type", tp[0], tp[1])
    if isinstance(value, bool) and "bool" in p.alt_types:
        return None
    if p.target == "env":
        if p.choices and str(value) not in map(str, p.choices):
            return ("choice", f"{_show(value)} is not one of {', '.join(map(str, p.choices))}", None)
        return None
    if p.type == "list":
        if p.choices:
            bad = [x for x in _items(p, value) if x not in p.choices]
            if bad:
                close = difflib.get_close_matches(bad[0], [str(c) for c in p.choices], n=1)
                return ("choice", f"{bad[0]!r} is not one of {', '.join(map(str, p.choices))}",
                        f"did you mean {close[0]!r}?" if close else None)
        if not _items(p, value) and p.name not in ("report_to", "fsdp"):
            return ("null", "is an empty list", "name at least one item or delete the line")
        return None
    if (p.choices and p.type in ("enum", "int") and value not in p.choices
            and not (p.type == "enum" and str(value) in map(str, p.choices))):
        choices = [str(c) for c in p.choices]
        fix = None
        if isinstance(value, str):
            lower = {c.lower(): c for c in choices}
            if value.lower() in lower:
                fix = f"write {lower[value.lower()]!r} (choices are case-sensitive)"
            else:
                close = difflib.get_close_matches(value, choices, n=1)
                fix = f"did you mean {close[0]!r}?" if close else None
        allowed = ", ".join(choices[:12]) + (", ..." if len(choices) > 12 else "")
        return ("choice", f"{_show(value)} is not one of {allowed}", fix)
    if _is_number(value) and (p.min is not None or p.max is not None):
        lo_bad = p.min is not None and (value <= p.min if p.min_exclusive else value < p.min)
        hi_bad = p.max is not None and (value >= p.max if p.max_exclusive else value > p.max)
        if lo_bad or hi_bad:
            return ("range", f"{_show(value)} is out of range (allowed: {p.allowed})", None)
    return None


def check_value(name: str, value: Any) -> str | None:
    """One field's type/range/choice problem as a sentence, or None (for form panes)."""
    p = get_param(name)
    if p is None:
        if name in _HF_KEYS:
            return None
        return f"{name} is not a parameter tunedeck knows"
    prob = _value_problem(p, value)
    if prob is None:
        return None
    msg = f"{p.name} {prob[1]}"
    return msg + (f" ({prob[2]})" if prob[2] else "")


# ----------------------------------------------------------------------------
# Machine facts
# ----------------------------------------------------------------------------
@lru_cache(maxsize=1)
def detect_cuda() -> bool:
    """True when an NVIDIA driver is present (without importing torch)."""
    if Path("/proc/driver/nvidia/version").exists():
        return True
    try:
        import pynvml  # nvidia-ml-py

        pynvml.nvmlInit()
        try:
            return int(pynvml.nvmlDeviceGetCount()) > 0
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        return False


def known_templates() -> frozenset[str]:
    """Every template name LLaMA-Factory registers plus the ones tunedeck implements."""
    from tunedeck.runner.data.templates import TEMPLATE_NAMES, TEMPLATE_NAMES_KNOWN

    return frozenset(TEMPLATE_NAMES) | frozenset(TEMPLATE_NAMES_KNOWN)


# ----------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json", "adapter_model.safetensors", "adapter_model.bin")


def _missing(info: CheckpointInfo) -> str:
    return info.reason or ""


# ----------------------------------------------------------------------------
# The validator
# ----------------------------------------------------------------------------
class _Ctx:
    def __init__(self, doc: ConfigDoc, check_files: bool, cuda: bool) -> None:
        self.doc = doc
        self.check_files = check_files
        self.cuda = cuda
        self.findings: list[Finding] = []
        self.given: set[str] = set(doc.keys())
        self.raw: dict[str, Any] = doc.values()
        self.bad: set[str] = set()       # keys whose value failed its own check
        self.v: dict[str, Any] = {}      # effective values (defaults + derived)
        bases: list[Path] = []
        if doc.path is not None:
            bases.append(doc.path.resolve().parent)
        cwd = Path.cwd()
        if cwd not in bases:
            bases.append(cwd)
        self.bases = bases
        self.ds_config: dict[str, Any] | None = None
        self.ds_stage: int | None = None

    # -- recording -------------------------------------------------------------
    def add(self, severity: Severity, code: str, key: str | None, message: str,
            fix: str | None = None, *, at: Literal["value", "key"] = "value") -> None:
        loc = self._where(key, at)
        self.findings.append(Finding(severity, code, key, message, fix, loc.source, loc.line, loc.column))

    def _where(self, key: str | None, at: str) -> Location:
        if key is None or key not in self.given:
            return Location(self.doc.source)
        return self.doc.value_location(key) if at == "value" else self.doc.location(key)

    def first_set(self, *keys: str) -> str:
        """The first of ``keys`` written in the config (findings point at it)."""
        return next((k for k in keys if k in self.given), keys[0])

    # -- reading ---------------------------------------------------------------
    def get(self, key: str) -> Any:
        return self.v.get(key)

    def on(self, key: str) -> bool:
        return bool(self.v.get(key))

    def is_set(self, key: str) -> bool:
        return key in self.given and key not in self.bad and self.raw.get(key) is not None

    def env_value(self, name: str) -> str | None:
        if name in self.given and self.raw.get(name) is not None:
            return str(self.raw[name])
        return os.environ.get(name)

    def resolve(self, value: str) -> tuple[Path | None, list[Path]]:
        p = Path(value).expanduser()
        cands = [p] if p.is_absolute() else [b / p for b in self.bases]
        for c in cands:
            if c.exists():
                return c, cands
        return None, cands


def validate_doc(doc: ConfigDoc, *, check_files: bool = True, cuda_available: bool | None = None) -> list[Finding]:
    """Every finding for ``doc`` (with its overrides), sorted by position in the file."""
    cuda = detect_cuda() if cuda_available is None else cuda_available
    ctx = _Ctx(doc, check_files, cuda)
    _check_keys(ctx)
    clean = {k: v for k, v in ctx.raw.items() if k not in ctx.bad}
    ctx.v = apply_defaults(clean)
    for rule in _RULES:
        rule(ctx)
    if check_files:
        for rule in _FILE_RULES:
            rule(ctx)
    for rule in _ADVICE_RULES:
        rule(ctx)
    return _sorted(ctx.findings)


def _sorted(findings: list[Finding]) -> list[Finding]:
    rank = {s: i for i, s in enumerate(SEVERITIES)}
    return sorted(
        findings,
        key=lambda f: (f.file != "command line", f.line is None, f.line or 0, f.column or 0, rank[f.severity]),
    )


def validate_path(path: str | Path, overrides: Iterable[str] | Mapping[str, Any] = (), **kw: Any) -> list[Finding]:
    """Load and validate one file; a file that cannot be loaded gives one error finding."""
    try:
        doc = ConfigDoc.load(path, overrides)
    except ConfigError as exc:
        code = "yaml-syntax" if "YAML" in exc.bare_message else "load"
        return [Finding("error", code, exc.key, exc.bare_message, exc.hint,
                        exc.file or str(path), exc.line, exc.column)]
    return validate_doc(doc, **kw)


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


# -- cross-field rules ------------------------------------------------------------
def _num_processes(ctx: _Ctx) -> int | None:
    """World size if the config says (env keys), else None."""
    total = None
    for name in ("NPROC_PER_NODE",):
        val = ctx.env_value(name) if name in ctx.given else None
        if val and val.strip().isdigit():
            total = int(val)
    if total is None and "CUDA_VISIBLE_DEVICES" in ctx.given:
        devs = [d for d in str(ctx.raw.get("CUDA_VISIBLE_DEVICES") or "").split(",") if d.strip()]
        total = len(devs) or None
    nn = ctx.raw.get("NNODES") if "NNODES" in ctx.given else None
    if nn is not None and str(nn).strip().isdigit() and total is not None:
        total *= int(nn)
    return total


def _distributed(ctx: _Ctx) -> bool:
    n = _num_processes(ctx)
    return bool(ctx.get("deepspeed") or ctx.get("deepspeed_config") or _fsdp_on(ctx) or (n is not None and n > 1))


def _fsdp_on(ctx: _Ctx) -> bool:
    f = ctx.get("fsdp")
    return bool(f and [x for x in split_list(f) if x not in ("", "none")])


def _zero3(ctx: _Ctx) -> bool:
    return ctx.ds_stage == 3


def _load_deepspeed(ctx: _Ctx) -> None:
    ds = ctx.get("deepspeed")
    inline = ctx.get("deepspeed_config")
    if ds and inline:
        ctx.add("error", "deepspeed-twice", "deepspeed_config",
                "is set together with deepspeed; only one DeepSpeed config can be used",
                "keep deepspeed (a file) or deepspeed_config (inline), not both")
    cfg: Any = None
    key = "deepspeed" if ds else "deepspeed_config"
    src = ds or inline
    if isinstance(src, dict):
        cfg = src
    elif isinstance(src, str) and src.strip():
        s = src.strip()
        if s.startswith("{"):
            try:
                cfg = json.loads(s)
            except json.JSONDecodeError:
                cfg = None
        else:
            path, cands = ctx.resolve(s)
            if path is None or not path.is_file():
                if ctx.check_files:
                    ctx.add("error", "deepspeed-missing", key,
                            f"DeepSpeed config {s} does not exist (looked in {', '.join(str(c) for c in cands)})",
                            "fix the path; sample files are in sample_configs/launch/")
                return
            try:
                cfg = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError) as exc:
                ctx.add("error", "deepspeed-unreadable", key, f"cannot read {path}: {exc}")
                return
            except json.JSONDecodeError as exc:
                ctx.add("error", "deepspeed-json", key,
                        f"{path} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                        "fix the JSON syntax on that line")
                return
    if cfg is None:
        return
    if not isinstance(cfg, dict):
        ctx.add("error", "deepspeed-json", key, "DeepSpeed config must be a JSON object")
        return
    ctx.ds_config = cfg
    zo = cfg.get("zero_optimization") or {}
    stage = zo.get("stage") if isinstance(zo, dict) else None
    if isinstance(stage, int) and not isinstance(stage, bool):
        ctx.ds_stage = stage
        if stage not in (0, 1, 2, 3):
            ctx.add("error", "deepspeed-stage", key, f"zero_optimization.stage {stage} is not 0, 1, 2 or 3")
    elif stage is not None:
        ctx.add("error", "deepspeed-stage", key, f"zero_optimization.stage must be 0-3, not {stage!r}")
    if isinstance(zo, dict):
        old = [k for k in ("cpu_offload", "cpu_offload_params", "cpu_offload_use_pin_memory") if k in zo]
        if old:
            ctx.add("warning", "deepspeed-deprecated", key,
                    f"zero_optimization uses the retired DeepSpeed key(s) {', '.join(old)}",
                    'use "offload_optimizer": {"device": "cpu"} and "offload_param": {"device": "cpu"}')


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
    _rule_deepspeed, _rule_method, _rule_stage, _rule_data, _rule_training, _rule_no_cuda,
)


# -- file checks ------------------------------------------------------------------
def _looks_like_hub_id(s: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", s)) and not s.startswith((".", "~"))


def _looks_local(ctx: _Ctx, value: str) -> bool:
    """A path the user meant on this disk: ``./x``, ``/x``, ``~/x``, or ``models/x`` where a
    folder ``models`` exists beside the config (or the working directory)."""
    if value.startswith((".", "/", "~")):
        return True
    first = Path(value).parts[0] if Path(value).parts else ""
    return bool(first) and "/" in value and any((b / first).is_dir() for b in ctx.bases)


def _hf_cache_has(repo: str) -> bool:
    home = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface"), "hub")
    return (Path(home) / ("models--" + repo.replace("/", "--"))).is_dir()


def _file_model(ctx: _Ctx) -> None:
    value = ctx.get("model_name_or_path")
    if not isinstance(value, str) or not value.strip():
        return
    path, cands = ctx.resolve(value)
    offline = (ctx.env_value("HF_HUB_OFFLINE") or "").strip().lower() in ("1", "true", "yes", "on")
    if path is None:
        nested = value.count("/") > 1 and not _looks_local(ctx, value)  # a/b/c is no hub id either
        if _looks_local(ctx, value) or nested:
            # The hub would answer "Repo id must be in the form ..." seconds into the run, so
            # launch refuses it (LAUNCH_BLOCKING); a config written for another machine still
            # validates here.
            ctx.add("warning", "model-path-missing", "model_name_or_path",
                    f"model folder {value} does not exist on this machine (looked in "
                    f"{', '.join(str(c) for c in cands)})" + (", and it is not a hub id (org/name)" if nested else "")
                    + "; `tunedeck launch` refuses it here",
                    "fix the path (relative paths are read from the config's folder, then the "
                    "working directory)")
            return
        if _looks_like_hub_id(value) and not Path(value).is_absolute():
            if _hf_cache_has(value):
                return
            msg = f"{value} is not on this machine; it will be downloaded from the hub"
            if offline:
                ctx.add("warning", "model-offline", "model_name_or_path",
                        f"{value} is not on this machine and HF_HUB_OFFLINE is set, so it cannot be downloaded",
                        "download it first or point at a local folder")
            else:
                ctx.add("warning", "model-download", "model_name_or_path", msg + " unless HF_HUB_OFFLINE is set",
                        "download it once and point at the local folder")
            return
        # A bare name: a legacy hub model (gpt2) or a folder on another machine.
        ctx.add("warning", "model-missing", "model_name_or_path",
                f"{value} is neither a folder on this machine nor cached from the hub",
                "fix the path, or check the hub name")
        return
    if path.is_dir():
        if (path / "config.json").is_file():
            _model_limits(ctx, path / "config.json")
            return
        if (path / "adapter_config.json").is_file():
            ctx.add("error", "model-is-adapter", "model_name_or_path",
                    f"{path} is a LoRA adapter, not a base model",
                    "put the base model here and this folder in adapter_name_or_path")
            return
        ctx.add("error", "model-no-config", "model_name_or_path", f"{path} has no config.json, so it is not a model folder",
                "point at the folder that holds config.json and the weights")
        return
    ctx.add("error", "model-not-dir", "model_name_or_path", f"{path} is a file, not a model folder")


def _model_limits(ctx: _Ctx, config_json: Path) -> None:
    try:
        cfg = json.loads(config_json.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        ctx.add("error", "model-config-json", "model_name_or_path", f"{config_json} is not valid JSON")
        return
    if not isinstance(cfg, dict):
        return
    nested = cfg.get("text_config")
    text_cfg: dict[str, Any] = nested if isinstance(nested, dict) else cfg
    maxpos = text_cfg.get("max_position_embeddings")
    cutoff = ctx.get("cutoff_len")
    if _is_number(maxpos) and _is_number(cutoff) and cutoff > maxpos and not ctx.get("rope_scaling"):
        ctx.add("warning", "cutoff-over-context", "cutoff_len",
                f"{cutoff} is longer than the model's context window ({maxpos} positions)",
                f"lower cutoff_len to {maxpos} or set rope_scaling")


def _file_adapters(ctx: _Ctx) -> None:
    for a in split_list(ctx.get("adapter_name_or_path")):
        path, _ = ctx.resolve(a)
        if path is None:
            ctx.add("warning", "adapter-missing", "adapter_name_or_path", f"adapter {a} does not exist on this machine")
        elif path.is_dir() and not (path / "adapter_config.json").is_file():
            ctx.add("error", "adapter-no-config", "adapter_name_or_path", f"{path} has no adapter_config.json",
                    "point at a folder saved by a LoRA run (a checkpoint or the final output_dir)")
    for key in ("ref_model", "reward_model"):
        val = ctx.get(key)
        if isinstance(val, str) and val and not _looks_like_hub_id(val):
            path, _ = ctx.resolve(val)
            if path is None:
                local = _looks_local(ctx, val)
                ctx.add("warning", "model-path-missing" if local else "model-missing", key,
                        f"{val} does not exist on this machine"
                        + ("; `tunedeck launch` refuses it here" if local else ""))


def _file_datasets(ctx: _Ctx) -> None:
    names = split_list(ctx.get("dataset"))
    evals = split_list(ctx.get("eval_dataset"))
    if not names and not evals:
        return
    ddir = ctx.get("dataset_dir") or "data"
    if not isinstance(ddir, str) or ddir == "ONLINE" or ddir.startswith("REMOTE:"):
        return
    directory, cands = dsc.resolve_dir(ddir, ctx.bases)
    key = ctx.first_set("dataset_dir", "dataset")
    if directory is None:
        local = _looks_local(ctx, ddir)
        ctx.add("warning", "dataset-dir-path-missing" if local else "dataset-dir-missing", key,
                f"dataset folder {ddir} does not exist on this machine (looked in {', '.join(str(c) for c in cands)}), "
                "so the datasets cannot be checked" + ("; `tunedeck launch` refuses it here" if local else ""),
                "fix dataset_dir before launching here")
        return
    info, issues = dsc.load_dataset_info(directory)
    for i in issues:
        ctx.add(i.severity, i.code, key, i.message, i.fix)
    if info is None:
        return
    offline = (ctx.env_value("HF_HUB_OFFLINE") or "").strip().lower() in ("1", "true", "yes", "on")
    stage = str(ctx.get("stage") or "sft")
    for k, group in (("dataset", names), ("eval_dataset", evals)):
        for i in dsc.check_datasets(group, info, stage=stage, offline=offline):
            ctx.add(i.severity, i.code, k, i.message, i.fix)


def _file_template(ctx: _Ctx) -> None:
    t = ctx.get("template")
    if not isinstance(t, str) or not t:
        return
    names = known_templates()
    if t in names:
        return
    close = difflib.get_close_matches(t, sorted(names), n=1, cutoff=0.6)
    ctx.add("error", "template-unknown", "template", f"{t!r} is not a known chat template",
            f"did you mean {close[0]!r}?" if close else "see LLaMA-Factory's template list (qwen, llama3, default ...)")


def _resolve_output_dir(ctx: _Ctx) -> Path | None:
    out = ctx.get("output_dir")
    if not isinstance(out, str) or not out:
        return None
    path, _ = ctx.resolve(out)
    return path if path is not None and path.is_dir() else None


def _file_checkpoints(ctx: _Ctx) -> None:
    out = _resolve_output_dir(ctx)
    ckpts = list_checkpoints(out) if out is not None else []  # THE rule (rundir)
    rfc = ctx.get("resume_from_checkpoint")
    if rfc is True or (isinstance(rfc, str) and rfc.strip().lower() in ("latest", "true")):
        complete = [c for c in ckpts if c.complete]
        if not complete:
            ctx.add("error", "resume-none", "resume_from_checkpoint",
                    "asks for the newest checkpoint, but output_dir holds no complete checkpoint",
                    "remove resume_from_checkpoint to start fresh, or point at a checkpoint folder")
        return
    if isinstance(rfc, str) and rfc.strip():
        path, cands = ctx.resolve(rfc)
        if path is None or not path.is_dir():
            ctx.add("error", "resume-missing", "resume_from_checkpoint",
                    f"checkpoint {rfc} does not exist", "point at an existing checkpoint-N folder")
            return
        st = inspect_checkpoint(path)
        if not st.complete:
            ctx.add("error", "resume-incomplete", "resume_from_checkpoint",
                    f"{path.name} is incomplete ({_missing(st)})", "resume from an older, complete checkpoint")
        elif not st.resumable_full:
            ctx.add("warning", "resume-no-optimizer", "resume_from_checkpoint",
                    f"{path.name} has no optimizer state, so the optimizer restarts from zero",
                    "expect a loss bump; save with save_only_model: false next time")
        return
    if out is None or not ctx.on("do_train"):
        return
    if ctx.on("overwrite_output_dir"):
        if ckpts:
            # `tunedeck launch` refuses this (run busy, exit 4): starting over would mix a new
            # run's checkpoints into the old ones. Say what launch will accept.
            ctx.add("warning", "overwrite-checkpoints", "overwrite_output_dir",
                    f"output_dir holds {len(ckpts)} checkpoint(s) and overwrite_output_dir is true: "
                    "`tunedeck launch` refuses to start over them",
                    f"`tunedeck launch --overwrite` deletes them and starts from step 0; or pick a new "
                    f"output_dir; or set overwrite_output_dir: false to resume from {ckpts[-1].path.name}")
        return
    if ckpts:
        newest = ckpts[-1]
        if not newest.complete:
            ctx.add("warning", "checkpoint-incomplete", "output_dir",
                    f"the newest checkpoint {newest.path.name} is incomplete ({_missing(newest)}), "
                    "and resuming from it will fail", f"delete {newest.path} to resume from the one before")
        else:
            msg = f"output_dir already holds checkpoints; the run will resume from {newest.path.name}"
            if any((out / f).exists() for f in WEIGHT_FILES):
                msg += " although the final weights are there (the run looks finished, so it may stop at once)"
            ctx.add("warning", "will-resume", "output_dir", msg,
                    "to start fresh: `tunedeck launch --overwrite` (deletes the old checkpoints) "
                    "or pick a new output_dir")
        return
    if any((out / f).exists() for f in WEIGHT_FILES):
        ctx.add("error", "output-dir-not-empty", "output_dir",
                "already holds model weights but no checkpoint, so the run can neither resume nor start clean",
                "set overwrite_output_dir: true or pick a new output_dir")


# Warnings in `validate` (a config may be meant for another machine) that `tunedeck launch`
# treats as errors: on this machine the run would fail seconds after starting.
LAUNCH_BLOCKING = frozenset({"model-path-missing", "dataset-dir-path-missing"})

_FILE_RULES: tuple[Callable[[_Ctx], None], ...] = (
    _file_model, _file_adapters, _file_datasets, _file_template, _file_checkpoints,
)


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


def summarize(findings: Iterable[Finding]) -> dict[str, int]:
    """Counts per severity: ``{"errors": n, "warnings": n, "advice": n}``."""
    counts = {"errors": 0, "warnings": 0, "advice": 0}
    for f in findings:
        counts[{"error": "errors", "warning": "warnings", "advice": "advice"}[f.severity]] += 1
    return counts


def has_errors(findings: Iterable[Finding]) -> bool:
    return any(f.severity == "error" for f in findings)
