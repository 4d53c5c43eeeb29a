"""How runs end badly: NaN, OOM, a full disk, a hard crash, configs the trainer refuses.

Each case runs the real trainer process with the test-only ``TUNEDECK_FAULT`` switch and
checks what a supervisor reads afterwards: the exit code and ``trainer_exit.json``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from train_helpers import checkpoint_complete, diagnostics, losses_by_step, read_exit, run_trainer

from tunedeck.runner.rundir.protocol import INCOMPLETE_MARKER, TRAINER_EXIT, TrainerExit

pytestmark = pytest.mark.slow


def test_nan_loss_stops_as_diverged_without_saving_a_new_checkpoint(tmp_path: Path, make_demo_config) -> None:
    cfg = make_demo_config(tmp_path, max_steps=12, save_steps=2)
    proc = run_trainer(cfg, fault="nan@5")
    out = tmp_path / "out"
    assert proc.returncode == TrainerExit.DIVERGED, diagnostics(proc)
    ex = read_exit(out)
    assert ex["reason"] == "diverged" and ex["step"] == 5
    assert "nan" in ex["message"].lower() and "learning rate" in ex["message"]
    # The last good checkpoint stays; nothing is written at or after the bad step.
    assert ex["checkpoint"] == "checkpoint-4" and checkpoint_complete(out / "checkpoint-4")
    assert not any((out / f"checkpoint-{s}").exists() for s in (5, 6))
    assert max(losses_by_step(out)) == 4


def test_cuda_oom_is_reported_as_oom_with_the_error_line(tmp_path: Path, make_demo_config) -> None:
    cfg = make_demo_config(tmp_path, max_steps=12, save_steps=2)
    proc = run_trainer(cfg, fault="oom@3")
    ex = read_exit(tmp_path / "out")
    assert proc.returncode == TrainerExit.OOM, diagnostics(proc)
    assert ex["reason"] == "oom" and ex["exit_code"] == int(TrainerExit.OOM)
    assert "CUDA out of memory" in ex["message"]
    assert ex["step"] == 2 and ex["checkpoint"] == "checkpoint-2"


def test_disk_full_while_saving_names_the_path_and_leaves_the_checkpoint_marked_incomplete(
    tmp_path: Path, make_demo_config
) -> None:
    cfg = make_demo_config(tmp_path, max_steps=6, save_steps=3)
    proc = run_trainer(cfg, fault="enospc@save")
    out = tmp_path / "out"
    assert proc.returncode == TrainerExit.DISK_FULL, diagnostics(proc)
    ex = read_exit(out)
    assert ex["reason"] == "disk_full" and ex["checkpoint"] is None
    assert "No space left on device" in ex["message"] and str(out / "checkpoint-3") in ex["message"]
    assert "GiB free" in ex["message"]
    assert (out / "checkpoint-3" / INCOMPLETE_MARKER).is_file()
    assert not checkpoint_complete(out / "checkpoint-3")


def test_a_hard_crash_leaves_no_trainer_exit_and_a_nonzero_code(tmp_path: Path, make_demo_config) -> None:
    cfg = make_demo_config(tmp_path, max_steps=6, save_steps=100)
    out = tmp_path / "out"
    out.mkdir()
    # A stale file from an earlier attempt must not describe this one.
    (out / TRAINER_EXIT).write_text('{"reason": "finished"}')
    proc = run_trainer(cfg, fault="exit@3")
    assert proc.returncode == 1
    assert not (out / TRAINER_EXIT).exists()
    assert max(losses_by_step(out)) == 2


def test_ppo_is_refused_as_a_config_error_before_any_work(tmp_path: Path, make_demo_config) -> None:
    cfg = make_demo_config(tmp_path, stage="ppo")
    proc = run_trainer(cfg)
    assert proc.returncode == TrainerExit.CONFIG_ERROR, diagnostics(proc)
    ex = read_exit(tmp_path / "out")
    assert ex["reason"] == "config_error" and "not supported" in ex["message"]
    assert "stage" in ex["message"]
    assert not (tmp_path / "out" / "trainer_log.jsonl").exists()


def test_a_world_size_other_than_launched_is_refused(tmp_path: Path, make_demo_config) -> None:
    cfg = make_demo_config(tmp_path)
    # As if the launcher had started two processes but only one joined: the duplicate-run footgun.
    proc = run_trainer(cfg, env={"TUNEDECK_EXPECT_WORLD_SIZE": "2"})
    assert proc.returncode == TrainerExit.CONFIG_ERROR, diagnostics(proc)
    ex = read_exit(tmp_path / "out")
    assert ex["reason"] == "config_error"
    assert "expected 2 training processes" in ex["message"]
