"""What triage reasons about and what it answers: :class:`TriageInput` (the symptoms),
:class:`Diagnosis` and :class:`Suggestion` (a rationale, a config patch, memory before/after),
and the context the rules share.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunedeck.runner.errors import ConfigError
from tunedeck.runner.estimate import (
    GiB,
    MemoryEstimate,
    estimate,
    format_bytes,
    with_defaults,
)

# Order of diagnoses: what killed the run first, then what will hurt it next.
_KIND_ORDER = ("oom", "disk_full", "diverged", "killed", "failed", "resume_past_end", "stalled",
               "disk_low", "slow", "not_converging", "healthy")


@dataclass(frozen=True)
class Suggestion:
    """One fix: what to change, why (in the guide's terms), and what it does to memory."""

    title: str
    rationale: str
    patch: dict[str, Any]
    before_bytes: float | None
    after_bytes: float | None
    guide_ref: str

    def diff_lines(self, values: Mapping[str, Any]) -> list[str]:
        """``["per_device_train_batch_size: 4 -> 1", ...]`` against the current config."""
        out = []
        for k, new in self.patch.items():
            old = values.get(k, "(unset)")
            out.append(f"{k}: {_show(old)} -> {'(removed)' if new is None else _show(new)}")
        return out

    def overrides(self) -> list[str]:
        """The patch as ``key=value`` overrides for ``tunedeck resume``."""
        return [f"{k}={'null' if v is None else _show(v)}" for k, v in self.patch.items()]


@dataclass(frozen=True)
class Diagnosis:
    kind: str   # oom | diverged | stalled | slow | not_converging | disk_full | disk_low |
    #             resume_past_end | failed | killed | healthy
    summary: str
    evidence: tuple[str, ...]
    suggestions: tuple[Suggestion, ...]


@dataclass(frozen=True)
class TriageInput:
    status: str | None                 # a RunStatus value, or None (no manifest)
    exit_message: str | None
    log_tail: list[str]
    values: dict[str, Any]
    config_dir: Path | None
    gpu_mem_bytes: float | None
    num_gpus: int
    history: list[dict[str, Any]]      # trainer_log.jsonl records
    disk_free_bytes: float | None
    checkpoint_bytes: float | None
    last_log_age_s: float | None
    checkpoint_step: int | None        # the checkpoint a resume would start from
    checkpoint_epoch: float | None = None
    disk_path: str | None = None       # mount point (and device) holding output_dir
    gpu_util_pct: float | None = None  # mean utilisation of the run's GPUs right now
    exit_reason: str | None = None     # trainer_exit.json "reason"
    gpu_name: str | None = None        # e.g. "NVIDIA A100-SXM4-80GB" (for the throughput check)


def _delta(b: float) -> str:
    return ("+" if b > 0 else "-" if b < 0 else "") + format_bytes(abs(b))


def _show(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (dict, list)):
        return json.dumps(v)
    return str(v)


class _Ctx:
    """The input plus memoised estimates and effective values."""

    def __init__(self, inp: TriageInput) -> None:
        self.inp = inp
        self.v = with_defaults(inp.values)
        self._mem: dict[str, MemoryEstimate | None] = {}
        self.tail = "\n".join(inp.log_tail[-400:])
        self.exit = inp.exit_message or ""

    def estimate(self, patch: Mapping[str, Any] | None = None) -> MemoryEstimate | None:
        """The memory estimate of the config with ``patch`` applied (None: model unknown)."""
        vals = dict(self.inp.values)
        for k, val in (patch or {}).items():
            if val is None:
                vals.pop(k, None)
            else:
                vals[k] = val
        key = json.dumps(vals, sort_keys=True, default=str)
        if key not in self._mem:
            try:
                self._mem[key] = estimate(
                    vals, config_dir=self.inp.config_dir, num_gpus=max(1, self.inp.num_gpus),
                    gpu_mem_gib=(self.inp.gpu_mem_bytes / GiB if self.inp.gpu_mem_bytes
                                 else None),
                    detect_gpus=False, with_levels=False)
            except (ConfigError, ValueError, TypeError, ZeroDivisionError):
                self._mem[key] = None
        return self._mem[key]

    def mem(self, patch: Mapping[str, Any] | None = None) -> float | None:
        est = self.estimate(patch)
        return est.per_gpu_bytes if est is not None else None

    def suggest(self, title: str, rationale: str, patch: dict[str, Any], ref: str,
                *, memory: bool = True) -> Suggestion:
        before = self.mem() if memory else None
        after = self.mem(patch) if memory and patch else before
        if memory and before is not None and after is not None and patch:
            rationale += (f" Estimated peak per GPU: {format_bytes(before)} -> "
                          f"{format_bytes(after)} ({_delta(after - before)})")
            if self.inp.gpu_mem_bytes:
                fits = after <= self.inp.gpu_mem_bytes
                rationale += (f" ({'fits' if fits else 'still over'} "
                              f"{format_bytes(self.inp.gpu_mem_bytes)})")
            rationale += "."
        return Suggestion(title, rationale, patch, before, after, ref)

    def num(self, key: str, default: float) -> float:
        val = self.v.get(key)
        try:
            return float(val) if val is not None else default
        except (TypeError, ValueError):
            return default

    def int_(self, key: str, default: int) -> int:
        return int(self.num(key, default))

    def flag(self, key: str) -> bool:
        val = self.v.get(key)
        if isinstance(val, str):
            return val.strip().lower() in ("1", "true", "yes", "on")
        return bool(val)


def _losses(history: list[dict[str, Any]]) -> list[tuple[int, float]]:
    out = []
    for i, rec in enumerate(history):
        loss = rec.get("loss")
        if isinstance(loss, (int, float)) and not isinstance(loss, bool):
            step = rec.get("current_steps", i)
            out.append((int(step) if isinstance(step, (int, float)) else i, float(loss)))
    return out


def _total_steps(ctx: _Ctx) -> int | None:
    ms = ctx.int_("max_steps", -1)
    if ms > 0:
        return ms
    for rec in reversed(ctx.inp.history):
        t = rec.get("total_steps")
        if isinstance(t, (int, float)) and t > 0:
            return int(t)
    return None


def _nonfinite(x: Any) -> bool:
    return isinstance(x, float) and (math.isnan(x) or math.isinf(x))
