"""``tunedeck demo [--headless] [--dir DIR] [--max-steps N]``: the offline demo.

Builds what is missing into a cache folder (a tiny LLaMA model, the demo datasets,
a copy of ``sample_configs/demo_cpu.yaml`` pointing at them), launches the run
through run control (detached, supervised, like ``tunedeck launch``) and shows it:
the dashboard, or with ``--headless`` one line per logging step and a summary.

Cache folder: ``--dir``, else ``$TUNEDECK_HOME/demo``, else ``~/.cache/tunedeck/demo``::

    demo_cpu.yaml        the config that was launched (absolute paths)
    demo/tiny-llama/     the model (python -m tunedeck.runner.train.tiny)
    demo/data/           the datasets + dataset_info.json
    runs/demo/           the run directory (replaced by each demo run)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any

DEMO_CONFIG = "demo_cpu.yaml"
MODEL_SEED = 0
DATA_SEED = 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--headless", action="store_true",
                   help="no dashboard: print one line per logging step and a summary")
    p.add_argument("--dir", metavar="DIR", default=None,
                   help="cache folder for the model, data, config and run "
                        "(default: $TUNEDECK_HOME/demo or ~/.cache/tunedeck/demo)")
    p.add_argument("--max-steps", type=int, default=None, metavar="N",
                   help="train N steps instead of the config's 300 (a quick smoke run)")
    p.add_argument("--rebuild", action="store_true", help="rebuild the model and data even if present")


def demo_home(explicit: str | None) -> Path:
    if explicit:
        return Path(explicit).expanduser().resolve()
    home = os.environ.get("TUNEDECK_HOME")
    if home:
        return Path(home).expanduser().resolve() / "demo"
    return Path.home() / ".cache" / "tunedeck" / "demo"


def _model_ready(model_dir: Path) -> bool:
    from tunedeck.runner.train.tiny import TinySpec, is_tiny_model_dir, read_build_info

    if not is_tiny_model_dir(model_dir):
        return False
    info = read_build_info(model_dir) or {}
    want = TinySpec(seed=MODEL_SEED)
    # A model built by an older tunedeck with other numbers is rebuilt.
    return all(info.get(k) == getattr(want, k) for k in ("seed", "hidden", "layers", "vocab_size", "head_std"))


def build_model(model_dir: Path) -> None:
    """Build the tiny model in a child process: this process never imports torch."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    proc = subprocess.run(
        [sys.executable, "-m", "tunedeck.runner.train.tiny", str(model_dir), "--seed", str(MODEL_SEED)],
        env=env, capture_output=True, text=True,
    )
    if proc.returncode != 0:
        from tunedeck.runner.errors import TunedeckError

        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise TunedeckError(f"building the tiny model failed: {' | '.join(tail)}",
                            hint="tunedeck make-tiny-model DIR shows the full error")


def prepare(home: Path, *, rebuild: bool = False, log: Any = print) -> Path:
    """Build the model and data if missing and write ``home/demo_cpu.yaml``; returns it."""
    from tunedeck.runner.config.yamlio import ConfigDoc
    from tunedeck.runner.data.demo import write_demo_data
    from tunedeck.runner.fsutil import atomic_write_text, ensure_dir

    ensure_dir(home)
    model_dir = home / "demo" / "tiny-llama"
    data_dir = home / "demo" / "data"
    if rebuild or not _model_ready(model_dir):
        t = time.monotonic()
        build_model(model_dir)
        log(f"built the tiny model in {time.monotonic() - t:.1f}s: {model_dir}")
    if rebuild or not (data_dir / "dataset_info.json").is_file():
        write_demo_data(data_dir, seed=DATA_SEED)
        log(f"wrote the demo datasets: {data_dir}")
    source = resources.files("tunedeck.sample_configs") / DEMO_CONFIG
    src_text = source.read_text(encoding="utf-8")
    cfg = home / DEMO_CONFIG
    tmp = home / f".{DEMO_CONFIG}.src"
    atomic_write_text(tmp, src_text)
    doc = ConfigDoc.load(tmp)
    doc.set("model_name_or_path", str(model_dir))
    doc.set("dataset_dir", str(data_dir))
    doc.set("output_dir", str(home / "runs" / "demo"))
    atomic_write_text(cfg, doc.dumps())
    tmp.unlink(missing_ok=True)
    return cfg


