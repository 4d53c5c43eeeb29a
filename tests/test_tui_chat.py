"""The Chat screen: opened with C from the dashboard and the checkpoints screen, loads in a
worker, streams tokens (seen before the answer ends), stops on the key, and answers one
prompt from two checkpoints side by side. Real models (the trained demo run), real threads."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tui_helpers import screen_text, wait_for, wait_text
from tunedeck.tui.app import TunedeckApp
from tunedeck.tui.screens.chat import ChatPane, ChatScreen

LOAD_TIMEOUT = 180


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNEDECK_FAKE_NVML", "none")
    from tunedeck.runner.monitor.nvml import reset_nvml

    reset_nvml()


def _panes(app: TunedeckApp) -> list[ChatPane]:
    return list(app.screen.query(ChatPane)) if isinstance(app.screen, ChatScreen) else []


async def _type(pilot, text: str) -> None:  # type: ignore[no-untyped-def]
    for ch in text:
        await pilot.press("space" if ch == " " else ch)
    await pilot.press("enter")


async def test_dashboard_C_opens_chat_that_streams_and_stops_on_the_key(
        trained_demo_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # every loading phase takes 1 s longer, every token 0.3 s
    monkeypatch.setenv("TUNEDECK_FAULT", "slowtoken@0.3,slowload@1")
    app = TunedeckApp(root=trained_demo_run.parent)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for(pilot, lambda: app.selected_run_dir == trained_demo_run, timeout=60, what="the run selected")
        await pilot.press("C")
        await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen), what="chat screen")
        (pane,) = _panes(app)
        assert app.screen.focused is app.screen.query_one("#chat-input")
        # loading runs in a worker: the UI answers keys meanwhile and shows the progress
        await wait_text(pilot, app, "loading", timeout=30)
        await pilot.press("x", "y")
        assert pane.state == "loading" and app.screen.query_one("#chat-input").value == "xy"
        await pilot.press("backspace", "backspace")
        await wait_for(pilot, lambda: pane.state == "ready", timeout=LOAD_TIMEOUT, what="model loaded")
        assert any(s.startswith("weights of") for s in pane.progress_log), pane.progress_log
        await wait_text(pilot, app, "out (final)", "ready")
        # the base model of the same run beside it babbles on; greedy and long
        await _type(pilot, "/set max_new_tokens 300")
        await _type(pilot, "/set do_sample false")
        await wait_text(pilot, app, "do_sample = False")
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: app.screen.id == "chat-beside", what="beside picker")
        await pilot.press("enter")  # first choice: the base model
        await wait_for(pilot, lambda: len(_panes(app)) == 2 and _panes(app)[1].state == "ready",
                       timeout=LOAD_TIMEOUT, what="base model loaded beside")
        base = _panes(app)[1]
        assert base.session.gen.max_new_tokens == 300 and base.session.gen.do_sample is False
        await _type(pilot, "hi")
        # partial text on screen while the answer is still being written
        await wait_for(pilot, lambda: base.state == "generating" and len(base.answer_so_far) >= 6,
                       timeout=120, what="a partial answer")
        partial = base.answer_so_far
        shown = screen_text(app)
        assert base.state == "generating" and "▌" in shown
        assert partial.split()[0] in shown if partial.split() else True
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: base.state == "ready" and pane.state == "ready", timeout=60,
                       what="generation stopped")
        answer = base.session.messages[-1]["content"]
        assert answer.startswith(partial) and base.stopped
        assert len(base.session.loaded.tokenizer.encode(answer, add_special_tokens=False)) < 300
        await wait_text(pilot, app, "[stopped]")
        # esc leaves (nothing is generating), back on the dashboard
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen.id == "dashboard", what="dashboard")


async def test_two_checkpoints_side_by_side_answer_one_prompt(trained_demo_run: Path, tmp_path: Path) -> None:
    app = TunedeckApp(root=trained_demo_run.parent)
    async with app.run_test(size=(140, 40)) as pilot:
        await wait_for(pilot, lambda: app.selected_run_dir == trained_demo_run, timeout=60, what="the run selected")
        await pilot.press("c")
        await wait_for(pilot, lambda: app.screen.id == "checkpoints" and app.screen.checkpoints, what="checkpoints")
        assert app.screen.checkpoints[0].step == 300  # newest first
        await pilot.press("C")
        await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen), what="chat screen")
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: app.screen.id == "chat-beside", what="beside picker")
        text = screen_text(app)
        assert "checkpoint-100" in text and "base model" in text
        # pick checkpoint-100 (the list: base, final, 300, 200, 100)
        for _ in range(4):
            await pilot.press("down")
        await pilot.press("enter")
        await wait_for(pilot, lambda: len(_panes(app)) == 2 and all(p.state == "ready" for p in _panes(app)),
                       timeout=LOAD_TIMEOUT, what="two checkpoints loaded")
        left, right = _panes(app)
        assert left.label.endswith("checkpoint-300") and right.label.endswith("checkpoint-100")
        await _type(pilot, "/set temperature 0")
        await _type(pilot, "Add the numbers.\\n4 3")
        await wait_for(pilot, lambda: all(p.state == "ready" and p.session.messages and
                                          p.session.messages[-1]["role"] == "assistant" for p in _panes(app)),
                       timeout=120, what="both answers")
        for p in (left, right):
            assert p.session.messages[0] == {"role": "user", "content": "Add the numbers.\n4 3"}
        assert left.session.messages[-1]["content"].strip().isdigit()
        shown = screen_text(app)
        assert "checkpoint-300" in shown and "checkpoint-100" in shown
        # /save writes both conversations
        out = tmp_path / "pair.json"
        await _type(pilot, f"/save {out}")
        await wait_for(pilot, out.is_file, what="saved file")
        import json

        saved = json.loads(out.read_text())
        assert [s["model"] for s in saved["panes"]] == [left.label, right.label]


async def test_checkpoints_X_exports_the_selected_checkpoint_with_progress(
        trained_demo_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from tests.control_helpers import REPO

    monkeypatch.setenv("PYTHONPATH", str(REPO))
    app = TunedeckApp(root=trained_demo_run.parent)
    async with app.run_test(size=(140, 40)) as pilot:
        await wait_for(pilot, lambda: app.selected_run_dir == trained_demo_run, timeout=60, what="the run selected")
        await pilot.press("c")
        await wait_for(pilot, lambda: app.screen.id == "checkpoints" and app.screen.checkpoints, what="checkpoints")
        await pilot.press("down")  # checkpoint-200
        await pilot.press("X")
        await wait_for(pilot, lambda: app.screen.id == "path-prompt", what="export path prompt")
        field = app.screen.query_one("#path-input")
        assert field.value.endswith("out-checkpoint-200-merged")
        out = tmp_path / "from-tui"
        field.value = str(out)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen.id == "checkpoints", what="back on checkpoints")
        screen = app.screen
        await wait_for(pilot, lambda: (out / "tunedeck_export.json").is_file(), timeout=240, what="the export")
        await wait_text(pilot, app, f"exported checkpoint-200 to {out}", timeout=60)
        assert any(p.startswith("shard") for p in screen.export_progress), screen.export_progress
        assert json.loads((out / "tunedeck_export.json").read_text())["checkpoint_step"] == 200
