"""The dashboard as a person uses it: which runs it lists, the selected-run panel kept
current, and the runs table's keys (j/k, / filter), over real run directories."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from textual.widgets import Input

from tests.monitor_helpers import make_llamafactory_resumed_run
from tests.tui_helpers import RunSpec, screen_text, wait_for, wait_text, write_run
from tunedeck.tui.app import TunedeckApp
from tunedeck.tui.widgets.runs_table import RunsTable


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TUNEDECK_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TUNEDECK_FAKE_NVML", "gpu2")
    from tunedeck.runner.monitor.nvml import reset_nvml

    reset_nvml()


def _row_names(app: TunedeckApp) -> list[str]:
    table = app.screen.query_one(RunsTable)
    return [r.name for r in (table._runs[str(k.value)] for k in table.rows)]


async def test_a_step_logged_twice_by_a_resume_is_one_point_in_the_chart_and_tokens_per_second(
    tmp_path: Path,
) -> None:
    root = tmp_path / "saves"
    make_llamafactory_resumed_run(root / "lf-resumed")
    app = TunedeckApp(root=root)
    async with app.run_test(size=(160, 48), notifications=True) as pilot:
        await wait_for(pilot, lambda: _row_names(app) == ["lf-resumed"], what="the run")
        app.screen.query_one(RunsTable).focus()
        await wait_text(pilot, app, "last 0.58", "(12 points)")
        await pilot.press("5")
        await wait_text(pilot, app, "tokens/s", "(12 points)")
        assert "13 points" not in screen_text(app)


async def test_the_dashboard_lists_registered_runs_outside_its_root_once_and_the_root_changes_in_the_app(
    tmp_path: Path,
) -> None:
    from tunedeck.runner.rundir.registry import register

    now = time.time()
    root = tmp_path / "here"
    elsewhere = tmp_path / "cache" / "demo"  # like `tunedeck demo`: a registered run in the cache dir
    demo = write_run(elsewhere, RunSpec("demo-run", "finished", 300, 300, checkpoints=(300,)), now=now)
    register("20261206-000000-demo", "demo-run", demo)
    local = write_run(root, RunSpec("local-run", "stopped", 100, 300), now=now - 60)
    register("20261206-000000-locl", "local-run", local)  # registered and under the root: once
    other = tmp_path / "other"
    write_run(other, RunSpec("other-run", None, 50, 300), now=now - 120)
    app = TunedeckApp(root=root)
    async with app.run_test(size=(160, 48), notifications=True) as pilot:
        await wait_for(pilot, lambda: sorted(_row_names(app)) == ["demo-run", "local-run"],
                       what="the registered run and the one under --root")
        await wait_text(pilot, app, "demo-run", "local-run", f"under {root}")
        table = app.screen.query_one(RunsTable)
        table.focus()
        await pilot.press("d")
        await wait_for(pilot, lambda: app.screen.id == "path-prompt", what="the root prompt")
        assert isinstance(app.focused, Input)
        await pilot.press("ctrl+u")  # Input: delete to the start
        for ch in str(other):
            await pilot.press(ch if ch != "/" else "slash")
        await pilot.press("enter")
        await wait_for(pilot, lambda: sorted(_row_names(app)) == ["demo-run", "local-run", "other-run"],
                       what="runs under the new root (the registered ones stay)")
        text = await wait_text(pilot, app, f"under {other}")
        assert f"under {root}" not in text
        assert app.focused is table  # back on the table, keys keep working
        # A directory that is not there is refused with a message; nothing changes.
        await pilot.press("d")
        await wait_for(pilot, lambda: app.screen.id == "path-prompt", what="the root prompt again")
        await pilot.press("ctrl+u", *"nowhere", "enter")
        await wait_text(pilot, app, "Not a directory")
        assert app.root == other.resolve()
