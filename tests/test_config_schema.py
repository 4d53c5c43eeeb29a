"""The parameter schema: complete against the guide, self-consistent, and its docs up to date."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest
from config_helpers import BASE, REPO, run_cli, write_config

from tunedeck.runner.config.hf_training_keys import HF_TRAINING_KEYS, fields_from_source
from tunedeck.runner.config.presets import HARDWARE_PRESETS, OPTIMIZATION_LEVELS
from tunedeck.runner.config.schema import (
    GROUPS,
    PARAMS,
    UNSET,
    apply_defaults,
    coerce,
    get_param,
    params_in_group,
    redact,
    schema_markdown,
    secret_keys,
)
from tunedeck.runner.config.validate import check_value, validate_path
from tunedeck.runner.config.yamlio import ConfigDoc
from tunedeck.runner.errors import ConfigError

# The guide's parameter names, extracted once into the repository (a clone has no guide beside it).
GUIDE_PARAMETERS = Path(__file__).parent / "fixtures" / "guide_parameters.txt"


def guide_parameter_names() -> set[str]:
    """Every parameter the guide names in its tables, YAML blocks and `export` lines."""
    lines = GUIDE_PARAMETERS.read_text(encoding="utf-8").splitlines()
    return {t.strip() for t in lines if t.strip() and not t.startswith("#")}


def test_every_parameter_of_the_guide_is_declared() -> None:
    names = guide_parameter_names()
    assert len(names) > 100  # the fixture is whole: the guide names over a hundred keys
    assert all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", n) for n in names)
    missing = sorted(n for n in names if n not in PARAMS)
    assert missing == []


def test_every_guide_parameter_is_in_the_generated_markdown() -> None:
    md = schema_markdown()
    for name in guide_parameter_names():
        assert f"| `{name}`" in md, name


def test_docs_parameters_md_is_up_to_date_with_tunedeck_schema() -> None:
    proc = run_cli("schema", "--markdown")
    assert proc.returncode == 0
    assert (REPO / "docs" / "parameters.md").read_text(encoding="utf-8") == proc.stdout, (
        "regenerate with: tunedeck schema --markdown > docs/parameters.md")


def test_schema_json_and_group_filter() -> None:
    data = json.loads(run_cli("schema", "--json").stdout)
    assert {p["name"] for p in data["params"]} == set(PARAMS)
    lora = json.loads(run_cli("schema", "--json", "--group", "lora").stdout)
    assert {p["group"] for p in lora["params"]} == {"lora"}
    bad = run_cli("schema", "--group", "nope")
    assert bad.returncode == 2 and "unknown group" in bad.stderr


def test_groups_are_a_handful_of_form_panes_each_with_parameters() -> None:
    ids = [g.id for g in GROUPS]
    assert len(ids) == len(set(ids)) and 8 <= len(ids) <= 16
    for g in GROUPS:
        assert params_in_group(g.id), g.id
    assert {p.group for p in PARAMS.values()} == set(ids)


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_each_default_and_recommendation_passes_its_own_check(name: str) -> None:
    p = PARAMS[name]
    assert p.help and len(p.help.splitlines()) == 1
    assert check_value(name, p.default) is None, (name, p.default)
    if p.recommended is not UNSET:
        assert p.advice, name
        assert check_value(name, p.recommended) is None, (name, p.recommended)


def test_guide_defaults_win_where_the_guide_gives_a_table_value() -> None:
    # values straight from the guide's tables (§1-§7)
    expect = {"stage": "sft", "finetuning_type": "lora", "lora_rank": 8, "lora_alpha": None, "lora_dropout": 0.0,
              "lora_target": "all", "pref_beta": 0.1, "pref_loss": "sigmoid", "cutoff_len": 2048,
              "mix_strategy": "concat", "quantization_type": "nf4", "double_quantization": True,
              "flash_attn": "auto", "learning_rate": 5e-5, "num_train_epochs": 3.0, "max_grad_norm": 1.0,
              "warmup_steps": 0, "lr_scheduler_type": "linear", "weight_decay": 0.0,
              "ddp_timeout": 1800, "temperature": 0.95, "top_p": 0.7, "top_k": 50, "max_new_tokens": 1024,
              "n_shot": 5, "batch_size": 4, "lang": "en", "swanlab_project": "llamafactory", "swanlab_mode": "cloud"}
    assert {k: PARAMS[k].default for k in expect} == expect
    # Where the guide's table predates transformers 5, LLaMA-Factory's effective default wins
    # (tests/test_config_lf_defaults.py): the fused AdamW, and a batch of 8.
    assert PARAMS["optim"].default == "adamw_torch_fused" and PARAMS["per_device_train_batch_size"].default == 8
    assert PARAMS["lr_scheduler_type"].recommended == "cosine" and PARAMS["plot_loss"].recommended is True


def test_secrets_are_marked_and_redacted() -> None:
    assert secret_keys() >= {"hf_hub_token", "ms_hub_token", "om_hub_token", "swanlab_api_key",
                             "WANDB_API_KEY", "SWANLAB_API_KEY", "HF_TOKEN"}
    red = redact({"swanlab_api_key": "sk-1", "HF_TOKEN": "hf_x", "learning_rate": 1e-4,
                  "hf_hub_token": None, "my_service_token": "t", "deepspeed": {"api_key": "k", "stage": 3}})
    assert red["swanlab_api_key"] == "***" and red["HF_TOKEN"] == "***" and red["my_service_token"] == "***"
    assert red["learning_rate"] == 1e-4 and red["hf_hub_token"] is None
    assert red["deepspeed"] == {"api_key": "***", "stage": 3}


def test_tunedeck_keys_and_env_vars_have_their_targets() -> None:
    for k in ("swanlab_api_key", "swanlab_logdir", "swanlab_workspace", "swanlab_run_name", "deepspeed_config"):
        assert PARAMS[k].target == "tunedeck"
    for k in ("CUDA_VISIBLE_DEVICES", "MASTER_ADDR", "MASTER_PORT", "NPROC_PER_NODE", "LLAMAFACTORY_VERBOSITY",
              "WANDB_DISABLED"):
        assert PARAMS[k].target == "env" and PARAMS[k].group == "env"


def test_apply_defaults_fills_and_derives_like_llamafactory() -> None:
    v = apply_defaults({"lora_rank": 16})
    assert v["lora_alpha"] == 32 and v["learning_rate"] == 5e-5 and v["packing"] is False
    assert v["gradient_checkpointing"] is True and "CUDA_VISIBLE_DEVICES" not in v
    assert apply_defaults({"lora_rank": 16, "lora_alpha": 8})["lora_alpha"] == 8
    assert apply_defaults({"stage": "pt"})["packing"] is True
    assert apply_defaults({"stage": "pt", "packing": False})["packing"] is False
    assert apply_defaults({"neat_packing": True, "packing": False})["packing"] is True
    off = apply_defaults({"disable_gradient_checkpointing": True})
    assert off["gradient_checkpointing"] is False
    off = apply_defaults({"gradient_checkpointing": False})
    assert off["disable_gradient_checkpointing"] is True and off["gradient_checkpointing"] is False
    assert apply_defaults({"warmup_ratio": 0.1})["warmup_steps"] == 0.1
    assert apply_defaults({"warmup_ratio": 0.1, "warmup_steps": 50})["warmup_steps"] == 50


@pytest.mark.parametrize(
    ("name", "raw", "value"),
    [("learning_rate", "1e-4", 1e-4), ("plot_loss", "true", True), ("plot_loss", "off", False),
     ("lora_rank", "16", 16), ("lora_rank", "1e3", 1000), ("val_size", "0.1", 0.1), ("val_size", "500", 500),
     ("dataset", " a, b ,c ", "a,b,c"), ("lora_target", "", None), ("quantization_bit", "4", 4),
     ("deepspeed", '{"zero_optimization": {"stage": 2}}', {"zero_optimization": {"stage": 2}}),
     ("deepspeed", "ds_z3_config.json", "ds_z3_config.json"), ("template", "qwen", "qwen"),
     ("resume_from_checkpoint", "true", True), ("learning_rate", "", None)],
)
def test_coerce_reads_form_text(name: str, raw: str, value: object) -> None:
    assert coerce(name, raw) == value
    assert coerce(PARAMS[name], raw) == value


@pytest.mark.parametrize(("name", "raw"), [("learning_rate", "fast"), ("lora_rank", "1.5"), ("plot_loss", "maybe"),
                                           ("deepspeed", "{oops")])
def test_coerce_refuses_text_it_cannot_read(name: str, raw: str) -> None:
    with pytest.raises(ConfigError) as exc:
        coerce(name, raw)
    assert exc.value.key == name


def test_get_param_knows_aliases() -> None:
    assert get_param("evaluation_strategy") is PARAMS["eval_strategy"]
    assert get_param("nope") is None


def test_frozen_training_arguments_list_matches_installed_transformers_source() -> None:
    spec = importlib.util.find_spec("transformers")  # locates the package without importing it
    assert spec is not None and spec.origin
    installed = set(fields_from_source(Path(spec.origin).parent))
    assert len(installed) > 80
    gone = set(HF_TRAINING_KEYS) - installed
    # a few renames between transformers releases are tolerable; more means regenerate the list
    assert len(gone) <= 5, f"TrainingArguments changed, regenerate hf_training_keys.py: {sorted(gone)}"
    for key in ("output_dir", "learning_rate", "deepspeed", "report_to", "predict_with_generate"):
        assert key in HF_TRAINING_KEYS


@pytest.mark.parametrize("name", sorted(HARDWARE_PRESETS))
def test_hardware_presets_make_valid_configs(tmp_path: Path, name: str) -> None:
    preset = HARDWARE_PRESETS[name]
    assert preset.gpu_mem_gib > 0 and preset.num_gpus >= 1
    path = write_config(tmp_path / "c.yaml", dict(preset.values))
    findings = validate_path(path, check_files=False, cuda_available=True)
    assert [f.format() for f in findings if f.severity == "error"] == []
    assert preset.sample_config is None or (REPO / "sample_configs" / preset.sample_config).is_file()


def test_optimisation_levels_apply_as_patches_in_order(tmp_path: Path) -> None:
    assert [lv.number for lv in OPTIMIZATION_LEVELS] == [1, 2, 3, 4]
    path = write_config(tmp_path / "c.yaml", {"lora_rank": 16, "lora_alpha": 32})
    for level in OPTIMIZATION_LEVELS:
        doc = ConfigDoc.load(path)
        doc.apply(dict(level.patch))
        doc.save(force=True)
        errors = [f.format() for f in validate_path(path, check_files=True, cuda_available=True)
                  if f.severity == "error"]
        assert errors == [], (level.number, errors)
    final = ConfigDoc.load(path).values()
    assert final["quantization_bit"] == 4 and Path(final["deepspeed"]).is_file()
    assert final["pure_bf16"] is False  # ZeRO-3 (level 4) rejects pure_bf16 from level 1
    assert BASE["finetuning_type"] == final["finetuning_type"]
