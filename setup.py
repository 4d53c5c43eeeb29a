"""Packaging: everything is in pyproject.toml except the package map, which is computed.

Installed, tunedeck is one import package, ``tunedeck``. The repository keeps its top-level
folders (``runner/``, ``tui/``, ``themes/``, ``sample_configs/``); this maps each under the
``tunedeck`` name and lists every package below it, so a new subpackage needs no entry
anywhere (tests/test_packaging.py checks the built wheel).
"""

from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent
MAPPED = {"tunedeck": "tunedeck", "tunedeck.runner": "runner", "tunedeck.tui": "tui",
          "tunedeck.themes": "themes", "tunedeck.sample_configs": "sample_configs"}


def _packages() -> list[str]:
    found = []
    for name, folder in MAPPED.items():
        root = HERE / folder
        for init in sorted(root.rglob("__init__.py")):
            rel = init.parent.relative_to(root).parts
            if "__pycache__" not in rel:
                found.append(".".join((name, *rel)))
    return found


setup(packages=_packages(), package_dir=MAPPED)
