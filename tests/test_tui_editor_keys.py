"""The config editor from the keyboard alone, as a person uses it: Tab through every
field, switch groups, find a parameter by part of its name (ctrl+f or the palette),
read booleans without colour, open another file, and get out of a crash with a
non-zero exit and a usable terminal."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from tests.pty_helpers import read_some
from tests.tui_helpers import (
    editor_app,
    open_editor,
    screen_text,
    wait_for,
    wait_text,
    write_editor_config,
)
from tunedeck.tui.app import TunedeckApp
from tunedeck.tui.data import schema
from tunedeck.tui.screens.editor import EditorScreen

pytestmark = pytest.mark.fake_gpus("gpu2")

CONFIG = """\
# A 7B LoRA run
model_name_or_path: Qwen/Qwen2.5-7B-Instruct
stage: sft
do_train: true
finetuning_type: lora
lora_rank: 0            # invalid on purpose: one error
template: qwen
dataset: alpaca_en_demo
cutoff_len: 1024
learning_rate: 5.0e-5
per_device_train_batch_size: 2
output_dir: {out}
"""

OTHER = """\
# the other file
model_name_or_path: Qwen/Qwen2.5-0.5B
stage: sft
finetuning_type: lora
template: qwen
dataset: alpaca_en_demo
cutoff_len: 333
output_dir: {out}
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    return write_editor_config(tmp_path, CONFIG)


def _focused_field(editor: EditorScreen) -> str | None:
    f = editor._field_of(editor.app.focused)
    return f.name if f is not None else None


def _group_of(editor: EditorScreen) -> str:
    return str(editor.query_one("TabbedContent").active).removeprefix("tab-")  # type: ignore[attr-defined]


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=lambda s: f"{s[0]}x{s[1]}")
async def test_tab_visits_every_field_of_a_group_in_order_and_shows_each_one(
    tmp_path: Path, config_file: Path, size: tuple[int, int]
) -> None:
    async with editor_app(tmp_path, config_file, size=size) as (pilot, app, editor):
        first_group = editor.groups[0].id
        assert _focused_field(editor) == schema.params_in_group(first_group)[0].name
        # To the LoRA group with the keyboard: its first field gets the focus.
        await pilot.press("ctrl+pagedown")
        await wait_for(pilot, lambda: _group_of(editor) == "lora", what="the LoRA group")
        names = [p.name for p in schema.params_in_group("lora")]
        assert len(names) > 10
        await wait_for(pilot, lambda: not editor._pending.get("lora"), what="every LoRA field mounted")
        await wait_for(pilot, lambda: _focused_field(editor) == names[0], what="first field focused")

        visited = [_focused_field(editor)]
        for _ in names[1:]:
            await pilot.press("tab")
            await pilot.pause()
            visited.append(_focused_field(editor))
            # The person sees the field they are on, marked in a character (not only a
            # colour): its name is painted with the marker.
            name = visited[-1]
            await wait_text(pilot, app, f"▶ {name}  ", timeout=10)
        assert visited == names
        assert _group_of(editor) == "lora"

        # Past the last field: the findings list; Shift+Tab comes back to the last field.
        await pilot.press("tab")
        assert editor.query_one("#findings").has_focus
        await pilot.press("shift+tab")
        assert _focused_field(editor) == names[-1]
        await pilot.press("shift+tab")
        assert _focused_field(editor) == names[-2]


async def test_ctrl_pageup_and_pagedown_switch_groups_and_say_which(
    tmp_path: Path, config_file: Path
) -> None:
    async with editor_app(tmp_path, config_file, size=(80, 24)) as (pilot, app, editor):
        ids = [g.id for g in editor.groups]
        await pilot.press("ctrl+pageup")  # wraps to the last group
        await wait_for(pilot, lambda: _group_of(editor) == ids[-1], what="last group")
        await wait_text(pilot, app, f"Group {len(ids)}/{len(ids)}: {editor.groups[-1].title}")
        await pilot.press("ctrl+pagedown", "ctrl+pagedown")
        await wait_for(pilot, lambda: _group_of(editor) == ids[1], what="second group")
        first = schema.params_in_group(ids[1])[0].name
        await wait_for(pilot, lambda: _focused_field(editor) == first, what="its first field")
        await wait_text(pilot, app, f"Group 2/{len(ids)}: {editor.groups[1].title}", first)
        await pilot.press("ctrl+t")  # the older key still goes forward
        await wait_for(pilot, lambda: _group_of(editor) == ids[2], what="third group")


