"""The dashboard as a person uses it: which runs it lists, the selected-run panel kept
current, and the runs table's keys (j/k, / filter), over real run directories."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.monitor_helpers import make_llamafactory_resumed_run
from tests.tui_helpers import screen_text, wait_for, wait_text
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
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_for(pilot, lambda: _row_names(app) == ["lf-resumed"], what="the run")
        app.screen.query_one(RunsTable).focus()
        await wait_text(pilot, app, "last 0.58", "(12 points)")
        await pilot.press("5")
        await wait_text(pilot, app, "tokens/s", "(12 points)")
        assert "13 points" not in screen_text(app)
