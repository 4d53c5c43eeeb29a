"""Chat templates: exact token ids and labels for every implemented template.

Expected ids are computed independently of tunedeck.runner.data: each expected slot string (written
out here from LLaMA-Factory's template definitions) is tokenized on its own and the ids are
concatenated; special slots are the tokenizer's bos/eos ids.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from data_helpers import CHATML_JINJA, make_tokenizer

from tunedeck.runner.data.args import DataArgs
from tunedeck.runner.data.processors import IGNORE_INDEX, SupervisedProcessor
from tunedeck.runner.data.templates import (
    TEMPLATE_NAMES,
    TEMPLATE_NAMES_KNOWN,
    TEMPLATES,
    get_template,
    template_status,
)
from tunedeck.runner.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
B, E = object(), object()  # bos / eos markers for the expectations below

MESSAGES = [
    {"role": "user", "content": "hi there"},
    {"role": "assistant", "content": "ok"},
    {"role": "user", "content": "bye"},
    {"role": "assistant", "content": "see you"},
]
SYSTEM = "SYS"
CHATML_SYS = "<|im_start|>system\nSYS<|im_end|>\n"
CHATML_U0 = "<|im_start|>user\nhi there<|im_end|>\n<|im_start|>assistant\n"
CHATML_U1 = "<|im_start|>user\nbye<|im_end|>\n<|im_start|>assistant\n"
THINK = "<think>\n\n</think>\n\n"
L3_SYS = "<|start_header_id|>system<|end_header_id|>\n\nSYS<|eot_id|>"


def L3U(c: str) -> str:  # noqa: N802
    return (
        f"<|start_header_id|>user<|end_header_id|>\n\n{c}<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )


# name -> [(source pieces, target pieces) per turn], from LLaMA-Factory's slot definitions.
EXPECTED: dict[str, list[tuple[list, list]]] = {
    "default": [
        (["System: SYS", E, "\n", "Human: hi there", E, "\nAssistant:"], ["ok", E, "\n"]),
        (["Human: bye", E, "\nAssistant:"], ["see you", E, "\n"]),
    ],
    "alpaca": [
        (["SYS", "### Instruction:\nhi there\n\n### Response:\n"], ["ok", E, "\n\n"]),
        (["### Instruction:\nbye\n\n### Response:\n"], ["see you", E, "\n\n"]),
    ],
    "empty": [(["SYS", "hi there"], ["ok"]), (["bye"], ["see you"])],
    "chatml": [([CHATML_SYS, CHATML_U0], ["ok<|im_end|>\n"]), ([CHATML_U1], ["see you<|im_end|>\n"])],
    "qwen": [([CHATML_SYS, CHATML_U0], ["ok<|im_end|>\n"]), ([CHATML_U1], ["see you<|im_end|>\n"])],
    "qwen3": [
        ([CHATML_SYS, CHATML_U0], [THINK, "ok<|im_end|>\n"]),
        ([CHATML_U1], [THINK, "see you<|im_end|>\n"]),
    ],
    "qwen3_nothink": [
        ([CHATML_SYS, CHATML_U0], ["ok<|im_end|>\n"]),
        ([CHATML_U1], ["see you<|im_end|>\n"]),
    ],
    "llama2": [
        ([B, "[INST] <<SYS>>\nSYS\n<</SYS>>\n\nhi there [/INST]"], ["ok", E]),
        ([B, "[INST] bye [/INST]"], ["see you", E]),
    ],
    "llama3": [
        ([B, L3_SYS, L3U("hi there")], ["ok<|eot_id|>"]),
        ([L3U("bye")], ["see you<|eot_id|>"]),
    ],
    "mistral": [
        ([B, "[INST] SYS\n\nhi there[/INST]"], [" ok", E]),
        (["[INST] bye[/INST]"], [" see you", E]),
    ],
    "vicuna": [
        (["SYS", "USER: hi there ASSISTANT:"], ["ok", E]),
        (["USER: bye ASSISTANT:"], ["see you", E]),
    ],
    "yi": [([CHATML_SYS, CHATML_U0], ["ok<|im_end|>\n"]), ([CHATML_U1], ["see you<|im_end|>\n"])],
    "gemma": [
        (
            [B, "<start_of_turn>user\nSYS\n\nhi there<end_of_turn>\n<start_of_turn>model\n"],
            ["ok<end_of_turn>\n"],
        ),
        (["<start_of_turn>user\nbye<end_of_turn>\n<start_of_turn>model\n"], ["see you<end_of_turn>\n"]),
    ],
    "zephyr": [
        (["<|system|>\nSYS", E, "<|user|>\nhi there", E, "<|assistant|>\n"], ["ok", E]),
        (["<|user|>\nbye", E, "<|assistant|>\n"], ["see you", E]),
    ],
    "phi": [
        (["<|system|>\nSYS<|end|>\n", "<|user|>\nhi there<|end|>\n<|assistant|>\n"], ["ok<|end|>\n"]),
        (["<|user|>\nbye<|end|>\n<|assistant|>\n"], ["see you<|end|>\n"]),
    ],
}


def _ids(tok, pieces: list) -> list[int]:
    out: list[int] = []
    for p in pieces:
        if p is B:
            out.append(tok.bos_token_id)
        elif p is E:
            out.append(tok.eos_token_id)
        else:
            out += tok.encode(p, add_special_tokens=False)
    return out


def test_every_required_template_is_implemented_and_has_an_expectation() -> None:
    required = {"default", "alpaca", "empty", "chatml", "qwen", "qwen3", "qwen3_nothink", "llama2",
                "llama3", "mistral", "vicuna"}
    assert required <= set(TEMPLATE_NAMES)
    assert set(EXPECTED) == set(TEMPLATE_NAMES)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_template_token_ids_and_labels_match_llamafactory_slots(name: str) -> None:
    tok = make_tokenizer()
    template = get_template(name)
    template.fix_special_tokens(tok)  # as build_datasets does (may make a stop word the eos)
    expected = EXPECTED[name]

    pairs = template.encode_multiturn(tok, MESSAGES, SYSTEM)
    assert pairs == [(_ids(tok, s), _ids(tok, t)) for s, t in expected]

    # Through the SFT processor: labels are -100 on every prompt token, ids on every answer token.
    args = DataArgs.from_values({"dataset": "x", "template": name, "cutoff_len": 1024}, "sft")
    out = SupervisedProcessor(template, tok, args)(
        {"_prompt": [MESSAGES[:3]], "_response": [MESSAGES[3:]], "_system": [SYSTEM], "_tools": [""],
         "_kto_tag": [None]}
    )
    want_ids: list[int] = []
    want_labels: list[int] = []
    for s, t in expected:
        s_ids, t_ids = _ids(tok, s), _ids(tok, t)
        want_ids += s_ids + t_ids
        want_labels += [IGNORE_INDEX] * len(s_ids) + t_ids
    assert out["input_ids"] == [want_ids]
    assert out["labels"] == [want_labels]
    assert out["attention_mask"] == [[1] * len(want_ids)]


def test_render_messages_shows_special_tokens_as_text() -> None:
    tok = make_tokenizer()
    rendered = get_template("llama2").render_messages(MESSAGES, SYSTEM, tokenizer=tok)
    assert rendered[0] == ("<s>[INST] <<SYS>>\nSYS\n<</SYS>>\n\nhi there [/INST]", "ok</s>")
    assert rendered[1] == ("<s>[INST] bye [/INST]", "see you</s>")


def test_default_system_is_used_when_the_example_has_none() -> None:
    tok = make_tokenizer()
    (src, _), _ = get_template("qwen").encode_multiturn(tok, MESSAGES)
    sys_text = "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
    assert src == _ids(tok, [sys_text, CHATML_U0])
    # default_system from the config overrides the template's own
    t = get_template("qwen").with_options(default_system="Be brief.")
    (src, _), _ = t.encode_multiturn(tok, MESSAGES)
    assert src == _ids(tok, ["<|im_start|>system\nBe brief.<|im_end|>\n", CHATML_U0])


def test_qwen3_without_thinking_puts_the_empty_thought_in_the_prompt() -> None:
    tok = make_tokenizer()
    t = get_template("qwen3").with_options(enable_thinking=False)
    pairs = t.encode_multiturn(tok, MESSAGES, SYSTEM)
    assert pairs[0] == (_ids(tok, [CHATML_SYS, CHATML_U0, THINK]), _ids(tok, ["ok<|im_end|>\n"]))
    # An answer that already thinks is kept as it is when thinking is on ...
    msgs = [MESSAGES[0], {"role": "assistant", "content": "<think>\nhmm\n</think>\n\nok"}]
    (_, tgt), = get_template("qwen3").encode_multiturn(tok, msgs)
    assert tgt == _ids(tok, ["<think>\nhmm\n</think>\n\nok<|im_end|>\n"])
    # ... and stripped (with an empty thought in the prompt) when it is off.
    (src, tgt), = t.encode_multiturn(tok, msgs)
    assert tgt == _ids(tok, ["ok<|im_end|>\n"]) and src[-len(_ids(tok, [THINK])):] == _ids(tok, [THINK])


def test_unset_template_uses_the_tokenizers_chat_template_exactly() -> None:
    tok = make_tokenizer(CHATML_JINJA)
    template = get_template(None, tok)
    msgs = [{"role": "system", "content": SYSTEM}, *MESSAGES]
    full = tok.apply_chat_template(msgs, tokenize=True)
    full_ids = full["input_ids"] if hasattr(full, "keys") else full
    pairs = template.encode_multiturn(tok, MESSAGES, SYSTEM)
    assert [i for s, t in pairs for i in s + t] == list(full_ids)
    # the answer pieces are exactly the assistant turns
    assert pairs[0][1] == tok.encode("ok<|im_end|>\n", add_special_tokens=False)
    prompt_only = tok.apply_chat_template(msgs[:2], tokenize=True, add_generation_prompt=True)
    prompt_ids = prompt_only["input_ids"] if hasattr(prompt_only, "keys") else prompt_only
    assert pairs[0][0] == list(prompt_ids)


def test_unset_template_without_a_chat_template_is_empty() -> None:
    assert get_template(None, make_tokenizer(chat_template=None)).name == "empty"
    assert get_template(None).name == "empty"


def test_template_names_known_lists_all_llamafactory_templates() -> None:
    assert len(TEMPLATE_NAMES_KNOWN) == 125 == len(set(TEMPLATE_NAMES_KNOWN))
    assert set(TEMPLATE_NAMES) <= set(TEMPLATE_NAMES_KNOWN)
    assert template_status("qwen") == "implemented"
    assert template_status("gemma3") == "known"
    assert template_status("qwen9") == "unknown"


def test_unknown_and_unimplemented_templates_raise_config_errors_with_close_names() -> None:
    with pytest.raises(ConfigError) as exc:
        get_template("qwen_3")
    assert exc.value.key == "template" and "unknown template 'qwen_3'" in str(exc.value)
    assert "qwen3" in str(exc.value)
    with pytest.raises(ConfigError) as exc:
        get_template("gemma3")
    assert "known to LLaMA-Factory but not implemented" in str(exc.value)


def test_stop_words_become_the_eos_for_replace_eos_templates() -> None:
    tok = make_tokenizer()
    added = TEMPLATES["qwen"].fix_special_tokens(tok)
    assert tok.eos_token == "<|im_end|>" and added == []  # already in the vocab
    tok = make_tokenizer()
    before = len(tok)
    added = TEMPLATES["llama3"].fix_special_tokens(tok)
    assert tok.eos_token == "<|eot_id|>" and "<|eot_id|>" in added and "<|eom_id|>" in added
    assert len(tok) == before + 2


def test_templates_dataset_info_and_demo_import_without_torch_or_datasets() -> None:
    probe = (
        "import sys, json\n"
        "import tunedeck.runner.data.templates, tunedeck.runner.data.dataset_info, tunedeck.runner.data.demo, tunedeck.runner.data.args\n"
        "import tunedeck.runner.data.converters, tunedeck.runner.data.processors\n"
        "heavy = ('torch', 'transformers', 'datasets', 'tokenizers', 'trl')\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules if m.split('.')[0] in heavy})))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
