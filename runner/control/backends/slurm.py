"""The ``slurm`` backend: a run is a batch job submitted with ``sbatch``.

Launch writes ``slurm_job.sh`` into the run directory (which every node must see at
the same path) and submits it. The script is an ordinary sbatch script a user can
read and resubmit by hand:

- ``#SBATCH`` lines for the allocation (one task per node), ``--output`` = the run's
  ``stdout.log`` with ``--open-mode=append`` (a requeue must not overwrite it),
  ``--requeue`` and ``--signal=B:USR1@S`` (the trainer checkpoints before the limit);
- the environment the local backend sets, the rendezvous address (first host of the
  allocation, ``scontrol show hostnames``) and a port derived from the job id;
- ``exec`` of the job runner (:mod:`tunedeck.runner.control.slurm_job`), which records
  the attempt in the manifest, resumes from the newest complete checkpoint after a
  requeue, runs ``srun`` (the trainer itself for one process, ``accelerate launch``
  with the machine rank from ``SLURM_PROCID`` otherwise), passes USR1/TERM on and
  records how the attempt ended.

Readers combine the scheduler (``scontrol -o show job``; ``sacct`` only when accounting
exists: without slurmdbd it exits 1 and nothing breaks) with the manifest. Every Slurm
command is an argv list; a missing one is a clear error naming it.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunedeck.runner.errors import ConfigError, LaunchError, TunedeckError
from tunedeck.runner.rundir.protocol import ACTIVE_STATUSES, STDOUT_LOG, STOP_REQUEST, RunStatus
from tunedeck.runner.rundir.slurm import (
    PENDING_STATES,
    RUNNING_STATES,
    SlurmReader,
    query,
    require,
    run_cmd,
    state_of,
    view,
)

if TYPE_CHECKING:
    from tunedeck.runner.rundir.manifest import RunManifest

SCRIPT = "slurm_job.sh"
DEFAULT_SIGNAL_SECONDS = 300
DEFAULT_MAX_RESTARTS = 3           # requeues the job may resume from (pre-emption, time limit)
MAIN_ADDR_ENV = "TUNEDECK_MAIN_ADDR"
MAIN_PORT_ENV = "TUNEDECK_MAIN_PORT"
PORT_BASE, PORT_SPAN = 20000, 20000
_SHARED_FS = ("nfs", "nfs4", "lustre", "gpfs", "beegfs", "cephfs", "ceph", "glusterfs", "fuse.glusterfs",
              "cifs", "smb3", "panfs", "wekafs", "fuse.sshfs", "9p", "virtiofs", "afs", "pvfs2", "orangefs",
              "fuse.juicefs", "fuse.weka", "xtreemfs", "quobyte")


# ----------------------------------------------------------------------------
# Options
# ----------------------------------------------------------------------------
@dataclass(frozen=True)
class SlurmOptions:
    """The allocation and sbatch choices of one Slurm run (``launch --slurm``)."""

    nodes: int = 1
    tasks_per_node: int = 1            # launchers per node (1; more only to try multi-node on one box)
    gpus_per_node: int | None = None
    cpus_per_task: int | None = None
    partition: str | None = None
    time: str | None = None
    account: str | None = None
    qos: str | None = None
    sbatch_args: tuple[str, ...] = ()
    extra_lines: tuple[str, ...] = ()  # from settings.json's slurm block
    signal_seconds: int = DEFAULT_SIGNAL_SECONDS

    def validate(self) -> None:
        cl = "command line"
        if self.nodes < 1:
            raise ConfigError("--nodes must be at least 1", file=cl)
        if self.tasks_per_node < 1:
            raise ConfigError("--tasks-per-node must be at least 1", file=cl)
        if self.gpus_per_node is not None and self.gpus_per_node < 0:
            raise ConfigError("--gpus-per-node must be 0 or more", file=cl)
        if self.gpus_per_node and self.tasks_per_node > 1:
            raise ConfigError("--tasks-per-node above 1 is for CPU trials; with GPUs one launcher per "
                              "node drives all of them", file=cl, hint="drop --tasks-per-node")
        if self.cpus_per_task is not None and self.cpus_per_task < 1:
            raise ConfigError("--cpus-per-task must be at least 1", file=cl)
        if self.signal_seconds < 0:
            raise ConfigError("--signal-seconds must be 0 or more", file=cl)
        for name, value in (("partition", self.partition), ("account", self.account),
                            ("qos", self.qos), ("time", self.time)):
            if value is not None and (not value.strip() or any(c.isspace() for c in value)):
                raise ConfigError(f"--{name} {value!r}: expected one word", file=cl)
        for line in (*self.sbatch_args, *self.extra_lines):
            if "\n" in line or "\r" in line:
                raise ConfigError(f"sbatch argument {line!r} holds a line break", file=cl)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["sbatch_args"] = list(self.sbatch_args)
        d["extra_lines"] = list(self.extra_lines)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SlurmOptions:
        known = {f for f in cls.__dataclass_fields__}
        kw = {k: v for k, v in d.items() if k in known}
        for k in ("sbatch_args", "extra_lines"):
            if k in kw:
                kw[k] = tuple(str(x) for x in (kw[k] or ()))
        return cls(**kw)


def settings_block() -> dict[str, Any]:
    """The ``slurm:`` block of tunedeck's settings.json (``$TUNEDECK_HOME`` or ~/.config/tunedeck)."""
    from tunedeck.runner.fsutil import read_json

    home = os.environ.get("TUNEDECK_HOME")
    if home:
        base = Path(home).expanduser()
    else:
        xdg = os.environ.get("XDG_CONFIG_HOME")
        base = (Path(xdg).expanduser() if xdg else Path.home() / ".config") / "tunedeck"
    data = read_json(base / "settings.json")
    block = data.get("slurm") if isinstance(data, dict) else None
    return block if isinstance(block, dict) else {}


