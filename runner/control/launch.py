"""Building the ``accelerate launch`` command for a run, and starting the run.

:func:`build_launch_plan` is pure: config values + hardware choice -> the exact
argv and environment. It is always explicit: a per-run accelerate config file
(``accelerate_config.json`` in the run directory) plus the flags on the command
line, so a stray ``~/.cache/huggingface/accelerate/default_config.yaml`` can
never change what a run does.

:func:`launch` is the whole ``tunedeck launch``: validate, lock the output_dir,
freeze the config, write the manifest, start the detached supervisor.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunedeck.runner.errors import ConfigError, LaunchError, RunBusy, TunedeckError
from tunedeck.runner.rundir.checkpoints import checkpoint_paths, newest_complete
from tunedeck.runner.rundir.protocol import (
    FROZEN_CONFIG,
    MANIFEST,
    STDOUT_LOG,
    STOP_REQUEST,
    TRAINER_EXIT,
    TRAINER_LOG,
    TRAINER_STATE,
    RunStatus,
)

if TYPE_CHECKING:
    from tunedeck.runner.rundir.manifest import RunManifest

ACCELERATE_CONFIG = "accelerate_config.json"
DEEPSPEED_CONFIG = "deepspeed_config.json"
EXPECT_WORLD_SIZE_ENV = "TUNEDECK_EXPECT_WORLD_SIZE"
RUN_ID_ENV = "TUNEDECK_RUN_ID"
ALLOC_CONF = "expandable_segments:True"
# torchrun reads its --signals_to_handle default from this (torch.distributed.argparse_util.env).
SIGNALS_TO_HANDLE_ENV = "PET_SIGNALS_TO_HANDLE"
LAUNCHER_SIGNALS = "SIGINT,SIGHUP,SIGQUIT"
# How long `launch` waits for the detached supervisor to report in.
SUPERVISOR_START_TIMEOUT = float(os.environ.get("TUNEDECK_SUPERVISOR_START_TIMEOUT", "30"))


# ----------------------------------------------------------------------------
# The plan: argv + env
# ----------------------------------------------------------------------------
@dataclass(frozen=True)
class LaunchPlan:
    """Exactly what will be executed. ``env`` holds only what we add to the environment."""

    argv: list[str]
    env: dict[str, str]
    accelerate_config: dict[str, Any]
    accelerate_config_path: Path
    world_size: int               # processes across all machines
    processes_per_machine: int
    num_machines: int
    gpus: list[int]               # physical GPU indices ([] = CPU, or all visible)
    cpu: bool
    mixed_precision: str          # "no" | "bf16" | "fp16"
    backend: str                  # "single" | "multi" | "deepspeed" | "fsdp"
    deepspeed_config_path: Path | None = None
    notes: list[str] = field(default_factory=list)

    def shell_command(self, *, redact: bool = True) -> str:
        """The command as one shell-quoted line (for a user to run by hand)."""
        import shlex

        from tunedeck.runner.control.secrets import redact_env

        env = redact_env(self.env) if redact else self.env
        prefix = [f"{k}={shlex.quote(v)}" for k, v in sorted(env.items())]
        return " ".join([*prefix, shlex.join(self.argv)])


def _truthy(v: Any) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in ("1", "true", "yes", "on")
    return bool(v)


def mixed_precision_of(values: Mapping[str, Any]) -> str:
    """accelerate's ``--mixed_precision`` for a config.

    Must agree with what the trainer gives ``TrainingArguments`` (bf16/fp16),
    or accelerate's environment would switch autocast on behind its back.
    ``pure_bf16`` loads the weights in bf16 and trains without AMP: ``no``.
    """
    if _truthy(values.get("bf16")):
        return "bf16"
    if _truthy(values.get("fp16")):
        return "fp16"
    return "no"


def visible_gpu_count() -> int:
    """GPUs NVML can see (0 with no driver). Never raises."""
    try:
        from tunedeck.runner.monitor.nvml import get_nvml

        snap = get_nvml().snapshot(with_processes=False)
        return len(snap.gpus) if snap.available else 0
    except Exception:
        return 0


def _load_mapping_file(path: Path, key: str) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", key=key) from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            from tunedeck.runner.config.yamlio import ConfigDoc

            data = ConfigDoc.loads(text, source=str(path)).values()
    except (ValueError, TunedeckError) as exc:
        raise ConfigError(f"cannot parse {path}: {exc}", key=key) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping", key=key)
    return data


def _fsdp_section(values: Mapping[str, Any], base: Path) -> dict[str, Any]:
    """accelerate's ``fsdp_config`` section from the config's ``fsdp_config``.

    Accepts an accelerate config file (with its own ``fsdp_config:``), a
    TrainingArguments-style file or an inline mapping; keys get accelerate's
    ``fsdp_`` prefix.
    """
    raw = values.get("fsdp_config")
    data: dict[str, Any] = {}
    if isinstance(raw, Mapping):
        data = dict(raw)
    elif isinstance(raw, str) and raw.strip():
        p = Path(raw).expanduser()
        if not p.is_absolute():
            p = base / p
        data = _load_mapping_file(p, "fsdp_config")
        if isinstance(data.get("fsdp_config"), Mapping):
            data = dict(data["fsdp_config"])
    return {(k if k.startswith("fsdp_") else f"fsdp_{k}"): v for k, v in data.items()}


def build_launch_plan(
    values: Mapping[str, Any],
    *,
    config_path: str | Path,
    gpus: list[int] | None = None,
    num_processes: int | None = None,
    num_machines: int = 1,
    machine_rank: int = 0,
    main_process_ip: str | None = None,
    main_process_port: int | None = None,
    cpu: bool | None = None,
    cwd: str | Path | None = None,
    gpu_count: int | None = None,
) -> LaunchPlan:
    """The ``accelerate launch`` argv and environment for one run.

    ``config_path`` is the frozen config the trainer reads (``<run_dir>/config.yaml``);
    the accelerate config file is written next to it. ``num_processes`` counts the
    processes on *this* machine (default: one per chosen GPU, else 1); the world
    size is that times ``num_machines``. ``cpu=None`` means CPU when no GPU is
    visible or the config sets ``use_cpu``. ``gpu_count`` overrides GPU detection.
    """
    config_path = Path(config_path)
    run_dir = config_path.parent
    base = Path(cwd) if cwd is not None else Path.cwd()
    notes: list[str] = []

    cpu, per_machine = _processes(values, gpus, num_processes, num_machines, machine_rank,
                                  main_process_ip, cpu, gpu_count)
    world = per_machine * num_machines
    mp = mixed_precision_of(values)
    ds_path, use_fsdp = _sharding(values, run_dir, base)

    acc = _accelerate_config(world, num_machines, machine_rank, mp, cpu)
    backend, mode_flags = _choose_backend(acc, values, base, ds_path, use_fsdp, world, cpu, notes)
    port = main_process_port
    if world > 1 and port is None and num_machines == 1:
        port = 0  # accelerate picks a free port: parallel runs on one box never collide
    if port is not None:
        acc["main_process_port"] = port
    if main_process_ip:
        acc["main_process_ip"] = main_process_ip

    acc_path = run_dir / ACCELERATE_CONFIG
    direct = backend == "single" and num_machines == 1
    if direct:
        # One process, no DeepSpeed/FSDP: accelerate's launcher would only set a few
        # environment variables (below) and wrap the trainer in a process that, on SIGTERM,
        # ends it 5 s later (accelerate.commands.launch._run_subprocess) -- long before a
        # slow step and a checkpoint save are done. Run the trainer itself.
        argv = [sys.executable, "-m", "tunedeck.runner.train", str(config_path)]
    else:
        argv = _accelerate_argv(acc_path, mode_flags, world, num_machines, mp, machine_rank,
                                main_process_ip, port, config_path)
    env = _run_env(values, direct=direct, world=world, per_machine=per_machine, mp=mp, cpu=cpu, gpus=gpus)
    return LaunchPlan(
        argv=argv,
        env=env,
        accelerate_config=acc,
        accelerate_config_path=acc_path,
        world_size=world,
        processes_per_machine=per_machine,
        num_machines=num_machines,
        gpus=list(gpus or []),
        cpu=cpu,
        mixed_precision=mp,
        backend=backend,
        deepspeed_config_path=ds_path,
        notes=notes,
    )


def _processes(values: Mapping[str, Any], gpus: list[int] | None, num_processes: int | None,
               num_machines: int, machine_rank: int, main_process_ip: str | None,
               cpu: bool | None, gpu_count: int | None) -> tuple[bool, int]:
    """The command line's hardware choice checked: (CPU run?, processes on this machine)."""
    if gpus is not None:
        if not gpus:
            raise ConfigError("--gpus needs at least one index", file="command line")
        if len(set(gpus)) != len(gpus) or any(g < 0 for g in gpus):
            raise ConfigError(f"--gpus {','.join(map(str, gpus))}: indices must be distinct and >= 0",
                              file="command line")
    if cpu is None:
        if _truthy(values.get("use_cpu")):
            cpu = True
        elif gpus:
            cpu = False
        else:
            cpu = (visible_gpu_count() if gpu_count is None else gpu_count) == 0
    if cpu and gpus:
        raise ConfigError("--gpus was given for a CPU run", file="command line",
                          hint="drop --gpus, or unset use_cpu / --cpu")
    per_machine = num_processes if num_processes is not None else (len(gpus) if gpus else 1)
    if per_machine < 1:
        raise ConfigError("--num-processes must be at least 1", file="command line")
    if gpus and per_machine != len(gpus):
        raise ConfigError(
            f"--num-processes {per_machine} does not match the {len(gpus)} GPUs of --gpus",
            file="command line", hint="one process per GPU: drop --num-processes",
        )
    if num_machines < 1 or not 0 <= machine_rank < num_machines:
        raise ConfigError(f"--machine-rank must be in 0..{num_machines - 1}", file="command line")
    if num_machines > 1 and not main_process_ip:
        raise ConfigError("a multi-node run needs --main-ip (the address of machine rank 0)",
                          file="command line")
    return bool(cpu), per_machine


