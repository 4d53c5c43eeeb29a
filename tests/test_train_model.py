"""The runner's pure parts, in process: config -> plan, trainable parameter sets,
the log's ETA after a resume, checkpoint choice for resume, the tiny model builder."""

from __future__ import annotations

import dataclasses
import filecmp
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from tunedeck.runner.rundir.protocol import INCOMPLETE_MARKER
from tunedeck.runner.train.args import build_plan
from tunedeck.runner.train.outcome import ConfigProblem


def _ta_fields() -> set[str]:
    from transformers import TrainingArguments

    return {f.name for f in dataclasses.fields(TrainingArguments)}


def _plan(model_dir: Path, tmp_path: Path, **values):
    base = {"model_name_or_path": str(model_dir), "output_dir": str(tmp_path / "out"), "stage": "sft"}
    return build_plan({**base, **values}, training_fields=_ta_fields(), cuda=False)


def _load(model_dir: Path, tmp_path: Path, **values):
    from tunedeck.runner.train.model import load_model, load_tokenizer

    plan = _plan(model_dir, tmp_path, **values)
    tok = load_tokenizer(plan.model)
    model = load_model(plan, tok)
    return model, sorted(n for n, p in model.named_parameters() if p.requires_grad)


# -- fine-tuning methods on the tiny model ------------------------------------------

def test_lora_all_adapts_every_linear_layer_but_not_the_output_head(tiny_model_dir: Path, tmp_path: Path) -> None:
    model, trainable = _load(tiny_model_dir, tmp_path, finetuning_type="lora", lora_target="all", lora_rank=4)
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    adapted = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in trainable}
    assert adapted == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert not any("lm_head" in n or "embed_tokens" in n for n in trainable)
    cfg = model.peft_config["default"]
    assert cfg.r == 4 and cfg.lora_alpha == 8  # alpha defaults to 2 x rank


def test_lora_with_a_target_list_and_additional_target(tiny_model_dir: Path, tmp_path: Path) -> None:
    _, trainable = _load(tiny_model_dir, tmp_path, lora_target="q_proj,v_proj", additional_target="lm_head")
    adapted = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in trainable if ".lora_" in n}
    assert adapted == {"q_proj", "v_proj"}
    assert any("lm_head" in n and "modules_to_save" in n for n in trainable)


@pytest.mark.parametrize(
    ("layers", "modules", "extra", "expected_prefixes"),
    [
        (1, "all", None, ["model.layers.1."]),
        (-1, "all", None, ["model.layers.0."]),
        (2, "mlp", None, ["model.layers.0.mlp.", "model.layers.1.mlp."]),
        (1, "self_attn", "embed_tokens", ["model.layers.1.self_attn.", "model.embed_tokens."]),
    ],
)
def test_freeze_trains_exactly_the_chosen_layers_and_modules(
    tiny_model_dir: Path, tmp_path: Path, layers: int, modules: str, extra: str | None, expected_prefixes: list[str]
) -> None:
    _, trainable = _load(tiny_model_dir, tmp_path, finetuning_type="freeze", freeze_trainable_layers=layers,
                         freeze_trainable_modules=modules, freeze_extra_modules=extra)
    assert trainable
    assert all(any(n.startswith(p) for p in expected_prefixes) for n in trainable), trainable
    for p in expected_prefixes:
        assert any(n.startswith(p) for n in trainable), p


def test_freeze_names_the_modules_to_choose_from_when_one_is_unknown(tiny_model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigProblem, match=r"freeze_trainable_modules: module 'attn' is not found, choose from .*self_attn"):
        _load(tiny_model_dir, tmp_path, finetuning_type="freeze", freeze_trainable_modules="attn")


def test_full_trains_every_parameter_in_fp32(tiny_model_dir: Path, tmp_path: Path) -> None:
    import torch

    model, trainable = _load(tiny_model_dir, tmp_path, finetuning_type="full")
    assert len(trainable) == len(list(model.parameters()))
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_pure_bf16_keeps_trainable_weights_in_bf16_and_turns_off_autocast(tiny_model_dir: Path, tmp_path: Path) -> None:
    import torch

    plan = _plan(tiny_model_dir, tmp_path, finetuning_type="full", pure_bf16=True, bf16=True)
    assert plan.training["bf16"] is False and plan.training["fp16"] is False
    model, _ = _load(tiny_model_dir, tmp_path, finetuning_type="full", pure_bf16=True, bf16=True)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


# -- config -> plan ------------------------------------------------------------------

