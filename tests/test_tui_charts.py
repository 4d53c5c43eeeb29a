"""The chart and compare screens, by pressing keys: axes with the fixture run's min/max,
smoothing/zoom/log/x-axis keys change what is drawn, three marked runs compare with
three curves, the deltas and exactly the differing keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.compare_helpers import log_records, write_compare_runs
from tests.tui_helpers import screen_text, wait_for, wait_text
from tunedeck.runner.chartdata import fmt_tick
from tunedeck.tui.app import TunedeckApp
from tunedeck.tui.screens.chart import ChartScreen
from tunedeck.tui.widgets.curve_chart import CurveChart
from tunedeck.tui.widgets.runs_table import RunsTable

pytestmark = pytest.mark.fake_gpus("gpu2")


async def _select(pilot, app: TunedeckApp, name: str) -> None:  # type: ignore[no-untyped-def]
    await wait_for(pilot, lambda: len(app.screen.query_one(RunsTable).rows) == 3, what="three runs")
    table = app.screen.query_one(RunsTable)
    names = [table._runs[str(k.value)].name for k in table.rows]
    table.focus()
    table.move_cursor(row=names.index(name))
    await wait_for(pilot, lambda: app.selected_run_dir is not None and app.selected_run_dir.name == name,
                   what=f"select {name}")


async def test_chart_axes_smoothing_zoom_log_and_x_axis_keys(tmp_path: Path) -> None:
    base, *_ = write_compare_runs(tmp_path / "runs")
    recs = log_records(base)
    losses = [r["loss"] for r in recs] + [r["eval_loss"] for r in recs if "eval_loss" in r]
    app = TunedeckApp(root=tmp_path / "runs")
    async with app.run_test(size=(160, 48)) as pilot:
        await _select(pilot, app, "base")
        await pilot.press("g")
        await wait_for(pilot, lambda: isinstance(app.screen, ChartScreen) and app.screen.loaded, what="chart")
        chart = app.screen.query_one(CurveChart)
        ax = chart.axes
        assert (ax.xmin, ax.xmax) == (recs[0]["current_steps"], recs[-1]["current_steps"])
        assert (ax.ymin, ax.ymax) == (min(losses), max(losses))
        assert chart.drawn == ["base loss", "base eval_loss"]  # eval loss on the same axes
        text = await wait_text(pilot, app, fmt_tick(ax.ymin), fmt_tick(ax.ymax), "loss by step")
        assert fmt_tick(ax.xmax, "step") in text and "step" in text

        raw = chart.lines[0].ys
        await pilot.press("s")
        await wait_text(pilot, app, "EMA 0.6")
        assert chart.drawn == ["base loss (raw)", "base loss", "base eval_loss"]
        assert chart.lines[0].ys == raw and chart.lines[1].ys != raw  # raw kept, smoothed drawn over it

        await pilot.press("z", "z")  # whole -> last 1000 -> last 200 steps
        await wait_text(pilot, app, "last 200 steps")
        assert chart.axes.xmin > recs[-1]["current_steps"] - 200
        assert chart.axes.xmax == recs[-1]["current_steps"]

        await pilot.press("L")
        await wait_text(pilot, app, "log y")
        await pilot.press("x")
        await wait_text(pilot, app, "by tokens seen")
        assert chart.axes.xmax == recs[-1]["total_tokens"]

        await pilot.press("3")
        await wait_text(pilot, app, "learning rate by tokens seen")
        assert chart.drawn[-1] == "base" and all(ln.kind != "eval" for ln in chart.lines)
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, ChartScreen), what="back")


async def test_three_marked_runs_compare_with_three_curves_the_deltas_and_the_diff(tmp_path: Path) -> None:
    base, lr_up, rank16 = write_compare_runs(tmp_path / "runs")
    app = TunedeckApp(root=tmp_path / "runs")
    async with app.run_test(size=(160, 48)) as pilot:
        for name in ("base", "lr-up", "rank16"):
            await _select(pilot, app, name)
            await pilot.press("space")
        table = app.screen.query_one(RunsTable)
        assert [r.name for r in table.marked_runs()] == ["base", "lr-up", "rank16"]
        assert "● base" in screen_text(app)
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, ChartScreen) and app.screen.loaded, what="compare")
        screen = app.screen
        chart = screen.query_one(CurveChart)
        assert {ln.run for ln in chart.lines if ln.kind == "smooth"} == {0, 1, 2}
        assert [ln.label for ln in chart.lines if ln.kind == "smooth"] == \
            ["base loss", "lr-up loss", "rank16 loss"]
        from textual.widgets import DataTable

        diff = screen.query_one("#diff-table", DataTable)
        keys = [diff.get_row_at(i)[0] for i in range(diff.row_count)]
        assert keys == ["learning_rate", "lora_alpha", "lora_rank"]
        cmp_table = screen.query_one("#compare-table", DataTable)
        rows = [cmp_table.get_row_at(i) for i in range(cmp_table.row_count)]
        assert rows[0][0] == "base *"
        d = log_records(rank16)[-1]["loss"] - log_records(base)[-1]["loss"]
        assert f"({'+' if d >= 0 else ''}{d:.4f})" in rows[2][3]
        await wait_text(pilot, app, "learning_rate", "lora_alpha", "rank16 *" if False else "rank16")
        await pilot.press("b")  # lr-up becomes the baseline
        await wait_for(pilot, lambda: screen.query_one("#compare-table", DataTable).get_row_at(1)[0] == "lr-up *",
                       what="new baseline")


async def test_a_run_that_ends_rings_the_bell_and_flashes_and_the_queue_shows_under_the_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_demo_config
) -> None:
    import subprocess
    import sys
    import time

    import psutil

    from tests.tui_helpers import RunSpec, write_run
    from tunedeck.runner.control import runqueue
    from tunedeck.runner.control.history import archive
    from tunedeck.runner.rundir.manifest import ProcRef

    root = tmp_path / "runs"
    base, lr_up, rank16 = write_compare_runs(root)
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        sup = ProcRef(pid=proc.pid, create_time=psutil.Process(proc.pid).create_time())
        live = RunSpec("live", "running", 40, 100, seed=7, age_s=1.0)
        write_run(root, live, now=time.time(), supervisor=sup)
        app = TunedeckApp(root=root)
        bells: list[int] = []
        monkeypatch.setattr(app, "bell", lambda: bells.append(1))
        async with app.run_test(size=(120, 40)) as pilot:
            table = app.screen.query_one(RunsTable)
            await wait_for(pilot, lambda: len(table.rows) == 4, what="four runs")
            await wait_text(pilot, app, "running")
            assert bells == []
            # The run ends (its supervisor records it and leaves).
            write_run(root, RunSpec("live", "finished", 100, 100, seed=7, age_s=1.0), now=time.time())
            proc.kill()
            await wait_for(pilot, lambda: bells == [1], what="the bell")
            assert any("live ended: finished" in n.message for n in app._notifications)
            assert str(root / "live") in table.flashing
            await wait_for(pilot, lambda: str(root / "live") not in table.flashing, what="the flash to end")

            # A queued entry shows beneath the runs table; an archived run leaves the table.
            runqueue.add(make_demo_config(tmp_path), name="waiting-run")
            archive(lr_up)
            await wait_text(pilot, app, "Queue: 1 waiting (runner not running)", "waiting-run queued")
            await wait_for(pilot, lambda: len(table.rows) == 3, what="the archived run hidden")
            assert "lr-up" not in [r.name for r in table._runs.values()]
    finally:
        proc.kill()
        proc.wait(10)
