"""The trainer process's start: the libraries load without the collector's full passes.

Importing torch, transformers, peft, accelerate and datasets builds ~420,000 objects that
live as long as the process (3,300 modules, their classes and functions). CPython runs a
full collection each time the long-lived objects grow by a quarter, so while they load it
walks the whole growing heap six to eight times and finds next to nothing: about 0.65 s of
CPU, ~14% of the start, measured on the bench's tiny model. Then transformers' Trainer runs
one more full collection when training begins (``accelerator.free_memory()``), another
~0.25 s over the same objects.

:func:`pause_full_collections` (first thing in the entry point) stops the full passes only;
the young generations are still collected, so the short-lived cycles the imports make are
freed as usual (peak memory is unchanged). :func:`libraries_loaded` (before the data is
built, once the heavy imports are done) moves everything alive into the permanent
generation (:func:`gc.freeze`), where no later collection looks, and restores the
thresholds. Reference counting still frees those objects; only a cycle among them would
never be collected, and the imports leave a few hundred such objects (a few kB).
"""

from __future__ import annotations

import gc

# A generation-2 threshold no import sequence reaches: gen 2 counts generation-1 passes.
_NO_FULL_PASS = 1 << 30

_saved: tuple[int, ...] | None = None


def pause_full_collections() -> None:
    """Stop full (generation-2) collections until :func:`libraries_loaded`."""
    global _saved
    if _saved is None and gc.isenabled():
        _saved = gc.get_threshold()
        gc.set_threshold(_saved[0], _saved[1], _NO_FULL_PASS)


def libraries_loaded() -> None:
    """Freeze what the imports built and restore the collector (a no-op if not paused)."""
    global _saved
    if _saved is None:
        return
    gc.freeze()
    gc.set_threshold(*_saved)
    _saved = None
