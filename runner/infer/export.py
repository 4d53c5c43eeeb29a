"""``tunedeck export``: merge a run's LoRA into its base model and write a deployable folder.

Memory: the base is loaded once (``low_cpu_mem_usage``, in its saved dtype, on ``export_device``),
peft merges each adapted layer in place (one layer's delta at a time), and the shards are written
one by one from the model's own tensors; so the peak is about one copy of the model plus one
shard (``bench/export_memory.py`` measures it), not the two copies of load-then-copy exports.

Everything is written into a hidden temp folder beside ``export_dir`` and renamed into place at
the end; ``tunedeck_export.json`` is written last. An interrupted export leaves no folder that
looks complete (a killed one leaves ``.NAME.tunedeck-tmp-PID``, removed by the next export).

Quantized export (GPTQ through transformers' ``GPTQConfig``) and the hub upload run against the
real libraries and stop with a clear message when the package, CUDA or the network is missing.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from tunedeck.runner.errors import ConfigError, TunedeckError
from tunedeck.runner.fsutil import pid_alive
from tunedeck.runner.infer.spec import EXPORT_RECORD, InferSpec

Progress = Callable[[str], None]
TMP_MARK = ".tunedeck-tmp-"
GB = 10**9  # LLaMA-Factory passes f"{export_size}GB" to transformers: decimal gigabytes


@dataclass(frozen=True)
class ExportPlan:
    """What an export will do, decided before any weight is loaded (unit-testable)."""

    export_dir: Path
    max_shard_bytes: int
    legacy_format: bool
    device: str                      # "cpu" | "auto"
    dtype: str                       # "float32" | "bfloat16" | "float16"
    quantization: dict[str, Any] | None = None   # GPTQConfig keyword arguments (no tokenizer/dataset objects)
    hub_model_id: str | None = None
    overwrite: bool = False


@dataclass
class ExportResult:
    export_dir: Path
    files: list[str] = field(default_factory=list)
    shards: int = 0
    total_bytes: int = 0
    seconds: float = 0.0
    record: dict[str, Any] = field(default_factory=dict)
    uploaded: str | None = None


def _noop(_: str) -> None:
    pass


def plan_export(spec: InferSpec, *, export_dir: str | Path | None = None, overwrite: bool = False) -> ExportPlan:
    """Check the export keys (LLaMA-Factory's rules) and decide the dtype, shard size, device."""
    v = spec.values
    raw_dir = export_dir if export_dir is not None else v.get("export_dir")
    if not raw_dir:
        raise ConfigError("export_dir is not set", key="export_dir",
                          hint="tunedeck export RUN export_dir=merged/ (or set export_dir in the config)")
    out = Path(str(raw_dir)).expanduser().resolve()
    size = v.get("export_size", 5)
    try:
        size_f = float(size)
    except (TypeError, ValueError):
        raise ConfigError(f"expected a size in GB, got {size!r}", key="export_size") from None
    if not size_f > 0:
        raise ConfigError(f"must be > 0 GB, got {size!r}", key="export_size")
    device = str(v.get("export_device") or "cpu")
    if device not in ("cpu", "auto"):
        raise ConfigError(f"expected cpu or auto, got {device!r}", key="export_device")
    dtype = spec.infer_dtype if spec.infer_dtype != "auto" else _saved_dtype(spec.model_name_or_path)
    bits = v.get("export_quantization_bit")
    quant = None
    if bits is not None:
        if spec.adapters:
            # LLaMA-Factory: "Please merge adapters before quantizing the model."
            raise ConfigError("cannot quantize while adapters are attached", key="export_quantization_bit",
                              hint="export the merged model first, then export that folder again with "
                              "export_quantization_bit (model_name_or_path = the merged folder)")
        if int(bits) not in (2, 3, 4, 8):
            raise ConfigError(f"GPTQ takes 2, 3, 4 or 8 bits, got {bits!r}", key="export_quantization_bit")
        dataset = v.get("export_quantization_dataset")
        if not dataset:
            raise ConfigError("export quantization needs a calibration dataset", key="export_quantization_dataset",
                              hint="a JSON/JSONL file of texts, e.g. LLaMA-Factory's data/c4_demo.jsonl")
        quant = {"bits": int(bits), "dataset_path": str(dataset),
                 "nsamples": int(v.get("export_quantization_nsamples") or 128),
                 "maxlen": int(v.get("export_quantization_maxlen") or 1024)}
    return ExportPlan(export_dir=out, max_shard_bytes=max(1, int(size_f * GB)),
                      legacy_format=bool(v.get("export_legacy_format", False)), device=device, dtype=dtype,
                      quantization=quant, hub_model_id=v.get("export_hub_model_id") or None, overwrite=overwrite)


def _saved_dtype(model: str) -> str:
    """The dtype in the model's config.json (LLaMA-Factory exports in it); float32 if unknown."""
    with contextlib.suppress(OSError, ValueError):
        cfg = json.loads((Path(model) / "config.json").read_text(encoding="utf-8"))
        d = cfg.get("dtype") or cfg.get("torch_dtype")
        if d in ("float32", "bfloat16", "float16"):
            return str(d)
    return "float32"


# ---------------------------------------------------------------------------------------------
# the guarded paths: GPTQ and the hub

def check_quantization_ready() -> None:
    """GPTQ export needs CUDA and the gptqmodel (or auto-gptq) + optimum packages."""
    import importlib.util

    missing = [p for p in ("optimum",) if importlib.util.find_spec(p) is None]
    if importlib.util.find_spec("gptqmodel") is None and importlib.util.find_spec("auto_gptq") is None:
        missing.append("gptqmodel")
    if missing:
        raise TunedeckError(f"export_quantization_bit needs the {' and '.join(missing)} package(s), not installed here",
                            hint=f"pip install {' '.join(missing)} (on a CUDA machine), or drop export_quantization_bit")
    if not torch.cuda.is_available():
        raise TunedeckError("export_quantization_bit (GPTQ) needs a CUDA GPU; none is visible here",
                            hint="run the quantized export on a GPU box, or drop export_quantization_bit")


def quantization_samples(tokenizer: Any, path: str | Path, nsamples: int, maxlen: int,
                         seed: int = 42) -> list[dict[str, list[int]]]:
    """Calibration samples as LLaMA-Factory builds them: random ``maxlen``-token windows of texts
    from a JSON/JSONL file (``text`` column, else the first string field) long enough to hold one."""
    import random

    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"{p} does not exist", key="export_quantization_dataset")
    raw = p.read_text(encoding="utf-8")
    try:
        rows = json.loads(raw) if p.suffix == ".json" else [json.loads(x) for x in raw.splitlines() if x.strip()]
    except ValueError as exc:
        raise ConfigError(f"{p}: not JSON/JSONL ({exc})", key="export_quantization_dataset") from exc
    texts = []
    for r in rows if isinstance(rows, list) else []:
        if isinstance(r, str):
            texts.append(r)
        elif isinstance(r, dict):
            t = r.get("text") or next((x for x in r.values() if isinstance(x, str)), None)
            if t:
                texts.append(t)
    rng = random.Random(seed)
    encoded = [ids for ids in (tokenizer.encode(t, add_special_tokens=False) for t in texts) if len(ids) > maxlen]
    if not encoded:
        raise ConfigError(f"{p}: no text longer than export_quantization_maxlen={maxlen} tokens",
                          key="export_quantization_dataset", hint="lower export_quantization_maxlen")
    out = []
    for _ in range(nsamples):
        ids = rng.choice(encoded)
        start = rng.randint(0, len(ids) - maxlen - 1)
        window = ids[start:start + maxlen]
        out.append({"input_ids": window, "attention_mask": [1] * len(window)})
    return out


