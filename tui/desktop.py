"""The terminal's own desktop notification, where the terminal has one.

OSC 777 (``notify;title;body``: foot, Ghostty, WezTerm, rxvt-unicode) or OSC 9
(``body``: iTerm2, Windows Terminal, WezTerm, ConEmu); inside tmux wrapped in tmux's
passthrough (it needs ``allow-passthrough on``). A terminal we do not know gets nothing:
an unknown escape can print garbage. Written through the same driver as the bell.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

OSC777 = ("foot", "ghostty", "wezterm", "rxvt")
OSC9 = ("iterm.app", "wezterm", "windows terminal", "conemu")


def _clean(text: str) -> str:
    # No control characters (an ESC or BEL would end the sequence early) and no ';' (a field separator).
    return "".join(c for c in text if c.isprintable()).replace(";", ",")[:200]


def escape_for(title: str, body: str, env: Mapping[str, str] | None = None) -> str | None:
    """The escape sequence that makes this terminal show a desktop notification, or None."""
    env = os.environ if env is None else env
    term = " ".join(env.get(k, "") for k in ("TERM_PROGRAM", "TERM", "LC_TERMINAL")).lower()
    if env.get("WT_SESSION"):
        term += " windows terminal"
    if any(t in term for t in OSC777):
        seq = f"\x1b]777;notify;{_clean(title)};{_clean(body)}\x07"
    elif any(t in term for t in OSC9):
        seq = f"\x1b]9;{_clean(title)}: {_clean(body)}\x07"
    else:
        return None
    if env.get("TMUX"):
        seq = "\x1bPtmux;" + seq.replace("\x1b", "\x1b\x1b") + "\x1b\\"
    return seq


def desktop_notify(app: Any, title: str, body: str) -> bool:
    """Send it through the app's driver; False when the terminal has none we know."""
    seq = escape_for(title, body)
    driver = getattr(app, "_driver", None)
    if seq is None or driver is None or getattr(app, "is_headless", True):
        return False
    try:
        driver.write(seq)
    except Exception:  # noqa: BLE001 - a notification is never worth an error
        return False
    return True
