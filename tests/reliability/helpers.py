"""Shared helpers of the reliability suite: the CLI in subprocesses, polling with deadlines,
and the psutil check that nothing of a run is left alive (used after every stop)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import psutil

# The real CLI in a subprocess and the polling loop are the control tests' own; the suite
# imports them from here beside its helpers.
from tests.control_helpers import tunedeck as tunedeck
from tests.control_helpers import wait_for as wait_for

REPO = Path(__file__).resolve().parents[2]
RUN_ID_ENV = "TUNEDECK_RUN_ID"
GONE_TIMEOUT = 60.0  # the supervisor writes its last manifest, then exits; the box is shared


# Variables that would change what a run does or where it is registered: never inherited.
_DROP = ("TUNEDECK_HOME", "TUNEDECK_FAULT", "TUNEDECK_FAKE_NVML", "TUNEDECK_FAKE_NVML_PIDS",
         "TUNEDECK_FAKE_NVML_SEED", "TUNEDECK_LOCK_FD", "TUNEDECK_RUN_ID", "TUNEDECK_SECRETS",
         "CUDA_VISIBLE_DEVICES", "SWANLAB_API_KEY", "WANDB_API_KEY", "HF_TOKEN")


def cli_env(home: Path, base: dict[str, str] | None = None, **extra: str) -> dict[str, str]:
    """The environment the suite runs tunedeck with: its own registry, one thread, offline.

    ``base`` (default: a copy of ``os.environ``) lets threads pass a snapshot taken once.
    """
    src = dict(os.environ) if base is None else base
    env = {k: v for k, v in src.items() if k not in _DROP}
    env.update({
        "TUNEDECK_HOME": str(home),
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "TUNEDECK_RESTART_BACKOFF": "0.1",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "PYTHONPATH": str(REPO),
        "NO_COLOR": "1",
        "COLUMNS": "160",
    })
    env.update(extra)
    return env


def manifest(run_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((run_dir / "tunedeck_run.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def log_records(run_dir: Path) -> list[dict[str, Any]]:
    out = []
    try:
        raw = (run_dir / "trainer_log.jsonl").read_bytes()
    except OSError:
        return []
    for line in raw.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def loss_steps(run_dir: Path) -> list[int]:
    return [
        r["current_steps"]
        for r in log_records(run_dir)
        if isinstance(r.get("current_steps"), int) and "loss" in r
    ]


def stdout_tail(run_dir: Path, n: int = 40) -> str:
    try:
        return "\n".join((run_dir / "stdout.log").read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no stdout.log)"


# ----------------------------------------------------------------------------
# No orphans: every process of a run, found three independent ways
# ----------------------------------------------------------------------------
def _verified(ref: Any) -> int | None:
    if not isinstance(ref, dict):
        return None
    pid, ct = ref.get("pid"), ref.get("create_time")
    if not isinstance(pid, int) or not isinstance(ct, (int, float)):
        return None
    try:
        p = psutil.Process(pid)
        if p.status() == psutil.STATUS_ZOMBIE or abs(p.create_time() - ct) > 0.5:
            return None
        return pid
    except psutil.Error:
        return None


def run_processes(run_dir: Path, run_ids: Iterable[str] = ()) -> dict[int, str]:
    """Live processes of a run: ``{pid: how it was found}``.

    Found by (1) the pids the manifest names, verified by start time, (2) the run id every
    process of the run inherits in its environment, (3) the run directory on a command line.
    Zombies do not count (they hold no memory and are reaped by their parent).
    """
    m = manifest(run_dir)
    ids = set(run_ids)
    if isinstance(m.get("id"), str):
        ids.add(m["id"])
    found: dict[int, str] = {}
    refs = [
        m.get("supervisor"),
        m.get("trainer"),
        *(m.get("procs") or []),
        *[a.get("trainer") for a in (m.get("attempts") or []) if isinstance(a, dict)],
    ]
    for ref in refs:
        pid = _verified(ref)
        if pid is not None:
            found[pid] = "manifest"
    me = os.getpid()
    needle = str(run_dir)
    for p in psutil.process_iter(["pid", "status", "cmdline"]):
        if p.pid == me or p.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        try:
            if ids and p.environ().get(RUN_ID_ENV) in ids:
                found.setdefault(p.pid, f"env {RUN_ID_ENV}")
                continue
        except (psutil.Error, OSError):
            pass
        cmd = p.info["cmdline"] or []
        if any(needle in str(a) for a in cmd):
            found.setdefault(p.pid, "command line")
    return found


def describe(pids: Iterable[int]) -> str:
    parts = []
    for pid in pids:
        try:
            parts.append(f"{pid} {' '.join(psutil.Process(pid).cmdline())[:160]}")
        except psutil.Error:
            parts.append(f"{pid} (gone)")
    return "; ".join(parts)


def kill_run_processes(run_dir: Path, run_ids: Iterable[str] = ()) -> list[int]:
    """Clean-up after a failed test: SIGKILL every process of the run, by pid."""
    victims = list(run_processes(run_dir, run_ids))
    for pid in victims:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return victims


def assert_no_survivors(
    run_dir: Path, run_ids: Iterable[str] = (), timeout: float = GONE_TIMEOUT
) -> None:
    """The psutil check after every stop: nothing of the run is alive (polled to a deadline).

    On failure the survivors are killed (so one failure does not poison the session) and
    named in the assertion.
    """
    ids = list(run_ids)
    deadline = time.monotonic() + timeout
    left: dict[int, str] = {}
    while time.monotonic() < deadline:
        left = run_processes(run_dir, ids)
        if not left:
            return
        time.sleep(0.2)
    text = describe(left)
    kill_run_processes(run_dir, ids)
    raise AssertionError(f"processes of the run in {run_dir} survived: {text} (found by {left})")


def read_all_bytes(root: Path) -> Iterable[tuple[Path, bytes]]:
    """Every regular file under ``root`` (recursively, hidden ones included), as bytes."""
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            p = Path(dirpath) / name
            with contextlib.suppress(OSError):
                if p.is_file() and not p.is_symlink():
                    yield p, p.read_bytes()


def write_run_dir(run_dir: Path, *, run_id: str, name: str | None = None, status: str = "finished",
                  steps: int = 6, supervisor: dict[str, Any] | None = None,
                  procs: list[dict[str, Any]] | None = None, checkpoints: Iterable[int] = (3, 6)) -> Path:
    """A run directory in the protocol's layout, written by hand (no training) for the tests
    that need a run to point at: manifest, trainer_log.jsonl, stdout.log, checkpoints."""
    from tunedeck.runner.rundir.manifest import Attempt, RunManifest

    run_dir.mkdir(parents=True, exist_ok=True)
    recs = [{"current_steps": s, "total_steps": steps, "loss": round(2.0 / s, 4), "lr": 1e-4,
             "percentage": round(100 * s / steps, 2), "elapsed_time": "0:00:01", "remaining_time": "0:00:01"}
            for s in range(1, steps + 1)]
    (run_dir / "trainer_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    (run_dir / "stdout.log").write_text("[tunedeck] hand-written run for the reliability suite\n")
    (run_dir / "config.yaml").write_text(f"output_dir: {json.dumps(str(run_dir))}\n")
    for step in checkpoints:
        ck = run_dir / f"checkpoint-{step}"
        ck.mkdir(exist_ok=True)
        (ck / "adapter_model.safetensors").write_bytes(b"\0" * 128)
        (ck / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": recs[:step]}))
    m = RunManifest(id=run_id, name=name or run_dir.name, output_dir=str(run_dir),
                    config_path=str(run_dir / "config.yaml"), status=status,
                    attempts=[Attempt(number=1, started_at=time.time() - 60)])
    data = json.loads(m.model_dump_json())
    data["supervisor"] = supervisor
    data["procs"] = procs or []
    if procs:
        data["trainer"] = procs[0]
    from tunedeck.runner.fsutil import atomic_write_json

    atomic_write_json(run_dir / "tunedeck_run.json", data)
    return run_dir


def register_run(home: Path, run_id: str, name: str, run_dir: Path) -> None:
    from tunedeck.runner.fsutil import atomic_write_json

    (home / "runs").mkdir(parents=True, exist_ok=True)
    atomic_write_json(home / "runs" / f"{run_id}.json",
                      {"id": run_id, "name": name, "run_dir": str(run_dir), "created_at": time.time()})
