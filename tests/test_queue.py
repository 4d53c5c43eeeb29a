"""The run queue: real tiny runs on a 1-slot CPU box start one after another, in order,
across a SIGKILL and restart of the queue runner; an invalid entry is marked and skipped;
a 2x2 sweep makes four named runs; free GPUs are judged by NVML memory and our own runs."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from tests.alert_helpers import receiver
from tests.control_helpers import control_env, end_of_tail, manifest, tunedeck, wait_for
from tunedeck.runner.control import runqueue as q

RUN_TIMEOUT = 400


def _entries(env: dict[str, str]) -> list[dict]:
    out = tunedeck(["queue", "list", "--json"], env, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["entries"]


def _runner(home: Path) -> dict | None:
    try:
        data = json.loads((home / "queue" / "runner.json").read_text())
    except (OSError, ValueError):
        return None
    from tunedeck.runner.rundir.procs import ref_alive

    return data if ref_alive(data) else None


def _ended(run_dir: Path) -> bool:
    return manifest(run_dir).get("finished_at") is not None


@pytest.mark.slow
def test_three_queued_runs_start_in_order_on_one_slot_across_a_runner_restart(
    tmp_path: Path, make_demo_config
) -> None:
    home = tmp_path / "home"
    env = control_env(home, TUNEDECK_FAULT="slow@0.4")
    dirs = []
    for name in ("first", "bad", "second", "third"):
        d = tmp_path / name
        d.mkdir()
        cfg = make_demo_config(d, max_steps=5, save_steps=5, logging_steps=1)
        extra = ["stage=ppo"] if name == "bad" else []  # the validator refuses ppo
        out = tunedeck(["queue", "add", str(cfg), *extra, "--name", name], env, timeout=60)
        assert out.returncode == 0, out.stderr
        dirs.append(d / "out")
    first, bad, second, third = dirs
    wait_for(lambda: manifest(first).get("status") in ("starting", "running"), RUN_TIMEOUT, "the first run")
    # Kill the queue runner while the first run trains: the run is not its child to lose.
    info = wait_for(lambda: _runner(home), 60, "the queue runner's record")
    os.kill(info["pid"], signal.SIGKILL)
    wait_for(lambda: _runner(home) is None, 60, "the runner to be gone")
    wait_for(lambda: _ended(first), RUN_TIMEOUT, "the first run to end")
    assert manifest(first)["status"] == "finished", end_of_tail(first)
    states = {e["name"]: e["state"] for e in _entries(env)}
    assert states["second"] == "queued" and states["third"] == "queued"  # nobody started them
    assert not (second / "tunedeck_run.json").exists()
    out = tunedeck(["queue", "start"], env, timeout=60)
    assert out.returncode == 0, out.stderr
    for d in (second, third):
        wait_for(lambda d=d: _ended(d), RUN_TIMEOUT, f"{d.parent.name} to end")
        assert manifest(d)["status"] == "finished", end_of_tail(d)
    ms = [manifest(d) for d in (first, second, third)]
    for a, b in zip(ms, ms[1:], strict=False):
        assert b["created_at"] >= a["finished_at"], "a run started before the previous one ended"
    entries = {e["name"]: e for e in _entries(env)}
    assert entries["bad"]["state"] == "invalid" and "ppo" in entries["bad"]["error"]
    assert not bad.exists() or not (bad / "tunedeck_run.json").exists()
    assert [entries[n]["run_id"] for n in ("first", "second", "third")] == [m["id"] for m in ms]
    wait_for(lambda: _runner(home) is None, 60, "the runner to leave once the queue is empty")
    listing = tunedeck(["queue", "list"], env, timeout=60)
    assert "run finished" in listing.stdout and "invalid" in listing.stdout


@pytest.mark.slow
def test_a_2x2_sweep_makes_four_named_runs_that_compare_by_their_two_keys(
    tmp_path: Path, make_demo_config
) -> None:
    with receiver() as rx:
        _sweep(tmp_path, make_demo_config, rx)


def _sweep(tmp_path: Path, make_demo_config, rx) -> None:  # type: ignore[no-untyped-def]
    home = tmp_path / "home"
    env = control_env(home, TUNEDECK_NOTIFY=rx.url)
    cfg = make_demo_config(tmp_path, max_steps=2, save_steps=2, logging_steps=1)
    out = tunedeck(["queue", "add", str(cfg), "--name", "sw", "--json",
                    "--sweep", "learning_rate=1e-3,2e-3", "lora_rank=4,8"], env, timeout=60)
    assert out.returncode == 0, out.stderr
    added = json.loads(out.stdout)
    names = [e["name"] for e in added]
    assert names == ["sw-learning_rate-1e-3_lora_rank-4", "sw-learning_rate-1e-3_lora_rank-8",
                     "sw-learning_rate-2e-3_lora_rank-4", "sw-learning_rate-2e-3_lora_rank-8"]
    run_dirs = [Path(e["output_dir"]) for e in added]
    assert len(set(run_dirs)) == 4 and all(d.parent == tmp_path / "out" for d in run_dirs)
    for d in run_dirs:
        wait_for(lambda d=d: _ended(d), RUN_TIMEOUT, f"{d.name} to end")
        assert manifest(d)["status"] == "finished", end_of_tail(d)
    assert [manifest(d)["name"] for d in run_dirs] == names
    # The sweep's output_dir stands for its four runs.
    cmp = tunedeck(["compare", str(tmp_path / "out"), "--json"], env, timeout=120)
    assert cmp.returncode == 0, cmp.stderr
    data = json.loads(cmp.stdout)
    assert sorted(r["name"] for r in data["runs"]) == sorted(names)
    assert sorted(data["diff"]) == ["learning_rate", "lora_rank"]
    # Each queued run's start was alerted (by the queue runner), then its end (by its supervisor).
    wait_for(lambda: len(rx.statuses()) >= 8, 120, "eight alerts")
    assert sorted(rx.statuses()) == ["finished"] * 4 + ["started"] * 4


def test_remove_pause_and_a_bad_sweep(tmp_path: Path, make_demo_config) -> None:
    env = control_env(tmp_path / "home")
    cfg = make_demo_config(tmp_path)
    assert tunedeck(["queue", "pause"], env).returncode == 0
    out = tunedeck(["queue", "add", str(cfg), "--name", "held"], env, timeout=60)
    assert out.returncode == 0 and "paused" in out.stderr
    [e] = _entries(env)
    assert e["state"] == "queued" and _runner(tmp_path / "home") is None
    rm = tunedeck(["queue", "remove", e["id"]], env)
    assert rm.returncode == 0 and _entries(env) == []
    bad = tunedeck(["queue", "add", str(cfg), "--sweep", "learning_rate"], env)
    assert bad.returncode == 2 and "--sweep 'learning_rate'" in bad.stderr
    assert tunedeck(["queue", "remove", "nope"], env).returncode == 3


def test_free_gpus_are_judged_by_nvml_memory(monkeypatch) -> None:
    from tunedeck.runner.monitor.fake_nvml import make_fake_nvml
    from tunedeck.runner.monitor.nvml import Nvml

    gpu8 = Nvml(make_fake_nvml("gpu8", pids=[]))
    assert q.slots_free([7], gpu8) == (True, "")
    ok, why = q.slots_free([6, 7], gpu8)
    assert not ok and why.startswith("GPU 6 has ")
    ok, why = q.slots_free([9], gpu8)
    assert not ok and "not on this machine" in why
