"""Canonical rows -> model inputs, per stage, as LLaMA-Factory's dataset processors do it.

Every processor is a picklable callable for ``datasets.map(batched=True)`` taking a batch of
canonical rows (see :mod:`tunedeck.runner.data.converters`). Besides the model columns each output row
carries ``_n_src`` (source examples it holds) and ``_n_trunc`` (how many of them were cut to
fit ``cutoff_len``); the loader sums them into ``DataBundle.stats`` and drops them.
Pure Python: tokenizers are duck-typed.
"""

from __future__ import annotations

import bisect
import logging
from collections import defaultdict
from collections.abc import Sequence
from itertools import chain
from typing import Any

from tunedeck.runner.data.args import DataArgs
from tunedeck.runner.data.templates import Template

IGNORE_INDEX = -100
log = logging.getLogger(__name__)

Batch = dict[str, list[Any]]


def infer_seqlen(source_len: int, target_len: int, cutoff_len: int) -> tuple[int, int]:
    """LLaMA-Factory's budget split of one turn between prompt (source) and answer (target).

    A short answer (< half the budget) is kept whole and the prompt is cut; else a short
    prompt is kept and the answer gets the rest; else both shrink in proportion.
    """
    if target_len * 2 < cutoff_len:
        max_target_len = cutoff_len
    elif source_len * 2 < cutoff_len:
        max_target_len = cutoff_len - source_len
    else:
        max_target_len = int(cutoff_len * (target_len / (source_len + target_len)))
    new_target_len = min(max_target_len, target_len)
    max_source_len = max(cutoff_len - new_target_len, 0)
    new_source_len = min(max_source_len, source_len)
    return new_source_len, new_target_len


