"""Batch prediction on an eval set, LLaMA-Factory's ``do_predict`` way, written as it goes.

``python -m tunedeck.runner.infer.predict JOB_DIR/predict.json`` (started by ``tunedeck
predict`` as a supervised job). For every example of ``eval_dataset`` (in order, after
``max_samples``), the prompt is built by the training formatter exactly as LLaMA-Factory's
unsupervised processor builds it (``encode_oneturn`` of the prompt and the reference answer,
cut to ``cutoff_len`` with the same budget split), the model answers a left-padded batch at a
time, and each row ``{"prompt", "predict", "label"}`` is appended to
``generated_predictions.jsonl`` and flushed as its batch finishes: a crash keeps what was
done, and a rerun continues after the last complete row, never writing a row twice. At the end
``predict_results.json`` holds the mean ``predict_bleu-4``, ``predict_rouge-1/2/l`` over every
row (see :mod:`tunedeck.runner.infer.metrics`) and the runtime.

Progress goes to ``trainer_log.jsonl`` (``current_steps`` = rows done) so ``status``,
``watch`` and the dashboard show a predict job like a run; ``trainer_exit.json`` says how it
ended.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunedeck.runner.errors import ConfigError, TunedeckError
from tunedeck.runner.fsutil import atomic_write_json, atomic_write_text, read_json

PREDICT_SPEC = "predict.json"
PREDICTIONS = "generated_predictions.jsonl"
RESULTS = "predict_results.json"


@dataclass(frozen=True)
class Example:
    prompt_ids: list[int]
    label_ids: list[int]


def read_done(path: Path) -> int:
    """Complete rows already written. A torn last line (the process died mid-write) is cut off
    with an atomic rewrite of the complete rows before it, so the next append starts clean."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return 0
    if not data:
        return 0
    lines = data.split(b"\n")
    complete = lines[:-1]   # what follows the last newline is empty, or a torn row
    torn = not data.endswith(b"\n")
    good: list[bytes] = []
    for ln in complete:
        try:
            row = json.loads(ln)
        except ValueError:
            torn = True
            break
        if not isinstance(row, dict) or "predict" not in row:
            torn = True
            break
        good.append(ln)
    if torn:
        atomic_write_text(path, "".join(g.decode() + "\n" for g in good))
    return len(good)


def load_examples(loaded: Any, values: dict[str, Any], config_dir: Path | None) -> list[Example]:
    """The eval set as (prompt ids, label ids), in order, LLaMA-Factory's unsupervised way."""
    from tunedeck.runner.data.args import DataArgs
    from tunedeck.runner.data.dataset_info import resolve_datasets
    from tunedeck.runner.data.loader import load_single_dataset, merge_datasets, resolve_dataset_dir
    from tunedeck.runner.data.processors import infer_seqlen

    if not values.get("eval_dataset"):
        raise ConfigError("predict needs eval_dataset: the examples to generate answers for",
                          key="eval_dataset", hint="tunedeck predict RUN eval_dataset=NAME (a dataset_info.json entry)")
    args = DataArgs.from_values({**values, "streaming": False}, "sft")
    dataset_dir = resolve_dataset_dir(args.dataset_dir, config_dir)
    attrs = resolve_datasets(list(args.eval_dataset), dataset_dir, key="eval_dataset")
    seed = int(values.get("seed") or 42)
    parts = [load_single_dataset(a, args, seed, None) for a in attrs]
    ds = merge_datasets(parts, args, seed, concat=True)
    out: list[Example] = []
    tok, template = loaded.tokenizer, loaded.template
    for row in ds:
        prompt, response = row["_prompt"], row["_response"]
        if not prompt:
            continue
        answer = response[:1] if len(response) == 1 else [{"role": "assistant", "content": ""}]
        ids, labels = template.encode_oneturn(tok, [*prompt, *answer], row["_system"] or None,
                                              row["_tools"] or None)
        src, tgt = infer_seqlen(len(ids), len(labels), args.cutoff_len)
        out.append(Example(list(ids[:src]), list(labels[:tgt])))
    return out


