"""``tunedeck export`` on the demo LoRA run: the merged folder loads with plain transformers and
gives base + adapter's logits, shards respect export_size, the run's chat template and an Ollama
Modelfile are there, and an interrupted export leaves nothing that looks complete."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from control_helpers import REPO
from train_helpers import wait_for

from tunedeck.runner.errors import ConfigError, TunedeckError
from tunedeck.runner.infer import resolve

TIMEOUT = 300
BATCH = ["Human: Reverse the string.\nowl", "Sort the letters.\nh d b and some more words", "7 + 5"]


def _export(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tunedeck.runner.cli", "export", *args], capture_output=True,
                          text=True, timeout=TIMEOUT, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), **env})


@pytest.fixture(scope="module")
def exported(trained_demo_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export") / "merged"
    proc = _export(str(trained_demo_run), "--checkpoint", "200", f"export_dir={out}", "export_size=0.0001")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"to {out}" in proc.stdout
    return out


# Loads the export with transformers alone and prints max |logits| and where it saved them.
PLAIN = """
import sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
path, texts, dst = sys.argv[1], sys.argv[2:-1], sys.argv[-1]
tok = AutoTokenizer.from_pretrained(path)
tok.padding_side = "left"
model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
batch = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
with torch.no_grad():
    logits = model(**batch).logits
