"""Alerts from the supervisor: real runs, a real HTTP receiver on 127.0.0.1, apprise's
json:// webhook. Each run delivers exactly one message with its status; a receiver that
is down changes nothing about the run."""

from __future__ import annotations

import json
from pathlib import Path

import psutil
import pytest

from tests.alert_helpers import closed_port_url, receiver
from tests.control_helpers import control_env, end_of_tail, manifest, tunedeck, wait_for
from tunedeck.runner.control.alerts import Notifier, RunWatch, make_alert

RUN_TIMEOUT = 300


def _supervisor_gone(run_dir: Path) -> bool:
    m = manifest(run_dir)
    sup = m.get("supervisor") or {}
    if m.get("finished_at") is None:
        return False
    try:
        p = psutil.Process(sup["pid"])
        return abs(p.create_time() - sup["create_time"]) > 0.5 or p.status() == psutil.STATUS_ZOMBIE
    except (psutil.Error, KeyError):
        return True


@pytest.mark.slow
def test_finished_oom_nan_and_stalled_runs_each_send_one_message_and_a_dead_receiver_harms_nothing(
    tmp_path: Path, make_demo_config
) -> None:
    down = closed_port_url()
    with receiver() as rx:
        cases = {
            # name: (fault, extra env, expected status)
            "done": (None, {}, "finished"),
            "oom": ("oom@3", {}, "oom"),
            "nan": ("nan@5", {}, "diverged"),
            "stall": ("slow@6", {"TUNEDECK_STALL_SECONDS": "2"}, "stalled"),
        }
        dirs: dict[str, Path] = {}
        for name, (fault, extra, _) in cases.items():
            d = tmp_path / name
            d.mkdir()
            cfg = make_demo_config(d, max_steps=8, save_steps=4, logging_steps=1)
            # The finished run also notifies a receiver that is down.
            urls = f"{rx.url}?name={name} {down}" if name == "done" else f"{rx.url}?name={name}"
            env = control_env(tmp_path / "home", TUNEDECK_NOTIFY=urls, **extra)
            if fault:
                env["TUNEDECK_FAULT"] = fault
            out = tunedeck(["launch", str(cfg), "--name", name], env, timeout=120)
            assert out.returncode == 0, out.stderr
            dirs[name] = d / "out"

        def by_run() -> dict[str, list[str]]:
            got: dict[str, list[str]] = {}
            for m in rx.got():
                text = str(m.get("message", ""))
                run = next((ln.split()[1] for ln in text.splitlines() if ln.startswith("run: ")), "?")
                got.setdefault(run, []).append(
                    next(ln[8:] for ln in text.splitlines() if ln.startswith("status: ")))
            return got

        # The stalled run: its alert arrives while it is still running; then it is stopped
        # (a stop the user asks for sends nothing).
        wait_for(lambda: "stall" in by_run(), RUN_TIMEOUT, "the stall alert")
        assert manifest(dirs["stall"])["status"] == "running"
        env = control_env(tmp_path / "home")
        stop = tunedeck(["stop", str(dirs["stall"])], env, timeout=RUN_TIMEOUT)
        assert stop.returncode == 0, stop.stdout + stop.stderr
        for name, d in dirs.items():
            wait_for(lambda d=d: _supervisor_gone(d), RUN_TIMEOUT, f"{name}'s supervisor to exit")
        got = by_run()
        assert got == {n: [st] for n, (_, _, st) in cases.items()}, (got, end_of_tail(dirs["done"]))
        assert manifest(dirs["done"])["status"] == "finished"
        assert manifest(dirs["oom"])["status"] == "oom"
        assert manifest(dirs["nan"])["status"] == "diverged"
        assert manifest(dirs["stall"])["status"] == "stopped"
        msgs = {json.dumps(m) for m in rx.got()}
        oom = next(m for m in rx.got() if "status: oom" in m["message"])
        run_id = manifest(dirs["oom"])["id"]
        assert f"next: tunedeck triage {run_id}" in oom["message"]
        assert "host: " in oom["message"] and "last loss: " in oom["message"]
        assert oom["title"] == "tunedeck: oom oom"
        done = next(m for m in rx.got() if "status: finished" in m["message"])
        assert f"next: tunedeck status {manifest(dirs['done'])['id']}" in done["message"]
        assert len(msgs) == 4
    # The dead receiver was tried, retried and dropped; the run finished all the same.
    tail = (dirs["done"] / "stdout.log").read_text()
    assert "dropped after 3 attempts" in tail
    assert manifest(dirs["done"])["exit_code"] == 0