def _batches(items: list[Example], start: int, size: int) -> Iterator[tuple[int, list[Example]]]:
    for i in range(start, len(items), size):
        yield i, items[i:i + size]


def _log(job_dir: Path, done: int, total: int, started: float, first_done: int) -> None:
    from tunedeck.runner.rundir.protocol import TRAINER_LOG

    elapsed = time.time() - started
    rate = (done - first_done) / elapsed if elapsed > 0 and done > first_done else 0.0
    rec = {"current_steps": done, "total_steps": total,
           "percentage": round(100.0 * done / total, 2) if total else 100.0,
           "elapsed_time": time.strftime("%H:%M:%S", time.gmtime(elapsed)),
           "remaining_time": time.strftime("%H:%M:%S", time.gmtime((total - done) / rate)) if rate else "",
           "rows_per_second": round(rate, 4), "timestamp": time.time()}
    with open(job_dir / TRAINER_LOG, "a", encoding="utf-8") as f:
        f.write(json.dumps(rec) + "\n")


def score_file(path: Path) -> tuple[dict[str, float], int]:
    from tunedeck.runner.infer.metrics import SimilarityMeter

    meter = SimilarityMeter()
    with open(path, encoding="utf-8") as f:
        for ln in f:
            row = json.loads(ln)
            meter.add(str(row.get("predict", "")), str(row.get("label", "")))
    return meter.means(), meter.count


def vllm_engine_kwargs(spec: Any, n_devices: int) -> dict[str, Any]:
    """``vllm.LLM(...)`` for predict, as LLaMA-Factory's ``scripts/vllm_infer.py`` builds it."""
    values = dict(spec.values)
    if len(spec.adapters) > 1:
        raise ConfigError("vLLM applies one LoRA adapter: merge the earlier ones first",
                          key="adapter_name_or_path", hint="tunedeck export RUN, then predict on the export")
    kw: dict[str, Any] = {
        "model": spec.model_name_or_path,
        "trust_remote_code": spec.trust_remote_code,
        "dtype": spec.infer_dtype,
        "max_model_len": int(values.get("vllm_maxlen") or (spec.cutoff_len + spec.generation.max_new_tokens)),
        "tensor_parallel_size": max(1, n_devices),
        "gpu_memory_utilization": float(values.get("vllm_gpu_util") or 0.9),
        "disable_log_stats": True,
        "enable_lora": bool(spec.adapters),
        "enforce_eager": bool(values.get("vllm_enforce_eager")),
    }
    if spec.adapters:
        kw["max_lora_rank"] = int(values.get("vllm_max_lora_rank") or 32)
    return kw


def vllm_sampling_kwargs(gen: Any, stop_ids: list[int], seed: int | None) -> dict[str, Any]:
    """``vllm.SamplingParams(...)`` equal to the transformers generation settings."""
    sampling = gen.do_sample and gen.temperature > 0
    return {
        "repetition_penalty": gen.repetition_penalty or 1.0,
        "temperature": gen.temperature if sampling else 0.0,
        "top_p": (gen.top_p or 1.0) if sampling else 1.0,
        "top_k": (gen.top_k or -1) if sampling else -1,
        "stop_token_ids": stop_ids,
        "max_tokens": gen.max_new_tokens,
        "skip_special_tokens": gen.skip_special_tokens,
        "seed": seed,
    }


class _VllmLoaded:
    """What predict needs of a loaded model, with vLLM generating (CUDA only)."""

    def __init__(self, spec: Any) -> None:
        from tunedeck.runner.infer.engine import prepare_tokenizer, stop_token_ids
        from tunedeck.runner.infer.serve import _cuda_devices, require_gpu_backend

        require_gpu_backend("vllm")
        from vllm import LLM, SamplingParams  # type: ignore[import-not-found]
        from vllm.lora.request import LoRARequest  # type: ignore[import-not-found]

        self.spec = spec
        self.tokenizer, self.template, _ = prepare_tokenizer(spec)
        stops = stop_token_ids(self.tokenizer, self.template)
        self.llm = LLM(**vllm_engine_kwargs(spec, _cuda_devices()))
        self.params = SamplingParams(**vllm_sampling_kwargs(spec.generation, stops, spec.values.get("seed")))
        self.lora = LoRARequest("default", 1, spec.adapters[-1]) if spec.adapters else None

    def generate(self, batch: list[list[int]]) -> list[str]:
        outs = self.llm.generate([{"prompt_token_ids": ids} for ids in batch], self.params,
                                 lora_request=self.lora)
        return [o.outputs[0].text for o in outs]


