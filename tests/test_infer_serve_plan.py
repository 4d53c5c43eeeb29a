"""The commands ``tunedeck serve`` would run on a GPU box (vLLM, SGLang), checked on their argv,
and the guards that stop them here with a clear word."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunedeck.runner.errors import ConfigError, LaunchError
from tunedeck.runner.infer import serve
from tunedeck.runner.infer.spec import InferSpec


def _spec(tmp: Path, step: int | None, rank: int = 8, backend: str = "vllm") -> InferSpec:
    run = tmp / "run"
    adapters: tuple[str, ...] = ()
    ck = None
    if step is not None:
        ck = run / f"checkpoint-{step}"
        ck.mkdir(parents=True, exist_ok=True)
        (ck / "adapter_config.json").write_text(json.dumps({"r": rank}))
        adapters = (str(ck),)
    return InferSpec(label=f"demo @ checkpoint-{step}", kind="run", model_name_or_path="/models/base",
                     adapters=adapters, infer_backend=backend, run_dir=run, checkpoint=ck,
                     values={"infer_dtype": "bfloat16", "vllm_maxlen": 4096, "vllm_gpu_util": 0.85})


def test_vllm_serves_every_checkpoint_as_a_named_lora_module_and_keeps_the_key_off_argv(tmp_path: Path) -> None:
    specs = [_spec(tmp_path, 4, rank=8), _spec(tmp_path, 8, rank=64)]
    ids = [serve.model_id(s, "demo") for s in specs]
    assert ids == ["demo@checkpoint-4", "demo@checkpoint-8"]
    plan = serve.plan_serve(specs, ids, tmp_path / "job", host="0.0.0.0", port=8001, api_key="sk-secret")
    argv = plan.argv
    assert argv[1:3] == ["serve", "/models/base"]
    assert argv[argv.index("--host") + 1] == "0.0.0.0" and argv[argv.index("--port") + 1] == "8001"
    assert argv[argv.index("--dtype") + 1] == "bfloat16"
    assert argv[argv.index("--max-model-len") + 1] == "4096"
    assert argv[argv.index("--gpu-memory-utilization") + 1] == "0.85"
    assert "--enable-lora" in argv
    assert argv[argv.index("--max-lora-rank") + 1] == "64"   # the largest adapter's rank
    mods = argv[argv.index("--lora-modules") + 1:]
    assert mods == [f"demo@checkpoint-4={tmp_path}/run/checkpoint-4", f"demo@checkpoint-8={tmp_path}/run/checkpoint-8"]
    assert "sk-secret" not in " ".join(argv)
    assert plan.secret_env == {"VLLM_API_KEY": "sk-secret"}


def test_sglang_gets_lora_paths_and_refuses_a_key_it_would_expose(tmp_path: Path) -> None:
    specs = [_spec(tmp_path, 4, backend="sglang")]
    plan = serve.plan_serve(specs, ["demo@checkpoint-4"], tmp_path / "job", host="127.0.0.1", port=30000,
                            api_key=None)
    assert plan.argv[1:3] == ["-m", "sglang.launch_server"]
    assert plan.argv[plan.argv.index("--model-path") + 1] == "/models/base"
    assert plan.argv[plan.argv.index("--lora-paths") + 1] == f"demo@checkpoint-4={tmp_path}/run/checkpoint-4"
    with pytest.raises(ConfigError, match="ps shows it"):
        serve.plan_serve(specs, ["x"], tmp_path / "job", host="127.0.0.1", port=1, api_key="k")


def test_huggingface_backend_runs_our_server_with_the_key_in_the_environment(tmp_path: Path) -> None:
    specs = [_spec(tmp_path, 4, backend="huggingface")]
    plan = serve.plan_serve(specs, ["demo@checkpoint-4"], tmp_path / "job", host="127.0.0.1", port=0,
                            api_key="k-123")
    assert plan.argv[1:] == ["-m", "tunedeck.runner.infer.server", str(tmp_path / "job" / "serve.json")]
    assert plan.secret_env == {"TUNEDECK_SERVE_API_KEY": "k-123"} and plan.env == {}


def test_gpu_backends_say_what_is_missing_on_this_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("vllm", "sglang") else real(name, *a))
    with pytest.raises(LaunchError, match="vllm package is not installed") as e:
        serve.require_gpu_backend("vllm")
    assert "infer_backend=huggingface" in (e.value.hint or "")
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: object() if name in ("vllm", "sglang") else real(name, *a))
    monkeypatch.setattr(serve, "_cuda_devices", lambda: 0)
    with pytest.raises(LaunchError, match="needs a CUDA GPU"):
        serve.require_gpu_backend("sglang")


@pytest.mark.parametrize(("host", "ok"), [("127.0.0.1", True), ("localhost", True), ("::1", True),
                                          ("127.0.0.5", True), ("0.0.0.0", False), ("10.1.2.3", False),
                                          ("::", False)])
def test_only_loopback_may_go_without_a_key(host: str, ok: bool) -> None:
    if ok:
        serve.check_exposure(host, None)
    else:
        with pytest.raises(ConfigError, match="--api-key"):
            serve.check_exposure(host, None)
        serve.check_exposure(host, "a-key")


def test_predict_on_vllm_builds_the_engine_and_sampling_llamafactory_uses(tmp_path: Path) -> None:
    from tunedeck.runner.infer.predict import vllm_engine_kwargs, vllm_sampling_kwargs
    from tunedeck.runner.infer.spec import GenConfig

    spec = _spec(tmp_path, 8, rank=16)
    kw = vllm_engine_kwargs(spec, n_devices=4)
    assert kw["model"] == "/models/base" and kw["dtype"] == "auto" and kw["tensor_parallel_size"] == 4
    assert kw["enable_lora"] is True and kw["max_model_len"] == 4096 and kw["gpu_memory_utilization"] == 0.85
    greedy = vllm_sampling_kwargs(GenConfig(temperature=0.0, max_new_tokens=64), [2, 7], 42)
    assert greedy["temperature"] == 0.0 and greedy["top_k"] == -1 and greedy["top_p"] == 1.0
    assert greedy["max_tokens"] == 64 and greedy["stop_token_ids"] == [2, 7] and greedy["seed"] == 42
    sampled = vllm_sampling_kwargs(GenConfig(), [2], None)   # LLaMA-Factory's defaults
    assert (sampled["temperature"], sampled["top_p"], sampled["top_k"]) == (0.95, 0.7, 50)
