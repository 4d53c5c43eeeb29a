"""Chat templates: LLaMA-Factory's slot strings, rendered to text or token ids.

A template is a set of *formatters*; each formatter is a list of slots. A slot is
either text (with ``{{content}}`` / ``{{idx}}`` placeholders) or a special token
(:data:`BOS`, :data:`EOS`, or :class:`Special` naming a token). Exactly like
LLaMA-Factory's ``Template._encode``, every slot of a message is tokenized *on its
own* (``add_special_tokens=False``) and the ids are concatenated, so ids never
merge across slot boundaries; special slots become the tokenizer's bos/eos id.

This module imports neither torch nor transformers: the validator reads
:data:`TEMPLATE_NAMES` and :data:`TEMPLATE_NAMES_KNOWN` on the control path.
Tokenizers are duck-typed (``encode``, ``bos_token_id``, ``apply_chat_template``...).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from tunedeck.runner.errors import ConfigError, TunedeckError

Role = Literal["user", "assistant", "system", "function", "observation"]
ROLES: tuple[str, ...] = ("user", "assistant", "system", "function", "observation")


@dataclass(frozen=True)
class Special:
    """A special-token slot: ``bos``/``eos`` resolve through the tokenizer, ``token`` by name."""

    kind: Literal["bos", "eos", "token"]
    token: str = ""


BOS = Special("bos")
EOS = Special("eos")
Slot = str | Special

FormatterKind = Literal["string", "empty", "function", "tools"]


@dataclass(frozen=True)
class Formatter:
    """One role's slots. ``function`` formats a tool call, ``tools`` the tool list."""

    slots: tuple[Slot, ...] = ()
    kind: FormatterKind = "string"
    tool_format: str = "default"

    def apply(self, content: str = "", idx: str = "0", **kw: Any) -> list[Slot]:
        if self.kind == "empty":
            return list(self.slots)
        if self.kind == "tools":
            return [format_tools(content, self.tool_format)]
        if self.kind == "function":
            content = format_function_call(
                content, self.tool_format, kw.get("thought_words"), kw.get("tool_call_words")
            )
        out: list[Slot] = []
        for slot in self.slots:
            if isinstance(slot, str):
                slot = slot.replace("{{content}}", content, 1).replace("{{idx}}", idx)
            out.append(slot)
        return out


def S(*slots: Slot) -> Formatter:  # noqa: N802 - reads like LF's StringFormatter(slots=[...])
    return Formatter(tuple(slots), "string")


def _empty(*slots: Slot) -> Formatter:
    return Formatter(tuple(slots), "empty")


def _function(*slots: Slot, tool_format: str = "default") -> Formatter:
    return Formatter(tuple(slots), "function", tool_format)


def _tools(tool_format: str = "default") -> Formatter:
    return Formatter((), "tools", tool_format)


# ---------------------------------------------------------------------------------------------
# Tool formats (LLaMA-Factory's `default` and `qwen`; others raise a clear error when used)

_DEFAULT_TOOL_PROMPT = (
    "You have access to the following tools:\n{tool_text}"
    "Use the following format if using a tool:\n"
    "```\n"
    "Action: tool name (one of [{tool_names}])\n"
    "Action Input: the input to the tool, in a JSON format representing the kwargs "
    """(e.g. ```{{"input": "hello world", "num_beams": 5}}```)\n"""
    "```\n"
)

_QWEN_TOOL_PROMPT = (
    "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>{tool_text}"
    "\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
    """<tool_call></tool_call> XML tags:\n<tool_call>\n{{"name": <function-name>, """
    """"arguments": <args-json-object>}}\n</tool_call>"""
)

IMPLEMENTED_TOOL_FORMATS = ("default", "qwen")


def _load_json(content: str | Sequence[Any], what: str) -> Any:
    if not isinstance(content, str):
        return content
    try:
        return json.loads(content)
    except json.JSONDecodeError as exc:
        raise TunedeckError(f"invalid JSON in {what}: {content[:120]!r} ({exc.msg})") from exc