async def test_typing_part_of_a_name_in_the_find_box_focuses_that_field(
    tmp_path: Path, config_file: Path
) -> None:
    async with editor_app(tmp_path, config_file, size=(80, 24)) as (pilot, app, editor):
        await pilot.press("ctrl+f")
        await wait_for(pilot, lambda: app.screen.id == "param-search", what="find box")
        await pilot.press(*"per_dev")
        text = await wait_text(pilot, app, "per_device_train_batch_size", "per_device_eval_batch_size")
        assert text.index("per_device_train_batch_size") < text.index("per_device_eval_batch_size")
        await pilot.press("enter")
        await wait_for(
            pilot, lambda: _focused_field(editor) == "per_device_train_batch_size", what="field focused"
        )
        assert _group_of(editor) == "training"
        await wait_text(pilot, app, "per_device_train_batch_size  int", "Training")

        # Down picks the next match; a group name shows the group at its first field.
        await pilot.press("ctrl+f", *"per_dev", "down", "enter")
        await wait_for(
            pilot, lambda: _focused_field(editor) == "per_device_eval_batch_size", what="second match"
        )
        await pilot.press("ctrl+f", *"quantiz", "enter")
        await wait_for(pilot, lambda: _group_of(editor) == "quantization", what="quantization group")
        first = schema.params_in_group("quantization")[0].name
        await wait_for(pilot, lambda: _focused_field(editor) == first, what="its first field")

        # Esc closes the box and changes nothing.
        await pilot.press("ctrl+f", *"lora_r", "escape")
        await wait_for(pilot, lambda: app.screen is editor, what="back in the editor")
        assert _focused_field(editor) == first


async def test_the_palette_finds_a_parameter_by_part_of_its_name(
    tmp_path: Path, config_file: Path
) -> None:
    from textual.command import CommandPalette
    from textual.widgets import OptionList

    async with editor_app(tmp_path, config_file, size=(120, 40)) as (pilot, app, editor):
        await pilot.press("ctrl+p")
        await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette), what="palette")
        await pilot.press(*"per_dev")

        def first_hit() -> str:
            lst = app.screen.query_one("CommandList", OptionList)
            if not lst.option_count or lst.highlighted is None:
                return ""
            return str(lst.get_option_at_index(lst.highlighted).prompt)

        # A person reads the highlighted entry, then presses enter.
        await wait_for(pilot, lambda: "param: per_device_train_batch_size" in first_hit(),
                       what="the parameter highlighted")
        await pilot.press("enter")
        await wait_for(
            pilot, lambda: _focused_field(editor) == "per_device_train_batch_size", what="field focused"
        )
        assert _group_of(editor) == "training"


