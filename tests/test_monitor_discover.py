"""Run discovery: all three kinds, bounded depth, never inside checkpoints or tool dirs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tunedeck.runner.rundir import discover
from tunedeck.runner.rundir.discover import discover_runs, run_kind


def touch(p: Path, text: str = "{}") -> None:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp_path = tmp_path_factory.mktemp("runs")
    touch(tmp_path / "saves" / "llama" / "lora" / "train_1" / "trainer_log.jsonl", "")
    touch(tmp_path / "saves" / "llama" / "lora" / "train_1" / "checkpoint-5" / "trainer_state.json")
    touch(tmp_path / "runs" / "ours" / "tunedeck_run.json")
    touch(tmp_path / "runs" / "ours" / "trainer_log.jsonl", "")
    touch(tmp_path / "hf_run" / "trainer_state.json")
    touch(tmp_path / "hf_live" / "checkpoint-10" / "trainer_state.json")  # no top-level state yet
    touch(tmp_path / "sweep" / "trainer_state.json")
    touch(tmp_path / "sweep" / "lr_1e-4" / "trainer_state.json")  # a run inside a run
    for hidden in (".git/objects", "node_modules/pkg", "__pycache__", "wandb/run-1", "swanlog/x"):
        touch(tmp_path / hidden / "trainer_state.json")
    touch(tmp_path / "a" / "b" / "c" / "d" / "too_deep" / "trainer_state.json")
    many = tmp_path / "data"
    many.mkdir()
    for i in range(2000):
        (many / f"shard-{i:05d}.jsonl").touch()
    return tmp_path


def test_finds_every_kind_of_run_and_skips_checkpoints_and_tool_dirs(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    visited: list[str] = []
    real = os.scandir

    def spy(path: str) -> object:
        visited.append(os.fspath(path))
        return real(path)

    monkeypatch.setattr(discover.os, "scandir", spy)
    found = [p.relative_to(tree).as_posix() for p in discover_runs(tree)]
    assert found == sorted(
        ["runs/ours", "saves/llama/lora/train_1", "sweep", "sweep/lr_1e-4", "hf_run", "hf_live"]
    )
    assert not any("checkpoint-" in v for v in visited)
    assert not any(
        part in v for v in visited for part in (".git", "node_modules", "wandb", "swanlog")
    )
    assert len(visited) < 40  # directories only, once each: 2000 files cost one scandir


def test_depth_is_bounded(tree: Path) -> None:
    deep = tree / "a" / "b" / "c" / "d" / "too_deep"
    assert deep not in discover_runs(tree, max_depth=4)
    assert deep in discover_runs(tree, max_depth=5)
    assert discover_runs(tree, max_depth=0) == []
    assert discover_runs(tree / "hf_run", max_depth=0) == [tree / "hf_run"]
    assert discover_runs(tree / "missing") == []


def test_symlinks_below_the_root_are_not_followed(tmp_path: Path) -> None:
    touch(tmp_path / "real" / "trainer_state.json")
    (tmp_path / "loop").symlink_to(tmp_path)
    (tmp_path / "elsewhere").symlink_to(tmp_path / "real")
    assert discover_runs(tmp_path) == [tmp_path / "real"]
    # The root itself may be a symlink (a saves/ dir on another disk).
    assert discover_runs(tmp_path / "elsewhere") == [tmp_path / "elsewhere"]


def test_run_kind(tree: Path) -> None:
    assert run_kind(tree / "runs" / "ours") == "tunedeck"
    assert run_kind(tree / "saves" / "llama" / "lora" / "train_1") == "llamafactory"
    assert run_kind(tree / "hf_run") == "transformers"
    assert run_kind(tree / "hf_live") == "transformers"
    assert run_kind(tree / "data") == "unknown"
