"""Preprocessing: budget split, label masking, packing, neat-packing isolation, collators."""

from __future__ import annotations

import pytest
import torch
from data_helpers import make_tokenizer

from tunedeck.runner.data.args import DataArgs
from tunedeck.runner.data.collators import PTCollator, SFTCollator, prepare_4d_attention_mask
from tunedeck.runner.data.processors import (
    IGNORE_INDEX,
    KTOProcessor,
    PackedSupervisedProcessor,
    PairwiseProcessor,
    PretrainProcessor,
    encode_supervised,
    greedy_knapsack,
    infer_seqlen,
)
from tunedeck.runner.data.templates import get_template
from tunedeck.runner.errors import ConfigError


def _args(stage: str = "sft", **kw) -> DataArgs:
    return DataArgs.from_values({"dataset": "x", **kw}, stage)


def _conv(*turns: tuple[str, str]) -> tuple[list[dict], list[dict]]:
    msgs = []
    for q, a in turns:
        msgs += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    return msgs[:-1], msgs[-1:]


def _batch(convs: list[tuple[list[dict], list[dict]]], system: str = "") -> dict:
    return {
        "_prompt": [p for p, _ in convs],
        "_response": [r for _, r in convs],
        "_system": [system] * len(convs),
        "_tools": [""] * len(convs),
        "_kto_tag": [None] * len(convs),
    }


# LLaMA-Factory's own table for infer_seqlen (tests/data/test_formatter... processor_utils).
@pytest.mark.parametrize(
    ("lens", "expected"),
    [
        ((3000, 2000, 1000), (600, 400)),   # both long: proportional
        ((2000, 3000, 1000), (400, 600)),
        ((1000, 100, 1000), (900, 100)),    # short answer kept, prompt cut
        ((100, 1000, 1000), (100, 900)),    # short prompt kept, answer gets the rest
        ((100, 500, 1000), (100, 500)),     # fits
        ((500, 100, 1000), (500, 100)),
        ((10, 10, 1000), (10, 10)),
    ],
)
def test_infer_seqlen_budget_split(lens: tuple[int, int, int], expected: tuple[int, int]) -> None:
    assert infer_seqlen(*lens) == expected


def test_multiturn_budget_is_consumed_turn_by_turn_and_truncation_is_reported() -> None:
    tok = make_tokenizer()
    t = get_template("empty")
    prompt, response = _conv(("a " * 30, "b " * 30), ("c " * 30, "d " * 30))
    pairs = t.encode_multiturn(tok, prompt + response)
    (s0, t0), (s1, t1) = [(len(s), len(t)) for s, t in pairs]
    cutoff = s0 + t0 + 10  # the second turn only has 10 tokens of budget left
    ids, labels, truncated = encode_supervised(t, tok, prompt, response, None, None, cutoff_len=cutoff)
    assert truncated and len(ids) == cutoff
    s1_new, t1_new = infer_seqlen(s1, t1, 10)
    assert ids == pairs[0][0] + pairs[0][1] + pairs[1][0][:s1_new] + pairs[1][1][:t1_new]
    ids, _, truncated = encode_supervised(t, tok, prompt, response, None, None, cutoff_len=10_000)
    assert not truncated and len(ids) == s0 + t0 + s1 + t1


def test_labels_mask_prompts_and_train_on_prompt_unmasks_them() -> None:
    tok = make_tokenizer()
    t = get_template("default")
    prompt, response = _conv(("one", "two"), ("three", "four"))
    pairs = t.encode_multiturn(tok, prompt + response)
    ids, labels, _ = encode_supervised(t, tok, prompt, response, None, None, cutoff_len=512)
    want = []
    for s, a in pairs:
        want += [IGNORE_INDEX] * len(s) + a
    assert labels == want  # every answer turn is trained on
    ids2, labels2, _ = encode_supervised(t, tok, prompt, response, None, None, cutoff_len=512,
                                         train_on_prompt=True)
    assert ids2 == ids and labels2 == ids