def options_with_settings(cli: Mapping[str, Any]) -> SlurmOptions:
    """Per-launch choices over the settings' ``slurm:`` block (partition, account, qos, time,
    signal_seconds, extra_lines). ``None`` in ``cli`` means "not given"."""
    s = settings_block()
    kw: dict[str, Any] = {}
    for key in ("partition", "account", "qos", "time"):
        v = cli.get(key)
        if v is None and isinstance(s.get(key), str):
            v = s[key]
        kw[key] = v
    sig = cli.get("signal_seconds")
    if sig is None and isinstance(s.get("signal_seconds"), int):
        sig = s["signal_seconds"]
    kw["signal_seconds"] = DEFAULT_SIGNAL_SECONDS if sig is None else int(sig)
    extra = s.get("extra_lines") or s.get("sbatch_lines") or []
    kw["extra_lines"] = tuple(str(x) for x in extra) if isinstance(extra, list) else ()
    kw["sbatch_args"] = tuple(cli.get("sbatch_args") or ())
    for key in ("nodes", "tasks_per_node"):
        if cli.get(key) is not None:
            kw[key] = int(cli[key])
    for key in ("gpus_per_node", "cpus_per_task"):
        kw[key] = cli.get(key)
    opts = SlurmOptions(**kw)
    opts.validate()
    return opts


# ----------------------------------------------------------------------------
# Commands
# ----------------------------------------------------------------------------
def job_port(job_id: str | int) -> int:
    """The rendezvous port of a job: derived from its id, the same on every node."""
    return PORT_BASE + int(job_id) % PORT_SPAN


# ----------------------------------------------------------------------------
# The script
# ----------------------------------------------------------------------------
def task_argv(plan: Any, config_path: Path, python: str) -> list[str]:
    """What ``srun`` runs on every node. ``$SLURM_PROCID``-style tokens are expanded per task
    by the task wrapper (no shell in between)."""
    if plan.world_size == 1:
        # One process: the trainer itself, so USR1/TERM from srun reach its handler directly.
        return [python, "-m", "tunedeck.runner.train", str(config_path)]
    argv = list(plan.argv)
    argv[0] = python
    out: list[str] = []
    skip = False
    for i, a in enumerate(argv):
        if skip:
            skip = False
            continue
        if a in ("--machine_rank", "--main_process_ip", "--main_process_port") and i + 1 < len(argv):
            skip = True
            continue
        out.append(a)
    # The rendezvous flags go right before "-m tunedeck.runner.train".
    at = out.index("-m", 3) if "-m" in out[3:] else len(out)
    for i in range(3, len(out)):
        if out[i] == "-m" and i + 1 < len(out) and out[i + 1] == "tunedeck.runner.train":
            at = i
            break
    rdzv = ["--machine_rank", "$SLURM_PROCID", "--main_process_ip", f"${MAIN_ADDR_ENV}",
            "--main_process_port", f"${MAIN_PORT_ENV}"]
    out[at:at] = rdzv
    return [python, "-m", "tunedeck.runner.control.slurm_job", "--task", "--", *out]


