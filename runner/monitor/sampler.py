"""Polling off the caller's thread, each poll scheduled after the previous one finished.

A slow driver or disk therefore never piles up work (no overlapping polls), and
the caller gets results through a callback (the TUI posts them as messages;
workers never touch widgets).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from tunedeck.runner.monitor.nvml import GpuSnapshot, Nvml, get_nvml

log = logging.getLogger("tunedeck.monitor.sampler")

T = TypeVar("T")

MIN_INTERVAL = 0.25  # below this NVML answers are noise and the polling itself costs (nvitop)
GPU_INTERVAL = 1.0
PROCESS_INTERVAL = 2.0


class PollingSampler(Generic[T]):
    """A daemon thread: ``fn()``, hand the result to ``callback``, wait ``interval``, repeat.

    The wait starts when a poll *finished*. An exception from ``fn`` goes to
    ``on_error`` (default: logged once per type) and polling goes on. Intervals
    under 0.25 s are refused (ValueError). :meth:`stop` joins the thread.
    """

    def __init__(
        self,
        fn: Callable[[], T],
        interval: float,
        callback: Callable[[T], Any],
        *,
        name: str = "tunedeck-sampler",
        on_error: Callable[[BaseException], Any] | None = None,
        initial_delay: float = 0.0,
    ) -> None:
        self._check(interval)
        self.fn = fn
        self.callback = callback
        self.on_error = on_error
        self.name = name
        self.polls = 0
        self.errors = 0
        self._interval = float(interval)
        self._initial_delay = max(0.0, initial_delay)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._logged: set[str] = set()

    @staticmethod
    def _check(interval: float) -> None:
        if not interval >= MIN_INTERVAL:  # also refuses NaN
            raise ValueError(
                f"polling interval {interval!r} s is too short: the minimum is {MIN_INTERVAL} s"
            )

    @property
    def interval(self) -> float:
        return self._interval

    @interval.setter
    def interval(self, value: float) -> None:
        """Change the interval; applies from the next wait."""
        self._check(value)
        self._interval = float(value)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> PollingSampler[T]:
        if self._thread is not None:
            raise RuntimeError(f"{self.name} already started")
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        return self

    def poll_now(self) -> None:
        """Cut the current wait short (e.g. the user pressed refresh)."""
        self._wake.set()

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop and join (a poll in progress is allowed to finish)."""
        self._stop.set()
        self._wake.set()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout)

    def __enter__(self) -> PollingSampler[T]:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _wait(self, seconds: float) -> None:
        self._wake.wait(seconds)
        self._wake.clear()

    def _run(self) -> None:
        if self._initial_delay:
            self._wait(self._initial_delay)
        while not self._stop.is_set():
            try:
                result = self.fn()
            except Exception as exc:
                self.errors += 1
                self._report(exc)
            else:
                self.polls += 1
                if self._stop.is_set():
                    break
                try:
                    self.callback(result)
                except Exception as exc:
                    self.errors += 1
                    self._report(exc)
            if self._stop.is_set():
                break
            self._wait(self._interval)

    def _report(self, exc: BaseException) -> None:
        if self.on_error is not None:
            try:
                self.on_error(exc)
            except Exception:
                log.exception("%s: on_error failed", self.name)
            return
        key = type(exc).__name__
        if key not in self._logged:
            self._logged.add(key)
            log.warning("%s: poll failed: %r (further %s errors not logged)", self.name, exc, key)


def gpu_sampler(
    callback: Callable[[GpuSnapshot], Any],
    *,
    interval: float = GPU_INTERVAL,
    process_interval: float = PROCESS_INTERVAL,
    nvml: Nvml | None = None,
) -> PollingSampler[GpuSnapshot]:
    """A (not yet started) sampler of GPU snapshots: devices every ``interval``,
    process lists refreshed every ``process_interval`` (they cost more).
    """
    nv = nvml or get_nvml()
    PollingSampler._check(process_interval)

    def poll() -> GpuSnapshot:
        return nv.snapshot(with_processes=True, process_max_age=process_interval)

    return PollingSampler(poll, interval, callback, name="tunedeck-gpu-sampler")
