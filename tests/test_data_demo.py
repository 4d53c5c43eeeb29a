"""The offline demo datasets: deterministic files, registered names, every stage loads them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from data_helpers import make_tokenizer

from tunedeck.runner.data.dataset_info import load_dataset_info
from tunedeck.runner.data.demo import DEMO_NAMES
from tunedeck.runner.data.loader import build_datasets

REPO = Path(__file__).resolve().parents[1]


def _make(out: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tunedeck.runner.cli", "make-demo-data", str(out), *args],
        capture_output=True, text=True, cwd=REPO, timeout=60,
    )


def _snapshot(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def test_make_demo_data_is_deterministic_from_the_seed(tmp_path: Path) -> None:
    r = _make(tmp_path / "a", "--seed", "3", "--n", "40", "--json")
    assert r.returncode == 0, r.stderr
    files = json.loads(r.stdout)
    assert set(files) == set(DEMO_NAMES)
    assert _make(tmp_path / "b", "--seed", "3", "--n", "40").returncode == 0
    assert _make(tmp_path / "c", "--seed", "4", "--n", "40").returncode == 0
    a, b, c = (_snapshot(tmp_path / x) for x in "abc")
    assert a == b
    assert a["demo_alpaca.json"] != c["demo_alpaca.json"]
    assert len(json.loads(a["demo_alpaca.json"])) == 40
    info = load_dataset_info(tmp_path / "a")
    assert set(info) == set(DEMO_NAMES) and info["demo_dpo"].ranking


def test_make_demo_data_rejects_a_bad_count(tmp_path: Path) -> None:
    r = _make(tmp_path, "--n", "0")
    assert r.returncode == 2 and "--n" in r.stderr


@pytest.mark.parametrize(
    ("stage", "name"),
    [("sft", "demo_reverse"), ("sft", "demo_sharegpt"), ("sft", "demo_openai"), ("pt", "demo_pretrain"),
     ("dpo", "demo_dpo"), ("rm", "demo_dpo"), ("kto", "demo_kto")],
)
def test_every_demo_dataset_loads_for_its_stage_and_fits_a_short_cutoff(tmp_path: Path, stage: str, name: str) -> None:
    from tunedeck.runner.data.demo import write_demo_data

    write_demo_data(tmp_path / "data", seed=0, n=80)
    tok = make_tokenizer()
    values = {"dataset": name, "dataset_dir": str(tmp_path / "data"), "template": "default", "cutoff_len": 128}
    b = build_datasets(values, tok, stage=stage, seed=42, cache_dir=tmp_path / "cache")
    assert b.num_train_examples and b.stats["dropped_examples"] == 0
    assert b.stats["truncated_examples"] == 0  # examples are short: the whole answer is learned
    if stage == "sft":
        lengths = [len(r) for r in b.train_dataset["input_ids"]]
        assert max(lengths) <= (64 if name == "demo_reverse" else 128)
        answered = sum(1 for r in b.train_dataset["labels"] if any(x >= 0 for x in r))
        assert answered == b.num_train_examples
