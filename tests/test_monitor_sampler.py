"""PollingSampler: refuses too-short intervals, never overlaps polls, survives errors."""

from __future__ import annotations

import itertools
import math
import threading
import time

import pytest

from tunedeck.runner.monitor.fake_nvml import make_fake_nvml
from tunedeck.runner.monitor.nvml import GpuSnapshot, Nvml
from tunedeck.runner.monitor.sampler import PollingSampler, gpu_sampler


def wait_until(cond: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.mark.parametrize("interval", [0.1, 0.0, -1.0, math.nan])
def test_refuses_intervals_under_a_quarter_second(interval: float) -> None:
    with pytest.raises(ValueError, match="minimum is 0.25"):
        PollingSampler(lambda: None, interval, lambda r: None)
    s = PollingSampler(lambda: None, 0.25, lambda r: None)
    with pytest.raises(ValueError):
        s.interval = interval
    with pytest.raises(ValueError):
        gpu_sampler(lambda r: None, process_interval=interval, nvml=Nvml(make_fake_nvml("gpu1")))


def test_polls_never_overlap_and_wait_after_the_previous_one_finished() -> None:
    lock = threading.Lock()
    active = 0
    most = 0
    spans: list[tuple[float, float]] = []

    def slow_poll() -> int:
        nonlocal active, most
        with lock:
            active += 1
            most = max(most, active)
        start = time.monotonic()
        time.sleep(0.3)  # the work: slower than the interval
        with lock:
            active -= 1
        spans.append((start, time.monotonic()))
        return len(spans)

    results: list[int] = []
    sampler = PollingSampler(slow_poll, 0.25, results.append).start()
    try:
        wait_until(lambda: len(results) >= 3)
    finally:
        sampler.stop()
    assert not sampler.running and most == 1
    assert results[:3] == [1, 2, 3]
    for (_, end), (nxt, _) in itertools.pairwise(spans):
        assert nxt - end >= 0.25 * 0.95  # the wait starts when a poll finished


def test_errors_do_not_stop_polling_and_poll_now_wakes_it() -> None:
    calls = []
    errors: list[BaseException] = []

    def flaky() -> int:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("disk hiccup")
        return len(calls)

    got: list[int] = []
    s = PollingSampler(flaky, 60.0, got.append, on_error=errors.append).start()
    try:
        wait_until(lambda: len(calls) == 1 and len(errors) == 1)
        s.poll_now()  # otherwise the next poll is a minute away
        wait_until(lambda: got == [2])
    finally:
        s.stop()
    assert s.errors == 1 and s.polls == 1 and isinstance(errors[0], OSError)
    with pytest.raises(RuntimeError):
        s.start()


def test_gpu_sampler_hands_snapshots_to_the_callback() -> None:
    snaps: list[GpuSnapshot] = []
    with gpu_sampler(snaps.append, nvml=Nvml(make_fake_nvml("gpu2", pids=()))):
        wait_until(lambda: len(snaps) >= 1)
    assert snaps[0].available and len(snaps[0].gpus) == 2 and snaps[0].gpus[1].processes
