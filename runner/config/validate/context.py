"""The state one validation pass shares: the document, the values with defaults, the
findings so far, and facts derived from several keys (processes, FSDP, DeepSpeed).
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from tunedeck.runner.config.validate.findings import Finding, Severity
from tunedeck.runner.config.yamlio import ConfigDoc, Location, split_list


# ----------------------------------------------------------------------------
# Machine facts
# ----------------------------------------------------------------------------
@lru_cache(maxsize=1)
def detect_cuda() -> bool:
    """True when an NVIDIA driver is present (without importing torch)."""
    if Path("/proc/driver/nvidia/version").exists():
        return True
    from tunedeck.runner.monitor.nvml import no_nvidia_device

    if no_nvidia_device():
        return False  # without importing pynvml (~50 ms of every launch)
    try:
        import pynvml  # nvidia-ml-py

        pynvml.nvmlInit()
        try:
            return int(pynvml.nvmlDeviceGetCount()) > 0
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        return False


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
