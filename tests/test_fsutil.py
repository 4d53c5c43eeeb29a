"""Atomic writes: a reader never sees a partial file, and temp files of killed writers go away."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tunedeck.runner import fsutil


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_write_removes_the_temp_files_of_killed_writers_only(tmp_path: Path) -> None:
    target = tmp_path / "tunedeck_run.json"
    dead = tmp_path / f"{fsutil._temp_prefix(target.name, _dead_pid())}abc123.tmp"
    live = tmp_path / f"{fsutil._temp_prefix(target.name, os.getpid())}def456.tmp"
    other_host = tmp_path / f".{target.name}.zzzzzz-{_dead_pid()}.ghi789.tmp"
    other_file = tmp_path / f"{fsutil._temp_prefix('config.yaml', _dead_pid())}jkl012.tmp"
    for p in (dead, live, other_host, other_file):
        p.write_text("half a manifest")

    fsutil.atomic_write_json(target, {"status": "running"})

    assert target.read_text().startswith("{")
    assert not dead.exists()                 # its writer is gone: removed
    assert live.exists()                     # a writer still at work (this process)
    assert other_host.exists()               # another machine's writer on a shared disk
    assert other_file.exists()               # another file's temp: not this write's business
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [target.name]


def test_atomic_write_leaves_no_temp_and_keeps_the_mode(tmp_path: Path) -> None:
    target = tmp_path / "config.yaml"
    fsutil.atomic_write_text(target, "a: 1\n", mode=0o600)
    fsutil.atomic_write_text(target, "a: 2\n", mode=0o600)
    assert target.read_text() == "a: 2\n"
    assert target.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["config.yaml"]
