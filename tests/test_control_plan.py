"""The launch command line: explicit accelerate argv/env, the output_dir policy, secrets."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.control_helpers import control_env, tunedeck
from tunedeck.runner.control.launch import (
    ACCELERATE_CONFIG,
    build_launch_plan,
    decide_start,
    freeze_config,
    parse_gpus,
    supervisor_env,
    write_plan_files,
)
from tunedeck.runner.control.secrets import SECRETS_ENV, redact_env
from tunedeck.runner.errors import ConfigError, RunBusy


def _flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_single_cpu_run_is_the_trainer_itself_without_a_launcher(tmp_path: Path) -> None:
    # accelerate's simple launcher would end the trainer 5 s after a SIGTERM (mid-save);
    # one process runs the trainer directly with the environment the launcher would set.
    plan = build_launch_plan({"use_cpu": True}, config_path=tmp_path / "config.yaml")
    argv = plan.argv
    assert argv == [sys.executable, "-m", "tunedeck.runner.train", str(tmp_path / "config.yaml")]
    assert plan.env["ACCELERATE_USE_CPU"] == "1" and plan.env["TUNEDECK_EXPECT_WORLD_SIZE"] == "1"
    assert plan.env["ACCELERATE_MIXED_PRECISION"] == "no"
    if "PYTORCH_CUDA_ALLOC_CONF" not in os.environ:
        assert plan.env["PYTORCH_CUDA_ALLOC_CONF"] == "expandable_segments:True"
    assert plan.accelerate_config["distributed_type"] == "NO" and plan.accelerate_config["use_cpu"]


def test_two_cpu_processes_use_multi_gpu_launcher_with_cpu_env(tmp_path: Path) -> None:
    plan = build_launch_plan({"use_cpu": True}, config_path=tmp_path / "c.yaml", num_processes=2)
    assert plan.argv[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    assert _flag(plan.argv, "--config_file") == str(tmp_path / ACCELERATE_CONFIG)
    assert plan.argv[-3:] == ["-m", "tunedeck.runner.train", str(tmp_path / "c.yaml")]
    assert "--multi_gpu" in plan.argv and _flag(plan.argv, "--num_processes") == "2"
    # torchrun's agent must leave SIGTERM alone (it would SIGKILL a saving worker 30 s later).
    assert "SIGTERM" not in plan.env["PET_SIGNALS_TO_HANDLE"]
    assert plan.env["ACCELERATE_USE_CPU"] == "1" and plan.env["TUNEDECK_EXPECT_WORLD_SIZE"] == "2"
    assert plan.accelerate_config["distributed_type"] == "MULTI_CPU"
    assert (
        _flag(plan.argv, "--main_process_port") == "0"
    )  # a free port: parallel runs never collide


def test_chosen_gpus_set_visible_devices_precision_and_world_size(tmp_path: Path) -> None:
    plan = build_launch_plan(
        {"bf16": True}, config_path=tmp_path / "c.yaml", gpus=parse_gpus("0,2")
    )
    assert plan.env["CUDA_VISIBLE_DEVICES"] == "0,2" and "ACCELERATE_USE_CPU" not in plan.env
    assert plan.argv[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    assert _flag(plan.argv, "--config_file") == str(tmp_path / ACCELERATE_CONFIG)
    assert plan.argv[-3:] == ["-m", "tunedeck.runner.train", str(tmp_path / "c.yaml")]
    assert "--multi_gpu" in plan.argv and _flag(plan.argv, "--num_processes") == "2"
    # torchrun's agent must leave SIGTERM alone (it would SIGKILL a saving worker 30 s later).
    assert "SIGTERM" not in plan.env["PET_SIGNALS_TO_HANDLE"]
    assert _flag(plan.argv, "--mixed_precision") == "bf16" and plan.world_size == 2
    fp16 = build_launch_plan({"fp16": True}, config_path=tmp_path / "c.yaml", gpus=[1])
    assert fp16.env["ACCELERATE_MIXED_PRECISION"] == "fp16" and "--multi_gpu" not in fp16.argv
    pure = build_launch_plan({"pure_bf16": True}, config_path=tmp_path / "c.yaml", gpus=[0])
    assert pure.env["ACCELERATE_MIXED_PRECISION"] == "no"  # bf16 weights, no autocast
    with pytest.raises(ConfigError, match="does not match"):
        build_launch_plan({}, config_path=tmp_path / "c.yaml", gpus=[0, 1], num_processes=3)
    with pytest.raises(ConfigError):
        parse_gpus("0,a")


def test_multi_node_flags_count_processes_across_machines(tmp_path: Path) -> None:
    plan = build_launch_plan(
        {},
        config_path=tmp_path / "c.yaml",
        gpus=[0, 1],
        num_machines=2,
        machine_rank=1,
        main_process_ip="10.0.0.1",
        main_process_port=29555,
    )
    a = plan.argv
    assert _flag(a, "--num_processes") == "4" and _flag(a, "--num_machines") == "2"
    assert _flag(a, "--machine_rank") == "1" and _flag(a, "--main_process_ip") == "10.0.0.1"
    assert (
        _flag(a, "--main_process_port") == "29555" and plan.env["TUNEDECK_EXPECT_WORLD_SIZE"] == "4"
    )
    with pytest.raises(ConfigError, match="main-ip"):
        build_launch_plan(
            {}, config_path=tmp_path / "c.yaml", gpus=[0], num_machines=2, machine_rank=1
        )


def test_deepspeed_and_fsdp_come_from_their_config_files(tmp_path: Path) -> None:
    (tmp_path / "ds_z3.json").write_text('{"zero_optimization": {"stage": 3}}')
    run = tmp_path / "run"
    run.mkdir()
    ds = build_launch_plan(
        {"deepspeed": "ds_z3.json"}, config_path=run / "config.yaml", gpus=[0, 1], cwd=tmp_path
    )
    assert "--use_deepspeed" in ds.argv and "--multi_gpu" not in ds.argv
    assert _flag(ds.argv, "--deepspeed_config_file") == str(tmp_path / "ds_z3.json")
    inline = {"deepspeed_config": {"zero_optimization": {"stage": 2}}}
    ds2 = build_launch_plan(inline, config_path=run / "config.yaml", gpus=[0, 1])
    write_plan_files(ds2, inline)
    assert (
        json.loads(Path(_flag(ds2.argv, "--deepspeed_config_file")).read_text())
        == inline["deepspeed_config"]
    )
    (tmp_path / "fsdp.yaml").write_text(
        "fsdp_config:\n  sharding_strategy: FULL_SHARD\n  fsdp_version: 2\n"
    )
    fs = build_launch_plan(
        {"fsdp": "full_shard auto_wrap", "fsdp_config": str(tmp_path / "fsdp.yaml")},
        config_path=run / "config.yaml",
        gpus=[0, 1],
    )
    assert "--use_fsdp" in fs.argv
    assert fs.accelerate_config["fsdp_config"] == {
        "fsdp_sharding_strategy": "FULL_SHARD",
        "fsdp_version": 2,
    }
    with pytest.raises(ConfigError, match="choose one"):
        build_launch_plan(
            {"deepspeed": "ds_z3.json", "fsdp": "full_shard"},
            config_path=run / "c.yaml",
            gpus=[0, 1],
            cwd=tmp_path,
        )


PROBE = """
import json, os, sys
# One file per process: two ranks printing to one pipe can interleave their lines.
keys = ("WORLD_SIZE", "ACCELERATE_USE_CPU", "ACCELERATE_MIXED_PRECISION", "TUNEDECK_EXPECT_WORLD_SIZE")
with open(os.path.join(sys.argv[1], f"rank-{os.getpid()}.json"), "w") as fh:
    json.dump({k: os.environ.get(k) for k in keys}, fh)
