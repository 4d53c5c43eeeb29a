"""One value against its schema declaration: type, choices, range (:func:`check_value`, also
the editor's per-field check).
"""

from __future__ import annotations

import difflib
import json
import math
import re
from typing import Any

from tunedeck.runner.config.hf_training_keys import HF_TRAINING_KEYS
from tunedeck.runner.config.schema import (
    Param,
    get_param,
)
from tunedeck.runner.config.yamlio import split_list

_HF_KEYS = frozenset(HF_TRAINING_KEYS)


# ----------------------------------------------------------------------------
# Single values
# ----------------------------------------------------------------------------
_NUM_RE = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def _show(v: Any) -> str:
    if isinstance(v, str):
        return repr(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, (dict, list)):
        return "a mapping" if isinstance(v, dict) else "a list"
    return str(v)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _type_problem(p: Param, value: Any) -> tuple[str, str | None] | None:
    """(message, fix) when ``value`` has the wrong shape for ``p``."""
    kinds = (p.type, *p.alt_types)
    if "bool" in kinds and isinstance(value, bool):
        return None
    t = p.type
    if p.target == "env":
        if isinstance(value, (str, int, float, bool)):
            return None
        return f"must be a single value (an environment variable), not {_show(value)}", "write it as a string"
    if t == "bool":
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no", "on", "off"):
            word = "true" if value.strip().lower() in ("true", "yes", "on") else "false"
            return f"must be true or false, not the string {value!r}", f"write {word} without quotes"
        return f"must be true or false, not {_show(value)}", None
    if t == "int" or (t == "enum" and p.choices and all(isinstance(c, int) for c in p.choices)):
        if isinstance(value, int) and not isinstance(value, bool):
            return None
        if isinstance(value, float) and value.is_integer():
            return f"must be a whole number, not {value!r}", f"write {int(value)}"
        if isinstance(value, str) and _NUM_RE.match(value.strip()):
            return f"must be a number, not the string {value!r}", "remove the quotes"
        return f"must be a whole number, not {_show(value)}", None
    if t in ("float", "number"):
        if _is_number(value):
            if isinstance(value, float) and not math.isfinite(value):
                return f"must be a finite number, not {value!r}", None
            return None
        if isinstance(value, str) and _NUM_RE.match(value.strip()):
            return f"must be a number, not the string {value!r}", "remove the quotes"
        return f"must be a number, not {_show(value)}", None
    if t in ("str", "path", "enum"):
        if isinstance(value, str):
            return None
        if t == "enum" and p.choices and _is_number(value) and str(value) in map(str, p.choices):
            return None
        if t == "str" and _is_number(value) and p.name in ("model_revision", "mode", "kt_mode"):
            return None
        return f"must be text, not {_show(value)}", (f"write {str(value)!r} in quotes" if _is_number(value) else None)
    if t == "list":
        if isinstance(value, str):
            return None
        if isinstance(value, list) and all(isinstance(x, (str, int, float)) and not isinstance(x, bool) for x in value):
            return None
        return f"must be a comma-separated string or a list of names, not {_show(value)}", None
    if t == "json":
        if isinstance(value, (dict, list)):
            return None
        if isinstance(value, str):
            s = value.strip()
            if s[:1] in "{[":
                try:
                    json.loads(s)
                except json.JSONDecodeError as exc:
                    return f"is not valid JSON ({exc.msg} at column {exc.colno})", "fix the JSON, or write it as a YAML mapping"
            return None
        return f"must be a mapping, a JSON string or a file path, not {_show(value)}", None
    return None


def _items(p: Param, value: Any) -> list[str]:
    if p.name == "fsdp" and isinstance(value, str):
        return [s for s in re.split(r"[\s,]+", value) if s]
    return split_list(value)


def _value_problem(p: Param, value: Any) -> tuple[str, str, str | None] | None:
    """(code, message, fix) for a value that is invalid for ``p``; None when fine."""
    if value is None:
        if p.accepts_null:
            return None
        return ("null", "has no value",
                f"give it a value (default {_show(p.default)}) or delete the line")
    tp = _type_problem(p, value)
    if tp is not None:
        return ("type", tp[0], tp[1])
    if isinstance(value, bool) and "bool" in p.alt_types:
        return None
    if p.target == "env":
        if p.choices and str(value) not in map(str, p.choices):
            return ("choice", f"{_show(value)} is not one of {', '.join(map(str, p.choices))}", None)
        return None
    if p.type == "list":
        if p.choices:
            bad = [x for x in _items(p, value) if x not in p.choices]
            if bad:
                close = difflib.get_close_matches(bad[0], [str(c) for c in p.choices], n=1)
                return ("choice", f"{bad[0]!r} is not one of {', '.join(map(str, p.choices))}",
                        f"did you mean {close[0]!r}?" if close else None)
        if not _items(p, value) and p.name not in ("report_to", "fsdp"):
            return ("null", "is an empty list", "name at least one item or delete the line")
        return None
    if (p.choices and p.type in ("enum", "int") and value not in p.choices
            and not (p.type == "enum" and str(value) in map(str, p.choices))):
        choices = [str(c) for c in p.choices]
        fix = None
        if isinstance(value, str):
            lower = {c.lower(): c for c in choices}
            if value.lower() in lower:
                fix = f"write {lower[value.lower()]!r} (choices are case-sensitive)"
            else:
                close = difflib.get_close_matches(value, choices, n=1)
                fix = f"did you mean {close[0]!r}?" if close else None
        allowed = ", ".join(choices[:12]) + (", ..." if len(choices) > 12 else "")
        return ("choice", f"{_show(value)} is not one of {allowed}", fix)
    if _is_number(value) and (p.min is not None or p.max is not None):
        lo_bad = p.min is not None and (value <= p.min if p.min_exclusive else value < p.min)
        hi_bad = p.max is not None and (value >= p.max if p.max_exclusive else value > p.max)
        if lo_bad or hi_bad:
            return ("range", f"{_show(value)} is out of range (allowed: {p.allowed})", None)
    return None


def check_value(name: str, value: Any) -> str | None:
    """One field's type/range/choice problem as a sentence, or None (for form panes)."""
    p = get_param(name)
    if p is None:
        if name in _HF_KEYS:
            return None
        return f"{name} is not a parameter tunedeck knows"
    prob = _value_problem(p, value)
    if prob is None:
        return None
    msg = f"{p.name} {prob[1]}"
    return msg + (f" ({prob[2]})" if prob[2] else "")
