"""tunedeck's colour themes: Textual ``Theme`` objects plus the ``.tcss`` beside them.

Every colour the app uses lives here. The ``.tcss`` files reference only theme
variables (``$primary``, ``$status-failed`` ...); the variables that are ours are
declared once in :data:`VARIABLE_DEFAULTS` (fed to ``App.get_theme_variable_defaults``),
so a Textual built-in theme or a user theme that omits them still works.

User themes are YAML or JSON files in ``<settings dir>/themes/``; one that cannot be
parsed or names an invalid colour is skipped and reported, never a crash.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from textual.color import Color, ColorParseError
from textual.theme import Theme

THEMES_DIR = Path(__file__).resolve().parent
DEFAULT_THEME = "tunedeck-dark"

# The .tcss files: the app loads the first two at start-up; the others belong to
# screens (``Screen.CSS_PATH``) and are parsed when such a screen first opens, so
# the dashboard's first frame does not wait for them.
APP_TCSS: tuple[Path, ...] = (THEMES_DIR / "base.tcss", THEMES_DIR / "dashboard.tcss")
EDITOR_TCSS = THEMES_DIR / "editor.tcss"
SCREENS_TCSS = THEMES_DIR / "screens.tcss"
TCSS_FILES: tuple[Path, ...] = (*APP_TCSS, EDITOR_TCSS, SCREENS_TCSS)

# Our own theme variables, with defaults that read on any dark or light background.
# A Theme may override any of them through ``Theme.variables``.
VARIABLE_DEFAULTS: dict[str, str] = {
    "status-running": "#4ebf71",   # starting / running / stopping
    "status-finished": "#5fa8d3",
    "status-stopped": "#d7a53a",   # stopped / preempted: a checkpoint to resume from
    "status-failed": "#e05561",    # failed / oom / diverged / killed / lost
    "gauge-low": "#4ebf71",        # VRAM / utilisation bars by fill level
    "gauge-mid": "#d7a53a",
    "gauge-high": "#e05561",
    "gauge-empty": "#5c6370",
    "spark-min": "#3d6e8f",
    "spark-max": "#7fd1e8",
    "alert-background": "#5a1d24",
    "alert-foreground": "#ffd7d7",
    "diff-added": "#4ebf71",
    "diff-removed": "#e05561",
    "muted": "#8a919c",
    "frame": "#4a5260",            # panel borders
}

TUNEDECK_DARK = Theme(
    name="tunedeck-dark",
    primary="#4fb3bf",
    secondary="#7a9cd6",
    accent="#e0af68",
    warning="#e0af68",
    error="#f7768e",
    success="#9ece6a",
    foreground="#d5dae3",
    background="#111418",
    surface="#191d23",
    panel="#232a33",
    dark=True,
    variables={
        "status-running": "#9ece6a",
        "status-finished": "#7dcfff",
        "status-stopped": "#e0af68",
        "status-failed": "#f7768e",
        "gauge-low": "#9ece6a",
        "gauge-mid": "#e0af68",
        "gauge-high": "#f7768e",
        "gauge-empty": "#3b4350",
        "spark-min": "#2f6f7a",
        "spark-max": "#7fe0ec",
        "alert-background": "#4a1a22",
        "alert-foreground": "#ffd9df",
        "diff-added": "#9ece6a",
        "diff-removed": "#f7768e",
        "muted": "#8790a0",
        "frame": "#3b4350",
        "footer-key-foreground": "#4fb3bf",
        "block-cursor-background": "#2c5d66",
        "block-cursor-foreground": "#ffffff",
        "block-cursor-text-style": "bold",
    },
)

TUNEDECK_LIGHT = Theme(
    name="tunedeck-light",
    primary="#0b6e7a",
    secondary="#3557a8",
    accent="#9a5b00",
    warning="#9a5b00",
    error="#b3261e",
    success="#2e7d32",
    foreground="#1e2329",
    background="#f4f5f7",
    surface="#e9ecf0",
    panel="#dde2e8",
    dark=False,
    variables={
        "status-running": "#2e7d32",
        "status-finished": "#1565c0",
        "status-stopped": "#9a5b00",
        "status-failed": "#b3261e",
        "gauge-low": "#2e7d32",
        "gauge-mid": "#b26a00",
        "gauge-high": "#b3261e",
        "gauge-empty": "#c3c9d1",
        "spark-min": "#7fb8c0",
        "spark-max": "#0b6e7a",
        "alert-background": "#fbe3e1",
        "alert-foreground": "#7a1510",
        "diff-added": "#2e7d32",
        "diff-removed": "#b3261e",
        "muted": "#5f6873",
        "frame": "#b4bcc6",
        "footer-key-foreground": "#0b6e7a",
        "block-cursor-background": "#0b6e7a",
        "block-cursor-foreground": "#ffffff",
    },
)

# High contrast in the 16 ANSI colours: the terminal's own palette is used as is
# (``ansi=True``), so it reads on a 16-colour terminal, a Linux console or tmux
# without true colour, and under the user's colour-blind-friendly palette.
TUNEDECK_CONTRAST = Theme(
    name="tunedeck-contrast",
    ansi=True,
    primary="ansi_bright_cyan",
    secondary="ansi_bright_blue",
    accent="ansi_bright_yellow",
    warning="ansi_bright_yellow",
    error="ansi_bright_red",
    success="ansi_bright_green",
    foreground="ansi_bright_white",
    background="ansi_black",
    surface="ansi_black",
    panel="ansi_black",
    boost="ansi_default",
    dark=True,
    variables={
        "ansi-background": "ansi_black",
        "ansi-foreground": "ansi_bright_white",
        "status-running": "ansi_bright_green",
        "status-finished": "ansi_bright_cyan",
        "status-stopped": "ansi_bright_yellow",
        "status-failed": "ansi_bright_red",
        "gauge-low": "ansi_bright_green",
        "gauge-mid": "ansi_bright_yellow",
        "gauge-high": "ansi_bright_red",
        "gauge-empty": "ansi_white",
        "spark-min": "ansi_cyan",
        "spark-max": "ansi_bright_cyan",
        "alert-background": "ansi_red",
        "alert-foreground": "ansi_bright_white",
        "diff-added": "ansi_bright_green",
        "diff-removed": "ansi_bright_red",
        "muted": "ansi_white",
        "frame": "ansi_white",
        "border-blurred": "ansi_white",
        "footer-key-foreground": "ansi_bright_cyan",
        "footer-background": "ansi_black",
        "footer-foreground": "ansi_bright_white",
        "footer-description-foreground": "ansi_bright_white",
        "footer-key-background": "ansi_black",
        "block-cursor-background": "ansi_bright_cyan",
        "block-cursor-foreground": "ansi_black",
        "block-cursor-text-style": "bold",
        "block-cursor-blurred-background": "ansi_white",
        "block-cursor-blurred-foreground": "ansi_black",
        "input-cursor-background": "ansi_bright_white",
        "input-cursor-foreground": "ansi_black",
        "input-selection-background": "ansi_blue",
        "screen-selection-background": "ansi_blue",
        "scrollbar": "ansi_white",
        "scrollbar-hover": "ansi_bright_white",
        "scrollbar-active": "ansi_bright_cyan",
        "scrollbar-background": "ansi_black",
        "scrollbar-corner-color": "ansi_black",
    },
)

BUILTIN: dict[str, Theme] = {t.name: t for t in (TUNEDECK_DARK, TUNEDECK_LIGHT, TUNEDECK_CONTRAST)}
# Short names accepted by ``--theme`` and the settings file.
ALIASES: dict[str, str] = {"dark": "tunedeck-dark", "light": "tunedeck-light", "contrast": "tunedeck-contrast",
                           "high-contrast": "tunedeck-contrast"}


@dataclass(frozen=True)
class ThemeProblem:
    """A user theme file that was skipped, and why (shown as a notification)."""

    file: Path
    message: str

    def __str__(self) -> str:
        return f"theme {self.file.name}: {self.message}"


def resolve_name(name: str | None) -> str | None:
    """``dark`` -> ``tunedeck-dark``; other names pass through."""
    if not name:
        return None
    return ALIASES.get(name.strip().lower(), name.strip())


_THEME_FIELDS = {f.name for f in fields(Theme)}
_COLOR_FIELDS = ("primary", "secondary", "warning", "error", "success", "accent",
                 "foreground", "background", "surface", "panel", "boost")


def theme_from_mapping(data: Mapping[str, Any], *, default_name: str) -> Theme:
    """Build a Theme from a user file's mapping; raises ValueError naming the bad field."""
    unknown = sorted(set(data) - _THEME_FIELDS)
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_THEME_FIELDS))}")
    if "primary" not in data:
        raise ValueError("a theme needs at least 'primary'")
    kwargs: dict[str, Any] = dict(data)
    kwargs.setdefault("name", default_name)
    for key in _COLOR_FIELDS:
        value = kwargs.get(key)
        if value is None:
            continue
        try:
            Color.parse(str(value))
        except ColorParseError:
            raise ValueError(f"{key}: {value!r} is not a colour") from None
    variables = kwargs.get("variables") or {}
    if not isinstance(variables, Mapping):
        raise ValueError("variables must be a mapping of name: value")
    kwargs["variables"] = {str(k): str(v) for k, v in variables.items()}
    theme = Theme(**kwargs)
    # Generating the colour system is what the app would do on switch: fail here instead.
    try:
        theme.to_color_system().generate()
    except Exception as exc:  # noqa: BLE001 - any failure means "broken theme"
        raise ValueError(f"cannot build colours: {exc}") from None
    return theme


def load_user_themes(directory: Path | None) -> tuple[list[Theme], list[ThemeProblem]]:
    """Themes from ``*.yaml``/``*.yml``/``*.json`` in ``directory``; broken files are reported."""
    themes: list[Theme] = []
    problems: list[ThemeProblem] = []
    if directory is None or not directory.is_dir():
        return themes, problems
    for path in sorted(directory.iterdir()):
        if path.suffix.lower() not in (".yaml", ".yml", ".json") or not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
            data = _parse(text, json_file=path.suffix.lower() == ".json")
            if not isinstance(data, Mapping):
                raise ValueError("the file must hold a mapping of theme fields")
            themes.append(theme_from_mapping(data, default_name=path.stem))
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(ThemeProblem(path, f"cannot read: {exc}"))
        except ValueError as exc:
            problems.append(ThemeProblem(path, str(exc)))
        except Exception as exc:  # noqa: BLE001 - a parser error of any kind
            problems.append(ThemeProblem(path, f"cannot parse: {str(exc).splitlines()[0]}"))
    return themes, problems


def _parse(text: str, *, json_file: bool) -> Any:
    if json_file:
        return json.loads(text)
    from ruamel.yaml import YAML

    return YAML(typ="safe").load(text)

