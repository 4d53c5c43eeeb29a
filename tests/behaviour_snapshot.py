"""Behaviour snapshot: the JSON outputs of the reading commands on the sample configs and on
fixture runs, written to one file so a refactor can be compared before/after.

    python -m tests.behaviour_snapshot OUT.json            # write a snapshot
    python -m tests.behaviour_snapshot OUT.json --diff OLD.json   # ... and list what changed

Covers ``validate --json``, ``estimate --json`` (every sample config), ``schema --json``,
and ``status``/``checkpoints``/``triage --json`` plus the TUI banner's alert kinds on fixture
runs: a LLaMA-Factory dir, a plain transformers dir, an OOM run, a run with damaged
checkpoints, and two live "running" runs whose log went quiet (one clearly stalled, one
where a 10x-log-interval rule and a 20x-step-time rule disagree). Paths are replaced by
``<ROOT>``/``<REPO>`` and clock-dependent fields by ``<t>``, so two snapshots of the same
code are identical. Not a test (it takes a minute of subprocesses); the refactor's note
quotes its diff.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "sample_configs"
VOLATILE = {"last_log_age_s", "updated_at", "created_at", "finished_at", "eta_seconds",
            "elapsed_seconds", "mtime", "started_at", "ended_at", "age_s", "time",
            "disk_free_bytes", "free_bytes", "disk_path", "pids"}
_SECONDS = re.compile(r"for \d+ s\b")


def _json_line(obj: dict[str, Any]) -> str:
    return json.dumps(obj) + "\n"


def _ckpt(run: Path, step: int, *, weights: bytes = b"\0" * 4096, state: str | None = None,
          marker: bool = False, optimizer: bool = True) -> Path:
    d = run / f"checkpoint-{step}"
    d.mkdir(parents=True)
    (d / "adapter_model.safetensors").write_bytes(weights)
    (d / "adapter_config.json").write_text('{"r": 8}')
    if optimizer:
        (d / "optimizer.pt").write_bytes(b"\2" * 512)
        (d / "scheduler.pt").write_bytes(b"\3" * 64)
    (d / "trainer_state.json").write_text(
        state if state is not None else json.dumps({"global_step": step, "epoch": step / 100,
                                                    "log_history": []}))
    if marker:
        (d / "checkpoint-is-incomplete.txt").write_text("")
    return d


CONFIG = """\
model_name_or_path: /models/Qwen2.5-7B-Instruct
stage: sft
do_train: true
finetuning_type: lora
dataset: alpaca_en_demo
template: qwen
per_device_train_batch_size: 4
gradient_accumulation_steps: 2
cutoff_len: 2048
bf16: true
max_steps: 1000
"""


def _manifest(run: Path, status: str, sup: tuple[int, float] | None, **extra: Any) -> None:
    m = {"id": f"run-{run.name}", "name": run.name, "output_dir": str(run),
         "config_path": str(run / "config.yaml"), "status": status,
         "created_at": time.time() - 7200, "updated_at": time.time() - 60, **extra}
    if sup:
        m["supervisor"] = {"pid": sup[0], "create_time": sup[1]}
    (run / "tunedeck_run.json").write_text(json.dumps(m))


def _log(run: Path, n: int, *, every: int, dt: float, step_time: float, age: float,
         total: int = 1000) -> None:
    now = time.time()
    t0 = now - age - (n - 1) * dt
    lines = []
    for i in range(n):
        s = (i + 1) * every
        lines.append(_json_line({"current_steps": s, "total_steps": total, "loss": 2.0 - s / 1000,
                                 "lr": 1e-4, "timestamp": t0 + i * dt, "step_time": step_time}))
    # the same step logged twice (a resume re-logs it): the later line must win
    lines.append(_json_line({"current_steps": n * every, "total_steps": total,
                             "loss": 1.0, "lr": 1e-4, "timestamp": t0 + (n - 1) * dt,
                             "step_time": step_time}))
    p = run / "trainer_log.jsonl"
    p.write_text("".join(lines))
    os.utime(p, (now - age, now - age))
    so = run / "stdout.log"
    so.write_text("step ...\n")
    os.utime(so, (now - age, now - age))


def build_runs(root: Path, sup: tuple[int, float]) -> dict[str, Path]:
    from tests.test_control_readers import make_llamafactory_run, make_transformers_run

    runs: dict[str, Path] = {}
    lf = make_llamafactory_run(root / "lf")
    (lf / "checkpoint-300" / "trainer_state.json").unlink()
    runs["llamafactory"] = lf
    runs["transformers"] = make_transformers_run(root / "hf")

    oom = root / "oom"
    oom.mkdir()
    (oom / "config.yaml").write_text(CONFIG)
    _log(oom, 3, every=10, dt=10, step_time=1.0, age=3600)
    (oom / "stdout.log").write_text("noise\n" * 100 + "torch.OutOfMemoryError: CUDA out of "
                                    "memory. Tried to allocate 2.00 GiB.\n")
    _ckpt(oom, 10)
    (oom / "trainer_exit.json").write_text(json.dumps({"reason": "oom", "step": 12}))
    _manifest(oom, "oom", None, exit_code=1, finished_at=time.time() - 3000)
    runs["oom"] = oom

    dmg = root / "damaged"
    dmg.mkdir()
    (dmg / "config.yaml").write_text(CONFIG)
    _log(dmg, 5, every=10, dt=10, step_time=1.0, age=3600)
    _ckpt(dmg, 10)                                   # complete
    _ckpt(dmg, 20, weights=b"")                      # empty weights
    _ckpt(dmg, 30, state='{"global_step": 30, "log_')  # truncated trainer_state
    _ckpt(dmg, 40, marker=True)                      # transformers' incomplete marker
    d50 = _ckpt(dmg, 50)                             # no trainer_state at all
    (d50 / "trainer_state.json").unlink()
    d60 = dmg / "checkpoint-60"                      # sharded weights, one shard missing
    d60.mkdir()
    (d60 / "config.json").write_text("{}")
    (d60 / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"a": "model-00001-of-00002.safetensors",
                        "b": "model-00002-of-00002.safetensors"}}))
    (d60 / "model-00001-of-00002.safetensors").write_bytes(b"\1" * 100)
    (d60 / "trainer_state.json").write_text(json.dumps({"global_step": 60}))
    _manifest(dmg, "failed", None, exit_code=1, finished_at=time.time() - 3000,
              message="crashed")
    runs["damaged"] = dmg

    # live supervisor, log quiet for an hour: stalled by any rule
    st = root / "stalled"
    st.mkdir()
    (st / "config.yaml").write_text(CONFIG)
    _log(st, 20, every=10, dt=10, step_time=1.0, age=3600)
    _ckpt(st, 100)
    _manifest(st, "running", sup)
    runs["stalled"] = st

    # live supervisor, one log line per 10 s step, quiet for 150 s: past 10 x interval
    # (and the 120 s floor) but within 20 x the median step time.
    bd = root / "borderline"
    bd.mkdir()
    (bd / "config.yaml").write_text(CONFIG)
    _log(bd, 20, every=1, dt=10, step_time=10.0, age=150)
    _manifest(bd, "running", sup)
    runs["borderline"] = bd
    return runs


def _cli(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "tunedeck.runner.cli", *args], env=env,
                         capture_output=True, text=True, timeout=300, cwd=str(REPO))
    try:
        data: Any = json.loads(out.stdout)
    except ValueError:
        data = out.stdout
    return {"rc": out.returncode, "out": data}


def _banner(run: Path) -> list[str]:
    from tunedeck.tui.data.detail import RunDetailSampler
    from tunedeck.tui.data.runs import read_run

    snap = read_run(run)
    detail = RunDetailSampler().sample(run, snap)
    return [a.kind for a in detail.alerts]


def _resume_pick(run: Path, spec: str) -> str:
    """Which checkpoint ``tunedeck resume --from SPEC`` would start from (or its refusal)."""
    from tunedeck.runner.control.resume import pick_checkpoint
    from tunedeck.runner.errors import TunedeckError

    try:
        return str(pick_checkpoint(run, spec))
    except TunedeckError as exc:
        return f"refused: {exc}"


def _resume_configs(root: Path, runs: dict[str, Path]) -> dict[str, Path]:
    """Configs that resume into a fixture run's output_dir (validate judges the checkpoint)."""
    out: dict[str, Path] = {}
    for name in ("damaged", "llamafactory", "stalled"):
        run = runs[name]
        for spec in ("true", "checkpoint-20", "checkpoint-60", "checkpoint-300", "checkpoint-100"):
            target = spec if spec == "true" else str(run / spec)
            if spec != "true" and not (run / spec).is_dir():
                continue
            cfg = root / "cfg" / f"{name}-{spec}.yaml"
            cfg.parent.mkdir(exist_ok=True)
            cfg.write_text(CONFIG.replace("/models/Qwen2.5-7B-Instruct", str(REPO))
                           + f"output_dir: {run}\nresume_from_checkpoint: {target}\n")
            out[cfg.stem] = cfg
        cfg = root / "cfg" / f"{name}-fresh.yaml"
        cfg.write_text(CONFIG + f"output_dir: {run}\n")
        out[cfg.stem] = cfg
    return out


