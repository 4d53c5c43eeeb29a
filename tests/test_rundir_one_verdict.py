"""One reader, one verdict: the same damaged and stalled run directories through every face
that judges them (validate, status, checkpoints, resume, triage, the TUI banner) give the
same answer. Before the run-directory reader was one package these disagreed: validate
accepted a checkpoint with empty weights or a missing shard, triage called a checkpoint
without a marker complete, and a run quiet for 150 s between 10 s log lines was stalled
for triage but not for the dashboard."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.behaviour_snapshot import CONFIG, _ckpt, _log, _manifest
from tests.control_helpers import control_env, tunedeck
from tunedeck.runner.config.validate import validate_path
from tunedeck.runner.control.resume import pick_checkpoint
from tunedeck.runner.errors import TunedeckError
from tunedeck.runner.triage import gather, triage_run
from tunedeck.tui.data.checkpoints import scan_checkpoints as tui_scan_checkpoints
from tunedeck.tui.data.detail import RunDetailSampler
from tunedeck.tui.data.runs import read_run as tui_read_run

DAMAGED = (20, 30, 40, 50, 60)   # empty weights, truncated state, marker, no state, missing shard


def make_damaged_run(run: Path) -> Path:
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(CONFIG)
    _log(run, 6, every=10, dt=10, step_time=1.0, age=3600)
    _ckpt(run, 10)
    _ckpt(run, 20, weights=b"")
    _ckpt(run, 30, state='{"global_step": 30, "log_')
    _ckpt(run, 40, marker=True)
    (_ckpt(run, 50) / "trainer_state.json").unlink()
    d60 = run / "checkpoint-60"
    d60.mkdir()
    (d60 / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"a": "model-00001-of-00002.safetensors",
                        "b": "model-00002-of-00002.safetensors"}}))
    (d60 / "model-00001-of-00002.safetensors").write_bytes(b"\1" * 100)
    (d60 / "optimizer.pt").write_bytes(b"\2" * 100)
    (d60 / "trainer_state.json").write_text(json.dumps({"global_step": 60}))
    _manifest(run, "failed", None, exit_code=1, finished_at=0.0, message="crashed")
    return run


@pytest.fixture
def supervisor() -> Iterator[tuple[int, float]]:
    """A real live process standing in for a run's supervisor."""
    proc = subprocess.Popen(["sleep", "300"])
    try:
        yield proc.pid, psutil.Process(proc.pid).create_time()
    finally:
        proc.kill()
        proc.wait(timeout=10)


def _complete_steps_everywhere(run: Path, env: dict[str, str]) -> dict[str, set[int]]:
    status = json.loads(tunedeck(["status", str(run), "--json"], env).stdout)
    cks = json.loads(tunedeck(["checkpoints", str(run), "--json"], env).stdout)
    tui = tui_scan_checkpoints(run)
    return {
        "status": {c["step"] for c in status["checkpoints"] if c["complete"]},
        "checkpoints": {c["step"] for c in cks if c["complete"]},
        "tui": {c.step for c in tui if c.complete},
    }


def test_damaged_checkpoints_get_one_verdict_from_every_reader(tmp_path: Path) -> None:
    run = make_damaged_run(tmp_path / "runs" / "damaged")
    env = control_env(tmp_path / "home")
    assert _complete_steps_everywhere(run, env) == {"status": {10}, "checkpoints": {10}, "tui": {10}}

    # resume: latest is the one complete checkpoint; each damaged one is refused by name
    assert pick_checkpoint(run, "latest") == run / "checkpoint-10"
    for step in DAMAGED:
        with pytest.raises(TunedeckError, match="is incomplete"):
            pick_checkpoint(run, f"checkpoint-{step}")

    # triage resumes from (and reasons about) the same checkpoint
    assert gather(run).checkpoint_step == 10

    # validate: resuming from a damaged checkpoint is an error, from the complete one is not
    for step in (10, *DAMAGED):
        cfg = tmp_path / f"resume-{step}.yaml"
        cfg.write_text(CONFIG + f"output_dir: {run}\nresume_from_checkpoint: {run}/checkpoint-{step}\n")
        codes = {f.code for f in validate_path(cfg)}
        assert ("resume-incomplete" in codes) == (step != 10), (step, codes)


def _stall_verdicts(run: Path) -> dict[str, bool]:
    snap = tui_read_run(run)
    banner = RunDetailSampler().sample(run, snap).alerts
    return {
        "status_active": snap is not None and snap.active,
        "triage": "stalled" in [d.kind for d in triage_run(run)],
        "banner": "stalled" in [a.kind for a in banner],
    }


def test_a_quiet_run_is_stalled_for_triage_and_the_banner_alike(
        tmp_path: Path, supervisor: tuple[int, float]) -> None:
    # One log line per 10 s step. Quiet for 150 s: past 10 x (10 s x 1 step) and the
    # 120 s floor. (The banner used to wait for 20 x the step time, 200 s.)
    quiet = tmp_path / "quiet"
    quiet.mkdir()
    _log(quiet, 20, every=1, dt=10, step_time=10.0, age=150)
    _manifest(quiet, "running", supervisor)
    assert _stall_verdicts(quiet) == {"status_active": True, "triage": True, "banner": True}

    # The same run, logging: stalled for neither.
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    _log(fresh, 20, every=1, dt=10, step_time=10.0, age=20)
    _manifest(fresh, "running", supervisor)
    assert _stall_verdicts(fresh) == {"status_active": True, "triage": False, "banner": False}

    # Slow steps logged every 10 steps: a 15 min pause between lines is not a stall.
    slow = tmp_path / "slow"
    slow.mkdir()
    _log(slow, 20, every=10, dt=600, step_time=60.0, age=900)
    _manifest(slow, "running", supervisor)
    assert _stall_verdicts(slow) == {"status_active": True, "triage": False, "banner": False}
