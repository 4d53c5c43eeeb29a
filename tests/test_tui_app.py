"""App-wide behaviour: themes (CLI, palette, settings file, broken user themes), colours
only through theme variables, NO_COLOR, and exiting when the terminal goes away."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import signal
import struct
import sys
import termios
import time
from pathlib import Path
from typing import Any

import pytest
from textual.color import Color
from textual.widget import Widget
from textual.widgets import Static

from tests.pty_helpers import kill_child, read_some
from tests.tui_helpers import build_runs, use_fake_gpus, wait_for
from tunedeck import themes
from tunedeck.tui.app import TunedeckApp

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    use_fake_gpus(monkeypatch, "gpu2", home=tmp_path / "home")


async def _switch_theme_from_the_palette(pilot: Any, app: TunedeckApp, theme: str) -> None:
    """The way a user switches themes: ctrl+p, type ``theme: THEME``, enter."""
    await pilot.press("ctrl+p")
    await pilot.press(*f"theme: {theme}")
    await wait_for(pilot, lambda: f"theme: {theme}" in str(
        app.screen.query_one("CommandList").get_option_at_index(0).prompt), what="palette hit")
    await pilot.press("enter")
    await wait_for(pilot, lambda: app.theme == theme, what="theme switched")


async def test_theme_from_the_command_line_and_the_palette_is_remembered(tmp_path: Path) -> None:
    settings = tmp_path / "home" / "settings.json"
    app = TunedeckApp(root=tmp_path, theme="light", poll=False)
    async with app.run_test() as pilot:
        assert app.theme == "tunedeck-light"
        await _switch_theme_from_the_palette(pilot, app, "tunedeck-contrast")
    assert json.loads(settings.read_text())["theme"] == "tunedeck-contrast"
    again = TunedeckApp(root=tmp_path, poll=False)
    async with again.run_test():
        assert again.theme == "tunedeck-contrast"


def _painted(widget: Widget, text: str) -> set[str]:
    """The colours (hex) ``widget`` painted cells containing ``text`` with, as drawn now."""
    widget.refresh()  # render_line reads the widget's own line cache: draw afresh
    out: set[str] = set()
    for y in range(widget.size.height):
        for seg in widget.render_line(y):
            if text in seg.text and seg.style is not None and seg.style.color is not None:
                out.add(Color.from_rich_color(seg.style.color).hex)
    return out


def _colour(theme: str, var: str) -> str:
    return Color.parse(themes.BUILTIN[theme].variables[var]).hex


async def test_a_theme_switch_from_the_palette_recolours_status_cells_and_gpu_gauges(tmp_path: Path) -> None:
    # Switched the way a user does (ctrl+p, typed, enter): the runs table's status word, the
    # selected run's header and the GPU panel's VRAM bar come out in the new theme's colours,
    # with no code of ours asked to recolour them (their colours are component classes styled
    # with theme variables).
    from tunedeck.tui.widgets.gpu_panel import GpuPanel
    from tunedeck.tui.widgets.runs_table import RunsTable

    build_runs(tmp_path / "runs", now=time.time())
    app = TunedeckApp(root=tmp_path / "runs", theme="tunedeck-dark", poll=False)
    async with app.run_test(size=(160, 48)) as pilot:
        await app.sample_once()
        await pilot.pause()
        table, gpus = app.screen.query_one(RunsTable), app.screen.query_one(GpuPanel)
        # Down the list with j, as a user does, until the oom run is the selected one.
        for _ in range(len(table.rows)):
            if app.selected_run_dir is not None and app.selected_run_dir.name == "mistral-7b-full":
                break
            await pilot.press("j")
            await pilot.pause()
        await wait_for(pilot, lambda: app.selected_run_dir is not None
                       and app.selected_run_dir.name == "mistral-7b-full", what="the oom run selected")
        await app.sample_once()
        header = app.screen.query_one("#run-header", Static)
        dark_failed = {_colour("tunedeck-dark", "status-failed")}
        # Painted by the dashboard's watchers a frame or more after the sample: wait for it.
        await wait_for(pilot, lambda: _painted(header, "oom") == dark_failed, what="the header's oom in dark")
        # The oom row is under the cursor (painted as the cursor): the diverged one is not.
        # gpu2's cards are 85% and 78% full: the VRAM bar's fill (13 of 16 cells) is the mid
        # gauge colour. (A sparkline that has seen 8 samples at 100% also paints 8 full
        # blocks, in its own colour: so ask whether the gauge colour is among them.)
        bar = "█" * 8
        dark_mid, light_mid = _colour("tunedeck-dark", "gauge-mid"), _colour("tunedeck-light", "gauge-mid")
        await wait_for(pilot, lambda: _painted(table, "diverged") == dark_failed, what="diverged in dark")
        await wait_for(pilot, lambda: dark_mid in _painted(gpus, bar), what="the VRAM bar in dark")
        await _switch_theme_from_the_palette(pilot, app, "tunedeck-light")
        await wait_for(pilot, lambda: _painted(table, "diverged") == {_colour("tunedeck-light", "status-failed")},
                       what="the status cell in the light theme's colour")
        await wait_for(pilot, lambda: light_mid in _painted(gpus, bar) and dark_mid not in _painted(gpus, bar),
                       what="the VRAM bar in light")
        await wait_for(pilot, lambda: _painted(header, "oom") == {_colour("tunedeck-light", "status-failed")},
                       what="the header's oom in light")
        assert _colour("tunedeck-light", "gauge-mid") != _colour("tunedeck-dark", "gauge-mid")
        assert _colour("tunedeck-light", "status-failed") != _colour("tunedeck-dark", "status-failed")


async def test_a_broken_user_theme_falls_back_with_a_notification(tmp_path: Path) -> None:
    tdir = tmp_path / "home" / "themes"
    tdir.mkdir(parents=True)
    (tdir / "broken.yaml").write_text("name: broken\nprimary: not-a-colour\n")
    (tdir / "ocean.yaml").write_text("name: ocean\nprimary: '#1b6ca8'\nbackground: '#0b1d2a'\n"
                                     "variables:\n  status-failed: '#ff5c5c'\n")
    app = TunedeckApp(root=tmp_path, theme="broken", poll=False)
    async with app.run_test() as pilot:
        await pilot.pause()
        assert app.theme == themes.DEFAULT_THEME
        messages = [n.message for n in app._notifications]
        assert any("broken.yaml" in m and "primary" in m for m in messages), messages
        assert any("'broken'" in m and "does not exist" in m for m in messages), messages
        app.theme = "ocean"  # a good user theme is there and works with our variables
        await pilot.pause()
        assert app.theme_variables["status-failed"] == "#ff5c5c"
        assert app.theme_variables["gauge-low"] == themes.VARIABLE_DEFAULTS["gauge-low"]


def test_tcss_uses_only_theme_variables_for_colour() -> None:
    literal = re.compile(r"#[0-9a-fA-F]{3,8}\b|\brgba?\(|\bhsla?\(|:\s*(red|green|blue|white|black|yellow|"
                         r"magenta|cyan|gr[ae]y)\b|ansi_")
    for tcss in themes.TCSS_FILES:
        for n, line in enumerate(tcss.read_text().splitlines(), 1):
            code = line.split("/*")[0]
            assert not literal.search(code), f"{tcss.name}:{n}: colour literal: {line.strip()}"


def test_high_contrast_theme_uses_only_the_16_ansi_colours() -> None:
    t = themes.TUNEDECK_CONTRAST
    assert t.ansi
    colours = [getattr(t, f) for f in ("primary", "secondary", "accent", "warning", "error", "success",
                                       "foreground", "background", "surface", "panel", "boost")]
    colours += [v for k, v in t.variables.items() if not k.endswith("text-style")]
    assert all(c.startswith("ansi_") for c in colours if c), colours
    # Every variable of ours has a value in every bundled theme or a default.
    for theme in themes.BUILTIN.values():
        for var in themes.VARIABLE_DEFAULTS:
            assert var in theme.variables, (theme.name, var)


def _read_until(fd: int, needle: bytes, timeout: float) -> bytes:
    buf = b""
    deadline = time.monotonic() + timeout
    while needle not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{needle!r} never appeared; got {buf[-2000:]!r}")
        chunk = read_some(fd, min(left, 0.5))
        if chunk is None:
            break
        buf += chunk
    return buf


def test_the_tui_exits_when_its_terminal_hangs_up_and_honours_no_color(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    build_runs(root, now=time.time())
    env = {**os.environ, "NO_COLOR": "1", "TERM": "xterm-256color", "TEXTUAL_FPS": "30"}
    pid, fd = pty.fork()
    if pid == 0:  # the child: tunedeck on its own terminal
        os.chdir(REPO)
        os.execve(sys.executable, [sys.executable, "-m", "tunedeck.runner.cli", "--root", str(root)], env)
    try:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        os.kill(pid, signal.SIGWINCH)
        out = _read_until(fd, b"oom", timeout=60)
        assert b"\x1b[38;2;" not in out and b"\x1b[48;2;" not in out  # NO_COLOR: no colours at all
        os.close(fd)  # the terminal goes away (SSH drop, tmux kill): the TUI must exit
        # Clean exit or, if Textual's shutdown blocks on the dead terminal, the 3 s fallback.
        deadline = time.monotonic() + 60  # generous for a loaded CI box
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            assert time.monotonic() < deadline, "the TUI kept running after its terminal went away"
            time.sleep(0.1)
    finally:
        kill_child(pid)