def _sharding(values: Mapping[str, Any], run_dir: Path, base: Path) -> tuple[Path | None, bool]:
    """DeepSpeed / FSDP from the config: (the DeepSpeed config file or None, FSDP on?)."""
    ds = values.get("deepspeed")
    ds_path: Path | None = None
    if isinstance(ds, Mapping) or (ds is None and isinstance(values.get("deepspeed_config"), Mapping)):
        ds_path = run_dir / DEEPSPEED_CONFIG  # inline settings: the launcher writes this file
    elif isinstance(ds, str) and ds.strip():
        ds_path = Path(ds).expanduser()
        if not ds_path.is_absolute():
            ds_path = base / ds_path
    fsdp = values.get("fsdp")
    use_fsdp = bool(fsdp) and str(fsdp).strip().lower() not in ("", "false", "none")
    if ds_path is not None and use_fsdp:
        raise ConfigError("deepspeed and fsdp are both set; choose one", key="fsdp")
    return ds_path, use_fsdp


def _accelerate_config(world: int, num_machines: int, machine_rank: int, mp: str,
                       cpu: bool) -> dict[str, Any]:
    """The settings every per-run accelerate config file holds."""
    return {
        "compute_environment": "LOCAL_MACHINE",
        "num_processes": world,
        "num_machines": num_machines,
        "machine_rank": machine_rank,
        "mixed_precision": mp,
        "use_cpu": cpu,
        "gpu_ids": "all",
        "rdzv_backend": "static",
        "same_network": True,
        "debug": False,
        "downcast_bf16": "no",
        "enable_cpu_affinity": False,
    }


