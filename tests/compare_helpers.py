"""Fixture runs for compare, history and the chart/compare screens: tunedeck run dirs
(tests/tui_helpers.write_run) whose frozen configs differ in known keys, with VRAM logged."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.tui_helpers import FROZEN_NOW, RunSpec, write_run

# name -> (config edits, status, steps, seed, peak VRAM GiB)
COMPARE_RUNS: dict[str, tuple[dict[str, str], str, int, int, float]] = {
    "base": ({}, "finished", 500, 1, 20.5),
    "lr-up": ({"learning_rate: 1.0e-4": "learning_rate: 2.0e-4"}, "finished", 500, 2, 20.5),
    "rank16": ({"lora_rank: 8": "lora_rank: 16", "lora_alpha: 16": "lora_alpha: 32"}, "oom", 300, 3, 23.9),
}


def write_compare_run(root: Path, name: str, *, now: float = FROZEN_NOW) -> Path:
    edits, status, steps, seed, vram = COMPARE_RUNS[name]
    run = write_run(root, RunSpec(name, status, steps, 500, checkpoints=(100, 200), seed=seed,
                                  age_s=600.0), now=now)
    cfg = run / "config.yaml"
    text = cfg.read_text()
    for old, new in edits.items():
        assert old in text, old
        text = text.replace(old, new)
    cfg.write_text(text)
    log = run / "trainer_log.jsonl"
    recs = [json.loads(line) for line in log.read_text().splitlines()]
    for i, rec in enumerate(recs):
        rec["vram_reserved"] = round(vram * (0.5 + 0.5 * i / max(1, len(recs) - 1)), 2)
        rec["total_tokens"] = rec["current_steps"] * 4096
    log.write_text("".join(json.dumps(r) + "\n" for r in recs))
    os.utime(log, (now - 600.0, now - 600.0))
    return run


def write_compare_runs(root: Path, now: float = FROZEN_NOW) -> list[Path]:
    return [write_compare_run(root, n, now=now) for n in COMPARE_RUNS]


def log_records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "trainer_log.jsonl").read_text().splitlines()]
