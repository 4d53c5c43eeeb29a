"""The dashboard as a person uses it: which runs it lists, the selected-run panel kept
current, and the runs table's keys (j/k, / filter), over real run directories."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from textual.command import CommandList, Hits, Provider
from textual.widgets import Input

from tests.monitor_helpers import make_llamafactory_resumed_run
from tests.tui_helpers import RunSpec, screen_text, wait_for, wait_text, write_run
from tunedeck.runner.rundir.manifest import ProcRef
from tunedeck.tui.app import TunedeckApp
from tunedeck.tui.widgets.runs_table import RunsTable

pytestmark = pytest.mark.fake_gpus("gpu2")


def _row_names(app: TunedeckApp) -> list[str]:
    table = app.screen.query_one(RunsTable)
    return [r.name for r in (table._runs[str(k.value)] for k in table.rows)]


@asynccontextmanager
async def _runs_table_focused(
    app: TunedeckApp, ready: Callable[[], bool], *, notifications: bool = False
) -> AsyncIterator[Any]:
    """The pilot of ``app`` running at 160x48 once ``ready()`` holds, with the runs table focused."""
    async with app.run_test(size=(160, 48), notifications=notifications) as pilot:
        await wait_for(pilot, ready, what="the run")
        app.screen.query_one(RunsTable).focus()
        yield pilot


@asynccontextmanager
async def _on_a_resumed_llamafactory_run(tmp_path: Path) -> AsyncIterator[tuple[Any, TunedeckApp]]:
    """``(pilot, app)``: the dashboard over one LLaMA-Factory run that was resumed once
    (``make_llamafactory_resumed_run``), with the runs table focused on it."""
    root = tmp_path / "saves"
    make_llamafactory_resumed_run(root / "lf-resumed")
    app = TunedeckApp(root=root)
    async with _runs_table_focused(app, lambda: _row_names(app) == ["lf-resumed"], notifications=True) as pilot:
        yield pilot, app


async def test_a_step_logged_twice_by_a_resume_is_one_point_in_the_chart_and_tokens_per_second(
    tmp_path: Path,
) -> None:
    async with _on_a_resumed_llamafactory_run(tmp_path) as (pilot, app):
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


async def test_resume_on_a_llamafactory_run_says_at_once_that_it_cannot_and_its_missing_log_is_named(
    tmp_path: Path,
) -> None:
    async with _on_a_resumed_llamafactory_run(tmp_path) as (pilot, app):
        text = await wait_text(pilot, app, "no stdout.log")  # there is none: not "stdout.log is empty"
        assert "stdout.log is empty" not in text
        await pilot.press("R")
        await wait_text(pilot, app, "Cannot resume", "LLaMA-Factory")
        assert app.screen.id == "dashboard"  # no checkpoint picker, no confirmation first
        assert not app.screen_stack[1:]


class _SlowSearch(Provider):
    """Stands in for a loaded machine: the palette's search takes a while to finish."""

    async def search(self, query: str) -> Hits:
        await asyncio.sleep(0.5)
        return
        yield  # an async generator that finds nothing


class _LoadedApp(TunedeckApp):
    COMMANDS = TunedeckApp.COMMANDS | {_SlowSearch}


