"""Shared helpers for the config tests: write configs, run the CLI, index findings."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "sample_configs"

# A small config that is valid without touching the filesystem.
BASE: dict[str, Any] = {
    "model_name_or_path": "org/model",
    "stage": "sft",
    "do_train": True,
    "finetuning_type": "lora",
    "template": "qwen",
    "dataset": "alpaca_en_demo",
    "output_dir": "out",
}


def yaml_text(values: Mapping[str, Any]) -> str:
    """Flat YAML, one ``key: value`` per line (JSON scalars and flow mappings are YAML)."""
    return "".join(f"{k}: {json.dumps(v)}\n" for k, v in values.items())


def write_config(path: Path, values: Mapping[str, Any], *, base: bool = True) -> Path:
    merged = {**BASE, **values} if base else dict(values)
    merged = {k: v for k, v in merged.items() if v is not _DROP}
    path.write_text(yaml_text(merged), encoding="utf-8")
    return path


class _Drop:
    pass


_DROP: Any = _Drop()
DROP: Any = _DROP  # use as a value to remove a BASE key


def line_of(path: Path, key: str) -> int:
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.startswith(f"{key}:"):
            return i
    raise AssertionError(f"{key} not in {path}")


def run_cli(*args: str, cwd: Path | None = None, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tunedeck.runner.cli", *args],
        capture_output=True, text=True, cwd=cwd or REPO, timeout=60,
        env=None if env is None else dict(env),
    )