def _choose_backend(acc: dict[str, Any], values: Mapping[str, Any], base: Path,
                    ds_path: Path | None, use_fsdp: bool, world: int, cpu: bool,
                    notes: list[str]) -> tuple[str, list[str]]:
    """Set ``acc``'s distributed type; return the backend's name and its launcher flags."""
    if ds_path is not None:
        acc["distributed_type"] = "DEEPSPEED"
        acc["deepspeed_config"] = {"deepspeed_config_file": str(ds_path), "zero3_init_flag": False}
        if cpu:
            notes.append("DeepSpeed on CPU is not supported by accelerate; it will fall back or fail")
        return "deepspeed", ["--use_deepspeed", "--deepspeed_config_file", str(ds_path)]
    if use_fsdp:
        acc["distributed_type"] = "FSDP"
        acc["fsdp_config"] = _fsdp_section(values, base)
        return "fsdp", ["--use_fsdp"]
    if world > 1:
        # With use_cpu (ACCELERATE_USE_CPU=1) torchrun's workers pick MULTI_CPU + gloo;
        # without it two independent runs would write the same output_dir.
        acc["distributed_type"] = "MULTI_CPU" if cpu else "MULTI_GPU"
        return "multi", ["--multi_gpu"]
    acc["distributed_type"] = "NO"
    return "single", ["--cpu"] if cpu else []


def _run_env(values: Mapping[str, Any], *, direct: bool, world: int, per_machine: int, mp: str,
             cpu: bool, gpus: list[int] | None) -> dict[str, str]:
    """What the run's environment gets on top of ours (``direct``: no launcher process)."""
    env: dict[str, str] = {
        EXPECT_WORLD_SIZE_ENV: str(world),
        "PYTHONUNBUFFERED": "1",  # stdout.log gets lines as they happen
    }
    if direct:
        # What accelerate's simple launcher would have exported (utils/launch.py,
        # prepare_simple_launcher_cmd_env): the Accelerator reads these.
        env["ACCELERATE_MIXED_PRECISION"] = mp
        env["ACCELERATE_DYNAMO_BACKEND"] = "NO"
    else:
        # torchrun's elastic agent (accelerate runs it in the launcher process) answers
        # SIGTERM by sending SIGTERM to the workers and SIGKILL 30 s later
        # (torch.distributed.elastic: SignalException -> _shutdown(timeout=shutdown_timeout)),
        # which kills a rank that is still saving. It must not handle SIGTERM at all: the
        # supervisor starts it with SIGTERM ignored (launcher_preexec) and signals the
        # workers itself; a cluster's SIGTERM reaches the workers directly.
        env[SIGNALS_TO_HANDLE_ENV] = LAUNCHER_SIGNALS
    threads = threads_per_process(per_machine)
    if threads is not None:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
        if cpu and "OMP_WAIT_POLICY" not in os.environ:
            # OpenMP threads spin while they wait; with another job on the cores that spinning
            # starves the run: the tiny model trained at 78-100 tokens/s with 2 spinning threads
            # on a busy 2-core box, 3,000-3,900 with PASSIVE, 1,800-3,500 with 1 thread.
            env["OMP_WAIT_POLICY"] = "PASSIVE"
    if "PYTORCH_CUDA_ALLOC_CONF" not in os.environ:
        env["PYTORCH_CUDA_ALLOC_CONF"] = ALLOC_CONF
    if cpu:
        env["ACCELERATE_USE_CPU"] = "1"
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in gpus)
    # ALL_CAPS keys in a config are environment variables for the run (guide §8).
    for k, v in values.items():
        if k.isupper() and k[0].isalpha() and v is not None and not isinstance(v, (dict, list)):
            if k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
                env[k] = str(v)  # the user's choice beats ours
            else:
                env.setdefault(k, str(v).lower() if isinstance(v, bool) else str(v))
    return env


