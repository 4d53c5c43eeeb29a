"""tunedeck's headless core: config schema, validation, run control, monitoring.

Nothing under ``runner`` imports Textual, and nothing on the control path
(``runner.config``, ``runner.control``, ``runner.monitor``, ``runner.cli``)
imports torch. ``runner.train`` and ``runner.data`` are the only places that do,
and they run inside the ``accelerate launch`` subprocess.
"""

from __future__ import annotations

__version__ = "0.1.0"
