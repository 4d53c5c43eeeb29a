"""``tunedeck serve``'s control side (no torch): what to serve, the command that serves it,
and starting it as a supervised job.

- ``infer_backend: huggingface`` (the default): ``python -m tunedeck.runner.infer.server``,
  FastAPI + uvicorn in the job's process, generation through the run's template.
- ``infer_backend: vllm``: ``vllm serve BASE --enable-lora --lora-modules name=path ...``,
  every chosen checkpoint a named LoRA module of one base; needs vLLM and CUDA.
- ``infer_backend: sglang``: ``python -m sglang.launch_server`` with ``--lora-paths``;
  needs SGLang and CUDA.

The API key never goes on a command line (``ps`` and the manifest would show it): our server
reads ``TUNEDECK_SERVE_API_KEY``, vLLM ``VLLM_API_KEY``; SGLang takes it only as ``--api-key``,
so with SGLang a key is refused rather than exposed.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunedeck.runner.errors import ConfigError, LaunchError

SERVE_SPEC = "serve.json"
SERVER_INFO = "server.json"
API_KEY_ENV = "TUNEDECK_SERVE_API_KEY"
VLLM_API_KEY_ENV = "VLLM_API_KEY"
DEFAULT_PORT = 8000   # LLaMA-Factory's API_PORT default


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, api_key: str | None) -> None:
    """Binding anything but loopback without a key would hand the model to the network."""
    if not is_loopback(host) and not api_key:
        raise ConfigError(
            f"--host {host} makes the server reachable from other machines, and no --api-key was given",
            hint="pass --api-key KEY (clients send Authorization: Bearer KEY), or serve on 127.0.0.1 "
                 "and reach it through an SSH tunnel (ssh -L 8000:127.0.0.1:8000 ...)",
        )


@dataclass
class ServePlan:
    """Exactly what the job runs."""

    backend: str
    argv: list[str]
    model_ids: list[str]
    env: dict[str, str] = field(default_factory=dict)          # recorded
    secret_env: dict[str, str] = field(default_factory=dict)   # passed, recorded as ***
    notes: list[str] = field(default_factory=list)


def _cuda_devices() -> int:
    from tunedeck.runner.control.launch import visible_gpu_count

    return visible_gpu_count()


def require_gpu_backend(backend: str) -> None:
    """vLLM and SGLang serve on CUDA GPUs only; say so plainly when either is missing."""
    import importlib.util

    module = {"vllm": "vllm", "sglang": "sglang"}[backend]
    if importlib.util.find_spec(module) is None:
        raise LaunchError(f"infer_backend {backend}: the {module} package is not installed here",
                          hint=f"pip install {module} on a CUDA machine, or serve with "
                               "infer_backend=huggingface")
    if _cuda_devices() == 0:
        raise LaunchError(f"infer_backend {backend} needs a CUDA GPU and this machine has none visible",
                          hint="serve with infer_backend=huggingface (transformers, CPU or GPU)")


def _lora_rank(adapter_dir: str) -> int | None:
    try:
        cfg = json.loads((Path(adapter_dir) / "adapter_config.json").read_text())
        return int(cfg.get("r")) if cfg.get("r") else None
    except (OSError, ValueError, TypeError):
        return None


def _one_base(specs: Sequence[Any], engine: str) -> str:
    """The base model every spec shares (vLLM and SGLang serve one base with its adapters)."""
    base = specs[0].model_name_or_path
    if any(s.model_name_or_path != base for s in specs):
        raise ConfigError(f"{engine} serves one base model: these checkpoints have different bases")
    return str(base)


def vllm_argv(specs: Sequence[Any], ids: Sequence[str], host: str, port: int,
              values: dict[str, Any]) -> list[str]:
    """``vllm serve`` for one base and every checkpoint as a named LoRA module."""
    base = _one_base(specs, "vLLM")
    argv = [shutil.which("vllm") or "vllm", "serve", base, "--host", host, "--port", str(port),
            "--served-model-name", Path(base).name or base]
    dtype = values.get("infer_dtype") or "auto"
    argv += ["--dtype", str(dtype)]
    if values.get("vllm_maxlen"):
        argv += ["--max-model-len", str(values["vllm_maxlen"])]
    if values.get("vllm_gpu_util") is not None:
        argv += ["--gpu-memory-utilization", str(values["vllm_gpu_util"])]
    if values.get("vllm_enforce_eager"):
        argv += ["--enforce-eager"]
    if values.get("trust_remote_code"):
        argv += ["--trust-remote-code"]
    adapters = [(i, s.adapters[-1]) for i, s in zip(ids, specs, strict=True) if s.adapters]
    if any(len(s.adapters) > 1 for s in specs):
        raise ConfigError("vLLM applies one LoRA adapter per request: merge the earlier adapters first",
                          hint="tunedeck export RUN, then serve the exported model")
    if adapters:
        ranks = [r for r in (_lora_rank(p) for _, p in adapters) if r]
        rank = max([int(values.get("vllm_max_lora_rank") or 32), *ranks])
        argv += ["--enable-lora", "--max-lora-rank", str(rank), "--max-loras", str(len(adapters)),
                 "--lora-modules", *[f"{i}={p}" for i, p in adapters]]
    extra = values.get("vllm_config")
    if isinstance(extra, str) and extra.strip():
        extra = json.loads(extra)
    if isinstance(extra, dict):
        for k, v in extra.items():
            flag = "--" + str(k).replace("_", "-")
            if v is True:
                argv.append(flag)
            elif v not in (False, None):
                argv += [flag, str(v)]
    return argv


def sglang_argv(specs: Sequence[Any], ids: Sequence[str], host: str, port: int,
                values: dict[str, Any]) -> list[str]:
    """SGLang's server for one base and every checkpoint as a named LoRA path."""
    base = _one_base(specs, "SGLang")
    argv = [sys.executable, "-m", "sglang.launch_server", "--model-path", base, "--host", host,
            "--port", str(port), "--dtype", str(values.get("infer_dtype") or "auto")]
    if values.get("sglang_mem_fraction") is not None:
        argv += ["--mem-fraction-static", str(values["sglang_mem_fraction"])]
    if values.get("sglang_maxlen"):
        argv += ["--context-length", str(values["sglang_maxlen"])]
    if values.get("trust_remote_code"):
        argv += ["--trust-remote-code"]
    adapters = [f"{i}={s.adapters[-1]}" for i, s in zip(ids, specs, strict=True) if s.adapters]
    if adapters:
        argv += ["--lora-paths", *adapters]
    return argv