def _accelerate_argv(acc_path: Path, mode_flags: list[str], world: int, num_machines: int, mp: str,
                     machine_rank: int, main_process_ip: str | None, port: int | None,
                     config_path: Path) -> list[str]:
    argv = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(acc_path),
        *mode_flags,
        "--num_processes", str(world),
        "--num_machines", str(num_machines),
        "--mixed_precision", mp,
        "--dynamo_backend", "no",
    ]
    if num_machines > 1:
        argv += ["--machine_rank", str(machine_rank), "--main_process_ip", str(main_process_ip)]
    if port is not None:
        argv += ["--main_process_port", str(port)]
    argv += ["-m", "tunedeck.runner.train", str(config_path)]
    return argv


def uses_launcher(argv: list[str]) -> bool:
    """True when ``argv`` runs accelerate's launcher (torchrun's elastic agent) around the trainer."""
    return "accelerate.commands.launch" in argv


def launcher_preexec() -> None:
    """In the forked child, before exec: the launcher ignores SIGTERM (and SIGUSR1).

    The disposition survives exec; with ``PET_SIGNALS_TO_HANDLE`` leaving SIGTERM out,
    torchrun's agent never installs its own handler, so a stop or a cluster's SIGTERM
    cannot make it kill a worker that is saving. The workers inherit the ignore and
    the trainer restores the default before anything else (tunedeck.runner.train).
    """
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)


def cores_for_run() -> int:
    """CPU cores this process may run on: its affinity mask, capped by a cgroup v2 CPU quota."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max" and float(period) > 0:
            n = min(n, max(1, int(float(quota) // float(period))))
    except (OSError, ValueError):
        pass
    return max(1, n)


def threads_per_process(per_machine: int) -> int | None:
    """OMP/MKL threads for each of ``per_machine`` processes, as torchrun reasons
    (the cores given to the run shared out, at least 1); None when the user set them."""
    if os.environ.get("OMP_NUM_THREADS") or os.environ.get("MKL_NUM_THREADS"):
        return None
    return max(1, cores_for_run() // max(1, per_machine))


def parse_gpus(text: str | None) -> list[int] | None:
    """``"0,2"`` -> ``[0, 2]``; refuses anything that is not a comma list of indices."""
    if text is None:
        return None
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit():
            raise ConfigError(f"--gpus {text!r}: expected GPU indices like 0,2", file="command line")
        out.append(int(part))
    return out


# ----------------------------------------------------------------------------
# Launch options and the run-directory policy
# ----------------------------------------------------------------------------
@dataclass(frozen=True)
class LaunchOptions:
    gpus: list[int] | None = None
    num_processes: int | None = None
    num_machines: int = 1
    machine_rank: int = 0
    main_process_ip: str | None = None
    main_process_port: int | None = None
    cpu: bool | None = None
    name: str | None = None
    max_restarts: int = 0
    auto_triage: bool = False
    overwrite: bool = False

    def plan_kwargs(self) -> dict[str, Any]:
        return {
            "gpus": self.gpus,
            "num_processes": self.num_processes,
            "num_machines": self.num_machines,
            "machine_rank": self.machine_rank,
            "main_process_ip": self.main_process_ip,
            "main_process_port": self.main_process_port,
            "cpu": self.cpu,
        }


@dataclass(frozen=True)
class LaunchResult:
    run_id: str
    name: str
    run_dir: Path
    plan: LaunchPlan
    resume_from: str | None
    attempt: int
    supervisor_pid: int | None
    warnings: list[str] = field(default_factory=list)
    backend: str = "local"
    job_id: str | None = None                 # the Slurm job (backend "slurm")


@dataclass(frozen=True)
class StartDecision:
    """How a launch treats what output_dir already holds."""

    resume_from: str | None      # checkpoint the run resumes from (None: from step 0)
    implicit: bool = False       # chosen by tunedeck (newest complete), not set in the config
    overwrite: bool = False      # delete the previous checkpoints and logs first
    note: str | None = None      # what to tell the user


def decide_start(run_dir: Path, values: Mapping[str, Any], *, overwrite: bool) -> StartDecision:
    """The launch policy for an output_dir that may hold checkpoints (see ``launch --help``).

    Pure: decides, deletes nothing. Raises :class:`RunBusy` when tunedeck must not guess.
    """
    cks = checkpoint_paths(run_dir)
    explicit = values.get("resume_from_checkpoint")
    if overwrite:
        return StartDecision(resume_from=None, overwrite=True)
    if not cks:
        if explicit not in (None, False, ""):
            return StartDecision(resume_from=str(explicit))
        return StartDecision(resume_from=None)
    if explicit not in (None, False, ""):
        return StartDecision(resume_from=str(explicit))
    if _truthy(values.get("overwrite_output_dir")):
        raise RunBusy(
            f"{run_dir} holds {cks[-1].name} and the config sets overwrite_output_dir: true",
            hint="pass --overwrite to delete the old checkpoints and start from step 0, "
            "or set overwrite_output_dir=false to resume from the newest checkpoint",
        )
    newest = newest_complete(run_dir)
    if newest is None:
        raise RunBusy(
            f"{run_dir} holds checkpoints but none is complete ({', '.join(c.name for c in cks)})",
            hint="pass --overwrite to delete them and start from step 0",
        )
    return StartDecision(
        resume_from=str(newest), implicit=True,
        note=f"{run_dir} holds {newest.name}: this launch resumes from it "
        "(pass --overwrite to start from step 0 instead)",
    )


def _remove_previous_outputs(run_dir: Path) -> list[str]:
    """``--overwrite``: delete the previous run's checkpoints and logs, nothing else."""
    removed: list[str] = []
    for ck in checkpoint_paths(run_dir):
        shutil.rmtree(ck)
        removed.append(ck.name)
    for name in (TRAINER_LOG, TRAINER_EXIT, TRAINER_STATE, "all_results.json", "train_results.json",
                 "eval_results.json"):
        p = run_dir / name
        if p.exists():
            p.unlink()
            removed.append(name)
    return removed


