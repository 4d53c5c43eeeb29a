"""Stop keeps the work when steps are slow and a checkpoint save takes long.

A real 7B+ step takes seconds to tens of seconds and a save takes minutes. The
faults make the tiny model behave like that: ``slow@8`` (8 s per step) and
``slow-save@20`` (the checkpoint save itself takes 20 s). Whoever sends the
SIGTERM — ``tunedeck stop``, ``docker stop`` (the supervisor alone) or a cluster
(every process of the run at once) — no launcher in between may kill the trainer
before its checkpoint is complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from pathlib import Path

import psutil
import pytest

from tests.control_helpers import (
    control_env,
    end_of_tail,
    log_steps,
    manifest,
    status_json,
    tunedeck,
    wait_for,
)

pytestmark = pytest.mark.slow

SLOW = "slow@8,slow-save@20"
RUN_TIMEOUT = 300  # model load + one 8 s step under load; nothing asserts on time


def _launch(tmp_path: Path, make_demo_config, *extra: str) -> tuple[str, Path, dict[str, str]]:
    cfg = make_demo_config(tmp_path, max_steps=30, save_steps=100, logging_steps=1)
    out_dir = tmp_path / "out"
    env = control_env(tmp_path / "home", TUNEDECK_FAULT=SLOW)
    out = tunedeck(["launch", str(cfg), *extra], env, timeout=180)
    assert out.returncode == 0, out.stderr
    run_id = out.stdout.strip()
    # Stop right after the first logged step: the signal lands inside the next 8 s step.
    wait_for(lambda: len(log_steps(out_dir)) >= 1, RUN_TIMEOUT, "the first logged step")
    return run_id, out_dir, env


def _assert_stopped_with_a_complete_checkpoint(out_dir: Path, run_id: str, env: dict[str, str]) -> Path:
    m = manifest(out_dir)
    assert m["status"] == "stopped", (m.get("message"), end_of_tail(out_dir))
    assert "SIGKILL" not in (m.get("message") or ""), m["message"]
    ck = Path(m["checkpoint"])
    assert ck.parent == out_dir and int(ck.name.split("-")[1]) >= 1
    assert (ck / "trainer_state.json").is_file() and (ck / "adapter_model.safetensors").is_file()
    assert not (ck / "checkpoint-is-incomplete.txt").exists()
    te = json.loads((out_dir / "trainer_exit.json").read_text())
    assert te["reason"] == "stopped" and Path(str(te["checkpoint"])).name == ck.name, te
    assert status_json(run_id, env)["status"] == "stopped"
    log = (out_dir / "stdout.log").read_text(errors="replace")
    assert "exit code 143" not in log and "SIGKILL to" not in log, end_of_tail(out_dir, 60)
    return ck


@pytest.mark.parametrize("nproc", [1, 2], ids=["1-process", "2-processes-gloo"])
def test_stop_with_8s_steps_and_a_20s_save_leaves_a_complete_checkpoint(tmp_path, make_demo_config, nproc):
    extra = ["--num-processes", "2", "--cpu"] if nproc == 2 else []
    run_id, out_dir, env = _launch(tmp_path, make_demo_config, *extra)
    stop = tunedeck(["stop", run_id, "--json"], env, timeout=RUN_TIMEOUT + 120)
    assert stop.returncode == 0, (stop.stdout, stop.stderr, end_of_tail(out_dir, 60))
    res = json.loads(stop.stdout)
    assert res["status"] == "stopped" and res["stopped_cleanly"] and res["survivors"] == []
    ck = _assert_stopped_with_a_complete_checkpoint(out_dir, run_id, env)
    assert res["checkpoint"] == str(ck)


def _signal_and_wait(out_dir: Path, pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    ended = {"stopped", "finished", "failed", "killed", "oom", "diverged", "preempted"}
    wait_for(lambda: manifest(out_dir).get("status") in ended, RUN_TIMEOUT, "the run to end")
    sup = manifest(out_dir)["supervisor"]["pid"]
    wait_for(lambda: not psutil.pid_exists(sup) or psutil.Process(sup).status() == psutil.STATUS_ZOMBIE,
             60, "the supervisor to exit")


def test_docker_stop_sigterm_to_the_supervisor_alone_keeps_the_checkpoint(tmp_path, make_demo_config):
    run_id, out_dir, env = _launch(tmp_path, make_demo_config)
    _signal_and_wait(out_dir, [manifest(out_dir)["supervisor"]["pid"]])
    _assert_stopped_with_a_complete_checkpoint(out_dir, run_id, env)


def test_a_cluster_sigterm_to_every_process_of_a_2_process_run_keeps_the_checkpoint(tmp_path, make_demo_config):
    # Slurm's scancel / a node drain signals every process of the job at once,
    # the launcher (torchrun's elastic agent) included.
    run_id, out_dir, env = _launch(tmp_path, make_demo_config, "--num-processes", "2", "--cpu")
    m = manifest(out_dir)
    pids = [m["supervisor"]["pid"], *(p["pid"] for p in m.get("procs") or [])]
    assert sum(1 for p in m["procs"] if p.get("role") == "worker") == 2, m["procs"]
    _signal_and_wait(out_dir, pids)
    _assert_stopped_with_a_complete_checkpoint(out_dir, run_id, env)
