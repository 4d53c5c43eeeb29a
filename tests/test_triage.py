"""Triage: symptoms -> ordered suggestions with config patches and memory before/after."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tunedeck.runner.triage import (
    Diagnosis,
    TriageInput,
    apply_suggestion,
    diagnose,
    triage_run,
)

REPO = Path(__file__).resolve().parents[1]
OOM_TAIL = [
    "Traceback (most recent call last):",
    '  File "train.py", line 10, in <module>',
    "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a "
    "total capacity of 23.64 GiB of which 1.02 GiB is free.",
]
LORA_7B = {
    "model_name_or_path": "/models/Qwen2.5-7B-Instruct",
    "stage": "sft",
    "finetuning_type": "lora",
    "per_device_train_batch_size": 4,
    "gradient_accumulation_steps": 2,
    "cutoff_len": 2048,
    "bf16": True,
    "learning_rate": 1e-4,
}


def make_input(**kw: Any) -> TriageInput:
    base: dict[str, Any] = dict(
        status=None, exit_message=None, log_tail=[], values=dict(LORA_7B), config_dir=None,
        gpu_mem_bytes=24 * 1024**3, num_gpus=1, history=[], disk_free_bytes=None,
        checkpoint_bytes=None, last_log_age_s=None, checkpoint_step=None,
    )
    base.update(kw)
    return TriageInput(**base)


def kinds(diags: list[Diagnosis]) -> list[str]:
    return [d.kind for d in diags]


def first(diags: list[Diagnosis], kind: str) -> Diagnosis:
    return next(d for d in diags if d.kind == kind)


# --- OOM ---------------------------------------------------------------------------------


def test_oom_first_suggestion_is_batch_1_with_accumulation_raised() -> None:
    diags = diagnose(make_input(status="oom", log_tail=OOM_TAIL))
    assert diags[0].kind == "oom"
    s = diags[0].suggestions[0]
    assert s.patch == {"per_device_train_batch_size": 1, "gradient_accumulation_steps": 8}
    # effective batch 4 x 2 = 1 x 8 holds
    assert s.patch["per_device_train_batch_size"] * s.patch["gradient_accumulation_steps"] == 4 * 2
    assert s.after_bytes is not None and s.before_bytes is not None
    assert s.after_bytes < s.before_bytes
    assert s.guide_ref == "10.6 OOM step 1"
    assert s.diff_lines(LORA_7B) == ["per_device_train_batch_size: 4 -> 1",
                                     "gradient_accumulation_steps: 2 -> 8"]


def test_oom_is_recognised_from_the_log_alone_and_follows_the_guides_order() -> None:
    diags = diagnose(make_input(log_tail=["step 3", "RuntimeError: CUDA out of memory."]))
    refs = [s.guide_ref for s in first(diags, "oom").suggestions]
    assert refs[:4] == ["10.6 OOM step 1", "10.6 OOM step 2", "10.6 OOM step 3",
                        "10.6 OOM step 4"]
    # Every memory suggestion lowers the estimate.
    for s in first(diags, "oom").suggestions:
        assert s.after_bytes is not None and s.after_bytes < s.before_bytes, s.title


def test_oom_steps_already_applied_are_skipped(tmp_path: Path) -> None:
    ds = tmp_path / "ds_z3_offload.json"
    ds.write_text(json.dumps({"zero_optimization": {
        "stage": 3, "offload_optimizer": {"device": "cpu"}, "offload_param": {"device": "cpu"}}}))
    values = {**LORA_7B, "per_device_train_batch_size": 1, "enable_liger_kernel": True,
              "quantization_bit": 4}
    oom = first(diagnose(make_input(status="oom", values=values)), "oom")
    titles = [s.title for s in oom.suggestions]
    assert titles and titles[0].startswith("Shorter cutoff_len")
    assert not any("quantization" in t or "Liger" in t or "Micro-batch" in t for t in titles)
    assert any(t == "DeepSpeed ZeRO-3 with CPU offload" for t in titles)
    done = {**values, "deepspeed": str(ds), "cutoff_len": 256}
    oom = first(diagnose(make_input(status="oom", values=done)), "oom")
    assert oom.suggestions == ()


def test_oom_on_full_finetuning_switches_to_qlora_and_multi_gpu_gets_zero3() -> None:
    full = {**LORA_7B, "finetuning_type": "full", "pure_bf16": True,
            "per_device_train_batch_size": 1, "enable_liger_kernel": True}
    oom = first(diagnose(make_input(status="oom", values=full, num_gpus=4)), "oom")
    q = next(s for s in oom.suggestions if s.guide_ref == "10.6 OOM step 4")
    assert q.patch["finetuning_type"] == "lora" and q.patch["quantization_bit"] == 4
    z3 = next(s for s in oom.suggestions if s.guide_ref == "10.6 OOM step 5")
    assert "z3" in Path(z3.patch["deepspeed"]).name
    assert z3.patch["pure_bf16"] is None  # LLaMA-Factory rejects pure_bf16 under ZeRO-3
    assert z3.after_bytes < z3.before_bytes / 2


def test_cutoff_suggestion_counts_truncated_examples_from_the_data(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    # 90 short examples and 10 of ~1600 characters (about 400 tokens at 4 chars/token).
    recs = [{"instruction": "hi", "input": "", "output": "ok"} for _ in range(90)]
    recs += [{"instruction": "x" * 800, "input": "", "output": "y" * 800} for _ in range(10)]
    (data / "d.json").write_text(json.dumps(recs))
    (data / "dataset_info.json").write_text(json.dumps({"d": {"file_name": "d.json"}}))
    values = {**LORA_7B, "per_device_train_batch_size": 1, "enable_liger_kernel": True,
              "dataset": "d", "dataset_dir": "data", "template": "qwen", "cutoff_len": 512}
    oom = first(diagnose(make_input(status="oom", values=values, config_dir=tmp_path)), "oom")
    s = oom.suggestions[0]
    assert s.patch == {"cutoff_len": 256}
    assert "truncates 10 examples (10.0%)" in s.rationale
    assert "characters / 4" in s.rationale


def test_cutoff_counts_tokens_with_the_models_tokenizer_json(tmp_path: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    model = tmp_path / "model"
    model.mkdir()
    vocab = {"[UNK]": 0, "x": 1, "ok": 2, "hi": 3}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(model / "tokenizer.json"))
    data = tmp_path / "data"
    data.mkdir()
    # Whitespace words: "x " * 300 is 300 tokens but 600 characters (150 by chars/4).
    recs = [{"instruction": "x " * 300, "output": "ok"} for _ in range(4)]
    recs += [{"instruction": "hi", "output": "ok"} for _ in range(4)]
    (data / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    (data / "dataset_info.json").write_text(json.dumps({"d": {"file_name": "d.jsonl"}}))
    values = {**LORA_7B, "model_name_or_path": str(model), "per_device_train_batch_size": 1,
              "enable_liger_kernel": True, "dataset": "d", "dataset_dir": str(data),
              "template": "empty", "cutoff_len": 600}
    inp = make_input(status="oom", values=values, config_dir=tmp_path)
    s = first(diagnose(inp), "oom").suggestions[0]
    assert s.patch == {"cutoff_len": 300}
    assert "tokenizer.json" in s.rationale and "truncates 4 examples (50.0%)" in s.rationale


# --- other symptoms ----------------------------------------------------------------------


def _hist(losses: list[float], dt: float = 10.0, **extra: Any) -> list[dict[str, Any]]:
    return [{"current_steps": (i + 1) * 10, "total_steps": 1000, "loss": x,
             "timestamp": 1_000_000 + i * dt, **extra} for i, x in enumerate(losses)]


def test_nan_loss_gives_diverged_with_lr_clip_warmup_and_bf16() -> None:
    values = {**LORA_7B, "fp16": True, "bf16": False, "max_grad_norm": 0, "learning_rate": 2e-4}
    hist = _hist([2.0, 1.8, float("nan")])
    diags = diagnose(make_input(status="diverged", values=values, history=hist))
    d = diags[0]
    assert d.kind == "diverged"
    assert any("loss nan" in e for e in d.evidence)
    patches = [s.patch for s in d.suggestions]
    assert {"fp16": None, "bf16": True} in patches
    assert {"learning_rate": 5e-5} in patches
    assert {"max_grad_norm": 1.0} in patches
    assert {"warmup_steps": 100} in patches  # 10% of 1000 total steps (guide 4.1)
    assert "not_converging" not in kinds(diags)


def test_resume_past_max_steps_names_the_key() -> None:
    d = diagnose(make_input(status="finished", values={**LORA_7B, "max_steps": 500},
                            checkpoint_step=500))
    rp = first(d, "resume_past_end")
    assert "max_steps" in rp.summary
    assert list(rp.suggestions[0].patch) == ["max_steps"]
    assert rp.suggestions[0].patch["max_steps"] > 500


def test_resume_past_the_last_epoch_says_raise_num_train_epochs() -> None:
    inp = make_input(status="stopped", values={**LORA_7B, "num_train_epochs": 2.0},
                     checkpoint_step=1000, checkpoint_epoch=2.0, history=_hist([1.0] * 3))
    rp = first(diagnose(inp), "resume_past_end")
    assert rp.suggestions[0].patch == {"num_train_epochs": 3.0}
    assert "num_train_epochs" in rp.suggestions[0].title


def test_disk_low_when_free_space_is_under_one_and_a_half_checkpoints() -> None:
    gb = 1024**3
    d = diagnose(make_input(status="running", disk_free_bytes=20 * gb, checkpoint_bytes=15 * gb,
                            disk_path="/data (/dev/sdb1)"))
    low = first(d, "disk_low")
    assert "/data" in low.summary
    assert {"save_total_limit": 2} in [s.patch for s in low.suggestions]
    ok = diagnose(make_input(status="running", disk_free_bytes=40 * gb, checkpoint_bytes=15 * gb))
    assert "disk_low" not in kinds(ok)


def test_enospc_in_the_log_is_disk_full_naming_the_mount() -> None:
    tail = ["OSError: [Errno 28] No space left on device: 'out/checkpoint-500/optimizer.pt'"]
    d = diagnose(make_input(status="failed", log_tail=tail, disk_free_bytes=0,
                            disk_path="/scratch (/dev/nvme1n1)"))
    assert d[0].kind == "disk_full" and "/scratch" in d[0].summary
    assert {"save_only_model": True} in [s.patch for s in d[0].suggestions]


def test_stalled_when_no_log_line_for_many_median_intervals() -> None:
    hist = _hist([2.0, 1.9, 1.8, 1.7], dt=30.0)
    d = diagnose(make_input(status="running", history=hist, last_log_age_s=3600,
                            values={**LORA_7B, "dataloader_num_workers": 4}))
    st = first(d, "stalled")
    assert "median step 3.0 s x 10 steps per log line" in st.evidence[0]
    assert {"dataloader_num_workers": 0} in [s.patch for s in st.suggestions]
    fresh = diagnose(make_input(status="running", history=hist, last_log_age_s=60))
    assert "stalled" not in kinds(fresh)


def test_flat_loss_is_not_converging_and_shows_a_rendered_sample(tmp_path: Path) -> None:
    (tmp_path / "d.json").write_text(json.dumps(
        [{"instruction": "Name a colour", "input": "", "output": "Blue"}]))
    (tmp_path / "dataset_info.json").write_text(json.dumps({"d": {"file_name": "d.json"}}))
    values = {**LORA_7B, "learning_rate": 1e-6, "dataset": "d", "dataset_dir": str(tmp_path),
              "template": "qwen", "mask_history": True}
    d = diagnose(make_input(status="running", values=values, history=_hist([2.3] * 20),
                            last_log_age_s=5))
    nc = first(d, "not_converging")
    titles = [s.title for s in nc.suggestions]
    assert titles[0] == "Learning rate 1e-06 -> 5e-05"
    sample = next(s for s in nc.suggestions if s.guide_ref == "10.6 loss step 2")
    assert "<|im_start|>user\nName a colour<|im_end|>" in sample.rationale
    assert {"mask_history": False} in [s.patch for s in nc.suggestions]
    assert any("warmup" in t.lower() for t in titles)


def test_slowdown_over_the_run_is_slow() -> None:
    hist = [{"current_steps": i, "loss": 1.0, "step_time": 1.0 if i < 10 else 5.0}
            for i in range(20)]
    d = diagnose(make_input(status="running", history=hist, last_log_age_s=1, num_gpus=2))
    slow = first(d, "slow")
    refs = [s.guide_ref for s in slow.suggestions]
    assert refs == ["10.6 slow step 1", "10.6 slow step 2", "10.6 slow step 3",
                    "10.6 slow step 4"]
    assert slow.suggestions[-1].patch == {"ddp_find_unused_parameters": False}


def test_a_decreasing_loss_is_healthy() -> None:
    d = diagnose(make_input(status="running", history=_hist([2.0 - i * 0.05 for i in range(20)]),
                            last_log_age_s=5))
    assert kinds(d) == ["healthy"]


# --- from a run directory ----------------------------------------------------------------

CONFIG = """\
# LoRA SFT on a 24 GB card
model_name_or_path: /models/Qwen2.5-7B-Instruct   # from the hub mirror
stage: sft
finetuning_type: lora

