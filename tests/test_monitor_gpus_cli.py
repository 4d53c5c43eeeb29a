"""``tunedeck gpus`` in a subprocess: the fake 2-GPU box, a real run's pid on a fake GPU,
and this machine's real NVML (no driver here: a note on stderr, exit 0)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pynvml
from monitor_helpers import process_tree, write_manifest

from tunedeck.runner.monitor.nvml import NO_DRIVER_MESSAGE

FAKE_VARS = ("TUNEDECK_FAKE_NVML", "TUNEDECK_FAKE_NVML_PIDS", "TUNEDECK_FAKE_NVML_SEED")


def tunedeck(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k not in FAKE_VARS}
    full.update(env)
    return subprocess.run(
        [sys.executable, "-m", "tunedeck.runner.cli", "gpus", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=full,
        timeout=120,
    )


def test_gpus_json_on_the_fake_box_names_the_run_using_each_gpu(tmp_path: Path) -> None:
    with process_tree() as t:
        write_manifest(tmp_path / "saves" / "run1", t)
        out = tunedeck(
            "--json",
            "--root",
            str(tmp_path),
            cwd=tmp_path,
            TUNEDECK_FAKE_NVML="gpu2",
            TUNEDECK_FAKE_NVML_PIDS=f"1:{t.child}:8G",  # the "trainer" holds 8 GiB on GPU 1
        )
        table = tunedeck(
            cwd=tmp_path / "saves",
            TUNEDECK_FAKE_NVML="gpu2",
            TUNEDECK_FAKE_NVML_PIDS=f"1:{t.child}:8G",
        )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["available"] is True and [g["index"] for g in data["gpus"]] == [0, 1]
    assert data["gpus"][0]["name"] == "NVIDIA GeForce RTX 4090"
    assert data["gpus"][0]["mem_total"] == 24 << 30
    procs = {p["pid"]: p for p in data["gpus"][1]["processes"]}
    assert procs[t.child]["used_bytes"] == 8 << 30
    assert (procs[t.child]["run_id"], procs[t.child]["run_name"]) == ("run-abc", "demo-run")
    assert all(p["run_id"] is None for pid, p in procs.items() if pid != t.child)
    assert table.returncode == 0, table.stderr
    assert "run demo-run (run-abc)" in table.stdout and "8.0 GiB" in table.stdout
    assert table.stdout.count("NVIDIA GeForce RTX 4090") == 2


def test_gpus_with_no_driver_says_so_and_exits_0(tmp_path: Path) -> None:
    out = tunedeck("--json", cwd=tmp_path, TUNEDECK_FAKE_NVML="none")
    assert out.returncode == 0
    assert json.loads(out.stdout) | {"taken_at": 0} == {
        "available": False,
        "message": NO_DRIVER_MESSAGE,
        "driver_version": None,
        "taken_at": 0,
        "gpus": [],
    }
    assert NO_DRIVER_MESSAGE in out.stderr
    text = tunedeck(cwd=tmp_path, TUNEDECK_FAKE_NVML="none")
    assert (text.returncode, text.stdout) == (0, "")
    assert text.stderr.strip() == NO_DRIVER_MESSAGE


def test_gpus_against_this_machines_real_nvml(tmp_path: Path) -> None:
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError_LibraryNotFound:
        has_driver = False
    else:
        has_driver = True
        pynvml.nvmlShutdown()
    out = tunedeck("--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["available"] is has_driver
    if not has_driver:  # this GPU-less machine
        assert data["message"] == NO_DRIVER_MESSAGE and data["gpus"] == []
        assert out.stderr.strip() == NO_DRIVER_MESSAGE


def test_gpus_refuses_a_too_short_interval(tmp_path: Path) -> None:
    out = tunedeck("--watch", "--interval", "0.1", cwd=tmp_path, TUNEDECK_FAKE_NVML="gpu1")
    assert out.returncode == 2 and "--interval" in out.stderr
