"""A tiny LLaMA-architecture model built entirely offline, deterministically from a seed.

Used by ``tunedeck make-tiny-model``, ``tunedeck demo``, the test fixtures and the
benchmarks. Nothing is downloaded: the byte-level BPE tokenizer is trained on
synthetic text generated here, and the weights are randomly initialised.

The tokenizer splits digits one by one (so arithmetic, sorting and reversal are
learnable at this size) and carries a ChatML-style Jinja chat template with
``<|im_start|>`` / ``<|im_end|>`` special tokens; ``<|im_end|>`` is the eos token.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from tunedeck.runner.fsutil import atomic_write_json, ensure_dir

PAD_TOKEN = "<pad>"
BOS_TOKEN = "<s>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS = (PAD_TOKEN, BOS_TOKEN, IM_START, IM_END)
EOS_TOKEN = IM_END

# ChatML. A system message is optional; `add_generation_prompt` opens the assistant turn.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Written next to the weights so callers (the demo) can tell what was built and with what.
BUILD_INFO = "tunedeck_tiny.json"

_WORDS = ["the", "a", "an", "of", "to", "in", "and", "is", "are", "was", "for", "on", "with", "as", "by", "at", "from", "this", "that", "it", "be", "or", "reverse", "sort", "add", "subtract", "multiply", "count", "copy", "repeat", "answer", "question", "input", "output", "string", "list", "number", "numbers", "letters", "word", "words", "sum", "result", "following", "please", "give", "what", "how", "many", "characters", "digits", "order", "ascending", "descending", "upper", "lower", "case", "user", "assistant", "system", "you", "are", "helpful", "model", "text", "data", "train", "step", "loss", "value"]


@dataclass(frozen=True)
class TinySpec:
    """What a tiny model is made of; stored as ``tunedeck_tiny.json`` beside the weights."""

    seed: int = 0
    hidden: int = 128
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    intermediate: int = 256
    vocab_size: int = 512
    max_positions: int = 1024
    head_std: float = 0.08


def _synthetic_corpus(seed: int, n: int = 3000) -> list[str]:
    """Deterministic text that looks like instruction data: words, digits, chat scaffolding.

    Random letter strings are left out on purpose, so BPE merges form around words and
    the template and an arbitrary short string stays (mostly) one token per letter,
    which keeps copying, reversing and sorting learnable for a tiny model.
    """
    rng = random.Random(seed)
    out: list[str] = []
    for i in range(n):
        kind = i % 4
        if kind == 0:
            out.append(" ".join(rng.choice(_WORDS) for _ in range(rng.randint(4, 14))) + ".")
        elif kind == 1:
            nums = [rng.randint(0, 99) for _ in range(rng.randint(2, 7))]
            out.append(f"Sort the numbers: {', '.join(map(str, nums))}\n{', '.join(map(str, sorted(nums)))}")
        elif kind == 2:
            a, b = rng.randint(0, 999), rng.randint(0, 999)
            out.append(f"What is {a} + {b}? {a + b}. {a} - {b} = {a - b}; ({a} * 3) = [{a * 3}] #{i}")
        else:
            # Chat turns, so role names and the template's scaffolding become single tokens.
            q = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 8)))
            out.append(f"{IM_START}system\nYou are a helpful assistant.{IM_END}\n"
                       f"{IM_START}user\n{q.capitalize()}?{IM_END}\n{IM_START}assistant\n{q}.{IM_END}\n"
                       f"Human: {q}\nAssistant: {q}")
    return out


def build_tokenizer(seed: int = 0, vocab_size: int = 512):
    """Train a byte-level BPE tokenizer on synthetic text; returns a ``PreTrainedTokenizerFast``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    # Digits one at a time (as LLaMA does), then GPT-2 style byte-level splitting.
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        show_progress=False,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        max_token_length=10,
    )
    tok.train_from_iterator(_synthetic_corpus(seed), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        model_max_length=1024,
        padding_side="right",
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_model(
    out_dir: str | Path,
    seed: int = 0,
    hidden: int = 128,
    layers: int = 2,
    *,
    heads: int = 4,
    kv_heads: int = 2,
    intermediate: int | None = None,
    vocab_size: int = 512,
    max_positions: int = 1024,
    head_std: float = 0.08,
) -> Path:
    """Write a tiny LLaMA model + tokenizer to ``out_dir`` and return the directory.

    Deterministic: the same arguments give byte-identical ``model.safetensors`` and
    ``tokenizer.json``. Takes a couple of seconds on one CPU core.
    """
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    spec = TinySpec(
        seed=seed,
        hidden=hidden,
        layers=layers,
        heads=heads,
        kv_heads=kv_heads,
        intermediate=intermediate or 2 * hidden,
        vocab_size=vocab_size,
        max_positions=max_positions,
        head_std=head_std,
    )
    out = ensure_dir(out_dir)
    tokenizer = build_tokenizer(seed=seed, vocab_size=vocab_size)
    tokenizer.model_max_length = max_positions
    tokenizer.save_pretrained(str(out))

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden,
        intermediate_size=spec.intermediate,
        num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads,
        num_key_value_heads=spec.kv_heads,
        max_position_embeddings=spec.max_positions,
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        rms_norm_eps=1e-6,
        initializer_range=0.02,
        use_cache=True,
    )
    # Seed a private generator state so building never disturbs the caller's RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
        # A pretrained output head produces confident logits; one drawn with the usual
        # std 0.02 caps them near +-2.5 after the final RMSNorm, so a LoRA on the frozen
        # random body could never fit the data. A wider head gives LoRA room to learn.
        with torch.no_grad():
            model.lm_head.weight.normal_(0.0, spec.head_std)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        max_new_tokens=64,
        do_sample=False,
    )
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # "Writing model shards" is noise for a 2 MB file
    try:
        model.save_pretrained(str(out))
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    info = asdict(spec) | {"params": sum(p.numel() for p in model.parameters())}
    atomic_write_json(out / BUILD_INFO, info)
    return out


def is_tiny_model_dir(path: str | Path) -> bool:
    """True when ``path`` holds a complete tiny model written by :func:`build_tiny_model`."""
    p = Path(path)
    needed = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", BUILD_INFO)
    return all((p / name).is_file() for name in needed)


def read_build_info(path: str | Path) -> dict | None:
    try:
        return json.loads((Path(path) / BUILD_INFO).read_text())
    except (OSError, ValueError):
        return None


def main(argv: list[str] | None = None) -> int:
    """``python -m tunedeck.runner.train.tiny DIR [--seed N] ...``: build in a separate process
    (the demo uses this so the CLI process never imports torch)."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m tunedeck.runner.train.tiny")
    p.add_argument("dir")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--hidden", type=int, default=TinySpec.hidden)
    p.add_argument("--layers", type=int, default=TinySpec.layers)
    a = p.parse_args(argv)
    out = build_tiny_model(a.dir, seed=a.seed, hidden=a.hidden, layers=a.layers)
    print(json.dumps(read_build_info(out)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
