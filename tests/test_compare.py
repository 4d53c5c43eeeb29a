"""``tunedeck compare``: the table, the deltas to a baseline, the hyperparameter diff,
--json, --png, across tunedeck runs, LLaMA-Factory output dirs and plain transformers dirs."""

from __future__ import annotations

import json
import math
from pathlib import Path

from tests.compare_helpers import log_records, write_compare_runs
from tests.control_helpers import control_env, tunedeck
from tests.test_control_readers import make_llamafactory_run, make_transformers_run
from tunedeck.runner.compare import compare_dirs, diff_settings, read_curves


def _best(recs: list[dict], key: str) -> tuple[float, int]:
    pts = [(r[key], r["current_steps"]) for r in recs if key in r]
    return min(pts)


def test_compare_json_has_each_runs_numbers_deltas_and_only_the_differing_keys(tmp_path: Path) -> None:
    base, lr_up, rank16 = write_compare_runs(tmp_path / "runs")
    env = control_env(tmp_path / "home")
    out = tunedeck(["compare", str(base), str(lr_up), str(rank16), "--json"], env, timeout=120)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["baseline"] == "base"
    rows = {r["ref"]: r for r in data["runs"]}
    assert list(rows) == ["base", "lr-up", "rank16"]
    for run in (base, lr_up, rank16):
        recs = log_records(run)
        row = rows[run.name]
        assert row["final_loss"] == recs[-1]["loss"]
        assert (row["best_loss"], row["best_loss_step"]) == _best(recs, "loss")
        assert (row["best_eval_loss"], row["best_eval_step"]) == _best(recs, "eval_loss")
        assert row["peak_vram_gib"] == max(r["vram_reserved"] for r in recs)
        assert row["steps"] == recs[-1]["current_steps"]
    assert rows["rank16"]["status"] == "oom"
    assert math.isclose(rows["rank16"]["delta"]["final_loss"],
                        rows["rank16"]["final_loss"] - rows["base"]["final_loss"])
    assert rows["base"]["delta"]["final_loss"] == 0.0
    # Exactly the keys the fixture configs change (output_dir differs too, by construction).
    assert data["diff"] == {
        "learning_rate": [1e-4, 2e-4, 1e-4],
        "lora_alpha": [16, 16, 32],
        "lora_rank": [8, 8, 16],
    }


def test_compare_text_with_a_chosen_baseline_and_a_png(tmp_path: Path) -> None:
    base, lr_up, _ = write_compare_runs(tmp_path / "runs")
    env = control_env(tmp_path / "home")
    png = tmp_path / "report" / "cmp.png"
    png.parent.mkdir()
    out = tunedeck(["compare", str(base), str(lr_up), "--baseline", str(lr_up), "--png", str(png)],
                   env, timeout=180)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split()[:3] == ["RUN", "STATUS", "STEPS"]
    base_row = next(line for line in lines if line.startswith("base "))
    lr_row = next(line for line in lines if line.startswith("lr-up *"))
    d = log_records(base)[-1]["loss"] - log_records(lr_up)[-1]["loss"]
    assert f"({'+' if d >= 0 else ''}{d:.4f})" in base_row
    assert "(+" not in lr_row and "(-" not in lr_row  # no deltas on the baseline's own row
    assert "hyperparameters that differ (1):" in out.stdout
    diff_line = next(line for line in lines if line.startswith("learning_rate"))
    assert diff_line.split() == ["learning_rate", "0.0001", "0.0002"]
    assert "lora_rank" not in out.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 10_000
    assert f"wrote {png}" in out.stderr


def test_compare_across_a_llamafactory_dir_and_a_transformers_dir(tmp_path: Path) -> None:
    lf = make_llamafactory_run(tmp_path / "saves" / "qwen" / "lora" / "train_a", steps=200)
    lf2 = make_llamafactory_run(tmp_path / "saves" / "qwen" / "lora" / "train_b", steps=300, total=2000)
    hf = make_transformers_run(tmp_path / "hf-out")
    (hf / "adapter_config.json").write_text(json.dumps({"r": 16, "lora_alpha": 32, "peft_type": "LORA"}))
    env = control_env(tmp_path / "home")
    out = tunedeck(["compare", "train_a", "train_b", str(hf), "--root", str(tmp_path / "saves"), "--json"],
                   env, timeout=120)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    kinds = [r["kind"] for r in data["runs"]]
    assert kinds == ["llamafactory", "llamafactory", "transformers"]
    assert [r["final_loss"] for r in data["runs"]] == [1.8, 1.7, 1.1]
    assert data["runs"][2]["best_loss_step"] == 50
    assert data["diff"]["max_steps"] == [1000, 2000, 50]
    assert data["diff"]["adapter.r"] == [None, None, 16]
    assert "finetuning_type" in data["diff"]  # LF says lora; the transformers dir has no such key
    # The two LF runs alone differ in max_steps only.
    two = tunedeck(["compare", str(lf), str(lf2)], env, timeout=120)
    assert two.returncode == 0, two.stderr
    assert "hyperparameters that differ (1):" in two.stdout
    assert "train_a *" in two.stdout


def test_compare_names_a_missing_run_and_exits_3(tmp_path: Path) -> None:
    base, *_ = write_compare_runs(tmp_path / "runs")
    out = tunedeck(["compare", str(base), "no-such-run"], control_env(tmp_path / "home"), timeout=60)
    assert out.returncode == 3
    assert "no-such-run" in out.stderr


def test_curves_align_by_tokens_and_time_and_the_diff_counts_a_missing_key(tmp_path: Path) -> None:
    base, *_ = write_compare_runs(tmp_path / "runs")
    cur = read_curves(base)
    recs = log_records(base)
    xs, ys = cur.points("loss", "tokens")
    assert xs == [r["total_tokens"] for r in recs]
    ts, _ = cur.points("loss", "time")
    assert ts[0] == 20.0 and ts[-1] == recs[-1]["current_steps"] * 2.0  # elapsed_time of the log
    rows = diff_settings([{"a": 1, "b": [1, 2]}, {"a": 1, "b": [1, 2], "c": None}])
    assert [r.key for r in rows] == ["c"]
    c = compare_dirs([base, base], ["x", "y"])
    assert c.diff == []