torch.save({"logits": logits, "input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}, dst)
assert "peft" not in sys.modules, "peft was imported"
print("ok")
"""


def test_merged_model_gives_base_plus_adapter_logits_with_plain_transformers(
        exported: Path, trained_demo_run: Path, tmp_path: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    dst = tmp_path / "plain.pt"
    proc = subprocess.run([sys.executable, "-c", PLAIN, str(exported), *BATCH, str(dst)], capture_output=True,
                          text=True, timeout=TIMEOUT, cwd=tmp_path)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-2000:]
    plain = torch.load(dst)
    spec = resolve(str(trained_demo_run), "200")
    base = AutoModelForCausalLM.from_pretrained(spec.model_name_or_path, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, str(trained_demo_run / "checkpoint-200")).eval()
    with torch.no_grad():
        ref = model(input_ids=plain["input_ids"], attention_mask=plain["attention_mask"]).logits
    mask = plain["attention_mask"].bool()
    diff = (ref[mask] - plain["logits"][mask]).abs().max().item()
    assert diff < 1e-4, diff
    # and the adapter mattered: the base alone is far from it
    with torch.no_grad(), model.disable_adapter():
        base_logits = model(input_ids=plain["input_ids"], attention_mask=plain["attention_mask"]).logits
    assert (base_logits[mask] - plain["logits"][mask]).abs().max().item() > 1e-2


def test_shards_respect_export_size_and_the_record_says_what_was_merged(exported: Path,
                                                                        trained_demo_run: Path) -> None:
    from safetensors import safe_open

    index = json.loads((exported / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 3
    for name in shards:
        with safe_open(str(exported / name), "pt") as f:
            names = f.keys()
            sizes = [f.get_slice(k).get_shape() for k in names]
            nbytes = sum(4 * math.prod(s) for s in sizes)  # float32
            assert nbytes <= 0.0001 * 10**9 or len(sizes) == 1, (name, nbytes)
    assert not any("lora" in k for k in index["weight_map"])
    rec = json.loads((exported / "tunedeck_export.json").read_text())
    assert rec["adapters_merged"] == [str(trained_demo_run / "checkpoint-200")]
    assert rec["checkpoint_step"] == 200 and rec["template"] == "default" and rec["shards"] == shards
    assert rec["run_dir"] == str(trained_demo_run)


def test_chat_template_and_modelfile_match_the_runs_template(exported: Path, trained_demo_run: Path) -> None:
    from transformers import AutoTokenizer

    from tunedeck.runner.infer.engine import prepare_tokenizer

    cfg = json.loads((exported / "tokenizer_config.json").read_text())
    assert "Human: " in cfg["chat_template"]
    tok = AutoTokenizer.from_pretrained(str(exported))
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Reverse the string.\nowl"},
            {"role": "assistant", "content": "lwo"}, {"role": "user", "content": "Add the numbers.\n2 2"}]
    text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    _, template, _ = prepare_tokenizer(resolve(str(trained_demo_run)))
    prompt, _ = template.render_oneturn([*msgs[1:], {"role": "assistant", "content": ""}], "Be brief.", tokenizer=tok)
    assert text == prompt
    modelfile = (exported / "Modelfile").read_text()
    assert "FROM .\n" in modelfile and 'TEMPLATE """' in modelfile and "Human: {{ .Content }}" in modelfile
    assert f'PARAMETER stop "{tok.eos_token}"' in modelfile
    # and chat on the export answers in the trained shape (tunedeck reads the record's template)
    from tunedeck.runner.infer.engine import format_chat, generate, load_model

    loaded = load_model(resolve(str(exported), overrides=["do_sample=false", "max_new_tokens=12"]))
    assert loaded.template.name == "default"
    (answer,) = generate(loaded, [format_chat(loaded, [{"role": "user", "content": "Add the numbers.\n4 3"}])])
    assert answer.strip().isdigit(), answer


def test_legacy_format_writes_bin_shards_transformers_loads(trained_demo_run: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    out = tmp_path / "legacy"
    proc = _export(str(trained_demo_run), f"export_dir={out}", "export_legacy_format=true", "export_size=0.0002")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert list(out.glob("pytorch_model-*.bin")) and not list(out.glob("*.safetensors"))
    assert (out / "pytorch_model.bin.index.json").is_file()
    AutoModelForCausalLM.from_pretrained(str(out))


def _temps(parent: Path, name: str) -> list[Path]:
    return [p for p in parent.iterdir() if p.name.startswith(f".{name}.tunedeck-tmp-")]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_an_interrupted_export_leaves_no_complete_looking_export_dir(trained_demo_run: Path, tmp_path: Path,
                                                                     sig: signal.Signals) -> None:
    out = tmp_path / "merged"
    env = {**os.environ, "PYTHONPATH": str(REPO), "TUNEDECK_FAULT": "slowshard@1"}
    proc = subprocess.Popen([sys.executable, "-m", "tunedeck.runner.cli", "export", str(trained_demo_run),
                             f"export_dir={out}", "export_size=0.0001"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: any(list(t.glob("model-*.safetensors")) for t in _temps(tmp_path, "merged")),
                 120, "the first shard in the export's temp folder")
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode != 0
    assert not out.exists()
    assert not any((p / "tunedeck_export.json").exists() for p in tmp_path.iterdir())
    if sig == signal.SIGTERM:
        assert _temps(tmp_path, "merged") == [], "a stopped export removes its temp folder"
        assert "Traceback" not in err
    # the next export completes and clears a killed one's leftovers
    again = _export(str(trained_demo_run), f"export_dir={out}")
    assert again.returncode == 0, again.stderr[-2000:]
    assert (out / "tunedeck_export.json").is_file() and _temps(tmp_path, "merged") == []
    # an existing export is not overwritten by accident
    third = _export(str(trained_demo_run), f"export_dir={out}")
    assert third.returncode == 1 and "exists and is not empty" in third.stderr and "--overwrite" in third.stderr


def test_quantized_export_and_hub_upload_are_guarded_and_build_what_they_would_run(
        trained_demo_run: Path, tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tunedeck.runner.infer.engine import prepare_tokenizer
    from tunedeck.runner.infer.export import (
        check_hub_ready,
        check_quantization_ready,
        gptq_config_kwargs,
        plan_export,
    )

    # LLaMA-Factory refuses quantizing with adapters attached; so do we, before loading anything
    with pytest.raises(ConfigError, match="adapters are attached"):
        plan_export(resolve(str(trained_demo_run), overrides=[f"export_dir={tmp_path / 'q'}",
                                                             "export_quantization_bit=4",
                                                             "export_quantization_dataset=c4.jsonl"]))
    # quantizing a merged (or base) model: the plan and the GPTQConfig arguments it would pass
    data = tmp_path / "calib.jsonl"
    data.write_text("".join(json.dumps({"text": f"the {i} quick brown fox jumps over the lazy dog " * 8}) + "\n"
                            for i in range(10)))
    spec = resolve(str(trained_demo_run), "base", [f"export_dir={tmp_path / 'q'}", "export_quantization_bit=4",
                                                   f"export_quantization_dataset={data}",
                                                   "export_quantization_nsamples=5", "export_quantization_maxlen=16"])
    plan = plan_export(spec)
    assert plan.quantization == {"bits": 4, "dataset_path": str(data), "nsamples": 5, "maxlen": 16}
    tok, _, _ = prepare_tokenizer(spec)
    kw = gptq_config_kwargs(plan, tok)
    assert kw["bits"] == 4 and kw["model_seqlen"] == 16 and len(kw["dataset"]) == 5
    assert all(len(tok.encode(t, add_special_tokens=False)) >= 12 for t in kw["dataset"])
    import importlib.util

    if importlib.util.find_spec("gptqmodel") is None or not __import__("torch").cuda.is_available():
        with pytest.raises(TunedeckError, match="gptqmodel|CUDA"):
            check_quantization_ready()
    # the hub: offline -> a clear error naming the switch; no token -> a clear error
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(TunedeckError, match="HF_HUB_OFFLINE"):
        check_hub_ready("me/model")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(TunedeckError, match="no Hugging Face token"):
        check_hub_ready("me/model")
    # through the command: refused before any weight is loaded, nothing written
    proc = _export(str(trained_demo_run), f"export_dir={tmp_path / 'h'}", "export_hub_model_id=me/model",
                   HF_HUB_OFFLINE="1")
    assert proc.returncode == 1 and "HF_HUB_OFFLINE" in proc.stderr and not (tmp_path / "h").exists()
