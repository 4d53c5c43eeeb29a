"""Monitoring core: NVML and host sampling (a run directory's files are read by
:mod:`tunedeck.runner.rundir`).

Everything here is cheap to import (no torch, no Textual, no numpy) and never
raises into a caller for what a driver or a file throws at it: a field that
cannot be read is ``None``. The TUI and ``tunedeck watch`` are views over it.
"""

from __future__ import annotations

import logging

MIN_POLL_INTERVAL = 0.25  # below this NVML answers are noise and the polling itself costs (nvitop)

# A library does not print: the app (CLI, TUI) decides where our log records go.
# Without this, Python's last-resort handler would write warnings to stderr,
# under a running TUI too.
logging.getLogger("tunedeck.monitor").addHandler(logging.NullHandler())