def format_tools(content: str | Sequence[Any], tool_format: str) -> str:
    """The tool-list text a template appends to the system prompt."""
    tools = _load_json(content, "tools") if content else []
    if not tools:
        return ""
    if tool_format == "qwen":
        text = ""
        for tool in tools:
            wrapped = tool if tool.get("type") == "function" else {"type": "function", "function": tool}
            text += "\n" + json.dumps(wrapped, ensure_ascii=False)
        return _QWEN_TOOL_PROMPT.format(tool_text=text)
    if tool_format == "default":
        tool_text, names = "", []
        for tool in tools:
            tool = tool.get("function", "") if tool.get("type") == "function" else tool
            param_text = ""
            params = tool.get("parameters", {}) or {}
            for name, param in (params.get("properties", {}) or {}).items():
                required = ", required" if name in params.get("required", []) else ""
                enum = (
                    ", should be one of [{}]".format(", ".join(param["enum"]))
                    if param.get("enum")
                    else ""
                )
                items = (
                    ", where each item should be {}".format(param["items"].get("type", ""))
                    if param.get("items")
                    else ""
                )
                param_text += (
                    f"  - {name} ({param.get('type', '')}{required}): "
                    f"{param.get('description', '')}{enum}{items}\n"
                )
            tool_text += (
                f"> Tool Name: {tool['name']}\nTool Description: {tool.get('description', '')}\n"
                f"Tool Args:\n{param_text}\n"
            )
            names.append(tool["name"])
        return _DEFAULT_TOOL_PROMPT.format(tool_text=tool_text, tool_names=", ".join(names))
    raise TunedeckError(
        f"tool format {tool_format!r} is not implemented by tunedeck yet",
        hint=f"implemented: {', '.join(IMPLEMENTED_TOOL_FORMATS)}; or drop the tools column",
    )


def format_function_call(
    content: str,
    tool_format: str,
    thought_words: tuple[str, str] | None = None,
    tool_call_words: tuple[str, str] | None = None,
) -> str:
    """Turn a function message (JSON call or list of calls, optionally after a thought) into text."""
    thought = ""
    json_part = content
    if thought_words:
        m = re.search(f"{re.escape(thought_words[0])}(.*?){re.escape(thought_words[1])}", content, re.DOTALL)
        if m:
            thought = m.group(0)
            json_part = content.replace(thought, "")
    calls = _load_json(json_part, "function message")
    if not isinstance(calls, list):
        calls = [calls]
    try:
        pairs = [(c["name"], json.dumps(c["arguments"], ensure_ascii=False)) for c in calls]
    except (KeyError, TypeError) as exc:
        raise TunedeckError(f"function message needs name and arguments: {content[:120]!r}") from exc
    if tool_format == "qwen":
        texts = [
            json.dumps({"name": n, "arguments": json.loads(a)}, ensure_ascii=False) for n, a in pairs
        ]
        text = "\n".join(f"<tool_call>\n{t}\n</tool_call>" for t in texts)
    elif tool_format == "default":
        text = "\n".join(f"Action: {n}\nAction Input: {a}" for n, a in pairs)
    else:
        raise TunedeckError(f"tool format {tool_format!r} is not implemented by tunedeck yet")
    return thought + text


# ---------------------------------------------------------------------------------------------
# Templates

Message = Mapping[str, str]
Elements = list[Slot]


def _default_assistant(efficient_eos: bool) -> Formatter:
    return S("{{content}}") if efficient_eos else S("{{content}}", EOS)