def gptq_config_kwargs(plan: ExportPlan, tokenizer: Any) -> dict[str, Any]:
    """The ``transformers.GPTQConfig`` arguments the quantized export passes (tested on CPU)."""
    assert plan.quantization is not None
    q = plan.quantization
    samples = quantization_samples(tokenizer, q["dataset_path"], q["nsamples"], q["maxlen"])
    return {"bits": q["bits"], "dataset": [tokenizer.decode(s["input_ids"]) for s in samples],
            "tokenizer": tokenizer, "model_seqlen": q["maxlen"]}


def check_hub_ready(repo_id: str) -> Any:
    """An authenticated ``HfApi`` for the upload, or a clear error (offline, no token)."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        raise TunedeckError(f"export_hub_model_id={repo_id}: HF_HUB_OFFLINE is set, so nothing can be uploaded",
                            hint="unset HF_HUB_OFFLINE (and set HF_TOKEN) to upload; the export itself is kept")
    from huggingface_hub import HfApi
    from huggingface_hub.utils import get_token

    if not get_token():
        raise TunedeckError(f"export_hub_model_id={repo_id}: no Hugging Face token",
                            hint="set HF_TOKEN or run `hf auth login`; the export itself is kept")
    return HfApi()


def upload_to_hub(folder: Path, repo_id: str, progress: Progress = _noop) -> str:
    api = check_hub_ready(repo_id)
    progress(f"uploading to the hub: {repo_id}")
    try:
        api.create_repo(repo_id, exist_ok=True, private=True)
        info = api.upload_folder(repo_id=repo_id, folder_path=str(folder),
                                 commit_message="tunedeck export")
    except Exception as exc:  # network, permissions: the export stays on disk
        raise TunedeckError(f"upload to {repo_id} failed: {exc}",
                            hint="the export itself is complete; upload it later with `hf upload`") from exc
    return str(getattr(info, "commit_url", None) or f"https://huggingface.co/{repo_id}")


# ---------------------------------------------------------------------------------------------
# writing

def _slow_shard_seconds() -> float:
    """``TUNEDECK_FAULT=slowshard@S``: sleep S seconds after each shard (interrupt tests)."""
    from tunedeck.runner.train.faults import faults_from_env

    try:
        return faults_from_env().slow_shard_seconds
    except ValueError:
        return 0.0


def write_shards(model: Any, out: Path, max_shard_bytes: int, *, legacy: bool,
                 progress: Progress = _noop) -> list[str]:
    """The model's weights as shards of at most ``max_shard_bytes`` (a bigger single tensor gets
    its own shard) plus the index, from the model's own tensors: nothing is copied but the shard
    being written. Tied weights are written once, as transformers expects them."""
    from huggingface_hub import split_torch_state_dict_into_shards
    from transformers.modeling_utils import remove_tied_weights_from_state_dict

    state = remove_tied_weights_from_state_dict(model.state_dict(), model)
    pattern = "pytorch_model{suffix}.bin" if legacy else "model{suffix}.safetensors"
    split = split_torch_state_dict_into_shards(state, filename_pattern=pattern, max_shard_size=max_shard_bytes)
    slow = _slow_shard_seconds()
    written = []
    n = len(split.filename_to_tensors)
    for i, (fname, names) in enumerate(split.filename_to_tensors.items(), 1):
        shard = {k: state.pop(k).detach().to("cpu").contiguous() for k in names}
        if legacy:
            torch.save(shard, out / fname)
        else:
            from safetensors.torch import save_file

            save_file(shard, str(out / fname), metadata={"format": "pt"})
        del shard
        os.chmod(out / fname, 0o644)  # like the config files beside it (safetensors writes 0600)
        written.append(fname)
        progress(f"shard {i}/{n}: {fname}")
        if slow:
            time.sleep(slow)
    if split.is_sharded:
        index = {"metadata": {"total_size": sum(os.path.getsize(out / f) for f in written)},
                 "weight_map": split.tensor_to_filename}
        iname = "pytorch_model.bin.index.json" if legacy else "model.safetensors.index.json"
        (out / iname).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        written.append(iname)
    return written


def _clean_stale_temps(export_dir: Path) -> None:
    """Temp folders of exports that died (their pid is gone) are removed."""
    prefix = f".{export_dir.name}{TMP_MARK}"
    with contextlib.suppress(OSError):
        for p in export_dir.parent.iterdir():
            if p.name.startswith(prefix) and p.is_dir():
                pid = p.name[len(prefix):]
                if pid.isdigit() and not pid_alive(int(pid)):
                    shutil.rmtree(p, ignore_errors=True)


def _generation_config(model: Any, spec: InferSpec, stop_ids: list[int], pad_id: int | None) -> Any:
    """The model's generation config with the run's decoding settings and stop tokens, so plain
    ``model.generate`` decodes as ``tunedeck chat`` does."""
    from transformers import GenerationConfig

    gc = getattr(model, "generation_config", None) or GenerationConfig()
    g = spec.generation
    gc.do_sample = g.do_sample and g.temperature > 0
    if gc.do_sample:
        gc.temperature, gc.top_p, gc.top_k = g.temperature, g.top_p, g.top_k
    else:
        gc.temperature, gc.top_p, gc.top_k = None, None, None
    gc.num_beams, gc.max_new_tokens = g.num_beams, g.max_new_tokens
    gc.repetition_penalty, gc.length_penalty = g.repetition_penalty, g.length_penalty
    gc.eos_token_id = stop_ids if len(stop_ids) > 1 else (stop_ids[0] if stop_ids else gc.eos_token_id)
    if pad_id is not None:
        gc.pad_token_id = pad_id
    return gc


def export_model(spec: InferSpec, plan: ExportPlan, progress: Progress = _noop) -> ExportResult:
    """Merge and write (see the module docstring). Raises :class:`TunedeckError` with the fix."""
    started = time.monotonic()
    out = plan.export_dir
    if out.exists() and any(out.iterdir()) and not plan.overwrite:
        raise TunedeckError(f"{out} exists and is not empty", hint="choose another export_dir, or pass --overwrite")
    if plan.quantization is not None:
        check_quantization_ready()
    if plan.hub_model_id:
        check_hub_ready(plan.hub_model_id)  # fail before the long part, not after it
    out.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale_temps(out)
    tmp = out.parent / f".{out.name}{TMP_MARK}{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(mode=0o755)
    # SIGTERM (a stop from the TUI, a scheduler) ends like Ctrl+C: the finally below cleans up.
    previous = signal.getsignal(signal.SIGTERM)
    with contextlib.suppress(ValueError):  # not the main thread (TUI worker): the caller handles it
        signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        result = _export_into(tmp, spec, plan, progress)
        progress(f"moving into {out}")
        if out.exists():
            old = out.parent / f".{out.name}{TMP_MARK}old-{os.getpid()}"
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    finally:
        with contextlib.suppress(ValueError):
            signal.signal(signal.SIGTERM, previous)
        shutil.rmtree(tmp, ignore_errors=True)
    result.export_dir = out
    result.seconds = time.monotonic() - started
    if plan.hub_model_id:
        result.uploaded = upload_to_hub(out, plan.hub_model_id, progress)
    return result


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _export_into(tmp: Path, spec: InferSpec, plan: ExportPlan, progress: Progress) -> ExportResult:
    from transformers import AutoConfig, AutoModelForCausalLM

    from tunedeck.runner import __version__
    from tunedeck.runner.infer.engine import apply_adapters, prepare_tokenizer, stop_token_ids
    from tunedeck.runner.infer.formats import jinja_chat_template, ollama_modelfile

    progress(f"tokenizer of {spec.model_name_or_path}")
    tokenizer, template, added = prepare_tokenizer(spec)
    dtype = getattr(torch, plan.dtype)
    config = AutoConfig.from_pretrained(spec.model_name_or_path, trust_remote_code=spec.trust_remote_code,
                                        revision=spec.revision, cache_dir=spec.cache_dir)
    kwargs: dict[str, Any] = {"config": config, "dtype": dtype, "low_cpu_mem_usage": True,
                              "trust_remote_code": spec.trust_remote_code, "revision": spec.revision,
                              "cache_dir": spec.cache_dir}
    kwargs["device_map"] = "auto" if plan.device == "auto" else {"": "cpu"}
    if plan.quantization is not None:
        from transformers import GPTQConfig

        progress("calibration samples for GPTQ")
        kwargs["quantization_config"] = GPTQConfig(**gptq_config_kwargs(plan, tokenizer))
        kwargs["device_map"] = "auto"
    progress(f"loading {spec.model_name_or_path} ({plan.dtype}, {plan.device})")
    model: Any = AutoModelForCausalLM.from_pretrained(spec.model_name_or_path, **kwargs)
    if added and len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=64)
    if spec.adapters:
        model = apply_adapters(model, spec.adapters, progress)
        progress(f"merging {len(spec.adapters)} adapter(s) layer by layer")
        model = model.merge_and_unload()
    model.eval()
    stop_ids = stop_token_ids(tokenizer, template)
    progress(f"writing shards of at most {plan.max_shard_bytes / GB:g} GB")
    with torch.no_grad():
        files = write_shards(model, tmp, plan.max_shard_bytes, legacy=plan.legacy_format, progress=progress)
    model.config.dtype = dtype
    model.config.use_cache = True
    model.config.save_pretrained(tmp)
    _generation_config(model, spec, stop_ids, tokenizer.pad_token_id).save_pretrained(tmp)
    progress("tokenizer, chat template, Modelfile")
    tokenizer.chat_template = jinja_chat_template(template, tokenizer)
    tokenizer.padding_side = "left"  # generation pads on the left
    tokenizer.save_pretrained(tmp, save_jinja_files=False)  # the template inside tokenizer_config.json
    (tmp / "chat_template.jinja").write_text(tokenizer.chat_template, encoding="utf-8")
    (tmp / "Modelfile").write_text(
        ollama_modelfile(template, tokenizer, stop_ids, generation=spec.generation.to_dict(),
                         num_ctx=max(spec.cutoff_len, 4096)), encoding="utf-8")
    shard_files = [f for f in files if not f.endswith(".json")]
    record = {
        "tunedeck_version": __version__,
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "base_model": spec.values.get("model_name_or_path") or spec.model_name_or_path,
        "loaded_from": spec.model_name_or_path,
        "adapters_merged": list(spec.adapters),
        "run_dir": str(spec.run_dir) if spec.run_dir else None,
        "checkpoint": str(spec.checkpoint) if spec.checkpoint else None,
        "checkpoint_step": spec.checkpoint_step,
        "finetuning_type": spec.finetuning_type,
        "template": template.name if spec.template else None,
        "default_system": spec.default_system,
        "dtype": plan.dtype,
        "export_size_gb": plan.max_shard_bytes / GB,
        "format": "bin" if plan.legacy_format else "safetensors",
        "quantization": {k: v for k, v in (plan.quantization or {}).items()} or None,
        "shards": shard_files,
        "generation": spec.generation.to_dict(),
        "plan": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(plan).items()},
    }
    # Last: a folder with this file in it is a complete export.
    (tmp / EXPORT_RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    listing = sorted(p.name for p in tmp.iterdir())
    total = sum((tmp / f).stat().st_size for f in shard_files)
    return ExportResult(export_dir=tmp, files=listing, shards=len(shard_files), total_bytes=total, record=record)
