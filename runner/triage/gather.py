"""Building a :class:`TriageInput` from a run directory (through :mod:`tunedeck.runner.rundir`)
and NVML.
"""

from __future__ import annotations

import os
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

from tunedeck.runner.config.yamlio import ConfigDoc
from tunedeck.runner.errors import ConfigError, RunNotFound
from tunedeck.runner.fsutil import read_json
from tunedeck.runner.rundir.protocol import (
    TRAINER_EXIT,
    TRAINER_LOG,
    TRAINER_STATE,
)
from tunedeck.runner.rundir.runs import config_path_of
from tunedeck.runner.triage.detectors import diagnose
from tunedeck.runner.triage.logtext import LOG_FILES, _read_tail, current_attempt
from tunedeck.runner.triage.model import Diagnosis, TriageInput


def _mount_of(path: Path) -> str:
    p = path.resolve()
    while not os.path.ismount(p) and p != p.parent:
        p = p.parent
    device = None
    try:
        import psutil

        for part in psutil.disk_partitions(all=True):
            if part.mountpoint == str(p):
                device = part.device
    except Exception:   # psutil is optional for naming the device
        device = None
    return f"{p} ({device})" if device else str(p)


def gather(run_dir: str | Path) -> TriageInput:
    """Build a :class:`TriageInput` from the files of ``run_dir``."""
    from tunedeck.runner.rundir.checkpoints import list_checkpoints, tree_size
    from tunedeck.runner.rundir.logs import read_log_records
    from tunedeck.runner.rundir.manifest import read_manifest
    from tunedeck.runner.rundir.runs import computed_status, raw_manifest

    rd = Path(run_dir)
    if not rd.is_dir():
        raise RunNotFound(f"no run directory at {rd}")
    man = read_manifest(rd)
    cfg_path = config_path_of(rd)
    values: dict[str, Any] = {}
    config_dir: Path | None = rd
    if cfg_path is not None:
        try:
            values = ConfigDoc.load(cfg_path).values()
        except ConfigError:
            values = {}
    if man is not None and man.config_path:
        config_dir = Path(man.config_path).expanduser().resolve().parent
    logged = read_log_records(rd)
    history = logged.records
    if logged.source == TRAINER_STATE:  # transformers' log_history: the training records
        history = [r for r in history if "loss" in r]
    tail: list[str] = []
    for name in LOG_FILES:   # ours, then what LLaMA Board leaves behind
        if (rd / name).is_file():
            tail = current_attempt(_read_tail(rd / name))
            break
    exit_info = read_json(rd / TRAINER_EXIT)
    exit_reason = exit_msg = None
    if isinstance(exit_info, dict):
        exit_reason = str(exit_info.get("reason") or "") or None
        exit_msg = str(exit_info.get("message") or "") or None
    status = None
    if man is not None:
        # what status shows: an active manifest whose supervisor is gone reads as lost
        raw = raw_manifest(rd)
        status = computed_status(raw).value if raw is not None else man.status.value
        exit_msg = man.message or exit_msg
    ckpts = list_checkpoints(rd)
    complete = [c for c in ckpts if c.complete]
    ck = complete[-1] if complete else None
    ck_epoch = None
    if ck is not None:
        state = read_json(ck.path / TRAINER_STATE)
        if isinstance(state, dict) and isinstance(state.get("epoch"), (int, float)):
            ck_epoch = float(state["epoch"])
    ck_bytes = float(tree_size(ckpts[-1].path)) if ckpts else None
    try:
        free = float(shutil.disk_usage(rd).free)
    except OSError:
        free = None
    age = None
    # Before the first log line (loading, tokenising) the console output is the heartbeat.
    for name in (TRAINER_LOG, *LOG_FILES):
        try:
            age = time.time() - (rd / name).stat().st_mtime
            break
        except OSError:
            continue
    num_gpus = 1
    gpu_mem = util = None
    gpu_name = None
    gpu_idx: list[int] = []
    if man is not None:
        gpu_idx = list(man.gpus)
        num_gpus = max(1, int(man.num_processes or len(gpu_idx) or 1))
    if gpu_idx:
        gpu_mem, util, gpu_name = _gpu_facts(gpu_idx)
    return TriageInput(
        status=status, exit_message=exit_msg, log_tail=tail, values=values,
        config_dir=config_dir, gpu_mem_bytes=gpu_mem, num_gpus=num_gpus, history=history,
        disk_free_bytes=free, checkpoint_bytes=ck_bytes, last_log_age_s=age,
        checkpoint_step=ck.step if ck else None, checkpoint_epoch=ck_epoch,
        disk_path=_mount_of(rd), gpu_util_pct=util, exit_reason=exit_reason, gpu_name=gpu_name,
    )


def _gpu_facts(indices: list[int]) -> tuple[float | None, float | None, str | None]:
    """(smallest memory, mean utilisation, name) of the run's GPUs, from NVML."""
    try:
        from tunedeck.runner.monitor.nvml import get_nvml
    except ImportError:
        return None, None, None
    try:
        snap = get_nvml().snapshot(with_processes=False)
    except Exception:   # NVML never breaks triage
        return None, None, None
    if not getattr(snap, "available", False):
        return None, None, None
    mems, utils, names = [], [], []
    for g in snap.gpus:
        if g.index in indices:
            if g.mem_total:
                mems.append(float(g.mem_total))
            if g.util_gpu is not None:
                utils.append(float(g.util_gpu))
            if g.name:
                names.append(str(g.name))
    return ((min(mems) if mems else None), (statistics.mean(utils) if utils else None),
            (names[0] if names else None))


def triage_run(run_dir: str | Path) -> list[Diagnosis]:
    """Diagnose the run in ``run_dir`` from its files."""
    return diagnose(gather(run_dir))
