"""Benchmark: what the TUI costs, measured side by side.

    python bench/tui_overhead.py                 # everything (a few minutes)
    python bench/tui_overhead.py --only frame    # one part: frame | idle | keys | train
    python bench/tui_overhead.py --rounds 5      # more alternating rounds

1. **Time to first frame**: ``tunedeck`` (the dashboard, headless, in a fresh
   interpreter) against a minimal Textual app (a Static and a Footer), alternating;
   each process exits right after its first frame is composed and drawn. Wall time
   and CPU time of the child (``RUSAGE_CHILDREN``). Target: ratio <= 1.5.
2. **Idle cost**: the dashboard with 8 GPUs (fake NVML ``gpu8``) and 20 runs,
   headless in its own process with its real samplers running, left alone; CPU
   time of that process over ``--idle-seconds`` as % of one core. Target < 3%.
3. **Key latency**: in this process, the same dashboard (samplers running);
   keys that change what is shown (cursor down/up, metric 1-5) are pressed one at
   a time and timed until the app has processed them and refreshed the screen.
   Target: every key under 100 ms.
4. **Training throughput**: the tiny model trains (a real ``tunedeck launch``,
   CPU, ``OMP_NUM_THREADS=1``) alone, then with the dashboard attached (a headless
   app in another process, real samplers, watching the run), alternating for
   ``--rounds`` rounds. Throughput is steps/s between the first and the last
   logged step (start-up excluded), from the trainer's own timestamps.
   ``--side-by-side`` runs the two at the same moment instead, each pinned to
   one core, with the dashboard pinned to the watched run's core (it can only
   take CPU from that run); cores swap every round. Target: with / alone >= 0.98.

The machine is shared: wall times count other people's jobs, so CPU times are
printed beside them and the ratios use medians of alternating rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MINIMAL_APP = r"""
import sys, time
from textual.app import App
from textual.widgets import Footer, Static

class Minimal(App):
    def compose(self):
        yield Static("hello")
        yield Footer()
    def on_mount(self):
        self.call_after_refresh(self.exit)

Minimal().run(headless=True, size=(160, 48))
"""

TUNEDECK_APP = r"""
import sys
from tunedeck.tui.app import TunedeckApp

class FirstFrame(TunedeckApp):
    def on_mount(self):
        super().on_mount()
        self.call_after_refresh(self.exit)

FirstFrame(root=sys.argv[1], poll=False).run(headless=True, size=(160, 48))
"""

ATTACH_APP = r"""
import asyncio, sys, time
from pathlib import Path
from tunedeck.tui.app import TunedeckApp

async def main(root, seconds, watch):
    # watch: "" = select nothing in particular; a run directory name = select that run
    # as soon as it appears (its metrics, log tail and checkpoints are then sampled too).
    app = TunedeckApp(root=root)
    async with app.run_test(size=(160, 48)) as pilot:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if watch and (app.selected_run_dir is None or app.selected_run_dir.name != watch):
                runs = app.runs_view.runs if app.runs_view else ()
                target = next((r for r in runs if Path(r.run_dir).name == watch), None)
                if target is not None:
                    app.screen.select_run_dir(Path(target.run_dir))
            await asyncio.sleep(0.5)

