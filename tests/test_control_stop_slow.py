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

from tests.control_helpers import DemoRun, wait_for

pytestmark = pytest.mark.slow

SLOW = "slow@8,slow-save@20"
RUN_TIMEOUT = 300  # model load + one 8 s step under load; nothing asserts on time


def _launch(demo_run, *extra: str) -> tuple[str, DemoRun]:
    run = demo_run(env={"TUNEDECK_FAULT": SLOW}, max_steps=30, save_steps=100, logging_steps=1)
    out = run.cli("launch", str(run.config), *extra, timeout=180)
    assert out.returncode == 0, out.stderr
    run_id = out.stdout.strip()
    # Stop right after the first logged step: the signal lands inside the next 8 s step.
    wait_for(lambda: len(run.steps()) >= 1, RUN_TIMEOUT, "the first logged step")
    return run_id, run


def _assert_stopped_with_a_complete_checkpoint(run: DemoRun, run_id: str) -> Path:
    out_dir = run.out_dir
    m = run.manifest()
    assert m["status"] == "stopped", (m.get("message"), run.tail())
    assert "SIGKILL" not in (m.get("message") or ""), m["message"]
    ck = Path(m["checkpoint"])
    assert ck.parent == out_dir and int(ck.name.split("-")[1]) >= 1
    assert (ck / "trainer_state.json").is_file() and (ck / "adapter_model.safetensors").is_file()
    assert not (ck / "checkpoint-is-incomplete.txt").exists()
    te = json.loads((out_dir / "trainer_exit.json").read_text())
    assert te["reason"] == "stopped" and Path(str(te["checkpoint"])).name == ck.name, te
    assert run.status(run_id)["status"] == "stopped"
    log = (out_dir / "stdout.log").read_text(errors="replace")
    assert "exit code 143" not in log and "SIGKILL to" not in log, run.tail(60)
    return ck


@pytest.mark.parametrize("nproc", [1, 2], ids=["1-process", "2-processes-gloo"])
def test_stop_with_8s_steps_and_a_20s_save_leaves_a_complete_checkpoint(demo_run, nproc):
    extra = ["--num-processes", "2", "--cpu"] if nproc == 2 else []
    run_id, run = _launch(demo_run, *extra)
    stop = run.cli("stop", run_id, "--json", timeout=RUN_TIMEOUT + 120)
    assert stop.returncode == 0, (stop.stdout, stop.stderr, run.tail(60))
    res = json.loads(stop.stdout)
    assert res["status"] == "stopped" and res["stopped_cleanly"] and res["survivors"] == []
    ck = _assert_stopped_with_a_complete_checkpoint(run, run_id)
    assert res["checkpoint"] == str(ck)


def _signal_and_wait(run: DemoRun, pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    ended = {"stopped", "finished", "failed", "killed", "oom", "diverged", "preempted"}
    wait_for(lambda: run.manifest().get("status") in ended, RUN_TIMEOUT, "the run to end")
    sup = run.manifest()["supervisor"]["pid"]
    wait_for(lambda: not psutil.pid_exists(sup) or psutil.Process(sup).status() == psutil.STATUS_ZOMBIE,
             60, "the supervisor to exit")


def test_docker_stop_sigterm_to_the_supervisor_alone_keeps_the_checkpoint(demo_run):
    run_id, run = _launch(demo_run)
    _signal_and_wait(run, [run.manifest()["supervisor"]["pid"]])
    _assert_stopped_with_a_complete_checkpoint(run, run_id)


def test_a_cluster_sigterm_to_every_process_of_a_2_process_run_keeps_the_checkpoint(demo_run):
    # Slurm's scancel / a node drain signals every process of the job at once,
    # the launcher (torchrun's elastic agent) included.
    run_id, run = _launch(demo_run, "--num-processes", "2", "--cpu")
    m = run.manifest()
    pids = [m["supervisor"]["pid"], *(p["pid"] for p in m.get("procs") or [])]
    assert sum(1 for p in m["procs"] if p.get("role") == "worker") == 2, m["procs"]
    _signal_and_wait(run, pids)
    _assert_stopped_with_a_complete_checkpoint(run, run_id)