def test_notify_test_reaches_the_receiver_and_fails_clearly_without_one(tmp_path: Path) -> None:
    with receiver() as rx:
        env = control_env(tmp_path / "home", TUNEDECK_NOTIFY=rx.url)
        out = tunedeck(["notify", "--test"], env, timeout=60)
        assert out.returncode == 0, out.stderr
        assert rx.statuses() == ["test"]
        assert "127.0.0.1" in out.stdout and "/hook" not in out.stdout  # paths (tokens) not echoed
    env = control_env(tmp_path / "home2", TUNEDECK_NOTIFY=closed_port_url())
    out = tunedeck(["notify", "--test"], env, timeout=60)
    assert out.returncode == 1
    env = control_env(tmp_path / "home3")
    env.pop("TUNEDECK_NOTIFY", None)
    out = tunedeck(["notify", "--test"], env, timeout=60)
    assert out.returncode == 2 and "no alert destinations" in out.stderr
    (tmp_path / "home3").mkdir(exist_ok=True)
    with receiver() as rx:
        (tmp_path / "home3" / "settings.json").write_text(json.dumps({"theme": "x", "notify": [rx.url]}))
        out = tunedeck(["notify", "--test"], env, timeout=60)
        assert out.returncode == 0, out.stderr
        assert rx.statuses() == ["test"]


def test_idle_gpus_holding_memory_alert_once_and_busy_ones_never(tmp_path: Path, monkeypatch) -> None:
    from tunedeck.runner.monitor.fake_nvml import make_fake_nvml
    from tunedeck.runner.monitor.nvml import Nvml

    monkeypatch.setenv("TUNEDECK_IDLE_MINUTES", "10")
    run = tmp_path / "run"
    run.mkdir()
    idle = RunWatch(run, pids=lambda: [4242],
                    nvml=Nvml(make_fake_nvml("gpu8", pids=[(7, 4242, 3 << 30)])))
    assert idle.tick(1000.0) == []
    assert idle.tick(1000.0 + 9 * 60) == []
    fired = idle.tick(1000.0 + 10 * 60 + 1)
    assert [s for s, _ in fired] == ["idle"] and "GPU 7 at 0% holding 3.0 GiB" in fired[0][1]
    assert idle.tick(1000.0 + 30 * 60) == []
    busy = RunWatch(run, pids=lambda: [4242],
                    nvml=Nvml(make_fake_nvml("gpu8", pids=[(0, 4242, 3 << 30)])))
    assert busy.tick(0.0) == [] and busy.tick(3600.0) == []


def test_stall_threshold_is_n_times_the_median_step_interval(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TUNEDECK_STALL_FACTOR", "10")
    run = tmp_path / "run"
    run.mkdir()
    log = run / "trainer_log.jsonl"
    log.write_text("")
    w = RunWatch(run)
    t = 0.0
    for step in range(1, 6):
        with log.open("a") as fh:
            fh.write(json.dumps({"current_steps": step, "loss": 1.0}) + "\n")
        t += 30.0
        assert w.tick(t) == []
    assert w.threshold() == 300.0  # 10 x the 30 s median
    assert w.tick(t + 299) == []
    fired = w.tick(t + 301)
    assert [s for s, _ in fired] == ["stalled"] and "after step 5" in fired[0][1]
    assert w.tick(t + 900) == []  # once


def test_a_notifier_that_raises_is_retried_then_dropped_and_never_raises(tmp_path: Path) -> None:
    logs: list[str] = []
    n = Notifier(["json://127.0.0.1:1/x", "not a url at all"], log=logs.append, backoff=0.01)
    run = tmp_path / "r"
    run.mkdir()
    (run / "trainer_log.jsonl").write_text(json.dumps({"current_steps": 3, "loss": 0.5}) + "\n")
    n.send(make_alert(run, "finished"))
    assert n.close(timeout=60)
    assert len(n.dropped) == 1 and not n.sent
    assert sum("dropped after 3 attempts" in line for line in logs) == 2
