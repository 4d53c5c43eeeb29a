"""Configs in the editor: open a file, start one from a sample config or a hardware preset,
edit the config a run was launched from."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tunedeck.tui.data import configs as samples
from tunedeck.tui.data.runs import FROZEN_CONFIG, read_manifest
from tunedeck.tui.flows import FlowHost

if TYPE_CHECKING:
    from tunedeck.tui.data.runs import RunSnapshot


def open_editor(h: FlowHost, path: Path | None = None, *, text: str | None = None,
                title: str | None = None) -> None:
    """The editor on ``path`` (or on ``text``, a new config); one editor at a time."""
    from tunedeck.tui.screens.editor import EditorScreen

    try:
        screen = EditorScreen(path=path, text=text, title=title)
    except Exception as exc:  # noqa: BLE001 - ConfigError with file:line
        h.notify(str(exc), title="Cannot open config", severity="error", timeout=10)
        return
    current = next((s for s in h.screen_stack if isinstance(s, EditorScreen)), None)
    if current is not None:
        current.replace_with(screen)  # one editor at a time; asks about unsaved edits
        return
    h.push_screen(screen)


def edit_run_config(h: FlowHost, run: RunSnapshot) -> None:
    """The config the run was launched from, else its frozen copy."""
    m = read_manifest(run.run_dir)
    path = Path(m.config_path) if m and m.config_path and Path(m.config_path).is_file() else None
    if path is None:
        frozen = Path(run.run_dir) / FROZEN_CONFIG
        path = frozen if frozen.is_file() else None
    if path is None:
        h.notify(f"{run.name} has no config file to edit.", severity="warning")
        return
    open_editor(h, path)


def prompt_open_config(h: FlowHost) -> None:
    """Ask for a path (relative to the runs root) and open it."""
    from tunedeck.tui.screens.modals import PathPrompt

    root = h.root

    def opened(value: str | None) -> None:
        if value:
            p = Path(value).expanduser()
            if not p.is_absolute():
                p = root / p
            open_editor(h, p)

    h.push_screen(PathPrompt("Open a YAML config", placeholder=str(root / "config.yaml")), opened)


def new_config(h: FlowHost) -> None:
    """Pick a sample config or a hardware preset; the editor opens on a new, unsaved config."""
    from tunedeck.tui.screens.modals import ChoiceModal

    choices: list[tuple[str, str]] = []
    for p in samples.sample_config_paths():
        choices.append((f"sample:{p}", f"sample  {p.name}"))
    try:
        for pr in samples.hardware_presets():
            choices.append((f"preset:{pr.name}", f"preset  {pr.title}"))
    except Exception:  # noqa: BLE001 - presets not available
        pass
    if not choices:
        h.notify("No sample configs or presets found.", severity="warning")
        return

    def chosen(cid: str | None) -> None:
        if not cid:
            return
        kind, _, ref = cid.partition(":")
        if kind == "sample":
            text = Path(ref).read_text(encoding="utf-8")
            open_editor(h, None, text=text, title=f"new config from {Path(ref).name}")
        else:
            open_editor(h, None, text=samples.preset_yaml(ref), title=f"new config from preset {ref}")

    h.push_screen(ChoiceModal("Start a config from", choices, id="new-config"), chosen)