asyncio.run(main(Path(sys.argv[1]), float(sys.argv[2]), sys.argv[3]))
"""


def _child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
                "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})
    env.update(extra)
    return env


def _timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and child CPU seconds of one process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(argv, env=env, check=True, capture_output=True, cwd=REPO)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def make_runs(root: Path, n: int) -> None:
    from tests.tui_helpers import RunSpec, build_runs, many_runs

    specs = many_runs(n)
    specs[0] = RunSpec("live-run", None, 300, 1000, checkpoints=(100, 200), age_s=5.0, seed=1)
    build_runs(root, specs, now=time.time())


# -- 1. first frame ------------------------------------------------------------------
def bench_first_frame(rounds: int, tmp: Path) -> dict[str, float]:
    root = tmp / "frame-runs"
    make_runs(root, 20)
    env = _child_env(TUNEDECK_HOME=str(tmp / "home"), TUNEDECK_FAKE_NVML="gpu8")
    walls: dict[str, list[float]] = {"minimal": [], "tunedeck": []}
    cpus: dict[str, list[float]] = {"minimal": [], "tunedeck": []}
    # one warm-up each: the first run also fills the OS file cache
    _timed([sys.executable, "-c", MINIMAL_APP], env)
    _timed([sys.executable, "-c", TUNEDECK_APP, str(root)], env)
    for _ in range(rounds):
        for name, argv in (("minimal", [sys.executable, "-c", MINIMAL_APP]),
                           ("tunedeck", [sys.executable, "-c", TUNEDECK_APP, str(root)])):
            w, c = _timed(argv, env)
            walls[name].append(w)
            cpus[name].append(c)
    res = {f"{k}_wall": statistics.median(v) for k, v in walls.items()}
    res.update({f"{k}_cpu": statistics.median(v) for k, v in cpus.items()})
    res["ratio_wall"] = res["tunedeck_wall"] / res["minimal_wall"]
    res["ratio_cpu"] = res["tunedeck_cpu"] / res["minimal_cpu"]
    print(f"first frame   minimal app  wall {res['minimal_wall'] * 1000:7.0f} ms  cpu {res['minimal_cpu'] * 1000:7.0f} ms")
    print(f"              tunedeck     wall {res['tunedeck_wall'] * 1000:7.0f} ms  cpu {res['tunedeck_cpu'] * 1000:7.0f} ms")
    print(f"              ratio        wall {res['ratio_wall']:.2f}x       cpu {res['ratio_cpu']:.2f}x   (target <= 1.5)")
    return res


# -- 2. idle CPU ------------------------------------------------------------------------
def bench_idle(seconds: float, tmp: Path) -> dict[str, float]:
    import psutil

    root = tmp / "idle-runs"
    make_runs(root, 20)
    env = _child_env(TUNEDECK_HOME=str(tmp / "home"), TUNEDECK_FAKE_NVML="gpu8")
    out: dict[str, float] = {}
    for name, code in (("tunedeck", ATTACH_APP), ("minimal", None)):
        if code is None:
            argv = [sys.executable, "-c", MINIMAL_APP.replace("self.call_after_refresh(self.exit)", "pass")]
        else:
            argv = [sys.executable, "-c", code, str(root), str(seconds + 30), "live-run"]
        proc = subprocess.Popen(argv, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            p = psutil.Process(proc.pid)
            time.sleep(8.0)  # start-up, first samples, the run selected
            c0 = p.cpu_times()
            t0 = time.monotonic()
            time.sleep(seconds)
            c1 = p.cpu_times()
            dt = time.monotonic() - t0
        finally:
            proc.kill()
            proc.wait()
        used = (c1.user - c0.user) + (c1.system - c0.system)
        out[name] = 100.0 * used / dt
    print(f"idle CPU      dashboard, 8 GPUs, 20 runs, samplers on: {out['tunedeck']:.2f}% of one core "
          f"(target < 3%); a minimal Textual app: {out['minimal']:.2f}%")
    return out


# -- 3. key latency ---------------------------------------------------------------------
async def _key_latency(root: Path, presses: int) -> list[float]:
    """Send each key the way the terminal driver does and time it until the app has
    acted on it and painted a frame after that (its compositor produced the update)."""
    from textual import events

    from tunedeck.tui.app import TunedeckApp
    from tunedeck.tui.widgets.run_panel import MetricPanel
    from tunedeck.tui.widgets.runs_table import RunsTable

    app = TunedeckApp(root=root)
    frames: list[float] = []
    times: list[float] = []
    async with app.run_test(size=(160, 48)) as pilot:
        display = app._display

        def record(screen, renderable):  # type: ignore[no-untyped-def]
            if renderable is not None:
                frames.append(time.perf_counter())
            return display(screen, renderable)

        app._display = record  # type: ignore[method-assign]
        while not (app.runs_view and app.runs_view.runs and app.gpu_view):
            await pilot.pause(0.1)
        table = app.screen.query_one(RunsTable)
        table.focus()
        await pilot.pause(1.5)
        keys = ["down", "2", "down", "3", "up", "4", "up", "5", "down", "1"]

        def state() -> tuple[object, ...]:
            metric = app.screen.query_one(MetricPanel).metric if app.screen.query(MetricPanel) else None
            return (table.cursor_row, metric)

        for i in range(presses):
            key = keys[i % len(keys)]
            before = state()
            t0 = time.perf_counter()
            app._driver.send_message(events.Key(key, key if len(key) == 1 else None))  # type: ignore[union-attr]
            while state() == before:  # acted on
                await asyncio.sleep(0.0005)
            acted = time.perf_counter()
            while not frames or frames[-1] < acted:  # ... and painted
                await asyncio.sleep(0.0005)
            times.append(frames[-1] - t0)
            await asyncio.sleep(0.3)  # keys at a human pace; samplers keep running meanwhile
    return times


def bench_keys(presses: int, tmp: Path) -> dict[str, float]:
    root = tmp / "key-runs"
    make_runs(root, 20)
    os.environ["TUNEDECK_HOME"] = str(tmp / "home")
    os.environ["TUNEDECK_FAKE_NVML"] = "gpu8"
    times = asyncio.run(_key_latency(root, presses))
    res = {"median_ms": statistics.median(times) * 1000, "p95_ms": sorted(times)[int(0.95 * len(times)) - 1] * 1000,
           "max_ms": max(times) * 1000}
    print(f"key latency   {presses} keys: median {res['median_ms']:.1f} ms, p95 {res['p95_ms']:.1f} ms, "
          f"max {res['max_ms']:.1f} ms (target < 100 ms)")
    return res


# -- 4. training throughput alone vs watched -----------------------------------------------
def _train_config(tmp: Path, model: Path, data: Path, out: Path, steps: int) -> Path:
    values = {
        "model_name_or_path": str(model), "stage": "sft", "do_train": True, "finetuning_type": "lora",
        "lora_rank": 8, "lora_target": "all", "template": "default", "dataset": "demo_alpaca",
        "dataset_dir": str(data), "cutoff_len": 64, "per_device_train_batch_size": 4,
        "learning_rate": 2.0e-3, "max_steps": steps, "logging_steps": 1, "save_steps": 100000,
        "disable_gradient_checkpointing": True, "output_dir": str(out), "report_to": "none",
        "use_cpu": True, "seed": 42, "overwrite_output_dir": True,
    }
    path = tmp / f"{out.name}.yaml"
    path.write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in values.items()))
    return path


def _steps_per_second(run_dir: Path) -> float:
    recs = [json.loads(line) for line in (run_dir / "trainer_log.jsonl").read_text().splitlines() if line.strip()]
    recs = [r for r in recs if "timestamp" in r and "current_steps" in r]
    first, last = recs[1], recs[-1]  # skip the first step (warm-up, compilation of kernels)
    return (last["current_steps"] - first["current_steps"]) / (last["timestamp"] - first["timestamp"])


def _train_once(cfg: Path, run_dir: Path, env: dict[str, str], attach_root: Path | None,
                attach_seconds: float) -> float:
    watcher = None
    if attach_root is not None:
        watcher = subprocess.Popen([sys.executable, "-c", ATTACH_APP, str(attach_root), str(attach_seconds),
                                    run_dir.name],
                                   env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(4.0)  # the dashboard is up and sampling before training starts
    try:
        subprocess.run([sys.executable, "-m", "tunedeck.runner.cli", "launch", str(cfg), "--follow"], env=env,
                       cwd=REPO, check=True, capture_output=True, timeout=900)
    finally:
        if watcher is not None:
            watcher.kill()
            watcher.wait()
    return _steps_per_second(run_dir)


def _pinned(core: int | None):  # type: ignore[no-untyped-def]
    if core is None:
        return None
    return lambda: os.sched_setaffinity(0, {core})


def _train_pair(cfg_alone: Path, cfg_watched: Path, run_alone: Path, run_watched: Path,
                env: dict[str, str], root: Path, cores: tuple[int, int]) -> tuple[float, float]:
    """Both runs at the same moment, each pinned to its own core; the dashboard is
    pinned to the watched run's core, so it takes its CPU from that run only."""
    watcher = subprocess.Popen([sys.executable, "-c", ATTACH_APP, str(root), "3600", run_watched.name],
                               env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               preexec_fn=_pinned(cores[1]))
    time.sleep(4.0)
    try:
        procs = [subprocess.Popen([sys.executable, "-m", "tunedeck.runner.cli", "launch", str(cfg), "--follow"], env=env,
                                  cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  preexec_fn=_pinned(core))
                 for cfg, core in ((cfg_alone, cores[0]), (cfg_watched, cores[1]))]
        for p in procs:
            p.wait(timeout=1800)
    finally:
        watcher.kill()
        watcher.wait()
    return _steps_per_second(run_alone), _steps_per_second(run_watched)


