"""Training throughput: ``python -m runner.train`` against a plain transformers+peft script,
and packing against no packing on a dataset of mixed lengths.

    /work/venv/bin/python bench/train_throughput.py                 # 3 rounds, 60 steps
    /work/venv/bin/python bench/train_throughput.py --rounds 5 --steps 80

Same tiny model (built offline), same tokenized data (the runner tokenizes the demo
data once into a ``tokenized_path`` that both sides then read), same batch, steps, seed,
LoRA (rank 8, all linear layers), optimizer (``--optim``) and schedule. Each round runs every variant
once, alternating the order, as separate processes with ``OMP_NUM_THREADS=1``.

- tokens/s: the median over steps (from ``--warmup`` on) of real (non-padding) tokens of
  the step over the time between its log and the previous one; also the window average
  (all those tokens over all that time). No start-up, no final save in either;
- time to first step: from spawning the process to the log of step 1.

Targets (issue 3): runner/plain tokens/s >= 0.98; packed/unpacked tokens/s >= 1.5.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable


def sh(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    """Run to completion; returns the spawn time (epoch seconds)."""
    t = time.time()
    proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(argv)}\n{proc.stderr[-3000:]}")
    return t


def yaml_file(path: Path, values: dict) -> Path:
    path.write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in values.items()), encoding="utf-8")
    return path


def mixed_length_data(out: Path, n: int = 1200, seed: int = 0) -> None:
    """Alpaca rows whose answers have long-tailed lengths (a few tokens to ~220)."""
    rng = random.Random(seed)
    words = ["alpha", "beta", "gamma", "delta", "sort", "reverse", "add", "the", "numbers", "letters",
             "model", "loss", "step", "train", "data", "value", "list", "word", "count", "copy"]
    rows = []
    for _ in range(n):
        k = int(round(2 ** rng.uniform(1, 7.6)))  # 2 .. ~190 words, log-uniform
        rows.append({"instruction": "Repeat the words.", "input": "",
                     "output": " ".join(rng.choice(words) for _ in range(k))})
    out.mkdir(parents=True, exist_ok=True)
    (out / "mixed.json").write_text(json.dumps(rows))
    (out / "dataset_info.json").write_text(json.dumps({"mixed": {"file_name": "mixed.json"}}))


def runner_values(model: Path, out: Path, steps: int, batch: int, optim: str, **extra) -> dict:
    return {
        "model_name_or_path": str(model), "stage": "sft", "do_train": True,
        "finetuning_type": "lora", "lora_rank": 8, "lora_target": "all", "template": "default",
        "per_device_train_batch_size": batch, "learning_rate": 3e-3, "optim": optim, "lr_scheduler_type": "cosine",
        "max_steps": steps, "logging_steps": 1, "save_strategy": "no", "disable_tqdm": True,
        "disable_gradient_checkpointing": True, "report_to": "none", "seed": 42, "use_cpu": True,
        "output_dir": str(out), "overwrite_output_dir": True, **extra,
    }


def runner_record(out: Path) -> list[dict]:
    recs = [json.loads(x) for x in (out / "trainer_log.jsonl").read_text().splitlines() if x.strip()]
    return [{"t": r["timestamp"], "step": r["current_steps"], "tokens": r.get("total_tokens", 0)} for r in recs]


def measure(records: list[dict], spawned: float, warmup: int) -> tuple[float, float, float]:
    """(median per-step tokens/s, window tokens/s, seconds from spawn to the first step's log).

    The median of the per-step rates after ``warmup`` is the headline number: on a shared
    machine another job's burst slows a few steps, and the median ignores them; the
    window average (all tokens over all time) is printed too.
    """
    by_step = {r["step"]: r for r in records}
    first, last = by_step[warmup], records[-1]
    window = (last["tokens"] - first["tokens"]) / (last["t"] - first["t"])
    steady = [r for r in records if r["step"] >= warmup]
    rates = [(b["tokens"] - a["tokens"]) / (b["t"] - a["t"]) for a, b in zip(steady, steady[1:], strict=False)
             if b["t"] > a["t"] and b["step"] == a["step"] + 1]
    return statistics.median(rates), window, by_step[1]["t"] - spawned


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--warmup", type=int, default=5, help="steps excluded from tokens/s")
    p.add_argument("--packing-steps", type=int, default=30)
    p.add_argument("--cutoff", type=int, default=256, help="cutoff_len of the mixed-length comparison")
    p.add_argument("--work", default=None, help="working folder (default: a temporary one, removed)")
    p.add_argument("--skip-packing", action="store_true")
    p.add_argument("--optim", default="adamw_torch_fused",
                   help="optimizer of both sides (transformers' default; the runner's own default is adamw_torch)")
    a = p.parse_args()

    work = Path(a.work) if a.work else Path(tempfile.mkdtemp(prefix="tunedeck-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": str(REPO), "TUNEDECK_CACHE_DIR": str(work / "cache"), "HF_HOME": str(work / "hf")}
    env.pop("TUNEDECK_FAULT", None)
    try:
        model = work / "tiny-llama"
        sh([PY, "-m", "runner.train.tiny", str(model)], env, work)
        sh([PY, "-c", f"from runner.data.demo import write_demo_data; write_demo_data({str(work / 'data')!r})"],
           env, work)
        mixed_length_data(work / "mixed")

        # Tokenize the demo data once, through the runner, into a tokenized_path both sides read.
        tok_path = work / "tokenized"
        prep = yaml_file(work / "prep.yaml", runner_values(
            model, work / "prep-out", 1, a.batch, a.optim, dataset="demo_alpaca", dataset_dir=str(work / "data"),
            cutoff_len=128, tokenized_path=str(tok_path)))
        sh([PY, "-m", "runner.train", str(prep)], env, work)

        cfg_runner = yaml_file(work / "runner.yaml", runner_values(
            model, work / "runner-out", a.steps, a.batch, a.optim, dataset="demo_alpaca", dataset_dir=str(work / "data"),
            cutoff_len=128, tokenized_path=str(tok_path)))
        mixed = {"dataset": "mixed", "dataset_dir": str(work / "mixed"), "cutoff_len": a.cutoff}
        cfg_unpacked = yaml_file(work / "unpacked.yaml", runner_values(
            model, work / "unpacked-out", a.packing_steps, a.batch, a.optim, packing=False, **mixed))
        cfg_packed = yaml_file(work / "packed.yaml", runner_values(
            model, work / "packed-out", a.packing_steps, a.batch, a.optim, packing=True, **mixed))

        def run_runner() -> tuple[float, float, float]:
            t = sh([PY, "-m", "runner.train", str(cfg_runner)], env, work)
            return measure(runner_record(work / "runner-out"), t, a.warmup)

        def run_plain() -> tuple[float, float, float]:
            rec = work / "plain-record.json"
            t = sh([PY, str(REPO / "bench" / "plain_sft.py"), "--model", str(model), "--data", str(tok_path),
                    "--out", str(work / "plain-out"), "--record", str(rec), "--steps", str(a.steps),
                    "--batch", str(a.batch), "--lr", "3e-3", "--seed", "42", "--optim", a.optim], env, work)
            return measure(json.loads(rec.read_text()), t, a.warmup)

        def run_cfg(cfg: Path, out: str) -> tuple[float, float, float]:
            t = sh([PY, "-m", "runner.train", str(cfg)], env, work)
            return measure(runner_record(work / out), t, a.warmup)

        variants = {"runner": run_runner, "plain": run_plain}
        if not a.skip_packing:
            variants["unpacked"] = lambda: run_cfg(cfg_unpacked, "unpacked-out")
            variants["packed"] = lambda: run_cfg(cfg_packed, "packed-out")
        # Warm the tokenized caches and the OS page cache once, unmeasured.
        for name in ("unpacked", "packed"):
            if name in variants:
                variants[name]()
        results: dict[str, list[tuple[float, float, float]]] = {k: [] for k in variants}
        order = list(variants)
        for r in range(a.rounds):
            seq = order if r % 2 == 0 else list(reversed(order))
            for name in seq:
                results[name].append(variants[name]())
                tps, window, ttfs = results[name][-1]
                print(f"round {r + 1} {name:<9} {tps:8.0f} tok/s (window {window:6.0f})   "
                      f"first step after {ttfs:5.2f}s", flush=True)

        def med(name: str, i: int) -> float:
            return statistics.median(x[i] for x in results[name])

        print()
        print(f"{'variant':<10} {'tokens/s':>10} {'window tokens/s':>16} {'first step s':>13}   (medians)")
        for name in results:
            print(f"{name:<10} {med(name, 0):>10.0f} {med(name, 1):>16.0f} {med(name, 2):>13.2f}")
        pairs = [("runner", "plain")] + ([("packed", "unpacked")] if not a.skip_packing else [])
        print()
        for x, y in pairs:
            for i, label in ((0, "tokens/s"), (1, "window tokens/s")):
                per_round = [rx[i] / ry[i] for rx, ry in zip(results[x], results[y], strict=True)]
                print(f"{label} {x}/{y}: median of per-round ratios {statistics.median(per_round):.3f} "
                      f"(rounds: {', '.join(f'{v:.3f}' for v in per_round)})")
        ttfs = [rx[2] / ry[2] for rx, ry in zip(results["runner"], results["plain"], strict=True)]
        print(f"time to first step runner/plain: median {statistics.median(ttfs):.3f} "
              f"(rounds: {', '.join(f'{v:.3f}' for v in ttfs)})")
    finally:
        if not a.work:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