def test_mask_history_labels_only_the_last_turn_and_gives_it_the_budget() -> None:
    tok = make_tokenizer()
    t = get_template("default")
    prompt, response = _conv(("one", "two " * 20), ("three", "four"))
    pairs = t.encode_multiturn(tok, prompt + response)
    ids, labels, _ = encode_supervised(t, tok, prompt, response, None, None, cutoff_len=512,
                                       mask_history=True)
    (s0, a0), (s1, a1) = pairs
    assert ids == s0 + a0 + s1 + a1
    assert labels == [IGNORE_INDEX] * (len(s0) + len(a0) + len(s1)) + a1
    # With a budget that only fits the last turn, the last turn survives (not the first).
    ids, labels, truncated = encode_supervised(t, tok, prompt, response, None, None,
                                               cutoff_len=len(s1) + len(a1), mask_history=True)
    assert truncated and ids == s1 + a1


def test_mask_history_with_train_on_prompt_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as exc:
        _args(mask_history=True, train_on_prompt=True)
    assert exc.value.key == "mask_history"


def test_greedy_knapsack_packs_everything_within_capacity() -> None:
    lengths = [7, 3, 9, 1, 5, 5, 2, 8, 4]
    bins = greedy_knapsack(lengths, 10)
    assert sorted(x for b in bins for x in b) == sorted(lengths)
    assert all(sum(b) <= 10 for b in bins)
    # greedy: the first bin takes the largest item, then the largest that still fits
    assert bins[0] == [9, 1]


def _packed_rows(neat: bool, cutoff: int = 48):
    tok = make_tokenizer()
    t = get_template("default")
    convs = [_conv((f"question {i}", "answer " * (i % 4 + 1))) for i in range(9)]
    args = _args(cutoff_len=cutoff, packing=True, neat_packing=neat)
    out = PackedSupervisedProcessor(t, tok, args)(_batch(convs))
    singles = [encode_supervised(t, tok, p, r, None, None, cutoff_len=cutoff - 1)[:2] for p, r in convs]
    return tok, out, singles


def test_packing_fills_rows_of_exactly_cutoff_len_with_restarting_positions() -> None:
    tok, out, singles = _packed_rows(neat=False)
    assert len(out["input_ids"]) < len(singles)  # several examples per row
    assert sum(out["_n_src"]) == len(singles)
    recovered = []
    for ids, pos, labels, mask in zip(out["input_ids"], out["position_ids"], out["labels"],
                                      out["attention_mask"], strict=True):
        assert len(ids) == len(pos) == len(labels) == 48
        assert ids[-1] == tok.pad_token_id and labels[-1] == IGNORE_INDEX  # always >= 1 pad
        assert set(mask) == {1}  # plain packing: sub-sequences may see each other
        starts = [i for i, p in enumerate(pos) if p == 0]
        # cut at position restarts; the trailing pad run is position 0 each
        segs = []
        for a, b in zip(starts, [*starts[1:], len(ids)], strict=True):
            segs.append((ids[a:b], labels[a:b]))
        for seg_ids, seg_labels in segs:
            if seg_ids[0] == tok.pad_token_id and len(seg_ids) == 1:
                continue
            recovered.append((seg_ids, seg_labels))
    assert sorted(map(str, recovered)) == sorted(map(str, singles))


def test_neat_packing_marks_each_subsequence_in_the_attention_mask() -> None:
    tok, out, singles = _packed_rows(neat=True)
    for ids, pos, mask in zip(out["input_ids"], out["position_ids"], out["attention_mask"], strict=True):
        k = 0
        for i, (p, m) in enumerate(zip(pos, mask, strict=True)):
            if m == 0:
                assert ids[i] == tok.pad_token_id
                continue
            if p == 0:
                k += 1
            assert m == k  # 1, 2, 3 ... per sub-sequence, 0 on padding