def _retire(path: Path) -> None:
    """Keep a stale file from a previous run out of the way without deleting it."""
    if path.exists():
        os.replace(path, path.with_name(path.name + ".prev"))


def _host() -> str:
    try:
        return socket.gethostname()
    except OSError:
        return ""


# ----------------------------------------------------------------------------
# Freezing the config
# ----------------------------------------------------------------------------
SECRETS_HEADER = "# tunedeck: secret keys removed from this copy ({keys}); the trainer receives them\n" \
    "# through its environment, which is never written to disk.\n"


def freeze_config(doc: Any, run_dir: Path, patch: Mapping[str, Any]) -> tuple[Path, dict[str, Any]]:
    """Write ``<run_dir>/config.yaml``: ``doc`` with overrides and ``patch`` applied, secrets removed.

    Returns the path and the real secret values (for the trainer's environment).
    Secret keys are dropped rather than replaced by a placeholder, so a trainer
    reading the copy falls back to the environment (SWANLAB_API_KEY, HF_TOKEN...)
    instead of logging in with "***". Comments and key order survive (ruamel round-trip).
    """
    from tunedeck.runner.config.yamlio import ConfigDoc
    from tunedeck.runner.control.secrets import REDACTED, is_secret_key
    from tunedeck.runner.fsutil import atomic_write_text

    frozen = ConfigDoc.loads(doc.dumps(), source=str(run_dir / FROZEN_CONFIG))
    for k, v in doc.overrides.items():
        frozen.set(k, v)
    for k, v in patch.items():
        if v is None:
            frozen.delete(k)
        else:
            frozen.set(k, v)
    secrets: dict[str, Any] = {}
    for k in list(frozen.keys()):
        v = frozen.get(k)
        if is_secret_key(k) and v not in (None, ""):
            if v != REDACTED:
                secrets[k] = v
            frozen.delete(k)
    path = run_dir / FROZEN_CONFIG
    header = SECRETS_HEADER.format(keys=", ".join(sorted(secrets))) if secrets else ""
    atomic_write_text(path, header + frozen.dumps())
    return path, secrets


def keep_attempt_copy(run_dir: Path, attempt: int) -> Path | None:
    """Before config.yaml is changed for a new attempt, keep the one attempt ``attempt`` ran."""
    src = run_dir / FROZEN_CONFIG
    dst = run_dir / f"config.attempt-{attempt}.yaml"
    if src.exists() and not dst.exists():
        shutil.copyfile(src, dst)
        return dst
    return None


def write_plan_files(plan: LaunchPlan, values: Mapping[str, Any]) -> None:
    """The per-run accelerate config (and an inline DeepSpeed config) in the run dir."""
    from tunedeck.runner.fsutil import atomic_write_json

    atomic_write_json(plan.accelerate_config_path, plan.accelerate_config)
    if plan.deepspeed_config_path is not None and plan.deepspeed_config_path.name == DEEPSPEED_CONFIG \
            and plan.deepspeed_config_path.parent == plan.accelerate_config_path.parent:
        inline = values.get("deepspeed")
        if not isinstance(inline, Mapping):
            inline = values.get("deepspeed_config")
        atomic_write_json(plan.deepspeed_config_path, dict(inline or {}))