# batch: 4 x 2 = 8 sequences per optimizer step
per_device_train_batch_size: 4
gradient_accumulation_steps: 2
cutoff_len: 2048
bf16: true
"""


def make_run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(CONFIG)
    lines = [json.dumps(r) for r in _hist([2.0, 1.9])]
    (run / "trainer_log.jsonl").write_text(lines[0] + "\n{not json\n" + lines[1] + "\n{\"curr")
    # More than 64 KiB of log before the error: only the tail is read.
    (run / "stdout.log").write_text("noise line\n" * 10_000 + "\n".join(OOM_TAIL) + "\n")
    ck = run / "checkpoint-10"
    ck.mkdir()
    (ck / "trainer_state.json").write_text(json.dumps({"global_step": 10, "epoch": 0.1}))
    (ck / "adapter_model.safetensors").write_bytes(b"\0" * 4096)
    (run / "trainer_exit.json").write_text(json.dumps({"reason": "oom", "step": 12}))
    return run


def test_triage_run_reads_the_run_directory(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    diags = triage_run(run)
    assert diags[0].kind == "oom"
    assert diags[0].suggestions[0].patch == {"per_device_train_batch_size": 1,
                                             "gradient_accumulation_steps": 8}


def test_apply_writes_a_new_config_with_comments_and_leaves_the_original(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    original = (run / "config.yaml").read_bytes()
    s = triage_run(run)[0].suggestions[0]
    path = apply_suggestion(run, s)
    assert path == run / "config.triage-1.yaml"
    assert (run / "config.yaml").read_bytes() == original
    text = path.read_text()
    assert "# batch: 4 x 2 = 8 sequences per optimizer step" in text
    assert "# from the hub mirror" in text
    assert "per_device_train_batch_size: 1\n" in text and "gradient_accumulation_steps: 8" in text
    assert apply_suggestion(run, s) == run / "config.triage-2.yaml"  # never overwrites
    with pytest.raises(Exception, match="changes no config key"):
        apply_suggestion(run, replace(s, patch={}))


def test_triage_command_lists_applies_and_prints_the_resume_command(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    env = {**os.environ, "COLUMNS": "200", "TUNEDECK_HOME": str(tmp_path / "home")}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tunedeck.runner.cli", "triage", *args],
                              capture_output=True, text=True, cwd=REPO, timeout=60, env=env)

    out = cli(str(run))
    assert out.returncode == 0, out.stderr
    assert "oom" in out.stdout and "1. Micro-batch 1 with 8 accumulation steps" in out.stdout
    data = json.loads(cli(str(run), "--json").stdout)
    assert data["diagnoses"][0]["suggestions"][0]["number"] == 1
    applied = cli(str(run), "--apply", "1")
    assert applied.returncode == 0, applied.stderr
    assert f"tunedeck resume {run} per_device_train_batch_size=1 " \
           "gradient_accumulation_steps=8" in applied.stdout
    assert "config.triage-1.yaml" in applied.stdout
    assert (run / "config.triage-1.yaml").is_file()
    bad = cli(str(run), "--apply", "99")
    assert bad.returncode != 0 and "no suggestion 99" in bad.stderr


def test_only_the_newest_attempt_and_real_events_count(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    (run / "trainer_exit.json").unlink()
    # Attempt 1 died of OOM; attempt 2 (after a patch) is running fine. The banner that
    # quotes fault settings ("enospc_on_save=False") is not a disk-full event.
    (run / "stdout.log").write_text(
        "[tunedeck 2026-11-29 12:00:00] attempt 1: accelerate launch ...\n"
        + "\n".join(OOM_TAIL) + "\n"
        "[tunedeck 2026-11-29 12:05:00] attempt 2: accelerate launch ...\n"
        "[tunedeck] fault injection active: Faults(oom_step=None, enospc_on_save=False)\n"
        "step 12 loss 1.8\n")
    (run / "trainer_log.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in _hist([2.0 - 0.05 * i for i in range(10)])))
    assert kinds(triage_run(run)) == ["healthy"]


def test_low_throughput_for_the_gpu_is_slow() -> None:
    def run(tokens_per_s: float) -> list[Diagnosis]:
        hist = _hist([2.0 - 0.05 * i for i in range(10)], throughput=tokens_per_s)
        return diagnose(make_input(status="running", history=hist, last_log_age_s=5,
                                   gpu_name="NVIDIA A100-SXM4-80GB",
                                   values={**LORA_7B, "flash_attn": "fa2"}))

    # Qwen2.5-7B LoRA with checkpointing: ~6 x 7.6e9 FLOPs per token; an A100 peaks at
    # 312 TFLOP/s, so 200 tokens/s is ~3% of peak and 3000 tokens/s ~44%.
    slow = first(run(200), "slow")
    assert "% of the NVIDIA A100-SXM4-80GB bf16 peak" in slow.evidence[0]
    assert slow.suggestions[0].patch == {"dataloader_num_workers": 4}
    assert all(s.patch != {"flash_attn": "fa2"} for s in slow.suggestions)  # already fa2
    assert "slow" not in kinds(run(3000))


def test_a_llamafactory_output_dir_is_triaged_from_its_own_files(tmp_path: Path) -> None:
    run = tmp_path / "saves" / "train_2026"
    run.mkdir(parents=True)
    (run / "training_args.yaml").write_text(
        "model_name_or_path: /models/Llama-3-8B\nfinetuning_type: lora\nlearning_rate: 1.0e-06\n"
        "per_device_train_batch_size: 2\nbf16: true\n")
    # LLaMA-Factory's trainer_log.jsonl (elapsed_time strings, no timestamps): a flat loss.
    recs = [{"current_steps": 5 * (i + 1), "total_steps": 500, "loss": 1.5, "lr": 1e-6,
             "elapsed_time": f"0:0{i // 6}:{(i * 10) % 60:02d}"} for i in range(12)]
    (run / "trainer_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    (run / "running_log.txt").write_text("[INFO|2026-01-01 00:00:00] trainer.py:1 >> step\n")
    diags = triage_run(run)
    nc = first(diags, "not_converging")
    assert nc.suggestions[0].patch == {"learning_rate": 5e-5}
    assert "flat" in nc.summary


def test_a_plain_transformers_run_uses_trainer_state_log_history(tmp_path: Path) -> None:
    run = tmp_path / "out"
    ck = run / "checkpoint-30"
    ck.mkdir(parents=True)
    (run / "config.yaml").write_text("model_name_or_path: /m/Llama-2-7B\nfp16: true\n")
    # transformers writes NaN as a bare JSON token.
    (ck / "trainer_state.json").write_text(
        '{"global_step": 30, "max_steps": 100, "epoch": 0.3, "log_history": ['
        '{"step": 10, "loss": 2.1, "grad_norm": 3.0}, {"step": 20, "loss": 1.9},'
        '{"step": 30, "loss": NaN, "grad_norm": NaN}]}')
    d = first(triage_run(run), "diverged")
    assert "at step 30" in d.evidence[0]
    assert d.suggestions[0].patch == {"fp16": None, "bf16": True}


def test_a_run_silent_since_start_up_is_stalled(tmp_path: Path) -> None:
    from tunedeck.runner.rundir.manifest import RunManifest
    from tunedeck.runner.rundir.protocol import RunStatus

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(CONFIG)
    RunManifest(id="r1", name="r1", output_dir=str(run), config_path=str(run / "config.yaml"),
                status=RunStatus.RUNNING).write(run)
    log = run / "stdout.log"
    log.write_text("[tunedeck 2026-11-29 12:00:00] attempt 1: accelerate launch ...\n"
                   "Running tokenizer on dataset:  12%\n")
    two_hours_ago = log.stat().st_mtime - 7200
    os.utime(log, (two_hours_ago, two_hours_ago))
    st = first(triage_run(run), "stalled")
    assert "no new log line for 7" in st.evidence[0] and "30 min" in st.evidence[0]


def test_auto_triage_passes_over_a_patch_whose_package_is_not_installed(
        tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    import tunedeck.runner.triage as triage
    import tunedeck.runner.triage.suggestions as remedies
    from tunedeck.runner.control.supervisor import _first_triage_patch

    run = make_run(tmp_path)
    # Batch already 1: the guide's next OOM step is the Liger kernel.
    cfg = run / "config.yaml"
    cfg.write_text(cfg.read_text().replace("per_device_train_batch_size: 4", "per_device_train_batch_size: 1"))
    oom = first(triage_run(run), "oom")
    assert oom.suggestions[0].patch == {"enable_liger_kernel": True}

    installed = {"liger_kernel": False, "bitsandbytes": False}
    monkeypatch.setattr(remedies, "_installed", lambda m: installed.get(m, True))
    assert triage.missing_requirements(oom.suggestions[0].patch) == ["liger-kernel"]
    patch = _first_triage_patch(run)
    # Neither Liger nor QLoRA can start here: the shorter cutoff_len is the first that can.
    assert patch is not None and set(patch) == {"cutoff_len"} and patch["cutoff_len"] < 2048
    out = capsys.readouterr().out
    assert "passing over 'Enable the Liger kernel': needs liger-kernel" in out
    assert "applying 'Shorter cutoff_len" in out

    installed["liger_kernel"] = True
    assert _first_triage_patch(run) == {"enable_liger_kernel": True}
    assert triage.missing_requirements({"cutoff_len": 512, "enable_liger_kernel": False}) == []