def _train_inputs(tmp: Path) -> tuple[Path, Path, dict[str, str]]:
    """The tiny model, the demo data and the trainer's environment (8 fake GPUs) under ``tmp``."""
    from tunedeck.runner.data.demo import write_demo_data
    from tunedeck.runner.train.tiny import build_tiny_model

    model = build_tiny_model(tmp / "tiny-llama", seed=0, hidden=64, layers=2)
    data = tmp / "demo-data"
    write_demo_data(data, seed=0, n=400)
    env = _child_env(TUNEDECK_HOME=str(tmp / "home"), TUNEDECK_FAKE_NVML="gpu8",
                     HF_HOME=str(tmp / "hf"), TUNEDECK_CACHE_DIR=str(tmp / "cache"))
    return model, data, env


def bench_train_side_by_side(rounds: int, steps: int, tmp: Path) -> dict[str, float]:
    model, data, env = _train_inputs(tmp)
    ratios, alone, watched = [], [], []
    for r in range(rounds):
        cores = (0, 1) if r % 2 == 0 else (1, 0)  # swap the cores every round
        ra, rw = tmp / "runs" / f"alone-{r}", tmp / "runs" / f"watched-{r}"
        a, w = _train_pair(_train_config(tmp, model, data, ra, steps), _train_config(tmp, model, data, rw, steps),
                           ra, rw, env, tmp / "runs", cores)
        alone.append(a)
        watched.append(w)
        ratios.append(w / a)
        print(f"              round {r + 1} (dashboard on core {cores[1]}) alone {a:6.2f}  watched {w:6.2f} "
              f"steps/s  ratio {w / a:.3f}")
    res = {"alone": statistics.median(alone), "watched": statistics.median(watched),
           "paired": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}
    print(f"training      side by side: alone {res['alone']:.2f}, watched {res['watched']:.2f} steps/s; "
          f"median per-round ratio {res['paired']:.3f} ({res['min']:.3f}-{res['max']:.3f}) (target >= 0.98)")
    return res


