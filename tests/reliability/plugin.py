"""Command-line options of the reliability suite (``--soak``, ``--write-summary``).

pytest only parses options that are registered before the command line is read:
from ``tests/reliability/conftest.py`` that works when the suite is named on the
command line (``pytest tests/reliability --soak``). For ``pytest --soak`` from the
repository root they must be registered earlier: ``pyproject.toml``'s pytest
``addopts`` loads this module with ``-p tests.reliability.plugin``. Registering twice
is harmless.
"""

from __future__ import annotations

import contextlib

import pytest


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("reliability", "tunedeck reliability suite")
    # ValueError: already registered by the other route (plugin and conftest both loaded).
    with contextlib.suppress(ValueError):
        group.addoption(
            "--soak",
            action="store_true",
            default=False,
            help="run the reliability scenarios with the issue's full trial counts "
            "(long; the default is the CI-sized set)",
        )
    with contextlib.suppress(ValueError):
        group.addoption(
            "--write-summary",
            action="store_true",
            default=False,
            help="write the reliability summary table to docs/reliability.md",
        )


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)
