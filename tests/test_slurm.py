"""Runs on a real Slurm: a private cluster (munged, slurmctld, slurmd from Debian's
packages) started for this module in a fresh directory, driven through the real CLI.

The cluster has one node (this machine): the run directory is "shared" trivially,
and the 2-task test places two launchers on it (two srun tasks, gloo on 127.0.0.1)
to form one process group through the generated multi-node script. When the daemons
cannot start, every test here fails with their logs; nothing is skipped.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.control_helpers import (
    control_env,
    end_of_tail,
    log_steps,
    manifest,
    status_json,
    tunedeck,
    wait_for,
)
from tests.slurm_helpers import ClusterError, SlurmCluster

pytestmark = pytest.mark.slow

RUN_TIMEOUT = 300  # generous: the CI box is shared; nothing here asserts on time


@pytest.fixture(scope="module")
def cluster() -> Iterator[SlurmCluster]:
    base = Path(tempfile.mkdtemp(prefix="tunedeck-slurm-"))
    c = SlurmCluster(base)
    try:
        c.start()
    except ClusterError as exc:
        c.stop()
        pytest.fail(f"the test Slurm cluster did not start:\n{exc}", pytrace=False)
    try:
        yield c
    finally:
        c.stop()
        shutil.rmtree(base, ignore_errors=True)


def _env(c: SlurmCluster, tmp_path: Path, **extra: str) -> dict[str, str]:
    return c.env(control_env(tmp_path / "home", **extra))


def _job_id(run_dir: Path) -> str:
    return str((manifest(run_dir).get("slurm") or {}).get("job_id") or "")


def _launch(c: SlurmCluster, cfg: Path, env: dict[str, str], *args: str) -> dict:
    out = tunedeck(["launch", str(cfg), "--slurm", "--json", *args], env, cwd=cfg.parent)
    assert out.returncode == 0, out.stderr + "\n" + c.logs()
    return json.loads(out.stdout.strip().splitlines()[-1])


def _ended(run: str, env: dict[str, str]) -> dict | None:
    st = status_json(run, env)
    return st if st["status"] not in ("starting", "running", "stopping") else None


def test_submitted_run_goes_from_queue_to_finished_with_loss_and_slurm_state(
        cluster, tmp_path, make_demo_config):
    cfg = make_demo_config(tmp_path, max_steps=6, save_steps=3)
    env = _env(cluster, tmp_path)
    res = _launch(cluster, cfg, env)
    run_dir = Path(res["run_dir"])
    assert res["backend"] == "slurm" and res["job_id"].isdigit()
    script = (run_dir / "slurm_job.sh").read_text()
    assert "#SBATCH --requeue" in script and "#SBATCH --open-mode=append" in script
    assert "#SBATCH --signal=B:USR1@300" in script
    first = status_json(res["id"], env)
    assert first["backend"] == "slurm" and first["job_id"] == res["job_id"]
    assert first["status"] in ("starting", "running", "finished")
    final = wait_for(lambda: _ended(res["id"], env), RUN_TIMEOUT, "the Slurm run to end")
    assert final["status"] == "finished", end_of_tail(run_dir)
    assert final["slurm_state"] == "completed"
    assert final["current_steps"] == 6 and isinstance(final["loss"], float)
    assert log_steps(run_dir) == [1, 2, 3, 4, 5, 6]
    m = manifest(run_dir)
    assert m["backend"] == "slurm" and m["slurm"]["node_list"] == "localhost"
    assert m["slurm"]["partition"] == "debug"
    runs = tunedeck(["runs", "--root", str(tmp_path), "--json"], env)
    assert runs.returncode == 0, runs.stderr
    row = next(r for r in json.loads(runs.stdout) if r["id"] == res["id"])
    assert row["backend"] == "slurm" and row["job_id"] == res["job_id"]
