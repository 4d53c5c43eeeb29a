"""Runs on a real Slurm: a private cluster (munged, slurmctld, slurmd from Debian's
packages) started for this module in a fresh directory, driven through the real CLI.

The cluster has one node (this machine): the run directory is "shared" trivially,
and the 2-task test places two launchers on it (two srun tasks, gloo on 127.0.0.1)
to form one process group through the generated multi-node script. When the daemons
cannot start, every test here fails with their logs; nothing is skipped.
"""

from __future__ import annotations

import json
import os
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
    """The status once the run has ended and Slurm's job with it (the runner records the end
    a moment before the job leaves the queue)."""
    st = status_json(run, env)
    if st["status"] in ("starting", "running", "stopping"):
        return None
    return st if st.get("slurm_state") not in ("pending", "running", "completing", "configuring") else None


def test_launch_follow_on_slurm_runs_from_queue_to_finished_with_loss_and_slurm_state(
        cluster, tmp_path, make_demo_config, monkeypatch):
    cfg = make_demo_config(tmp_path, max_steps=6, save_steps=3)
    env = _env(cluster, tmp_path)
    out = tunedeck(["launch", str(cfg), "--slurm", "--follow"], env, cwd=tmp_path, timeout=RUN_TIMEOUT)
    run_dir = tmp_path / "out"
    assert out.returncode == 0, out.stdout + out.stderr + end_of_tail(run_dir)
    run_id = out.stdout.splitlines()[0].strip()
    assert "as Slurm job" in out.stderr
    script = (run_dir / "slurm_job.sh").read_text()
    assert "#SBATCH --requeue" in script and "#SBATCH --open-mode=append" in script
    assert "#SBATCH --signal=B:USR1@300" in script
    final = wait_for(lambda: _ended(run_id, env), RUN_TIMEOUT, "the Slurm job to leave the queue")
    assert final["status"] == "finished", end_of_tail(run_dir)
    assert final["backend"] == "slurm" and final["job_id"] == _job_id(run_dir)
    assert final["slurm_state"] == "completed" and final["slurm_exit_code"] == "0:0"
    assert final["current_steps"] == 6 and isinstance(final["loss"], float)
    assert log_steps(run_dir) == [1, 2, 3, 4, 5, 6]
    m = manifest(run_dir)
    assert m["backend"] == "slurm" and m["slurm"]["node_list"] == "localhost"
    assert m["slurm"]["partition"] == "debug"
    runs = tunedeck(["runs", "--root", str(tmp_path), "--json"], env)
    assert runs.returncode == 0, runs.stderr
    row = next(r for r in json.loads(runs.stdout) if r["id"] == run_id)
    assert row["backend"] == "slurm" and row["job_id"] == _job_id(run_dir)
    table = tunedeck(["runs", "--root", str(tmp_path)], env)
    assert f"slurm {_job_id(run_dir)} completed" in table.stdout
    # No slurmdbd here: sacct exits 1 ("accounting storage is disabled"); asked, it gives
    # nothing and breaks nothing.
    from tunedeck.runner.rundir.slurm import _sacct

    monkeypatch.setenv("SLURM_CONF", str(cluster.conf))
    assert cluster.run("sacct", "-j", _job_id(run_dir)).returncode != 0
    assert _sacct(_job_id(run_dir)) is None


def _job_done(c: SlurmCluster, job: str) -> bool:
    """The job has left the queue (ended), whatever other tests left queued."""
    return c.job_field(job, "JobState") not in ("PENDING", "RUNNING", "COMPLETING", "CONFIGURING", "REQUEUED")


def _steps_logged(run_dir: Path, n: int) -> bool:
    return len(log_steps(run_dir)) >= n


