"""The test-only fault switch ``TUNEDECK_FAULT`` (see :data:`tunedeck.runner.rundir.protocol.FAULT_ENV`).

Faults let tests and the triage code exercise real failure paths without a GPU:

- ``oom@N``       raise ``torch.cuda.OutOfMemoryError`` in the forward pass of step N
- ``nan@N``       make the loss NaN from step N on
- ``enospc@save`` raise ``OSError(ENOSPC)`` while writing a checkpoint
- ``slow@S``      sleep S seconds at the end of every step
- ``slow-save@S`` every checkpoint save takes S seconds longer (the checkpoint is still
                  marked incomplete meanwhile), as a multi-GB save does
- ``exit@N``      ``os._exit(1)`` at the start of step N (a crash without a message)
- ``stop@N``      send this process SIGTERM at the end of step N (a stop request that lands
                  exactly on a step boundary, for deterministic stop/resume tests)
- ``preempt@N``   same with SIGUSR1
- ``slowtoken@S`` sleep S seconds per generated token in chat/serve/predict (streaming tests)
- ``slowload@S``  sleep S seconds at each phase of loading a model for inference (TUI tests)
- ``slowshard@S`` sleep S seconds after each shard ``tunedeck export`` writes (interrupt tests)
- ``hang@exit``   never leave after writing ``trainer_exit.json`` (a worker stuck in its
                  teardown, as torch's gloo/DDP destructors can leave one)

Several faults can be combined with commas: ``slow@0.2,nan@7``. Steps are 1-based
optimizer steps (``global_step`` after the step completes).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from tunedeck.runner.rundir.protocol import FAULT_ENV


@dataclass(frozen=True)
class Faults:
    oom_step: int | None = None
    nan_step: int | None = None
    enospc_on_save: bool = False
    slow_seconds: float = 0.0
    slow_save_seconds: float = 0.0
    exit_step: int | None = None
    stop_step: int | None = None
    preempt_step: int | None = None
    hang_at_exit: bool = False
    slow_token_seconds: float = 0.0
    slow_load_seconds: float = 0.0
    slow_shard_seconds: float = 0.0

    @property
    def any(self) -> bool:
        return self != Faults()


# KIND@ARG -> (the Faults field, how ARG is read); ``enospc@save`` and ``hang@exit`` are flags.
_NUMBERED: dict[str, tuple[str, type[int] | type[float]]] = {
    "oom": ("oom_step", int),
    "nan": ("nan_step", int),
    "slow": ("slow_seconds", float),
    "slow-save": ("slow_save_seconds", float),
    "exit": ("exit_step", int),
    "stop": ("stop_step", int),
    "preempt": ("preempt_step", int),
    "slowshard": ("slow_shard_seconds", float),
    "slowload": ("slow_load_seconds", float),
    "slowtoken": ("slow_token_seconds", float),
}
_FLAGS = {"enospc@save": "enospc_on_save", "hang@exit": "hang_at_exit"}


def parse_faults(spec: str | None) -> Faults:
    """Parse a ``TUNEDECK_FAULT`` value; raises ``ValueError`` naming the bad part."""
    if not spec or not spec.strip():
        return Faults()
    fields: dict[str, object] = {}
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        kind, _, arg = part.partition("@")
        try:
            if part in _FLAGS:
                fields[_FLAGS[part]] = True
            elif kind in _NUMBERED:
                name, read = _NUMBERED[kind]
                fields[name] = read(arg)
            else:
                raise ValueError
        except ValueError:
            raise ValueError(
                f"{FAULT_ENV}: cannot understand {part!r} (expected oom@N, nan@N, enospc@save, "
                "slow@SECONDS, slow-save@SECONDS, exit@N, stop@N, preempt@N, slowtoken@SECONDS, slowload@SECONDS, slowshard@SECONDS or hang@exit)"
            ) from None
    return Faults(**fields)  # type: ignore[arg-type]


def faults_from_env() -> Faults:
    return parse_faults(os.environ.get(FAULT_ENV))