async def test_editing_keys_keep_their_order_with_typing_while_the_screen_is_busy(
    tmp_path: Path, config_file: Path
) -> None:
    # On a loaded machine the editor's screen is often busy for a moment (mounting a
    # group's fields). A burst of keys from the terminal must still edit in the order it
    # was typed: end, ctrl+u, "abc" gives "abc" (it gave "": ctrl+u ran after the letters).
    import asyncio

    from textual import events

    async with editor_app(tmp_path, config_file, size=(80, 24)) as (pilot, app, editor):
        await pilot.press("ctrl+f", *"cutoff_len", "enter")
        await wait_for(pilot, lambda: _focused_field(editor) == "cutoff_len", what="cutoff_len")
        control = editor.fields["cutoff_len"].control
        started, release = asyncio.Event(), asyncio.Event()

        async def busy() -> None:
            started.set()
            await release.wait()  # stands in for a long mount in the screen's queue

        editor.call_next(busy)
        try:
            # Not pilot.pause(): it waits for the screen's queue, which is held on purpose.
            await asyncio.wait_for(started.wait(), timeout=30)
            for key, char in (("end", None), ("ctrl+u", None), ("a", "a"), ("b", "b"), ("c", "c")):
                event = events.Key(key, char)
                event.set_sender(app)
                app._driver.send_message(event)  # type: ignore[union-attr]  # a burst, like a terminal's
            deadline = time.monotonic() + 30
            while not control.value.endswith("abc"):  # type: ignore[attr-defined]
                assert time.monotonic() < deadline, control.value  # type: ignore[attr-defined]
                await asyncio.sleep(0.02)
        finally:
            release.set()
        await wait_for(pilot, lambda: editor.fields["cutoff_len"].error is not None
                       or control.value != "abc", what="the edit checked")  # type: ignore[attr-defined]
        await pilot.pause()
        assert control.value == "abc"  # type: ignore[attr-defined]
        await wait_text(pilot, app, "'abc' is not")


