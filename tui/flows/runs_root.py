"""The runs root: list the runs under another directory (registered runs are always listed)."""

from __future__ import annotations

from pathlib import Path

from tunedeck.tui.flows import FlowHost
from tunedeck.tui.messages import RootChosen


def prompt_root(h: FlowHost) -> None:
    """Ask for a directory (the current root filled in) and list the runs under it."""
    from tunedeck.tui.screens.modals import PathPrompt

    def chosen(value: str | None) -> None:
        if value:
            set_root(h, Path(value))

    h.push_screen(PathPrompt("List runs under (registered runs are always listed)",
                             str(h.root), placeholder="a directory"), chosen)


def set_root(h: FlowHost, root: Path) -> bool:
    """List the runs under ``root`` (relative to the current root) if it is a directory."""
    root = root.expanduser()
    if not root.is_absolute():
        root = h.root / root
    if not root.is_dir():
        h.notify(f"Not a directory: {root}. Still listing runs under {h.root}.",
                 title="Runs root", severity="error", timeout=8)
        return False
    h.post_message(RootChosen(root.resolve()))
    return True
