"""SIGTERM / SIGUSR1 handling for the trainer process.

A stop request must end in a *complete* checkpoint, so the handler only records the
request; :class:`tunedeck.runner.train.callbacks.StopCallback` acts on it at the next optimizer
step boundary. Before the training loop has started there is no step to finish,
so the handler raises :class:`StopRequested` at once (the process leaves quickly
while it is still loading the model or tokenizing data).
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from dataclasses import dataclass
from types import FrameType


class StopRequested(BaseException):
    """Raised when a stop arrives before there is a step boundary to stop at.

    A BaseException so that library code catching ``Exception`` does not swallow it.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class StopState:
    """What the signal handler recorded. ``reason`` is ``"stopped"`` or ``"preempted"``."""

    reason: str | None = None
    signum: int | None = None
    received_at: float | None = None

    @property
    def requested(self) -> bool:
        return self.reason is not None


class StopSignals:
    """Install handlers for SIGTERM (stop) and SIGUSR1 (preemption warning)."""

    REASONS = {signal.SIGTERM: "stopped", signal.SIGUSR1: "preempted"}

    def __init__(self) -> None:
        self.state = StopState()
        # False until training starts: a stop then raises StopRequested at once.
        # From on_train_begin on it is True for good, so a stop during the final
        # save only records the request and never interrupts a write.
        self.deferred = False
        self._previous: dict[int, object] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal.signal only works in the main thread (e.g. under a test runner)
        for signum in self.REASONS:
            self._previous[signum] = signal.signal(signum, self._handle)

    def uninstall(self) -> None:
        for signum, prev in self._previous.items():
            signal.signal(signum, prev)  # type: ignore[arg-type]
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.state.requested:
            # A second signal while saving: keep saving. The supervisor escalates to
            # SIGKILL after its grace period if we really take too long.
            return
        reason = self.REASONS.get(signal.Signals(signum), "stopped")
        self.state = StopState(reason=reason, signum=signum, received_at=time.time())
        name = signal.Signals(signum).name
        if not self.deferred:
            print(f"[tunedeck] {name} received before training started: exiting now", file=sys.stderr, flush=True)
            raise StopRequested(reason)
        print(
            f"[tunedeck] {name} received: will save a checkpoint at the next step boundary and exit",
            file=sys.stderr,
            flush=True,
        )
