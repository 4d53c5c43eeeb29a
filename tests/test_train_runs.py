"""Real training runs on the tiny model: the log, checkpoints, stop/resume, 2-process gloo."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from train_helpers import (
    RUN_TIMEOUT,
    checkpoint_complete,
    diagnostics,
    losses_by_step,
    pid_alive,
    read_exit,
    read_log,
    run_trainer,
    trainer_argv,
    trainer_env,
    wait_for,
)

from tunedeck.runner.rundir.protocol import INCOMPLETE_MARKER, TRAINER_EXIT, TrainerExit

pytestmark = pytest.mark.slow

LF_KEYS = {"current_steps", "total_steps", "loss", "lr", "epoch", "percentage", "elapsed_time",
           "remaining_time", "throughput", "total_tokens"}
OUR_KEYS = {"grad_norm", "timestamp", "step_time"}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory, make_demo_config) -> Path:
    """A 20-step seeded run, never stopped: the reference curve."""
    tmp = tmp_path_factory.mktemp("full")
    cfg = make_demo_config(tmp, max_steps=20, save_steps=10)
    proc = run_trainer(cfg)
    assert proc.returncode == 0, diagnostics(proc)
    return tmp / "out"


def test_trainer_log_has_llamafactory_keys_and_ours_and_checkpoints_are_complete(uninterrupted: Path) -> None:
    records = read_log(uninterrupted)
    assert [r["current_steps"] for r in records] == list(range(1, 21))
    for r in records:
        assert set(r) >= LF_KEYS | OUR_KEYS, sorted(LF_KEYS | OUR_KEYS - set(r))
        assert r["total_steps"] == 20
        assert isinstance(r["elapsed_time"], str) and r["elapsed_time"].count(":") == 2
    assert records[-1]["percentage"] == 100.0 and records[-1]["remaining_time"] == "0:00:00"
    assert records[-1]["total_tokens"] > records[0]["total_tokens"] > 0
    for step in (10, 20):
        assert checkpoint_complete(uninterrupted / f"checkpoint-{step}")
    ex = read_exit(uninterrupted)
    assert ex["reason"] == "finished" and ex["exit_code"] == 0 and ex["step"] == 20
    # LLaMA-Factory's end-of-run files.
    for name in ("adapter_model.safetensors", "train_results.json", "all_results.json", "trainer_state.json"):
        assert (uninterrupted / name).is_file(), name


def test_stop_at_step_10_then_resume_continues_the_same_loss_curve(
    uninterrupted: Path, tmp_path: Path, make_demo_config
) -> None:
    cfg = make_demo_config(tmp_path, max_steps=20, save_steps=10)
    out = tmp_path / "out"
    # stop@10 raises a real SIGTERM inside the worker at the end of step 10; the run
    # goes through accelerate's launcher like a supervised run.
    stopped = run_trainer(cfg, fault="stop@10", launcher="accelerate")
    assert stopped.returncode != 0, "a stop must not look like a finished run"
    ex = read_exit(out)
    assert (ex["reason"], ex["step"], ex["checkpoint"], ex["exit_code"]) == (
        "stopped", 10, "checkpoint-10", int(TrainerExit.STOPPED))
    assert checkpoint_complete(out / "checkpoint-10")
    assert max(losses_by_step(out)) == 10

    # Same config again: overwrite_output_dir is false and a checkpoint exists -> resume.
    resumed = run_trainer(cfg)
    assert resumed.returncode == 0, diagnostics(resumed)
    assert "resuming from" in resumed.stderr
    records = read_log(out)
    assert [r["current_steps"] for r in records] == list(range(1, 21)), "the log was appended, not truncated"
    ref, got = losses_by_step(uninterrupted), losses_by_step(out)
    for step in range(11, 21):
        assert got[step] == pytest.approx(ref[step], abs=1e-4), step
    # The ETA after the resume is computed from this process's own steps and time.
    first_after = records[10]
    assert first_after["current_steps"] == 11
    assert first_after["remaining_time"].count(":") == 2


def test_sigterm_to_the_launch_group_saves_a_complete_checkpoint_and_exits_stopped(
    tmp_path: Path, make_demo_config
) -> None:
    cfg = make_demo_config(tmp_path, max_steps=200, save_steps=1000)
    out = tmp_path / "out"
    # Output to a file, as under the supervisor: nobody reads a pipe once the launcher is gone.
    log = (tmp_path / "stdout.log").open("w")
    proc = subprocess.Popen(
        trainer_argv(cfg, launcher="accelerate"),
        env=trainer_env({"TUNEDECK_FAULT": "slow@0.2"}),
        cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    log.close()
    try:
        wait_for(lambda: (out / "trainer_log.jsonl").is_file()
                 and len(read_log(out)) >= 2, 120, "two logged steps")
        # What the supervisor does: SIGTERM to the whole process group. accelerate's
        # simple launcher dies at once; the worker must still save and leave.
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=RUN_TIMEOUT)
        wait_for(lambda: (out / TRAINER_EXIT).is_file(), 120, "trainer_exit.json")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    ex = read_exit(out)
    assert ex["reason"] == "stopped" and ex["exit_code"] == int(TrainerExit.STOPPED)
    assert 2 <= ex["step"] < 200
    ck = out / ex["checkpoint"]
    assert ck.name == f"checkpoint-{ex['step']}" and checkpoint_complete(ck)
    assert not (ck / INCOMPLETE_MARKER).exists()
    wait_for(lambda: not pid_alive(ex["pid"]), 60, "the worker to exit")


def test_two_cpu_processes_form_one_gloo_group_stop_together_and_resume(
    tmp_path: Path, make_demo_config
) -> None:
    cfg = make_demo_config(tmp_path, max_steps=8, save_steps=100)
    out = tmp_path / "out"
    # SIGUSR1 (Slurm's warning before preemption) raised in both workers at step 5.
    first = run_trainer(cfg, fault="preempt@5", launcher="accelerate", nproc=2)
    assert "world size 2 (distributed" in first.stderr, diagnostics(first)
    ex = read_exit(out)
    # Both ranks agreed on the step: one complete checkpoint with both ranks' RNG states.
    assert (ex["reason"], ex["step"], ex["exit_code"]) == ("preempted", 5, int(TrainerExit.PREEMPTED)), \
        diagnostics(first)
    ck = out / "checkpoint-5"
    assert checkpoint_complete(ck)
    assert (ck / "rng_state_0.pth").is_file() and (ck / "rng_state_1.pth").is_file()

    second = run_trainer(cfg, launcher="accelerate", nproc=2)
    assert second.returncode == 0, diagnostics(second)
    assert read_exit(out)["reason"] == "finished"
    # One writer: every step logged exactly once across both attempts.
    assert [r["current_steps"] for r in read_log(out)] == list(range(1, 9))


@pytest.mark.parametrize(("stage", "dataset"), [("dpo", "demo_dpo"), ("kto", "demo_kto"), ("rm", "demo_dpo")])
def test_preference_stages_train_on_trl_and_write_the_same_run_files(
    tmp_path: Path, make_demo_config, stage: str, dataset: str
) -> None:
    cfg = make_demo_config(tmp_path, stage=stage, dataset=dataset, max_steps=3, save_steps=3)
    proc = run_trainer(cfg)
    out = tmp_path / "out"
    assert proc.returncode == 0, diagnostics(proc)
    assert read_exit(out)["reason"] == "finished"
    assert [r["current_steps"] for r in read_log(out)] == [1, 2, 3]
    assert checkpoint_complete(out / "checkpoint-3")


def test_use_swanlab_without_an_api_key_logs_offline_inside_the_run_dir(tmp_path: Path, make_demo_config) -> None:
    cfg = make_demo_config(tmp_path, max_steps=2, save_steps=100, use_swanlab=True, swanlab_project="demo")
    # No key anywhere (a fresh HOME): online mode would wait for an interactive login.
    proc = run_trainer(cfg, env={"HOME": str(tmp_path), "SWANLAB_SAVE_DIR": str(tmp_path / "swan-home")})
    out = tmp_path / "out"
    assert proc.returncode == 0, diagnostics(proc)
    assert "logging offline" in proc.stderr
    runs = list((out / "swanlog").glob("run-*"))
    assert len(runs) == 1 and any(runs[0].rglob("*.swanlab"))
