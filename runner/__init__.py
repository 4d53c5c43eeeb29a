"""tunedeck's headless core: config schema, validation, run control, monitoring.

Nothing under ``runner`` imports Textual, and nothing on the control path
(``tunedeck.runner.config``, ``tunedeck.runner.control``, ``tunedeck.runner.monitor``, ``tunedeck.runner.cli``)
imports torch. ``tunedeck.runner.train`` and ``tunedeck.runner.data`` are the only places that do,
and they run inside the ``accelerate launch`` subprocess.
"""

from __future__ import annotations

__version__ = "0.1.0"