def test_neat_4d_mask_blocks_attention_across_subsequences() -> None:
    idx = torch.tensor([[1, 1, 1, 2, 2, 3, 0, 0]])
    m = prepare_4d_attention_mask(idx, torch.float32)
    assert m.shape == (1, 1, 8, 8)
    neg = torch.finfo(torch.float32).min
    for i in range(8):
        for j in range(8):
            same = idx[0, i] == idx[0, j] and idx[0, j] != 0
            if same and j <= i:
                assert m[0, 0, i, j] == 0
            else:
                assert m[0, 0, i, j] == neg, (i, j)


def test_neat_packing_isolates_subsequences_in_a_real_llama_forward() -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    tok, out, _ = _packed_rows(neat=True)
    best = max(range(len(out["input_ids"])), key=lambda i: max(out["attention_mask"][i]))
    row = {k: out[k][best] for k in ("input_ids", "attention_mask", "position_ids", "labels")}
    n_subseq = max(row["attention_mask"])
    assert n_subseq >= 2
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    for impl in ("eager", "sdpa"):
        cfg._attn_implementation = impl
        model = LlamaForCausalLM(cfg).eval()
        batch = SFTCollator(pad_token_id=tok.pad_token_id, block_diag_attn=True,
                            attn_implementation=impl)([row])
        assert batch["attention_mask"].dim() == 4
        with torch.no_grad():
            packed = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                           position_ids=batch["position_ids"]).logits[0]
        # The second sub-sequence alone gives the same logits as inside the pack.
        seg = [i for i, m in enumerate(row["attention_mask"]) if m == 2]
        alone_ids = torch.tensor([[row["input_ids"][i] for i in seg]])
        with torch.no_grad():
            alone = model(input_ids=alone_ids).logits[0]
        torch.testing.assert_close(packed[seg], alone, atol=1e-5, rtol=1e-4)
        # Plain packing (contaminated) does differ: the check above can fail.
        plain = SFTCollator(pad_token_id=tok.pad_token_id)([row | {"attention_mask": [1] * len(row["input_ids"])}])
        with torch.no_grad():
            mixed = model(**{k: plain[k] for k in ("input_ids", "attention_mask", "position_ids")}).logits[0]
        assert not torch.allclose(mixed[seg], alone, atol=1e-4)


def test_neat_collator_for_flash_attention_keeps_positions_and_drops_the_mask() -> None:
    _, out, _ = _packed_rows(neat=True)
    rows = [{k: out[k][i] for k in ("input_ids", "attention_mask", "position_ids", "labels")} for i in range(2)]
    batch = SFTCollator(pad_token_id=0, block_diag_attn=True, attn_implementation="flash_attention_2")(rows)
    assert "attention_mask" not in batch
    assert batch["position_ids"].tolist()[0][: len(rows[0]["position_ids"])] == rows[0]["position_ids"]


def test_sft_collator_pads_to_a_multiple_of_8_with_ignored_labels() -> None:
    rows = [
        {"input_ids": [5, 6, 7], "attention_mask": [1, 1, 1], "labels": [-100, 6, 7], "extra": "x"},
        {"input_ids": [5] * 10, "attention_mask": [1] * 10, "labels": [5] * 10},
    ]
    b = SFTCollator(pad_token_id=0)(rows)
    assert b["input_ids"].shape == (2, 16)
    assert b["input_ids"][0].tolist() == [5, 6, 7] + [0] * 13
    assert b["labels"][0].tolist() == [-100, 6, 7] + [-100] * 13
    assert b["attention_mask"][0].tolist() == [1, 1, 1] + [0] * 13
    assert set(b) == {"input_ids", "labels", "attention_mask"}


def test_pt_collator_learns_every_real_token_including_an_eos_that_is_also_pad() -> None:
    b = PTCollator(pad_token_id=2, pad_to_multiple_of=None)(
        [{"input_ids": [5, 6, 2], "attention_mask": [1, 1, 1]}, {"input_ids": [7], "attention_mask": [1]}]
    )
    assert b["labels"].tolist() == [[5, 6, 2], [7, -100, -100]]