def plan_serve(specs: Sequence[Any], ids: Sequence[str], job_dir: Path, *, host: str, port: int,
               api_key: str | None) -> ServePlan:
    """The command for the specs' ``infer_backend`` (all specs share the first one's)."""
    backend = specs[0].infer_backend
    values = dict(specs[0].values)
    if backend == "huggingface":
        plan = ServePlan(backend, [sys.executable, "-m", "tunedeck.runner.infer.server",
                                   str(job_dir / SERVE_SPEC)], list(ids))
        if api_key:
            plan.secret_env[API_KEY_ENV] = api_key
        return plan
    if backend == "vllm":
        argv = vllm_argv(specs, ids, host, port, values)
        plan = ServePlan(backend, argv, list(ids))
        if api_key:
            plan.secret_env[VLLM_API_KEY_ENV] = api_key
        return plan
    if backend == "sglang":
        if api_key:
            raise ConfigError("SGLang takes an API key only on its command line, where ps shows it",
                              hint="serve with infer_backend=vllm or huggingface to use --api-key")
        return ServePlan(backend, sglang_argv(specs, ids, host, port, values), list(ids))
    raise ConfigError(f"infer_backend {backend!r} is not one of huggingface, vllm, sglang",
                      key="infer_backend")


def job_dir_for(spec: Any, explicit: str | None) -> Path:
    """Where the serve job lives: ``--dir``, else ``serve/`` in the run directory (or beside
    an exported model / a config's output_dir)."""
    if explicit:
        return Path(explicit).expanduser().resolve()
    if spec.run_dir is not None:
        return Path(spec.run_dir) / "serve"
    if spec.kind == "export":
        return Path(spec.model_name_or_path).resolve().parent / (Path(spec.model_name_or_path).name + "-serve")
    out = (spec.values or {}).get("output_dir")
    if out:
        return Path(str(out)).expanduser().resolve() / "serve"
    raise ConfigError("tell tunedeck where the server's run directory goes", hint="--dir DIR")


def model_id(spec: Any, run_name: str | None) -> str:
    """``name`` for a run's final weights, ``name@checkpoint-N`` for a checkpoint and
    ``name@base`` for the base model a LoRA run started from."""
    base = run_name or spec.label.split(" @ ")[0]
    if spec.kind == "run" and spec.checkpoint is None and not spec.adapters:
        return f"{base}@base"
    if spec.checkpoint is not None and spec.run_dir is not None and \
            Path(str(spec.checkpoint)).resolve() != Path(str(spec.run_dir)).resolve():
        return f"{base}@{Path(str(spec.checkpoint)).name}"
    return base


