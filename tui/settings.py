"""The TUI's small user settings file (theme choice), remembered between sessions.

Location: ``$TUNEDECK_HOME/settings.json`` when ``TUNEDECK_HOME`` is set (tests use
it), else ``$XDG_CONFIG_HOME/tunedeck/settings.json`` (``~/.config/tunedeck/``).
A missing or broken file means defaults; it is never an error.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from tunedeck.tui.data.files import atomic_write_json, ensure_dir, read_json


def settings_dir() -> Path:
    home = os.environ.get("TUNEDECK_HOME")
    if home:
        return Path(home).expanduser()
    xdg = os.environ.get("XDG_CONFIG_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".config"
    return base / "tunedeck"


def settings_path() -> Path:
    return settings_dir() / "settings.json"


def user_themes_dir() -> Path:
    return settings_dir() / "themes"


@dataclass(frozen=True)
class Settings:
    """What the TUI remembers. Unknown keys in the file are ignored."""

    theme: str | None = None

    def with_theme(self, name: str) -> Settings:
        return replace(self, theme=name)


def load_settings(path: Path | None = None) -> Settings:
    data = read_json(path or settings_path())
    if not isinstance(data, dict):
        return Settings()
    theme = data.get("theme")
    return Settings(theme=theme if isinstance(theme, str) and theme else None)


def save_settings(settings: Settings, path: Path | None = None) -> Path | None:
    """Write atomically; returns the path, or ``None`` when the directory is not writable."""
    target = path or settings_path()
    try:
        ensure_dir(target.parent)
        existing = read_json(target)
        merged = dict(existing) if isinstance(existing, dict) else {}
        merged.update({k: v for k, v in asdict(settings).items() if v is not None})
        atomic_write_json(target, merged)
    except OSError:
        return None
    return target
