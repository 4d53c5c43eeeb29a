"""Reading runs without training: LLaMA-Factory/transformers dirs, lost runs, reused pids,
run references, exit classification, resume checks, logs, checkpoints, watch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.control_helpers import control_env, tunedeck
from tests.monitor_helpers import make_llamafactory_resumed_run
from tunedeck.runner.control.classify import classify_exit, last_exception_line
from tunedeck.runner.control.resume import end_of_training_warning, pick_checkpoint
from tunedeck.runner.errors import RunNotFound, TunedeckError
from tunedeck.runner.rundir.protocol import RunStatus
from tunedeck.runner.rundir.registry import register
from tunedeck.runner.rundir.runs import read_run, resolve_run

LF_KEYS_LINE = (
    "current_steps",
    "total_steps",
    "loss",
    "lr",
    "epoch",
    "percentage",
    "elapsed_time",
    "remaining_time",
)


def make_llamafactory_run(
    d: Path, *, steps: int = 300, total: int = 1000, every: int = 10, save_every: int = 100
) -> Path:
    """An output dir as LLaMA-Factory writes it mid-run (LLaMA Board launch, LoRA)."""
    d.mkdir(parents=True)
    (d / "training_args.yaml").write_text(
        "model_name_or_path: Qwen/Qwen3-4B-Instruct-2507\nstage: sft\nfinetuning_type: lora\n"
        f"output_dir: {d}\nmax_steps: {total}\n"
    )
    (d / "llamaboard_config.yaml").write_text("top.model_name: Qwen3-4B-Instruct-2507\n")
    (d / "running_log.txt").write_text(
        "[INFO|2026-11-01 10:00:00] trainer.py:2519 >> ***** Running training *****\n"
    )
    lines = []
    history = []
    for s in range(every, steps + 1, every):
        loss = round(2.0 - s / 1000, 4)
        rec = {
            "current_steps": s,
            "total_steps": total,
            "loss": loss,
            "lr": 1e-4,
            "epoch": s / 500,
            "percentage": round(100 * s / total, 2),
            "elapsed_time": f"0:{s // 60:02d}:{s % 60:02d}",
            "remaining_time": "0:35:00",
            "throughput": 1234.5,
            "total_tokens": 1000 * s,
        }
        lines.append(json.dumps(rec))
        history.append({"loss": loss, "learning_rate": 1e-4, "epoch": s / 500, "step": s})
    (d / "trainer_log.jsonl").write_text("\n".join(lines) + "\n")
    for s in range(save_every, steps + 1, save_every):
        ck = d / f"checkpoint-{s}"
        ck.mkdir()
        for name in (
            "adapter_model.safetensors",
            "optimizer.pt",
            "scheduler.pt",
            "rng_state.pth",
            "training_args.bin",
        ):
            (ck / name).write_bytes(b"\0" * 64)
        (ck / "adapter_config.json").write_text('{"r": 8}')
        (ck / "trainer_state.json").write_text(
            json.dumps(
                {
                    "global_step": s,
                    "max_steps": total,
                    "log_history": [h for h in history if h["step"] <= s],
                }
            )
        )
    return d


def make_transformers_run(d: Path) -> Path:
    """A plain transformers Trainer output: trainer_state.json only."""
    d.mkdir(parents=True)
    (d / "trainer_state.json").write_text(
        json.dumps(
            {
                "global_step": 50,
                "max_steps": 50,
                "epoch": 1.0,
                "log_history": [
                    {"loss": 1.5, "learning_rate": 5e-5, "epoch": 0.5, "step": 25},
                    {"loss": 1.1, "learning_rate": 1e-5, "epoch": 1.0, "step": 50},
                ],
            }
        )
    )
    (d / "model.safetensors").write_bytes(b"\0" * 32)
    return d


def test_runs_root_lists_a_llamafactory_dir_with_steps_loss_and_checkpoints(tmp_path: Path) -> None:
    root = tmp_path / "saves"
    lf = make_llamafactory_run(root / "Qwen3-4B" / "lora" / "train_2026-11-01-10-00-00")
    (lf / "checkpoint-300" / "trainer_state.json").unlink()  # a save cut short
    hf = make_transformers_run(root / "plain" / "run1")
    env = control_env(tmp_path / "home")
    out = tunedeck(["runs", "--root", str(root), "--json"], env)
    assert out.returncode == 0, out.stderr
    by_dir = {r["run_dir"]: r for r in json.loads(out.stdout)}
    r = by_dir[str(lf)]
    assert r["kind"] == "llamafactory"
    assert (r["current_steps"], r["total_steps"], r["loss"]) == (300, 1000, 1.7)
    assert [(c["step"], c["complete"]) for c in r["checkpoints"]] == [
        (100, True),
        (200, True),
        (300, False),
    ]
    assert r["latest_checkpoint"] == str(lf / "checkpoint-200")
    assert r["config_path"] == str(lf / "training_args.yaml")
    h = by_dir[str(hf)]
    assert h["kind"] == "transformers" and h["status"] == "finished"
    assert (h["current_steps"], h["total_steps"], h["loss"]) == (50, 50, 1.1)
    table = tunedeck(["runs", "--root", str(root)], env).stdout
    assert "train_2026-11-01-10-00-00" in table and "300/1000" in table and "1.7000" in table

    ck = tunedeck(["checkpoints", str(lf), "--json"], env)
    rows = json.loads(ck.stdout)
    assert [(c["step"], c["loss"], c["complete"]) for c in rows] == [
        (100, 1.9, True),
        (200, 1.8, True),
        (300, 1.7, False),
    ]
    assert rows[0]["kind"] == "adapter" and rows[0]["size_bytes"] > 0


def _write_manifest(run: Path, **fields) -> None:
    base = {
        "id": fields.pop("id", "r1"),
        "name": "r1",
        "output_dir": str(run),
        "config_path": "",
        "status": "running",
        "attempts": [{"number": 1, "started_at": time.time()}],
    }
    base.update(fields)
    run.mkdir(parents=True, exist_ok=True)
    (run / "tunedeck_run.json").write_text(json.dumps(base))
    os.chmod(run / "tunedeck_run.json", 0o644)


@pytest.mark.parametrize("damage", ["empty weights", "truncated trainer_state", "missing shard"])
def test_status_and_checkpoints_agree_on_a_damaged_checkpoint(tmp_path: Path, damage: str) -> None:
    # One completeness rule everywhere: status must not offer a checkpoint that
    # `checkpoints` (and resume) call incomplete.
    lf = make_llamafactory_run(tmp_path / "saves" / "run")
    ck = lf / "checkpoint-300"
    if damage == "empty weights":
        (ck / "adapter_model.safetensors").write_bytes(b"")
    elif damage == "truncated trainer_state":
        state = ck / "trainer_state.json"
        state.write_text(state.read_text()[:40])
    else:
        (ck / "adapter_model.safetensors").unlink()
        (ck / "model.safetensors.index.json").write_text(json.dumps(
            {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}))
        (ck / "model-00001-of-00002.safetensors").write_bytes(b"\0" * 64)
    env = control_env(tmp_path / "home")
    status = tunedeck(["status", str(lf), "--json"], env)
    cks = tunedeck(["checkpoints", str(lf), "--json"], env)
    assert status.returncode == 0 and cks.returncode == 0, (status.stderr, cks.stderr)
    st = json.loads(status.stdout)
    listed = {c["step"]: c["complete"] for c in json.loads(cks.stdout)}
    assert listed == {100: True, 200: True, 300: False}
    assert {c["step"]: c["complete"] for c in st["checkpoints"]} == listed
    assert st["latest_checkpoint"] == str(lf / "checkpoint-200")


def test_a_reused_pid_is_not_taken_for_the_supervisor_and_is_never_signalled(
    tmp_path: Path,
) -> None:
    # A pid that exited and was reaped...
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    run_a = tmp_path / "a"
    _write_manifest(run_a, supervisor={"pid": gone.pid, "create_time": time.time() - 5})
    assert read_run(run_a).status is RunStatus.LOST
    # ...and a live process holding a pid the manifest names, started at another time.
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        real = psutil.Process(victim.pid).create_time()
        run_b = tmp_path / "b"
        ref = {"pid": victim.pid, "create_time": real - 1000.0, "pgid": victim.pid}
        _write_manifest(run_b, supervisor=ref, trainer=ref, procs=[ref])
        snap = read_run(run_b)
        assert snap.status is RunStatus.LOST and "supervisor is gone" in (snap.message or "")
        assert (
            json.loads((run_b / "tunedeck_run.json").read_text())["status"] == "running"
        )  # not rewritten
        env = control_env(tmp_path / "home")
        out = tunedeck(["stop", str(run_b), "--timeout", "2", "--json"], env)
        assert json.loads(out.stdout)["stopped_cleanly"] is False
        assert victim.poll() is None  # the stranger was not signalled
    finally:
        victim.kill()
        victim.wait()


def test_stop_refuses_to_act_on_a_manifest_others_can_write(tmp_path: Path) -> None:
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        ref = {
            "pid": victim.pid,
            "create_time": psutil.Process(victim.pid).create_time(),
            "pgid": victim.pid,
        }
        run = tmp_path / "r"
        _write_manifest(
            run,
            supervisor=None,
            trainer=ref,
            procs=[ref],
            status="running",
            updated_at=time.time() - 3600,
        )
        os.chmod(run / "tunedeck_run.json", 0o666)
        out = tunedeck(["stop", str(run), "--timeout", "1"], control_env(tmp_path / "home"))
        assert out.returncode != 0 and "refusing" in out.stderr
        assert victim.poll() is None
    finally:
        victim.kill()
        victim.wait()


def test_run_references_resolve_by_id_prefix_name_and_awkward_paths(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("TUNEDECK_HOME", str(tmp_path / "home"))
    weird = tmp_path / "my run 'x' $(touch pwned) ..; \n end"
    _write_manifest(weird, id="20261129-101010-ab12", name="weird", status="finished")
    register("20261129-101010-ab12", "weird", weird)
    other = tmp_path / "other"
    _write_manifest(other, id="20261129-101010-cd34", name="other", status="finished")
    register("20261129-101010-cd34", "other", other)
    assert resolve_run("20261129-101010-ab12") == weird.resolve()
    assert resolve_run("20261129-101010-cd") == other.resolve()
    assert resolve_run("weird") == weird.resolve()
    assert resolve_run(str(weird)) == weird.resolve()
    with pytest.raises(RunNotFound, match="2 runs"):
        resolve_run("20261129-101010")
    with pytest.raises(RunNotFound) as exc:
        resolve_run("wierd")
    assert "weird" in str(exc.value)
    for bad in ("../../etc", "a/b", "$(reboot)", ""):
        with pytest.raises(RunNotFound):
            resolve_run(bad)
    assert not (tmp_path / "pwned").exists()
    env = control_env(tmp_path / "home")
    out = tunedeck(["runs"], env, cwd=tmp_path)
    assert out.returncode == 0
    assert "\\n end" in out.stdout and "\n end" not in out.stdout  # shown escaped, on one line
    assert json.loads(tunedeck(["status", "weird", "--json"], env).stdout)["run_dir"] == str(
        weird.resolve()
    )


def _tail(run: Path, text: str) -> None:
    run.mkdir(parents=True, exist_ok=True)
    (run / "stdout.log").write_text(text)


def test_exit_classification_reads_trainer_exit_then_signals_then_the_log(tmp_path: Path) -> None:
    r = tmp_path / "a"
    _tail(
        r,
        'Traceback (most recent call last):\n  File "x.py", line 1\n'
        "ValueError: dataset demo not found in dataset_info.json\n"
        "subprocess.CalledProcessError: Command '['python', '-m', 'tunedeck.runner.train']' returned non-zero exit status 1.\n",
    )
    info = classify_exit(r, 1)
    assert info.status is RunStatus.FAILED and info.message.startswith("ValueError: dataset demo")
    k = tmp_path / "k"
    _tail(
        k,
        "step 3\nsubprocess.CalledProcessError: Command '['python']' died with <Signals.SIGKILL: 9>.\n",
    )
    assert classify_exit(k, 1).status is RunStatus.KILLED
    assert classify_exit(k, 1).signal == "SIGKILL"
    o = tmp_path / "o"
    _tail(o, "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\n")
    assert classify_exit(o, 1).status is RunStatus.OOM
    s = tmp_path / "s"
    _tail(s, "anything\n")
    (s / "trainer_exit.json").write_text(
        json.dumps(
            {
                "reason": "stopped",
                "step": 7,
                "message": "stopped",
                "checkpoint": "checkpoint-7",
                "exit_code": 75,
            }
        )
    )
    info = classify_exit(s, 1)
    assert info.status is RunStatus.STOPPED and info.checkpoint == str(s / "checkpoint-7")
    (s / "trainer_exit.json").write_text(
        json.dumps({"reason": "config_error", "step": 0, "message": "bad key", "exit_code": 2})
    )
    assert classify_exit(s, 1).config_error
    assert classify_exit(r, 1, stop_requested=True).status is RunStatus.STOPPED
    assert last_exception_line("RuntimeError: a\nKeyError: 'b'\n") == "KeyError: 'b'"


def test_resume_warns_at_the_end_of_training_and_refuses_incomplete_checkpoints(
    tmp_path: Path,
) -> None:
    run = tmp_path / "run"
    ck = run / "checkpoint-20"
    ck.mkdir(parents=True)
    (ck / "adapter_model.safetensors").write_bytes(b"\0" * 8)
    (ck / "trainer_state.json").write_text(json.dumps({"global_step": 20, "epoch": 3.0}))
    warn = end_of_training_warning(ck, {"max_steps": 20})
    assert warn and "max_steps" in warn and "max_steps=40" in warn
    assert end_of_training_warning(ck, {"max_steps": 50}) is None
    warn = end_of_training_warning(ck, {"num_train_epochs": 3})
    assert warn and "num_train_epochs" in warn
    assert end_of_training_warning(ck, {"num_train_epochs": 5}) is None
    assert pick_checkpoint(run, "latest") == ck.resolve()
    assert pick_checkpoint(run, "checkpoint-20") == ck.resolve()
    (ck / "checkpoint-is-incomplete.txt").write_text("")
    with pytest.raises(TunedeckError, match="incomplete"):
        pick_checkpoint(run, "checkpoint-20")
    with pytest.raises(TunedeckError, match="no complete checkpoint"):
        pick_checkpoint(run, "latest")


def test_logs_prints_the_last_lines_without_reading_everything(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _write_manifest(run, status="finished")
    _tail(run, "".join(f"line {i}\n" for i in range(5000)))
    out = tunedeck(["logs", str(run), "-n", "3"], control_env(tmp_path / "home"))
    assert out.stdout.splitlines() == ["line 4997", "line 4998", "line 4999"]


def test_watch_once_shows_gpus_runs_and_a_loss_sparkline(tmp_path: Path) -> None:
    root = tmp_path / "saves"
    make_llamafactory_run(root / "lf-run")
    env = control_env(tmp_path / "home", TUNEDECK_FAKE_NVML="gpu2", COLUMNS="140")
    out = tunedeck(["watch", "--once", "--root", str(root), "--all"], env)
    assert out.returncode == 0, out.stderr
    assert "lf-run" in out.stdout and "300/1000" in out.stdout
    assert any(ch in out.stdout for ch in "▁▂▃▄▅▆▇█")
    assert "GPU" in out.stdout and "24.0G" in out.stdout
    bad = tunedeck(["watch", "--interval", "0.1"], env)
    assert bad.returncode == 2 and "0.25" in bad.stderr


def test_a_step_logged_twice_by_a_llamafactory_resume_shows_once_in_watch_status_and_checkpoints(
    tmp_path: Path,
) -> None:
    root = tmp_path / "saves"
    lf = make_llamafactory_resumed_run(root / "lf-resumed")
    env = control_env(tmp_path / "home", COLUMNS="160")
    out = tunedeck(["watch", "--once", "--root", str(root), "--all"], env)
    assert out.returncode == 0, out.stderr
    row = next(ln for ln in out.stdout.splitlines() if "lf-resumed" in ln)
    curve = "".join(ch for ch in row if ch in "▁▂▃▄▅▆▇█")
    assert len(curve) == 12, row  # one column per step, not 13
    st = json.loads(tunedeck(["status", str(lf), "--json"], env).stdout)
    assert (st["current_steps"], st["loss"]) == (12, 0.58)
    cks = json.loads(tunedeck(["checkpoints", str(lf), "--json"], env).stdout)
    assert [(c["step"], c["loss"]) for c in cks] == [(6, 1.79), (12, 0.58)]


def test_launch_refuses_a_second_launch_while_the_lock_is_held(tmp_path: Path) -> None:
    from tunedeck.runner.control.lock import acquire

    run = tmp_path / "run"
    run.mkdir()
    with acquire(run):
        with pytest.raises(TunedeckError) as exc:
            acquire(run)
        assert exc.value.exit_code == 4
    acquire(run).release()  # released with its holder


def test_supervisor_ignores_sighup(tmp_path: Path) -> None:
    """The supervisor of a run outlives a hang-up (it is started in its own session too)."""
    run = tmp_path / "run"
    _write_manifest(
        run,
        status="starting",
        argv=[sys.executable, "-c", "import time; time.sleep(30)"],
        cwd=str(tmp_path),
    )
    env = control_env(tmp_path / "home")
    sup = subprocess.Popen(
        [sys.executable, "-m", "tunedeck.runner.control.supervisor", str(run)],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while (
            time.monotonic() < deadline
            and json.loads((run / "tunedeck_run.json").read_text()).get("status") != "running"
        ):
            time.sleep(0.1)
        assert read_run(run).status is RunStatus.RUNNING
        # A hang-up, then SIGTERM (a stop request). Had SIGHUP killed it, it would exit -SIGHUP.
        os.killpg(sup.pid, signal.SIGHUP)
        os.kill(sup.pid, signal.SIGTERM)
        assert sup.wait(timeout=60) == 0
        m = json.loads((run / "tunedeck_run.json").read_text())
        assert m["status"] == "stopped" and m["stop_requested_by"].startswith("SIGTERM")
        assert (
            not psutil.pid_exists(m["trainer"]["pid"])
            or psutil.Process(m["trainer"]["pid"]).status() == psutil.STATUS_ZOMBIE
        )
    finally:
        if sup.poll() is None:
            os.killpg(sup.pid, signal.SIGKILL)
            sup.wait()


def test_a_worker_seen_between_fork_and_exec_becomes_a_worker_once_it_execs(tmp_path: Path) -> None:
    # torchrun forks each worker and then execs it: a tree scan in between sees the
    # launcher's command line. The manifest must still end up naming it a worker.
    from tunedeck.runner.control.procs import ProcId, create_time
    from tunedeck.runner.control.supervisor import Supervisor
    from tunedeck.runner.rundir.manifest import RunManifest, read_manifest

    run = tmp_path / "run"
    run.mkdir()
    RunManifest(id="r1", name="r1", output_dir=str(run), config_path=str(run / "config.yaml"),
                status=RunStatus.RUNNING).write(run)
    gate = tmp_path / "exec-now"
    launcher_code = (
        "import os, sys, time\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        f"    while not os.path.exists({str(gate)!r}): time.sleep(0.01)\n"
        "    os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(60)', '-m', 'tunedeck.runner.train'])\n"
        "print(pid, flush=True)\n"
        "os.waitpid(pid, 0)\n"
    )
    launcher = subprocess.Popen([sys.executable, "-c", launcher_code, "accelerate.commands.launch"],
                                stdout=subprocess.PIPE, text=True)
    try:
        assert launcher.stdout is not None
        child = int(launcher.stdout.readline())
        sup = Supervisor(run, lock=None)
        ct = create_time(launcher.pid)
        assert ct is not None
        known: dict[int, ProcId] = {}
        sup._track_tree(launcher.pid, ct, known)
        roles = {p.pid: p.role for p in read_manifest(run).procs}
        assert roles == {launcher.pid: "launcher", child: "helper"}  # still the launcher's argv
        gate.touch()
        deadline = time.monotonic() + 30
        while psutil.Process(child).cmdline()[-1:] != ["tunedeck.runner.train"]:
            assert time.monotonic() < deadline, "the child never exec'd"
            time.sleep(0.01)
        sup._track_tree(launcher.pid, ct, known)
        roles = {p.pid: p.role for p in read_manifest(run).procs}
        assert roles == {launcher.pid: "launcher", child: "worker"}
    finally:
        for p in psutil.Process(launcher.pid).children(recursive=True):
            p.kill()
        launcher.kill()
        launcher.wait(10)


def test_a_run_about_to_restart_never_shows_an_ended_status(tmp_path: Path, monkeypatch) -> None:
    # Readers (status, the TUI, launch --follow) take a terminal status for the end of the run.
    from tunedeck.runner.control.classify import ExitInfo
    from tunedeck.runner.control.supervisor import Supervisor
    from tunedeck.runner.rundir.manifest import Attempt, RunManifest

    run = tmp_path / "run"
    run.mkdir()
    RunManifest(id="r1", name="r1", output_dir=str(run), config_path=str(run / "config.yaml"),
                status=RunStatus.STARTING, max_restarts=1,
                attempts=[Attempt(number=1, started_at=time.time())]).write(run)
    sup = Supervisor(run, lock=None)
    ends = iter([ExitInfo(RunStatus.KILLED, -9, "the trainer was killed by SIGKILL", signal="SIGKILL"),
                 ExitInfo(RunStatus.FINISHED, 0, "finished 12 steps")])
    written: list[str] = []
    real_write = sup.write
    monkeypatch.setattr(sup, "write", lambda: (written.append(str(sup.m.status.value)), real_write())[1])
    monkeypatch.setattr(sup, "_run_attempt", lambda attempt: next(ends))
    monkeypatch.setattr(sup, "_backoff", lambda: True)

    def prepare(attempt, info, patch):  # type: ignore[no-untyped-def]
        sup.m.restarts += 1
        sup.m.attempts.append(Attempt(number=attempt.number + 1, started_at=time.time()))

    monkeypatch.setattr(sup, "_prepare_restart", prepare)
    sup.run()
    assert "killed" not in written, written          # the restart was decided before the write
    assert written[-1] == "finished"
    assert [a.end_reason for a in sup.m.attempts] == ["killed", "finished"]
