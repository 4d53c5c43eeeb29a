"""Training throughput: ``python -m tunedeck.runner.train`` against a plain transformers+peft script,
and packing against no packing on a dataset of mixed lengths.

    python bench/train_throughput.py                 # 3 rounds, 150 steps
    python bench/train_throughput.py --rounds 5 --skip-packing

Same tiny model (built offline), same tokenized data (the runner tokenizes the demo
data once into a ``tokenized_path`` that both sides then read), same batch, steps, seed,
LoRA (rank 8, all linear layers), optimizer (``--optim``) and schedule. Each round runs every variant
once, alternating the order, as separate processes with ``OMP_NUM_THREADS=1``.

- tokens per CPU-second: real (non-padding) tokens from step ``--warmup`` to the last step
  over the process's own CPU time in that stretch (sampled from /proc every 10 ms). With
  one thread per process this is the tokens/s of an otherwise idle core, and it does not
  move when other jobs share the machine; the headline number of each ratio;
- tokens/s: the median over those steps of each step's tokens over its wall time, and
  the window average (all tokens over all wall time). No start-up, no final save;
- time to first step: from spawning the process to the log of step 1.

Targets (issue 3): runner/plain tokens/s >= 0.98; packed/unpacked tokens/s >= 1.5.
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable


CLK_TCK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float | None:
    """utime + stime of a live process, from /proc (all its threads)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(") ", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class Run:
    """A child process plus a sampler of its CPU time: [(wall time, process CPU seconds)].

    The samples map the logs' wall-clock timestamps to CPU time: another job's burst
    stretches wall time but not our process's CPU time. ``cpu`` pins the child to one core.
    """

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path, cpu: int | None = None) -> None:
        self.argv = argv
        self.spawned = time.time()
        pin = (lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None
        self.proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, preexec_fn=pin)
        self.samples: list[tuple[float, float]] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._done.is_set():
            cpu = _cpu_seconds(self.proc.pid)
            if cpu is not None:
                self.samples.append((time.time(), cpu))
            time.sleep(0.01)

    def wait(self) -> tuple[float, list[tuple[float, float]]]:
        _, err = self.proc.communicate()
        self._done.set()
        self._thread.join()
        if self.proc.returncode != 0:
            raise SystemExit(f"failed ({self.proc.returncode}): {' '.join(self.argv)}\n{err[-3000:]}")
        return self.spawned, self.samples


def sh(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, list[tuple[float, float]]]:
    """Run to completion; (spawn time, CPU samples)."""
    return Run(argv, env, cwd).wait()


def cpu_at(samples: list[tuple[float, float]], t: float) -> float:
    """Process CPU seconds at wall time ``t`` (linear between the surrounding samples)."""
    i = bisect.bisect_left(samples, (t, -1.0))
    if i <= 0:
        return samples[0][1]
    if i >= len(samples):
        return samples[-1][1]
    (t0, c0), (t1, c1) = samples[i - 1], samples[i]
    return c0 + (c1 - c0) * ((t - t0) / (t1 - t0) if t1 > t0 else 0.0)


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


