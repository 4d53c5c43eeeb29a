"""Checkpoint scanning: layouts, completeness, loss at each step, change-driven rescans."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from tunedeck.runner.rundir.checkpoints import (
    CheckpointWatcher,
    disk_headroom,
    latest_complete,
    scan_checkpoints,
)
from tunedeck.runner.rundir.logs import MetricHistory
from tunedeck.runner.rundir.protocol import INCOMPLETE_MARKER


def _state(step: int, losses: dict[int, float] | None = None) -> str:
    hist = [{"step": s, "loss": v} for s, v in sorted((losses or {}).items())]
    return json.dumps({"global_step": step, "log_history": hist})


def make_ckpt(
    run: Path,
    step: int,
    layout: str = "adapter",
    *,
    state: bool = True,
    optimizer: bool = True,
    marker: bool = False,
    losses: dict[int, float] | None = None,
) -> Path:
    d = run / f"checkpoint-{step}"
    d.mkdir(parents=True)
    if layout == "adapter":
        (d / "adapter_model.safetensors").write_bytes(b"\0" * 4096)
        (d / "adapter_config.json").write_text("{}")
    elif layout == "full-sharded":
        (d / "config.json").write_text("{}")
        shards = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
        (d / "model.safetensors.index.json").write_text(
            json.dumps({"weight_map": {"a": shards[0], "b": shards[1]}})
        )
        for s in shards:
            (d / s).write_bytes(b"\1" * 1000)
    elif layout == "deepspeed":
        gs = d / f"global_step{step}"
        gs.mkdir()
        (gs / "mp_rank_00_model_states.pt").write_bytes(b"m" * 2000)
        if optimizer:
            (gs / "bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt").write_bytes(b"o" * 3000)
        (d / "latest").write_text(f"global_step{step}")
        (d / "zero_to_fp32.py").write_text("# script\n")
    if optimizer and layout != "deepspeed":
        (d / "optimizer.pt").write_bytes(b"\2" * 8192)
        (d / "scheduler.pt").write_bytes(b"\3" * 100)
    if state:
        (d / "trainer_state.json").write_text(_state(step, losses))
    if marker:
        (d / INCOMPLETE_MARKER).write_text("saving\n")
    return d


def by_step(run: Path) -> dict[int, object]:
    return {c.step: c for c in scan_checkpoints(run, history=MetricHistory())}


def test_adapter_checkpoint_complete_with_size_and_full_resume(tmp_path: Path) -> None:
    make_ckpt(tmp_path, 10)
    make_ckpt(tmp_path, 20, optimizer=False)  # save_only_model
    a, b = scan_checkpoints(tmp_path, history=MetricHistory())
    assert (a.step, a.kind, a.complete, a.reason, a.resumable_full) == (
        10,
        "adapter",
        True,
        None,
        True,
    )
    files = list((tmp_path / "checkpoint-10").iterdir())
    assert a.size_bytes == sum(f.stat().st_size for f in files)
    assert a.mtime >= max(f.stat().st_mtime for f in files)
    assert b.complete and not b.resumable_full


def test_incomplete_marker_makes_a_checkpoint_incomplete(tmp_path: Path) -> None:
    make_ckpt(tmp_path, 30, marker=True)
    (c,) = scan_checkpoints(tmp_path)
    assert not c.complete and INCOMPLETE_MARKER in c.reason and not c.resumable_full
    assert latest_complete(tmp_path) is None


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        ("no-state", "no trainer_state.json"),
        ("truncated-state", "trainer_state.json is empty or truncated"),
        ("empty-weights", "empty weights file: adapter_model.safetensors"),
        ("no-weights", "no weights"),
    ],
)
def test_damaged_adapter_checkpoints_are_incomplete(
    tmp_path: Path, damage: str, reason: str
) -> None:
    d = make_ckpt(tmp_path, 5, state=damage != "no-state")
    if damage == "truncated-state":
        (d / "trainer_state.json").write_text(_state(5, {1: 2.0, 2: 1.9})[:30])
    elif damage == "empty-weights":
        (d / "adapter_model.safetensors").write_bytes(b"")
    elif damage == "no-weights":
        (d / "adapter_model.safetensors").unlink()
    (c,) = scan_checkpoints(tmp_path, history=MetricHistory())
    assert not c.complete and c.reason.startswith(reason)


def test_deepspeed_layout(tmp_path: Path) -> None:
    make_ckpt(tmp_path, 40, "deepspeed")
    make_ckpt(tmp_path, 50, "deepspeed", optimizer=False)
    d = make_ckpt(tmp_path, 60, "deepspeed")
    for f in (d / "global_step60").iterdir():
        f.unlink()
    c40, c50, c60 = scan_checkpoints(tmp_path, history=MetricHistory())
    assert c40.kind == "deepspeed" and c40.complete and c40.resumable_full
    assert c40.size_bytes > 5000  # the global_step dir is counted
    assert c50.complete and not c50.resumable_full
    assert not c60.complete and "global_step60" in c60.reason
    assert latest_complete(tmp_path).step == 50


def test_sharded_full_checkpoint_needs_every_shard(tmp_path: Path) -> None:
    make_ckpt(tmp_path, 7, "full-sharded")
    d = make_ckpt(tmp_path, 8, "full-sharded")
    (d / "model-00002-of-00002.safetensors").unlink()
    d9 = make_ckpt(tmp_path, 9, "full-sharded")
    (d9 / "model.safetensors.index.json").write_text("[" * 100_000)
    c7, c8, c9 = scan_checkpoints(tmp_path, history=MetricHistory())
    assert c7.kind == "full" and c7.complete
    assert not c8.complete and c8.reason == "missing shard model-00002-of-00002.safetensors"
    assert not c9.complete and c9.reason == "model.safetensors.index.json is unreadable"


def test_sorted_by_step_and_only_checkpoint_dirs(tmp_path: Path) -> None:
    for s in (100, 9, 20):
        make_ckpt(tmp_path, s)
    (tmp_path / "checkpoint-best").mkdir()
    (tmp_path / "checkpoint-3").write_text("a file, not a checkpoint")
    (tmp_path / "runs").mkdir()
    assert [c.step for c in scan_checkpoints(tmp_path)] == [9, 20, 100]
    assert scan_checkpoints(tmp_path / "missing") == []


def test_loss_at_each_checkpoint_from_history_or_trainer_state(tmp_path: Path) -> None:
    losses = {5: 2.0, 10: 1.5, 15: 1.2, 20: 1.0}
    make_ckpt(tmp_path, 10, losses={s: v for s, v in losses.items() if s <= 10})
    make_ckpt(tmp_path, 20, losses=losses)
    # No history given: the newest checkpoint's trainer_state.json log_history.
    assert [(c.step, c.loss, c.eval_loss) for c in scan_checkpoints(tmp_path)] == [
        (10, 1.5, None),
        (20, 1.0, None),
    ]
    h = MetricHistory()
    for s, v in losses.items():  # in log order: eval at step 10 right after its train line
        h.append({"current_steps": s, "loss": v + 1})
        if s == 10:
            h.append({"current_steps": s, "eval_loss": 3.5})
    assert [(c.loss, c.eval_loss) for c in scan_checkpoints(tmp_path, history=h)] == [
        (2.5, 3.5),
        (2.0, 3.5),
    ]


def test_latest_complete_skips_an_interrupted_newest_save(tmp_path: Path) -> None:
    make_ckpt(tmp_path, 10)
    make_ckpt(tmp_path, 20)
    make_ckpt(tmp_path, 30, marker=True)
    best = latest_complete(tmp_path)
    assert best is not None and best.step == 20 and best.size_bytes > 0


def test_watcher_rescans_only_on_directory_change(tmp_path: Path) -> None:
    make_ckpt(tmp_path, 10)
    d = make_ckpt(tmp_path, 20, marker=True)
    w = CheckpointWatcher(tmp_path)
    first = w.poll()
    assert w.scans == 1 and w.changed and [c.complete for c in first] == [True, False]
    for _ in range(5):
        assert w.poll() == first
    assert w.scans == 1 and not w.changed
    (d / INCOMPLETE_MARKER).unlink()  # the save finished
    assert [c.complete for c in w.poll()] == [True, True] and w.scans == 2 and w.changed
    make_ckpt(tmp_path, 30)
    assert [c.step for c in w.poll()] == [10, 20, 30] and w.scans == 3
    h = MetricHistory()
    h.append({"current_steps": 30, "loss": 0.25})
    assert w.poll(h)[-1].loss == 0.25 and w.scans == 3 and w.changed  # re-annotated, not rescanned


def test_disk_headroom_warns_when_the_next_save_will_not_fit(tmp_path: Path) -> None:
    make_ckpt(tmp_path, 10)
    ok = disk_headroom(tmp_path)
    assert ok.disk is not None and ok.disk.free_bytes > 0 and not ok.low
    assert ok.checkpoint_bytes == scan_checkpoints(tmp_path)[0].size_bytes
    (ckpt,) = scan_checkpoints(tmp_path)
    huge = dataclasses.replace(ckpt, size_bytes=ok.disk.total_bytes * 2)
    bad = disk_headroom(tmp_path, [huge])
    assert bad.low and bad.saves_left == 0 and "ENOSPC" in bad.message
    assert disk_headroom(tmp_path / "not" / "yet" / "created", []).checkpoint_bytes is None