# ----------------------------------------------------------------------------
# Starting the supervisor
# ----------------------------------------------------------------------------
def start_supervisor(run_dir: Path, lock_fd: int, env: Mapping[str, str], cwd: Path,
                     manifest: RunManifest) -> int:
    """Start the detached supervisor for ``run_dir``; it inherits the locked ``lock_fd``.

    New session (survives the terminal, SSH hang-up, tmux detaching), stdin from
    /dev/null, stdout/stderr appended to the run's stdout.log: a file, never a pipe.
    When it cannot start, ``manifest`` (ours to close: we hold the lock) is recorded
    failed rather than left "starting".
    """
    from tunedeck.runner.control.lock import LOCK_FD_ENV

    child_env = dict(env)
    child_env[LOCK_FD_ENV] = str(lock_fd)
    # Created 0644 whatever the umask (the supervisor then restricts its own for the trainer).
    log_fd = os.open(run_dir / STDOUT_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    with contextlib.suppress(OSError):
        os.fchmod(log_fd, os.fstat(log_fd).st_mode & 0o777 & ~0o022)
    log = os.fdopen(log_fd, "ab")  # noqa: SIM115 - handed to the child, closed below
    try:
        from tunedeck.runner.control.forkstart import fork_supervisor

        # The `tunedeck` command forks it (no second interpreter start); anything else spawns.
        pid = fork_supervisor(run_dir, lock_fd, child_env, cwd, log.fileno())
        if pid is None:
            pid = subprocess.Popen(
                [sys.executable, "-m", "tunedeck.runner.control.supervisor", str(run_dir)],
                cwd=str(cwd),
                env=child_env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                pass_fds=(lock_fd,),
                close_fds=True,
            ).pid
    except OSError as exc:
        manifest.status = RunStatus.FAILED
        manifest.message = f"cannot start the supervisor: {exc}"
        manifest.finished_at = time.time()
        manifest.write(run_dir)
        raise LaunchError(manifest.message) from None
    finally:
        log.close()
    return pid


def wait_supervisor_up(run_dir: Path, pid: int, timeout: float = SUPERVISOR_START_TIMEOUT) -> None:
    """Wait until the supervisor has recorded itself in the manifest; raise if it died."""
    from tunedeck.runner.fsutil import read_json
    from tunedeck.runner.rundir.procs import create_time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = read_json(run_dir / MANIFEST)
        sup = (data or {}).get("supervisor") or {}
        if sup.get("pid") == pid:
            return
        if create_time(pid) is None:
            # Reap it if it is our child (it is: Popen) so the exit is not a zombie.
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)
            data = read_json(run_dir / MANIFEST) or {}
            if (data.get("supervisor") or {}).get("pid") == pid:
                return  # it ran and finished already
            from tunedeck.runner.rundir.logs import tail_lines

            tail = "\n".join(tail_lines(run_dir / STDOUT_LOG, 12))
            raise LaunchError(f"the supervisor exited at once; the end of {run_dir / STDOUT_LOG}:\n{tail}")
        time.sleep(0.05)
    raise LaunchError(f"the supervisor (pid {pid}) did not report in within {timeout:.0f}s",
                      hint=f"see {run_dir / STDOUT_LOG}")


def supervisor_env(plan: LaunchPlan, secrets: Mapping[str, Any], run_id: str) -> dict[str, str]:
    """The environment the supervisor (and through it the trainer) runs with."""
    from tunedeck.runner.control.secrets import secrets_env

    env = dict(os.environ)
    env.update(plan.env)
    env.update(secrets_env(secrets))
    env[RUN_ID_ENV] = run_id
    return env


# ----------------------------------------------------------------------------
# tunedeck launch
# ----------------------------------------------------------------------------
def _validate(doc: Any) -> list[str]:
    """Run the config validator: raise ConfigError on the first error (nothing is
    launched), return the warnings as printable lines."""
    from tunedeck.runner.config.validate import LAUNCH_BLOCKING, validate_doc

    findings = list(validate_doc(doc))
    # A missing local path only warns in `validate` (the config may be for another box);
    # launching here, it is an error before anything starts.
    errors = [f for f in findings if f.severity == "error" or f.code in LAUNCH_BLOCKING]
    if errors:
        first = errors[0]
        more = (f" (and {len(errors) - 1} more error(s): `tunedeck validate` lists them all)"
                if len(errors) > 1 else "")
        raise ConfigError(first.message + more, file=first.file or doc.source, line=first.line,
                          column=first.column, key=first.key, hint=first.fix)
    return [f.format() for f in findings if f.severity == "warning" and f.code not in LAUNCH_BLOCKING]


def run_busy(run_dir: Path, m: RunManifest) -> bool:
    """THE busy check before a new attempt (launch and resume): a Slurm run whose job is
    queued or running; a local run any of whose recorded processes (supervisor, trainer,
    workers) still runs, whatever its manifest says (a stuck rank holds the GPU)."""
    from tunedeck.runner.rundir.procs import ref_alive

    if m.backend != "local":
        from tunedeck.runner.rundir.runs import computed_status, raw_manifest

        return computed_status(raw_manifest(run_dir) or {}).active
    return ref_alive(m.supervisor) or ref_alive(m.trainer) or any(ref_alive(p) for p in m.procs)


