"""A real tiny-model run driven entirely from the TUI: launch from the editor, watch the
dashboard, stop through the modal, resume from the checkpoints screen.

Real ``accelerate launch`` subprocesses under a real supervisor, on CPU; the trainer
is slowed down (TUNEDECK_FAULT=slow@S) so there is time to watch and stop it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.tui_helpers import screen_text, wait_for, wait_text
from tunedeck.tui.app import TunedeckApp
from tunedeck.tui.screens.editor import EditorScreen
from tunedeck.tui.widgets.runs_table import RunsTable

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNEDECK_FAKE_NVML", "none")  # this box has no GPU: the run uses the CPU
    monkeypatch.setenv("TUNEDECK_FAULT", "slow@0.25")
    from tunedeck.runner.monitor.nvml import reset_nvml

    reset_nvml()


def _status(app: TunedeckApp, run_dir: Path) -> str | None:
    for r in app.runs_view.runs if app.runs_view else ():
        if Path(r.run_dir) == run_dir:
            return str(getattr(r.status, "value", r.status))
    return None


def _run(app: TunedeckApp, run_dir: Path):  # type: ignore[no-untyped-def]
    return next((r for r in (app.runs_view.runs if app.runs_view else ()) if Path(r.run_dir) == run_dir), None)


def _complete_steps(run_dir: Path) -> list[int]:
    out = []
    for ck in run_dir.glob("checkpoint-*"):
        if (ck / "trainer_state.json").exists() and not (ck / "checkpoint-is-incomplete.txt").exists():
            with contextlib.suppress(ValueError):
                out.append(int(ck.name.split("-")[1]))
    return sorted(out)


async def test_launch_watch_stop_and_resume_a_real_run_from_the_tui(
        tmp_path: Path, make_demo_config: Callable[..., Path]) -> None:
    config = make_demo_config(tmp_path, max_steps=30, save_steps=5, logging_steps=1)
    run_dir = tmp_path / "out"
    app = TunedeckApp(root=tmp_path, config=config)
    async with app.run_test(size=(140, 44)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, EditorScreen) and app.screen.analysis is not None,
                       what="editor")
        editor: EditorScreen = app.screen  # type: ignore[assignment]
        errors = [f for f in editor.analysis.findings if f.severity == "error"]  # type: ignore[union-attr]
        assert not errors, errors

        # Launch: the modal shows the exact command (one process: the trainer itself, no launcher)
        # and says there is no GPU.
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: app.screen.id == "launch-modal", timeout=30, what="launch modal")
        text = await wait_text(pilot, app, "-m tunedeck.runner.train", "uses the CPU")
        assert str(run_dir) in text
        await pilot.press("y")
        await wait_for(pilot, lambda: app.screen.id == "dashboard" and app.selected_run_dir == run_dir,
                       timeout=60, what="dashboard with the new run selected")

        # Progress and the loss sparkline advance.
        await wait_for(pilot, lambda: _status(app, run_dir) == "running", timeout=180, what="running")

        def loss_points() -> int:
            d = app.screen.detail if app.screen.id == "dashboard" else None
            return d.series["loss"].count if d is not None and "loss" in d.series else 0

        await wait_for(pilot, lambda: loss_points() >= 2, timeout=90, what="first loss points")
        first_points = loss_points()
        first_step = _run(app, run_dir).current_steps or 0
        spark = app.screen.query_one("#metric-spark")
        chart = app.screen.query_one("#metric-chart")

        def drawn() -> int:  # the chart where it fits, else the sparkline
            return sum(len(ln.xs) for ln in chart.lines) if chart.display else len(spark.data or [])

        first_len = drawn()
        await wait_for(pilot, lambda: loss_points() >= first_points + 3 and drawn() > first_len,
                       timeout=60, what="loss chart advancing")
        await wait_for(pilot, lambda: (_run(app, run_dir).current_steps or 0) > first_step, timeout=30,
                       what="progress advancing")
        pct = _run(app, run_dir).percentage
        assert pct is not None and f"{pct:.0f}%" in screen_text(app)

        # Stop through the modal: the run ends 'stopped' with a new complete checkpoint.
        before = _complete_steps(run_dir)
        table = app.screen.query_one(RunsTable)
        table.focus()
        await pilot.press("S")
        await wait_for(pilot, lambda: app.screen.id == "confirm-stop", what="stop modal")
        await wait_text(pilot, app, "SIGTERM", run_dir.name)
        await pilot.press("y")
        await wait_for(pilot, lambda: _status(app, run_dir) == "stopped", timeout=180, what="stopped")
        after = _complete_steps(run_dir)
        assert after and (not before or after[-1] > before[-1]), (before, after)
        await wait_text(pilot, app, "stopped")
        stopped_at = _run(app, run_dir).current_steps

        # Resume from the checkpoints screen, newest complete checkpoint first in the table.
        await pilot.press("c")
        await wait_for(pilot, lambda: app.screen.id == "checkpoints" and app.screen.checkpoints, what="checkpoints")
        assert app.screen.checkpoints[0].step == after[-1]
        await pilot.press("R")
        await wait_for(pilot, lambda: app.screen.id == "confirm-resume", what="resume modal")
        await wait_text(pilot, app, f"checkpoint-{after[-1]}")
        await pilot.press("y")
        await wait_for(pilot, lambda: app.screen.id == "dashboard", timeout=60, what="back on the dashboard")
        await wait_for(pilot, lambda: _status(app, run_dir) == "finished", timeout=240, what="finished after resume")
        run = _run(app, run_dir)
        assert run.current_steps == 30 and run.attempts == 2 and stopped_at < 30