async def test_booleans_say_true_or_false_in_words_without_colour(
    tmp_path: Path, config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    async with editor_app(tmp_path, config_file, size=(80, 40)) as (pilot, app, editor):  # unfolded fields (no compact layout)
        assert app.no_color
        await pilot.press("ctrl+f", *"plot_loss", "enter")
        await wait_for(pilot, lambda: _focused_field(editor) == "plot_loss", what="plot_loss")
        def row() -> str:
            """The painted line of plot_loss's switch: the first line under its name that is
            not the help or advice text; empty while the jump has not painted the field yet."""
            lines = screen_text(app).splitlines()
            at = next((i for i, ln in enumerate(lines) if "plot_loss  bool" in ln), None)
            if at is None:
                return ""
            return next((ln for ln in lines[at + 1:] if ln.strip() in ("true", "false (default)",
                                                                       "false", "true (default)")), "")

        await wait_for(pilot, lambda: "false (default)" in row(), what="'false (default)' painted")
        await pilot.press("space")
        await wait_for(pilot, lambda: editor.doc.get("plot_loss") is True, what="plot_loss on")
        await wait_for(pilot, lambda: " true" in row() and "false" not in row(), what="'true' painted")
        assert editor.dirty


async def test_findings_count_says_1_error_and_the_estimate_says_no_gpu_was_found(
    tmp_path: Path, config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TUNEDECK_FAKE_NVML", "none")
    from tunedeck.runner.monitor.nvml import reset_nvml

    reset_nvml()
    async with editor_app(tmp_path, config_file, size=(160, 48)) as (pilot, app, editor):
        text = await wait_text(pilot, app, "1 error,", "no GPU found here, so preset 1 x 24 GiB")
        assert "1 errors" not in text
        assert "NVML" not in text.split("Memory estimate")[1].split("╰")[0]
        assert editor.analysis is not None and editor.analysis.estimate is not None
        assert editor.analysis.estimate.gpu_mem_bytes == 24 * 2**30
        # ctrl+g back round to "this machine" says there is none, not "detected".
        while editor.memory_index != 0:
            await pilot.press("ctrl+g")
        text = await wait_text(pilot, app, "no GPU found here (NVML)")
        assert "detected" not in text.lower()


async def test_opening_another_file_replaces_the_editor_and_asks_about_unsaved_edits(
    tmp_path: Path, config_file: Path
) -> None:
    other = tmp_path / "other.yaml"
    other.write_text(OTHER.format(out=tmp_path / "runs" / "other"))
    original = config_file.read_text()
    async with editor_app(tmp_path, config_file, size=(120, 40)) as (pilot, app, editor):

        async def open_path(path: Path) -> None:
            await pilot.press("ctrl+o")
            await wait_for(pilot, lambda: app.screen.id == "path-prompt", what="path prompt")
            await pilot.press("ctrl+u", *str(path), "enter")

        async def open_other() -> None:
            await open_path(other)

        # No edits: ctrl+o and a file replace the editor at once (this raised DuplicateIds).
        await open_other()
        await wait_for(
            pilot,
            lambda: isinstance(app.screen, EditorScreen) and app.screen.path == other
            and app.screen.analysis is not None,
            what="the other file, without a question",
        )
        assert [type(s).__name__ for s in app.screen_stack].count("EditorScreen") == 1
        await open_path(config_file)
        await wait_for(
            pilot,
            lambda: isinstance(app.screen, EditorScreen) and app.screen.path == config_file
            and app.screen.analysis is not None,
            what="the first file again",
        )
        editor = app.screen  # type: ignore[assignment]

        await pilot.press("ctrl+f", *"cutoff_len", "enter")
        await wait_for(pilot, lambda: _focused_field(editor) == "cutoff_len", what="cutoff_len")
        await pilot.press("end", "ctrl+u", *"2048")
        await wait_for(pilot, lambda: editor.dirty, what="an unsaved edit")

        # Cancel: the same editor, the edit still there, nothing written.
        await open_other()
        await wait_for(pilot, lambda: app.screen.id == "confirm-unsaved", what="save/discard/cancel")
        await wait_text(pilot, app, "Save (s)", "Discard (d)", "Cancel", str(config_file))
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is editor, what="back in the editor")
        assert editor.dirty and editor.doc.get("cutoff_len") == 2048
        assert config_file.read_text() == original

        # Save: written, then the other file opens in place of this editor.
        await open_other()
        await wait_for(pilot, lambda: app.screen.id == "confirm-unsaved", what="asked again")
        await pilot.press("s")
        await wait_for(
            pilot,
            lambda: isinstance(app.screen, EditorScreen) and app.screen is not editor
            and app.screen.analysis is not None,
            what="the other file's editor",
        )
        assert "cutoff_len: 2048" in config_file.read_text()
        second: EditorScreen = app.screen  # type: ignore[assignment]
        assert second.path == other
        assert [type(s).__name__ for s in app.screen_stack].count("EditorScreen") == 1
        await wait_text(pilot, app, str(other))

        # Discard: edits thrown away, the first file opens again; ctrl+n works the same.
        await pilot.press("ctrl+f", *"cutoff_len", "enter")
        await wait_for(pilot, lambda: _focused_field(second) == "cutoff_len", what="cutoff_len")
        await pilot.press("end", "ctrl+u", *"999")
        await wait_for(pilot, lambda: second.dirty, what="edit in the second file")
        await open_path(config_file)
        await wait_for(pilot, lambda: app.screen.id == "confirm-unsaved", what="asked")
        await pilot.press("d")
        await wait_for(
            pilot,
            lambda: isinstance(app.screen, EditorScreen) and app.screen.path == config_file
            and app.screen.analysis is not None,
            what="the first file again",
        )
        assert "cutoff_len: 333" in other.read_text()
        third: EditorScreen = app.screen  # type: ignore[assignment]
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: app.screen.id == "new-config", what="new config choice")
        await pilot.press("enter")
        await wait_for(
            pilot,
            lambda: isinstance(app.screen, EditorScreen) and app.screen is not third
            and app.screen.path is None,
            what="a new config in the editor",
        )
        assert [type(s).__name__ for s in app.screen_stack].count("EditorScreen") == 1
        assert app.return_code is None  # still running, no crash
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen.id == "dashboard", what="dashboard")


def _read_until_quiet(fd: int, deadline: float, done: subprocess.Popen[bytes]) -> bytes:
    out = b""
    while time.monotonic() < deadline:
        chunk = read_some(fd, 0.2)
        if chunk is None:
            break
        if chunk:
            out += chunk
        elif done.poll() is not None:
            break
    return out