async def test_the_palette_runs_what_was_typed_when_enter_follows_at_once(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    write_run(root, RunSpec("alpha", "finished", 100, 100, checkpoints=(50, 100)), now=time.time())
    app = _LoadedApp(root=root)
    async with _runs_table_focused(app, lambda: app.selected_run_dir is not None) as pilot:
        await pilot.press("ctrl+p")
        await wait_for(pilot, lambda: app.screen.id == "--command-palette", what="the palette")
        palette = app.screen
        # "o" alone ranks another command first ("o" is in every "dashboard: ..."); the list
        # shows that once its search is done...
        await pilot.press("o")
        await wait_for(pilot, lambda: not [w for w in app.workers if w.node is palette and not w.is_finished],
                       what="the search for 'o'")
        top = palette.query_one(CommandList).get_option_at_index(0).prompt
        assert "Open" not in str(top), top
        # ...then "p" and Enter at once, before the search for "op" is done: Open runs.
        await pilot.press("p", "enter")
        await wait_for(pilot, lambda: app.screen.id != "--command-palette", what="the palette closed")
        await wait_for(pilot, lambda: app.screen.id == "path-prompt", what="the open-config prompt")
        await wait_text(pilot, app, "Open a YAML config")
        assert app.theme == "tunedeck-dark"  # and nothing else ran


async def test_a_stopping_run_shows_its_whole_status_word(tmp_path: Path, supervisor: ProcRef) -> None:
    root = tmp_path / "runs"
    run = write_run(root, RunSpec("live", "running", 100, 500, age_s=1.0), now=time.time(),
                    supervisor=supervisor)
    app = TunedeckApp(root=root)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_text(pilot, app, "▶ running")
        m = json.loads((run / "tunedeck_run.json").read_text())
        m["status"] = "stopping"  # as `tunedeck stop` leaves it while the trainer saves
        (run / "tunedeck_run.json").write_text(json.dumps(m))
        await wait_text(pilot, app, "◍ stopping")  # the panel's header says it...

        def table_row() -> str:
            return next((ln for ln in screen_text(app).splitlines() if "◍ stopp" in ln and "%" in ln), "")

        await wait_for(pilot, lambda: "◍ stopp" in table_row(), what="the table's row updated")
        assert "◍ stopping " in table_row(), table_row()  # ...and the table: the whole word


async def test_a_checkpoint_between_logging_steps_says_which_step_its_loss_is_from(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    write_run(root, RunSpec("between", "stopped", 120, 300, checkpoints=(100, 125)), now=time.time())
    app = TunedeckApp(root=root)
    async with _runs_table_focused(app, lambda: app.selected_run_dir is not None) as pilot:
        text = await wait_text(pilot, app, "step 125", "(at step 120)")
        line100 = next(ln for ln in text.splitlines() if "step 100 " in ln)
        assert "(at step" not in line100  # logged at its own step: nothing to say
        await pilot.press("c")
        await wait_for(pilot, lambda: app.screen.id == "checkpoints", what="checkpoints screen")
        await wait_text(pilot, app, "(at step 120)")


async def test_j_k_move_through_the_runs_and_slash_filters_them_until_escape(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    now = time.time()
    for i, name in enumerate(("qwen-sft", "llama-dpo", "qwen-dpo", "mistral-pt")):
        write_run(root, RunSpec(name, "finished", 100, 100, seed=i), now=now - 100 * i)
    app = TunedeckApp(root=root)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_for(pilot, lambda: len(_row_names(app)) == 4, what="four runs")
        table = app.screen.query_one(RunsTable)
        table.focus()
        first = _row_names(app)[0]
        await wait_for(pilot, lambda: app.selected_run_dir == root / first, what="the first run selected")
        await pilot.press("j")
        second = _row_names(app)[1]
        await wait_for(pilot, lambda: app.selected_run_dir == root / second, what="j: the next run")
        await wait_text(pilot, app, f"{second}  ✔ finished")  # the panel follows
        await pilot.press("j", "j", "k")
        await wait_for(pilot, lambda: app.selected_run_dir == root / _row_names(app)[2], what="j j k")

        await pilot.press("slash")
        box = app.screen.query_one("#runs-filter", Input)
        assert app.focused is box
        await pilot.press(*"qwen")
        await wait_for(pilot, lambda: sorted(_row_names(app)) == ["qwen-dpo", "qwen-sft"], what="filtered")
        await wait_text(pilot, app, "2 of 4 match")
        await pilot.press("enter")
        assert app.focused is table and box.value == "qwen"  # enter keeps the filter
        await pilot.press("k", "j")  # still the table's keys
        assert sorted(_row_names(app)) == ["qwen-dpo", "qwen-sft"]
        await pilot.press("slash", *"-dpo")
        await wait_for(pilot, lambda: _row_names(app) == ["qwen-dpo"], what="narrowed")
        await pilot.press("escape")
        await wait_for(pilot, lambda: len(_row_names(app)) == 4, what="esc: every run again")
        assert app.focused is table and not box.display
        text = screen_text(app)
        assert "match" not in text and "4 runs" in text
        await pilot.press("slash", *"nothing-like-this")
        await wait_text(pilot, app, "No run matches")
        await pilot.press("escape")
        await wait_for(pilot, lambda: len(_row_names(app)) == 4, what="esc again")


async def test_one_run_with_a_corrupt_log_line_does_not_hide_the_other_runs(tmp_path: Path) -> None:
    # Seen in tmux with --root /tmp: a fuzzed trainer_log.jsonl (an integer no float holds)
    # turned the whole table into "cannot list runs under /tmp".
    root = tmp_path / "runs"
    write_run(root, RunSpec("good", "finished", 100, 100), now=time.time())
    bad = root / "fuzzed"
    bad.mkdir()
    (bad / "trainer_log.jsonl").write_text(
        json.dumps({"current_steps": 5, "total_steps": 10, "loss": 1.5, "percentage": 10**400}) + "\n")
    app = TunedeckApp(root=root)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_for(pilot, lambda: sorted(_row_names(app)) == ["fuzzed", "good"], what="both runs")
        assert "cannot list runs" not in screen_text(app)


async def test_help_stays_in_the_footer_at_80_columns_when_the_keys_do_not_fit(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    write_run(root, RunSpec("alpha", "finished", 100, 100), now=time.time())
    app = TunedeckApp(root=root)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: _row_names(app) == ["alpha"], what="the run")
        def footer() -> str:
            return screen_text(app).splitlines()[-1]

        await wait_for(pilot, lambda: "Stop" in footer(), what="the footer painted")
        assert "? Help" in footer(), footer()  # the key that lists every other key
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: app.screen.id == "help", what="help")
