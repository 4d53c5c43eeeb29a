"""The generated Slurm job script and argv, checked as text and argv (no cluster needed):
2 nodes x N GPUs, DeepSpeed, FSDP, settings defaults, secrets, the per-task expansion."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.control_helpers import control_env, tunedeck
from tunedeck.runner.control.backends.slurm import (
    SlurmOptions,
    options_with_settings,
    script_preview,
)
from tunedeck.runner.control.launch import LaunchOptions
from tunedeck.runner.control.slurm_job import expand
from tunedeck.runner.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def _srun_task(script: str) -> list[str]:
    """The argv srun runs on every node, from the script's exec line."""
    body = script.split("\nexec ", 1)[1].replace("\\\n", " ")
    argv = shlex.split(body)
    srun = argv.index("srun")
    i = srun + 1
    while argv[i].startswith("-"):
        i += 1
    return argv[i:]


def _flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def _gpu_config(make_demo_config, tmp_path: Path, **kw) -> Path:
    return make_demo_config(tmp_path, use_cpu=None, **kw)


def test_two_nodes_of_four_gpus_run_accelerate_per_node_with_rank_address_and_port_from_the_job(
        tmp_path, make_demo_config):
    cfg = _gpu_config(make_demo_config, tmp_path)
    text = script_preview(cfg, [], LaunchOptions(), SlurmOptions(nodes=2, gpus_per_node=4, cpus_per_task=16,
                          partition="gpu", time="2:00:00", account="proj", qos="high"), cwd=tmp_path)
    for line in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=1", "#SBATCH --gpus-per-node=4",
                 "#SBATCH --cpus-per-task=16", "#SBATCH --partition=gpu", "#SBATCH --time=2:00:00",
                 "#SBATCH --account=proj", "#SBATCH --qos=high", "#SBATCH --requeue",
                 "#SBATCH --open-mode=append", "#SBATCH --signal=B:USR1@300",
                 f"#SBATCH --output={tmp_path / 'out' / 'stdout.log'}"):
        assert line in text.splitlines(), line
    assert 'scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1' in text
    assert "$(( 20000 + SLURM_JOB_ID % 20000 ))" in text
    assert "export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True" in text
    assert "ACCELERATE_USE_CPU" not in text
    exec_line = shlex.split(text.split("\nexec ", 1)[1].replace("\\\n", " "))
    assert exec_line[1:4] == ["-m", "tunedeck.runner.control.slurm_job", str(tmp_path / "out")]
    srun = exec_line[exec_line.index("srun"):]
    assert "--nodes=2" in srun and "--ntasks=2" in srun and "--ntasks-per-node=1" in srun
    task = _srun_task(text)
    assert task[1:5] == ["-m", "tunedeck.runner.control.slurm_job", "--task", "--"]
    acc = task[5:]
    assert acc[1:3] == ["-m", "accelerate.commands.launch"] and "--multi_gpu" in acc
    assert _flag(acc, "--num_processes") == "8" and _flag(acc, "--num_machines") == "2"
    assert _flag(acc, "--machine_rank") == "$SLURM_PROCID"
    assert _flag(acc, "--main_process_ip") == "$TUNEDECK_MAIN_ADDR"
    assert _flag(acc, "--main_process_port") == "$TUNEDECK_MAIN_PORT"
    assert acc[-3:] == ["-m", "tunedeck.runner.train", str(tmp_path / "out" / "config.yaml")]
    assert acc.count("--machine_rank") == 1
    r = subprocess.run(["bash", "-n"], input=text, text=True, capture_output=True)
    assert r.returncode == 0, r.stderr


def test_one_process_runs_the_trainer_itself_so_signals_reach_its_handler(tmp_path, make_demo_config):
    cfg = make_demo_config(tmp_path)
    text = script_preview(cfg, [], LaunchOptions(), SlurmOptions(signal_seconds=120), cwd=tmp_path)
    task = _srun_task(text)
    assert task[1:] == ["-m", "tunedeck.runner.train", str(tmp_path / "out" / "config.yaml")]
    assert "#SBATCH --signal=B:USR1@120" in text and "export ACCELERATE_USE_CPU=1" in text