def render_script(*, run_dir: Path, run_id: str, name: str, plan: Any, opts: SlurmOptions,
                  cwd: Path, env: Mapping[str, str], python: str | None = None) -> str:
    """The whole ``slurm_job.sh``. ``env`` is what the run adds to the environment (no secrets:
    those travel in sbatch's environment, never in a file)."""
    py = python or sys.executable
    q = shlex.quote
    tasks = opts.nodes * opts.tasks_per_node
    lines = [
        "#!/bin/bash",
        f"# tunedeck run {run_id} ({name}): written by `tunedeck launch --slurm`.",
        "# Resubmitting it by hand (sbatch slurm_job.sh) continues the same run.",
        f"#SBATCH --job-name={q('tunedeck-' + name)}",
        f"#SBATCH --nodes={opts.nodes}",
        f"#SBATCH --ntasks-per-node={opts.tasks_per_node}",
    ]
    if opts.cpus_per_task:
        lines.append(f"#SBATCH --cpus-per-task={opts.cpus_per_task}")
    if opts.gpus_per_node:
        lines.append(f"#SBATCH --gpus-per-node={opts.gpus_per_node}")
    for key in ("partition", "time", "account", "qos"):
        v = getattr(opts, key)
        if v:
            lines.append(f"#SBATCH --{key}={v}")
    lines += [
        f"#SBATCH --output={run_dir / STDOUT_LOG}",
        "#SBATCH --open-mode=append",
        "#SBATCH --requeue",
        f"#SBATCH --chdir={cwd}",
    ]
    if opts.signal_seconds:
        lines.append(f"#SBATCH --signal=B:USR1@{opts.signal_seconds}")
    for extra in opts.extra_lines:
        extra = extra.strip()
        if extra:
            lines.append(extra if extra.startswith("#SBATCH") else f"#SBATCH {extra}")
    for arg in opts.sbatch_args:
        lines.append(f"#SBATCH {arg}")
    lines += ["", "set -eu"]
    from tunedeck.runner.control.secrets import is_secret_key

    for k, v in sorted(env.items()):
        if is_secret_key(k) or is_secret_key(k.lower()):
            lines.append(f"# {k}: a secret, passed in sbatch's environment (never written here)")
            continue
        lines.append(f"export {k}={q(v)}")
    lines += [
        "# Rendezvous: the first host of the allocation, a port derived from the job id.",
        f'export {MAIN_ADDR_ENV}="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"',
        f"export {MAIN_PORT_ENV}=$(( {PORT_BASE} + SLURM_JOB_ID % {PORT_SPAN} ))",
        "# The job runner records the attempt in tunedeck_run.json, resumes from the newest",
        "# complete checkpoint after a requeue (SLURM_RESTART_COUNT), runs srun, passes",
        "# USR1/TERM on to it and records how the attempt ended. exec: signals reach it.",
    ]
    srun = ["srun", f"--nodes={opts.nodes}", f"--ntasks={tasks}", f"--ntasks-per-node={opts.tasks_per_node}",
            "--kill-on-bad-exit=1"]
    cmd = [py, "-m", "tunedeck.runner.control.slurm_job", str(run_dir), "--", *srun,
           *task_argv(plan, run_dir / "config.yaml", py)]
    lines.append("exec " + " \\\n    ".join(_join_groups(cmd)))
    return "\n".join(lines) + "\n"


def _join_groups(argv: list[str]) -> list[str]:
    """Shell-quoted argv in readable lines: a break before srun and before the trainer command."""
    groups: list[list[str]] = [[]]
    in_srun = False
    for a in argv:
        if a == "srun" and groups[-1]:
            groups.append([])
            in_srun = True
        elif in_srun and not a.startswith("-"):
            groups.append([])  # the command srun runs on every node
            in_srun = False
        groups[-1].append(a)
    return [" ".join(shlex.quote(a) for a in g) for g in groups]