def test_plan_passes_unchecked_training_arguments_through_and_applies_runner_rules(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    plan = _plan(tiny_model_dir, tmp_path, adam_beta2=0.95, report_to="swanlab",
                 resume_from_checkpoint="latest", save_safetensors=True)
    t = plan.training
    assert t["adam_beta2"] == 0.95
    assert t["use_cpu"] is True, "no CUDA: the processes must join one gloo group"
    assert t["report_to"] == "none" and plan.swanlab is not None  # swanlab via its own callback
    assert "resume_from_checkpoint" not in t and plan.resume == "latest"
    assert "save_safetensors" not in t
    assert t["include_num_input_tokens_seen"] == "non_padding"
    assert t["ddp_find_unused_parameters"] is False


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"report_to": "wandb"}, "pip install wandb"),
        ({"flash_attn": "fa2"}, "flash-attn"),
        ({"quantization_bit": 4}, "needs a CUDA GPU"),
        ({"quantization_bit": 4, "finetuning_type": "full"}, "only compatible with finetuning_type: lora"),
        ({"use_galore": True, "finetuning_type": "full"}, "galore-torch"),
        ({"use_badam": True, "finetuning_type": "full"}, "badam"),
        ({"enable_liger_kernel": True}, "liger-kernel"),
        ({"stage": "ppo"}, "not supported"),
    ],
)
def test_plan_refuses_what_this_machine_cannot_run_with_the_fix(
    tiny_model_dir: Path, tmp_path: Path, values: dict, message: str
) -> None:
    with pytest.raises(ConfigProblem, match=message):
        _plan(tiny_model_dir, tmp_path, **values)


# -- trainer_log.jsonl: ETA after a resume ------------------------------------------------

def test_eta_after_a_resume_uses_only_this_processes_steps_and_time(tmp_path: Path, monkeypatch) -> None:
    import tunedeck.runner.train.callbacks as cb

    now = [1000.0]
    monkeypatch.setattr(cb.time, "time", lambda: now[0])
    log = cb.TrainerLogCallback(tmp_path)
    state = SimpleNamespace(global_step=100, max_steps=200, num_input_tokens_seen=50_000, epoch=1.0,
                            is_world_process_zero=True)
    log.on_train_begin(None, state, None)  # resumed at step 100 of 200
    now[0] += 50.0
    state.global_step, state.num_input_tokens_seen = 110, 60_000
    log.on_log(None, state, None, logs={"loss": 1.5, "learning_rate": 1e-4, "grad_norm": 0.5})
    log.close()
    rec = json.loads((tmp_path / "trainer_log.jsonl").read_text())
    # 10 steps in 50 s in this process -> 90 steps to go take 450 s (not 50/110*90).
    assert rec["remaining_time"] == "0:07:30"
    assert rec["elapsed_time"] == "0:00:50"
    assert rec["throughput"] == 200.0  # 10k tokens in 50 s, not 60k
    assert rec["step_time"] == 5.0 and rec["percentage"] == 55.0 and rec["total_tokens"] == 60_000


def test_log_is_appended_never_truncated(tmp_path: Path) -> None:
    import tunedeck.runner.train.callbacks as cb

    (tmp_path / "trainer_log.jsonl").write_text('{"current_steps": 1, "loss": 2.0}\n')
    log = cb.TrainerLogCallback(tmp_path)
    state = SimpleNamespace(global_step=2, max_steps=4, num_input_tokens_seen=0, epoch=0.5,
                            is_world_process_zero=True)
    log.on_train_begin(None, state, None)
    state.global_step = 3
    log.on_log(None, state, None, logs={"loss": 1.0})
    log.close()
    steps = [json.loads(x)["current_steps"] for x in (tmp_path / "trainer_log.jsonl").read_text().splitlines()]
    assert steps == [1, 3]


# -- resume choice ---------------------------------------------------------------------

def _fake_checkpoint(out: Path, step: int, complete: bool) -> None:
    ck = out / f"checkpoint-{step}"
    ck.mkdir(parents=True)
    (ck / "trainer_state.json").write_text("{}")
    (ck / "adapter_model.safetensors").write_bytes(b"x")
    if not complete:
        (ck / INCOMPLETE_MARKER).write_text("writing")


