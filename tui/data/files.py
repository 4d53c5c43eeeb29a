"""Files the TUI writes for itself (its settings, saved conversations): the runner's atomic
writers, so a crash never leaves half a file."""

from __future__ import annotations

from tunedeck.runner.fsutil import atomic_write_json, ensure_dir, read_json

__all__ = ["atomic_write_json", "ensure_dir", "read_json"]