def run(job_dir: Path, spec_doc: dict[str, Any]) -> dict[str, Any]:
    """Generate what is missing, then score everything; returns predict_results."""
    from tunedeck.runner.infer.spec import resolve

    spec = resolve(spec_doc["target"], spec_doc.get("checkpoint"), spec_doc.get("overrides") or {})
    values = dict(spec.values)
    if spec.infer_backend == "vllm":
        loaded: Any = _VllmLoaded(spec)
        answer = loaded.generate
    elif spec.infer_backend == "huggingface":
        from tunedeck.runner.infer.engine import generate, load_model, seed_everything

        loaded = load_model(spec, progress=lambda t: print(f"loading {t}", flush=True))
        seed_everything(values.get("seed"))

        def answer(batch: list[list[int]]) -> list[str]:
            return generate(loaded, batch, spec.generation)
    else:
        raise ConfigError(f"predict runs on infer_backend huggingface or vllm, not {spec.infer_backend}",
                          key="infer_backend")
    config_dir = Path(spec.config_path).parent if spec.config_path else None
    examples = load_examples(loaded, values, config_dir)
    out = job_dir / PREDICTIONS
    done = read_done(out)
    if done > len(examples):
        raise TunedeckError(f"{out} has {done} rows but the eval set has {len(examples)}",
                            hint="the eval set changed: tunedeck predict ... --overwrite")
    total = len(examples)
    print(f"{total} examples; {done} already written, {total - done} to generate", flush=True)
    size = max(1, int(spec_doc.get("batch_size") or values.get("per_device_eval_batch_size") or 8))
    tok = loaded.tokenizer
    started, first = time.time(), done
    _log(job_dir, done, total, started, first)
    with open(out, "a", encoding="utf-8") as f:
        for i, batch in _batches(examples, done, size):
            answers = answer([e.prompt_ids for e in batch])
            lines = []
            for e, a in zip(batch, answers, strict=True):
                lines.append(json.dumps({
                    "prompt": tok.decode(e.prompt_ids, skip_special_tokens=False),
                    "predict": a,
                    "label": tok.decode(e.label_ids, skip_special_tokens=True),
                }, ensure_ascii=False) + "\n")
            f.write("".join(lines))
            f.flush()
            os.fsync(f.fileno())
            done = i + len(batch)
            _log(job_dir, done, total, started, first)
            print(f"{done}/{total} rows", flush=True)
    runtime = time.time() - started
    means, n = score_file(out)
    results: dict[str, Any] = {f"predict_{k}": round(v, 4) for k, v in means.items()}
    results.update({"predict_samples": n, "predict_runtime": round(runtime, 4),
                    "predict_samples_per_second": round((n - first) / runtime, 4) if runtime > 0 else 0.0,
                    "checkpoint": str(spec.checkpoint) if spec.checkpoint else None})
    atomic_write_json(job_dir / RESULTS, results)
    return results


def _tag(spec: Any) -> str:
    """``checkpoint-N``, ``final`` (the run's own weights) or ``base``."""
    if spec.checkpoint is None:
        return "base" if spec.kind == "run" and not spec.adapters else "final"
    ck = Path(str(spec.checkpoint))
    if spec.run_dir is not None and ck.resolve() == Path(str(spec.run_dir)).resolve():
        return "final"
    return ck.name


