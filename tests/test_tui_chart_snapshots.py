"""Snapshots of the chart screen and the compare screen at 80x24 and 160x48 (the
snapshot world of tests/test_tui_snapshots.py: fixed runs, fake NVML, frozen clock)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.test_tui_snapshots import SIZES, _app, _prepare, _snapshot_world  # noqa: F401 - autouse fixture
from tests.tui_helpers import wait_for
from tunedeck.tui.app import TunedeckApp
from tunedeck.tui.screens.chart import ChartScreen
from tunedeck.tui.widgets.runs_table import RunsTable


async def _open_chart(pilot: Any, app: TunedeckApp) -> None:
    await pilot.press("g")
    await wait_for(pilot, lambda: isinstance(app.screen, ChartScreen) and app.screen.loaded, what="chart")
    await pilot.press("s")
    await pilot.pause()


async def _open_compare(pilot: Any, app: TunedeckApp) -> None:
    table = app.screen.query_one(RunsTable)
    names = [table._runs[str(k.value)].name for k in table.rows]
    for name in ("qwen2-7b-dpo", "tiny-demo", "mistral-7b-full"):
        table.move_cursor(row=names.index(name))
        await pilot.pause()
        await pilot.press("space")
    await pilot.press("c")
    await wait_for(pilot, lambda: isinstance(app.screen, ChartScreen) and app.screen.loaded, what="compare")
    await pilot.pause()


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_chart_snapshot(snap_compare: Any, size: tuple[int, int]) -> None:
    assert snap_compare(_app(), terminal_size=size, run_before=_prepare("qwen2-7b-dpo", _open_chart))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_compare_snapshot(snap_compare: Any, size: tuple[int, int]) -> None:
    assert snap_compare(_app(), terminal_size=size, run_before=_prepare(None, _open_compare))