def test_pretrain_packing_concatenates_texts_into_full_blocks() -> None:
    tok = make_tokenizer()
    t = get_template(None)
    texts = [f"the quick brown fox number {i} jumps" for i in range(20)]
    batch = _batch([([{"role": "user", "content": s}], []) for s in texts])
    out = PretrainProcessor(t, tok, _args("pt", cutoff_len=16))(batch)
    stream = [i for s in texts for i in tok.encode(s + tok.eos_token, add_special_tokens=False)]
    assert all(len(r) == 16 for r in out["input_ids"])
    assert [i for r in out["input_ids"] for i in r] == stream[: len(out["input_ids"]) * 16]
    out = PretrainProcessor(t, tok, _args("pt", cutoff_len=16, packing=False))(batch)
    assert len(out["input_ids"]) == 20 and max(len(r) for r in out["input_ids"]) <= 16
    assert out["input_ids"][0] == tok.encode(texts[0] + tok.eos_token, add_special_tokens=False)[:16]


def test_pairwise_rows_are_template_text_for_trl() -> None:
    tok = make_tokenizer()
    t = get_template("chatml")
    t.fix_special_tokens(tok)
    prompt = [{"role": "user", "content": "2+2?"}]
    batch = {"_prompt": [prompt, prompt[:0]], "_response": [[{"role": "assistant", "content": "4"},
                                                             {"role": "assistant", "content": "5"}], []],
             "_system": ["", ""], "_tools": ["", ""], "_kto_tag": [None, None]}
    out = PairwiseProcessor(t, tok, _args("dpo"))(batch)
    assert out["prompt"] == ["<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n"]
    assert out["chosen"] == ["4<|im_end|>"] and out["rejected"] == ["5<|im_end|>"]  # ends on the eos
    assert sum(out["_n_src"]) == 1  # the broken row is dropped
    rm = PairwiseProcessor(t, tok, _args("rm"))(batch)
    p_ids = tok.encode(out["prompt"][0], add_special_tokens=False)
    assert rm["chosen_ids"][0] == p_ids + tok.encode("4<|im_end|>\n", add_special_tokens=False)


def test_kto_rows_carry_the_label_and_drop_untagged_examples() -> None:
    tok = make_tokenizer()
    t = get_template("default")
    p = [{"role": "user", "content": "q"}]
    a = [{"role": "assistant", "content": "a"}]
    batch = {"_prompt": [p, p, p], "_response": [a, a, a], "_system": [""] * 3, "_tools": [""] * 3,
             "_kto_tag": [True, False, None]}
    out = KTOProcessor(t, tok, _args("kto"))(batch)
    assert out["label"] == [True, False]
    assert out["prompt"][0] == "Human: q</s>\nAssistant:" and out["completion"][0] == "a</s>"


def test_efficient_eos_labels_the_closing_eos_of_each_answer() -> None:
    from tunedeck.runner.data.templates import S, Template

    tok = make_tokenizer()
    t = Template(name="eff", format_user=S("Q: {{content}}\nA:"), format_assistant=S("{{content}}"),
                 efficient_eos=True)
    prompt, response = _conv(("one", "two"), ("three", "four"))
    (s0, a0), (s1, a1) = t.encode_multiturn(tok, prompt + response)
    ids, labels, _ = encode_supervised(t, tok, prompt, response, None, None, cutoff_len=512)
    eos = tok.eos_token_id
    assert ids == s0 + a0 + s1 + a1 + [eos]
    # the eos that ends answer 1 sits at the start of turn 2's prompt; it is learned
    assert labels == [IGNORE_INDEX] * len(s0) + a0 + [eos] + [IGNORE_INDEX] * (len(s1) - 1) + a1 + [eos]


def test_a_chat_template_that_rewrites_history_cannot_be_split_per_turn() -> None:
    from tunedeck.runner.errors import TunedeckError

    jinja = ("{% for m in messages %}{% if loop.last %}{{ m['content'] }}{% else %}X{% endif %}"
             "{% endfor %}")
    tok = make_tokenizer(jinja)
    with pytest.raises(TunedeckError, match="set `template:`"):
        get_template(None, tok).encode_multiturn(tok, [{"role": "user", "content": "a"},
                                                      {"role": "assistant", "content": "b"}])
