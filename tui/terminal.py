"""Terminal loss: the TUI exits instead of spinning when its terminal goes away (dolphie's
watchdog). Runs do not depend on the TUI: they belong to their supervisors."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
import time
from typing import Any

from textual.app import App

TTY_CHECK_INTERVAL = 2.0
TERMINAL_GONE_GRACE = 3.0  # seconds a clean exit may take once the terminal is gone


class TerminalWatch:
    """SIGHUP, or a stdin/stdout that is no longer a terminal, ends ``app`` with 0."""

    def __init__(self, app: App[Any]) -> None:
        self.app = app
        self.gone = False

    def install(self) -> None:
        """From the app's event loop (its on_mount)."""
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGHUP, self.terminal_gone)
        self.app.set_interval(TTY_CHECK_INTERVAL, self.check, name="tty-watch")

    def check(self) -> None:
        try:
            alive = (sys.__stdin__ is not None and sys.__stdout__ is not None
                     and os.isatty(sys.__stdin__.fileno()) and os.isatty(sys.__stdout__.fileno()))
        except (AttributeError, ValueError, OSError):
            alive = False
        if not alive:
            self.terminal_gone()

    def terminal_gone(self) -> None:
        if self.gone:
            return
        self.gone = True
        # Textual's shutdown writes to the terminal; with the terminal gone its writer
        # thread dies on EIO and the shutdown then blocks forever on the full output
        # queue (seen under SSH drops). Runs do not depend on us: if the clean exit has
        # not finished in a few seconds, leave without it rather than linger.
        def last_resort() -> None:
            time.sleep(TERMINAL_GONE_GRACE)
            os._exit(0)

        threading.Thread(target=last_resort, name="tunedeck-hangup", daemon=True).start()
        self.app.exit(0)