def _overrides(cfg: Path, max_steps: int | None) -> dict[str, Any]:
    if max_steps is None:
        return {}
    from tunedeck.runner.config.yamlio import ConfigDoc

    values = ConfigDoc.load(cfg).values()
    out: dict[str, Any] = {"max_steps": max_steps}
    if int(values.get("save_steps") or 0) > max_steps:
        out["save_steps"] = max_steps  # so even a short run leaves a checkpoint
    if int(values.get("logging_steps") or 1) > max(1, max_steps // 10):
        out["logging_steps"] = max(1, max_steps // 10)
    if int(values.get("warmup_steps") or 0) >= max_steps:
        out["warmup_steps"] = 0
    return out


def summarize(run_dir: Path, seconds: float) -> tuple[list[str], dict[str, Any]]:
    """Summary lines and numbers: first/last loss, ratio, checkpoints, time, outcome."""
    from tunedeck.runner.rundir.checkpoints import checkpoint_paths
    from tunedeck.runner.rundir.logs import read_log_records
    from tunedeck.runner.rundir.protocol import TRAINER_EXIT

    records = read_log_records(run_dir).records
    losses = [float(r["loss"]) for r in records if isinstance(r.get("loss"), (int, float))]
    last: dict[str, Any] = records[-1] if records else {}
    ckpts = [p.name for p in checkpoint_paths(run_dir)]
    from tunedeck.runner.fsutil import read_json

    exit_info = read_json(run_dir / TRAINER_EXIT) or {}
    numbers: dict[str, Any] = {
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "ratio": (losses[-1] / losses[0]) if len(losses) >= 2 and losses[0] else None,
        "checkpoints": ckpts,
        "seconds": round(seconds, 1),
        "reason": exit_info.get("reason"),
        "steps": last.get("current_steps"),
        "throughput": last.get("throughput"),
    }
    lines = [f"run dir      {run_dir}"]
    if exit_info:
        lines.append(f"ended        {exit_info.get('reason')} at step {exit_info.get('step')}: "
                     f"{exit_info.get('message')}")
    if numbers["ratio"] is not None:
        verdict = "halved" if numbers["ratio"] <= 0.5 else "NOT halved"
        lines.append(f"loss         {numbers['first_loss']:.4f} -> {numbers['last_loss']:.4f} "
                     f"(ratio {numbers['ratio']:.3f}, {verdict})")
    lines.append(f"checkpoints  {', '.join(ckpts) if ckpts else 'none'}")
    tps = numbers["throughput"]
    lines.append(f"time         {seconds:.1f}s from launch to exit"
                 + (f", {tps:.0f} tokens/s" if isinstance(tps, (int, float)) else ""))
    return lines, numbers


def run(args: argparse.Namespace) -> int:
    from tunedeck.runner.control.follow import follow, outcome_exit_code
    from tunedeck.runner.control.launch import LaunchOptions, launch
    from tunedeck.runner.control.requirements import require_training_stack
    from tunedeck.runner.errors import ConfigError

    if args.max_steps is not None and args.max_steps < 1:
        raise ConfigError("--max-steps must be at least 1", file="command line")
    require_training_stack("run the demo")
    t0 = time.monotonic()
    home = demo_home(args.dir)

    def err(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    cfg = prepare(home, rebuild=args.rebuild, log=err)
    # One thread per training process: two threads on two shared cores run several
    # times slower than one (reference/training_stack.md section 6).
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    result = launch(
        cfg,
        _overrides(cfg, args.max_steps),
        LaunchOptions(cpu=True, num_processes=1, overwrite=True, name="demo"),
        cwd=home,
        warn=lambda t: err(t) if not t.startswith("--overwrite") else None,
    )
    err(f"launched run {result.run_id} in {result.run_dir}")

    headless = args.headless
    if not headless and not (sys.stdin.isatty() and sys.stdout.isatty()):
        err("not a terminal: following the run here (as with --headless)")
        headless = True
    if not headless:
        try:
            from tunedeck.runner.commands import tui as tui_command

            ns = argparse.Namespace(root=str(result.run_dir.parent), readonly=False, theme=None, config=None)
            return int(tui_command.run(ns) or 0)
        except ImportError as exc:  # a monitoring-only install without textual
            err(f"the dashboard is not available ({exc}); following the run here instead")
            headless = True
    status = follow(result.run_dir, err=sys.stderr)
    lines, _numbers = summarize(result.run_dir, time.monotonic() - t0)
    print("-- demo summary " + "-" * 40)
    for line in lines:
        print(line)
    return outcome_exit_code(status)
