"""Rules that look at this machine's files: the model folder, adapters, datasets, the chat
template, and the output_dir's checkpoints (judged by :mod:`tunedeck.runner.rundir`).
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tunedeck.runner.config import datasets_check as dsc
from tunedeck.runner.config.validate.context import _Ctx
from tunedeck.runner.config.validate.values import _is_number
from tunedeck.runner.config.yamlio import split_list
from tunedeck.runner.rundir.checkpoints import CheckpointInfo, inspect_checkpoint, list_checkpoints


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


_FILE_RULES: tuple[Callable[[_Ctx], None], ...] = (
    _file_model, _file_adapters, _file_datasets, _file_template, _file_checkpoints,
)