def test_resume_latest_skips_a_checkpoint_interrupted_while_saving(tiny_model_dir: Path, tmp_path: Path) -> None:
    from tunedeck.runner.train.workflow import _Context, resolve_resume

    out = tmp_path / "out"
    _fake_checkpoint(out, 10, complete=True)
    _fake_checkpoint(out, 20, complete=False)
    latest = resolve_resume(_plan(tiny_model_dir, tmp_path, resume_from_checkpoint="latest"), _Context())
    assert latest == str(out / "checkpoint-10")
    implicit = resolve_resume(_plan(tiny_model_dir, tmp_path), _Context())
    assert implicit == str(out / "checkpoint-10")
    assert resolve_resume(_plan(tiny_model_dir, tmp_path, overwrite_output_dir=True), _Context()) is None
    with pytest.raises(ConfigProblem, match="incomplete"):
        resolve_resume(_plan(tiny_model_dir, tmp_path, resume_from_checkpoint=str(out / "checkpoint-20")), _Context())


def test_a_finished_model_without_checkpoints_asks_for_overwrite(tiny_model_dir: Path, tmp_path: Path) -> None:
    from tunedeck.runner.train.workflow import _Context, resolve_resume

    out = tmp_path / "out"
    out.mkdir()
    (out / "adapter_model.safetensors").write_bytes(b"x")
    with pytest.raises(ConfigProblem, match="overwrite_output_dir"):
        resolve_resume(_plan(tiny_model_dir, tmp_path), _Context())


# -- the tiny model ------------------------------------------------------------------------

def test_tiny_model_is_deterministic_from_its_seed_and_reloads_offline(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunedeck.runner.train.tiny import build_tiny_model, read_build_info

    a = build_tiny_model(tmp_path / "a", seed=7, hidden=32, layers=1)
    b = build_tiny_model(tmp_path / "b", seed=7, hidden=32, layers=1)
    c = build_tiny_model(tmp_path / "c", seed=8, hidden=32, layers=1)
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert filecmp.cmp(a / name, b / name, shallow=False), name
    assert not filecmp.cmp(a / "model.safetensors", c / "model.safetensors", shallow=False)
    tok = AutoTokenizer.from_pretrained(a)
    model = AutoModelForCausalLM.from_pretrained(a)
    assert model.config.model_type == "llama" and model.config.vocab_size == len(tok)
    assert read_build_info(a)["params"] == sum(p.numel() for p in model.parameters())
    ids = tok.apply_chat_template([{"role": "user", "content": "Add 2 3"}], add_generation_prompt=True)
    ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
    text = tok.decode(ids)
    assert text.startswith("<|im_start|>user\nAdd 2 3<|im_end|>") and text.endswith("<|im_start|>assistant\n")
    # Digits are single tokens (arithmetic stays learnable).
    assert tok.tokenize("12345") == ["1", "2", "3", "4", "5"]


# -- the step's shortcuts give transformers' numbers ---------------------------------

def test_grad_clipping_and_flops_match_transformers_own(tiny_model_dir: Path, tmp_path: Path) -> None:
    """The trainer lists the parameters once for clipping and counts them once for the
    FLOPs: the grad norm, the clipped gradients and total_flos stay transformers' to the bit."""
    import torch
    from transformers import Trainer, TrainingArguments

    from tunedeck.runner.train.trainer import make_trainer_class

    model, _ = _load(tiny_model_dir, tmp_path, finetuning_type="lora", lora_target="all", lora_rank=4)
    args = TrainingArguments(output_dir=str(tmp_path / "t"), report_to="none", use_cpu=True, max_grad_norm=0.01)
    trainer = make_trainer_class(Trainer)(model=model, args=args)
    torch.manual_seed(0)
    inputs = {"input_ids": torch.randint(3, 100, (2, 12))}
    inputs["labels"] = inputs["input_ids"].clone()

    def clipped(clip) -> tuple[float, list[torch.Tensor]]:
        model.zero_grad()
        model(**inputs).loss.backward()
        norm = float(clip(model))
        return norm, [p.grad.clone() for p in model.parameters() if p.grad is not None]

    ours, ours_grads = clipped(trainer._clip_grad_norm)
    theirs, their_grads = clipped(lambda m: Trainer._clip_grad_norm(trainer, m))
    assert ours == theirs > 0.01  # the limit is below the norm, so the gradients were scaled
    assert len(ours_grads) == len(their_grads) > 0
    assert all(torch.equal(a, b) for a, b in zip(ours_grads, their_grads, strict=True))
    assert trainer.floating_point_ops(inputs) == Trainer.floating_point_ops(trainer, inputs) > 0
    assert trainer.floating_point_ops({"labels": inputs["labels"]}) == 0
