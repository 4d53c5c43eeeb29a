"""Shared helpers for the data tests: a tiny offline byte-level BPE tokenizer and data writers."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Any

PAD, BOS, EOS = "<pad>", "<s>", "</s>"
SPECIALS = [PAD, BOS, EOS, "<|im_start|>", "<|im_end|>"]
CHATML_JINJA = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@functools.lru_cache(maxsize=1)
def _tokenizer_json() -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [
        "Human: hello there, how are you? Assistant: fine thanks. System: be nice.",
        "### Instruction:\nReverse the string.\n\n### Response:\nabc cba",
        "USER: what is one plus two ASSISTANT: three",
        "[INST] <<SYS>>\nsystem prompt\n<</SYS>>\n\nquestion [/INST] answer",
        "<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>",
        "the quick brown fox jumps over the lazy dog 0123456789",
    ] * 20
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    return tok.to_str()


def make_tokenizer(chat_template: str | None = CHATML_JINJA) -> Any:
    """A fresh ``PreTrainedTokenizerFast`` (templates may modify it, so never share one)."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_tokenizer_json()),
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        padding_side="right",
        clean_up_tokenization_spaces=False,
    )
    if chat_template:
        fast.chat_template = chat_template
    return fast


def write_json(path: Path, obj: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def alpaca_rows(n: int, prefix: str = "q") -> list[dict[str, str]]:
    return [{"instruction": f"{prefix} {i}", "input": "", "output": f"answer {i}"} for i in range(n)]


PYTHON = sys.executable
