"""Fixtures for the TUI tests, snapshots and bench: real run directories in the
run-dir protocol (manifest, trainer_log.jsonl, stdout.log, checkpoint-N/), written
with timestamps relative to a given "now" so a frozen clock gives fixed screens."""

from __future__ import annotations

import asyncio
import json
import math
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunedeck.runner.fsutil import atomic_write_json
from tunedeck.runner.rundir.manifest import Attempt, ProcRef, RunManifest
from tunedeck.runner.rundir.protocol import STDOUT_LOG, TRAINER_EXIT, TRAINER_LOG

if TYPE_CHECKING:
    from tunedeck.tui.app import TunedeckApp
    from tunedeck.tui.screens.editor import EditorScreen

FROZEN_NOW = 1_760_000_000.0  # the snapshot tests' clock (2025-10-09)

CONFIG_TEXT = """\
# {name}: fixture config for the TUI tests
model_name_or_path: {model}
stage: sft
do_train: true
finetuning_type: lora
lora_rank: 8
lora_alpha: 16
lora_target: all
dataset: alpaca_en_demo
template: llama3
cutoff_len: 1024
per_device_train_batch_size: {batch}
gradient_accumulation_steps: 2
learning_rate: 1.0e-4
num_train_epochs: 3.0
lr_scheduler_type: cosine
warmup_ratio: 0.1
bf16: true
logging_steps: 10
save_steps: 100
output_dir: {output_dir}
"""


@dataclass(frozen=True)
class RunSpec:
    name: str
    status: str | None  # None: a LLaMA-Factory run (no manifest)
    steps: int  # logged steps so far
    total: int
    checkpoints: tuple[int, ...] = ()
    incomplete: tuple[int, ...] = ()
    gpus: tuple[int, ...] = (0,)
    exit_reason: str | None = None
    message: str | None = None
    log_tail: tuple[str, ...] = ()
    age_s: float = 20.0  # how long ago the last log line was written
    batch: int = 4
    seed: int = 0


def _loss(step: int, seed: int) -> float:
    # A deterministic, visibly decreasing and slightly noisy curve.
    return 2.6 * math.exp(-step / 280.0) + 0.55 + 0.06 * math.sin(step * 0.37 + seed)


def write_run(root: Path, spec: RunSpec, *, now: float, supervisor: ProcRef | None = None) -> Path:
    run = root / spec.name
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.yaml").write_text(
        CONFIG_TEXT.format(
            name=spec.name,
            model="meta-llama/Meta-Llama-3-8B",
            batch=spec.batch,
            output_dir=str(run),
        )
    )
    start = now - spec.age_s - spec.steps * 2.0
    lines = []
    for step in range(10, spec.steps + 1, 10):
        t = start + step * 2.0
        rec: dict[str, Any] = {
            "current_steps": step,
            "total_steps": spec.total,
            "loss": round(_loss(step, spec.seed), 4),
            "lr": 1e-4 * min(1.0, step / 100) * (0.5 + 0.5 * math.cos(math.pi * step / spec.total)),
            "epoch": round(3.0 * step / spec.total, 2),
            "percentage": round(100.0 * step / spec.total, 2),
            "elapsed_time": f"0:{int(step * 2 // 60):02d}:{int(step * 2 % 60):02d}",
            "remaining_time": f"0:{int((spec.total - step) * 2 // 60):02d}:{int((spec.total - step) * 2 % 60):02d}",
            "throughput": 2400.0 + 80 * math.sin(step / 30.0 + spec.seed),
            "grad_norm": 1.2 + 0.3 * math.cos(step / 17.0),
            "timestamp": t,
            "step_time": 2.0,
        }
        if step % 100 == 0:
            rec["eval_loss"] = round(_loss(step, spec.seed) + 0.08, 4)
        lines.append(json.dumps(rec))
    (run / TRAINER_LOG).write_text("\n".join(lines) + ("\n" if lines else ""))
    tail = list(spec.log_tail) or [
        f"[INFO] {{'loss': {_loss(s, spec.seed):.4f}, 'epoch': {3.0 * s / spec.total:.2f}}}"
        for s in range(max(10, spec.steps - 80), spec.steps + 1, 10)
    ]
    (run / STDOUT_LOG).write_text(
        "\n".join(["[INFO] loading model", "[INFO] trainable params: 20,971,520", *tail]) + "\n"
    )
    for step in spec.checkpoints:
        ck = run / f"checkpoint-{step}"
        ck.mkdir(exist_ok=True)
        (ck / "adapter_model.safetensors").write_bytes(b"\0" * (4096 + step))
        if step not in spec.incomplete:
            (ck / "trainer_state.json").write_text(
                json.dumps({"global_step": step, "log_history": []})
            )
        ct = start + step * 2.0 + 1
        for p in [ck, *ck.iterdir()]:
            os.utime(p, (ct, ct))
    if spec.exit_reason:
        atomic_write_json(
            run / TRAINER_EXIT,
            {
                "reason": spec.exit_reason,
                "step": spec.steps,
                "message": spec.message or spec.exit_reason,
            },
        )
    if spec.status is not None:
        m = RunManifest(
            id=f"20251009-{spec.name}",
            name=spec.name,
            output_dir=str(run),
            config_path=str(run / "config.yaml"),
            argv=[
                "accelerate",
                "launch",
                "--num_processes",
                "1",
                "-m",
                "tunedeck.runner.train",
                str(run / "config.yaml"),
            ],
            gpus=list(spec.gpus),
            status=spec.status,
            message=spec.message,
            supervisor=supervisor,
            created_at=start,
            updated_at=now - spec.age_s,
            attempts=[Attempt(number=1, started_at=start)],
            finished_at=None if spec.status in ("running", "starting") else now - spec.age_s,
        )
        m.write(run)
        os.chmod(run / "tunedeck_run.json", 0o644)
    for p in (run / TRAINER_LOG, run / STDOUT_LOG):
        os.utime(p, (now - spec.age_s, now - spec.age_s))
    return run


