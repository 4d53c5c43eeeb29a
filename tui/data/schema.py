"""The parameter schema (the one table of every config key) and per-value checks."""

from __future__ import annotations

from typing import Any

from tunedeck.runner.config.schema import (
    GROUPS,
    PARAMS,
    Group,
    Param,
    alias_target,
    coerce,
    params_in_group,
)

__all__ = ["GROUPS", "PARAMS", "Group", "Param", "alias_target", "check_value", "coerce", "params_in_group",
           "secret_keys"]


def check_value(name: str, value: Any) -> str | None:
    """What is wrong with one value of one key (None: nothing)."""
    from tunedeck.runner.config import validate

    try:
        return validate.check_value(name, value)
    except Exception as exc:  # noqa: BLE001 - a checker bug must not eat the keypress
        return str(exc)


def secret_keys() -> set[str]:
    return {n for n, p in PARAMS.items() if p.secret}
