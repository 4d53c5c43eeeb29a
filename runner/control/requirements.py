"""Is the training stack (the ``[train]`` extra) installed here?

A monitor-only install (``pip install tunedeck``) has the TUI and every reading
command but not torch, transformers or accelerate. Anything that would start a
trainer asks :func:`require_training_stack` first, so it refuses before a run
directory, a manifest or a supervisor exists, instead of "started run" followed
by a trainer that dies of an ImportError in stdout.log. The check finds the
packages without importing them (the control path never imports torch).
"""

from __future__ import annotations

import importlib.util

from tunedeck.runner.errors import LaunchError

INSTALL_COMMAND = 'pip install "tunedeck[train]"'
# What every training process imports (torch first: the others need it).
TRAINING_PACKAGES = ("torch", "transformers", "accelerate", "peft", "datasets", "tokenizers")
# Only the preference stages need trl.
STAGE_PACKAGES = {"dpo": ("trl",), "kto": ("trl",), "rm": ("trl",)}


def missing_training_packages(stage: str | None = None) -> list[str]:
    """The training packages this interpreter cannot find (empty when all are there)."""
    names = TRAINING_PACKAGES + STAGE_PACKAGES.get((stage or "").strip().lower(), ())
    missing = []
    for name in names:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a broken package counts as missing
            found = False
        if not found:
            missing.append(name)
    return missing


def require_training_stack(action: str, stage: str | None = None) -> None:
    """Raise :class:`LaunchError` (exit 5) naming the install command when packages are missing."""
    missing = missing_training_packages(stage)
    if missing:
        raise LaunchError(
            f"cannot {action}: the training packages are not installed here ({', '.join(missing)} missing); "
            "this install can monitor runs but not train",
            hint=f"{INSTALL_COMMAND} (on a CPU box install torch==2.13.0 first, see the README)",
        )
