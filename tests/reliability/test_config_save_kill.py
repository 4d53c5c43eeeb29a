"""A crash (SIGKILL) in the middle of a config save never leaves a truncated config, and the
backup is there.

A zygote process imports the YAML layer once and forks a saver per trial; the saver
rewrites the config in a tight loop through ``ConfigDoc.save`` (what the editor calls) and
is SIGKILLed at a random moment. After each kill the config and its ``.bak`` must both
parse and be complete versions (the trailing comment and the full padding are there).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from tunedeck.runner.config.yamlio import ConfigDoc
from tunedeck.runner.errors import ConfigError

from .helpers import REPO

PAD = 4_000  # a value big enough that one save takes more than an instant
TRAILER = "# end of config: this comment must survive every save"
CONFIG = f"""\
# a config saved over and over while being killed
model_name_or_path: tiny   # the model
stage: sft
learning_rate: 1.0e-4
note: "version 0 {'x' * PAD}"
{TRAILER}
"""

ZYGOTE = r"""
import os, signal, sys
sys.path.insert(0, sys.argv[2])
from tunedeck.runner.config.yamlio import ConfigDoc
signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
path, pad = sys.argv[1], int(sys.argv[3])
print("ready", flush=True)
for line in sys.stdin:
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        doc = ConfigDoc.load(path)
        i = int(doc.get("note").split()[1])
        while True:
            i += 1
            doc.set("note", f"version {i} " + "x" * pad)
            doc.save()
            os.write(1, b"s")  # one byte per completed save
    print(pid, flush=True)
"""


def _drain(stream) -> None:  # type: ignore[no-untyped-def]
    """Drop the progress bytes a killed saver left in the pipe."""
    fd = stream.fileno()
    os.set_blocking(fd, False)
    try:
        while stream.read(65536):
            pass
    except (BlockingIOError, TypeError):
        pass
    finally:
        os.set_blocking(fd, True)


def _complete_version(path: Path) -> int:
    """The version a complete config holds; raise if it is truncated or unreadable."""
    text = path.read_text(encoding="utf-8")
    assert text.rstrip().endswith(TRAILER), f"{path.name} lost its end: ...{text[-80:]!r}"
    doc = ConfigDoc.load(path)
    note = str(doc.get("note"))
    _, num, pad = note.split(" ")
    assert pad == "x" * PAD, f"{path.name}: value cut short"
    assert doc.get("learning_rate") == 1.0e-4 and doc.get("stage") == "sft"
    return int(num)


def test_sigkill_during_config_save_never_truncates_and_keeps_the_backup(
        tmp_path: Path, trials, scenario) -> None:  # type: ignore[no-untyped-def]
    sc = scenario("Config save killed by SIGKILL mid-write")
    n = trials(30, 300)
    cfg = tmp_path / "train.yaml"
    cfg.write_text(CONFIG)
    rng = random.Random(os.getpid())
    zygote = subprocess.Popen([sys.executable, "-c", ZYGOTE, str(cfg), str(REPO), str(PAD)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=False)
    assert zygote.stdin is not None and zygote.stdout is not None
    try:
        assert zygote.stdout.readline().strip() == b"ready"
        last = 0
        per_save: float | None = None
        for _ in range(n):
            with sc.trial() as t:
                zygote.stdin.write(b"go\n")
                zygote.stdin.flush()
                pid = int(zygote.stdout.readline().strip())
                if per_save is None:  # calibrate: how long one save takes on this box now
                    assert zygote.stdout.read(1) == b"s"
                    t0 = time.monotonic()
                    assert zygote.stdout.read(5) == b"sssss"
                    per_save = (time.monotonic() - t0) / 5
                else:
                    # Let a random number of saves complete, then kill at a random offset
                    # into the next one (saves run back to back).
                    k = rng.randint(0, 3)
                    if k:
                        assert zygote.stdout.read(k) == b"s" * k
                    time.sleep(rng.uniform(0.0, per_save))
                os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    try:
                        os.kill(pid, 0)
                    except ProcessLookupError:
                        break
                    time.sleep(0.005)
                _drain(zygote.stdout)
                try:
                    version = _complete_version(cfg)
                except (AssertionError, ConfigError, ValueError, OSError) as exc:
                    t.lost(f"config: {exc}")
                    raise
                if version > 0:
                    bak = cfg.with_name(cfg.name + ".bak")
                    try:
                        bak_version = _complete_version(bak)
                    except (AssertionError, ConfigError, ValueError, OSError) as exc:
                        t.lost(f"backup: {exc}")
                        raise
                    # The backup is the version before the current one (or the current one, when
                    # the kill fell between refreshing the backup and replacing the config).
                    assert version - 1 <= bak_version <= version, (bak_version, version)
                assert version >= last, "the config went back to an older version"
                last = version
        leftovers = sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp"))
        sc.note(f"{n} kills mid-save (~{(per_save or 0) * 1000:.0f} ms per save), last version {last}; "
                f"{len(leftovers)} temp file(s) left (the next save removes a killed writer's)")
        assert last > 0, "no save ever completed: the kills came too early to test anything"
        # Each save sweeps the temp files of killed writers: only the last kill's may remain.
        assert len(leftovers) <= 2, leftovers
    finally:
        with contextlib.suppress(OSError):
            zygote.stdin.close()
        zygote.kill()
        zygote.wait()
