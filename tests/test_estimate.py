"""The memory estimator: README figures, exact parameter counts, sharding, activations."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tunedeck.runner.errors import ConfigError
from tunedeck.runner.estimate import GiB, estimate, format_bytes, lora_targets, lora_trainable
from tunedeck.runner.model_shape import assumed_shape, resolve_shape, shape_from_config

REPO = Path(__file__).resolve().parents[1]


def est(values: dict, **kw):  # type: ignore[no-untyped-def]
    """An estimate that never asks NVML (deterministic on any box)."""
    kw.setdefault("detect_gpus", False)
    kw.setdefault("with_levels", False)
    return estimate(values, **kw)


# --- LLaMA-Factory README "hardware requirement" table ------------------------------------
# Figures in GB for 7B / 14B / 70B. The README gives no batch or length; its numbers are
# (bytes/param x size) with room for a short sequence, so the test uses one sequence of
# 512 tokens with LLaMA-Factory's defaults (gradient checkpointing on, sdpa attention, bf16).
# "Freeze/LoRA/GaLore/APOLLO/BAdam: 16 bits" means 16-bit training, so the freeze, GaLore
# and BAdam rows use pure_bf16 (with fp32-upcast trainable layers, freeze of 2 layers on a
# 7B adds ~7 GB of optimizer state that the 2x figure does not include). GaLore is the
# layer-wise variant (gradients of one layer at a time), the one that reaches ~2x.
README_GB = {
    "full_bf16": ((120, 240, 1200), {"finetuning_type": "full"}),
    "full_pure_bf16": ((60, 120, 600), {"finetuning_type": "full", "pure_bf16": True}),
    "lora": ((16, 32, 160), {"finetuning_type": "lora"}),
    "freeze": ((16, 32, 160), {"finetuning_type": "freeze", "pure_bf16": True}),
    "galore": ((16, 32, 160), {"finetuning_type": "full", "use_galore": True,
                               "galore_layerwise": True, "pure_bf16": True}),
    "badam": ((16, 32, 160), {"finetuning_type": "full", "use_badam": True, "pure_bf16": True}),
    "qlora_8bit": ((10, 20, 80), {"finetuning_type": "lora", "quantization_bit": 8}),
    "qlora_4bit": ((6, 12, 48), {"finetuning_type": "lora", "quantization_bit": 4}),
}


@pytest.mark.parametrize("method", list(README_GB))
def test_estimate_within_25_percent_of_llamafactory_readme(method: str) -> None:
    figures, cfg = README_GB[method]
    base = {"stage": "sft", "bf16": True, "per_device_train_batch_size": 1, "cutoff_len": 512}
    for size, readme_gb in zip(("7B", "14B", "70B"), figures, strict=True):
        e = est({**base, **cfg}, params=size)
        got_gb = e.per_gpu_bytes / 1e9
        assert abs(got_gb / readme_gb - 1) <= 0.25, (method, size, got_gb, readme_gb)


def test_bytes_per_param_ordering_matches_the_readme_rows() -> None:
    base = {"bf16": True, "cutoff_len": 512}
    totals = {m: est({**base, **cfg}, params="7B").per_gpu_bytes for m, (_, cfg) in README_GB.items()}
    assert totals["full_bf16"] > totals["full_pure_bf16"] > totals["lora"]
    assert totals["lora"] > totals["qlora_8bit"] > totals["qlora_4bit"]


# --- exact parameter counts ----------------------------------------------------------------

TINY = {
    "model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": 300,
    "tie_word_embeddings": False,
}


def test_lora_trainable_count_matches_a_hand_computation() -> None:
    shape = shape_from_config(TINY, "test")
    # head_dim 16, kv width 2*16 = 32. LoRA adds r*(in+out) per wrapped linear:
    # q 64->64, k 64->32, v 64->32, o 64->64, gate 64->128, up 64->128, down 128->64.
    r = 8
    per_layer = r * ((64 + 64) + (64 + 32) + (64 + 32) + (64 + 64) + (64 + 128) * 2 + (128 + 64))
    assert lora_trainable(shape, lora_targets({"lora_target": "all"}, shape), r) \
        == 2 * per_layer
    # A comma list picks only those modules; DoRA adds one magnitude per output feature.
    qv = lora_targets({"lora_target": "q_proj, v_proj"}, shape)
    assert qv == ["q_proj", "v_proj"]
    assert lora_trainable(shape, qv, r, dora=True) == 2 * (r * (128 + 96) + 64 + 32)


def test_total_params_from_config_json_match_transformers_and_lora_matches_peft(
    tmp_path: Path,
) -> None:
    torch = pytest.importorskip("torch")  # tests may import torch; the estimator never does
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, LlamaConfig

    cfg = LlamaConfig(**{k: v for k, v in TINY.items() if k != "model_type"})
    cfg.save_pretrained(tmp_path)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg)
    total = sum(p.numel() for p in model.parameters())

    e = est({"model_name_or_path": str(tmp_path), "finetuning_type": "lora", "lora_rank": 4,
             "lora_target": "all", "use_dora": True, "bf16": True})
    assert e.shape.total_params == total
    assert e.shape.source.startswith("config.json at ")

    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear",
                                                  use_dora=True, task_type="CAUSAL_LM"))
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    assert e.trainable_params == trainable


def test_reference_shapes_have_the_published_sizes() -> None:
    # The table is used when only a size is known: each entry must land on its size.
    for size in (0.5, 1.5, 3, 7, 8, 13, 14, 32, 70, 72):
        shape = assumed_shape(size)
        assert abs(shape.total_params / 1e9 / size - 1) < 0.12, (size, shape.source)
    assert "Qwen2.5-7B" in resolve_shape("/models/Qwen2.5-7B-Instruct").source
    # A size not in the table keeps a reference block and scales the depth.
    odd = assumed_shape(20)
    assert abs(odd.total_params / 20e9 - 1) < 0.02 and "layers" in odd.source


def test_multimodal_config_uses_the_text_config() -> None:
    shape = shape_from_config({"model_type": "qwen2_vl", "text_config": TINY}, "x")
    assert shape.num_layers == 2 and shape.hidden_size == 64


def test_unknown_model_size_says_to_pass_params() -> None:
    with pytest.raises(ConfigError) as exc:
        est({"model_name_or_path": "some-org/mystery-model"})
    assert "--params" in str(exc.value)


# --- sharding, activations, quantization, optimizers ---------------------------------------


def _ds(tmp_path: Path, stage: int, **extra: object) -> str:
    p = tmp_path / f"ds_z{stage}.json"
    p.write_text(json.dumps({"zero_optimization": {"stage": stage, **extra}}))
    return str(p)


def test_zero3_divides_weights_gradients_and_optimizer_by_world_size(tmp_path: Path) -> None:
    cfg = {"finetuning_type": "full", "bf16": True, "deepspeed": _ds(tmp_path, 3)}
    one = est(cfg, params="7B", num_gpus=1)
    eight = est(cfg, params="7B", num_gpus=8)
    for name in ("gradients", "optimizer states"):
        assert eight.component(name).bytes == pytest.approx(one.component(name).bytes / 8)
    # Weights: the shard shrinks 8x; both keep the same ~2 gathered layers on top.
    gather = 2 * one.shape.layer_params * 2
    assert eight.component("weights").bytes - gather == pytest.approx(
        (one.component("weights").bytes - gather) / 8)
    assert eight.per_gpu_bytes < one.per_gpu_bytes / 3


def test_zero_stages_shard_progressively_and_offload_moves_optimizer_to_cpu(
    tmp_path: Path,
) -> None:
    base = {"finetuning_type": "full", "bf16": True}
    per = {s: est({**base, "deepspeed": _ds(tmp_path, s)}, params="7B", num_gpus=4)
           for s in (1, 2, 3)}
    assert per[1].per_gpu_bytes > per[2].per_gpu_bytes > per[3].per_gpu_bytes
    off = est({**base, "deepspeed": _ds(tmp_path, 3, offload_optimizer={"device": "cpu"},
                                         offload_param={"device": "cpu"})},
              params="7B", num_gpus=4)
    assert off.component("optimizer states").bytes == 0
    assert off.component("weights").bytes < per[3].component("weights").bytes
    assert any("offloaded" in a for a in off.assumptions)


def test_gradient_checkpointing_lowers_activations_and_is_on_by_default() -> None:
    cfg = {"finetuning_type": "lora", "bf16": True, "cutoff_len": 2048,
           "per_device_train_batch_size": 2}
    default = est(cfg, params="7B").component("activations").bytes
    off = est({**cfg, "disable_gradient_checkpointing": True}, params="7B")
    assert off.component("activations").bytes > 5 * default
    assert any("gradient checkpointing off" in a for a in off.assumptions)


def test_eager_attention_adds_a_quadratic_term() -> None:
    cfg = {"finetuning_type": "lora", "bf16": True, "disable_gradient_checkpointing": True}

    def act(attn: str, n: int) -> float:
        return est({**cfg, "flash_attn": attn, "cutoff_len": n}, params="7B").component(
            "activations").bytes

    # sdpa: linear in the length; eager: more, and growing faster than linearly.
    assert act("sdpa", 4096) == pytest.approx(2 * act("sdpa", 2048))
    assert act("disabled", 2048) > act("sdpa", 2048)
    assert act("disabled", 4096) > 2 * act("disabled", 2048)


def test_liger_removes_the_logits_buffer_and_shrinks_activations() -> None:
    cfg = {"finetuning_type": "lora", "bf16": True, "cutoff_len": 4096, "per_device_train_batch_size": 1}
    plain = est(cfg, params="Qwen2.5-7B")
    liger = est({**cfg, "enable_liger_kernel": True}, params="Qwen2.5-7B")
    # Logits: tokens x vocab x (2 bf16 + 4 fp32 upcast + 4 log-softmax) bytes.
    assert plain.component("logits").bytes == 4096 * 152064 * 10
    assert liger.component("logits").bytes == 0
    assert liger.component("activations").bytes < plain.component("activations").bytes


def test_double_quantization_saves_the_documented_bits_per_param() -> None:
    cfg = {"finetuning_type": "lora", "bf16": True, "quantization_bit": 4}
    dq = est({**cfg, "double_quantization": True}, params="7B")
    single = est({**cfg, "double_quantization": False}, params="7B")
    saved = single.component("weights").bytes - dq.component("weights").bytes
    assert saved == pytest.approx(dq.shape.block_linear_params * (0.5 - 0.127) / 8)


def test_8bit_optimizer_quarters_the_optimizer_states() -> None:
    cfg = {"finetuning_type": "full", "pure_bf16": True}
    adam = est(cfg, params="7B").component("optimizer states").bytes
    adam8 = est({**cfg, "optim": "adamw_8bit"}, params="7B").component("optimizer states").bytes
    # pure bf16 AdamW: two bf16 moments (4 B/param); 8-bit: two 1-byte moments.
    assert adam8 == pytest.approx(adam / 2)
    amp = est({"finetuning_type": "full", "bf16": True}, params="7B")
    assert amp.component("optimizer states").bytes == pytest.approx(amp.shape.total_params * 8)


def test_gradients_and_optimizer_only_for_trainable_params() -> None:
    e = est({"finetuning_type": "lora", "bf16": True, "lora_rank": 8}, params="7B")
    assert e.component("gradients").bytes == e.trainable_params * 4
    assert e.component("optimizer states").bytes == e.trainable_params * 8
    frz = est({"finetuning_type": "freeze", "bf16": True, "freeze_trainable_layers": 2},
              params="7B")
    assert frz.trainable_params == 2 * frz.shape.layer_params


def test_dpo_full_adds_a_reference_model_and_doubles_sequences() -> None:
    sft = est({"stage": "sft", "finetuning_type": "full", "bf16": True}, params="7B")
    dpo = est({"stage": "dpo", "finetuning_type": "full", "bf16": True}, params="7B")
    assert dpo.component("reference model").bytes == dpo.shape.total_params * 2
    assert dpo.component("activations").bytes == pytest.approx(
        2 * sft.component("activations").bytes)
    lora_dpo = est({"stage": "dpo", "finetuning_type": "lora", "bf16": True}, params="7B")
    assert lora_dpo.component("reference model") is None  # the adapter is switched off instead


def test_verdict_with_gpu_memory_and_headroom() -> None:
    cfg = {"finetuning_type": "lora", "bf16": True, "cutoff_len": 1024}
    big = est(cfg, params="7B", gpu_mem_gib=80)
    small = est(cfg, params="7B", gpu_mem_gib=8)
    assert big.fits is True and big.headroom_bytes == pytest.approx(80 * GiB - big.per_gpu_bytes)
    assert small.fits is False and "does not fit" in small.verdict()
    unknown = est(cfg, params="7B")
    assert unknown.fits is None and "pass --gpu-mem" in unknown.verdict()


def test_format_bytes() -> None:
    assert format_bytes(14.2 * GiB) == "14.2 GiB"
    assert format_bytes(512 * 1024**2) == "512.0 MiB"


# --- the command ----------------------------------------------------------------------------


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tunedeck.runner.cli", "estimate", *args],
                          capture_output=True, text=True, cwd=REPO, timeout=60,
                          env={**os.environ, "COLUMNS": "160", **(env or {})})


def test_estimate_command_prints_components_and_verdict(tmp_path: Path) -> None:
    cfg = tmp_path / "lora7b.yaml"
    cfg.write_text("# 7B LoRA\nmodel_name_or_path: /nowhere/Qwen2.5-7B-Instruct\n"
                   "finetuning_type: lora\ncutoff_len: 2048\nbf16: true\n")
    out = _cli(str(cfg), "per_device_train_batch_size=2", "--gpu-mem", "24")
    assert out.returncode == 0, out.stderr
    for name in ("weights", "optimizer states", "activations", "logits", "total"):
        assert name in out.stdout
    assert "fits" in out.stdout and "24.0 GiB" in out.stdout
    js = _cli(str(cfg), "--json", "--params", "7B", env={"TUNEDECK_FAKE_NVML": "gpu2"})
    data = json.loads(js.stdout)
    # Two RTX 4090s detected through (fake) NVML: 24 GB each, both counted as ranks.
    assert data["num_gpus"] == 2 and data["gpu_mem_bytes"] > 20 * GiB
    assert data["fits"] in (True, False) and data["verdict"]


def test_verdict_names_the_first_guide_level_that_fits() -> None:
    from tunedeck.runner.config.presets import OPTIMIZATION_LEVELS

    e = estimate({"finetuning_type": "full", "bf16": True, "cutoff_len": 2048,
                  "per_device_train_batch_size": 4}, params="7B", gpu_mem_gib=24,
                 detect_gpus=False)
    assert e.fits is False
    # Levels apply cumulatively, in the guide's order, and each one lowers the estimate.
    assert [lv.level for lv in e.levels] == [lv.number for lv in OPTIMIZATION_LEVELS]
    sizes = [e.per_gpu_bytes] + [lv.per_gpu_bytes for lv in e.levels]
    assert sizes == sorted(sizes, reverse=True)
    # Full fine-tuning of 7B does not fit 24 GiB until the QLoRA level switches method.
    fit = e.fitting_level
    assert fit is not None and fit.patch.get("quantization_bit") == 4
    assert fit.title in e.verdict() and "does not fit" in e.verdict()


@pytest.mark.parametrize(("dtype", "weight_bytes"), [("bfloat16", 2), ("float32", 4)])
def test_without_bf16_or_fp16_the_checkpoint_dtype_decides(
    tmp_path: Path, dtype: str, weight_bytes: int
) -> None:
    (tmp_path / "config.json").write_text(json.dumps({**TINY, "torch_dtype": dtype}))
    e = est({"model_name_or_path": str(tmp_path), "finetuning_type": "lora"})
    frozen = e.component("weights").bytes - e.trainable_params * 4  # adapters upcast to fp32
    assert frozen == e.shape.total_params * weight_bytes
    assert e.component("autocast weight copies") is None   # no autocast without bf16/fp16
