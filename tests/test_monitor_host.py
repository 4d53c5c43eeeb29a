"""Host sampling on real processes: trees, pid reuse guard, runs -> pids, disk."""

from __future__ import annotations

import os
from pathlib import Path

from monitor_helpers import process_tree, write_manifest

from tunedeck.runner.monitor.host import disk_info, host_snapshot, trees_pids
from tunedeck.runner.monitor.host import process_tree as tree_of
from tunedeck.runner.rundir.procs import run_processes, runs_under


def test_host_snapshot_is_sane() -> None:
    h = host_snapshot(cpu_interval=0.05)
    assert h.cpu_percent is not None and 0.0 <= h.cpu_percent <= 100.0 * (os.cpu_count() or 1)
    assert 0 < h.mem_used <= h.mem_total and 0 <= h.swap_used <= max(h.swap_total, 0)
    assert len(h.load_avg) == 3


def test_process_tree_follows_children_and_guards_against_pid_reuse() -> None:
    with process_tree() as t:
        stats = tree_of(t.parent, t.parent_create_time)
        assert {s.pid for s in stats} == {t.parent, t.child}
        child = next(s for s in stats if s.pid == t.child)
        assert child.ppid == t.parent and child.rss and child.rss > 0
        assert child.cmdline == ("sleep", "120") and child.name == "sleep"
        assert child.cpu_percent is None  # first sight: nothing to compare with yet
        again = {s.pid: s for s in tree_of(t.parent, t.parent_create_time)}
        assert again[t.child].cpu_percent is not None
        # Same pid, another start time: not our process any more.
        assert tree_of(t.parent, t.parent_create_time - 100) == []
        assert trees_pids([(t.parent, t.parent_create_time), (t.parent, 1.0), (t.child, None)]) == [
            {t.parent, t.child},
            set(),
            {t.child},
        ]
    assert tree_of(t.parent) == []  # gone


def test_run_processes_maps_a_manifest_to_its_live_tree(tmp_path: Path) -> None:
    with process_tree() as t:
        write_manifest(tmp_path / "a" / "run1", t)
        write_manifest(tmp_path / "b" / "stale", t, run_id="stale", skew=-50)  # pid reused
        (tmp_path / "c").mkdir()
        (tmp_path / "c" / "tunedeck_run.json").write_text("{truncated")
        found = {r.run_id: r for r in runs_under(tmp_path)}
        assert set(found) == {"run-abc", "stale"}
        assert found["run-abc"].pids == {t.parent, t.child}
        assert found["run-abc"].name == "demo-run" and found["run-abc"].status == "running"
        assert found["stale"].pids == frozenset()
    (after,) = run_processes([tmp_path / "a" / "run1"])
    assert after.pids == frozenset()


def test_disk_info_for_a_path_that_does_not_exist_yet(tmp_path: Path) -> None:
    d = disk_info(tmp_path / "out" / "not" / "created")
    assert d is not None and 0 < d.free_bytes <= d.total_bytes
    assert Path(d.mount).is_dir() and os.path.ismount(d.mount)
    assert str(tmp_path).startswith(d.mount)


def test_an_orphaned_worker_recorded_in_procs_still_belongs_to_its_run(tmp_path: Path) -> None:
    import subprocess
    import sys

    import psutil

    from tunedeck.runner.rundir.manifest import ProcRef, read_manifest

    # A launcher that starts a worker and dies: the worker is reparented away from its tree,
    # as a torchrun rank is when accelerate is killed alone.
    launcher = subprocess.Popen(
        [sys.executable, "-c",
         "import subprocess, sys; p = subprocess.Popen(['sleep', '120']); print(p.pid, flush=True)"],
        stdout=subprocess.PIPE, text=True)
    assert launcher.stdout is not None
    worker = int(launcher.stdout.readline())
    launcher.wait(timeout=30)
    try:
        with process_tree() as t:
            run = tmp_path / "run1"
            write_manifest(run, t)
            m = read_manifest(run)
            assert m is not None
            m.procs = [ProcRef(pid=worker, create_time=psutil.Process(worker).create_time(), role="worker")]
            m.write(run)
            (found,) = run_processes([run])
            assert found.pids == {t.parent, t.child, worker}
    finally:
        os.kill(worker, 9)
