"""Real runs through the real CLI: detached supervisor, stop, resume, kill, restarts, OOM.

Each test trains the session's tiny model on the CPU for a few steps through
``accelerate launch``; processes, signals and files are all real.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import psutil
import pytest

from tests.control_helpers import control_env, wait_for

pytestmark = pytest.mark.slow

RUN_TIMEOUT = 240  # generous: the CI box is shared; nothing here asserts on time


def _alive_pids(m: dict) -> list[int]:
    out = []
    for ref in [m.get("supervisor"), *(m.get("procs") or [])]:
        if not ref:
            continue
        try:
            p = psutil.Process(ref["pid"])
            if (
                abs(p.create_time() - ref["create_time"]) < 0.5
                and p.status() != psutil.STATUS_ZOMBIE
            ):
                out.append(ref["pid"])
        except psutil.Error:
            pass
    return out


def test_run_survives_its_terminal_then_a_killed_trainer_is_resumed_to_the_end(demo_run):
    # 1 s steps: once checkpoint-3 is complete, 9 s of training remain in which to kill the
    # trainer, however busy the machine (with 0.5 s steps a loaded box sometimes saw the run
    # finish first).
    run = demo_run(env={"TUNEDECK_FAULT": "slow@1"}, max_steps=12, save_steps=3, logging_steps=1)
    cfg, out_dir = run.config, run.out_dir
    # The "terminal": a session of its own running `tunedeck launch --follow`, which we then kill
    # entirely (SIGHUP like a dropped SSH link, then SIGKILL) while training is under way.
    term = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tunedeck.runner.cli",
            "launch",
            str(cfg),
            "--follow",
            "--name",
            "detached",
            "--max-restarts",
            "1",
        ],
        env=run.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        wait_for(
            lambda: run.manifest().get("status") == "running", RUN_TIMEOUT, "the run to start"
        )
        os.killpg(term.pid, signal.SIGHUP)
        os.killpg(term.pid, signal.SIGKILL)
        term.wait(timeout=30)
    finally:
        if term.poll() is None:
            os.killpg(term.pid, signal.SIGKILL)
            term.wait()
    assert term.returncode in (-signal.SIGKILL, -signal.SIGHUP)
    run_id = run.manifest()["id"]

    # The run carries on without its terminal; now kill the trainer itself.
    wait_for(
        lambda: (out_dir / "checkpoint-3" / "trainer_state.json").is_file(),
        RUN_TIMEOUT,
        "checkpoint-3",
    )
    pid = wait_for(run.worker_pid, 30, "the worker pid in the manifest")
    os.kill(pid, signal.SIGKILL)

    wait_for(lambda: run.manifest().get("finished_at"), RUN_TIMEOUT * 2, "the run to end")
    m = run.manifest()
    first, second = m["attempts"]
    assert first["end_reason"] == "killed", run.tail()
    assert "SIGKILL" in (first["message"] or "")
    assert second["resume_from"] and Path(second["resume_from"]).name.startswith("checkpoint-")
    assert m["restarts"] == 1
    st = run.status(run_id)
    assert st["status"] == "finished", run.tail()
    assert st["current_steps"] == st["total_steps"] == 12
    assert st["loss"] is not None and st["eta_seconds"] == 0
    assert st["attempts"] == 2
    cks = st["checkpoints"]
    assert [c["step"] for c in cks] == [3, 6, 9, 12] and all(c["complete"] for c in cks)
    assert _alive_pids(m) == []


def test_the_supervisor_keeps_nothing_of_its_caller(demo_run):
    """`launch` returns, and a pipe its caller handed it (inherited, not stdio) reaches EOF
    then, not when the run ends; the supervisor has a session of its own, /dev/null for
    stdin and stdout.log for its output, and ps shows its own command line, whether `launch` forked it or started a fresh
    Python (TUNEDECK_SUPERVISOR_FORK=0, the path of the TUI)."""
    for fork in ("1", "0"):
        run = demo_run(env={"TUNEDECK_FAULT": "slow@4", "TUNEDECK_SUPERVISOR_FORK": fork},
                       max_steps=30, save_steps=100, logging_steps=1)
        out_dir = run.out_dir
        read_end, write_end = os.pipe()
        os.set_inheritable(write_end, True)
        try:
            launcher = subprocess.Popen(
                [sys.executable, "-m", "tunedeck.runner.cli", "launch", str(run.config), "--overwrite"],
                env=run.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                pass_fds=(write_end,))
            os.close(write_end)
            out, err = launcher.communicate(timeout=180)
            assert launcher.returncode == 0, err
            run_id = out.strip()
            # EOF (not a deadline passing) while the run goes on: nothing of the run holds it.
            assert select.select([read_end], [], [], 60)[0] and os.read(read_end, 1) == b""
        finally:
            os.close(read_end)
        m = run.manifest()
        assert m["id"] == run_id and m["status"] in ("starting", "running")
        sup = m["supervisor"]["pid"]
        assert os.getsid(sup) == sup and os.getpgid(sup) == sup
        assert os.readlink(f"/proc/{sup}/fd/0") == "/dev/null"
        assert os.readlink(f"/proc/{sup}/fd/1") == os.readlink(f"/proc/{sup}/fd/2") == str(out_dir / "stdout.log")
        assert sup not in [p.pid for p in psutil.Process().children(recursive=True)]
        # ps shows the supervisor's own command line either way, never `tunedeck launch`.
        shown = " ".join(psutil.Process(sup).cmdline())
        assert "tunedeck.runner.control.supervisor" in shown and str(out_dir) in shown, shown
        assert "launch" not in shown, shown
        run.cli("stop", run_id, timeout=RUN_TIMEOUT)
        assert run.manifest()["status"] == "stopped", run.tail()
        assert _alive_pids(run.manifest()) == []


def test_second_launch_is_refused_stop_checkpoints_and_resume_finishes(tmp_path, demo_run):
    run = demo_run(env={"TUNEDECK_FAULT": "slow@0.4"}, max_steps=16, save_steps=50, logging_steps=1)
    cfg, out_dir = run.config, run.out_dir
    cmd = [sys.executable, "-m", "tunedeck.runner.cli", "launch", str(cfg), "--name", "busy"]
    a = subprocess.Popen(cmd, env=run.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    b = subprocess.Popen(cmd, env=run.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ra, rb = a.communicate(timeout=120), b.communicate(timeout=120)
    codes = sorted([a.returncode, b.returncode])
    assert codes == [0, 4], (ra, rb)
    refused = ra if a.returncode == 4 else rb
    assert "in use" in refused[1] or "still active" in refused[1]
    run_id = (ra if a.returncode == 0 else rb)[0].strip()

    wait_for(lambda: len(run.steps()) >= 3, RUN_TIMEOUT, "three logged steps")
    stop = run.cli("stop", run_id, "--timeout", "120", "--json", timeout=RUN_TIMEOUT)
    res = json.loads(stop.stdout)
    assert stop.returncode == 0, (stop.stdout, stop.stderr, run.tail())
    assert res["status"] == "stopped" and res["stopped_cleanly"] and res["survivors"] == []
    ck = Path(res["checkpoint"])
    stopped_at = int(ck.name.split("-")[1])
    assert ck.parent == out_dir and 3 <= stopped_at < 16
    assert (ck / "trainer_state.json").is_file() and not (
        ck / "checkpoint-is-incomplete.txt"
    ).exists()
    st = run.status(run_id)
    assert st["status"] == "stopped" and st["latest_checkpoint"] == str(ck)
    assert _alive_pids(run.manifest()) == []

    # Resume (without the slow fault) and follow it to the end.
    resumed = replace(run, env=control_env(tmp_path / "home"))
    res2 = resumed.cli("resume", run_id, "--follow", timeout=RUN_TIMEOUT)
    assert res2.returncode == 0, (res2.stdout, res2.stderr, run.tail())
    assert "step 16/16" in res2.stdout
    st = resumed.status(run_id)
    assert st["status"] == "finished" and st["current_steps"] == 16 and st["attempts"] == 2
    m = run.manifest()
    assert m["attempts"][0]["end_reason"] == "stopped"
    assert m["attempts"][1]["resume_from"] == str(ck)
    assert (out_dir / "config.attempt-1.yaml").is_file()
    assert "resume_from_checkpoint" not in (out_dir / "config.attempt-1.yaml").read_text()
    # The resumed attempt continued the curve: steps after the checkpoint, none before it again.
    steps = run.steps()
    assert steps[-1] == 16 and steps.count(stopped_at + 1) == 1


def test_simulated_oom_is_classified_and_auto_triage_retries_with_the_batch_size_patch(demo_run):
    run = demo_run(env={"TUNEDECK_FAULT": "oom@3"}, max_steps=10, save_steps=2, logging_steps=1,
                   per_device_train_batch_size=4, gradient_accumulation_steps=1)
    cfg, out_dir = run.config, run.out_dir
    out = run.cli("launch", str(cfg), "--max-restarts", "1", "--auto-triage", "--follow",
                  timeout=RUN_TIMEOUT * 2)
    # The fault fires at step 3 in every attempt, so the retry ends in OOM too.
    assert out.returncode == 78, (out.stdout, out.stderr, run.tail())
    m = run.manifest()
    assert m["status"] == "oom"
    first, second = m["attempts"]
    assert first["end_reason"] == "oom" and "out of memory" in (first["message"] or "").lower()
    patch = second["overrides"]
    assert patch.get("per_device_train_batch_size") == 1
    assert patch.get("gradient_accumulation_steps") == 4  # the effective batch of 4 holds
    frozen = (out_dir / "config.yaml").read_text()
    assert "per_device_train_batch_size: 1" in frozen
    assert "per_device_train_batch_size: 4" in (out_dir / "config.attempt-1.yaml").read_text()

    from tunedeck.runner.triage import triage_run

    # The batch size is already 1 now: triage moves on to the guide's next step.
    diags = triage_run(out_dir)
    first_patch = next(s.patch for d in diags for s in d.suggestions if s.patch)
    assert "per_device_train_batch_size" not in first_patch


def test_stop_still_stops_the_trainer_when_the_supervisor_was_killed(demo_run):
    run = demo_run(env={"TUNEDECK_FAULT": "slow@0.4"}, max_steps=30, save_steps=50, logging_steps=1)
    out = run.cli("launch", str(run.config), timeout=120)
    assert out.returncode == 0, out.stderr
    run_id = out.stdout.strip()
    wait_for(lambda: len(run.steps()) >= 2, RUN_TIMEOUT, "two logged steps")
    sup = run.manifest()["supervisor"]["pid"]
    os.kill(sup, signal.SIGKILL)
    wait_for(lambda: run.status(run_id)["status"] == "lost", 120, "status lost")
    assert run.manifest()["status"] == "running"  # readers compute lost; they never rewrite

    stop = run.cli("stop", run_id, "--timeout", "120", "--json", timeout=RUN_TIMEOUT)
    res = json.loads(stop.stdout)
    assert stop.returncode == 0, (stop.stdout, stop.stderr, run.tail())
    assert res["stopped_cleanly"] and res["survivors"] == []
    assert Path(res["checkpoint"]).is_dir()
    assert run.status(run_id)["status"] == "stopped"
    assert _alive_pids(run.manifest()) == []


def test_a_trainer_stuck_after_its_exit_record_is_ended_and_the_run_reads_finished(demo_run):
    # torch's gloo/DDP destructors can deadlock a worker at interpreter exit after it wrote
    # trainer_exit.json; hang@exit reproduces that (and ignores SIGTERM, so only SIGKILL works).
    run = demo_run(env={"TUNEDECK_FAULT": "hang@exit", "TUNEDECK_EXIT_GRACE": "2"},
                   max_steps=3, save_steps=3, logging_steps=1)
    cfg, out_dir = run.config, run.out_dir
    out = run.cli("launch", str(cfg), "--follow", timeout=RUN_TIMEOUT)
    assert out.returncode == 0, (out.stdout, out.stderr, run.tail())
    m = run.manifest()
    assert m["status"] == "finished", m
    assert "had not exited 2s later" in m["message"] and "killed with SIGKILL" in m["message"], m["message"]
    log = (out_dir / "stdout.log").read_text()
    assert "hanging after the exit record" in log
    assert "did not exit after writing trainer_exit.json: SIGKILL" in log
    assert _alive_pids(m) == []
    assert (out_dir / "checkpoint-3").is_dir()
