"""A pid reused by an unrelated process after a run ended is never mistaken for the run.

The run's supervisor and trainer were real processes; they end (the supervisor killed
without writing its last status, as the OOM killer would), and then unrelated processes
get exactly their pids (forced with ``/proc/sys/kernel/ns_last_pid`` when we may write it,
which needs root; otherwise the manifest is pointed at live strangers with the dead
processes' start times, which is what a reused pid looks like to a reader). The strangers
record every signal they receive. ``status`` must not call the run running, ``stop`` must
not signal a stranger, and the strangers must still be alive afterwards.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from .helpers import cli_env, tunedeck, wait_for, write_run_dir

NS_LAST_PID = Path("/proc/sys/kernel/ns_last_pid")

# A stranger: logs each catchable signal to a file and keeps running.
STRANGER = r"""
import signal, sys, time
log = sys.argv[1]
def note(sig, _frame):
    with open(log, "a") as fh:
        fh.write(f"{signal.Signals(sig).name}\n")
for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGQUIT):
    signal.signal(s, note)
open(log, "a").close()
deadline = time.monotonic() + 600
while time.monotonic() < deadline:
    time.sleep(0.05)
"""


def _spawn_dead(n: int, lived: float = 1.5) -> list[tuple[int, float]]:
    """``n`` real processes that ended after ``lived`` seconds: their (pid, start time).

    Readers allow half a second of slack on start times (clock ticks, btime steps), so a
    pid recycled less than that after the original *started* is out of scope: that would
    need the whole pid space to wrap in half a second.
    """
    procs = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True)
             for _ in range(n)]
    out = [(p.pid, psutil.Process(p.pid).create_time()) for p in procs]
    time.sleep(lived)  # the processes' life, not synchronisation
    for p in procs:
        p.kill()
        p.wait()
    return out


def _spawn_stranger(log: Path, want_pid: int | None) -> subprocess.Popen[bytes]:
    """An unrelated process, on ``want_pid`` if the kernel lets us choose (retrying races)."""
    for _ in range(50 if want_pid else 1):
        if want_pid:
            try:
                NS_LAST_PID.write_text(str(want_pid - 1))
            except OSError:
                want_pid = None
        p = subprocess.Popen([sys.executable, "-c", STRANGER, str(log)], start_new_session=True,
                             stdin=subprocess.DEVNULL)
        if want_pid is None or p.pid == want_pid:
            wait_for(lambda: log.exists(), 30, "the stranger to install its signal handlers", poll=0.02)
            return p
        p.kill()
        p.wait()
    raise RuntimeError(f"could not get pid {want_pid} back")


@pytest.mark.parametrize("final_status", ["running", "finished", "stopping"])
def test_reused_pids_are_never_the_run_and_stop_never_signals_them(
        final_status: str, tmp_path: Path, scenario) -> None:  # type: ignore[no-untyped-def]
    sc = scenario("Pid reused by an unrelated process after the run")
    home = tmp_path / "home"
    env = cli_env(home)
    run_dir = tmp_path / "run"
    (sup_pid, sup_ct), (tr_pid, tr_ct) = _spawn_dead(2)
    strangers: list[subprocess.Popen[bytes]] = []
    logs = [tmp_path / "stranger-sup.log", tmp_path / "stranger-trainer.log"]
    try:
        reused = True
        try:
            strangers.append(_spawn_stranger(logs[0], sup_pid))
            strangers.append(_spawn_stranger(logs[1], tr_pid))
        except RuntimeError:
            reused = False
        if not reused:
            for p in strangers:
                p.kill()
                p.wait()
            strangers = [_spawn_stranger(logs[0], None), _spawn_stranger(logs[1], None)]
            sup_pid, tr_pid = strangers[0].pid, strangers[1].pid
        sc.note("real pid reuse via ns_last_pid" if reused else "simulated reuse (ns_last_pid not writable)")
        assert [s.pid for s in strangers] == [sup_pid, tr_pid]
        # The manifest names the dead processes: the strangers have their pids, not their start times.
        write_run_dir(run_dir, run_id="20250101-000000-pid1", status=final_status,
                      supervisor={"pid": sup_pid, "create_time": sup_ct, "pgid": sup_pid, "role": "supervisor"},
                      procs=[{"pid": tr_pid, "create_time": tr_ct, "pgid": tr_pid, "role": "launcher"}])
        os.chmod(run_dir / "tunedeck_run.json", 0o644)
        # The run was last written a while ago (past the "supervisor starting" grace).
        old = time.time() - 3600
        os.utime(run_dir / "tunedeck_run.json", (old, old))

        with sc.trial():
            st = tunedeck(["status", str(run_dir), "--json"], env, timeout=60)
            assert st.returncode == 0, st.stderr
            import json

            data = json.loads(st.stdout)
            assert data["status"] not in ("running", "starting", "stopping"), data["status"]
            if final_status != "finished":
                assert data["status"] == "lost"
            else:
                assert data["status"] == "finished"
        with sc.trial():
            res = tunedeck(["stop", str(run_dir), "--timeout", "3"], env, timeout=120)
            assert "Traceback" not in res.stderr, res.stderr
            for p, log in zip(strangers, logs, strict=True):
                assert p.poll() is None, f"stop killed the unrelated process {p.pid}"
                got = log.read_text()
                assert got == "", f"stop signalled the unrelated process {p.pid}: {got!r}"
        with sc.trial():
            # Reading again after the stop: still not running, and the strangers are fine.
            st = tunedeck(["status", str(run_dir), "--json"], env, timeout=60)
            assert json.loads(st.stdout)["status"] not in ("running", "starting", "stopping")
            assert all(p.poll() is None for p in strangers)
    finally:
        for p in strangers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGKILL)
            p.wait()