def shared_fs_warning(run_dir: Path) -> str | None:
    """A warning when the run directory is not obviously on a filesystem all nodes share."""
    best = ("", "")
    try:
        with open("/proc/mounts", encoding="utf-8") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) < 3:
                    continue
                mnt = parts[1].replace("\\040", " ")
                if (str(run_dir) == mnt or str(run_dir).startswith(mnt.rstrip("/") + "/")) \
                        and len(mnt) >= len(best[0]):
                    best = (mnt, parts[2])
    except OSError:
        return None
    fstype = best[1]
    if not fstype or fstype in _SHARED_FS:
        return None
    return (f"{run_dir} is on a {fstype} filesystem ({best[0]}), which does not look shared: every node "
            "of the job must see the run directory at the same path (set output_dir on the cluster's "
            "shared filesystem)")


# ----------------------------------------------------------------------------
# Submitting
# ----------------------------------------------------------------------------
def prepare_plan_for_slurm(plan: Any) -> None:
    """Per-node values (machine rank, main address) come from the job, not the file."""
    for key in ("machine_rank", "main_process_ip", "main_process_port"):
        plan.accelerate_config.pop(key, None)


def launch_kwargs(opts: SlurmOptions, num_processes: int | None, cpu: bool | None) -> dict[str, Any]:
    """build_launch_plan arguments for a Slurm allocation (one launcher per task)."""
    per = num_processes if num_processes is not None else (opts.gpus_per_node or 1)
    machines = opts.nodes * opts.tasks_per_node
    return {
        "num_processes": per,
        "num_machines": machines,
        "machine_rank": 0,
        "main_process_ip": f"${MAIN_ADDR_ENV}" if machines > 1 else None,
        "main_process_port": None,
        "cpu": cpu if cpu is not None else (None if opts.gpus_per_node else None),
        "gpu_count": opts.gpus_per_node or 0,
    }


def write_script(run_dir: Path, text: str) -> Path:
    from tunedeck.runner.fsutil import atomic_write_text

    path = run_dir / SCRIPT
    atomic_write_text(path, text)
    with contextlib.suppress(OSError):
        os.chmod(path, 0o755)
    return path


def sbatch(script: Path, env: Mapping[str, str], cwd: Path) -> str:
    """Submit; the job id. LaunchError with Slurm's own message when sbatch refuses."""
    r = run_cmd(["sbatch", "--parsable", str(script)], env=env, timeout=120)
    if r.returncode != 0:
        msg = (r.stderr or r.stdout).strip() or f"sbatch exited with code {r.returncode}"
        raise LaunchError(f"sbatch refused the job: {msg}", hint=f"the script is {script}")
    job = r.stdout.strip().splitlines()[-1].split(";")[0].strip() if r.stdout.strip() else ""
    if not job.isdigit():
        raise LaunchError(f"sbatch did not print a job id (said {r.stdout.strip()!r})")
    return job


def submit_run(run_dir: Path, m: Any, plan: Any, opts: SlurmOptions, env: Mapping[str, str],
               secrets_env: Mapping[str, str], cwd: Path, warn: Any = None) -> str:
    """Write slurm_job.sh and submit it; record the job in the manifest ``m`` (written).

    When sbatch refuses, the manifest says failed with Slurm's message (never "starting").
    """
    from tunedeck.runner.rundir.manifest import SlurmRecord

    say = warn or (lambda _t: None)
    require("sbatch")
    prepare_plan_for_slurm(plan)
    text = render_script(run_dir=run_dir, run_id=m.id, name=m.name, plan=plan, opts=opts, cwd=cwd,
                         env=env)
    script = write_script(run_dir, text)
    w = shared_fs_warning(run_dir)
    if w:
        say(f"warning: {w}")
    sub_env = dict(os.environ)
    sub_env.update(env)
    sub_env.update(secrets_env)
    try:
        job = sbatch(script, sub_env, cwd)
    except TunedeckError as exc:
        m.status = RunStatus.FAILED
        m.message = exc.message
        m.finished_at = time.time()
        if m.attempts:
            m.attempts[-1].ended_at = time.time()
            m.attempts[-1].end_reason = RunStatus.FAILED.value
            m.attempts[-1].message = exc.message
        m.write(run_dir)
        raise
    old = m.slurm
    m.backend = "slurm"
    # A new job counts its restarts from 0: its requeues are its own; earlier jobs are kept.
    previous = list(old.previous_jobs) if old is not None else []
    if old is not None:
        previous.append({"job_id": old.job_id, "final_state": old.final_state,
                         "requeues": [r.model_dump() for r in old.requeues]})
    m.slurm = SlurmRecord(job_id=job, partition=opts.partition, nodes=opts.nodes, script=str(script),
                          submitted_at=time.time(), options=opts.to_dict(), previous_jobs=previous)
    if m.slurm.partition is None:
        js = query(job)
        if js is not None:
            m.slurm.partition = js.get("Partition")
    m.write(run_dir)
    return job


