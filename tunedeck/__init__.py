"""tunedeck: a terminal control room for LLM fine-tuning.

Installed, tunedeck is this one package: ``tunedeck.runner`` (everything headless),
``tunedeck.tui`` (the Textual app), ``tunedeck.themes`` and ``tunedeck.sample_configs``.
In the repository those are the top-level folders ``runner/``, ``tui/``, ``themes/`` and
``sample_configs/``, mapped under this name by ``pyproject.toml``'s ``package-dir``. A
wheel copies them in here; a source checkout (an editable install, or the repository on
``PYTHONPATH``) finds them beside this folder through ``__path__`` below, so the name
resolves to the checkout it was imported from, not to another one the interpreter knows.
"""

from __future__ import annotations

import os as _os

__version__ = "0.1.0"

_here = _os.path.dirname(_os.path.abspath(__file__))
if not _os.path.isdir(_os.path.join(_here, "runner")):
    _checkout = _os.path.dirname(_here)
    if _os.path.isfile(_os.path.join(_checkout, "runner", "__init__.py")):
        __path__.append(_checkout)  # noqa: F821 -- the package's own __path__
