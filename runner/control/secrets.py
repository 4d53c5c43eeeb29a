"""Keeping API keys and tokens out of everything a run writes or prints.

Config secrets (``swanlab_api_key``, ``hf_hub_token``...) are declared in the
parameter schema (``Param.secret``); environment secrets are recognised by name.
The frozen ``config.yaml`` holds a placeholder instead of a secret, and the real
values reach the trainer through its environment (:data:`SECRETS_ENV`), which is
never written to disk.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

REDACTED = "***"
# JSON {config key: value} handed to the trainer for the secrets the frozen config lacks.
SECRETS_ENV = "TUNEDECK_SECRETS"

_SECRET_ENV_EXACT = frozenset(
    {"SWANLAB_API_KEY", "WANDB_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", SECRETS_ENV}
)
_SECRET_ENV_PATTERN = re.compile(r"(_API_KEY|_TOKEN|_SECRET|_PASSWORD|APIKEY)$", re.IGNORECASE)


def is_secret_env(name: str) -> bool:
    return name in _SECRET_ENV_EXACT or bool(_SECRET_ENV_PATTERN.search(name))


def redact_env(env: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``env`` with every secret-looking variable's value replaced."""
    return {k: (REDACTED if is_secret_env(k) and v else v) for k, v in env.items()}


def is_secret_key(key: str) -> bool:
    """A config key that holds a secret (the schema's declaration, or its name)."""
    # The schema only when asked: the supervisor redacts messages with the helpers
    # below and never pays for importing the parameter table.
    from tunedeck.runner.config.schema import is_secret_key as schema_is_secret_key

    return schema_is_secret_key(key)


def split_secrets(values: Mapping[str, Any]) -> dict[str, Any]:
    """The ``{key: value}`` of secret config keys that hold a real (non-placeholder) value."""
    return {
        k: v
        for k, v in values.items()
        if is_secret_key(k) and v not in (None, "", REDACTED)
    }


def redact_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a config mapping with secret values replaced by :data:`REDACTED`."""
    from tunedeck.runner.config.schema import redact as schema_redact

    return schema_redact(values)


# Config secrets the libraries also read from the environment under these names.
NATIVE_ENV = {
    "swanlab_api_key": "SWANLAB_API_KEY",
    "hf_hub_token": "HF_TOKEN",
    "ms_hub_token": "MODELSCOPE_API_TOKEN",
}


def secrets_env(secrets: Mapping[str, Any]) -> dict[str, str]:
    """The environment that carries ``secrets`` to the trainer (empty when there are none):
    all of them as JSON in :data:`SECRETS_ENV`, and each under its library's own
    variable where there is one (``swanlab_api_key`` -> ``SWANLAB_API_KEY``...)."""
    if not secrets:
        return {}
    env = {SECRETS_ENV: json.dumps(dict(secrets))}
    for k, v in secrets.items():
        name = NATIVE_ENV.get(k) or (k if k.isupper() else None)
        if name:
            env[name] = str(v)
    return env


def redact_text(text: str, secrets: Mapping[str, Any]) -> str:
    """Replace any literal secret value appearing in ``text`` (e.g. a log line)."""
    for v in secrets.values():
        s = str(v)
        if len(s) >= 4:
            text = text.replace(s, REDACTED)
    return text
