"""How the supervisor and ``stop`` find a run's processes: by process group, by process
tree and by the run id in the environment. On Linux these read /proc directly; the
answers must be the ones psutil gives (the path used elsewhere)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest

from tunedeck.runner.control import procs as P


@pytest.fixture
def tree() -> Iterator[subprocess.Popen[bytes]]:
    """A shell in its own session with three children (one a shell with a child of its
    own), all with TUNEDECK_TEST_RUN=abc in their environment."""
    env = {**os.environ, "TUNEDECK_TEST_RUN": "abc"}
    proc = subprocess.Popen(
        ["bash", "-c", "sleep 60 & sleep 60 & bash -c 'sleep 60; true' & wait"],
        env=env, start_new_session=True)
    deadline = time.monotonic() + 30
    while _names(P.descendants(proc.pid, P.create_time(proc.pid) or 0.0)) != [
            "bash", "bash", "sleep", "sleep", "sleep"]:
        assert time.monotonic() < deadline, "the test tree did not start"
        time.sleep(0.05)
    yield proc
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _names(found: list[P.ProcId]) -> list[str]:
    names = []
    for p in found:
        try:
            with open(f"/proc/{p.pid}/comm") as fh:
                names.append(fh.read().strip())
        except OSError:
            names.append("?")
    return sorted(names)


def _pids(found: list[P.ProcId]) -> set[int]:
    return {p.pid for p in found}


def test_group_tree_and_env_agree_with_psutil(tree: subprocess.Popen[bytes],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    ct = P.create_time(tree.pid)
    assert ct is not None
    from_proc = (P.group_members(tree.pid), P.descendants(tree.pid, ct),
                 P.find_by_env("TUNEDECK_TEST_RUN", "abc"))
    monkeypatch.setattr(P, "_HAVE_PROC", False)
    from_psutil = (P.group_members(tree.pid), P.descendants(tree.pid, ct),
                   P.find_by_env("TUNEDECK_TEST_RUN", "abc"))
    for a, b in zip(from_proc, from_psutil, strict=True):
        assert _pids(a) == _pids(b)
        assert {p.pid: round(p.create_time, 2) for p in a} == {p.pid: round(p.create_time, 2) for p in b}
    group, subtree, by_env = from_proc
    # The shell, two sleeps, the inner bash and its sleep.
    assert _pids(subtree) == _pids(group) == _pids(by_env) and len(subtree) == 5
    assert tree.pid in _pids(subtree)
    assert P.find_by_env("TUNEDECK_TEST_RUN", "abd") == []
    assert P.find_by_env("TUNEDECK_TEST_RUN", "abc", exclude=[tree.pid]) == [
        p for p in by_env if p.pid != tree.pid]