def job_dir_for(spec: Any, explicit: str | None) -> Path:
    """``--dir``, else ``predict-<checkpoint>`` in the run directory (or the config's output_dir)."""
    if explicit:
        return Path(explicit).expanduser().resolve()
    tag = _tag(spec)
    if spec.run_dir is not None:
        return Path(spec.run_dir) / f"predict-{tag}"
    out = (spec.values or {}).get("output_dir")
    if spec.kind != "export" and out:
        return Path(str(out)).expanduser().resolve() / f"predict-{tag}"
    return Path(spec.model_name_or_path).resolve().parent / (Path(spec.model_name_or_path).name + "-predict")


def start(target: str, checkpoint: str | None, overrides: dict[str, Any], *, job_dir: str | None,
          batch_size: int | None, overwrite: bool) -> Any:
    """Resolve, check that the rows already there belong to the same question, start the job.

    What decides the rows (target, checkpoint, eval set, cut-off, generation settings) is kept
    in ``predict.json``; a rerun with other settings refuses to mix its rows into the old file
    unless ``overwrite`` (the old file is kept beside, renamed, never deleted)."""
    from tunedeck.runner.control.service import start_job
    from tunedeck.runner.fsutil import ensure_dir
    from tunedeck.runner.infer.spec import resolve

    spec = resolve(target, checkpoint, overrides)
    if not spec.values.get("eval_dataset"):
        raise ConfigError("predict needs eval_dataset: the examples to generate answers for",
                          key="eval_dataset",
                          hint="tunedeck predict RUN eval_dataset=NAME (a dataset_info.json entry)")
    d = job_dir_for(spec, job_dir)
    ensure_dir(d)
    question = {
        "target": str(Path(target).resolve()) if Path(target).exists() else str(target),
        "checkpoint": str(spec.checkpoint) if spec.checkpoint else checkpoint,
        "overrides": overrides,
        "generation": spec.generation.to_dict(),
        "eval_dataset": spec.values.get("eval_dataset"),
        "max_samples": spec.values.get("max_samples"),
        "cutoff_len": spec.values.get("cutoff_len"),
    }
    old = read_json(d / PREDICT_SPEC)
    rows = d / PREDICTIONS
    if rows.exists() and rows.stat().st_size:
        same = isinstance(old, dict) and {k: old.get(k) for k in question} == question
        if overwrite or not same:
            if not overwrite:
                raise ConfigError(
                    f"{rows} holds predictions made with other settings",
                    hint="rerun with the same settings to continue it, or --overwrite to start over "
                         "(the old file is kept, renamed)")
            rows.rename(d / f"generated_predictions.{int(time.time())}.jsonl")
    doc = {**question, "target": str(target), "batch_size": batch_size}
    atomic_write_json(d / PREDICT_SPEC, doc)
    argv = [sys.executable, "-m", "tunedeck.runner.infer.predict", str(d / PREDICT_SPEC)]
    from tunedeck.runner.infer.serve import _run_name

    return start_job(d, argv, job="predict", name=f"{_run_name(spec)}-predict-{_tag(spec)}",
                     config_path=str(spec.config_path or target),
                     details={"predicts": str(target), "checkpoint": question["checkpoint"]})


def summary(results: dict[str, Any]) -> str:
    return (f"predicted {results.get('predict_samples')} rows: "
            + ", ".join(f"{k.removeprefix('predict_')} {results[k]:.2f}"
                        for k in ("predict_bleu-4", "predict_rouge-1", "predict_rouge-2", "predict_rouge-l")
                        if k in results))


def main(argv: list[str] | None = None) -> int:
    from tunedeck.runner.control.service import read_job_spec
    from tunedeck.runner.rundir.protocol import TRAINER_EXIT

    got = read_job_spec(argv, "tunedeck.runner.infer.predict", "PREDICT_JSON")
    if got is None:
        return 2
    job_dir, spec_doc = got
    try:
        results = run(job_dir, spec_doc)
    except TunedeckError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        atomic_write_json(job_dir / TRAINER_EXIT, {"reason": "config_error", "exit_code": 2,
                                                   "message": exc.message})
        return 2
    msg = summary(results)
    print(msg, flush=True)
    atomic_write_json(job_dir / TRAINER_EXIT, {"reason": "finished", "exit_code": 0, "message": msg})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