def start_attempt(run_dir: Path, lock: Any, m: RunManifest, plan: LaunchPlan,
                  secrets: Mapping[str, Any], cwd: Path, *, slurm: Any = None,
                  warn: Any = None) -> tuple[int | None, str | None]:
    """The step launch and resume end with, once the manifest records the attempt: submit
    the Slurm job (``slurm``: its options), or start the supervisor (it inherits ``lock``,
    which is released here) and wait until it reported in. Returns (supervisor pid, job id)."""
    if slurm is not None:
        from tunedeck.runner.control.backends.slurm import submit_run
        from tunedeck.runner.control.secrets import secrets_env

        job = submit_run(run_dir, m, plan, slurm, {**plan.env, RUN_ID_ENV: m.id},
                         secrets_env(secrets), cwd, warn=warn or (lambda _t: None))
        return None, job
    try:
        pid = start_supervisor(run_dir, lock.fd, supervisor_env(plan, secrets, m.id), cwd, m)
    finally:
        lock.release()  # the supervisor holds its own inherited copy now
    wait_supervisor_up(run_dir, pid)
    return pid, None


def resolve_output_dir(values: Mapping[str, Any], cwd: Path, source: str) -> Path:
    out = values.get("output_dir")
    if not out or not isinstance(out, str):
        raise ConfigError("output_dir is required: it is the run directory", file=source,
                          key="output_dir", hint="add e.g. output_dir: saves/my-run")
    p = Path(out).expanduser()
    if not p.is_absolute():
        p = cwd / p
    return Path(os.path.normpath(p))


def _apply_start_policy(run_dir: Path, values: Mapping[str, Any], *, overwrite: bool,
                        say: Any) -> tuple[dict[str, Any], str | None]:
    """The checkpoint policy (LLaMA-Factory's, made explicit) applied under the lock: the
    config patch the frozen copy gets and the checkpoint the attempt resumes from;
    ``--overwrite`` removes the previous outputs, a fresh start retires the old log."""
    decision = decide_start(run_dir, values, overwrite=overwrite)
    patch: dict[str, Any] = {"output_dir": str(run_dir)}
    if decision.overwrite:
        removed = _remove_previous_outputs(run_dir)
        say(f"--overwrite: removed {', '.join(removed) or 'nothing'} from {run_dir}; "
            "starting from step 0")
        patch["resume_from_checkpoint"] = None
        patch["overwrite_output_dir"] = True  # final weights from before must not stop the trainer
    elif decision.resume_from is not None and decision.implicit:
        patch["resume_from_checkpoint"] = decision.resume_from
    if decision.note:
        say(decision.note)
    if decision.resume_from is None:
        _retire(run_dir / TRAINER_LOG)
    for stale in (TRAINER_EXIT, STOP_REQUEST):
        with contextlib.suppress(FileNotFoundError):
            (run_dir / stale).unlink()
    return patch, decision.resume_from


def _attempt_manifest(old: RunManifest | None, run_id: str, name: str, run_dir: Path,
                      config_path: str | Path, plan: LaunchPlan, attempt: Any,
                      env_diff: dict[str, str]) -> RunManifest:
    """The manifest with this attempt: ``old``'s with the attempt appended when the launch
    continues that run in place, else a new run's."""
    from tunedeck.runner.rundir.manifest import RunManifest

    if old is not None:
        m = old
        m.attempts.append(attempt)
        m.argv = plan.argv
        m.env_diff = env_diff
    else:
        m = RunManifest(
            id=run_id,
            name=name,
            output_dir=str(run_dir),
            config_path=str(Path(config_path).resolve()),
            argv=plan.argv,
            env_diff=env_diff,
            attempts=[attempt],
        )
    m.name = name
    m.config_path = str(Path(config_path).resolve())
    return m


def _register(run_id: str, name: str, run_dir: Path, old: RunManifest | None, say: Any) -> None:
    """The registry entry of the run (a replaced run's entry goes); a note on name twins."""
    from tunedeck.runner.rundir import registry

    if old is not None and old.id != run_id:
        # The previous run's manifest is replaced: its registry entry would be a second
        # run of the same name pointing at this directory (and make the name ambiguous).
        registry.unregister(old.id)
        say(f"note: run {old.id} ({old.status.value}) in {run_dir} is replaced by run {run_id}")
    registry.register(run_id, name, run_dir)
    twins = [e for e in registry.entries() if e.name == name and e.id != run_id
             and e.run_dir.resolve() != run_dir.resolve()]
    if twins:
        say(f"note: {len(twins) + 1} runs are named {name!r} (also "
            + ", ".join(f"{e.id} in {e.run_dir}" for e in twins[:3])
            + f"); refer to this one by its id {run_id}")


def _identity(old: RunManifest | None, resume_from: str | None, name: str | None,
              run_dir: Path) -> tuple[bool, str, str, int]:
    """(continuing, run id, name, attempt number): a launch that resumes a tunedeck run in
    place continues that run (same id, next attempt); anything else is a new run."""
    from tunedeck.runner.rundir import registry

    if old is not None and resume_from is not None:
        return True, old.id, name or old.name, len(old.attempts) + 1
    return False, registry.new_run_id(), name or run_dir.name, 1


