"""Dataset formats (alpaca, sharegpt, openai) -> one canonical row, as LLaMA-Factory aligns them.

A canonical row has ``_prompt`` (messages ending with a user/observation turn), ``_response``
(one answer; two for ranking data: chosen then rejected; empty for plain text), ``_system``,
``_tools`` (JSON text) and ``_kto_tag`` (bool or None). A row that cannot be read is returned
with empty ``_prompt``/``_response`` and dropped later with a count, as LLaMA-Factory does.
Pure Python: no heavy imports.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping
from typing import Any

from tunedeck.runner.data.dataset_info import DatasetAttr

Row = dict[str, Any]


def _empty(system: str = "", tools: str = "") -> Row:
    return {"_prompt": [], "_response": [], "_system": system, "_tools": tools, "_kto_tag": None}


def _text(v: Any) -> str:
    if v is None:
        return ""
    return v if isinstance(v, str) else str(v)


def _tools_text(v: Any) -> str:
    if v is None or v == "":
        return ""
    return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)


def _kto(example: Mapping[str, Any], attr: DatasetAttr) -> bool | None:
    col = attr.column("kto_tag")
    if not col:
        return None
    v = example.get(col)
    return v if isinstance(v, bool) else None


def convert_alpaca(example: Mapping[str, Any], attr: DatasetAttr) -> Row:
    prompt: list[dict[str, str]] = []
    hist_col = attr.column("history")
    history = example.get(hist_col) if hist_col else None
    if isinstance(history, list):
        for turn in history:
            if isinstance(turn, (list, tuple)) and len(turn) == 2:
                prompt.append({"role": "user", "content": _text(turn[0])})
                prompt.append({"role": "assistant", "content": _text(turn[1])})
    query = []
    pcol, qcol = attr.column("prompt"), attr.column("query")
    if pcol and pcol not in example and "text" in example and attr.columns.get("prompt") == "instruction":
        pcol = "text"  # plain-text files (`txt`, {"text": ...}) without a `columns` mapping
    if pcol and example.get(pcol):
        query.append(_text(example[pcol]))
    if qcol and example.get(qcol):
        query.append(_text(example[qcol]))
    prompt.append({"role": "user", "content": "\n".join(query)})

    kto = _kto(example, attr)
    ccol, rcol, respcol = attr.column("chosen"), attr.column("rejected"), attr.column("response")
    if attr.ranking and ccol and rcol and isinstance(example.get(ccol), str) and isinstance(example.get(rcol), str):
        response = [
            {"role": "assistant", "content": example[ccol]},
            {"role": "assistant", "content": example[rcol]},
        ]
    elif respcol and isinstance(example.get(respcol), str):
        response = [{"role": "assistant", "content": example[respcol]}]
    else:
        response = []
    scol, tcol = attr.column("system"), attr.column("tools")
    return {
        "_prompt": prompt,
        "_response": response,
        "_system": _text(example.get(scol)) if scol else "",
        "_tools": _tools_text(example.get(tcol)) if tcol else "",
        "_kto_tag": kto,
    }


def convert_sharegpt(example: Mapping[str, Any], attr: DatasetAttr) -> Row:
    """ShareGPT and OpenAI messages: user/observation at odd positions, answers at even ones."""
    t = attr.tags
    role_tag, content_tag = t["role_tag"] or "from", t["content_tag"] or "value"
    tag_mapping = {
        t["user_tag"]: "user",
        t["assistant_tag"]: "assistant",
        t["observation_tag"]: "observation",
        t["function_tag"]: "function",
        t["system_tag"]: "system",
    }
    odd_tags = (t["user_tag"], t["observation_tag"])
    even_tags = (t["assistant_tag"], t["function_tag"])
    scol, tcol = attr.column("system"), attr.column("tools")
    tools = _tools_text(example.get(tcol)) if tcol else ""
    mcol = attr.column("messages") or "conversations"
    messages = example.get(mcol)
    if not isinstance(messages, list):
        return _empty(tools=tools)
    messages = [_openai_message(m, attr) if attr.formatting == "openai" else m for m in messages]
    if not all(isinstance(m, Mapping) for m in messages):
        return _empty(tools=tools)

    if t["system_tag"] and messages and messages[0].get(role_tag) == t["system_tag"]:
        system = _text(messages[0].get(content_tag))
        messages = messages[1:]
    else:
        system = _text(example.get(scol)) if scol else ""

    aligned: list[dict[str, str]] = []
    for turn_idx, message in enumerate(messages):
        accept = odd_tags if turn_idx % 2 == 0 else even_tags
        if message.get(role_tag) not in accept:
            return _empty(system, tools)
        aligned.append({"role": tag_mapping[message[role_tag]], "content": _text(message.get(content_tag))})

    if (not attr.ranking and len(aligned) % 2 != 0) or (attr.ranking and len(aligned) % 2 == 0):
        return _empty(system, tools)

    kto = _kto(example, attr)
    ccol, rcol = attr.column("chosen"), attr.column("rejected")
    if attr.ranking:
        chosen, rejected = example.get(ccol or "chosen"), example.get(rcol or "rejected")
        if attr.formatting == "openai":
            chosen = _openai_message(chosen, attr) if isinstance(chosen, Mapping) else chosen
            rejected = _openai_message(rejected, attr) if isinstance(rejected, Mapping) else rejected
        if not (isinstance(chosen, Mapping) and isinstance(rejected, Mapping)):
            return _empty(system, tools)
        if chosen.get(role_tag) not in even_tags or rejected.get(role_tag) not in even_tags:
            return _empty(system, tools)
        prompt = aligned
        response = [
            {"role": tag_mapping[chosen[role_tag]], "content": _text(chosen.get(content_tag))},
            {"role": tag_mapping[rejected[role_tag]], "content": _text(rejected.get(content_tag))},
        ]
    else:
        prompt, response = aligned[:-1], aligned[-1:]
    return {"_prompt": prompt, "_response": response, "_system": system, "_tools": tools, "_kto_tag": kto}


def _openai_message(m: Any, attr: DatasetAttr) -> Any:
    """An assistant message with ``tool_calls`` becomes a function-call message (JSON content)."""
    if not isinstance(m, Mapping):
        return m
    role_tag, content_tag = attr.tags["role_tag"] or "role", attr.tags["content_tag"] or "content"
    calls = m.get("tool_calls")
    if m.get(role_tag) == (attr.tags["assistant_tag"] or "assistant") and calls:
        out = []
        for call in calls:
            fn = call.get("function", call) if isinstance(call, Mapping) else {}
            args = fn.get("arguments", {})
            if isinstance(args, str):
                with contextlib.suppress(json.JSONDecodeError):
                    args = json.loads(args)
            out.append({"name": fn.get("name", ""), "arguments": args})
        return {role_tag: attr.tags["function_tag"] or "function", content_tag: json.dumps(out, ensure_ascii=False)}
    return m


def get_converter(attr: DatasetAttr) -> Callable[[Mapping[str, Any]], Row]:
    """A one-example function for ``datasets.map`` (a picklable closure over ``attr``)."""
    fn = convert_alpaca if attr.formatting == "alpaca" else convert_sharegpt
    return _Bound(fn, attr)


class _Bound:
    def __init__(self, fn: Callable[[Mapping[str, Any], DatasetAttr], Row], attr: DatasetAttr) -> None:
        self.fn, self.attr = fn, attr

    def __call__(self, example: Mapping[str, Any]) -> Row:
        return self.fn(example, self.attr)
