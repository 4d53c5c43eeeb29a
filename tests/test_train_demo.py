"""``tunedeck demo --headless`` end to end (short) and ``tunedeck make-tiny-model``."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from train_helpers import checkpoint_complete, read_log

pytestmark = pytest.mark.slow


def _tunedeck(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tunedeck.runner.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def test_demo_headless_builds_everything_offline_trains_and_summarizes(tmp_path: Path) -> None:
    home = tmp_path / "demo"
    proc = _tunedeck("demo", "--headless", "--dir", str(home), "--max-steps", "8", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    # One progress line per logging step (logging_steps is lowered for a short run).
    steps = [int(m) for m in re.findall(r"^step (\d+)/8 ", out, flags=re.M)]
    assert steps == [1, 2, 3, 4, 5, 6, 7, 8]
    line = next(x for x in out.splitlines() if x.startswith("step 8/8"))
    for part in ("loss ", "lr ", "tok/s ", "eta "):
        assert part in line, line
    assert "-- demo summary" in out and re.search(r"loss\s+\d+\.\d+ -> \d+\.\d+ \(ratio \d\.\d+", out)
    assert "checkpoint-8" in out
    run_dir = home / "runs" / "demo"
    assert checkpoint_complete(run_dir / "checkpoint-8")
    assert (run_dir / "training_loss.png").is_file()  # plot_loss: true in the demo config
    assert read_log(run_dir)[-1]["current_steps"] == 8
    # What was built, and a config that points at it with absolute paths.
    cfg = (home / "demo_cpu.yaml").read_text()
    assert f"model_name_or_path: {home / 'demo' / 'tiny-llama'}" in cfg
    assert f"dataset_dir: {home / 'demo' / 'data'}" in cfg
    assert (home / "demo" / "data" / "dataset_info.json").is_file()

    # A second demo reuses the model and data and replaces the previous run.
    again = _tunedeck("demo", "--headless", "--dir", str(home), "--max-steps", "2", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "built the tiny model" not in again.stderr
    assert [r["current_steps"] for r in read_log(run_dir)] == [1, 2]


def test_make_tiny_model_cli_writes_a_loadable_model(tmp_path: Path) -> None:
    proc = _tunedeck("make-tiny-model", str(tmp_path / "m"), "--seed", "3", "--hidden", "32", "--layers", "1",
                     "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["seed"] == 3 and info["hidden"] == 32 and info["layers"] == 1 and info["params"] > 0
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                 "chat_template.jinja"):
        assert (tmp_path / "m" / name).is_file(), name
    bad = _tunedeck("make-tiny-model", str(tmp_path / "x"), "--hidden", "30", cwd=tmp_path)
    assert bad.returncode == 2 and "--hidden" in bad.stderr
