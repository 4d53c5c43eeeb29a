"""LLaMA-Factory's own example config trains here the way it trains under LLaMA-Factory:
the fused AdamW that transformers 5 picks, and re-entrant gradient checkpointing."""

from __future__ import annotations

from pathlib import Path

import pytest
from train_helpers import diagnostics, read_exit, run_trainer

pytestmark = pytest.mark.slow

# LLaMA-Factory 0.9.5's examples/train_lora/llama3_lora_sft.yaml, as shipped.
LF_EXAMPLE = """\
### model
model_name_or_path: meta-llama/Meta-Llama-3-8B-Instruct
trust_remote_code: true

### method
stage: sft
do_train: true
finetuning_type: lora
lora_rank: 8
lora_target: all

### dataset
dataset: identity,alpaca_en_demo
template: llama3
cutoff_len: 2048
max_samples: 1000
overwrite_cache: true
preprocessing_num_workers: 16

### output
output_dir: saves/llama3-8b/lora/sft
logging_steps: 10
save_steps: 500
plot_loss: true
overwrite_output_dir: true

### train
per_device_train_batch_size: 1
gradient_accumulation_steps: 8
learning_rate: 1.0e-4
num_train_epochs: 3.0
lr_scheduler_type: cosine
warmup_ratio: 0.1
bf16: true
ddp_timeout: 180000000
"""


def test_llamafactorys_example_trains_with_the_fused_adamw_and_reentrant_checkpointing(
    tmp_path: Path, tiny_model_dir: Path, demo_data_dir: Path
) -> None:
    import torch

    # Only what this machine needs changed: the tiny model and demo data instead of an
    # 8B download, no bf16 on a CPU, two steps instead of three epochs, a checkpoint at 2.
    swap = {
        "model_name_or_path": str(tiny_model_dir), "dataset": "demo_alpaca", "template": "default",
        "output_dir": str(tmp_path / "out"), "cutoff_len": "64", "max_samples": "40",
        "preprocessing_num_workers": "1", "bf16": "false", "save_steps": "2", "trust_remote_code": "false",
    }
    lines = []
    for line in LF_EXAMPLE.splitlines():
        key = line.split(":", 1)[0]
        lines.append(f"{key}: {swap[key]}" if key in swap else line)
    lines += [f"dataset_dir: {demo_data_dir}", "max_steps: 2"]
    cfg = tmp_path / "llama3_lora_sft.yaml"
    cfg.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert "optim" not in cfg.read_text() and "gradient_checkpointing" not in cfg.read_text()

    proc = run_trainer(cfg)
    assert proc.returncode == 0, diagnostics(proc)
    assert read_exit(tmp_path / "out")["reason"] == "finished"
    args = torch.load(tmp_path / "out" / "checkpoint-2" / "training_args.bin", weights_only=False)
    optim = getattr(args.optim, "value", args.optim)
    assert optim == "adamw_torch_fused"
    on = getattr(args, "activation_checkpointing", None) or getattr(args, "gradient_checkpointing", None)
    kwargs = (getattr(args, "activation_checkpointing_kwargs", None)
              or getattr(args, "gradient_checkpointing_kwargs", None))
    assert on is True and kwargs == {"use_reentrant": True}
    assert args.ddp_timeout == 180000000 and args.gradient_accumulation_steps == 8