def greedy_knapsack(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Pack lengths into bins of ``capacity``: each bin repeatedly takes the largest that fits."""
    numbers = sorted(lengths)
    knapsacks: list[list[int]] = []
    while numbers:
        current: list[int] = []
        remaining = capacity
        while True:
            index = bisect.bisect(numbers, remaining) - 1
            if index < 0:
                break
            remaining -= numbers[index]
            current.append(numbers.pop(index))
        if not current:  # an item larger than capacity: callers drop those first
            raise ValueError(f"item of length {numbers[0]} does not fit capacity {capacity}")
        knapsacks.append(current)
    return knapsacks


def encode_supervised(
    template: Template,
    tokenizer: Any,
    prompt: list[dict[str, str]],
    response: list[dict[str, str]],
    system: str | None,
    tools: str | None,
    *,
    cutoff_len: int,
    train_on_prompt: bool = False,
    mask_history: bool = False,
) -> tuple[list[int], list[int], bool]:
    """``(input_ids, labels, truncated)`` for one conversation, LLaMA-Factory's way."""
    pairs = template.encode_multiturn(tokenizer, prompt + response, system or None, tools or None)
    raw_total = sum(len(s) + len(t) for s, t in pairs) + (1 if template.efficient_eos else 0)
    input_ids: list[int] = []
    labels: list[int] = []
    total_length = 1 if template.efficient_eos else 0
    if mask_history:
        pairs = pairs[::-1]  # the last turn gets the budget first
    for turn_idx, (source_ids, target_ids) in enumerate(pairs):
        if total_length >= cutoff_len:
            break
        source_len, target_len = infer_seqlen(len(source_ids), len(target_ids), cutoff_len - total_length)
        source_ids = source_ids[:source_len]
        target_ids = target_ids[:target_len]
        total_length += source_len + target_len
        if train_on_prompt:
            source_label = list(source_ids)
        elif template.efficient_eos and turn_idx != 0:
            source_label = [tokenizer.eos_token_id] + [IGNORE_INDEX] * (source_len - 1)
        else:
            source_label = [IGNORE_INDEX] * source_len
        if mask_history and turn_idx != 0:
            target_label = [IGNORE_INDEX] * target_len
        else:
            target_label = list(target_ids)
        if mask_history:
            input_ids = source_ids + target_ids + input_ids
            labels = source_label + target_label + labels
        else:
            input_ids += source_ids + target_ids
            labels += source_label + target_label
    if template.efficient_eos:
        input_ids += [tokenizer.eos_token_id]
        labels += [tokenizer.eos_token_id]
    return input_ids, labels, raw_total > cutoff_len


def _valid_supervised(prompt: list[Any], response: list[Any]) -> bool:
    return len(prompt) % 2 == 1 and len(response) == 1


class SupervisedProcessor:
    """stage sft without packing: one row per valid example."""

    def __init__(self, template: Template, tokenizer: Any, args: DataArgs) -> None:
        self.template, self.tokenizer, self.args = template, tokenizer, args

    def _encode_batch(self, batch: Batch) -> list[tuple[list[int], list[int], bool]]:
        out = []
        for i in range(len(batch["_prompt"])):
            prompt, response = batch["_prompt"][i], batch["_response"][i]
            if not _valid_supervised(prompt, response):
                continue  # counted as dropped by the loader (source count minus output count)
            out.append(
                encode_supervised(
                    self.template,
                    self.tokenizer,
                    prompt,
                    response,
                    batch["_system"][i],
                    batch["_tools"][i],
                    cutoff_len=self.args.encode_cutoff,
                    train_on_prompt=self.args.train_on_prompt,
                    mask_history=self.args.mask_history,
                )
            )
        return out

    def __call__(self, batch: Batch) -> Batch:
        model_inputs: Batch = defaultdict(list)
        for input_ids, labels, truncated in self._encode_batch(batch):
            model_inputs["input_ids"].append(input_ids)
            model_inputs["attention_mask"].append([1] * len(input_ids))
            model_inputs["labels"].append(labels)
            model_inputs["_n_src"].append(1)
            model_inputs["_n_trunc"].append(int(truncated))
            model_inputs["_n_tok"].append(len(input_ids))
        return dict(model_inputs) or _empty_output(("input_ids", "attention_mask", "labels"), tok=True)


class PackedSupervisedProcessor(SupervisedProcessor):
    """stage sft with packing: greedy-knapsack packs of ``cutoff_len`` tokens per map batch.

    Sub-sequences restart ``position_ids`` at 0. With ``neat_packing`` the attention mask holds
    the sub-sequence index (1, 2, ...; 0 for padding) so the collator can isolate them;
    otherwise it is all ones (pads included), as LLaMA-Factory does.
    """

    def __call__(self, batch: Batch) -> Batch:
        cutoff = self.args.encode_cutoff
        encoded: list[tuple[list[int], list[int], bool]] = []
        lengths: list[int] = []
        length2indexes: dict[int, list[int]] = defaultdict(list)
        for input_ids, labels, truncated in self._encode_batch(batch):
            if len(input_ids) > cutoff:
                log.warning("Dropped lengthy example with length %d > %d.", len(input_ids), cutoff)
                continue
            length2indexes[len(input_ids)].append(len(encoded))
            lengths.append(len(input_ids))
            encoded.append((input_ids, labels, truncated))

        pad_id = self.tokenizer.pad_token_id
        model_inputs: Batch = defaultdict(list)
        for knapsack in greedy_knapsack(lengths, cutoff):
            ids: list[int] = []
            mask: list[int] = []
            pos: list[int] = []
            lab: list[int] = []
            n_trunc = 0
            for i, length in enumerate(knapsack):
                input_ids, labels, truncated = encoded[length2indexes[length].pop()]
                ids += input_ids
                pos += list(range(len(input_ids)))
                lab += labels
                mask += [i + 1 if self.args.neat_packing else 1] * len(input_ids)
                n_trunc += int(truncated)
            # Always at least one pad up to the user's cutoff_len (LLaMA-Factory: keeps flash
            # attention from dropping the mask).
            pad = self.args.cutoff_len - len(ids)
            ids += [pad_id] * pad
            pos += [0] * pad
            lab += [IGNORE_INDEX] * pad
            mask += [0 if self.args.neat_packing else 1] * pad
            if len(ids) != self.args.cutoff_len:
                raise ValueError("The length of packed example should be identical to the cutoff length.")
            model_inputs["input_ids"].append(ids)
            model_inputs["attention_mask"].append(mask)
            model_inputs["position_ids"].append(pos)
            model_inputs["labels"].append(lab)
            model_inputs["_n_src"].append(len(knapsack))
            model_inputs["_n_trunc"].append(n_trunc)
            model_inputs["_n_tok"].append(sum(knapsack))
        return dict(model_inputs) or _empty_output(
            ("input_ids", "attention_mask", "position_ids", "labels"), tok=True
        )


class PretrainProcessor:
    """stage pt: text + eos; packing concatenates the batch and cuts ``cutoff_len`` blocks
    (the tail that does not fill a block is dropped); otherwise each text is truncated."""

    def __init__(self, template: Template, tokenizer: Any, args: DataArgs) -> None:
        self.template, self.tokenizer, self.args = template, tokenizer, args

    def __call__(self, batch: Batch) -> Batch:
        tok = self.tokenizer
        eos = "<|end_of_text|>" if self.args.template == "llama3" else (tok.eos_token or "")
        texts = [p[0]["content"] + eos for p in batch["_prompt"] if p and p[0].get("content")]
        add_bos = bool(getattr(tok, "add_bos_token", False)) and tok.bos_token_id is not None
        block = self.args.cutoff_len
        out: Batch = defaultdict(list)
        if not self.args.packing:
            for text in texts:
                ids = tok.encode(text, add_special_tokens=False)
                if add_bos:
                    ids = [tok.bos_token_id, *ids]
                out["input_ids"].append(ids[:block])
                out["attention_mask"].append([1] * len(ids[:block]))
                out["_n_src"].append(1)
                out["_n_trunc"].append(int(len(ids) > block))
                out["_n_tok"].append(min(len(ids), block))
        else:
            all_ids = list(chain.from_iterable(tok.encode(t, add_special_tokens=False) for t in texts))
            total = (len(all_ids) // block) * block
            for n, start in enumerate(range(0, total, block)):
                ids = all_ids[start : start + block]
                if add_bos:
                    ids[0] = tok.bos_token_id
                out["input_ids"].append(ids)
                out["attention_mask"].append([1] * block)
                out["_n_src"].append(len(texts) if n == 0 else 0)
                out["_n_trunc"].append(0)
                out["_n_tok"].append(block)
        return dict(out) or _empty_output(("input_ids", "attention_mask"), tok=True)


class _PreferenceText:
    """Prompt/answer text rendered through the template, in the string form trl tokenizes."""

    def __init__(self, template: Template, tokenizer: Any) -> None:
        self.template, self.tokenizer = template, tokenizer
        bos, bos_id = getattr(tokenizer, "bos_token", None), getattr(tokenizer, "bos_token_id", None)
        probe = tokenizer("a")["input_ids"] if callable(tokenizer) else []
        # trl tokenizes with add_special_tokens=True: if that already adds bos, drop ours.
        self.strip_bos = bos if bos and bos_id is not None and probe[:1] == [bos_id] else None
        self.eos = getattr(tokenizer, "eos_token", None) or ""

    def render(self, prompt: list[dict[str, str]], answer: dict[str, str], system: str, tools: str) -> tuple[str, str]:
        p, a = self.template.render_oneturn(
            [*prompt, answer], system or None, tools or None, tokenizer=self.tokenizer
        )
        if self.strip_bos and p.startswith(self.strip_bos):
            p = p[len(self.strip_bos) :]
        if self.eos:
            # End on exactly one eos, so trl does not append a second one.
            a = a.rstrip() if a.rstrip().endswith(self.eos) else a + self.eos
        return p, a


class PairwiseProcessor:
    """stages dpo and rm: ``prompt``/``chosen``/``rejected`` strings for trl.

    For ``rm`` also ``chosen_ids``/``rejected_ids`` (prompt + answer, LLaMA-Factory's encoding
    and ``infer_seqlen`` truncation), which trl's RewardTrainer uses as-is.
    """

    def __init__(self, template: Template, tokenizer: Any, args: DataArgs) -> None:
        self.template, self.tokenizer, self.args = template, tokenizer, args
        self.text = _PreferenceText(template, tokenizer)

    def __call__(self, batch: Batch) -> Batch:
        out: Batch = defaultdict(list)
        for i in range(len(batch["_prompt"])):
            prompt, response = batch["_prompt"][i], batch["_response"][i]
            if len(prompt) % 2 != 1 or len(response) < 2:
                continue
            system, tools = batch["_system"][i], batch["_tools"][i]
            p, chosen = self.text.render(prompt, response[0], system, tools)
            _, rejected = self.text.render(prompt, response[1], system, tools)
            out["prompt"].append(p)
            out["chosen"].append(chosen)
            out["rejected"].append(rejected)
            truncated = False
            if self.args.stage == "rm":
                prompt_ids, chosen_ids = self.template.encode_oneturn(
                    self.tokenizer, [*prompt, response[0]], system or None, tools or None
                )
                _, rejected_ids = self.template.encode_oneturn(
                    self.tokenizer, [*prompt, response[1]], system or None, tools or None
                )
                if self.template.efficient_eos:
                    chosen_ids += [self.tokenizer.eos_token_id]
                    rejected_ids += [self.tokenizer.eos_token_id]
                target = max(len(chosen_ids), len(rejected_ids))
                s_len, t_len = infer_seqlen(len(prompt_ids), target, self.args.cutoff_len)
                truncated = s_len < len(prompt_ids) or t_len < target
                out["chosen_ids"].append(prompt_ids[:s_len] + chosen_ids[:t_len])
                out["rejected_ids"].append(prompt_ids[:s_len] + rejected_ids[:t_len])
            out["_n_src"].append(1)
            out["_n_trunc"].append(int(truncated))
        cols = ("prompt", "chosen", "rejected") + (("chosen_ids", "rejected_ids") if self.args.stage == "rm" else ())
        return dict(out) or _empty_output(cols)


class KTOProcessor:
    """stage kto: ``prompt``/``completion`` strings and the boolean ``label`` from ``kto_tag``."""

    def __init__(self, template: Template, tokenizer: Any, args: DataArgs) -> None:
        self.text = _PreferenceText(template, tokenizer)

    def __call__(self, batch: Batch) -> Batch:
        out: Batch = defaultdict(list)
        for i in range(len(batch["_prompt"])):
            prompt, response, tag = batch["_prompt"][i], batch["_response"][i], batch["_kto_tag"][i]
            if len(prompt) % 2 != 1 or len(response) != 1 or tag is None:
                continue
            p, completion = self.text.render(prompt, response[0], batch["_system"][i], batch["_tools"][i])
            out["prompt"].append(p)
            out["completion"].append(completion)
            out["label"].append(bool(tag))
            out["_n_src"].append(1)
            out["_n_trunc"].append(0)
        return dict(out) or _empty_output(("prompt", "completion", "label"))


def _empty_output(cols: Sequence[str], tok: bool = False) -> Batch:
    return {c: [] for c in (*cols, "_n_src", "_n_trunc", *(("_n_tok",) if tok else ()))}


def get_processor(template: Template, tokenizer: Any, args: DataArgs) -> Any:
    if args.stage == "sft":
        cls: type = PackedSupervisedProcessor if args.packing else SupervisedProcessor
    elif args.stage == "pt":
        cls = PretrainProcessor
    elif args.stage in ("rm", "dpo"):
        cls = PairwiseProcessor
    elif args.stage == "kto":
        cls = KTOProcessor
    else:  # pragma: no cover - DataArgs rejects other stages
        raise ValueError(args.stage)
    return cls(template, tokenizer, args)
