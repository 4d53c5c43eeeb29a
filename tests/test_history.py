"""History: ``runs`` filters and sorts, archive (hidden, nothing deleted), delete with a
confirmation naming the bytes freed, never a live run."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from tests.compare_helpers import log_records, write_compare_run
from tests.control_helpers import control_env, tunedeck
from tests.monitor_helpers import process_tree, write_manifest


def _runs(tmp_path: Path) -> dict[str, Path]:
    now = time.time()
    ages = {"base": 3 * 86400, "lr-up": 3600, "rank16": 600}
    return {n: write_compare_run(tmp_path / "runs", n, now=now - a) for n, a in ages.items()}


def _names(out: str) -> list[str]:
    return [r["name"] for r in json.loads(out)]


def _tree_digest(d: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(d.rglob("*")):
        h.update(str(p.relative_to(d)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


def test_runs_filters_by_status_since_and_name_and_sorts_by_best_eval_loss(tmp_path: Path) -> None:
    runs = _runs(tmp_path)
    env = control_env(tmp_path / "home")
    root = ["runs", "--root", str(tmp_path / "runs"), "--json"]

    def names(*extra: str) -> list[str]:
        out = tunedeck([*root, *extra], env, timeout=60)
        assert out.returncode == 0, out.stderr
        return _names(out.stdout)

    assert names() == ["rank16", "lr-up", "base"]  # newest first
    assert names("--status", "oom") == ["rank16"]
    assert names("--status", "finished,oom", "--since", "2h") == ["rank16", "lr-up"]
    assert names("--name", "lr*") == ["lr-up"]
    best = {n: min(r["eval_loss"] for r in log_records(p) if "eval_loss" in r) for n, p in runs.items()}
    assert names("--sort", "eval_loss") == sorted(best, key=best.__getitem__)
    assert names("--sort", "eval_loss", "--reverse") == sorted(best, key=best.__getitem__)[::-1]
    bad = tunedeck([*root, "--status", "done"], env, timeout=60)
    assert bad.returncode == 1 and "--status 'done'" in bad.stderr
    bad = tunedeck([*root, "--since", "yesterday"], env, timeout=60)
    assert bad.returncode == 1 and "--since 'yesterday'" in bad.stderr


def test_archive_hides_a_run_and_changes_nothing_in_it(tmp_path: Path) -> None:
    runs = _runs(tmp_path)
    env = control_env(tmp_path / "home")
    before = _tree_digest(runs["lr-up"])
    out = tunedeck(["archive", str(runs["lr-up"])], env, timeout=60)
    assert out.returncode == 0, out.stderr
    listing = ["runs", "--root", str(tmp_path / "runs"), "--json"]
    assert _names(tunedeck(listing, env).stdout) == ["rank16", "base"]
    assert _names(tunedeck([*listing, "--archived"], env).stdout) == ["lr-up"]
    assert _names(tunedeck([*listing, "--all"], env).stdout) == ["rank16", "lr-up", "base"]
    assert _tree_digest(runs["lr-up"]) == before
    assert tunedeck(["archive", "--undo", str(runs["lr-up"])], env).returncode == 0
    assert _names(tunedeck(listing, env).stdout) == ["rank16", "lr-up", "base"]


def test_delete_names_the_bytes_and_needs_a_confirmation(tmp_path: Path) -> None:
    runs = _runs(tmp_path)
    env = control_env(tmp_path / "home")
    run = runs["base"]
    size = sum(p.stat().st_size for p in run.rglob("*") if p.is_file())
    unconfirmed = subprocess_run(["delete", str(run)], env)
    assert unconfirmed.returncode == 1
    assert f"{run}" in unconfirmed.stderr and "2 checkpoint(s)" in unconfirmed.stderr
    assert run.is_dir()
    from tunedeck.runner.control.history import fmt_bytes

    assert fmt_bytes(size) in unconfirmed.stderr
    out = tunedeck(["delete", str(run), "--yes"], env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert f"{fmt_bytes(size)} freed" in out.stdout
    assert not run.exists()
    assert runs["lr-up"].is_dir() and runs["rank16"].is_dir()


def subprocess_run(args: list[str], env: dict[str, str]):  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "tunedeck.runner.cli", *args], env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)


def test_delete_refuses_a_live_run_and_a_directory_holding_other_runs(tmp_path: Path) -> None:
    env = control_env(tmp_path / "home")
    live = tmp_path / "live"
    with process_tree() as tree:
        write_manifest(live, tree)
        (live / "checkpoint-2").mkdir()
        (live / "checkpoint-2" / "model.safetensors").write_bytes(b"\0" * 128)
        out = tunedeck(["delete", str(live), "--yes"], env, timeout=60)
        assert out.returncode == 4, out.stdout + out.stderr
        assert "a live run is never deleted" in out.stderr
        assert (live / "checkpoint-2" / "model.safetensors").is_file()
    parent = write_compare_run(tmp_path / "sweep", "base")
    write_compare_run(parent, "lr-up")
    out = tunedeck(["delete", str(parent), "--yes"], env, timeout=60)
    assert out.returncode == 1 and "holds other runs" in out.stderr
    assert (parent / "lr-up" / "trainer_log.jsonl").is_file() and os.path.isdir(parent)
