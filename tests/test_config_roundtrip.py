"""Editing a config through ConfigDoc keeps the user's file: comments, order, quoting, backup."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tunedeck.runner.config.yamlio import ConfigDoc
from tunedeck.runner.errors import ConfigError, StaleFileError

ORIGINAL = """\
# Production chat fine-tune
# (owned by the data team; ask before changing the mix)

# ===== model =====
model_name_or_path: /models/Qwen2.5-7B-Instruct   # local copy, synced nightly
stage: sft
finetuning_type: lora
template: "qwen"

# ===== data =====
dataset: alpaca_zh,belle_multiturn  # two sources
interleave_probs: '0.7,0.3'
cutoff_len: 4096

# ===== training =====
learning_rate: 5.0e-5   # tuned on the 2024-11 sweep
lora_rank: 32
lora_alpha: 64
deepspeed_config:
  zero_optimization:
    stage: 3   # shard everything
# trailing note: keep this file under 100 lines
"""


def _comments(text: str) -> list[str]:
    return [line[line.index("#"):].strip() for line in text.splitlines() if "#" in line]


def test_editing_a_key_and_saving_keeps_every_comment_order_and_quoting(tmp_path: Path) -> None:
    path = tmp_path / "chat.yaml"
    path.write_text(ORIGINAL, encoding="utf-8")
    doc = ConfigDoc.load(path)
    doc.set("learning_rate", 1.0e-4)
    doc.set("template", "qwen3")
    doc.set("lora_rank", 16)
    doc.set("plot_loss", True)
    doc.save()

    saved = path.read_text(encoding="utf-8")
    assert _comments(saved) == _comments(ORIGINAL)
    assert 'template: "qwen3"' in saved            # double quotes kept
    assert "interleave_probs: '0.7,0.3'" in saved   # single quotes kept
    keys = [ln.split(":")[0] for ln in saved.splitlines() if ln and not ln.startswith((" ", "#"))]
    assert keys == ["model_name_or_path", "stage", "finetuning_type", "template", "dataset", "interleave_probs",
                    "cutoff_len", "learning_rate", "lora_rank", "lora_alpha", "deepspeed_config", "plot_loss"]
    again = ConfigDoc.load(path).values()
    assert again["learning_rate"] == 1e-4 and again["lora_rank"] == 16 and again["plot_loss"] is True
    assert again["deepspeed_config"] == {"zero_optimization": {"stage": 3}}
    # the previous version is kept beside it
    assert (tmp_path / "chat.yaml.bak").read_text(encoding="utf-8") == ORIGINAL


def test_deleting_a_key_keeps_the_other_comments(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(ORIGINAL, encoding="utf-8")
    doc = ConfigDoc.load(path)
    doc.apply({"cutoff_len": None, "lora_alpha": 128})
    doc.save()
    saved = path.read_text(encoding="utf-8")
    assert "cutoff_len" not in saved and "lora_alpha: 128" in saved
    for c in _comments(ORIGINAL):
        assert c in saved, c


def test_saving_over_a_file_changed_on_disk_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(ORIGINAL, encoding="utf-8")
    doc = ConfigDoc.load(path)
    doc.set("lora_rank", 8)
    path.write_text(ORIGINAL.replace("lora_rank: 32", "lora_rank: 64"), encoding="utf-8")  # someone else's edit
    with pytest.raises(StaleFileError) as exc:
        doc.save()
    assert isinstance(exc.value, ConfigError) and exc.value.exit_code == 2
    assert "lora_rank: 64" in path.read_text(encoding="utf-8")  # their edit survives
    doc.save(force=True)
    assert "lora_rank: 8" in path.read_text(encoding="utf-8")


def test_save_keeps_the_file_mode_and_leaves_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(ORIGINAL, encoding="utf-8")
    os.chmod(path, 0o600)
    doc = ConfigDoc.load(path)
    doc.set("stage", "dpo")
    doc.save()
    assert path.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml", "c.yaml.bak"]
