"""Snapshot tests (pytest-textual-snapshot) of the main screens at 80x24 and 160x48.

Deterministic: fixed run directories at a fixed path, the fake NVML, a frozen
clock, no polling (one explicit sample), no cursor blink. Update with
``pytest tests/test_tui_snapshots.py --snapshot-update`` and look at the SVGs.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.tui_helpers import FROZEN_NOW, build_runs, wait_for, wait_text
from tunedeck.tui.app import TunedeckApp
from tunedeck.tui.widgets.runs_table import RunsTable

SNAP_DIR = Path("/tmp/tunedeck-snapshot")
SIZES = [(80, 24), (160, 48)]

EDITOR_CONFIG = """\
# Snapshot config: a 7B LoRA run on one 24 GB card
model_name_or_path: Qwen/Qwen2.5-7B-Instruct
stage: sft
do_train: true
finetuning_type: lora
lora_rank: 0            # invalid on purpose: the field shows the error
lora_alpha: 32
template: qwen
cutoff_len: 2048
per_device_train_batch_size: 2
gradient_accumulation_steps: 8
learning_rate: 1.0e-4
num_train_epochs: 3
lr_scheduler_type: cosine
warmup_ratio: 0.1
bf16: true
output_dir: /tmp/tunedeck-snapshot/runs/qwen-lora
"""


@pytest.fixture(autouse=True)
def _snapshot_world(monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.rmtree(SNAP_DIR, ignore_errors=True)
    (SNAP_DIR / "home").mkdir(parents=True)
    build_runs(SNAP_DIR / "runs", now=FROZEN_NOW)
    (SNAP_DIR / "train.yaml").write_text(EDITOR_CONFIG)
    monkeypatch.chdir(SNAP_DIR)
    monkeypatch.setenv("TUNEDECK_HOME", str(SNAP_DIR / "home"))
    monkeypatch.setenv("TUNEDECK_FAKE_NVML", "gpu8")
    monkeypatch.setattr(time, "time", lambda: FROZEN_NOW)
    # Rich names the SVG's CSS classes after a hash of the raw segment stream, whose
    # chunking (cursor moves between line chunks) can vary while the picture is
    # identical; a fixed prefix makes equal screens give equal SVGs.
    from rich.console import Console

    export_svg = Console.export_svg

    def fixed_id_export(self: Console, *args: Any, **kwargs: Any) -> str:
        kwargs.setdefault("unique_id", "tunedeck")
        return export_svg(self, *args, **kwargs)

    monkeypatch.setattr(Console, "export_svg", fixed_id_export)
    from tunedeck.runner.monitor.nvml import reset_nvml

    reset_nvml()
    yield  # type: ignore[misc]
    reset_nvml()


def _app(**kw: Any) -> TunedeckApp:
    return TunedeckApp(root=SNAP_DIR / "runs", poll=False, **kw)


async def _no_blink(app: TunedeckApp) -> None:
    from textual.widgets import Input

    for inp in app.screen.query(Input):
        inp.cursor_blink = False


def _prepare(select: str | None, then: Callable[[Any, TunedeckApp], Awaitable[None]] | None = None):  # type: ignore[no-untyped-def]
    async def run_before(pilot: Any) -> None:
        app: TunedeckApp = pilot.app
        await app.sample_once()
        await pilot.pause()
        if select is not None:
            table = app.screen.query_one(RunsTable)
            names = [table._runs[str(k.value)].name for k in table.rows]
            assert select in names, (names, app.runs_view and app.runs_view.error, app.runs_view and len(app.runs_view.runs))
            table.move_cursor(row=names.index(select))
            await pilot.pause()
            await app.sample_once()
            await pilot.pause()
        if then is not None:
            await then(pilot, app)
        await _no_blink(app)
        await pilot.pause()

    return run_before


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_dashboard_snapshot(snap_compare: Any, size: tuple[int, int]) -> None:
    assert snap_compare(_app(), terminal_size=size, run_before=_prepare("mistral-7b-full"))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_editor_snapshot(snap_compare: Any, size: tuple[int, int]) -> None:
    async def open_editor(pilot: Any, app: TunedeckApp) -> None:
        from tunedeck.tui.screens.editor import EditorScreen

        await pilot.press("o", *str(SNAP_DIR / "train.yaml"), "enter")  # o: open a config
        await wait_for(pilot, lambda: isinstance(app.screen, EditorScreen) and app.screen.analysis is not None)
        editor: EditorScreen = app.screen  # type: ignore[assignment]
        editor.memory_index = 1  # the 24 GB preset, whatever NVML says
        editor._schedule_analysis(0)
        await wait_for(pilot, lambda: editor.analysis is not None and editor.analysis.generation == editor.generation)
        await editor.jump_to("lora_rank")
        # The rest of the group mounts in later frames: wait for all of it (the scrollbar).
        await wait_for(pilot, lambda: not editor._pending.get("lora"), what="the LoRA group mounted")
        field = editor.fields["lora_rank"]
        pane = editor.query_one("#pane-lora")
        await wait_for(pilot, lambda: field.control.has_focus and pane.scroll_y > 0
                       and 0 <= field.header.region.y - pane.region.y <= 1,
                       what=f"lora_rank at the top {field.control.has_focus} {pane.scroll_y} {field.header.region} {pane.region}")

    assert snap_compare(_app(), terminal_size=size, run_before=_prepare(None, open_editor))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_checkpoints_snapshot(snap_compare: Any, size: tuple[int, int]) -> None:
    async def open_ckpts(pilot: Any, app: TunedeckApp) -> None:
        await pilot.press("c")
        await wait_for(pilot, lambda: app.screen.id == "checkpoints" and len(app.screen.checkpoints) == 3)
        # The table sizes its columns to the rows on a later refresh: wait until it has painted them.
        await wait_text(pilot, app, "250 (newest)", "adapter", "KiB")

    assert snap_compare(_app(), terminal_size=size, run_before=_prepare("tiny-demo", open_ckpts))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_triage_snapshot(snap_compare: Any, size: tuple[int, int]) -> None:
    async def open_triage(pilot: Any, app: TunedeckApp) -> None:
        await pilot.press("t")
        await wait_for(pilot, lambda: app.screen.id == "triage" and app.screen.view is not None, timeout=30)

    assert snap_compare(_app(), terminal_size=size, run_before=_prepare("mistral-7b-full", open_triage))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_help_snapshot(snap_compare: Any, size: tuple[int, int]) -> None:
    async def open_help(pilot: Any, app: TunedeckApp) -> None:
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: app.screen.id == "help")

    assert snap_compare(_app(), terminal_size=size, run_before=_prepare(None, open_help))


def test_snapshot_world_is_where_the_snapshots_expect_it() -> None:
    # The snapshots show these paths; a different location would change every SVG.
    assert Path.cwd() == SNAP_DIR and os.environ["TUNEDECK_FAKE_NVML"] == "gpu8"
