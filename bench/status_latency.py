"""Benchmark: ``tunedeck status RUN --json`` against ``python -c pass``, side by side.

    python bench/status_latency.py                # 1,000,000-line trainer_log.jsonl
    python bench/status_latency.py --lines 1000   # small log (status cost must not depend on it)

The run is synthetic but complete: a manifest whose supervisor is this process
(so the liveness check by pid + start time runs), a trainer_log.jsonl of
``--lines`` records, ten checkpoint-N directories, a registry entry so the run
is referred to by id. The two commands alternate for ``--rounds`` rounds so they
see the same machine load; each is timed in wall time and in CPU time of the
child (``RUSAGE_CHILDREN``: on a shared box, wall time also counts other
people's jobs). Target: status / python-c-pass < 5x.
"""

from __future__ import annotations

import argparse
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
TARGET = 5.0


def make_run(root: Path, lines: int) -> tuple[str, dict[str, str]]:
    sys.path.insert(0, str(REPO))
    from tunedeck.runner.rundir.procs import create_time

    home = root / "home"
    run = root / "runs" / "bench-run"
    run.mkdir(parents=True)
    me = {"pid": os.getpid(), "create_time": create_time(os.getpid()), "pgid": os.getpgrp()}
    manifest = {
        "schema_version": 1, "id": "20261129-000000-beef", "name": "bench-run", "output_dir": str(run),
        "config_path": str(run / "config.yaml"), "status": "running", "supervisor": me, "trainer": me,
        "procs": [me], "attempts": [{"number": 1, "started_at": time.time()}], "gpus": [],
        "created_at": time.time(), "updated_at": time.time(),
    }
    (run / "tunedeck_run.json").write_text(json.dumps(manifest))
    with open(run / "trainer_log.jsonl", "w") as fh:
        for i in range(1, lines + 1):
            fh.write(json.dumps({
                "current_steps": i, "total_steps": lines * 2, "loss": 2.0 / (1 + i / 1000), "lr": 1e-4,
                "epoch": i / 1000, "percentage": round(50 * i / lines, 2), "elapsed_time": "1:00:00",
                "remaining_time": "1:00:00", "throughput": 1000.0, "total_tokens": 1000 * i,
            }) + "\n")
    for s in range(1, 11):
        ck = run / f"checkpoint-{s * 100}"
        ck.mkdir()
        (ck / "adapter_model.safetensors").write_bytes(b"\0" * 64)
        (ck / "trainer_state.json").write_text("{}")
    (home / "runs").mkdir(parents=True)
    (home / "runs" / "20261129-000000-beef.json").write_text(json.dumps(
        {"id": "20261129-000000-beef", "name": "bench-run", "run_dir": str(run), "created_at": time.time()}))
    env = dict(os.environ, TUNEDECK_HOME=str(home))
    return "20261129-000000-beef", env


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run(argv, env=env, capture_output=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        raise SystemExit(f"{argv} failed: {out.stderr.decode(errors='replace')}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=20)
    args = ap.parse_args()
    script = Path(sys.executable).with_name("tunedeck")
    with tempfile.TemporaryDirectory(prefix="tunedeck-bench-") as tmp:
        run_id, env = make_run(Path(tmp), args.lines)
        status = ([str(script)] if script.exists() else [sys.executable, "-m", "tunedeck.runner.cli"]) + [
            "status", run_id, "--json"]
        base = [sys.executable, "-c", "pass"]
        check = json.loads(subprocess.run(status, env=env, capture_output=True, text=True).stdout)
        assert check["status"] == "running" and check["current_steps"] == args.lines, check
        timed(base, env), timed(status, env)  # warm the page cache for both
        res: dict[str, list[tuple[float, float]]] = {"pass": [], "status": []}
        for _ in range(args.rounds):
            res["pass"].append(timed(base, env))
            res["status"].append(timed(status, env))
    print(f"trainer_log.jsonl: {args.lines:,} lines; {args.rounds} alternating rounds")
    print(f"{'':22}{'wall median':>12}{'wall min':>10}{'cpu median':>12}{'cpu min':>10}")
    stats = {}
    for name, label in (("pass", "python -c pass"), ("status", "tunedeck status --json")):
        walls = [w for w, _ in res[name]]
        cpus = [c for _, c in res[name]]
        stats[name] = (statistics.median(walls), min(walls), statistics.median(cpus), min(cpus))
        w_med, w_min, c_med, c_min = stats[name]
        print(f"{label:22}{w_med * 1000:10.1f}ms{w_min * 1000:8.1f}ms{c_med * 1000:10.1f}ms{c_min * 1000:8.1f}ms")
    ratios = [stats["status"][i] / stats["pass"][i] for i in range(4)]
    print(f"{'ratio':22}{ratios[0]:11.2f}x{ratios[1]:9.2f}x{ratios[2]:11.2f}x{ratios[3]:9.2f}x")
    verdict = "meets" if ratios[0] < TARGET and ratios[2] < TARGET else "MISSES"
    print(f"target < {TARGET:.0f}x (median wall and median CPU): {verdict}")
    return 0 if verdict == "meets" else 1


if __name__ == "__main__":
    sys.exit(main())