def _normalise(obj: Any, root: str) -> Any:
    if isinstance(obj, dict):
        return {k: ("<t>" if k in VOLATILE and v is not None else _normalise(v, root))
                for k, v in obj.items()}
    if isinstance(obj, list):
        return [_normalise(v, root) for v in obj]
    if isinstance(obj, str):
        return _SECONDS.sub("for <n> s", obj.replace(root, "<ROOT>").replace(str(REPO), "<REPO>"))
    return obj


def snapshot() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="tdsnap-") as tmp:
        root = Path(tmp).resolve()
        sup = subprocess.Popen(["sleep", "900"])
        try:
            import psutil

            sup_ref = (sup.pid, psutil.Process(sup.pid).create_time())
            runs = build_runs(root / "runs", sup_ref)
            env = {**os.environ, "TUNEDECK_HOME": str(root / "home"), "COLUMNS": "200",
                   "PYTHONPATH": str(REPO)}
            env.pop("TUNEDECK_FAKE_NVML", None)
            jobs: dict[str, list[str]] = {"schema": ["schema", "--json"]}
            for cfg in sorted(SAMPLES.glob("*.yaml")):
                jobs[f"validate {cfg.name}"] = ["validate", str(cfg), "--json", "--no-files"]
                jobs[f"estimate {cfg.name}"] = ["estimate", str(cfg), "--json"]
            for name, cfg in _resume_configs(root, runs).items():
                jobs[f"validate resume {name}"] = ["validate", str(cfg), "--json"]
            for name, run in runs.items():
                for cmd in ("status", "checkpoints", "triage"):
                    jobs[f"{cmd} {name}"] = [cmd, str(run), "--json"]
            with ThreadPoolExecutor(2) as pool:
                results = dict(zip(jobs, pool.map(lambda a: _cli(a, env), jobs.values()), strict=True))
            for name, run in runs.items():
                results[f"banner {name}"] = {"rc": 0, "out": _banner(run)}
                for spec in ("latest", "checkpoint-20", "checkpoint-60", "checkpoint-300"):
                    if spec == "latest" or (run / spec).is_dir():
                        results[f"resume {name} {spec}"] = {"rc": 0, "out": _resume_pick(run, spec)}
            return _normalise(results, str(root))
        finally:
            sup.send_signal(signal.SIGKILL)
            sup.wait()


def main(argv: list[str]) -> int:
    out = Path(argv[0])
    snap = snapshot()
    out.write_text(json.dumps(snap, indent=1, sort_keys=True) + "\n")
    if len(argv) > 2 and argv[1] == "--diff":
        old = json.loads(Path(argv[2]).read_text())
        changed = [k for k in sorted(set(old) | set(snap)) if old.get(k) != snap.get(k)]
        for k in changed:
            print(f"changed: {k}")
        print(f"{len(changed)} of {len(snap)} outputs changed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
