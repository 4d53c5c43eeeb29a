"""Secrets reach the trainer from the environment, never from the frozen config."""

from __future__ import annotations

import json
import os

from tunedeck.runner.train.workflow import with_secrets


def test_secrets_from_environment_replace_placeholders_in_the_frozen_config() -> None:
    frozen = {"stage": "sft", "swanlab_api_key": "***", "hf_hub_token": "***"}
    env = {"TUNEDECK_SECRETS": json.dumps({"swanlab_api_key": "sk-real", "hf_hub_token": "hf_real"})}
    values = with_secrets(frozen, env)
    assert values["swanlab_api_key"] == "sk-real"
    assert values["hf_hub_token"] == "hf_real"
    assert values["stage"] == "sft"


def test_a_placeholder_without_a_real_value_is_dropped_not_used_as_a_key() -> None:
    values = with_secrets({"swanlab_api_key": "***", "lora_rank": 8}, {})
    assert "swanlab_api_key" not in values
    assert values["lora_rank"] == 8


def test_hub_token_goes_to_the_environment_not_to_training_arguments(monkeypatch) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    values = with_secrets({"hub_token": "***"}, {"TUNEDECK_SECRETS": json.dumps({"hub_token": "hf_x"})})
    assert "hub_token" not in values
    assert os.environ["HF_TOKEN"] == "hf_x"
