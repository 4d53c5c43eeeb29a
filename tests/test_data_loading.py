"""Loading datasets through build_datasets: formats, file types, mixing, splits, streaming, cache."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from data_helpers import alpaca_rows, make_tokenizer, write_json, write_jsonl
from datasets import IterableDataset

from tunedeck.runner.data.dataset_info import load_dataset_info, resolve_datasets
from tunedeck.runner.data.loader import build_datasets
from tunedeck.runner.data.templates import get_template
from tunedeck.runner.errors import ConfigError, TunedeckError


def _build(tmp: Path, info: dict, stage: str = "sft", seed: int = 0, **values):
    write_json(tmp / "data" / "dataset_info.json", info)
    vals = {"dataset": next(iter(info), ""), "dataset_dir": str(tmp / "data"), "template": "default",
            "cutoff_len": 256, **values}
    tok = make_tokenizer()
    return build_datasets(vals, tok, stage=stage, seed=seed, cache_dir=tmp / "cache"), tok


def _answers(bundle, tok, split: str = "train") -> list[str]:
    ds = bundle.train_dataset if split == "train" else bundle.eval_dataset
    out = []
    for row in ds:
        out.append(tok.decode([i for i in row["labels"] if i >= 0], skip_special_tokens=True).strip())
    return out


ALPACA = [
    {"instruction": "add", "input": "1 2", "output": "three"},
    {"instruction": "say hi", "input": "", "output": "hello", "history": [["first", "one"]]},
    {"instruction": "sys", "input": "", "output": "yes", "system": "be nice"},
]
SHAREGPT = [
    {"conversations": [{"from": "human", "value": "add 1 2"}, {"from": "gpt", "value": "three"}]},
    {"conversations": [{"from": "system", "value": "be nice"}, {"from": "human", "value": "hi"},
                       {"from": "gpt", "value": "hello"}]},
    {"conversations": [{"from": "human", "value": "odd"}]},  # invalid: no answer -> dropped
]
OPENAI = [
    {"messages": [{"role": "user", "content": "add 1 2"}, {"role": "assistant", "content": "three"}]},
    {"messages": [{"role": "system", "content": "be nice"}, {"role": "user", "content": "hi"},
                  {"role": "assistant", "content": "hello"}]},
]


def _write_alpaca(path: Path, fmt: str) -> None:
    import pandas as pd

    rows = [{k: r.get(k, "") for k in ("instruction", "input", "output", "system")} for r in ALPACA]
    if fmt == "json":
        write_json(path, ALPACA)
    elif fmt == "jsonl":
        write_jsonl(path, ALPACA)
    elif fmt == "csv":
        pd.DataFrame(rows).to_csv(path, index=False)
    elif fmt == "parquet":
        pd.DataFrame(rows).to_parquet(path, index=False)


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv", "parquet"])
def test_alpaca_loads_from_every_file_type_with_prompt_masked(tmp_path: Path, fmt: str) -> None:
    (tmp_path / "data").mkdir()
    _write_alpaca(tmp_path / "data" / f"a.{fmt}", fmt)
    columns = {"system": "system"} | ({"history": "history"} if fmt in ("json", "jsonl") else {})
    bundle, tok = _build(tmp_path, {"a": {"file_name": f"a.{fmt}", "columns": columns}})
    assert bundle.num_train_examples == 3 and bundle.stats["dropped_examples"] == 0
    answers = _answers(bundle, tok)
    # history turns are trained on too (LLaMA-Factory), prompts never
    assert answers[0] == "three"
    assert answers[1] == ("one\nhello" if fmt in ("json", "jsonl") else "hello")
    row = bundle.train_dataset[2]
    text = tok.decode(row["input_ids"])
    assert text.startswith("System: be nice</s>\nHuman: sys</s>\nAssistant:")
    t = get_template("default")
    # instruction + "\n" + input, as LLaMA-Factory joins them
    first = tok.decode(bundle.train_dataset[0]["input_ids"])
    assert first == t.render_messages([{"role": "user", "content": "add\n1 2"},
                                       {"role": "assistant", "content": "three"}], tokenizer=tok)[0][0] + "three</s>\n"


def test_sharegpt_drops_invalid_conversations_and_reads_the_system_turn(tmp_path: Path) -> None:
    write_json(tmp_path / "data" / "s.json", SHAREGPT)
    bundle, tok = _build(tmp_path, {"s": {"file_name": "s.json", "formatting": "sharegpt"}})
    assert bundle.num_train_examples == 2
    assert bundle.stats["dropped_examples"] == 1
    assert _answers(bundle, tok) == ["three", "hello"]
    assert tok.decode(bundle.train_dataset[1]["input_ids"]).startswith("System: be nice</s>")


def test_sharegpt_custom_tags_and_openai_messages(tmp_path: Path) -> None:
    custom = [{"msgs": [{"who": "me", "text": "add 1 2"}, {"who": "bot", "text": "three"}]}]
    write_json(tmp_path / "data" / "c.json", custom)
    write_jsonl(tmp_path / "data" / "o.jsonl", OPENAI)
    info = {
        "c": {"file_name": "c.json", "formatting": "sharegpt", "columns": {"messages": "msgs"},
              "tags": {"role_tag": "who", "content_tag": "text", "user_tag": "me", "assistant_tag": "bot"}},
        "o": {"file_name": "o.jsonl", "formatting": "openai"},
    }
    bundle, tok = _build(tmp_path, info, dataset="c,o")
    assert _answers(bundle, tok) == ["three", "three", "hello"]


def test_pretraining_text_from_txt_and_json_files(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    lines = [f"the quick brown fox {i} jumps over the lazy dog" for i in range(30)]
    (tmp_path / "data" / "wiki.txt").write_text("\n".join(lines) + "\n")
    write_jsonl(tmp_path / "data" / "c4.jsonl", [{"text": s} for s in lines])
    info = {"wiki": {"file_name": "wiki.txt"}, "c4": {"file_name": "c4.jsonl", "columns": {"prompt": "text"}}}
    for name in ("wiki", "c4"):
        bundle, tok = _build(tmp_path, info, stage="pt", dataset=name, cutoff_len=32)
        rows = bundle.train_dataset["input_ids"]
        assert rows and all(len(r) == 32 for r in rows)  # pt packs by default
        stream = [i for s in lines for i in tok.encode(s + tok.eos_token, add_special_tokens=False)]
        assert [i for r in rows for i in r] == stream[: 32 * len(rows)]
        batch = bundle.data_collator([bundle.train_dataset[0]])
        assert batch["labels"].tolist() == batch["input_ids"].tolist()


def test_max_samples_applies_per_dataset(tmp_path: Path) -> None:
    write_json(tmp_path / "data" / "a.json", alpaca_rows(10, "a"))
    write_json(tmp_path / "data" / "b.json", alpaca_rows(10, "b"))
    info = {"a": {"file_name": "a.json"}, "b": {"file_name": "b.json"}}
    bundle, tok = _build(tmp_path, info, dataset="a,b", max_samples=3)
    assert bundle.num_train_examples == 6
    assert _answers(bundle, tok) == ["answer 0", "answer 1", "answer 2"] * 2


@pytest.mark.parametrize(("val_size", "n_eval"), [(0.2, 2), (3, 3)])
def test_val_size_fraction_or_count_splits_before_tokenization(tmp_path: Path, val_size: float, n_eval: int) -> None:
    write_json(tmp_path / "data" / "a.json", alpaca_rows(10))
    info = {"a": {"file_name": "a.json"}}
    bundle, tok = _build(tmp_path, info, val_size=val_size, seed=3)
    assert bundle.num_train_examples == 10 - n_eval and len(bundle.eval_dataset) == n_eval
    train, evals = set(_answers(bundle, tok)), set(_answers(bundle, tok, "eval"))
    assert not train & evals and len(train | evals) == 10
    again, _ = _build(tmp_path, info, val_size=val_size, seed=3)  # same seed, same split
    assert set(_answers(again, tok, "eval")) == evals
    other, _ = _build(tmp_path, info, val_size=val_size, seed=4)
    assert set(_answers(other, tok, "eval")) != evals or n_eval == 10


def test_eval_dataset_and_eval_on_each_dataset(tmp_path: Path) -> None:
    write_json(tmp_path / "data" / "a.json", alpaca_rows(4, "a"))
    write_json(tmp_path / "data" / "b.json", alpaca_rows(2, "b"))
    write_json(tmp_path / "data" / "c.json", alpaca_rows(3, "c"))
    info = {n: {"file_name": f"{n}.json"} for n in "abc"}
    bundle, _ = _build(tmp_path, info, dataset="a", eval_dataset="b,c")
    assert len(bundle.eval_dataset) == 5
    bundle, _ = _build(tmp_path, info, dataset="a", eval_dataset="b,c", eval_on_each_dataset=True)
    assert {k: len(v) for k, v in bundle.eval_dataset.items()} == {"b": 2, "c": 3}
    with pytest.raises(ConfigError, match="val_size"):
        _build(tmp_path, info, dataset="a", eval_dataset="b", val_size=0.1)


def test_interleave_follows_probabilities_and_stopping_strategy(tmp_path: Path) -> None:
    write_json(tmp_path / "data" / "a.json", alpaca_rows(60, "a"))
    write_json(tmp_path / "data" / "b.json", alpaca_rows(60, "b"))
    info = {"a": {"file_name": "a.json"}, "b": {"file_name": "b.json"}}

    def sources(bundle, tok) -> list[str]:
        return [tok.decode(r["input_ids"]).split("Human: ")[1][0] for r in bundle.train_dataset]

    under, tok = _build(tmp_path, info, dataset="a,b", mix_strategy="interleave_under",
                        interleave_probs="0.9,0.1", seed=1)
    src = sources(under, tok)
    assert src.count("a") == 60  # stops when the first source (the likely one) runs out
    assert 0 < src.count("b") < 30
    over, tok = _build(tmp_path, info, dataset="a,b", mix_strategy="interleave_over",
                       interleave_probs="0.5,0.5", seed=1)
    src = sources(over, tok)
    assert src.count("a") >= 60 and src.count("b") >= 60  # until every source is exhausted
    concat, tok = _build(tmp_path, info, dataset="a,b")
    assert sources(concat, tok) == ["a"] * 60 + ["b"] * 60


def test_interleave_probs_must_match_the_number_of_datasets(tmp_path: Path) -> None:
    write_json(tmp_path / "data" / "a.json", alpaca_rows(3))
    info = {"a": {"file_name": "a.json"}, "b": {"file_name": "a.json"}}
    with pytest.raises(ConfigError) as exc:
        _build(tmp_path, info, dataset="a,b", mix_strategy="interleave_under", interleave_probs="0.2,0.3,0.5")
    assert exc.value.key == "interleave_probs" and "3 value(s) for 2 dataset(s)" in str(exc.value)
    with pytest.raises(ConfigError, match="interleave"):
        _build(tmp_path, info, dataset="a,b", interleave_probs="0.5,0.5")  # with concat


def test_streaming_yields_tokenized_examples_and_needs_max_steps(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "data" / "a.jsonl", alpaca_rows(40))
    info = {"a": {"file_name": "a.jsonl"}}
    bundle, tok = _build(tmp_path, info, streaming=True, max_steps=5, val_size=4, buffer_size=8)
    assert isinstance(bundle.train_dataset, IterableDataset)
    assert bundle.num_train_examples is None and bundle.stats["source"] == "streaming"
    train = list(bundle.train_dataset)
    evals = list(bundle.eval_dataset)
    assert len(train) == 36 and len(evals) == 4
    assert set(train[0]) == {"input_ids", "attention_mask", "labels"}
    answers = {tok.decode([i for i in r["labels"] if i >= 0], skip_special_tokens=True).strip() for r in train + evals}
    assert answers == {f"answer {i}" for i in range(40)}
    with pytest.raises(ConfigError, match="max_steps"):
        _build(tmp_path, info, streaming=True)


def test_preprocessing_num_workers_gives_the_same_rows(tmp_path: Path) -> None:
    write_json(tmp_path / "data" / "a.json", alpaca_rows(40))
    info = {"a": {"file_name": "a.json"}}
    one, _ = _build(tmp_path, info, preprocessing_batch_size=7)
    two, _ = _build(tmp_path, info, preprocessing_num_workers=2, preprocessing_batch_size=7,
                    overwrite_cache=True)
    assert two.stats["source"] == "built"
    assert one.train_dataset["input_ids"] == two.train_dataset["input_ids"]


def test_tokenized_cache_is_reused_refreshed_and_invalidated(tmp_path: Path) -> None:
    data = tmp_path / "data" / "a.json"
    write_json(data, alpaca_rows(12))
    info = {"a": {"file_name": "a.json"}}
    first, _ = _build(tmp_path, info)
    assert first.stats["source"] == "built"
    entry = Path(first.stats["cache_path"])
    assert (entry / "meta.json").is_file() and entry.parent == tmp_path / "cache" / "tokenized"
    created = json.loads((entry / "meta.json").read_text())["created"]

    second, _ = _build(tmp_path, info)
    assert second.stats["source"] == "cache" and second.stats["cache_path"] == str(entry)
    assert second.train_dataset["input_ids"] == first.train_dataset["input_ids"]
    assert second.stats["train"] == first.stats["train"]

    refreshed, _ = _build(tmp_path, info, overwrite_cache=True)
    assert refreshed.stats["source"] == "built" and refreshed.stats["cache_path"] == str(entry)
    assert json.loads((entry / "meta.json").read_text())["created"] > created

    other, _ = _build(tmp_path, info, cutoff_len=128)  # a data-relevant key changes the key
    assert other.stats["source"] == "built" and other.stats["cache_path"] != str(entry)

    write_json(data, alpaca_rows(13))  # the data file changed
    st = data.stat()
    os.utime(data, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    changed, _ = _build(tmp_path, info)
    assert changed.stats["source"] == "built" and changed.num_train_examples == 13


def test_tokenized_path_saves_then_loads(tmp_path: Path) -> None:
    write_json(tmp_path / "data" / "a.json", alpaca_rows(5))
    info = {"a": {"file_name": "a.json"}}
    saved, _ = _build(tmp_path, info, tokenized_path=str(tmp_path / "tok"), val_size=1)
    assert (tmp_path / "tok" / "dataset_dict.json").is_file()
    loaded, _ = _build(tmp_path, {}, dataset="", tokenized_path=str(tmp_path / "tok"))
    assert loaded.stats["source"] == "tokenized_path"
    assert loaded.train_dataset["input_ids"] == saved.train_dataset["input_ids"]
    assert len(loaded.eval_dataset) == 1


def test_ranking_datasets_need_a_preference_stage(tmp_path: Path) -> None:
    rows = [{"conversations": [{"from": "human", "value": "q"}], "chosen": {"from": "gpt", "value": "a"},
             "rejected": {"from": "gpt", "value": "b"}}]
    write_json(tmp_path / "data" / "p.json", rows)
    info = {"p": {"file_name": "p.json", "formatting": "sharegpt", "ranking": True,
                  "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"}}}
    bundle, _ = _build(tmp_path, info, stage="dpo")
    assert bundle.train_dataset[0] == {"prompt": "Human: q</s>\nAssistant:", "chosen": "a</s>", "rejected": "b</s>"}
    assert bundle.data_collator is None
    with pytest.raises(ConfigError, match="ranking"):
        _build(tmp_path, info, stage="sft")


# -- dataset_info.json -------------------------------------------------------------------------


def test_bad_dataset_info_json_names_the_line(tmp_path: Path) -> None:
    (tmp_path / "dataset_info.json").write_text('{\n  "a": {"file_name": "a.json"},\n  "b": {"file_name": }\n}\n')
    with pytest.raises(ConfigError) as exc:
        load_dataset_info(tmp_path)
    assert exc.value.line == 3 and exc.value.file == str(tmp_path / "dataset_info.json")


def test_bad_entries_name_their_line(tmp_path: Path) -> None:
    (tmp_path / "dataset_info.json").write_text(
        '{\n  "good": {"file_name": "a.json"},\n\n  "bad": {\n    "file_name": "b.json",\n'
        '    "formatting": "shargpt"\n  }\n}\n'
    )
    with pytest.raises(ConfigError) as exc:
        load_dataset_info(tmp_path)
    assert exc.value.line == 4 and "shargpt" in str(exc.value)
    (tmp_path / "dataset_info.json").write_text('{"x": {"file_name": "a", "columns": {"promt": "q"}}}')
    with pytest.raises(ConfigError, match="promt"):
        load_dataset_info(tmp_path)
    (tmp_path / "dataset_info.json").write_text('{"x": {"formatting": "alpaca"}}')
    with pytest.raises(ConfigError, match="no data source"):
        load_dataset_info(tmp_path)


def test_unknown_dataset_lists_the_available_ones(tmp_path: Path) -> None:
    write_json(tmp_path / "dataset_info.json", {"alpaca_en": {"file_name": "a.json"}, "identity": {"file_name": "i.json"}})
    with pytest.raises(ConfigError) as exc:
        resolve_datasets("alpaca_em", tmp_path)
    msg = str(exc.value)
    assert "'alpaca_em'" in msg and "did you mean alpaca_en" in msg and "identity" in msg
    with pytest.raises(ConfigError, match="not found"):
        resolve_datasets("x", tmp_path / "nowhere")


def test_missing_or_unreadable_data_files_are_clear_errors(tmp_path: Path) -> None:
    write_json(tmp_path / "data" / "ok.json", alpaca_rows(2))
    (tmp_path / "data" / "broken.json").write_text("[{\"instruction\": ")
    info = {"gone": {"file_name": "gone.json"}, "broken": {"file_name": "broken.json"}}
    with pytest.raises(ConfigError, match="gone.json"):
        _build(tmp_path, info, dataset="gone")
    with pytest.raises(TunedeckError, match="broken.json"):
        _build(tmp_path, info, dataset="broken")
