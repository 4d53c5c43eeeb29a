"""The shared inference core: resolve a run to what to load, the training formatter's prompt,
streaming that stops, batch generation with left padding."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tunedeck.runner.data.processors import IGNORE_INDEX, encode_supervised
from tunedeck.runner.errors import ConfigError, TunedeckError
from tunedeck.runner.infer import GenConfig, resolve
from tunedeck.runner.infer.engine import (
    format_chat,
    generate,
    generate_stream,
    load_model,
    prepare_tokenizer,
)

CONVERSATION = [
    {"role": "user", "content": "Reverse the string.\ncat"},
    {"role": "assistant", "content": "tac"},
    {"role": "user", "content": "Sort the letters.\nd b a"},
    {"role": "assistant", "content": "a b d"},
]


@pytest.mark.parametrize("template", ["default", "alpaca", "chatml", "qwen", "llama3", "empty", None])
def test_chat_prompt_ids_equal_the_training_formatters(template: str | None, tmp_path: Path,
                                                       make_demo_config) -> None:
    cfg = make_demo_config(tmp_path, template=template)
    spec = resolve(cfg, overrides=["default_system=Be brief."])
    tokenizer, tmpl, _ = prepare_tokenizer(spec)
    # What the training data pipeline builds for the whole conversation ...
    input_ids, labels, _ = encode_supervised(tmpl, tokenizer, CONVERSATION[:3], CONVERSATION[3:],
                                             None, None, cutoff_len=100_000)
    # ... starts with exactly the chat prompt for its first three messages; the answer follows.
    prompt = format_chat((tokenizer, tmpl), CONVERSATION[:3])
    assert input_ids[: len(prompt)] == prompt
    assert labels[len(prompt) - 1] == IGNORE_INDEX and labels[len(prompt)] != IGNORE_INDEX
    answer = tokenizer.decode(input_ids[len(prompt):], skip_special_tokens=True)
    assert answer.strip().startswith("a b d")
    # and a one-turn chat prompt is the first turn's source ids.
    first = format_chat((tokenizer, tmpl), CONVERSATION[:1])
    assert input_ids[: len(first)] == first


def test_resolve_run_checkpoints_latest_number_base_and_errors(trained_demo_run: Path) -> None:
    final = resolve(str(trained_demo_run))
    assert final.kind == "run" and final.adapters == (str(trained_demo_run),)
    assert final.label.endswith("(final)") and final.template == "default"
    latest = resolve(str(trained_demo_run), "latest")
    assert latest.adapters == (str(trained_demo_run / "checkpoint-300"),) and latest.checkpoint_step == 300
    n = resolve(str(trained_demo_run), "100", ["temperature=0.3", "max_new_tokens=7"])
    assert n.adapters[-1].endswith("checkpoint-100") and n.label.endswith("@ checkpoint-100")
    assert n.generation.temperature == 0.3 and n.generation.max_new_tokens == 7
    assert n.generation.top_p == 0.7 and n.generation.do_sample is True  # LLaMA-Factory's defaults
    base = resolve(str(trained_demo_run), "base")
    assert base.adapters == () and "(base)" in base.label
    by_path = resolve(str(trained_demo_run), str(trained_demo_run / "checkpoint-200"))
    assert by_path.checkpoint_step == 200
    with pytest.raises(TunedeckError, match="checkpoint-7 does not exist") as err:
        resolve(str(trained_demo_run), "7")
    assert "checkpoint-100" in str(err.value)
    with pytest.raises(ConfigError, match="temperature"):
        resolve(str(trained_demo_run), overrides=["temperature=-1"])


def test_incomplete_checkpoint_is_refused(trained_demo_run: Path, tmp_path: Path) -> None:
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(trained_demo_run, run)
    (run / "checkpoint-200" / "trainer_state.json").unlink()
    with pytest.raises(TunedeckError, match="incomplete"):
        resolve(str(run), "200")
    # latest skips it
    (run / "checkpoint-300" / "adapter_model.safetensors").write_bytes(b"")
    assert resolve(str(run), "latest").checkpoint_step == 100


def test_gen_config_set_parses_and_validates() -> None:
    g = GenConfig().with_("temperature", "0.3").with_("do_sample", "false").with_("max_new_tokens", "12")
    assert (g.temperature, g.do_sample, g.max_new_tokens) == (0.3, False, 12)
    assert "temperature" not in g.to_generate_kwargs() and g.to_generate_kwargs()["do_sample"] is False
    assert GenConfig().with_("temperature", 0).to_generate_kwargs()["do_sample"] is False
    with pytest.raises(TunedeckError, match="unknown generation setting"):
        GenConfig().with_("temprature", "1")
    with pytest.raises(ConfigError, match="top_p"):
        GenConfig().with_("top_p", "3")


def test_trained_run_answers_in_the_demo_shape_streamed_and_batched(trained_demo_run: Path) -> None:
    loaded = load_model(resolve(str(trained_demo_run), "latest", ["do_sample=false", "max_new_tokens=16"]))
    questions = ["Reverse the string.\nowl", "Sort the letters.\ng c e", "Add the numbers.\n3 4"]
    prompts = [format_chat(loaded, [{"role": "user", "content": q}]) for q in questions]
    batch = generate(loaded, prompts)
    streamed = ["".join(generate_stream(loaded, p)) for p in prompts]
    assert [s.strip() for s in streamed] == [b.strip() for b in batch]  # left padding changes nothing
    rev, srt, add = (b.strip() for b in batch)
    assert rev.isalpha() and rev.islower() and len(rev) == 3, rev
    assert [len(x) for x in srt.split(" ")] == [1, 1, 1] and srt.replace(" ", "").isalpha(), srt
    assert add.isdigit(), add


def test_stream_stops_at_the_next_token_when_asked(trained_demo_run: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNEDECK_FAULT", "slowtoken@0.05")
    loaded = load_model(resolve(str(trained_demo_run), "base", ["do_sample=false", "max_new_tokens=400"]))
    loaded.stop_token_ids = []  # the untrained base babbles on; only the stop ends it
    loaded.model.generation_config.eos_token_id = None
    stop = threading.Event()
    pieces = []
    for piece in generate_stream(loaded, format_chat(loaded, [{"role": "user", "content": "hi"}]), stop_event=stop):
        pieces.append(piece)
        stop.set()
    text = "".join(pieces)
    assert text and len(loaded.tokenizer.encode(text, add_special_tokens=False)) < 50