def _losses(run_dir: Path) -> dict[int, float]:
    out: dict[int, float] = {}
    for line in (run_dir / "trainer_log.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if isinstance(rec.get("current_steps"), int) and "loss" in rec:
            out[rec["current_steps"]] = rec["loss"]
    return out


def _run_processes(run_id: str) -> list[int]:
    from tunedeck.runner.control.procs import find_by_env

    return [p.pid for p in find_by_env("TUNEDECK_RUN_ID", run_id, exclude=[os.getpid()])]


def test_stop_sends_usr1_to_the_batch_step_leaves_a_checkpoint_and_no_process_and_resume_resubmits(
        cluster, tmp_path, make_demo_config):
    cfg = make_demo_config(tmp_path, max_steps=16, save_steps=100)
    env = _env(cluster, tmp_path, TUNEDECK_FAULT="slow@0.5")
    res = _launch(cluster, cfg, env)
    run_dir = Path(res["run_dir"])
    wait_for(lambda: _steps_logged(run_dir, 2), RUN_TIMEOUT, "two logged steps")
    assert status_json(res["id"], env)["status"] == "running"
    out = tunedeck(["stop", res["id"], "--json", "--timeout", "120"], env, timeout=400)
    assert out.returncode == 0, out.stdout + out.stderr + end_of_tail(run_dir)
    rep = json.loads(out.stdout)
    assert rep["status"] == "stopped" and rep["checkpoint"], rep
    ck = Path(rep["checkpoint"])
    assert ck.name.startswith("checkpoint-") and (ck / "trainer_state.json").exists()
    assert "USR1" in rep["message"]
    st = status_json(res["id"], env)
    assert st["status"] == "stopped" and st["slurm_state"] == "completed"
    assert st["latest_checkpoint"] == str(ck)
    assert _job_done(cluster, res["job_id"])
    assert _run_processes(res["id"]) == []
    stopped_at = max(log_steps(run_dir))
    assert stopped_at < 16 and ck.name == f"checkpoint-{stopped_at}"

    out = tunedeck(["resume", res["id"], "--json"], env)
    assert out.returncode == 0, out.stderr
    again = json.loads(out.stdout.strip().splitlines()[-1])
    assert again["job_id"].isdigit() and again["job_id"] != res["job_id"]
    assert again["checkpoint"] == str(ck)
    final = wait_for(lambda: _ended(res["id"], env), RUN_TIMEOUT, "the resumed job to end")
    assert final["status"] == "finished" and final["job_id"] == again["job_id"], end_of_tail(run_dir, 60)
    assert log_steps(run_dir) == list(range(1, 17))
    m = manifest(run_dir)
    assert [a["resume_from"] for a in m["attempts"]] == [None, str(ck)]
    assert m["slurm"]["previous_jobs"][0]["job_id"] == res["job_id"]


def test_requeue_resumes_from_the_checkpoint_with_the_same_losses_and_no_duplicate_steps(
        cluster, tmp_path, make_demo_config):
    # The uninterrupted reference runs beside it (the node has a CPU for each).
    (tmp_path / "ref").mkdir()
    (tmp_path / "pre").mkdir()
    ref_cfg = make_demo_config(tmp_path / "ref", max_steps=10, save_steps=100)
    cfg = make_demo_config(tmp_path / "pre", max_steps=10, save_steps=100)
    env = _env(cluster, tmp_path, TUNEDECK_FAULT="slow@0.5")
    ref = _launch(cluster, ref_cfg, env)
    res = _launch(cluster, cfg, env)
    run_dir = Path(res["run_dir"])
    wait_for(lambda: _steps_logged(run_dir, 3), RUN_TIMEOUT, "three logged steps")
    r = cluster.run("scontrol", "requeue", res["job_id"])
    assert r.returncode == 0, r.stderr
    final = wait_for(lambda: _ended(res["id"], env), RUN_TIMEOUT, "the requeued run to end")
    assert final["status"] == "finished", end_of_tail(run_dir, 60)
    m = manifest(run_dir)
    assert [q["restart_count"] for q in m["slurm"]["requeues"]] == [1]
    resumed_from = m["slurm"]["requeues"][0]["resume_from"]
    assert resumed_from and Path(resumed_from).name.startswith("checkpoint-")
    assert len(m["attempts"]) == 2 and m["attempts"][0]["end_reason"] == "preempted"
    assert m["attempts"][1]["resume_from"] == resumed_from
    assert log_steps(run_dir) == list(range(1, 11))  # every step exactly once
    done = wait_for(lambda: _ended(ref["id"], env), RUN_TIMEOUT, "the reference run to end")
    assert done["status"] == "finished"
    want, got = _losses(Path(ref["run_dir"])), _losses(run_dir)
    assert sorted(got) == sorted(want) == list(range(1, 11))
    for step in want:
        assert got[step] == pytest.approx(want[step], abs=1e-4), step


def test_a_crashing_trainer_reads_failed_with_the_exit_code_and_the_log_tail(
        cluster, tmp_path, make_demo_config):
    cfg = make_demo_config(tmp_path, max_steps=8)
    env = _env(cluster, tmp_path, TUNEDECK_FAULT="exit@3")
    res = _launch(cluster, cfg, env)
    final = wait_for(lambda: _ended(res["id"], env), RUN_TIMEOUT, "the crashing run to end")
    assert final["status"] == "failed" and final["exit_code"] == 1, final
    assert final["slurm_state"] == "failed" and final["slurm_exit_code"] == "1:0"
    assert "exited with code 1" in final["message"]
    logs = tunedeck(["logs", res["id"], "-n", "5"], env)
    assert logs.returncode == 0 and "attempt ended: failed" in logs.stdout


def test_sbatch_refusing_the_job_exits_5_with_slurms_message_and_no_active_manifest(
        cluster, tmp_path, make_demo_config):
    cfg = make_demo_config(tmp_path)
    env = _env(cluster, tmp_path)
    out = tunedeck(["launch", str(cfg), "--slurm", "--partition", "nosuchpartition"], env, cwd=tmp_path)
    assert out.returncode == 5, out.stderr
    assert "sbatch refused the job" in out.stderr and "Invalid partition name" in out.stderr
    m = manifest(tmp_path / "out")
    assert m["status"] == "failed" and "Invalid partition name" in m["message"]
    assert status_json(str(tmp_path / "out"), env)["status"] == "failed"


def test_without_slurm_installed_launch_names_the_missing_command(tmp_path, make_demo_config):
    cfg = make_demo_config(tmp_path)
    env = control_env(tmp_path / "home", PATH=str(tmp_path / "empty-bin"))
    out = tunedeck(["launch", str(cfg), "--slurm"], env, cwd=tmp_path)
    assert out.returncode == 5, out.stderr
    assert "`sbatch` command is not on PATH" in out.stderr
    assert manifest(tmp_path / "out") == {}


def test_two_srun_tasks_form_one_gloo_group_of_world_size_two(cluster, tmp_path, make_demo_config):
    cfg = make_demo_config(tmp_path, max_steps=4, save_steps=100)
    env = _env(cluster, tmp_path)
    res = _launch(cluster, cfg, env, "--tasks-per-node", "2")
    run_dir = Path(res["run_dir"])
    script = (run_dir / "slurm_job.sh").read_text()
    assert "--machine_rank '$SLURM_PROCID'" in script and "--num_machines 2" in script
    final = wait_for(lambda: _ended(res["id"], env), RUN_TIMEOUT, "the 2-task run to end")
    assert final["status"] == "finished", end_of_tail(run_dir, 80)
    assert log_steps(run_dir) == [1, 2, 3, 4]
    assert manifest(run_dir)["env_diff"]["TUNEDECK_EXPECT_WORLD_SIZE"] == "2"


def test_usr1_without_a_stop_request_is_the_time_limit_warning_checkpoint_requeue_and_resume(
        cluster, tmp_path, make_demo_config):
    # What `#SBATCH --signal=B:USR1@S` delivers before the time limit, sent now instead of
    # waiting for a limit (Slurm checks limits only every so often).
    cfg = make_demo_config(tmp_path, max_steps=10, save_steps=100)
    env = _env(cluster, tmp_path, TUNEDECK_FAULT="slow@0.5")
    res = _launch(cluster, cfg, env)
    run_dir = Path(res["run_dir"])
    wait_for(lambda: _steps_logged(run_dir, 3), RUN_TIMEOUT, "three logged steps")
    r = cluster.run("scancel", "--signal=USR1", "--batch", res["job_id"])
    assert r.returncode == 0, r.stderr
    final = wait_for(lambda: _ended(res["id"], env), RUN_TIMEOUT, "the requeued run to end")
    assert final["status"] == "finished", end_of_tail(run_dir, 60)
    m = manifest(run_dir)
    first = m["attempts"][0]
    assert first["end_reason"] == "preempted" and "time limit is near" in first["message"]
    assert [q["restart_count"] for q in m["slurm"]["requeues"]] == [1]
    assert m["attempts"][1]["resume_from"] == m["slurm"]["requeues"][0]["resume_from"]
    assert log_steps(run_dir) == list(range(1, 11))


async def test_a_queued_job_shows_pending_with_slurms_reason_in_status_and_the_dashboard_and_stop_cancels_it(
        cluster, tmp_path, make_demo_config, monkeypatch):
    from tests.tui_helpers import wait_text
    from tunedeck.tui.app import TunedeckApp

    cfg = make_demo_config(tmp_path)
    env = _env(cluster, tmp_path)
    res = _launch(cluster, cfg, env, "--sbatch-arg=--begin=now+1hour")
    st = status_json(res["id"], env)
    assert st["status"] == "starting" and st["slurm_state"] == "pending", st
    assert st["slurm_reason"] == "BeginTime" and st["queue"] == "pending (BeginTime)"
    human = tunedeck(["status", res["id"]], env)
    assert f"slurm:       job {res['job_id']} pending (BeginTime)" in human.stdout

    monkeypatch.setenv("SLURM_CONF", str(cluster.conf))
    monkeypatch.setenv("TUNEDECK_FAKE_NVML", "none")
    app = TunedeckApp(root=tmp_path)
    try:
        async with app.run_test(size=(160, 40)) as pilot:
            await wait_text(pilot, app, f"job {res['job_id']} pending (BeginTime)", timeout=60)
    except BaseException:
        cluster.run("scancel", res["job_id"])  # never leave a queued job for the next test
        raise

    out = tunedeck(["stop", res["id"], "--json"], env)
    assert out.returncode == 0, out.stdout + out.stderr
    rep = json.loads(out.stdout)
    assert rep["status"] == "stopped" and "cancelled while pending" in rep["message"]
    assert _job_done(cluster, res["job_id"])
    st = status_json(res["id"], env)
    assert st["status"] == "stopped" and st["slurm_state"] == "cancelled"


def test_stop_of_a_two_task_job_reaches_both_workers_through_the_task_wrapper(
        cluster, tmp_path, make_demo_config):
    cfg = make_demo_config(tmp_path, max_steps=30, save_steps=100)
    env = _env(cluster, tmp_path, TUNEDECK_FAULT="slow@0.5")
    res = _launch(cluster, cfg, env, "--tasks-per-node", "2")
    run_dir = Path(res["run_dir"])
    wait_for(lambda: _steps_logged(run_dir, 2), RUN_TIMEOUT, "two logged steps")
    out = tunedeck(["stop", res["id"], "--json", "--timeout", "120"], env, timeout=400)
    assert out.returncode == 0, out.stdout + out.stderr + end_of_tail(run_dir, 60)
    rep = json.loads(out.stdout)
    assert rep["status"] == "stopped" and Path(rep["checkpoint"]).name == f"checkpoint-{max(log_steps(run_dir))}"
    assert _job_done(cluster, res["job_id"]) and _run_processes(res["id"]) == []


async def test_the_tui_launch_dialog_switches_to_slurm_shows_the_script_and_submits(
        cluster, tmp_path, make_demo_config, monkeypatch):
    from tests.tui_helpers import wait_for as tui_wait_for
    from tests.tui_helpers import wait_text
    from tunedeck.tui.app import TunedeckApp

    cfg = make_demo_config(tmp_path, max_steps=4, save_steps=100)
    run_dir = tmp_path / "out"
    monkeypatch.setenv("SLURM_CONF", str(cluster.conf))
    monkeypatch.setenv("TUNEDECK_FAKE_NVML", "none")
    app = TunedeckApp(root=tmp_path, config=cfg)
    async with app.run_test(size=(160, 48)) as pilot:
        await tui_wait_for(pilot, lambda: app.screen.id == "editor" or type(app.screen).__name__ == "EditorScreen",
                           timeout=60, what="editor")
        await pilot.press("ctrl+r")
        await tui_wait_for(pilot, lambda: app.screen.id == "launch-modal", timeout=60, what="launch modal")
        await wait_text(pilot, app, "On: this machine (t)", "tunedeck.runner.train")
        await pilot.press("t")
        await wait_text(pilot, app, "On: Slurm (t)", "#SBATCH --requeue", "slurm_job", timeout=60)
        await pilot.press("y")
        await tui_wait_for(pilot, lambda: bool(_job_id(run_dir)), timeout=60, what="a submitted job")
        await wait_text(pilot, app, f"job {_job_id(run_dir)}", timeout=60)
    m = manifest(run_dir)
    assert m["backend"] == "slurm" and (run_dir / "slurm_job.sh").exists()
    env = _env(cluster, tmp_path)
    final = wait_for(lambda: _ended(str(run_dir), env), RUN_TIMEOUT, "the job submitted from the TUI to end")
    assert final["status"] == "finished", end_of_tail(run_dir)