def bench_train(rounds: int, steps: int, tmp: Path) -> dict[str, float]:
    model, data, env = _train_inputs(tmp)
    alone: list[float] = []
    watched: list[float] = []
    for r in range(rounds):
        order = [("alone", None), ("watched", tmp / "runs")] if r % 2 == 0 else \
            [("watched", tmp / "runs"), ("alone", None)]
        for name, attach in order:
            run_dir = tmp / "runs" / f"{name}-{r}"
            cfg = _train_config(tmp, model, data, run_dir, steps)
            sps = _train_once(cfg, run_dir, env, attach, attach_seconds=900)
            (alone if name == "alone" else watched).append(sps)
            print(f"              round {r + 1} {name:8s} {sps:6.2f} steps/s")
    res = {"alone": statistics.median(alone), "watched": statistics.median(watched)}
    res["ratio"] = res["watched"] / res["alone"]
    # Each round's two runs ran back to back: their ratio sees the same machine load.
    res["paired"] = statistics.median(w / a for w, a in zip(watched, alone, strict=True))
    print(f"training      alone {res['alone']:.2f} steps/s, with the dashboard attached {res['watched']:.2f} "
          f"steps/s: ratio of medians {res['ratio']:.3f}, median of per-round ratios {res['paired']:.3f} "
          "(target >= 0.98)")
    return res


def _stop_leftovers(root: Path) -> None:
    """Runs are detached: an interrupted bench must not leave one training."""
    from tunedeck.runner.control.stop import stop_run
    from tunedeck.runner.rundir.runs import read_run

    for d in sorted(root.glob("*")) if root.is_dir() else []:
        try:
            if read_run(d).active:
                stop_run(d, timeout=30)
        except Exception as exc:  # noqa: BLE001 - best effort, but say so
            print(f"could not stop {d}: {exc}", file=sys.stderr)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=["frame", "idle", "keys", "train"])
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds (first frame x3, training)")
    ap.add_argument("--steps", type=int, default=600, help="training steps per run")
    ap.add_argument("--idle-seconds", type=float, default=30.0)
    ap.add_argument("--presses", type=int, default=60)
    ap.add_argument("--side-by-side", action="store_true",
                    help="training: both runs at once, one per core, the dashboard on the watched run's core")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="tunedeck-tui-bench-") as d:
        tmp = Path(d)
        print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
        if args.only in (None, "frame"):
            bench_first_frame(args.rounds * 3, tmp)
        if args.only in (None, "idle"):
            bench_idle(args.idle_seconds, tmp)
        if args.only in (None, "keys"):
            bench_keys(args.presses, tmp)
        if args.only in (None, "train"):
            import signal

            signal.signal(signal.SIGTERM, signal.default_int_handler)  # clean up on kill too
            try:
                if args.side_by_side:
                    bench_train_side_by_side(max(args.rounds, 4), args.steps, tmp)
                else:
                    bench_train(max(args.rounds, 4), args.steps, tmp)
            finally:
                _stop_leftovers(tmp / "runs")
        print(f"load average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
