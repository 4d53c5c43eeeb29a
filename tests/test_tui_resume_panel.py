"""The selected-run panel after a resume from the TUI: a real tiny-model run, finished,
resumed from an earlier checkpoint through the checkpoints screen (c, R, y). The panel
must follow the new attempt (status, log tail, checkpoints) like the checkpoints screen
does, and the checkpoints' ages must keep moving once it has finished."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.control_helpers import control_env, tunedeck
from tests.tui_helpers import screen_text, wait_for, wait_text
from tunedeck.tui.app import TunedeckApp
from tunedeck.tui.widgets.runs_table import RunsTable

pytestmark = pytest.mark.slow


def _panel(app: TunedeckApp) -> str:
    text = screen_text(app)
    return text[text.find("Selected run"):]


def _age_of(panel: str, step: int) -> str | None:
    m = re.search(rf"step {step}\s+(\S+) ago", panel)
    return m.group(1) if m else None


def _seconds(age: str) -> float:
    total = 0.0
    for n, unit in re.findall(r"(\d+)([dhms])", age):
        total += int(n) * {"d": 86400, "h": 3600, "m": 60, "s": 1}[unit]
    return total


async def test_the_selected_run_panel_follows_a_resume_started_from_the_checkpoints_screen(
        tmp_path: Path, make_demo_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    config = make_demo_config(tmp_path, max_steps=12, save_steps=4, logging_steps=1)
    run_dir = tmp_path / "out"
    env = control_env(home)
    done = tunedeck(["launch", str(config), "--cpu", "--follow"], env, timeout=600)
    assert done.returncode == 0, done.stderr
    assert (run_dir / "checkpoint-12").is_dir()

    monkeypatch.setenv("TUNEDECK_HOME", str(home))
    monkeypatch.setenv("TUNEDECK_FAKE_NVML", "none")
    monkeypatch.setenv("TUNEDECK_FAULT", "slow@0.5")  # the resumed attempt: time to watch it run
    from tunedeck.runner.monitor.nvml import reset_nvml

    reset_nvml()
    app = TunedeckApp(root=tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_for(pilot, lambda: app.selected_run_dir == run_dir, timeout=30, what="the run selected")
        app.screen.query_one(RunsTable).focus()
        await wait_text(pilot, app, "finished", "step 12 ")
        assert "attempt 2" not in _panel(app)

        # c, then the second newest checkpoint (step 8), R, y: what the user did.
        await pilot.press("c")
        await wait_for(pilot, lambda: app.screen.id == "checkpoints" and len(app.screen.checkpoints) >= 3,
                       what="checkpoints screen")
        await pilot.press("down", "R")
        await wait_for(pilot, lambda: app.screen.id == "confirm-resume", what="resume modal")
        await wait_text(pilot, app, "checkpoint-8")
        resumed_at = time.time()
        await pilot.press("y")
        await wait_for(pilot, lambda: app.screen.id == "dashboard", timeout=60, what="back on the dashboard")

        # The panel follows the new attempt: its log tail and its running status...
        await wait_for(pilot, lambda: "attempt 2" in _panel(app), timeout=120, what="attempt 2 in the log tail")
        await wait_for(pilot, lambda: "▶ running" in _panel(app).splitlines()[1], timeout=120,
                       what="the panel's header says running")
        # ...then its end, with checkpoint-12 written again by the new attempt.
        await wait_for(pilot, lambda: "✔ finished" in _panel(app).splitlines()[1], timeout=300,
                       what="the panel's header says finished")
        await wait_for(pilot, lambda: "attempt 2 ended" in _panel(app), timeout=60, what="attempt 2's end")
        age = _age_of(_panel(app), 12)
        assert age is not None and _seconds(age) <= time.time() - resumed_at + 1, _panel(app)

        # Nothing changes on disk now, but the ages move on (they froze before).
        first = _age_of(_panel(app), 12)
        await wait_for(pilot, lambda: _age_of(_panel(app), 12) != first, timeout=30,
                       what="checkpoint-12's age moving on")