# ----------------------------------------------------------------------------
# The scheduler's view
# ----------------------------------------------------------------------------
class SlurmBackend(SlurmReader):
    def stop(self, run_dir: Path, *, timeout: float, wait: bool) -> Any:
        return stop_job(run_dir, timeout=timeout, wait=wait)


# ----------------------------------------------------------------------------
# Stop
# ----------------------------------------------------------------------------
RUNNER_UP_TIMEOUT = 60.0
CANCEL_WAIT = 120.0


def stop_job(run_dir: Path, *, timeout: float, wait: bool, poll: float = 0.5) -> Any:
    """``tunedeck stop`` for a Slurm run: USR1 to the batch step (the job runner passes it to
    the trainer, which saves a complete checkpoint and exits), wait for the job to end,
    ``scancel`` after ``timeout``. Reports like the local stop."""
    from tunedeck.runner.control import procs as P
    from tunedeck.runner.control.launch import RUN_ID_ENV
    from tunedeck.runner.control.stop import StopResult, _checkpoint_complete, request_stop
    from tunedeck.runner.rundir.manifest import read_manifest
    from tunedeck.runner.rundir.runs import raw_manifest

    m = read_manifest(run_dir)
    raw = raw_manifest(run_dir)
    if m is None or raw is None or m.slurm is None:
        raise TunedeckError(f"{run_dir} has no Slurm job recorded in its manifest")
    job = m.slurm.job_id
    status, info = view(raw)
    state = str(info.get("slurm_state") or "").upper()
    if status not in ACTIVE_STATUSES and state not in RUNNING_STATES | PENDING_STATES:
        return StopResult(
            stopped_cleanly=status is RunStatus.STOPPED and _checkpoint_complete(m.checkpoint, run_dir),
            status=status, checkpoint=m.checkpoint,
            message=f"run {m.id} is not running (status {status.value}, Slurm job {job} {state.lower()})",
            waited=False)
    request_stop(run_dir, timeout=timeout, by="tunedeck stop (Slurm)")
    pending = state in PENDING_STATES
    how = _signal_job(run_dir, job, pending, poll)
    if not wait:
        return StopResult(False, RunStatus.STOPPING, None,
                          message=f"stop requested for run {m.id} (Slurm job {job}: {how})", waited=False)
    cancelled = False
    if not _wait_job_end(job, timeout, poll):
        cancelled = True
        run_cmd(["scancel", job])
        _wait_job_end(job, CANCEL_WAIT, poll)
    m2, final = _record_end(run_dir, m, job, how, cancelled, timeout, poll)
    # On this machine (a one-node cluster, or the batch host itself) nothing of the run may be left.
    left = [p.pid for p in P.find_by_env(RUN_ID_ENV, m.id, exclude=[os.getpid()])]
    st = RunStatus.STOPPED if m2.status in (RunStatus.STOPPED, RunStatus.PREEMPTED) else m2.status
    ck = m2.checkpoint
    # A job cancelled in the queue ran nothing since its last checkpoint (if any): nothing lost.
    clean = st is RunStatus.STOPPED and not cancelled and not left and (
        pending or _checkpoint_complete(ck, run_dir))
    msg = f"run {m.id} {st.value}: Slurm job {job} {how}, ended {final.lower()}"
    if m2.message and how not in m2.message:
        msg += f"; {m2.message}"
    return StopResult(clean, st, ck, left, [], msg)