def test_an_unhandled_exception_exits_non_zero_and_restores_the_terminal(
    tmp_path: Path, config_file: Path
) -> None:
    # A crash inside the app (here: the editor's mount raises) must not look like success
    # to a script, and must leave the terminal as it found it (no alternate screen, no
    # mouse reporting, echo and line mode back).
    boom = (
        "import sys\n"
        "from tunedeck.tui.screens import editor\n"
        "async def crash(self):\n"
        "    raise RuntimeError('boom in the editor')\n"
        "editor.EditorScreen.on_mount = crash\n"
        "from tunedeck.runner.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    master, slave = pty.openpty()
    os.set_blocking(master, True)
    before = termios.tcgetattr(slave)
    env = dict(os.environ, TERM="xterm-256color", COLUMNS="100", LINES="30")
    proc = subprocess.Popen(
        [sys.executable, "-c", boom, "--root", str(tmp_path), "--config", str(config_file)],
        stdin=slave, stdout=slave, stderr=slave, env=env, cwd=tmp_path, start_new_session=True,
    )
    try:
        out = _read_until_quiet(master, time.monotonic() + 120, proc)
        rc = proc.wait(timeout=60)
        out += _read_until_quiet(master, time.monotonic() + 2, proc)
    finally:
        if proc.poll() is None:
            proc.kill()
        after = termios.tcgetattr(slave)
        os.close(master)
        os.close(slave)
    text = out.decode("utf-8", "replace")
    assert rc == 1, (rc, text[-2000:])
    assert "boom in the editor" in text
    # The alternate screen was entered and left again, mouse reporting switched off.
    assert "\x1b[?1049h" in text and text.rindex("\x1b[?1049l") > text.rindex("\x1b[?1049h")
    assert "\x1b[?1000l" in text
    assert after[3] & termios.ECHO and after[3] & termios.ICANON, (before[3], after[3])


@pytest.mark.slow
async def test_launch_with_unsaved_edits_writes_the_file_only_when_confirmed(
    tmp_path: Path, make_demo_config, monkeypatch: pytest.MonkeyPatch  # type: ignore[no-untyped-def]
) -> None:
    monkeypatch.setenv("TUNEDECK_FAKE_NVML", "none")  # no GPU here: the run uses the CPU
    from tunedeck.runner.monitor.nvml import reset_nvml

    reset_nvml()
    config = make_demo_config(tmp_path, max_steps=2, save_steps=2, logging_steps=1)
    original = config.read_text()
    run_dir = tmp_path / "out"
    app = TunedeckApp(root=tmp_path, config=config)
    async with app.run_test(size=(140, 44)) as pilot:
        editor = await open_editor(pilot, app)
        await pilot.press("ctrl+f", *"max_steps", "enter")
        await wait_for(pilot, lambda: _focused_field(editor) == "max_steps", what="max_steps")
        await pilot.press("end", "ctrl+u", "3")
        await wait_for(
            pilot,
            lambda: editor.dirty and editor.analysis is not None
            and editor.analysis.generation == editor.generation,
            what="the edit analysed",
        )

        # Cancel the launch: the file on disk is as it was, the edit still in the editor.
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: app.screen.id == "launch-modal", timeout=60, what="launch modal")
        await wait_text(pilot, app, "unsaved edits are saved", "when you launch", "tunedeck.runner.train")
        await pilot.press("n")
        await wait_for(pilot, lambda: app.screen is editor, what="back in the editor")
        assert config.read_text() == original
        assert editor.dirty and editor.doc.get("max_steps") == 3
        assert not (run_dir / "tunedeck_run.json").exists()

        # Confirm: saved first, then launched from the saved file.
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: app.screen.id == "launch-modal", timeout=60, what="launch modal")
        await pilot.press("y")
        await wait_for(pilot, lambda: app.screen.id == "dashboard" and app.selected_run_dir == run_dir,
                       timeout=120, what="dashboard with the new run")
        saved = config.read_text()
        assert "max_steps: 3" in saved and saved != original
        assert "max_steps: 3" in (run_dir / "config.yaml").read_text()

        def status() -> str | None:
            for r in app.runs_view.runs if app.runs_view else ():
                if Path(r.run_dir) == run_dir:
                    return str(getattr(r.status, "value", r.status))
            return None

        await wait_for(pilot, lambda: status() in ("finished", "failed", "oom", "diverged"),
                       timeout=400, what="the run ends")
        assert status() == "finished"
