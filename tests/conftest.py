"""Shared fixtures: a tiny offline model and the demo data (built once per test run),
a helper that writes a small CPU training config pointing at them, and an environment
that keeps every test offline, single-threaded and out of the user's home.

- ``tiny_model_dir``: a LLaMA-architecture model + tokenizer from
  :func:`tunedeck.runner.train.tiny.build_tiny_model` (hidden 64, 2 layers; ~140k parameters).
- ``demo_data_dir``: :func:`tunedeck.runner.data.demo.write_demo_data` output with ``dataset_info.json``.
- ``demo_run(env={...}, **overrides) -> DemoRun``: ``make_demo_config``'s config with its output
  dir and the environment the control tests run the CLI with (tests/control_helpers.py).
- ``supervisor``: a live process standing in for a running run's supervisor (a ``ProcRef``).
- ``make_demo_config(tmp_path, **overrides) -> Path``: ``tmp_path/demo.yaml`` for a 12-step
  LoRA SFT run on CPU (output in ``tmp_path/out``); overrides replace or add keys, and a
  value of ``None`` removes the key.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
import pytest

if TYPE_CHECKING:
    from tests.control_helpers import DemoRun
    from tunedeck.runner.rundir.manifest import ProcRef

MakeConfig = Callable[..., Path]


@pytest.fixture(scope="session", autouse=True)
def _session_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Environment for the whole session, so module- and session-scoped fixtures get it too."""
    cache = tmp_path_factory.mktemp("tunedeck-cache")
    with pytest.MonkeyPatch.context() as mp:
        # Two threads on the two shared CI cores run training several times slower.
        mp.setenv("OMP_NUM_THREADS", "1")
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("HF_DATASETS_OFFLINE", "1")
        mp.setenv("TOKENIZERS_PARALLELISM", "false")
        # No stray ~/.cache/huggingface/accelerate/default_config.yaml, no user registry.
        mp.setenv("HF_HOME", str(cache / "hf"))
        mp.setenv("TUNEDECK_HOME", str(tmp_path_factory.mktemp("home")))
        # The tokenized-dataset cache is shared by the whole session: same data, same key.
        mp.setenv("TUNEDECK_CACHE_DIR", str(cache / "tunedeck"))
        mp.delenv("TUNEDECK_FAULT", raising=False)
        mp.delenv("SWANLAB_API_KEY", raising=False)
        yield cache


@pytest.fixture(autouse=True)
def _per_test_home(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Each test gets its own ``TUNEDECK_HOME`` (run registry, settings), and no NVML facade
    left by the test before: the process-wide one is chosen from ``TUNEDECK_FAKE_NVML`` at its
    first use, so a test that ran the TUI with ``none`` would otherwise leave the next test's
    app without GPUs (seen: test_slurm's dashboard, then test_tui_app's gauges)."""
    monkeypatch.setenv("TUNEDECK_HOME", str(tmp_path_factory.mktemp("home")))
    yield
    nvml = sys.modules.get("tunedeck.runner.monitor.nvml")
    if nvml is not None:
        nvml.reset_nvml()


@pytest.fixture(autouse=True)
def _fake_gpus(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """``@pytest.mark.fake_gpus("gpu2")``: the test's app sees that fake NVML (no NVML state
    left from an earlier test) and its own ``TUNEDECK_HOME`` in its ``tmp_path``."""
    mark = request.node.get_closest_marker("fake_gpus")
    if mark is not None:
        from tests.tui_helpers import use_fake_gpus

        use_fake_gpus(monkeypatch, mark.args[0], home=request.getfixturevalue("tmp_path") / "home")


@pytest.fixture
def supervisor() -> Iterator[ProcRef]:
    """A live process to stand in for a running run's supervisor (pid + start time)."""
    from tunedeck.runner.rundir.manifest import ProcRef

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        yield ProcRef(pid=proc.pid, create_time=psutil.Process(proc.pid).create_time())
    finally:
        proc.kill()
        proc.wait(10)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tunedeck.runner.train.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("model") / "tiny-llama", seed=0, hidden=64, layers=2)


@pytest.fixture(scope="session")
def demo_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tunedeck.runner.data.demo import write_demo_data

    out = tmp_path_factory.mktemp("data") / "demo"
    write_demo_data(out, seed=0, n=400)
    return out


def demo_config_values(model_dir: Path, data_dir: Path, out_dir: Path) -> dict[str, Any]:
    """The small CPU LoRA SFT config the fixtures write (a dict, for tests that want it)."""
    return {
        "model_name_or_path": str(model_dir),
        "stage": "sft",
        "do_train": True,
        "finetuning_type": "lora",
        "lora_rank": 8,
        "lora_target": "all",
        "template": "default",
        "dataset": "demo_alpaca",
        "dataset_dir": str(data_dir),
        "cutoff_len": 64,
        "per_device_train_batch_size": 4,
        "learning_rate": 2.0e-3,
        "max_steps": 12,
        "logging_steps": 1,
        "save_steps": 4,
        "disable_gradient_checkpointing": True,
        "output_dir": str(out_dir),
        "report_to": "none",
        "use_cpu": True,
        "seed": 42,
    }


@pytest.fixture(scope="session")
def make_demo_config(tiny_model_dir: Path, demo_data_dir: Path) -> MakeConfig:
    def make(tmp_path: Path, **overrides: Any) -> Path:
        values = demo_config_values(tiny_model_dir, demo_data_dir, Path(tmp_path) / "out")
        for k, v in overrides.items():
            if v is None:
                values.pop(k, None)
            else:
                values[k] = v
        path = Path(tmp_path) / "demo.yaml"
        # JSON scalars are valid YAML; one key per line keeps validator line numbers useful.
        path.write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in values.items()), encoding="utf-8")
        return path

    return make


@pytest.fixture
def demo_run(tmp_path: Path, make_demo_config: MakeConfig) -> Callable[..., DemoRun]:
    """``demo_run(env={...}, **overrides)``: the demo config in ``tmp_path`` (overrides as for
    ``make_demo_config``), its output dir ``tmp_path/out`` and the control tests' CLI
    environment with its own registry in ``tmp_path/home`` (plus ``env``)."""
    from tests.control_helpers import DemoRun, control_env

    def make(*, env: dict[str, str] | None = None, **overrides: Any) -> DemoRun:
        return DemoRun(make_demo_config(tmp_path, **overrides), tmp_path / "out",
                       control_env(tmp_path / "home", **(env or {})))

    return make


@pytest.fixture(scope="session")
def trained_demo_run(tmp_path_factory: pytest.TempPathFactory, make_demo_config: MakeConfig) -> Path:
    """A finished 300-step demo LoRA run (the demo's settings), laid out as `tunedeck launch`
    leaves it: checkpoint-100/200/300, final adapter, and the frozen ``config.yaml``.
    For chat, export, serve and predict tests: the model answers in the demo data's shape."""
    import shutil

    from train_helpers import diagnostics, run_trainer

    tmp = tmp_path_factory.mktemp("demo-run")
    cfg = make_demo_config(tmp, max_steps=300, save_steps=100, learning_rate=3.0e-3,
                           per_device_train_batch_size=8, cutoff_len=128, lr_scheduler_type="cosine",
                           warmup_steps=20, logging_steps=10)
    proc = run_trainer(cfg)
    assert proc.returncode == 0, diagnostics(proc)
    out = tmp / "out"
    shutil.copyfile(cfg, out / "config.yaml")
    return out