def _signal_job(run_dir: Path, job: str, pending: bool, poll: float) -> str:
    """Cancel a pending job, or send USR1 to a running job's batch step once the runner is up
    (a signal to the bare batch shell would end the job without a checkpoint). Says how."""
    from tunedeck.runner.rundir.manifest import read_manifest

    if pending:
        r = run_cmd(["scancel", job])
        if r.returncode != 0:
            raise TunedeckError(f"scancel {job} failed: {(r.stderr or r.stdout).strip()}")
        return "cancelled while pending (nothing to save)"
    deadline = time.monotonic() + RUNNER_UP_TIMEOUT
    while time.monotonic() < deadline:
        cur = read_manifest(run_dir)
        if cur is not None and cur.slurm is not None and cur.slurm.runner_pid and \
                cur.status in (RunStatus.RUNNING, RunStatus.STOPPING):
            break
        if state_of(job) not in RUNNING_STATES:
            break
        time.sleep(poll)
    r = run_cmd(["scancel", "--signal=USR1", "--batch", job])
    if r.returncode != 0 and state_of(job) in RUNNING_STATES:
        raise TunedeckError(f"scancel --signal=USR1 --batch {job} failed: {(r.stderr or r.stdout).strip()}")
    return "USR1 to the batch step"


def _record_end(run_dir: Path, m: RunManifest, job: str, how: str, cancelled: bool, timeout: float,
                poll: float) -> tuple[RunManifest, str]:
    """The ended job in the manifest (the runner's record, or ours when it wrote none) and the
    stop request removed: (the manifest, the job's final Slurm state)."""
    from tunedeck.runner.rundir.manifest import read_manifest

    # The runner records the end as it leaves; give the shared filesystem a moment.
    end_by = time.monotonic() + 30.0
    while time.monotonic() < end_by:
        cur = read_manifest(run_dir)
        if cur is not None and not cur.status.active:
            break
        time.sleep(poll)
    m2 = read_manifest(run_dir) or m
    final = state_of(job)
    if m2.status.active:
        # The runner never recorded an end (cancelled before it started, or killed): we do.
        m2.status = RunStatus.STOPPED
        m2.message = f"Slurm job {job} {how}; it ended {final.lower()}"
        m2.finished_at = time.time()
        if m2.attempts and m2.attempts[-1].ended_at is None:
            m2.attempts[-1].ended_at = time.time()
            m2.attempts[-1].end_reason = RunStatus.STOPPED.value
    if m2.slurm is not None:
        m2.slurm.final_state = final
    if cancelled:
        m2.message = (m2.message or "") + f" [did not end within {timeout:.0f}s of USR1: scancel]"
    m2.write(run_dir)
    with contextlib.suppress(FileNotFoundError):
        (run_dir / STOP_REQUEST).unlink()
    return m2, final


def _wait_job_end(job: str, timeout: float, poll: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if state_of(job) not in RUNNING_STATES | PENDING_STATES:
            return True
        time.sleep(poll)
    return False



# ----------------------------------------------------------------------------
# --print-script
# ----------------------------------------------------------------------------
def script_preview(config_path: str | Path, overrides: Any, opts: Any, sopts: SlurmOptions,
                   *, cwd: Path | None = None, warn: Any = None, doc: Any = None) -> str:
    """The ``slurm_job.sh`` a ``launch --slurm`` would write; nothing is written or submitted."""
    from tunedeck.runner.config.yamlio import ConfigDoc
    from tunedeck.runner.control.launch import (
        RUN_ID_ENV,
        _validate,
        build_launch_plan,
        resolve_output_dir,
    )
    from tunedeck.runner.rundir.protocol import FROZEN_CONFIG

    say = warn or (lambda _t: None)
    cwd_p = cwd or Path.cwd()
    if doc is None:
        doc = ConfigDoc.load(config_path, overrides)
    for w in _validate(doc):
        say(w)
    values = doc.values()
    run_dir = resolve_output_dir(values, cwd_p, doc.source)
    plan = build_launch_plan(values, config_path=run_dir / FROZEN_CONFIG, cwd=cwd_p,
                             **launch_kwargs(sopts, opts.num_processes, opts.cpu))
    prepare_plan_for_slurm(plan)
    fs_warning = shared_fs_warning(run_dir)
    if fs_warning:
        say(f"warning: {fs_warning}")
    name = opts.name or run_dir.name
    return render_script(run_dir=run_dir, run_id="RUN_ID", name=name, plan=plan, opts=sopts, cwd=cwd_p,
                         env={**plan.env, RUN_ID_ENV: "RUN_ID"})
