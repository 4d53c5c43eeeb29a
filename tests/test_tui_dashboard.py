"""Dashboard, logs, checkpoints, triage and help, over real run directories (no training).

The run directories follow the run-dir protocol (tests/tui_helpers.py); a live
helper process stands in for a running run's supervisor so its status is real.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.tui_helpers import RunSpec, build_runs, screen_text, wait_for, wait_text, write_run
from tunedeck.runner.rundir.manifest import ProcRef
from tunedeck.tui import actions
from tunedeck.tui.app import TunedeckApp
from tunedeck.tui.widgets.runs_table import RunsTable

pytestmark = pytest.mark.fake_gpus("gpu2")


@pytest.fixture
def runs_root(tmp_path: Path, supervisor: ProcRef) -> Path:
    root = tmp_path / "runs"
    build_runs(root, now=time.time())
    write_run(
        root,
        RunSpec(
            "gemma-2b-live", "running", 150, 800, checkpoints=(100,), gpus=(1,), seed=9, age_s=2.0
        ),
        now=time.time(),
        supervisor=supervisor,
    )
    return root


def _row_names(app: TunedeckApp) -> list[str]:
    table = app.screen.query_one(RunsTable)
    return [r.name for r in (table._runs[str(k.value)] for k in table.rows)]


@asynccontextmanager
async def _dashboard(
    root: Path, *, size: tuple[int, int], **options: Any
) -> AsyncIterator[tuple[Any, TunedeckApp]]:
    """``(pilot, app)``: the app over ``root`` (``runs_root``) at ``size``, once it lists the six runs."""
    app = TunedeckApp(root=root, **options)
    async with app.run_test(size=size) as pilot:
        await wait_for(pilot, lambda: len(_row_names(app)) == 6, what="the six runs")
        yield pilot, app


async def _select(pilot, app: TunedeckApp, name: str) -> None:  # type: ignore[no-untyped-def]
    table = app.screen.query_one(RunsTable)
    names = _row_names(app)
    table.focus()
    table.move_cursor(row=names.index(name))
    await wait_for(
        pilot,
        lambda: app.selected_run_dir is not None and app.selected_run_dir.name == name,
        what=f"select {name}",
    )
    await app.sample_once()
    await pilot.pause()


async def test_runs_table_shows_each_run_and_updates_in_place_without_moving_the_cursor(
    runs_root: Path,
) -> None:
    async with _dashboard(runs_root, size=(120, 40)) as (pilot, app):
        # The status word, not colour alone.
        await wait_text(pilot, app, "running", "finished", "oom", "stopped", "diverged")
        await _select(pilot, app, "tiny-demo")
        table = app.screen.query_one(RunsTable)
        row_before = table.cursor_row

        # The LLaMA-Factory run logs more steps: its row updates, the cursor stays.
        log = runs_root / "llama3-8b-lora-sft" / "trainer_log.jsonl"
        with log.open("a") as fh:
            fh.write(
                json.dumps(
                    {
                        "current_steps": 900,
                        "total_steps": 1000,
                        "loss": 0.4321,
                        "percentage": 90.0,
                        "timestamp": time.time(),
                    }
                )
                + "\n"
            )
        await wait_text(pilot, app, "0.4321", "90%")
        assert table.cursor_row == row_before
        assert table.run_at_cursor().name == "tiny-demo"


async def test_selected_run_panel_shows_alert_metrics_one_key_away_and_the_stop_modal(
    runs_root: Path, supervisor: ProcRef
) -> None:
    async with _dashboard(runs_root, size=(160, 48)) as (pilot, app):
        await _select(pilot, app, "mistral-7b-full")
        await wait_text(pilot, app, "CUDA out of memory", "last ", " min ")  # banner; loss as text
        await pilot.press("2")
        await wait_text(pilot, app, "no eval loss logged yet")  # it died before the first eval
        await _select(pilot, app, "qwen2-7b-dpo")
        await wait_text(pilot, app, "6 points")  # six evaluations in 600 steps
        assert "no eval loss" not in screen_text(app)

        # Stop asks first, naming the run, its pid and what happens; n cancels.
        await _select(pilot, app, "gemma-2b-live")
        await pilot.press("S")
        await wait_for(pilot, lambda: app.screen.id == "confirm-stop", what="stop modal")
        await wait_text(pilot, app, "gemma-2b-live", str(supervisor.pid), "SIGTERM", "checkpoint")
        await pilot.press("n")
        await wait_for(pilot, lambda: app.screen.id == "dashboard", what="modal closed")
        assert not (runs_root / "gemma-2b-live" / "tunedeck_stop").exists()


async def test_readonly_mode_registers_no_action_that_changes_a_run(runs_root: Path) -> None:
    mutating = {a.key for a in actions.ACTIONS if a.mutating and a.key}
    async with _dashboard(runs_root, size=(120, 40), readonly=True) as (pilot, app):
        await _select(pilot, app, "gemma-2b-live")
        bound = {b.key for _k, b in app.screen._bindings}
        assert not (bound & {"S", "R", "L"}), bound
        assert "Stop" not in screen_text(app)  # not in the footer either
        await pilot.press("S", "R", "L")
        await pilot.pause()
        assert app.screen.id == "dashboard"
        # Every screen reached from here leaves them out too.
        await pilot.press("c")
        await wait_for(pilot, lambda: app.screen.id == "checkpoints")
        assert not ({b.key for _k, b in app.screen._bindings} & mutating)
        await pilot.press("escape", "question_mark")
        await wait_for(pilot, lambda: app.screen.id == "help")
        help_text = _help_text(app)
        assert "Stop" not in help_text and "Read-only mode" in screen_text(app)
        # ... and the palette offers none of them.
        from tunedeck.tui.commands import TunedeckCommands

        provider = TunedeckCommands(app.screen_stack[0])
        labels = [text for text, _h, _cb in provider._commands()]
        assert labels and not any("Stop" in t or "Resume" in t or "Launch" in t for t in labels)


def _help_text(app: TunedeckApp) -> str:
    import io

    from rich.console import Console

    console = Console(width=120, file=io.StringIO(), record=True, color_system=None)
    for static in app.screen.query(".help-section"):
        console.print(static.content)
    return console.export_text()


async def test_help_is_generated_from_the_registry(runs_root: Path) -> None:
    app = TunedeckApp(root=runs_root, poll=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: app.screen.id == "help")
        text = " ".join(_help_text(app).split())
        for a in actions.ACTIONS:
            assert a.label in text, a.id
            assert " ".join(a.help.split())[:30] in text, a.id
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen.id == "dashboard")


async def test_logs_checkpoints_and_triage_screens(runs_root: Path) -> None:
    async with _dashboard(runs_root, size=(120, 40)) as (pilot, app):

        # Logs: jump to the first error, search with n.
        await _select(pilot, app, "mistral-7b-full")
        await pilot.press("l")
        await wait_for(
            pilot, lambda: app.screen.id == "logs" and app.screen.log_offset > 0, what="log loaded"
        )
        await pilot.press("E")
        status = str(app.screen.query_one("#log-status").render())
        assert "first error at line" in status and "Traceback" in status
        await pilot.press("slash", *"info", "enter")
        assert app.screen.matches and "match 1/" in str(
            app.screen.query_one("#log-status").render()
        )
        await pilot.press("n")
        assert "match 2/" in str(app.screen.query_one("#log-status").render())
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen.id == "dashboard")

        # Checkpoints: deleting an older one asks once; the newest complete one asks twice.
        await _select(pilot, app, "tiny-demo")
        await pilot.press("c")
        await wait_for(
            pilot, lambda: app.screen.id == "checkpoints" and len(app.screen.checkpoints) == 3
        )
        run = runs_root / "tiny-demo"
        assert "(newest)" in screen_text(app)
        await pilot.press("D")
        await wait_for(pilot, lambda: app.screen.id == "confirm-delete")
        await pilot.press("y")
        await wait_for(pilot, lambda: app.screen.id == "confirm-delete-newest")
        await pilot.press("n")
        await wait_for(pilot, lambda: app.screen.id == "checkpoints")
        assert (run / "checkpoint-250").is_dir()
        await pilot.press("down", "down", "D")
        await wait_for(pilot, lambda: app.screen.id == "confirm-delete")
        assert "checkpoint-100" in screen_text(app)
        await pilot.press("y")
        await wait_for(pilot, lambda: not (run / "checkpoint-100").exists(), what="deleted")
        await wait_for(
            pilot, lambda: app.screen.id == "checkpoints" and len(app.screen.checkpoints) == 2
        )
        await pilot.press("up", "up", "p")
        await wait_text(pilot, app, str(run / "checkpoint-250"))
        await pilot.press("escape")

        # Triage of the OOM run: first suggestion is the batch-size patch; apply writes a new config.
        await _select(pilot, app, "mistral-7b-full")
        await pilot.press("t")
        await wait_for(
            pilot, lambda: app.screen.id == "triage" and app.screen.view is not None, timeout=30
        )
        text = screen_text(app)
        assert "OOM" in text
        first = app.screen.suggestions[0][1]
        assert "per_device_train_batch_size" in first.patch
        assert (
            "per_device_train_batch_size: 8 -> 1" in text.replace("→", "->")
            or "per_device_train_batch_size: 8" in text
        )
        await pilot.press("A")
        oom_dir = runs_root / "mistral-7b-full"
        await wait_for(
            pilot, lambda: (oom_dir / "config.triage-1.yaml").exists(), what="patched config"
        )
        patched = (oom_dir / "config.triage-1.yaml").read_text()
        assert (
            f"per_device_train_batch_size: {first.patch['per_device_train_batch_size']}" in patched
        )
        assert "# mistral-7b-full: fixture config" in patched  # comments carried over
        # Resume is offered next (a checkpoint choice or a notice that there is none).
        await pilot.pause(0.5)
        assert app.screen.id in ("resume-choice", "triage")


async def test_launch_a_copy_shows_the_exact_command_for_the_gpus_ticked(runs_root: Path) -> None:
    async with _dashboard(runs_root, size=(120, 40)) as (pilot, app):
        await _select(pilot, app, "qwen2-7b-dpo")
        await pilot.press("L")
        await wait_for(pilot, lambda: app.screen.id == "launch-modal", timeout=30, what="launch modal")
        copy_dir = runs_root / "qwen2-7b-dpo-copy2"
        await wait_text(pilot, app, str(copy_dir), "tunedeck.runner.train", "GPU 0", "GPU 1")
        command = app.screen.query_one("#launch-command")
        assert "CUDA_VISIBLE_DEVICES=0 " in str(command.content) and "--multi_gpu" not in str(command.content)
        await pilot.press("down", "space")  # tick GPU 1 as well: the command follows
        await wait_for(pilot, lambda: "--multi_gpu" in str(command.content), what="two-GPU command")
        assert "CUDA_VISIBLE_DEVICES=0,1" in str(command.content) and "--num_processes 2" in str(command.content)
        await pilot.press("n")
        await wait_for(pilot, lambda: app.screen.id == "dashboard")
        assert not copy_dir.exists()  # nothing launched

        # e: the run's config in the editor
        await pilot.press("e")
        await wait_for(pilot, lambda: app.screen.id == "editor", what="editor")
        assert app.screen.path == runs_root / "qwen2-7b-dpo" / "config.yaml"


async def test_log_tail_keeps_the_newest_line_at_the_bottom_through_resizes(tmp_path: Path) -> None:
    # One finished run, selected at start-up (the run panel's body is built after the
    # first frame): its newest stdout line must be on screen from the start and after resizes.
    root = tmp_path / "runs"
    write_run(root, RunSpec("only-run", "finished", 300, 300, checkpoints=(100, 200, 300)), now=time.time())
    lines = [f"line {i:03d} of the trainer's output" for i in range(200)]
    lines[190] = "\r 40%|####      | 4/10\r 50%|#####     | 5/10\r{'loss': 0.5}"  # tqdm, then a log dict
    lines[195] = "a long line " + "x" * 300 + " END-OF-LONG-LINE"
    (root / "only-run" / "stdout.log").write_text("\n".join(lines) + "\n")
    app = TunedeckApp(root=root)
    async with app.run_test(size=(160, 48)) as pilot:
        for size in ((160, 48), (120, 30), (140, 40), (160, 48)):
            await pilot.resize_terminal(*size)
            text = await wait_text(pilot, app, "line 199 of the trainer's output", "line 198 of")
            assert "a long line xxx" in text
            assert "END-OF-LONG-LINE" not in text  # one row per line: a long one is cut, not wrapped
            assert "{'loss': 0.5}" in text and "40%|" not in text  # what a terminal shows after \r


# -- the user flows behind the dashboard's keys (tunedeck.tui.flows), by keys ----------------


def _said(app: TunedeckApp, text: str) -> bool:
    """A notification (a toast: its lines wrap on screen) says ``text``."""
    return any(text in n.message for n in app._notifications)


async def test_stop_says_when_there_is_nothing_to_stop_asks_first_and_y_requests_it(
    runs_root: Path,
) -> None:
    from tunedeck.runner.rundir.protocol import STOP_REQUEST

    request = runs_root / "gemma-2b-live" / STOP_REQUEST
    async with _dashboard(runs_root, size=(120, 40)) as (pilot, app):
        await _select(pilot, app, "qwen2-7b-dpo")
        await pilot.press("S")
        await wait_for(pilot, lambda: _said(app, "qwen2-7b-dpo is finished: nothing to stop"))
        assert app.screen.id == "dashboard"

        await _select(pilot, app, "gemma-2b-live")
        await pilot.press("S")
        await wait_for(pilot, lambda: app.screen.id == "confirm-stop", what="stop modal")
        assert app.focused is not None and app.focused.id == "no"  # enter alone never stops a run
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen.id == "dashboard", what="modal closed")
        assert isinstance(app.focused, RunsTable) and not request.exists()

        await pilot.press("S")
        await wait_for(pilot, lambda: app.screen.id == "confirm-stop", what="stop modal")
        await pilot.press("y")
        await wait_for(pilot, lambda: _said(app, "Stop requested: gemma-2b-live will checkpoint and exit."))
        assert request.exists() and app.screen.id == "dashboard"


async def test_resume_offers_complete_checkpoints_newest_first_then_confirms(
    runs_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tunedeck.tui.data import control

    resumed: list[tuple[Path, str | None, object]] = []
    monkeypatch.setattr(control, "resume", lambda run_dir, from_=None, overrides=None:
                        resumed.append((Path(run_dir), from_, overrides)))
    run = runs_root / "tiny-demo"
    async with _dashboard(runs_root, size=(120, 40)) as (pilot, app):
        # A LLaMA-Factory run: said at once, no picker.
        await _select(pilot, app, "llama3-8b-lora-sft")
        await pilot.press("R")
        await wait_for(pilot, lambda: _said(app, "llama3-8b-lora-sft was started by LLaMA-Factory"))
        assert app.screen.id == "dashboard"

        await _select(pilot, app, "tiny-demo")
        await pilot.press("R")
        await wait_for(pilot, lambda: app.screen.id == "resume-choice", what="checkpoint picker")
        text = await wait_text(pilot, app, "Resume tiny-demo from", "checkpoint-250  ", "(newest)")
        assert text.index("checkpoint-250") < text.index("checkpoint-200") < text.index("checkpoint-100")
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen.id == "dashboard", what="picker closed")

        await pilot.press("R")
        await wait_for(pilot, lambda: app.screen.id == "resume-choice", what="checkpoint picker")
        await pilot.press("down", "enter")  # the second newest
        await wait_for(pilot, lambda: app.screen.id == "confirm-resume", what="confirmation")
        await wait_text(pilot, app, "Resume tiny-demo?", str(run / "checkpoint-200"), "frozen config.")
        await pilot.press("n")
        await wait_for(pilot, lambda: app.screen.id == "dashboard", what="cancelled")
        assert resumed == []

        await pilot.press("R")
        await wait_for(pilot, lambda: app.screen.id == "resume-choice", what="checkpoint picker")
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen.id == "confirm-resume", what="confirmation")
        await pilot.press("y")
        await wait_for(pilot, lambda: _said(app, "Resumed tiny-demo from checkpoint-250."))
        assert resumed == [(run, str(run / "checkpoint-250"), None)]
        assert app.screen.id == "dashboard" and app.selected_run_dir == run


async def test_launch_a_copy_launches_on_y_and_selects_the_new_run(
    runs_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from types import SimpleNamespace

    from tunedeck.tui.data import control

    copy_dir = runs_root / "qwen2-7b-dpo-copy2"
    launched: list[tuple[Path, dict[str, str], list[int] | None, bool]] = []

    def fake_launch(config_path, overrides, gpus, *, slurm=False):  # type: ignore[no-untyped-def]
        launched.append((Path(config_path), dict(overrides), gpus, slurm))
        write_run(runs_root, RunSpec(copy_dir.name, "finished", 10, 600), now=time.time())
        return SimpleNamespace(run_dir=str(copy_dir), name=copy_dir.name)

    monkeypatch.setattr(control, "launch", fake_launch)
    async with _dashboard(runs_root, size=(120, 40)) as (pilot, app):
        await _select(pilot, app, "qwen2-7b-dpo")
        await pilot.press("L")
        await wait_for(pilot, lambda: app.screen.id == "launch-modal", timeout=30, what="launch modal")
        await wait_text(pilot, app, "Launch a copy of qwen2-7b-dpo", str(copy_dir))
        await pilot.press("y")
        await wait_for(pilot, lambda: _said(app, "Launched qwen2-7b-dpo-copy2."))
        await wait_for(pilot, lambda: app.selected_run_dir == copy_dir, what="the copy selected")
        assert app.screen.id == "dashboard" and len(_row_names(app)) == 7
        assert app.screen.query_one(RunsTable).run_at_cursor().name == copy_dir.name
        frozen = runs_root / "qwen2-7b-dpo" / "config.yaml"
        assert launched == [(frozen, {"output_dir": str(copy_dir)}, [0], False)]


async def test_new_config_from_a_hardware_preset_opens_the_editor_on_it(runs_root: Path) -> None:
    from textual.widgets import OptionList

    from tunedeck.tui.data.configs import hardware_presets
    from tunedeck.tui.screens.editor import EditorScreen

    preset = hardware_presets()[0]
    app = TunedeckApp(root=runs_root, poll=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("n")
        await wait_for(pilot, lambda: app.screen.id == "new-config", what="the sample/preset list")
        options = app.screen.query_one(OptionList)
        assert options.has_focus
        ids = [options.get_option_at_index(i).id for i in range(options.option_count)]
        assert any(str(i).startswith("sample:") for i in ids)
        await pilot.press(*["down"] * ids.index(f"preset:{preset.name}"), "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, EditorScreen), what="the editor")
        editor: EditorScreen = app.screen  # type: ignore[assignment]
        assert editor.path is None and editor.title_text == f"new config from preset {preset.name}"
        values = editor.doc.values()
        assert {k: values.get(k) for k in preset.values} == dict(preset.values)


async def test_d_lists_the_runs_under_another_directory_and_o_opens_a_config_there(
    runs_root: Path, tmp_path: Path
) -> None:
    from textual.widgets import Input

    from tunedeck.tui.screens.editor import EditorScreen

    other = tmp_path / "elsewhere"
    write_run(other, RunSpec("elsewhere-run", "finished", 100, 100), now=time.time())
    async with _dashboard(runs_root, size=(120, 40)) as (pilot, app):
        await pilot.press("d")
        await wait_for(pilot, lambda: app.screen.id == "path-prompt", what="the root prompt")
        box = app.screen.query_one(Input)
        assert box.has_focus and box.value == str(runs_root)
        await pilot.press(*str(other), "enter")  # typing replaces the selected old root
        await wait_for(pilot, lambda: _row_names(app) == ["elsewhere-run"], what="the other root's runs")
        assert app.screen.id == "dashboard" and app.root == other
        await wait_text(pilot, app, f"under {other}")

        await pilot.press("d", *"no-such-dir", "enter")
        await wait_for(pilot, lambda: _said(app, f"Not a directory: {other / 'no-such-dir'}"))
        assert app.root == other and _row_names(app) == ["elsewhere-run"]

        await pilot.press("o")
        await wait_for(pilot, lambda: app.screen.id == "path-prompt", what="the open prompt")
        await pilot.press(*"elsewhere-run/config.yaml", "enter")  # relative to the root
        await wait_for(pilot, lambda: isinstance(app.screen, EditorScreen), what="the editor")
        assert app.screen.path == other / "elsewhere-run" / "config.yaml"  # type: ignore[attr-defined]