"""


def test_a_stray_default_accelerate_config_never_changes_the_run(tmp_path: Path) -> None:
    """Our per-run config file wins over ~/.cache/huggingface/accelerate/default_config.yaml."""
    hf_home = tmp_path / "hf"
    (hf_home / "accelerate").mkdir(parents=True)
    (hf_home / "accelerate" / "default_config.yaml").write_text(
        "compute_environment: LOCAL_MACHINE\ndistributed_type: MULTI_GPU\nnum_processes: 8\n"
        "mixed_precision: fp16\ngpu_ids: all\nnum_machines: 1\nuse_cpu: false\n"
    )
    run = tmp_path / "run"
    run.mkdir()
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    plan = build_launch_plan({"use_cpu": True}, config_path=run / "config.yaml", num_processes=2)
    write_plan_files(plan, {})
    seen = tmp_path / "seen"
    seen.mkdir()
    argv = plan.argv[:-3] + [str(probe), str(seen)]  # the same launch, a probe instead of the trainer
    env = {**control_env(tmp_path / "home"), **plan.env, "HF_HOME": str(hf_home)}
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    ranks = [json.loads(p.read_text()) for p in seen.iterdir()]
    assert len(ranks) == 2, out.stdout  # not the default file's 8
    for r in ranks:
        assert r["WORLD_SIZE"] == "2" and r["ACCELERATE_USE_CPU"] in ("1", "True", "true")
        assert r["ACCELERATE_MIXED_PRECISION"] == "no"  # not the default file's fp16


def test_print_command_is_the_exact_shell_line_and_launches_nothing(
    tmp_path: Path, make_demo_config
) -> None:
    cfg = make_demo_config(tmp_path, WANDB_API_KEY="wandb-secret-123")
    env = control_env(tmp_path / "home")
    out = tunedeck(["launch", str(cfg), "--print-command"], env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    words = shlex.split(out.stdout.strip())
    assigns = words[: words.index(sys.executable)]
    assert "ACCELERATE_USE_CPU=1" in assigns and "WANDB_API_KEY=***" in assigns
    assert "wandb-secret-123" not in out.stdout + out.stderr
    i = words.index(sys.executable)
    assert words[i:] == [sys.executable, "-m", "tunedeck.runner.train", str(tmp_path / "out" / "config.yaml")]
    assert not (tmp_path / "out").exists() and not (tmp_path / "home" / "runs").exists()


def test_an_invalid_config_launches_nothing(tmp_path: Path, make_demo_config) -> None:
    cfg = make_demo_config(tmp_path, learning_rate=-1)
    env = control_env(tmp_path / "home")
    out = tunedeck(["launch", str(cfg)], env, cwd=tmp_path)
    assert out.returncode == 2
    assert "learning_rate" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "out" / "tunedeck_run.json").exists()
    assert not (tmp_path / "home" / "runs").exists()


def test_secrets_stay_out_of_the_frozen_config_and_reach_the_trainer_by_env(tmp_path: Path) -> None:
    from tunedeck.runner.config.yamlio import ConfigDoc

    src = tmp_path / "cfg.yaml"
    src.write_text("# my run\nswanlab_api_key: sk-live-999  # keep\nlearning_rate: 1.0e-4\n")
    doc = ConfigDoc.load(src, ["hf_hub_token=hf_abc123"])
    run = tmp_path / "run"
    run.mkdir()
    path, secrets = freeze_config(doc, run, {"output_dir": str(run)})
    text = path.read_text()
    assert "sk-live-999" not in text and "hf_abc123" not in text
    # Dropped, not replaced by "***": a trainer reading the copy must fall back to the env.
    assert "swanlab_api_key:" not in text and "hf_hub_token:" not in text
    assert "secret keys removed from this copy (hf_hub_token, swanlab_api_key)" in text
    assert "# my run" in text and "learning_rate: 1.0e-4" in text  # the user's file otherwise kept
    assert secrets == {"swanlab_api_key": "sk-live-999", "hf_hub_token": "hf_abc123"}
    plan = build_launch_plan(doc.values(), config_path=path, cpu=True)
    env = supervisor_env(plan, secrets, "rid")
    assert json.loads(env[SECRETS_ENV]) == secrets
    assert env["SWANLAB_API_KEY"] == "sk-live-999" and env["HF_TOKEN"] == "hf_abc123"
    assert redact_env(
        {"HF_TOKEN": "x", "MY_SERVICE_API_KEY": "y", SECRETS_ENV: "{}", "PATH": "/bin"}
    ) == {"HF_TOKEN": "***", "MY_SERVICE_API_KEY": "***", SECRETS_ENV: "***", "PATH": "/bin"}


def _fake_checkpoint(run: Path, step: int, *, complete: bool = True) -> Path:
    ck = run / f"checkpoint-{step}"
    ck.mkdir(parents=True)
    (ck / "adapter_model.safetensors").write_bytes(b"x" * 16)
    if complete:
        (ck / "trainer_state.json").write_text(json.dumps({"global_step": step, "max_steps": 100}))
    return ck


def test_output_dir_with_checkpoints_resumes_or_refuses_without_overwrite(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert decide_start(run, {}, overwrite=False).resume_from is None  # nothing there yet
    _fake_checkpoint(run, 10)
    newest = _fake_checkpoint(run, 20)
    _fake_checkpoint(run, 30, complete=False)  # interrupted save: never resumed from
    d = decide_start(run, {}, overwrite=False)
    assert d.resume_from == str(newest) and d.implicit and "resumes" in (d.note or "")
    explicit = decide_start(
        run, {"resume_from_checkpoint": str(run / "checkpoint-10")}, overwrite=False
    )
    assert explicit.resume_from == str(run / "checkpoint-10") and not explicit.implicit
    with pytest.raises(RunBusy, match="overwrite_output_dir"):
        decide_start(run, {"overwrite_output_dir": True}, overwrite=False)
    assert decide_start(run, {"overwrite_output_dir": True}, overwrite=True).overwrite
    only_broken = tmp_path / "broken"
    _fake_checkpoint(only_broken, 5, complete=False)
    with pytest.raises(RunBusy, match="none is complete"):
        decide_start(only_broken, {}, overwrite=False)


def test_thread_counts_share_the_cores_given_to_the_run_unless_the_user_set_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each process would otherwise start one OpenMP thread per core of the box: with two
    # processes (or another job) on the same cores they fight, 30x slower on a busy CPU.
    from tunedeck.runner.control.launch import cores_for_run

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    cores = cores_for_run()
    assert 1 <= cores <= len(os.sched_getaffinity(0))
    # A run given one core (taskset, a cgroup cpuset) gets one thread, whatever the box has.
    code = ("import os; os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]}); "
            "from tunedeck.runner.control.launch import build_launch_plan as b; "
            f"print(b({{'use_cpu': True}}, config_path={str(tmp_path / 'c.yaml')!r}).env['OMP_NUM_THREADS'])")
    pinned = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            env={k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")})
    assert pinned.stdout.strip() == "1", pinned.stderr
    one = build_launch_plan({"use_cpu": True}, config_path=tmp_path / "c.yaml")
    two = build_launch_plan({"use_cpu": True}, config_path=tmp_path / "c.yaml", num_processes=2)
    assert one.env["OMP_NUM_THREADS"] == one.env["MKL_NUM_THREADS"] == str(cores)
    assert one.env["OMP_WAIT_POLICY"] == "PASSIVE"  # no spinning threads starving a busy CPU
    assert two.env["OMP_NUM_THREADS"] == two.env["MKL_NUM_THREADS"] == str(max(1, cores // 2))
    many = build_launch_plan({"use_cpu": True}, config_path=tmp_path / "c.yaml", num_processes=cores * 4)
    assert many.env["OMP_NUM_THREADS"] == "1"
    # The user's choice wins: in the environment it is inherited untouched, in the config it is taken.
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    mine = build_launch_plan({"use_cpu": True}, config_path=tmp_path / "c.yaml", num_processes=2)
    assert "OMP_NUM_THREADS" not in mine.env and "MKL_NUM_THREADS" not in mine.env
    monkeypatch.delenv("OMP_NUM_THREADS")
    cfg = build_launch_plan({"use_cpu": True, "OMP_NUM_THREADS": 5}, config_path=tmp_path / "c.yaml")
    assert cfg.env["OMP_NUM_THREADS"] == "5"


def test_validate_never_advises_what_launch_then_refuses(tmp_path: Path, make_demo_config) -> None:
    _fake_checkpoint(tmp_path / "out", 2)
    env = control_env(tmp_path / "home")
    for overwrite in (False, True):
        cfg = make_demo_config(tmp_path, overwrite_output_dir=overwrite)
        val = tunedeck(["validate", str(cfg), "--json"], env, cwd=tmp_path)
        fixes = [f.get("fix") or "" for f in json.loads(val.stdout)[0]["findings"]]
        assert not [x for x in fixes if "overwrite_output_dir: true" in x], fixes
        assert [x for x in fixes if "tunedeck launch --overwrite" in x], fixes
    # ... and launch with overwrite_output_dir: true says the same thing (exit 4, run busy).
    out = tunedeck(["launch", str(cfg)], env, cwd=tmp_path)
    assert out.returncode == 4 and "--overwrite" in out.stderr, out.stderr
    assert [p.name for p in (tmp_path / "out").glob("checkpoint-*")] == ["checkpoint-2"]


def test_launch_refuses_a_missing_local_model_path_naming_key_file_and_line(tmp_path: Path,
                                                                          make_demo_config) -> None:
    (tmp_path / "models").mkdir()
    cfg = make_demo_config(tmp_path, model_name_or_path="models/tiny-llama")
    line = next(i for i, t in enumerate(cfg.read_text().splitlines(), 1) if t.startswith("model_name_or_path"))
    out = tunedeck(["launch", str(cfg)], control_env(tmp_path / "home"), cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert f"{cfg}:{line}:" in out.stderr and "model_name_or_path" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_relaunch_after_a_failed_launch_leaves_one_run_of_that_name(tmp_path: Path, make_demo_config) -> None:
    cfg = make_demo_config(tmp_path, max_steps=3, save_steps=50)
    env = control_env(tmp_path / "home", TUNEDECK_FAULT="exit@1")
    first = tunedeck(["launch", str(cfg), "--name", "mine", "--follow"], env, cwd=tmp_path, timeout=300)
    assert first.returncode != 0, first.stderr
    second = tunedeck(["launch", str(cfg), "--name", "mine"], control_env(tmp_path / "home"), cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    new_id = second.stdout.strip()
    assert "is replaced by run " + new_id in second.stderr, second.stderr
    runs = json.loads(tunedeck(["runs", "--json"], env).stdout)
    assert [r["id"] for r in runs if r["name"] == "mine"] == [new_id]
    st = tunedeck(["status", "mine", "--json"], env)
    assert st.returncode == 0 and json.loads(st.stdout)["id"] == new_id, st.stderr
    stop = tunedeck(["stop", "mine", "--json"], env, timeout=300)
    assert json.loads(stop.stdout)["status"] in ("stopped", "finished"), stop.stdout