def _plan_launch(values: Mapping[str, Any], patch: Mapping[str, Any], frozen_path: Path, cwd: Path,
                 opts: LaunchOptions, slurm: Any, say: Any) -> tuple[LaunchPlan, dict[str, Any]]:
    """The plan for the frozen config (its accelerate/DeepSpeed files written) and the
    options it was built with (a Slurm job's allocation decides them)."""
    effective = dict(values)
    effective.update({k: v for k, v in patch.items() if v is not None})
    plan_kwargs: dict[str, Any] = opts.plan_kwargs()
    if slurm is not None:
        from tunedeck.runner.control.backends.slurm import launch_kwargs, require

        require("sbatch")
        plan_kwargs = launch_kwargs(slurm, opts.num_processes, opts.cpu)
    plan = build_launch_plan(effective, config_path=frozen_path, cwd=cwd, **plan_kwargs)
    write_plan_files(plan, effective)
    for n in plan.notes:
        say(f"note: {n}")
    return plan, plan_kwargs


def launch(
    config_path: str | Path,
    overrides: Iterable[str] | Mapping[str, Any] = (),
    options: LaunchOptions | None = None,
    *,
    cwd: str | Path | None = None,
    warn: Any = None,
    slurm: Any = None,
) -> LaunchResult:
    """``tunedeck launch``: validate, lock, freeze, write the manifest, start the supervisor.

    Returns as soon as the supervisor has reported in. ``warn(text)`` receives
    the lines a user should read on stderr (resume notices, validator warnings).
    Raises ConfigError (nothing launched), RunBusy or LaunchError. ``slurm`` (a
    :class:`~tunedeck.runner.control.backends.slurm.SlurmOptions`) submits a batch job
    instead of starting a local supervisor; it returns once sbatch accepted the job.
    """
    from tunedeck.runner.config.yamlio import ConfigDoc
    from tunedeck.runner.control.lock import acquire
    from tunedeck.runner.control.requirements import require_training_stack
    from tunedeck.runner.control.secrets import redact_env, redact_values
    from tunedeck.runner.fsutil import ensure_dir
    from tunedeck.runner.rundir.manifest import Attempt, read_manifest

    opts = options or LaunchOptions()
    say = warn or (lambda _t: None)
    cwd_p = Path(cwd) if cwd is not None else Path.cwd()
    doc = ConfigDoc.load(config_path, overrides)
    # Before anything is written: no run directory, manifest or registry entry.
    require_training_stack("launch", str(doc.values().get("stage") or ""))
    warnings = _validate(doc)
    for w in warnings:
        say(w)
    values = doc.values()
    run_dir = resolve_output_dir(values, cwd_p, doc.source)
    ensure_dir(run_dir)

    lock = acquire(run_dir)
    try:
        old = read_manifest(run_dir)
        if old is not None and run_busy(run_dir, old):
            raise RunBusy(f"run {old.id} is still active in {run_dir} (status {old.status.value})",
                          hint=f"tunedeck stop {old.id}")

        patch, resume_from = _apply_start_policy(run_dir, values, overwrite=opts.overwrite, say=say)

        continuing, run_id, name, attempt_no = _identity(old, resume_from, opts.name, run_dir)
        if continuing:
            keep_attempt_copy(run_dir, attempt_no - 1)

        frozen_path, secrets = freeze_config(doc, run_dir, patch)
        plan, plan_kwargs = _plan_launch(values, patch, frozen_path, cwd_p, opts, slurm, say)

        attempt = Attempt(
            number=attempt_no,
            started_at=time.time(),
            resume_from=resume_from,
            argv=plan.argv,
            overrides=redact_values(dict(doc.overrides)),
        )
        env_diff = redact_env({**plan.env, **{k.upper(): "***" for k in secrets}})
        m = _attempt_manifest(old if continuing else None, run_id, name, run_dir, config_path,
                              plan, attempt, env_diff)
        m.host = _host()
        m.gpus = plan.gpus
        m.num_processes = plan.world_size
        m.begin_attempt()
        m.max_restarts = max(0, opts.max_restarts)
        m.auto_triage = opts.auto_triage
        m.cwd = str(cwd_p)
        m.launch_options = {**plan_kwargs, "cpu": plan.cpu}
        m.backend = "local" if slurm is None else "slurm"
        m.write(run_dir)
        _register(run_id, name, run_dir, old, say)
        pid, job = start_attempt(run_dir, lock, m, plan, secrets, cwd_p, slurm=slurm, warn=say)
    finally:
        lock.release()
    return LaunchResult(
        run_id=run_id, name=name, run_dir=run_dir, plan=plan, resume_from=resume_from,
        attempt=attempt_no, supervisor_pid=pid, warnings=warnings,
        backend="local" if slurm is None else "slurm", job_id=job,
    )
