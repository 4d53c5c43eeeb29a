"""The trainer's start: full collections paused while the libraries load, then restored."""

from __future__ import annotations

import gc

from tunedeck.runner.train import startup


def test_full_collections_pause_then_the_loaded_objects_are_frozen_and_thresholds_restored() -> None:
    before = gc.get_threshold()
    frozen = gc.get_freeze_count()
    try:
        startup.pause_full_collections()
        paused = gc.get_threshold()
        assert paused[:2] == before[:2] and paused[2] > 10**6  # young generations still collected
        kept = [[] for _ in range(10)]  # tracked by the collector, unlike object()
        startup.libraries_loaded()
        assert gc.get_threshold() == before
        assert gc.get_freeze_count() >= frozen + len(kept)
        startup.libraries_loaded()  # a second call (the exit path's) changes nothing
        assert gc.get_threshold() == before
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