OOM_TAIL = (
    "[INFO] step 30/1000 loss=1.92",
    "Traceback (most recent call last):",
    '  File "runner/train/__main__.py", line 88, in main',
    "    trainer.train()",
    "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total "
    "capacity of 23.65 GiB of which 1.12 GiB is free.",
)

SNAPSHOT_RUNS: tuple[RunSpec, ...] = (
    RunSpec(
        "llama3-8b-lora-sft", None, 420, 1000, checkpoints=(100, 200, 300, 400), gpus=(0,), seed=1
    ),
    RunSpec("qwen2-7b-dpo", "finished", 600, 600, checkpoints=(200, 400, 600), seed=2, age_s=7200),
    RunSpec(
        "mistral-7b-full",
        "oom",
        30,
        1000,
        exit_reason="oom",
        batch=8,
        message="CUDA out of memory. Tried to allocate 2.00 GiB",
        log_tail=OOM_TAIL,
        seed=3,
        age_s=3600,
    ),
    RunSpec(
        "tiny-demo",
        "stopped",
        250,
        500,
        checkpoints=(100, 200, 250),
        incomplete=(),
        seed=4,
        age_s=900,
    ),
    RunSpec(
        "yi-6b-nan",
        "diverged",
        180,
        1000,
        checkpoints=(100,),
        exit_reason="diverged",
        message="loss became nan at step 181",
        seed=5,
        age_s=5400,
    ),
)


def build_runs(
    root: Path,
    specs: Iterable[RunSpec] = SNAPSHOT_RUNS,
    *,
    now: float = FROZEN_NOW,
    supervisor: ProcRef | None = None,
) -> list[Path]:
    return [write_run(root, s, now=now, supervisor=supervisor) for s in specs]


def many_runs(n: int, seed: int = 0) -> list[RunSpec]:
    """``n`` varied runs for the idle-cost bench (finished/stopped/failed/LLaMA-Factory)."""
    kinds = ["finished", "stopped", "oom", None, "failed"]
    return [
        RunSpec(
            f"run-{i:02d}",
            kinds[i % len(kinds)],
            50 + 37 * i,
            1000,
            checkpoints=(100,) if i % 2 else (),
            seed=seed + i,
            age_s=3600.0 + i,
        )
        for i in range(n)
    ]


def write_editor_config(tmp_path: Path, text: str) -> Path:
    """``tmp_path/train.yaml`` from ``text`` with its ``{out}`` set to an output dir under ``tmp_path``."""
    path = tmp_path / "train.yaml"
    path.write_text(text.format(out=tmp_path / "runs" / "my-run"))
    return path


def use_fake_gpus(monkeypatch: Any, fake: str, *, home: Path | None = None) -> None:
    """Give the app the fake NVML ``fake`` (``gpu2``, ``none``, ...) with no NVML state left from
    an earlier test, and, when given, its own ``TUNEDECK_HOME``."""
    if home is not None:
        monkeypatch.setenv("TUNEDECK_HOME", str(home))
    monkeypatch.setenv("TUNEDECK_FAKE_NVML", fake)
    from tunedeck.runner.monitor.nvml import reset_nvml

    reset_nvml()


async def open_editor(pilot: Any, app: Any) -> EditorScreen:
    """Wait until the editor is the screen and its first analysis is done; the editor screen."""
    from tunedeck.tui.screens.editor import EditorScreen

    await wait_for(
        pilot,
        lambda: isinstance(app.screen, EditorScreen) and app.screen.analysis is not None,
        what="editor and first analysis",
    )
    return app.screen  # type: ignore[no-any-return]


@asynccontextmanager
async def editor_app(
    root: Path, config: Path, *, size: tuple[int, int]
) -> AsyncIterator[tuple[Any, TunedeckApp, EditorScreen]]:
    """``(pilot, app, editor)``: the app on ``config`` (no polling) at ``size``, once its editor
    shows the first analysis."""
    from tunedeck.tui.app import TunedeckApp

    app = TunedeckApp(root=root, config=config, poll=False)
    async with app.run_test(size=size) as pilot:
        yield pilot, app, await open_editor(pilot, app)


async def wait_for(
    pilot: Any,
    predicate: Callable[[], bool],
    *,
    timeout: float = 20.0,
    interval: float = 0.05,
    what: str = "condition",
) -> None:
    """Poll ``predicate`` between app frames until it holds (no sleeps as synchronisation)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await pilot.pause(interval)


async def until(coro_fn: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not await coro_fn():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.05)


def screen_text(app: Any) -> str:
    """What the terminal shows right now (modals over their background too), as plain text."""
    import io

    from rich.console import Console

    width, height = app.size
    console = Console(
        width=width,
        height=height,
        file=io.StringIO(),
        force_terminal=True,
        color_system=None,
        record=True,
        legacy_windows=False,
        safe_box=False,
    )
    render = app.screen._compositor.render_update(full=True, screen_stack=app._background_screens)
    console.print(render)
    return console.export_text()


async def wait_text(pilot: Any, app: Any, *needles: str, timeout: float = 20.0) -> str:
    """Wait until every needle is on the screen; returns the screen text."""
    box: dict[str, str] = {}

    def shown() -> bool:
        box["t"] = screen_text(app)
        return all(n in box["t"] for n in needles)

    try:
        await wait_for(pilot, shown, timeout=timeout, what=f"{needles!r} on screen")
    except AssertionError:
        raise AssertionError(f"{needles!r} not on screen:\n{box.get('t', '')}") from None
    return box["t"]
