"""Numbers that stay true across stops: the log after stop+resume and SIGKILL+resume
holds each step once with the losses of an uninterrupted run, and the final figures
cover every attempt."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from train_helpers import (
    RUN_TIMEOUT,
    diagnostics,
    losses_by_step,
    read_exit,
    read_log,
    run_trainer,
    trainer_argv,
    trainer_env,
    wait_for,
)

pytestmark = pytest.mark.slow

STEPS = 16


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory: pytest.TempPathFactory, make_demo_config) -> Path:
    """An uninterrupted run logging every step."""
    tmp = tmp_path_factory.mktemp("ref")
    cfg = make_demo_config(tmp, max_steps=STEPS, save_steps=1000, logging_steps=1)
    proc = run_trainer(cfg)
    assert proc.returncode == 0, diagnostics(proc)
    return tmp / "out"


@pytest.fixture(scope="module")
def reference(reference_run: Path) -> dict[int, float]:
    """Every step's loss of the uninterrupted run."""
    losses = losses_by_step(reference_run)
    assert sorted(losses) == list(range(1, STEPS + 1))
    return losses


def _window_means(ref: dict[int, float], logged: list[int], every: int) -> dict[int, float]:
    """What an uninterrupted run logging every ``every`` steps shows at each step of
    ``logged``: the mean of the per-step losses since its previous logging step."""
    out = {}
    for s in logged:
        start = (s - 1) // every * every + 1 if s % every else s - every + 1
        out[s] = sum(ref[i] for i in range(start, s + 1)) / (s - start + 1)
    return out


def _status_json(out: Path) -> dict:
    proc = subprocess.run([sys.executable, "-m", "tunedeck.runner.cli", "status", "--json", str(out)],
                          capture_output=True, text=True, timeout=120, env=trainer_env())
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_a_stop_between_logging_steps_logs_that_step_and_the_resume_logs_what_an_uninterrupted_run_logs(
    reference: dict[int, float], reference_run: Path, tmp_path: Path, make_demo_config
) -> None:
    cfg = make_demo_config(tmp_path, max_steps=STEPS, save_steps=1000, logging_steps=4)
    out = tmp_path / "out"
    stopped = run_trainer(cfg, fault="stop@7")
    assert read_exit(out)["reason"] == "stopped", diagnostics(stopped)
    # Step 7 is not a logging step, but its loss (the mean of steps 5-7) is in the log.
    assert [r["current_steps"] for r in read_log(out)] == [4, 7]

    resumed = run_trainer(cfg)
    assert resumed.returncode == 0, diagnostics(resumed)
    steps = [r["current_steps"] for r in read_log(out)]
    assert steps == [4, 7, 8, 12, 16], "each step once, in order"
    want = _window_means(reference, [4, 8, 12, 16], 4)
    want[7] = sum(reference[i] for i in (5, 6, 7)) / 3
    got = losses_by_step(out)
    for s, v in want.items():
        assert got[s] == pytest.approx(v, abs=1e-4), s
    # Real tokens counted across the stop exactly as in one go (the count is summed into the
    # state at logs and checkpoints, and carried by the checkpoint).
    ref_tokens = {r["current_steps"]: r["total_tokens"] for r in read_log(reference_run)}
    assert {r["current_steps"]: r["total_tokens"] for r in read_log(out)} == {s: ref_tokens[s] for s in steps}

    # The final figures cover both attempts, weighted by steps; each attempt's beside them.
    whole = sum(reference.values()) / STEPS
    results = json.loads((out / "train_results.json").read_text())
    assert results["train_loss"] == pytest.approx(whole, abs=1e-4)
    attempts = results["attempts"]
    assert [(a["start_step"], a["end_step"]) for a in attempts] == [(0, 7), (7, STEPS)]
    assert attempts[0]["train_loss"] == pytest.approx(sum(reference[i] for i in range(1, 8)) / 7, abs=1e-4)
    assert results["train_runtime"] == pytest.approx(sum(a["train_runtime"] for a in attempts), rel=1e-3)
    status = _status_json(out)
    assert status["train_loss"] == pytest.approx(whole, abs=1e-4)
    assert [(a["start_step"], a["end_step"]) for a in status["attempt_results"]] == [(0, 7), (7, STEPS)]


def test_after_sigkill_and_resume_the_log_holds_each_step_once_with_uninterrupted_losses(
    reference: dict[int, float], tmp_path: Path, make_demo_config
) -> None:
    cfg = make_demo_config(tmp_path, max_steps=STEPS, save_steps=5, logging_steps=1)
    out = tmp_path / "out"
    log = (tmp_path / "stdout.log").open("w")
    proc = subprocess.Popen(trainer_argv(cfg), env=trainer_env({"TUNEDECK_FAULT": "slow@0.3"}), cwd=tmp_path,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    try:
        # Past checkpoint-5: the steps after it are in the log but in no checkpoint.
        wait_for(lambda: (out / "trainer_log.jsonl").is_file() and len(read_log(out)) >= 7, RUN_TIMEOUT,
                 "seven logged steps")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    killed_at = read_log(out)[-1]["current_steps"]
    assert killed_at >= 7

    resumed = run_trainer(cfg)
    assert resumed.returncode == 0, diagnostics(resumed)
    assert "resuming from" in resumed.stderr
    steps = [r["current_steps"] for r in read_log(out)]
    assert steps == list(range(1, STEPS + 1)), f"killed at {killed_at}; log steps {steps}"
    got = losses_by_step(out)
    for s in range(1, STEPS + 1):
        assert got[s] == pytest.approx(reference[s], abs=1e-4), s
    results = json.loads((out / "train_results.json").read_text())
    assert results["train_loss"] == pytest.approx(sum(reference.values()) / STEPS, abs=1e-4)
    assert results["attempts"][-1]["end_step"] == STEPS


def test_include_num_input_tokens_seen_no_is_respected(tmp_path: Path, make_demo_config) -> None:
    cfg = make_demo_config(tmp_path, max_steps=3, save_steps=1000, include_num_input_tokens_seen=False)
    proc = run_trainer(cfg)
    assert proc.returncode == 0, diagnostics(proc)
    records = read_log(tmp_path / "out")
    assert records and not any("total_tokens" in r or "throughput" in r for r in records)
    cfg = make_demo_config(tmp_path, max_steps=3, save_steps=1000, overwrite_output_dir=True)
    proc = run_trainer(cfg)
    assert proc.returncode == 0, diagnostics(proc)
    assert all(r["total_tokens"] > 0 for r in read_log(tmp_path / "out")), "unset: real tokens are counted"