def measure(records: list[dict], run: tuple[float, list[tuple[float, float]]], warmup: int) -> tuple[float, ...]:
    """(tokens per CPU second, median per-step tokens/s, window tokens/s, first step s).

    All from step ``warmup`` to the last step: no start-up, no final save. Tokens per CPU
    second (the process's own CPU time over that stretch) is the headline number for the
    runner/plain ratio: it does not move when another job takes the core for a while. The
    median per-step wall rate and the window average (all tokens over all wall time) are
    printed too.
    """
    spawned, samples = run
    by_step = {r["step"]: r for r in records}
    first, last = by_step[warmup], records[-1]
    tokens = last["tokens"] - first["tokens"]
    window = tokens / (last["t"] - first["t"])
    cpu = cpu_at(samples, last["t"]) - cpu_at(samples, first["t"])
    per_cpu = tokens / cpu if cpu > 0 else float("nan")
    steady = [r for r in records if r["step"] >= warmup]
    rates = [(b["tokens"] - a["tokens"]) / (b["t"] - a["t"]) for a, b in zip(steady, steady[1:], strict=False)
             if b["t"] > a["t"] and b["step"] == a["step"] + 1]
    return per_cpu, statistics.median(rates), window, by_step[1]["t"] - spawned


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--warmup", type=int, default=5, help="steps excluded from tokens/s")
    p.add_argument("--packing-steps", type=int, default=30)
    p.add_argument("--cutoff", type=int, default=256, help="cutoff_len of the mixed-length comparison")
    p.add_argument("--work", default=None, help="working folder (default: a temporary one, removed)")
    p.add_argument("--skip-packing", action="store_true")
    p.add_argument("--side-by-side", action="store_true",
                   help="run the two sides of each pair at the same time, one per core (cores swapped "
                        "every round) instead of one after the other: steadier on a busy shared machine")
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
        sh([PY, "-m", "tunedeck.runner.train.tiny", str(model)], env, work)
        sh([PY, "-c", f"from tunedeck.runner.data.demo import write_demo_data; write_demo_data({str(work / 'data')!r})"],
           env, work)
        mixed_length_data(work / "mixed")

        # Tokenize the demo data once, through the runner, into a tokenized_path both sides read.
        tok_path = work / "tokenized"
        prep = yaml_file(work / "prep.yaml", runner_values(
            model, work / "prep-out", 1, a.batch, a.optim, dataset="demo_alpaca", dataset_dir=str(work / "data"),
            cutoff_len=128, tokenized_path=str(tok_path)))
        sh([PY, "-m", "tunedeck.runner.train", str(prep)], env, work)

        cfg_runner = yaml_file(work / "runner.yaml", runner_values(
            model, work / "runner-out", a.steps, a.batch, a.optim, dataset="demo_alpaca", dataset_dir=str(work / "data"),
            cutoff_len=128, tokenized_path=str(tok_path)))
        mixed = {"dataset": "mixed", "dataset_dir": str(work / "mixed"), "cutoff_len": a.cutoff}
        cfg_unpacked = yaml_file(work / "unpacked.yaml", runner_values(
            model, work / "unpacked-out", a.packing_steps, a.batch, a.optim, packing=False, **mixed))
        cfg_packed = yaml_file(work / "packed.yaml", runner_values(
            model, work / "packed-out", a.packing_steps, a.batch, a.optim, packing=True, **mixed))

        rec = work / "plain-record.json"
        # name -> (argv, reader of its per-step records)
        variants: dict[str, tuple[list[str], Callable[[], list[dict]]]] = {
            "runner": ([PY, "-m", "tunedeck.runner.train", str(cfg_runner)], lambda: runner_record(work / "runner-out")),
            "plain": ([PY, str(REPO / "bench" / "plain_sft.py"), "--model", str(model), "--data", str(tok_path),
                       "--out", str(work / "plain-out"), "--record", str(rec), "--steps", str(a.steps),
                       "--batch", str(a.batch), "--lr", "3e-3", "--seed", "42", "--optim", a.optim],
                      lambda: json.loads(rec.read_text())),
        }
        pairs = [("runner", "plain")]
        if not a.skip_packing:
            variants["unpacked"] = ([PY, "-m", "tunedeck.runner.train", str(cfg_unpacked)],
                                    lambda: runner_record(work / "unpacked-out"))
            variants["packed"] = ([PY, "-m", "tunedeck.runner.train", str(cfg_packed)],
                                  lambda: runner_record(work / "packed-out"))
            pairs.append(("packed", "unpacked"))
            # Warm the tokenized cache of the mixed data once, unmeasured.
            sh(variants["unpacked"][0], env, work)
            sh(variants["packed"][0], env, work)

        results: dict[str, list[tuple[float, ...]]] = {k: [] for k in variants}

        def report(r: int, name: str) -> None:
            per_cpu, tps, window, ttfs = results[name][-1]
            print(f"round {r + 1} {name:<9} {per_cpu:8.0f} tok/CPU-s {tps:8.0f} tok/s (window {window:6.0f})"
                  f"   first step after {ttfs:5.2f}s", flush=True)

        for r in range(a.rounds):
            for x, y in pairs:
                first, second = (x, y) if r % 2 == 0 else (y, x)
                if a.side_by_side:
                    # Both at once, one per core, cores swapped every round: whatever else
                    # the machine does in that minute, both sides get the same of it.
                    runs = {first: Run(variants[first][0], env, work, cpu=0),
                            second: Run(variants[second][0], env, work, cpu=1)}
                    done = {n: run.wait() for n, run in runs.items()}
                    for n in (first, second):
                        results[n].append(measure(variants[n][1](), done[n], a.warmup))
                        report(r, n)
                else:
                    for n in (first, second):
                        results[n].append(measure(variants[n][1](), sh(variants[n][0], env, work), a.warmup))
                        report(r, n)

        def med(name: str, i: int) -> float:
            return statistics.median(x[i] for x in results[name])

        print()
        print(f"{'variant':<10} {'tok/CPU-s':>10} {'tokens/s':>10} {'window tok/s':>13} {'first step s':>13}"
              "   (medians)")
        for name in results:
            print(f"{name:<10} {med(name, 0):>10.0f} {med(name, 1):>10.0f} {med(name, 2):>13.0f} {med(name, 3):>13.2f}")
        print()
        for x, y in pairs:
            for i, label in ((0, "tokens per CPU-second"), (1, "tokens/s"), (2, "window tokens/s")):
                per_round = [rx[i] / ry[i] for rx, ry in zip(results[x], results[y], strict=True)]
                print(f"{label} {x}/{y}: median of per-round ratios {statistics.median(per_round):.3f} "
                      f"(rounds: {', '.join(f'{v:.3f}' for v in per_round)})")
        ttfs = [rx[3] / ry[3] for rx, ry in zip(results["runner"], results["plain"], strict=True)]
        print(f"time to first step runner/plain: median {statistics.median(ttfs):.3f} "
              f"(rounds: {', '.join(f'{v:.3f}' for v in ttfs)})")
    finally:
        if not a.work:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