def test_deepspeed_and_fsdp_reach_every_node(tmp_path, make_demo_config):
    ds = REPO / "sample_configs" / "launch" / "ds_z3_config.json"
    cfg = _gpu_config(make_demo_config, tmp_path, deepspeed=str(ds))
    acc = _srun_task(script_preview(cfg, [], LaunchOptions(), SlurmOptions(nodes=2, gpus_per_node=8),
                                    cwd=tmp_path))[5:]
    assert "--use_deepspeed" in acc and _flag(acc, "--deepspeed_config_file") == str(ds)
    assert _flag(acc, "--num_processes") == "16" and _flag(acc, "--machine_rank") == "$SLURM_PROCID"

    fs = REPO / "sample_configs" / "launch" / "accelerate_fsdp_config.yaml"
    cfg = _gpu_config(make_demo_config, tmp_path, fsdp="full_shard auto_wrap", fsdp_config=str(fs))
    acc = _srun_task(script_preview(cfg, [], LaunchOptions(), SlurmOptions(nodes=4, gpus_per_node=2),
                                    cwd=tmp_path))[5:]
    assert "--use_fsdp" in acc and _flag(acc, "--num_processes") == "8"
    assert _flag(acc, "--num_machines") == "4"


def test_settings_block_gives_defaults_that_a_launch_overrides(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    (home / "settings.json").write_text(json.dumps({"theme": "x", "slurm": {
        "partition": "gpu", "account": "proj", "time": "1-00:00:00", "signal_seconds": 600,
        "extra_lines": ["--exclusive", "#SBATCH --mail-type=END"]}}))
    monkeypatch.setenv("TUNEDECK_HOME", str(home))
    opts = options_with_settings({"partition": "debug", "sbatch_args": ["--constraint=a100"]})
    assert (opts.partition, opts.account, opts.time, opts.signal_seconds) == ("debug", "proj", "1-00:00:00", 600)
    assert opts.extra_lines == ("--exclusive", "#SBATCH --mail-type=END")
    assert opts.sbatch_args == ("--constraint=a100",)
    with pytest.raises(ConfigError, match="tasks-per-node"):
        options_with_settings({"tasks_per_node": 2, "gpus_per_node": 4})
    with pytest.raises(ConfigError, match="--partition"):
        options_with_settings({"partition": "a b"})


def test_print_script_submits_and_writes_nothing_and_keeps_secrets_out(tmp_path, make_demo_config):
    cfg = make_demo_config(tmp_path, SWANLAB_API_KEY="sk-very-secret-123")
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "settings.json").write_text(json.dumps({"slurm": {"extra_lines": ["--exclusive"]}}))
    # No Slurm on PATH: printing needs none.
    env = control_env(tmp_path / "home", PATH=str(tmp_path / "empty-bin"))
    out = tunedeck(["launch", str(cfg), "--slurm", "--print-script", "--time", "30", "--sbatch-arg=--nice=5"],
                   env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("#!/bin/bash\n")
    lines = out.stdout.splitlines()
    assert "#SBATCH --time=30" in lines and "#SBATCH --exclusive" in lines and "#SBATCH --nice=5" in lines
    assert "sk-very-secret-123" not in out.stdout
    assert not (tmp_path / "out").exists()
    bad = tunedeck(["launch", str(cfg), "--slurm", "--print-script", "--gpus", "0"], env, cwd=tmp_path)
    assert bad.returncode == 2 and "--gpus-per-node" in bad.stderr


def test_task_wrapper_expands_whole_variable_arguments_only():
    env = {"SLURM_PROCID": "1", "TUNEDECK_MAIN_ADDR": "node-a"}
    assert expand(["--machine_rank", "$SLURM_PROCID", "--x", "a$SLURM_PROCID", "$TUNEDECK_MAIN_ADDR"], env) == \
        ["--machine_rank", "1", "--x", "a$SLURM_PROCID", "node-a"]
    with pytest.raises(SystemExit, match="SLURM_NODEID"):
        expand(["$SLURM_NODEID"], env)
