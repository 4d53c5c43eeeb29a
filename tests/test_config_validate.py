"""`tunedeck validate`: every problem in one pass, each with its file:line:col and fix."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from config_helpers import BASE, DROP, SAMPLES, line_of, run_cli, write_config, yaml_text

from tunedeck.runner.config.validate import (
    LAUNCH_BLOCKING,
    Finding,
    check_value,
    validate_doc,
    validate_path,
)
from tunedeck.runner.config.yamlio import ConfigDoc


def _findings(tmp_path: Path, values: dict[str, Any], *, files: bool = False, cuda: bool = True,
              name: str = "cfg.yaml") -> tuple[Path, list[Finding]]:
    path = write_config(tmp_path / name, values)
    return path, validate_path(path, check_files=files, cuda_available=cuda)


def _by_code(findings: list[Finding], code: str) -> list[Finding]:
    return [f for f in findings if f.code == code]


# -- the acceptance scenario ---------------------------------------------------------
def test_typo_type_range_combination_and_syntax_error_exit_2_and_name_each_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "# four value problems\n"
        "model_name_or_path: org/model\n"
        "stage: sft\n"
        "finetuning_type: full\n"
        "dataset: alpaca_en_demo\n"
        "lora_rnak: 16\n"                    # line 6: typo
        "learning_rate: fast\n"              # line 7: wrong type
        "lora_dropout: 1.5\n"                # line 8: out of range
        "quantization_bit: 4\n",             # line 9: only with LoRA/OFT (full above)
        encoding="utf-8",
    )
    broken = tmp_path / "broken.yaml"
    broken.write_text("stage: sft\nlearning_rate: 1e-4\n  cutoff_len: 2048\n", encoding="utf-8")

    proc = run_cli("validate", str(bad), str(broken), "--no-files")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    out = proc.stdout
    assert "Traceback" not in out + proc.stderr
    assert f"{bad}:6:1: error: lora_rnak:" in out and "did you mean lora_rank?" in out
    assert f"{bad}:7:16: error: learning_rate: must be a number" in out
    assert f"{bad}:8:15: error: lora_dropout: 1.5 is out of range" in out
    assert f"{bad}:9:19: error: quantization_bit: quantization only works with the LoRA or OFT method" in out
    syntax = [ln for ln in out.splitlines() if ln.startswith(f"{broken}:")]
    assert syntax and ":3:" in syntax[0] and "YAML syntax error" in syntax[0], out
    # one summary line per file
    assert f"{bad}: invalid: 4 errors" in out
    assert f"{broken}: invalid: 1 error" in out


def test_json_output_is_one_object_per_file_with_counts(tmp_path: Path) -> None:
    good = write_config(tmp_path / "good.yaml", {"lr_scheduler_type": "linear"})
    bad = write_config(tmp_path / "bad.yaml", {"lora_rank": 0})
    proc = run_cli("validate", str(good), str(bad), "--json", "--no-files")
    assert proc.returncode == 2
    data = json.loads(proc.stdout)
    assert [d["file"] for d in data] == [str(good), str(bad)]
    assert data[0]["errors"] == 0 and data[0]["advice"] >= 1
    f = next(f for f in data[1]["findings"] if f["key"] == "lora_rank")
    assert f["severity"] == "error" and f["code"] == "range" and f["line"] == line_of(bad, "lora_rank")
    assert set(f) == {"severity", "code", "key", "message", "fix", "file", "line", "column"}


def test_overrides_after_a_single_config_are_validated_and_located_on_the_command_line(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", {})
    proc = run_cli("validate", str(cfg), "lora_rank=-1", "--no-files")
    assert proc.returncode == 2
    assert "command line: error: lora_rank:" in proc.stdout
    two = run_cli("validate", str(cfg), str(cfg), "lora_rank=4", "--no-files")
    assert two.returncode == 2 and "only follow a single config" in two.stderr
    ok = run_cli("validate", str(cfg), "lora_rank=16", "lora_alpha=32", "--no-files")
    assert ok.returncode == 0, ok.stdout


def test_missing_config_file_is_an_error_finding_not_a_traceback(tmp_path: Path) -> None:
    proc = run_cli("validate", str(tmp_path / "nope.yaml"))
    assert proc.returncode == 2
    assert "config file not found" in proc.stdout and "Traceback" not in proc.stderr


# -- sample configs -------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(p.name for p in SAMPLES.glob("*.yaml")))
def test_every_sample_config_validates_with_exit_0(name: str) -> None:
    proc = run_cli("validate", str(SAMPLES / name))
    assert proc.returncode == 0, proc.stdout


def test_sample_configs_exist_for_every_guide_setup() -> None:
    names = {p.name for p in SAMPLES.glob("*.yaml")}
    assert names >= {
        "quick_start.yaml", "single_24gb.yaml", "dual_48gb.yaml", "multi_80gb_lora.yaml", "multi_80gb_full.yaml",
        "production_chat.yaml", "pretrain_streaming.yaml", "dpo.yaml", "qlora.yaml", "galore.yaml",
        "badam.yaml", "apollo.yaml", "demo_cpu.yaml",
    }
    for p in SAMPLES.glob("*.yaml"):
        assert p.read_text(encoding="utf-8").startswith("#"), f"{p.name} must open with a comment saying what it is for"
    launch = SAMPLES / "launch"
    for name, stage in (("ds_z2_config.json", 2), ("ds_z3_config.json", 3), ("ds_z3_offload_config.json", 3)):
        cfg = json.loads((launch / name).read_text(encoding="utf-8"))
        assert cfg["zero_optimization"]["stage"] == stage
    off = json.loads((launch / "ds_z3_offload_config.json").read_text(encoding="utf-8"))["zero_optimization"]
    assert off["offload_optimizer"]["device"] == "cpu" and off["offload_param"]["device"] == "cpu"
    fsdp = ConfigDoc.load(launch / "accelerate_fsdp_config.yaml").values()
    assert fsdp["distributed_type"] == "FSDP"


def test_demo_config_is_clean_once_its_model_and_data_exist(tmp_path: Path) -> None:
    """The demo copies demo_cpu.yaml next to its tiny model and data; then nothing is missing."""
    cfg = tmp_path / "demo_cpu.yaml"
    shutil.copy(SAMPLES / "demo_cpu.yaml", cfg)
    values = ConfigDoc.load(cfg).values()
    model = tmp_path / values["model_name_or_path"]
    model.mkdir(parents=True)
    (model / "config.json").write_text(json.dumps({"model_type": "llama", "max_position_embeddings": 512}))
    data = tmp_path / values["dataset_dir"]
    data.mkdir(parents=True)
    name = values["dataset"]
    (data / "dataset_info.json").write_text(json.dumps({name: {"file_name": f"{name}.jsonl"}}))
    (data / f"{name}.jsonl").write_text(
        "".join(json.dumps({"instruction": "reverse: abc", "input": "", "output": "cba"}) + "\n" for _ in range(4)))
    # absent CUDA must not matter for a CPU demo
    findings = validate_path(cfg, cuda_available=False)
    assert [f for f in findings if f.severity != "advice"] == [], [f.format() for f in findings]
    proc = run_cli("validate", str(cfg), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout


# -- single values --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("values", "key", "code", "fix_part"),
    [
        ({"lora_rank": "8"}, "lora_rank", "type", "remove the quotes"),
        ({"learning_rate": "5e-5"}, "learning_rate", "type", "remove the quotes"),
        ({"bf16": "true"}, "bf16", "type", "write true without quotes"),
        ({"cutoff_len": 0}, "cutoff_len", "range", None),
        ({"num_train_epochs": 3.5, "lora_rank": 8.0}, "lora_rank", "type", "write 8"),
        ({"stage": "SFT"}, "stage", "choice", "write 'sft'"),
        ({"lr_scheduler_type": "cosin"}, "lr_scheduler_type", "choice", "did you mean 'cosine'?"),
        ({"lora_rank": None}, "lora_rank", "null", "delete the line"),
        ({"lora_target": []}, "lora_target", "null", None),
        ({"report_to": "wandb,tensorbord"}, "report_to", "choice", "did you mean 'tensorboard'?"),
        ({"quantization_bit": 7}, "quantization_bit", "choice", None),
        ({"evaluation_strategy": "steps"}, "evaluation_strategy", "renamed-key", "eval_strategy"),
        ({"lora_rnk": 8}, "lora_rnk", "unknown-key", "did you mean lora_rank?"),
        ({"lr_scheduler_kwargs": "{min_lr: 1}"}, "lr_scheduler_kwargs", "type", None),
    ],
)
def test_value_errors_point_at_the_value_with_a_fix(tmp_path: Path, values: dict[str, Any], key: str,
                                                    code: str, fix_part: str | None) -> None:
    path, findings = _findings(tmp_path, values)
    hit = [f for f in findings if f.key == key and f.code == code]
    assert hit, [f.format() for f in findings]
    f = hit[0]
    assert f.severity == "error"
    assert f.file == str(path) and f.line == line_of(path, key) and f.column is not None
    if fix_part:
        assert f.fix and fix_part in f.fix


def test_all_problems_are_reported_in_one_pass(tmp_path: Path) -> None:
    _, findings = _findings(tmp_path, {"lora_rank": 0, "lora_dropout": 2, "bf16": "yes", "typo_key": 1,
                                       "mask_history": True, "train_on_prompt": True})
    codes = {f.code for f in findings if f.severity == "error"}
    assert {"range", "type", "unknown-key", "mask-history-train-on-prompt"} <= codes
    assert len([f for f in findings if f.severity == "error"]) >= 5


def test_check_value_gives_one_sentence_for_form_panes() -> None:
    assert check_value("learning_rate", 1e-4) is None
    assert check_value("learning_rate", -1) is not None and "out of range" in check_value("learning_rate", -1)
    assert "true or false" in (check_value("plot_loss", "maybe") or "")
    assert "not one of" in (check_value("finetuning_type", "qlora") or "")
    assert check_value("no_such_key", 1) is not None
    assert check_value("warmup_steps", 0.1) is None  # transformers 5: a fraction of the steps
    assert check_value("resume_from_checkpoint", True) is None
    assert check_value("val_size", 200) is None
    assert check_value("CUDA_VISIBLE_DEVICES", "0,1") is None


def test_unchecked_training_arguments_and_env_keys_pass_through_with_a_note(tmp_path: Path) -> None:
    path, findings = _findings(tmp_path, {"average_tokens_across_devices": True, "NCCL_IB_DISABLE": "1",
                                          "CUDA_VISIBLE_DEVICES": "0,1"})
    f = _by_code(findings, "unchecked-key")[0]
    assert f.key == "average_tokens_across_devices" and f.severity == "advice"
    assert "not checked by tunedeck" in f.message and f.line == line_of(path, f.key)
    assert _by_code(findings, "unknown-env")[0].key == "NCCL_IB_DISABLE"
    assert not [f for f in findings if f.key == "CUDA_VISIBLE_DEVICES"]
    assert not [f for f in findings if f.severity == "error"]


# -- cross-field rules ----------------------------------------------------------------------
ZERO2 = {"zero_optimization": {"stage": 2}}
ZERO3 = {"zero_optimization": {"stage": 3}}


@pytest.mark.parametrize(
    ("values", "code", "key"),
    [
        ({"finetuning_type": "full", "quantization_bit": 4}, "quant-needs-lora", "quantization_bit"),
        ({"quantization_bit": 4, "quantization_method": "eetq"}, "quant-bits", "quantization_bit"),
        ({"quantization_bit": 4, "pissa_init": True}, "quant-pissa", "pissa_init"),
        ({"quantization_bit": 4, "fp8": True}, "fp8-quant", "fp8"),
        ({"use_galore": True}, "lora-with-optimizer", "use_galore"),
        ({"finetuning_type": "full", "use_galore": True, "use_badam": True}, "optimizers-exclusive", "use_badam"),
        ({"finetuning_type": "freeze", "use_dora": True}, "lora-only", "use_dora"),
        ({"finetuning_type": "oft", "loraplus_lr_ratio": 16.0}, "lora-only", "loraplus_lr_ratio"),
        ({"finetuning_type": "full", "adapter_name_or_path": "a"}, "adapter-needs-lora", "adapter_name_or_path"),
        ({"finetuning_type": "full", "use_llama_pro": True}, "llama-pro-full", "use_llama_pro"),
        ({"mask_history": True, "train_on_prompt": True}, "mask-history-train-on-prompt", "train_on_prompt"),
        ({"stage": "dpo", "mask_history": True}, "sft-only", "mask_history"),
        ({"stage": "pt", "neat_packing": True}, "sft-only", "neat_packing"),
        ({"stage": "rm", "predict_with_generate": True}, "sft-only", "predict_with_generate"),
        ({"dataset": "a,b", "interleave_probs": "0.5,0.5"}, "interleave-concat", "interleave_probs"),
        ({"dataset": "a,b", "mix_strategy": "interleave_under", "interleave_probs": "0.5,0.3,0.2"},
         "interleave-length", "interleave_probs"),
        ({"dataset": "a,b", "mix_strategy": "interleave_under", "interleave_probs": "0.5,0.4"},
         "interleave-sum", "interleave_probs"),
        ({"streaming": True}, "streaming-max-steps", "streaming"),
        ({"streaming": True, "max_steps": 10, "max_samples": 100}, "streaming-max-samples", "max_samples"),
        ({"streaming": True, "max_steps": 10, "val_size": 0.1}, "streaming-val-size", "val_size"),
        ({"val_size": 0.1, "eval_dataset": "x"}, "val-size-eval-dataset", "val_size"),
        ({"stage": "dpo", "pref_loss": "ipo", "dpo_label_smoothing": 0.1}, "label-smoothing-loss", "dpo_label_smoothing"),
        ({"stage": "ppo"}, "ppo-unsupported", "stage"),
        ({"stage": "ppo"}, "ppo-needs-reward-model", "stage"),
        ({"stage": "rm", "load_best_model_at_end": True, "val_size": 0.1, "eval_strategy": "steps"},
         "stage-best-model", "load_best_model_at_end"),
        ({"bf16": True, "fp16": True}, "bf16-fp16", "fp16"),
        ({"finetuning_type": "full", "use_galore": True, "deepspeed": ZERO2}, "optimizer-deepspeed", "use_galore"),
        ({"pure_bf16": True, "deepspeed": ZERO3}, "pure-bf16-zero3", "pure_bf16"),
        ({"use_unsloth": True, "deepspeed": ZERO3}, "unsloth-zero3", "use_unsloth"),
        ({"finetuning_type": "full", "use_badam": True, "CUDA_VISIBLE_DEVICES": "0,1"}, "badam-distributed", "use_badam"),
        ({"finetuning_type": "full", "use_galore": True, "galore_layerwise": True, "NPROC_PER_NODE": "4"},
         "layerwise-distributed", "galore_layerwise"),
        ({"deepspeed": ZERO2, "fsdp": "full_shard auto_wrap"}, "deepspeed-fsdp", "fsdp"),
        ({"eval_strategy": "steps"}, "eval-strategy-no-data", "eval_strategy"),
        ({"do_predict": True, "val_size": 0.1}, "predict-needs-generate", "do_predict"),
        ({"predict_with_generate": True, "compute_accuracy": True, "eval_dataset": "x"},
         "generate-accuracy", "compute_accuracy"),
        ({"load_best_model_at_end": True, "val_size": 0.1, "eval_strategy": "steps", "save_strategy": "epoch"},
         "best-model-strategy", "load_best_model_at_end"),
        ({"gradient_checkpointing": True, "disable_gradient_checkpointing": True},
         "gradient-checkpointing-conflict", "gradient_checkpointing"),
        ({"infer_backend": "vllm"}, "infer-backend-training", "infer_backend"),
        ({"dataset": DROP}, "dataset-required", "dataset"),
        ({"model_name_or_path": DROP}, "required", "model_name_or_path"),
        ({"report_to": "none,wandb"}, "report-to-none", "report_to"),
        ({"split_special_tokens": True}, "split-special-fast", "split_special_tokens"),
    ],
)
def test_forbidden_combinations_are_errors(tmp_path: Path, values: dict[str, Any], code: str, key: str) -> None:
    path, findings = _findings(tmp_path, values)
    hit = [f for f in findings if f.code == code]
    assert hit, [f.format() for f in findings]
    assert hit[0].severity == "error" and hit[0].key == key
    if key in values and values[key] is not DROP:
        assert hit[0].line == line_of(path, key)


def test_the_clean_base_config_has_no_errors_or_warnings(tmp_path: Path) -> None:
    _, findings = _findings(tmp_path, {"lr_scheduler_type": "cosine", "warmup_steps": 10, "plot_loss": True})
    assert [f.format() for f in findings if f.severity != "advice"] == []


@pytest.mark.parametrize(
    ("values", "code", "key"),
    [
        ({"warmup_steps": 10, "warmup_ratio": 0.1}, "warmup-both", "warmup_ratio"),
        ({"trust_remote_code": True}, "trust-remote-code", "trust_remote_code"),
        ({"swanlab_api_key": "sk-123"}, "secret-in-file", "swanlab_api_key"),
        ({"report_to": "swanlab"}, "report-to-swanlab", "report_to"),
        ({"eval_steps": 100}, "eval-steps-unused", "eval_steps"),
        ({"deepspeed": {"zero_optimization": {"stage": 3, "cpu_offload": True}}}, "deepspeed-deprecated", "deepspeed"),
    ],
)
def test_suspicious_settings_are_warnings(tmp_path: Path, values: dict[str, Any], code: str, key: str) -> None:
    _, findings = _findings(tmp_path, values)
    hit = _by_code(findings, code)
    assert hit and hit[0].severity == "warning" and hit[0].key == key, [f.format() for f in findings]
    assert not [f for f in findings if f.severity == "error"]


def test_swanlab_cloud_without_a_key_warns_unless_the_environment_has_one(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("SWANLAB_API_KEY", raising=False)
    _, findings = _findings(tmp_path, {"use_swanlab": True, "swanlab_mode": "cloud"})
    assert _by_code(findings, "swanlab-no-key")
    monkeypatch.setenv("SWANLAB_API_KEY", "k")
    _, findings = _findings(tmp_path, {"use_swanlab": True, "swanlab_mode": "cloud"})
    assert not _by_code(findings, "swanlab-no-key")
    _, findings = _findings(tmp_path, {"use_swanlab": True, "swanlab_mode": "offline"})
    assert not _by_code(findings, "swanlab-no-key")


# -- advice -----------------------------------------------------------------------------
def test_departures_from_the_guide_are_advice_never_errors(tmp_path: Path) -> None:
    path, findings = _findings(tmp_path, {"lora_rank": 16, "lora_alpha": 16, "lr_scheduler_type": "linear",
                                          "plot_loss": False, "warmup_steps": 0, "max_grad_norm": 5.0,
                                          "weight_decay": 0.0})
    advice = {f.key: f for f in findings if f.severity == "advice"}
    for key in ("lora_alpha", "lr_scheduler_type", "plot_loss", "warmup_steps", "max_grad_norm", "weight_decay"):
        assert key in advice, key
        assert advice[key].line == line_of(path, key)
    assert "32" in (advice["lora_alpha"].fix or "")
    assert not [f for f in findings if f.severity == "error"]
    proc = run_cli("validate", str(path), "--no-files")
    assert proc.returncode == 0 and "advice: lora_alpha" in proc.stdout
    quiet = run_cli("validate", str(path), "--no-files", "--quiet-advice")
    assert quiet.returncode == 0 and "advice:" not in quiet.stdout


def test_following_the_guide_silences_its_advice(tmp_path: Path) -> None:
    _, findings = _findings(tmp_path, {"lora_rank": 16, "lora_alpha": 32, "lr_scheduler_type": "cosine",
                                       "plot_loss": True, "warmup_steps": 100, "max_grad_norm": 1.0,
                                       "weight_decay": 0.01, "val_size": 0.1, "eval_strategy": "steps",
                                       "save_total_limit": 3, "bf16": True, "flash_attn": "fa2",
                                       "pure_bf16": True, "enable_liger_kernel": True,
                                       # written out, a deliberate difference from LLaMA-Factory is not advised on
                                       "include_num_input_tokens_seen": "non_padding"})
    assert [f.format() for f in findings] == []


# -- things that fail hours later (filesystem) -------------------------------------------
def _dataset_dir(root: Path) -> Path:
    d = root / "data"
    d.mkdir()
    (d / "good.json").write_text(json.dumps([{"instruction": "hi", "input": "", "output": "yo"}]))
    (d / "badline.jsonl").write_text(
        json.dumps({"instruction": "a", "output": "b"}) + "\n"
        + json.dumps({"instruction": "c", "output": "d"}) + "\n"
        + '{"instruction": "e", "output": \n')
    (d / "wrongcols.jsonl").write_text(json.dumps({"question": "q", "answer": "a"}) + "\n")
    (d / "pairs.json").write_text(json.dumps([{"conversations": [{"from": "human", "value": "q"}],
                                               "chosen": {"from": "gpt", "value": "a"},
                                               "rejected": {"from": "gpt", "value": "b"}}]))
    (d / "dataset_info.json").write_text(json.dumps({
        "good": {"file_name": "good.json"},
        "badline": {"file_name": "badline.jsonl"},
        "gone": {"file_name": "gone.json"},
        "wrongcols": {"file_name": "wrongcols.jsonl"},
        "pairs": {"file_name": "pairs.json", "formatting": "sharegpt", "ranking": True},
        "hub": {"hf_hub_url": "org/data"},
    }, indent=2))
    return d


def _file_findings(tmp_path: Path, values: dict[str, Any], **kw: Any) -> tuple[Path, list[Finding]]:
    _dataset_dir(tmp_path)
    model = tmp_path / "model"
    model.mkdir(exist_ok=True)
    (model / "config.json").write_text(json.dumps({"max_position_embeddings": 4096}))
    base = {"model_name_or_path": "./model", "dataset_dir": "data", "dataset": "good"}
    path = write_config(tmp_path / "cfg.yaml", {**base, **values})
    return path, validate_path(path, check_files=True, cuda_available=kw.get("cuda", True))


def test_good_dataset_and_local_model_pass(tmp_path: Path) -> None:
    _, findings = _file_findings(tmp_path, {})
    assert [f.format() for f in findings if f.severity != "advice"] == []


@pytest.mark.parametrize(
    ("values", "code", "key", "text"),
    [
        ({"dataset": "goood"}, "dataset-unknown", "dataset", "did you mean 'good'?"),
        ({"dataset": "badline"}, "dataset-file-json", "dataset", "line 3"),
        ({"dataset": "gone"}, "dataset-file-missing", "dataset", "gone.json"),
        ({"dataset": "wrongcols"}, "dataset-columns", "dataset", "'instruction'"),
        ({"dataset": "pairs"}, "dataset-stage", "dataset", "stage sft"),
        ({"dataset": "good", "stage": "dpo"}, "dataset-stage", "dataset", "ranking"),
        ({"eval_dataset": "gone", "dataset": "good"}, "dataset-file-missing", "eval_dataset", "gone.json"),
        ({"template": "qwen25"}, "template-unknown", "template", "did you mean"),
        ({"resume_from_checkpoint": "out/checkpoint-9"}, "resume-missing", "resume_from_checkpoint", "checkpoint-9"),
        ({"deepspeed": "ds/missing.json"}, "deepspeed-missing", "deepspeed", "missing.json"),
    ],
)
def test_problems_that_would_fail_at_run_time_are_errors(tmp_path: Path, values: dict[str, Any], code: str,
                                                         key: str, text: str) -> None:
    path, findings = _file_findings(tmp_path, values)
    hit = _by_code(findings, code)
    assert hit, [f.format() for f in findings]
    f = hit[0]
    assert f.severity == "error" and f.key == key and f.line == line_of(path, key)
    assert text in f.message + (f.fix or "")


def test_dataset_dir_is_found_next_to_the_config_before_the_working_directory(tmp_path: Path) -> None:
    path, _ = _file_findings(tmp_path, {"dataset": "goood"})
    proc = run_cli("validate", str(path), "--json", cwd=Path("/"))
    codes = [f["code"] for f in json.loads(proc.stdout)[0]["findings"]]
    assert "dataset-unknown" in codes and "dataset-dir-missing" not in codes


def test_invalid_dataset_info_names_its_line(tmp_path: Path) -> None:
    d = _dataset_dir(tmp_path)
    (d / "dataset_info.json").write_text('{\n  "good": {"file_name": "good.json"},\n  "x": \n}\n')
    path = write_config(tmp_path / "c.yaml", {"dataset_dir": "data", "dataset": "good"})
    f = _by_code(validate_path(path, check_files=True, cuda_available=True), "dataset-info-json")[0]
    assert "line 4" in f.message and f.severity == "error"


def test_a_missing_path_that_looks_local_blocks_launch_at_its_line(tmp_path: Path, monkeypatch) -> None:
    # The trainer would hand it to the hub and fail seconds later with "Repo id must be in
    # the form 'repo_name' or 'namespace/repo_name'": launch refuses it (a config meant for
    # another machine still validates; tests/test_control_plan.py runs the launch).
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    for value in ("/nonexistent/models/7B", "./models/tiny", "~/no-such-dir-tunedeck/7B", "models/tiny-llama",
                  "a/b/c"):
        path = write_config(tmp_path / "c.yaml", {"model_name_or_path": value})
        f = _by_code(validate_path(path, check_files=True, cuda_available=True), "model-path-missing")
        assert f and f[0].line == line_of(path, "model_name_or_path"), value
        assert f[0].code in LAUNCH_BLOCKING and "launch` refuses it" in f[0].message
    path = write_config(tmp_path / "c.yaml", {"dataset_dir": "./data2", "dataset": "x"})
    f = _by_code(validate_path(path, check_files=True, cuda_available=True), "dataset-dir-path-missing")
    assert f and f[0].code in LAUNCH_BLOCKING and f[0].line == line_of(path, "dataset_dir")
    # A bare name is LLaMA-Factory's default folder for another machine: still a warning.
    path = write_config(tmp_path / "c.yaml", {"dataset_dir": "nowhere", "dataset": "x"})
    f = _by_code(validate_path(path, check_files=True, cuda_available=True), "dataset-dir-missing")
    assert f and f[0].severity == "warning" and f[0].code not in LAUNCH_BLOCKING


def test_hub_id_that_is_not_local_warns_about_the_download(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    path = write_config(tmp_path / "c.yaml", {"model_name_or_path": "Qwen/Qwen2.5-7B-Instruct"})
    f = _by_code(validate_path(path, check_files=True, cuda_available=True), "model-download")[0]
    assert f.severity == "warning" and "downloaded from the hub unless HF_HUB_OFFLINE" in f.message
    (tmp_path / "hf" / "hub" / "models--Qwen--Qwen2.5-7B-Instruct").mkdir(parents=True)
    assert not _by_code(validate_path(path, check_files=True, cuda_available=True), "model-download")


def test_model_folder_without_config_json_or_holding_an_adapter_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty_model").mkdir()
    ad = tmp_path / "adapter"
    ad.mkdir()
    (ad / "adapter_config.json").write_text("{}")
    for folder, code in (("./empty_model", "model-no-config"), ("./adapter", "model-is-adapter")):
        path = write_config(tmp_path / "c.yaml", {"model_name_or_path": folder})
        hit = _by_code(validate_path(path, check_files=True, cuda_available=True), code)
        assert hit and hit[0].severity == "error" and hit[0].line == line_of(path, "model_name_or_path")


def test_cutoff_longer_than_the_model_context_warns(tmp_path: Path) -> None:
    _, findings = _file_findings(tmp_path, {"cutoff_len": 8192})
    f = _by_code(findings, "cutoff-over-context")[0]
    assert f.severity == "warning" and "4096" in f.message


def _checkpoint(root: Path, step: int, *, weights: bool = True, state: bool = True, optimizer: bool = True) -> Path:
    c = root / f"checkpoint-{step}"
    c.mkdir(parents=True)
    if weights:
        (c / "adapter_model.safetensors").write_bytes(b"x")
    if state:
        (c / "trainer_state.json").write_text("{}")
    if optimizer:
        (c / "optimizer.pt").write_bytes(b"x")
    return c


def test_output_dir_with_checkpoints_says_it_will_resume(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _checkpoint(out, 100)
    _checkpoint(out, 200)
    path = write_config(tmp_path / "c.yaml", {"output_dir": "out", "overwrite_output_dir": False})
    f = _by_code(validate_path(path, check_files=True, cuda_available=True), "will-resume")[0]
    assert f.severity == "warning" and "checkpoint-200" in f.message and f.line == line_of(path, "output_dir")
    assert "overwrite_output_dir: true" not in (f.fix or "") and "--overwrite" in (f.fix or "")
    path = write_config(tmp_path / "c.yaml", {"output_dir": "out", "overwrite_output_dir": True})
    findings = validate_path(path, check_files=True, cuda_available=True)
    assert not _by_code(findings, "will-resume")
    over = _by_code(findings, "overwrite-checkpoints")[0]
    assert over.severity == "warning" and "refuses" in over.message and "--overwrite" in (over.fix or "")


def test_newest_checkpoint_incomplete_is_flagged(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _checkpoint(out, 100)
    _checkpoint(out, 200, state=False)
    path = write_config(tmp_path / "c.yaml", {"output_dir": "out"})
    f = _by_code(validate_path(path, check_files=True, cuda_available=True), "checkpoint-incomplete")[0]
    assert "checkpoint-200" in f.message and "trainer_state.json" in f.message


@pytest.mark.parametrize(
    ("kind", "code", "severity"),
    [("no-weights", "resume-incomplete", "error"), ("no-optimizer", "resume-no-optimizer", "warning"),
     ("marker", "resume-incomplete", "error")],
)
def test_resume_from_an_incomplete_checkpoint(tmp_path: Path, kind: str, code: str, severity: str) -> None:
    c = _checkpoint(tmp_path / "out", 50, weights=kind != "no-weights", optimizer=kind != "no-optimizer")
    if kind == "marker":
        (c / "checkpoint-is-incomplete.txt").write_text("")
    path = write_config(tmp_path / "c.yaml", {"resume_from_checkpoint": "out/checkpoint-50"})
    f = _by_code(validate_path(path, check_files=True, cuda_available=True), code)[0]
    assert f.severity == severity and f.key == "resume_from_checkpoint"


def test_resume_latest_needs_a_complete_checkpoint(tmp_path: Path) -> None:
    path = write_config(tmp_path / "c.yaml", {"output_dir": "out", "resume_from_checkpoint": "latest"})
    assert _by_code(validate_path(path, check_files=True, cuda_available=True), "resume-none")
    _checkpoint(tmp_path / "out", 10)
    findings = validate_path(path, check_files=True, cuda_available=True)
    assert not _by_code(findings, "resume-none") and not _by_code(findings, "will-resume")


def test_deepspeed_file_is_read_for_its_zero_stage(tmp_path: Path) -> None:
    ds = tmp_path / "ds"
    ds.mkdir()
    (ds / "z3.json").write_text(json.dumps({"zero_optimization": {"stage": 3}}))
    (ds / "broken.json").write_text('{\n  "zero_optimization": {"stage": 3,}\n}\n')
    path = write_config(tmp_path / "c.yaml", {"deepspeed": "ds/z3.json", "pure_bf16": True})
    assert _by_code(validate_path(path, check_files=True, cuda_available=True), "pure-bf16-zero3")
    path = write_config(tmp_path / "c.yaml", {"deepspeed": "ds/broken.json"})
    f = _by_code(validate_path(path, check_files=True, cuda_available=True), "deepspeed-json")[0]
    assert "line 2" in f.message


def test_gpu_only_settings_warn_without_cuda_and_not_with_it(tmp_path: Path) -> None:
    values = {"quantization_bit": 4, "flash_attn": "fa2", "pure_bf16": True}
    _, without = _findings(tmp_path, values, cuda=False)
    assert {f.key for f in _by_code(without, "no-cuda")} == {"quantization_bit", "flash_attn", "pure_bf16"}
    assert all(f.severity == "warning" for f in _by_code(without, "no-cuda"))
    _, with_cuda = _findings(tmp_path, values, cuda=True)
    assert not _by_code(with_cuda, "no-cuda")


def test_validate_doc_accepts_an_in_memory_doc_with_overrides() -> None:
    doc = ConfigDoc.loads(yaml_text(BASE), source="<form>")
    doc.overrides = {"lora_rank": 0}
    f = [f for f in validate_doc(doc, check_files=False, cuda_available=True) if f.key == "lora_rank"][0]
    assert f.file == "command line" and f.code == "range"
    assert f.format().startswith("command line: error: lora_rank:")


def test_findings_format_as_file_line_col(tmp_path: Path) -> None:
    f = Finding("error", "range", "lora_rank", "0 is out of range", "use 8", "a.yaml", 3, 12)
    assert f.format() == "a.yaml:3:12: error: lora_rank: 0 is out of range (fix: use 8)"
    assert f.to_dict()["line"] == 3


def test_validation_does_not_write_anything(tmp_path: Path) -> None:
    path, _ = _file_findings(tmp_path, {})
    before = sorted((p, p.stat().st_mtime_ns) for p in tmp_path.rglob("*"))
    validate_path(path, check_files=True, cuda_available=True)
    assert sorted((p, p.stat().st_mtime_ns) for p in tmp_path.rglob("*")) == before
    assert os.access(path, os.R_OK)