def _probe_health(host: str, port: int) -> bool:
    import urllib.error
    import urllib.request

    shown = f"[{host}]" if ":" in host else host
    try:
        with urllib.request.urlopen(f"http://{shown}:{port}/health", timeout=2) as r:  # noqa: S310 - our own loopback/host
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def wait_ready(job_dir: Path, started_after: float, timeout: float) -> dict[str, Any]:
    """The server's ``server.json`` once it listens; raise with the log when the job ended.

    Our server writes ``server.json`` itself; for vLLM / SGLang we write it once their
    ``/health`` answers."""
    from tunedeck.runner.fsutil import atomic_write_json, read_json
    from tunedeck.runner.rundir.logs import tail_lines
    from tunedeck.runner.rundir.manifest import read_manifest
    from tunedeck.runner.rundir.protocol import STDOUT_LOG

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = read_json(job_dir / SERVER_INFO)
        if isinstance(info, dict) and float(info.get("started_at") or 0) >= started_after:
            return info
        spec = read_json(job_dir / SERVE_SPEC) or {}
        if spec.get("backend") not in (None, "huggingface") and _probe_health(spec["host"], int(spec["port"])):
            info = {"url": f"http://{spec['host']}:{spec['port']}/v1", "host": spec["host"],
                    "port": spec["port"], "models": spec.get("model_ids"), "started_at": time.time(),
                    "backend": spec["backend"]}
            atomic_write_json(job_dir / SERVER_INFO, info)
            return info
        m = read_manifest(job_dir)
        if m is not None and m.finished_at is not None and m.finished_at >= started_after:
            tail = "\n".join(tail_lines(job_dir / STDOUT_LOG, 15))
            raise LaunchError(f"the server ended before it listened ({m.status.value}); the end of "
                              f"{job_dir / STDOUT_LOG}:\n{tail}")
        time.sleep(0.2)
    raise LaunchError(f"the server did not say it was listening within {timeout:.0f}s",
                      hint=f"it may still be loading: tunedeck logs {job_dir} -f")


def start(target: str, checkpoints: Sequence[str | None], overrides: dict[str, Any], *,
          host: str, port: int, api_key: str | None, job_dir: str | None, name: str | None) -> tuple[Any, ServePlan]:
    """Resolve, plan, write ``serve.json`` and start the supervised job (no waiting)."""
    from tunedeck.runner.control.service import start_job
    from tunedeck.runner.fsutil import atomic_write_json, ensure_dir
    from tunedeck.runner.infer.spec import resolve

    check_exposure(host, api_key)
    specs = [resolve(target, ck, overrides) for ck in (checkpoints or [None])]
    run_name = _run_name(specs[0])
    ids = [model_id(s, run_name) for s in specs]
    if len(set(ids)) != len(ids):
        raise ConfigError("the same checkpoint was named twice: " + ", ".join(ids))
    if specs[0].infer_backend in ("vllm", "sglang"):
        require_gpu_backend(specs[0].infer_backend)
    d = job_dir_for(specs[0], job_dir)
    ensure_dir(d)
    plan = plan_serve(specs, ids, d, host=host, port=port, api_key=api_key)
    atomic_write_json(d / SERVE_SPEC, {
        "target": str(target), "checkpoints": list(checkpoints or [None]), "overrides": overrides,
        "host": host, "port": port, "model_ids": ids, "run_name": run_name, "backend": plan.backend,
    })
    job = start_job(d, plan.argv, job="serve", name=name or f"{run_name}-serve",
                    config_path=str(specs[0].config_path or target), env=plan.env,
                    secret_env=plan.secret_env,
                    details={"serves": str(target), "models": ids, "backend": plan.backend,
                             "host": host, "port": port})
    return job, plan


def _run_name(spec: Any) -> str:
    if spec.run_dir is not None:
        from tunedeck.runner.rundir.manifest import read_manifest

        m = read_manifest(spec.run_dir)
        if m is not None and m.name:
            return m.name
        return Path(spec.run_dir).name
    return Path(spec.model_name_or_path).name or "model"


def server_info(job_dir: Path) -> dict[str, Any] | None:
    from tunedeck.runner.fsutil import read_json

    info = read_json(job_dir / SERVER_INFO)
    return info if isinstance(info, dict) else None

