"""The run's template for other tools: a Jinja ``chat_template`` for ``tokenizer_config.json``
(plain transformers, vLLM, TGI) and an Ollama ``Modelfile``, both generated from the same slots
that formatted the training data (:mod:`tunedeck.runner.data.templates`).

A conversation rendered by the Jinja template with ``add_generation_prompt=True`` is the text of
:meth:`Template.render_oneturn`'s prompt (a test pins it). No torch here.
"""

from __future__ import annotations

import json
from typing import Any

from tunedeck.runner.data.templates import (
    Formatter,
    Llama2Template,
    Special,
    Template,
    TokenizerChatTemplate,
)
from tunedeck.runner.errors import TunedeckError


def _q(text: str) -> str:
    """A Jinja string literal (Jinja unescapes backslash sequences like Python)."""
    return json.dumps(text)


def _jinja_slots(fmt: Formatter, content: str) -> str:
    """``{{ ... }}`` output expression for a formatter's slots, ``content`` a Jinja expression."""
    parts: list[str] = []
    for slot in fmt.slots:
        if isinstance(slot, Special):
            parts.append({"bos": "bos_token", "eos": "eos_token"}.get(slot.kind, _q(slot.token)))
            continue
        pieces = slot.split("{{content}}")
        for i, piece in enumerate(pieces):
            if i:
                parts.append(content)
            if piece:
                sub = piece.split("{{idx}}")
                for j, s in enumerate(sub):
                    if j:
                        parts.append("((loop.index0 // 2) | string)")
                    if s:
                        parts.append(_q(s))
    return "{{ " + " + ".join(parts) + " }}" if parts else ""


def _check_plain(template: Template) -> None:
    for fmt in (template.format_user, template.format_assistant, template.format_system, template.format_prefix):
        if fmt.kind not in ("string", "empty"):
            raise TunedeckError(f"template {template.name!r}: cannot write a chat template for {fmt.kind} slots")


def jinja_chat_template(template: Template, tokenizer: Any = None) -> str:
    """A Jinja chat template that renders conversations as ``template`` formats them.

    ``TokenizerChatTemplate`` (``template`` unset in the config) keeps the tokenizer's own.
    """
    if isinstance(template, TokenizerChatTemplate):
        own = getattr(tokenizer, "chat_template", None) or getattr(template.tokenizer, "chat_template", None)
        if not isinstance(own, str):
            raise TunedeckError("the tokenizer has no chat template of its own to keep")
        return own
    _check_plain(template)
    folded = isinstance(template, Llama2Template)
    j = ""
    if template.default_system:
        j += "{% set system_message = " + _q(template.default_system) + " %}"
    j += ("{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
          "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% endif %}")
    j += _jinja_slots(template.format_prefix, "''")
    if folded:
        first = template.format_system.slots[0] if template.format_system.slots else "{{content}}"
        sys_text = first if isinstance(first, str) else "{{content}}"
        before, _, after = sys_text.partition("{{content}}")
        j += ("{% if system_message is defined and system_message %}{% set system_text = "
              + _q(before) + " + system_message + " + _q(after)
              + " %}{% else %}{% set system_text = '' %}{% endif %}")
    else:
        j += ("{% if system_message is defined and system_message %}"
              + _jinja_slots(template.format_system, "system_message") + "{% endif %}")
    j += "{% for message in loop_messages %}{% set content = message['content'] %}"
    if folded:
        j += "{% if loop.index0 == 0 %}{% set content = system_text + content %}{% endif %}"
    j += "{% if message['role'] == 'user' %}" + _jinja_slots(template.format_user, "content")
    j += "{% elif message['role'] == 'assistant' %}" + _jinja_slots(template.format_assistant, "content")
    j += "{% endif %}{% endfor %}"
    return j


def _go_slots(fmt: Formatter, content: str, bos: str, eos: str) -> str:
    out = ""
    for slot in fmt.slots:
        if isinstance(slot, Special):
            out += {"bos": bos, "eos": eos}.get(slot.kind, slot.token)
        else:
            out += slot.replace("{{content}}", content).replace("{{idx}}", "")
    return out


def ollama_modelfile(template: Template, tokenizer: Any, stop_ids: list[int], *,
                     generation: dict[str, Any] | None = None, num_ctx: int = 4096) -> str:
    """An Ollama ``Modelfile`` (``FROM .``) with the template, the default system prompt, the
    stop tokens and the run's decoding settings (``ollama create NAME -f Modelfile``)."""
    bos = getattr(tokenizer, "bos_token", None) or ""
    eos = getattr(tokenizer, "eos_token", None) or ""
    if isinstance(template, TokenizerChatTemplate):
        body = ('{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}{{ range .Messages }}'
                '<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n')
        note = "# the tokenizer's own Jinja chat template has no Ollama equivalent: ChatML is assumed; check it\n"
    else:
        _check_plain(template)
        note = ""
        system = _go_slots(template.format_system, "{{ .System }}", bos, eos)
        user = _go_slots(template.format_user, "{{ .Content }}", bos, eos)
        if isinstance(template, Llama2Template):
            user = _go_slots(template.format_user, "{{ if and $.System (eq $i 0) }}" + system.replace(
                "{{ .System }}", "{{ $.System }}") + "{{ end }}{{ .Content }}", bos, eos)
            system = ""
        body = (_go_slots(template.format_prefix, "", bos, eos)
                + ("{{ if .System }}" + system + "{{ end }}" if system else "")
                + "{{ range $i, $m := .Messages }}{{ with $m }}{{ if eq .Role \"user\" }}" + user
                + "{{ else if eq .Role \"assistant\" }}"
                + _go_slots(template.format_assistant, "{{ .Content }}", bos, eos)
                + "{{ end }}{{ end }}{{ end }}")
    lines = ["# Ollama Modelfile written by tunedeck export: ollama create NAME -f Modelfile", note + "FROM .", "",
             f'TEMPLATE """{body}"""', ""]
    if template.default_system:
        lines += [f'SYSTEM """{template.default_system}"""', ""]
    for tid in stop_ids:
        tok = tokenizer.convert_ids_to_tokens(tid)
        if tok:
            lines.append(f"PARAMETER stop {json.dumps(tok)}")
    gen = generation or {}
    for key in ("temperature", "top_p", "top_k", "repetition_penalty"):
        if key in gen and gen.get("do_sample", True):
            name = "repeat_penalty" if key == "repetition_penalty" else key
            lines.append(f"PARAMETER {name} {gen[key]}")
    lines.append(f"PARAMETER num_ctx {num_ctx}")
    return "\n".join(lines) + "\n"
