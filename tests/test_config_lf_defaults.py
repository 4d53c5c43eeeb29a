"""tunedeck's defaults are LLaMA-Factory 0.9.5's effective defaults, key for key.

``fixtures/llamafactory_0.9.5_defaults.json`` holds what LLaMA-Factory itself ends up
with for a minimal LoRA SFT config: its argument classes' defaults plus what its parser
and transformers' ``TrainingArguments`` fill in after them (written by
``bench/lf_effective_defaults.py`` in a venv with llamafactory==0.9.5).
"""

from __future__ import annotations

import dataclasses
import enum
import json
from pathlib import Path
from typing import Any

import pytest

from tunedeck.runner.config.schema import PARAMS
from tunedeck.runner.config.validate import validate_path
from tunedeck.runner.train.args import build_plan, split_list

FIXTURE = Path(__file__).parent / "fixtures" / "llamafactory_0.9.5_defaults.json"
LF: dict[str, Any] = json.loads(FIXTURE.read_text(encoding="utf-8"))["values"]
MINIMAL = {"model_name_or_path": "m", "stage": "sft", "do_train": True, "finetuning_type": "lora",
           "dataset": "demo_alpaca", "dataset_dir": "data", "template": "default", "output_dir": "out"}

# LLaMA-Factory derives these from another key while parsing; so does tunedeck (the
# loader and the generation path read them the same way).
DERIVED = {"media_dir": "dataset_dir", "generation_max_length": "cutoff_len"}
# Left unset (None) by the schema on purpose: transformers' TrainingArguments fills them in
# when it is built, for LLaMA-Factory and for us alike. Checked on the built object below.
FILLED_BY_TRANSFORMERS = ("accelerator_config", "fsdp_config", "disable_tqdm", "project", "fsdp")
# LLaMA-Factory sets it to false only once the process group is up (a distributed LoRA
# run); tunedeck sets it for every LoRA run, where one process never reads it.
# LLaMA-Factory enables checkpointing on the model with use_reentrant = use_reentrant_gc
# (true) and leaves TrainingArguments' kwargs unset; tunedeck passes the same through them.
SAME_EFFECT = {"ddp_find_unused_parameters": (False, None),
               "gradient_checkpointing_kwargs": ({"use_reentrant": True}, None)}


def _norm(name: str, v: Any) -> Any:
    """One spelling per value: list keys as lists, ``none``/null trackers as no tracker."""
    p = PARAMS.get(name)
    if isinstance(v, enum.Enum):
        v = v.value
    if p is not None and p.type == "list":
        items = split_list(v)
        return [] if items == ["none"] else items
    return v


def _ours() -> tuple[dict[str, Any], dict[str, Any]]:
    from transformers import TrainingArguments

    fields = {f.name for f in dataclasses.fields(TrainingArguments)}
    plan = build_plan(MINIMAL, training_fields=fields, cuda=True)
    return dict(plan.values), dict(plan.training)


def test_every_shared_key_has_llamafactorys_effective_default_or_says_why_not() -> None:
    values, training = _ours()
    shared = [k for k in PARAMS if k in LF and k not in MINIMAL and PARAMS[k].target != "env"]
    assert len(shared) > 250, "the fixture and the schema share most keys"
    wrong = []
    for key in shared:
        p = PARAMS[key]
        if key in DERIVED or key in FILLED_BY_TRANSFORMERS:
            continue
        if key in SAME_EFFECT:
            assert (training.get(key, values.get(key)), LF[key]) == SAME_EFFECT[key], key
            continue
        ours = _norm(key, training.get(key, values.get(key)))
        lf = _norm(key, LF[key])
        if p.differs:
            assert _norm(key, p.lf_default) == lf, f"{key}: lf_default {p.lf_default!r} is not LLaMA-Factory's {lf!r}"
            assert ours != lf, f"{key}: now equal to LLaMA-Factory's default; drop `differs`"
            continue
        if ours != lf:
            wrong.append(f"{key}: tunedeck {ours!r}, LLaMA-Factory {lf!r}")
    assert not wrong, "defaults that differ from LLaMA-Factory 0.9.5 without a reason:\n" + "\n".join(wrong)


def test_keys_llamafactory_derives_are_derived_the_same_way() -> None:
    assert LF["media_dir"] == "<dataset_dir>"
    assert LF["generation_max_length"] == LF["cutoff_len"] == PARAMS["cutoff_len"].default
    for key in DERIVED:
        assert PARAMS[key].default is None


def test_keys_transformers_fills_in_end_the_same_as_under_llamafactory() -> None:
    from transformers import TrainingArguments

    _, training = _ours()
    training = {k: v for k, v in training.items() if k != "use_cpu"}
    args = TrainingArguments(**training)
    assert args.disable_tqdm is LF["disable_tqdm"] is False
    # Read by the trackio reporter only; transformers 5.6 fills "huggingface", later 5.x leave it unset.
    assert args.project in (None, LF["project"])
    assert list(args.fsdp or []) == LF["fsdp"] == []  # no FSDP either way
    for key in ("min_num_params", "xla", "xla_fsdp_v2", "xla_fsdp_grad_ckpt"):
        assert (args.fsdp_config or {}).get(key, LF["fsdp_config"][key]) == LF["fsdp_config"][key], key
    acc = args.accelerator_config
    for field in ("split_batches", "even_batches", "use_seedable_sampler", "non_blocking"):
        value = acc[field] if isinstance(acc, dict) else getattr(acc, field)
        assert f"{field}={value}" in LF["accelerator_config"], field


@pytest.mark.parametrize("key, lf", [
    ("optim", "adamw_torch_fused"), ("per_device_train_batch_size", 8), ("use_reentrant_gc", True),
    ("gradient_checkpointing", True), ("ddp_timeout", 1800), ("remove_unused_columns", False),
    ("dataloader_num_workers", 0), ("dataloader_pin_memory", True), ("logging_steps", 500),
])
def test_the_defaults_a_llamafactory_user_notices_first(key: str, lf: Any) -> None:
    values, training = _ours()
    assert LF[key] == lf
    assert training.get(key, values.get(key)) == lf


def test_gradient_checkpointing_is_reentrant_like_llamafactory_unless_use_reentrant_gc_is_false() -> None:
    from transformers import TrainingArguments

    fields = {f.name for f in dataclasses.fields(TrainingArguments)}
    plan = build_plan(MINIMAL, training_fields=fields, cuda=True)
    assert plan.training["gradient_checkpointing_kwargs"] == {"use_reentrant": True}
    plan = build_plan({**MINIMAL, "use_reentrant_gc": False}, training_fields=fields, cuda=True)
    assert plan.training["gradient_checkpointing_kwargs"] == {"use_reentrant": False}


def test_validate_names_each_deliberate_difference_as_advice(tmp_path: Path) -> None:
    differs = sorted(k for k, p in PARAMS.items() if p.differs)
    assert differs, "at least the token count differs on purpose"
    cfg = tmp_path / "lf.yaml"
    cfg.write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in MINIMAL.items()), encoding="utf-8")
    found = {f.key: f for f in validate_path(cfg, check_files=False) if f.code == "lf-default"}
    assert sorted(found) == differs
    for key in differs:
        assert found[key].severity == "advice" and "LLaMA-Factory" in found[key].message
    # Written out, the difference is the user's choice: no advice.
    cfg.write_text(cfg.read_text() + "".join(f"{k}: {json.dumps(PARAMS[k].lf_default)}\n" for k in differs))
    assert not [f for f in validate_path(cfg, check_files=False) if f.code == "lf-default"]