@dataclass(frozen=True)
class Template:
    """A chat template. See the module docstring for how slots become ids.

    ``encode_multiturn`` returns one ``(source_ids, target_ids)`` pair per turn, exactly as
    LLaMA-Factory's template does; ``render_messages`` is the same thing as text, with special
    tokens written as strings (for previews).
    """

    name: str
    format_user: Formatter = S("{{content}}")
    format_assistant: Formatter = S("{{content}}", EOS)
    format_system: Formatter = S("{{content}}")
    format_function: Formatter = _function("{{content}}", EOS)
    format_observation: Formatter = S("{{content}}")
    format_tools: Formatter = _tools()
    format_prefix: Formatter = _empty()
    default_system: str = ""
    stop_words: tuple[str, ...] = ()
    thought_words: tuple[str, str] = ("<think>\n", "\n</think>\n\n")
    tool_call_words: tuple[str, str] = ("<tool_call>", "</tool_call>")
    efficient_eos: bool = False
    replace_eos: bool = False
    enable_thinking: bool | None = True

    # -- public API ----------------------------------------------------------------------------

    def with_options(
        self, *, default_system: str | None = None, enable_thinking: bool | None | object = ...
    ) -> Template:
        """A copy with LLaMA-Factory's ``default_system`` / ``enable_thinking`` overrides applied."""
        changes: dict[str, Any] = {}
        if default_system is not None:
            changes["default_system"] = default_system
        if enable_thinking is not ...:
            changes["enable_thinking"] = enable_thinking
        return dataclasses.replace(self, **changes) if changes else self

    def encode_multiturn(
        self, tokenizer: Any, messages: Sequence[Message], system: str | None = None, tools: Any = None
    ) -> list[tuple[list[int], list[int]]]:
        pairs = self.multiturn_elements(messages, system, tools, tokenizer=tokenizer)
        return [(_to_ids(tokenizer, s), _to_ids(tokenizer, t)) for s, t in pairs]

    def encode_oneturn(
        self, tokenizer: Any, messages: Sequence[Message], system: str | None = None, tools: Any = None
    ) -> tuple[list[int], list[int]]:
        """All turns but the last answer as the prompt; the last answer as the response."""
        prompt, response = self.oneturn_elements(messages, system, tools, tokenizer=tokenizer)
        return _to_ids(tokenizer, prompt), _to_ids(tokenizer, response)

    def render_messages(
        self, messages: Sequence[Message], system: str | None = None, tools: Any = None,
        *, tokenizer: Any = None,
    ) -> list[tuple[str, str]]:
        """``(prompt_text, answer_text)`` per turn; bos/eos as ``tokenizer`` spells them (``<s>``/``</s>`` without one)."""
        pairs = self.multiturn_elements(messages, system, tools, tokenizer=tokenizer)
        return [_pair_text(s, t, tokenizer) for s, t in pairs]

    def render_oneturn(
        self, messages: Sequence[Message], system: str | None = None, tools: Any = None,
        *, tokenizer: Any = None,
    ) -> tuple[str, str]:
        """Text form of :meth:`encode_oneturn`."""
        prompt, response = self.oneturn_elements(messages, system, tools, tokenizer=tokenizer)
        return _pair_text(prompt, response, tokenizer)

    def fix_special_tokens(self, tokenizer: Any) -> list[str]:
        """LLaMA-Factory's tokenizer fix-up; returns the tokens that were *added* to the vocab.

        ``replace_eos`` templates make their first stop word the eos token; a missing eos becomes
        ``<|endoftext|>``; a missing pad becomes the eos; other stop words become special tokens.
        A non-empty result means the model's embeddings must be resized.
        """
        added: list[str] = []
        stop_words = list(self.stop_words)
        if self.replace_eos:
            if not stop_words:
                raise TunedeckError(f"template {self.name!r} replaces eos but has no stop words")
            added += _set_eos(tokenizer, stop_words[0])
            stop_words = stop_words[1:]
        if tokenizer.eos_token_id is None:
            added += _set_eos(tokenizer, "<|endoftext|>")
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        if stop_words:
            vocab = tokenizer.get_vocab()
            missing = [w for w in stop_words if w not in vocab]
            try:
                tokenizer.add_special_tokens(
                    {"extra_special_tokens": stop_words}, replace_extra_special_tokens=False
                )
            except (TypeError, ValueError, KeyError):
                tokenizer.add_special_tokens({"additional_special_tokens": stop_words})
            added += missing
        return added

    # -- elements ------------------------------------------------------------------------------

    def message_elements(
        self, messages: Sequence[Message], system: str | None, tools: Any
    ) -> list[Elements]:
        """Slots for each message, LLaMA-Factory's ``Template._encode`` before tokenization."""
        system = system or self.default_system
        out: list[Elements] = []
        for i, message in enumerate(messages):
            if i > 0:
                out.append(self._role_elements(message, i))
                continue
            system_elements: Elements = []
            if system or tools:
                tool_text = self.format_tools.apply(content=tools)[0] if tools else ""
                assert isinstance(tool_text, str)
                system_elements = self.format_system.apply(content=system + tool_text)
            out.append(self.format_prefix.apply() + self._first_message(message, system_elements))
        return out

    def _first_message(self, message: Message, system: Elements) -> Elements:
        """The first message's slots after the prefix: the system slots, then the message's own."""
        return system + self._role_elements(message, 0)

    def _role_elements(self, message: Message, i: int, content: str | None = None) -> Elements:
        role = message["role"]
        text = message["content"] if content is None else content
        if role == "user":
            return self.format_user.apply(content=text, idx=str(i // 2))
        if role == "assistant":
            return self.format_assistant.apply(content=text)
        if role == "observation":
            return self.format_observation.apply(content=text)
        if role == "function":
            return self.format_function.apply(
                content=text, thought_words=self.thought_words, tool_call_words=self.tool_call_words
            )
        raise TunedeckError(f"unsupported message role {role!r} in template {self.name!r}")

    def multiturn_elements(
        self, messages: Sequence[Message], system: str | None, tools: Any, *, tokenizer: Any = None
    ) -> list[tuple[Elements, Elements]]:
        _check_pairs(messages)
        enc = self.message_elements(messages, system, tools)
        return [(enc[i], enc[i + 1]) for i in range(0, len(enc), 2)]

    def oneturn_elements(
        self, messages: Sequence[Message], system: str | None, tools: Any, *, tokenizer: Any = None
    ) -> tuple[Elements, Elements]:
        enc = self.message_elements(messages, system, tools)
        prompt: Elements = [e for m in enc[:-1] for e in m]
        return prompt, enc[-1]

    # -- helpers for preference data -------------------------------------------------------------

    def stop_token_ids(self, tokenizer: Any) -> list[int]:
        ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
        for w in self.stop_words:
            tid = tokenizer.convert_tokens_to_ids(w)
            if tid is not None and tid not in ids and tid != getattr(tokenizer, "unk_token_id", None):
                ids.append(tid)
        return ids


def _check_pairs(messages: Sequence[Message]) -> None:
    if len(messages) % 2 != 0:
        raise TunedeckError(
            f"a conversation must alternate prompt/answer and end with an answer; got {len(messages)} messages"
        )


@dataclass(frozen=True)
class Llama2Template(Template):
    """The system text is folded into the first user message (llama2, mistral, gemma)."""

    def _first_message(self, message: Message, system: Elements) -> Elements:
        system_text = system[0] if system and isinstance(system[0], str) else ""
        if message["role"] == "user":
            return self._role_elements(message, 0, content=system_text + message["content"])
        return self._role_elements(message, 0)


@dataclass(frozen=True)
class ReasoningTemplate(Template):
    """Templates with ``<think>`` blocks (qwen3): empty thoughts are added where missing.

    With ``enable_thinking`` true the empty thought is part of the answer (trained on); with it
    false (or None) it goes into the prompt, and existing thoughts are stripped.
    """

    def remove_thought(self, content: str) -> str:
        pattern = re.compile(
            f"{re.escape(self.thought_words[0])}(.*?){re.escape(self.thought_words[1])}", re.DOTALL
        )
        return re.sub(pattern, "", content).lstrip("\n")

    def empty_thought(self) -> str:
        return self.thought_words[0] + self.thought_words[1]

    def _has_thought(self, content: str) -> bool:
        return (
            self.thought_words[0].strip() in content or self.thought_words[1].strip() in content
        )

    def multiturn_elements(
        self, messages: Sequence[Message], system: str | None, tools: Any, *, tokenizer: Any = None
    ) -> list[tuple[Elements, Elements]]:
        _check_pairs(messages)
        msgs = [dict(m) for m in messages]
        if self.enable_thinking is False:
            for i in range(1, len(msgs), 2):
                msgs[i]["content"] = self.remove_thought(msgs[i]["content"])
        enc = self.message_elements(msgs, system, tools)
        for i in range(0, len(msgs), 2):
            if not self._has_thought(msgs[i + 1]["content"]):
                if not self.enable_thinking:
                    enc[i] = enc[i] + [self.empty_thought()]
                else:
                    enc[i + 1] = [self.empty_thought(), *enc[i + 1]]
        return [(enc[i], enc[i + 1]) for i in range(0, len(enc), 2)]

    def oneturn_elements(
        self, messages: Sequence[Message], system: str | None, tools: Any, *, tokenizer: Any = None
    ) -> tuple[Elements, Elements]:
        msgs = [dict(m) for m in messages]
        for i in range(1, len(msgs) - 2, 2):
            msgs[i]["content"] = self.remove_thought(msgs[i]["content"])
        if self.enable_thinking is False:
            msgs[-1]["content"] = self.remove_thought(msgs[-1]["content"])
        enc = self.message_elements(msgs, system, tools)
        prompt: Elements = [e for m in enc[:-1] for e in m]
        response: Elements = list(enc[-1])
        if not self._has_thought(msgs[-1]["content"]):
            if not self.enable_thinking:
                prompt.append(self.empty_thought())
            else:
                response = [self.empty_thought(), *response]
        return prompt, response


@dataclass(frozen=True)
class TokenizerChatTemplate(Template):
    """The tokenizer's own Jinja chat template (``template`` unset).

    Each turn's source/target text is the difference between successive renderings of the
    conversation by ``tokenizer.apply_chat_template`` (with the generation prompt after a user
    turn), so the concatenated ids equal ``apply_chat_template(..., tokenize=True)`` whenever
    the template renders earlier turns the same way in longer conversations.
    """

    tokenizer: Any = field(default=None, compare=False, repr=False)

    def _render(self, msgs: list[dict[str, Any]], gen: bool, tools: Any) -> str:
        if not msgs:
            return ""
        kwargs: dict[str, Any] = {"tokenize": False, "add_generation_prompt": gen}
        if tools:
            kwargs["tools"] = _load_json(tools, "tools")
        text = self.tokenizer.apply_chat_template(msgs, **kwargs)
        return text if isinstance(text, str) else str(text)

    def _pieces(self, messages: Sequence[Message], system: str | None, tools: Any) -> list[str]:
        if self.tokenizer is None:
            raise TunedeckError("the tokenizer chat template needs a tokenizer to render")
        system = system or self.default_system
        head: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
        msgs = [{"role": _hf_role(m["role"]), "content": m["content"]} for m in messages]
        pieces: list[str] = []
        prev = ""
        for k in range(1, len(msgs) + 1):
            gen = k % 2 == 1  # after a prompt message: open the answer
            cur = self._render(head + msgs[:k], gen, tools)
            if not cur.startswith(prev):
                raise TunedeckError(
                    "the tokenizer's chat template renders earlier turns differently in longer "
                    "conversations, so prompt and answer cannot be split per turn",
                    hint="set `template:` explicitly (e.g. qwen3 for Qwen3 models)",
                )
            pieces.append(cur[len(prev) :])
            prev = cur
        return pieces

    def multiturn_elements(
        self, messages: Sequence[Message], system: str | None, tools: Any, *, tokenizer: Any = None
    ) -> list[tuple[Elements, Elements]]:
        _check_pairs(messages)
        p = self._pieces(messages, system, tools)
        return [([p[i]], [p[i + 1]]) for i in range(0, len(p), 2)]

    def oneturn_elements(
        self, messages: Sequence[Message], system: str | None, tools: Any, *, tokenizer: Any = None
    ) -> tuple[Elements, Elements]:
        p = self._pieces(messages, system, tools)
        return ["".join(p[:-1])], [p[-1]]

    def render_messages(self, messages, system=None, tools=None, *, tokenizer=None, **kw):  # type: ignore[override]
        pairs = self.multiturn_elements(messages, system, tools)
        return [(str(s[0]), str(t[0])) for s, t in pairs]

    def fix_special_tokens(self, tokenizer: Any) -> list[str]:
        added = _set_eos(tokenizer, "<|endoftext|>") if tokenizer.eos_token_id is None else []
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        return added


def _hf_role(role: str) -> str:
    # Jinja chat templates know OpenAI's names.
    return {"observation": "tool", "function": "assistant"}.get(role, role)


def _set_eos(tokenizer: Any, eos: str) -> list[str]:
    if tokenizer.eos_token == eos:
        return []
    before = len(tokenizer)
    tokenizer.add_special_tokens({"eos_token": eos})
    return [eos] if len(tokenizer) > before else []


def _to_ids(tokenizer: Any, elements: Elements) -> list[int]:
    ids: list[int] = []
    for elem in elements:
        if isinstance(elem, str):
            if elem:
                ids += tokenizer.encode(elem, add_special_tokens=False)
        elif elem.kind == "bos":
            if tokenizer.bos_token_id is not None:
                ids.append(tokenizer.bos_token_id)
        elif elem.kind == "eos":
            if tokenizer.eos_token_id is not None:
                ids.append(tokenizer.eos_token_id)
        else:
            ids.append(tokenizer.convert_tokens_to_ids(elem.token))
    return ids


def _pair_text(prompt: Elements, answer: Elements, tokenizer: Any) -> tuple[str, str]:
    """A prompt and its answer as text, bos/eos as ``tokenizer`` spells them (``<s>``/``</s>`` without one)."""
    bos, eos = "<s>", "</s>"
    if tokenizer is not None:
        bos = getattr(tokenizer, "bos_token", None) or ""
        eos = getattr(tokenizer, "eos_token", None) or ""
    return _to_text(prompt, bos, eos), _to_text(answer, bos, eos)


def _to_text(elements: Elements, bos: str, eos: str) -> str:
    parts: list[str] = []
    for elem in elements:
        if isinstance(elem, str):
            parts.append(elem)
        elif elem.kind == "bos":
            parts.append(bos)
        elif elem.kind == "eos":
            parts.append(eos)
        else:
            parts.append(elem.token)
    return "".join(parts)


def _register(
    name: str,
    *,
    format_user: Formatter | None = None,
    format_assistant: Formatter | None = None,
    format_system: Formatter | None = None,
    format_function: Formatter | None = None,
    format_observation: Formatter | None = None,
    format_tools: Formatter | None = None,
    format_prefix: Formatter | None = None,
    default_system: str = "",
    stop_words: Sequence[str] = (),
    efficient_eos: bool = False,
    replace_eos: bool = False,
    cls: type[Template] = Template,
) -> Template:
    """LLaMA-Factory's ``register_template`` defaults, restated."""
    user = format_user or S("{{content}}")
    assistant = format_assistant or _default_assistant(efficient_eos)
    function = format_function or Formatter(assistant.slots, "function", "default")
    return cls(
        name=name,
        format_user=user,
        format_assistant=assistant,
        format_system=format_system or S("{{content}}"),
        format_function=function,
        format_observation=format_observation or format_user or S("{{content}}"),
        format_tools=format_tools or _tools("default"),
        format_prefix=format_prefix or _empty(),
        default_system=default_system,
        stop_words=tuple(stop_words),
        efficient_eos=efficient_eos,
        replace_eos=replace_eos,
    )


_CHATML_USER = "<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n"
_CHATML_ASSISTANT = "{{content}}<|im_end|>\n"
_CHATML_SYSTEM = "<|im_start|>system\n{{content}}<|im_end|>\n"
_QWEN_OBSERVATION = (
    "<|im_start|>user\n<tool_response>\n{{content}}\n</tool_response><|im_end|>\n"
    "<|im_start|>assistant\n"
)


def _qwen_like(name: str, default_system: str = "", cls: type[Template] = Template) -> Template:
    return _register(
        name,
        format_user=S(_CHATML_USER),
        format_assistant=S(_CHATML_ASSISTANT),
        format_system=S(_CHATML_SYSTEM),
        format_function=_function(_CHATML_ASSISTANT, tool_format="qwen"),
        format_observation=S(_QWEN_OBSERVATION),
        format_tools=_tools("qwen"),
        default_system=default_system,
        stop_words=["<|im_end|>"],
        replace_eos=True,
        cls=cls,
    )


_ALL: list[Template] = [
    _register(
        "default",
        format_user=S("Human: {{content}}", EOS, "\nAssistant:"),
        format_assistant=S("{{content}}", EOS, "\n"),
        format_system=S("System: {{content}}", EOS, "\n"),
    ),
    _register(
        "alpaca",
        format_user=S("### Instruction:\n{{content}}\n\n### Response:\n"),
        format_assistant=S("{{content}}", EOS, "\n\n"),
        default_system=(
            "Below is an instruction that describes a task. "
            "Write a response that appropriately completes the request.\n\n"
        ),
    ),
    _register("empty", format_assistant=S("{{content}}")),
    _register(
        "chatml",
        format_user=S(_CHATML_USER),
        format_assistant=S(_CHATML_ASSISTANT),
        format_system=S(_CHATML_SYSTEM),
        format_observation=S("<|im_start|>tool\n{{content}}<|im_end|>\n<|im_start|>assistant\n"),
        stop_words=["<|im_end|>", "<|im_start|>"],
        replace_eos=True,
    ),
    _qwen_like("qwen", "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."),
    _qwen_like("qwen3", cls=ReasoningTemplate),
    _qwen_like("qwen3_nothink"),
    _register(
        "llama2",
        format_user=S(BOS, "[INST] {{content}} [/INST]"),
        format_system=S("<<SYS>>\n{{content}}\n<</SYS>>\n\n"),
        cls=Llama2Template,
    ),
    _register(
        "llama3",
        format_user=S(
            "<|start_header_id|>user<|end_header_id|>\n\n{{content}}<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n"
        ),
        format_assistant=S("{{content}}<|eot_id|>"),
        format_system=S("<|start_header_id|>system<|end_header_id|>\n\n{{content}}<|eot_id|>"),
        format_observation=S(
            "<|start_header_id|>ipython<|end_header_id|>\n\n{{content}}<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n"
        ),
        # LLaMA-Factory uses its `llama3` tool format here; not implemented yet (clear error).
        format_function=_function("{{content}}<|eot_id|>", tool_format="llama3"),
        format_tools=_tools("llama3"),
        format_prefix=_empty(BOS),
        stop_words=["<|eot_id|>", "<|eom_id|>"],
        replace_eos=True,
    ),
    _register(
        "mistral",
        format_user=S("[INST] {{content}}[/INST]"),
        format_assistant=S(" {{content}}", EOS),
        format_system=S("{{content}}\n\n"),
        format_function=_function("[TOOL_CALLS] {{content}}", EOS, tool_format="mistral"),
        format_observation=S('[TOOL_RESULTS] {"content": {{content}}}[/TOOL_RESULTS]'),
        format_tools=_tools("mistral"),
        format_prefix=_empty(BOS),
        cls=Llama2Template,
    ),
    _register(
        "vicuna",
        format_user=S("USER: {{content}} ASSISTANT:"),
        default_system=(
            "A chat between a curious user and an artificial intelligence assistant. "
            "The assistant gives helpful, detailed and polite answers to the user's questions."
        ),
    ),
    _register(
        "yi",
        format_user=S(_CHATML_USER),
        format_assistant=S(_CHATML_ASSISTANT),
        format_system=S(_CHATML_SYSTEM),
        stop_words=["<|im_end|>"],
    ),
    _register(
        "gemma",
        format_user=S("<start_of_turn>user\n{{content}}<end_of_turn>\n<start_of_turn>model\n"),
        format_assistant=S("{{content}}<end_of_turn>\n"),
        format_system=S("{{content}}\n\n"),
        format_observation=S(
            "<start_of_turn>tool\n{{content}}<end_of_turn>\n<start_of_turn>model\n"
        ),
        format_prefix=_empty(BOS),
        stop_words=["<end_of_turn>"],
        replace_eos=True,
        cls=Llama2Template,
    ),
    _register(
        "zephyr",
        format_user=S("<|user|>\n{{content}}", EOS, "<|assistant|>\n"),
        format_system=S("<|system|>\n{{content}}", EOS),
        default_system="You are Zephyr, a helpful assistant.",
    ),
    _register(
        "phi",
        format_user=S("<|user|>\n{{content}}<|end|>\n<|assistant|>\n"),
        format_assistant=S("{{content}}<|end|>\n"),
        format_system=S("<|system|>\n{{content}}<|end|>\n"),
        stop_words=["<|end|>"],
        replace_eos=True,
    ),
]

TEMPLATES: dict[str, Template] = {t.name: t for t in _ALL}
TEMPLATE_NAMES: tuple[str, ...] = tuple(TEMPLATES)

# Every template name LLaMA-Factory registers (reference/llamafactory.md §3). Names here but not
# in TEMPLATE_NAMES are "known to LLaMA-Factory, not implemented by tunedeck yet".
TEMPLATE_NAMES_KNOWN: tuple[str, ...] = (
    "custom", "alpaca", "bailing", "bailing_v2", "breeze", "chatglm3", "chatml", "chatml_de",
    "cohere", "cpm4", "dbrx", "deepseek", "deepseek3", "deepseekr1", "hy3", "deepseekcoder",
    "default", "dots_ocr", "empty", "ernie", "ernie_nothink", "ernie_vl", "exaone", "falcon",
    "falcon_h1", "fewshot", "gemma", "gemma2", "gemma3", "gemma3n", "gemma4", "gemma4n", "glm4",
    "glm4_moe", "glm4v", "glm4_5v", "glm_ocr", "glm4_7", "glmz1", "gpt_oss", "granite3",
    "granite3_vision", "granite4", "index", "hunyuan", "hunyuan_small", "hy_dense_1_8b",
    "hy_dense_7b", "intern2", "intern_vl", "intern_s1", "keye_vl", "kimi_vl", "lfm2", "lfm2_vl",
    "llama2", "llama2_zh", "llama3", "llama4", "mllama", "moonlight", "moss_vl", "llava",
    "llava_next", "llava_next_llama3", "llava_next_mistral", "llava_next_qwen", "llava_next_yi",
    "llava_next_video", "llava_next_video_mistral", "llava_next_video_yi", "mimo", "mimo_v2",
    "mimo_vl", "minicpm_v", "minicpm_v_4_6", "minicpm_o", "minimax1", "minimax2", "ministral",
    "mistral", "mistral_small", "ministral3", "olmo", "openchat", "openchat-3.6", "opencoder",
    "paligemma", "paligemma_chat", "phi", "phi_small", "phi4", "phi4_mini", "pixtral", "qwen",
    "qwen3", "qwen3_nothink", "qwen2_audio", "qwen2_omni", "qwen3_omni", "qwen3_omni_nothink",
    "qwen2_vl", "qwen3_vl", "qwen3_vl_nothink", "qwen3_5", "qwen3_5_nothink", "qwen3_6", "sailor",
    "seed_coder", "seed_oss", "smollm", "smollm2", "solar", "starchat", "telechat2", "vicuna",
    "video_llava", "xuanyuan", "yi", "yi_vl", "youtu", "youtu_vl", "yuan", "zephyr", "aeva",
)  # fmt: skip


def template_status(name: str) -> Literal["implemented", "known", "unknown"]:
    """For the validator: implemented here, known to LLaMA-Factory only, or unknown."""
    if name in TEMPLATES:
        return "implemented"
    return "known" if name in TEMPLATE_NAMES_KNOWN else "unknown"


def close_template_names(name: str, n: int = 4) -> list[str]:
    pool = sorted(set(TEMPLATE_NAMES) | set(TEMPLATE_NAMES_KNOWN))
    return difflib.get_close_matches(name, pool, n=n, cutoff=0.5)


def get_template(name: str | None, tokenizer: Any = None) -> Template:
    """The template called ``name``; ``None`` -> the tokenizer's chat template, else ``empty``.

    Raises :class:`ConfigError` (key ``template``) for a name tunedeck does not implement,
    saying whether LLaMA-Factory knows it and listing close names.
    """
    if name is None or name == "":
        chat = getattr(tokenizer, "chat_template", None) if tokenizer is not None else None
        if isinstance(chat, str) and chat:
            return TokenizerChatTemplate(name="tokenizer", tokenizer=tokenizer, stop_words=())
        return TEMPLATES["empty"]
    if name in TEMPLATES:
        return TEMPLATES[name]
    status = template_status(name)
    close = [c for c in close_template_names(name) if c in TEMPLATES]
    hint = (
        f"close names tunedeck implements: {', '.join(close)}; " if close else ""
    ) + "leave `template` unset to use the tokenizer's own chat template"
    if status == "known":
        raise ConfigError(
            f"template {name!r} is known to LLaMA-Factory but not implemented by tunedeck yet "
            f"(implemented: {', '.join(TEMPLATE_NAMES)})",
            key="template",
            hint=hint,
        )
    raise ConfigError(f"unknown template {name!r}", key="template", hint=hint)
