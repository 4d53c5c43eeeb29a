"""LLaMA-Factory's inference and export keys in the schema, with their rules."""

from __future__ import annotations

from pathlib import Path

from tunedeck.runner.config.schema import PARAMS
from tunedeck.runner.config.validate import validate_path
from tunedeck.runner.infer import GENERATION_KEYS, GenConfig


def _errors(path: Path, *overrides: str) -> dict[str, str]:
    return {f.code: f.key or "" for f in validate_path(path, list(overrides), check_files=False)
            if f.severity == "error"}


def test_generation_keys_have_llamafactory_defaults() -> None:
    # hparams/generating_args.py
    lf = {"do_sample": True, "temperature": 0.95, "top_p": 0.7, "top_k": 50, "num_beams": 1,
          "max_length": 1024, "max_new_tokens": 1024, "repetition_penalty": 1.0, "length_penalty": 1.0,
          "skip_special_tokens": True}
    assert {k: PARAMS[k].default for k in GENERATION_KEYS} == lf
    assert GenConfig.from_values({}).to_dict() == lf
    for key in ("infer_backend", "infer_dtype", "export_dir", "export_size", "export_device",
                "export_legacy_format", "export_quantization_bit", "export_quantization_dataset",
                "export_quantization_nsamples", "export_quantization_maxlen", "export_hub_model_id",
                "vllm_maxlen", "vllm_gpu_util", "vllm_enforce_eager", "vllm_max_lora_rank", "vllm_config",
                "do_predict", "predict_with_generate", "eval_dataset", "per_device_eval_batch_size"):
        assert key in PARAMS, key
    assert set(PARAMS["infer_backend"].choices or ()) >= {"huggingface", "vllm", "sglang"}


def test_quantizing_with_adapters_attached_is_refused_like_llamafactory(tmp_path: Path, make_demo_config) -> None:
    cfg = make_demo_config(tmp_path)
    errs = _errors(cfg, "export_quantization_bit=4", "export_quantization_dataset=c4",
                   f"adapter_name_or_path={tmp_path}")
    assert "export-quant-adapters" in errs
    assert "export-quant-adapters" not in _errors(cfg, "export_quantization_bit=4", "export_quantization_dataset=c4")
    assert "export-quant-dataset" in _errors(cfg, "export_quantization_bit=4")


def test_export_size_takes_whole_or_fractional_gigabytes_but_not_zero(tmp_path: Path, make_demo_config) -> None:
    cfg = make_demo_config(tmp_path)
    assert "range" not in _errors(cfg, "export_size=0.0001") and "type" not in _errors(cfg, "export_size=2")
    assert _errors(cfg, "export_size=0").get("range") == "export_size"
