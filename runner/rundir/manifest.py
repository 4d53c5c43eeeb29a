"""``tunedeck_run.json``: the run manifest, written only by the supervisor (atomically).

Readers must tolerate a missing or unparsable manifest (plain transformers and
LLaMA-Factory runs have none) and must never trust one that is group/world
writable or owned by another user when it comes to sending signals.
"""

from __future__ import annotations

import json
import os
import stat
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin, get_type_hints

from tunedeck.runner.fsutil import atomic_write_text
from tunedeck.runner.rundir.protocol import MANIFEST, RunStatus


# The models below are dataclasses checked by hand instead of pydantic models: the
# launcher and the supervisor, which live beside every run, import this module, and
# pydantic alone cost each of them ~19 MiB of resident memory and ~0.3 s of start-up.
# The checks keep pydantic's contract for a file: a field of the wrong type makes the
# whole manifest unreadable (read_manifest -> None), unknown keys are ignored.
class ManifestInvalid(ValueError):
    """A manifest field does not have its declared type."""


def _check(tp: Any, v: Any, where: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return v
    if origin in (Union, UnionType):
        args = get_args(tp)
        if v is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            return _check(arg, v, where)  # our unions are all "X | None"
    if v is None:
        raise ManifestInvalid(f"{where}: null")
    if origin is list:
        if not isinstance(v, list):
            raise ManifestInvalid(f"{where}: not a list")
        (item,) = get_args(tp)
        return [_check(item, x, f"{where}[{i}]") for i, x in enumerate(v)]
    if origin is dict:
        if not isinstance(v, dict) or not all(isinstance(k, str) for k in v):
            raise ManifestInvalid(f"{where}: not a mapping")
        _, item = get_args(tp)
        return {k: _check(item, x, f"{where}.{k}") for k, x in v.items()}
    if tp is bool:
        if isinstance(v, bool):
            return v
    elif tp is int:
        if isinstance(v, int) and not isinstance(v, bool):
            return v
        if isinstance(v, float) and v.is_integer():
            return int(v)
    elif tp is float:
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
    elif tp is str:
        if isinstance(v, str):
            return v
    elif isinstance(tp, type) and issubclass(tp, RunStatus):
        try:
            return RunStatus(v)
        except ValueError:
            pass
    elif isinstance(tp, type) and issubclass(tp, _Model):
        if isinstance(v, tp):
            return v
        if isinstance(v, dict):
            return tp.model_validate(v)
    raise ManifestInvalid(f"{where}: {type(v).__name__} is not {getattr(tp, '__name__', tp)}")


def _plain(v: Any) -> Any:
    if isinstance(v, _Model):
        return v.model_dump()
    if isinstance(v, RunStatus):
        return v.value
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


class _Model:
    """What the callers used of pydantic: validated construction, model_validate(_json),
    model_dump(_json)."""

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        for f in fields(self):  # type: ignore[arg-type]
            object.__setattr__(self, f.name, _check(hints[f.name], getattr(self, f.name), f.name))

    @classmethod
    def model_validate(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ManifestInvalid(f"{cls.__name__}: not a mapping")
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        try:
            return cls(**{k: v for k, v in data.items() if k in names})
        except TypeError as exc:  # a required field is missing
            raise ManifestInvalid(f"{cls.__name__}: {exc}") from None

    @classmethod
    def model_validate_json(cls, raw: bytes | str) -> Any:
        return cls.model_validate(json.loads(raw))

    def model_dump(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}  # type: ignore[arg-type]

    def model_dump_json(self, indent: int | None = None) -> str:
        return json.dumps(self.model_dump(), indent=indent, ensure_ascii=False)


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    h = _HINTS.get(cls)
    if h is None:
        h = _HINTS[cls] = get_type_hints(cls)
    return h


@dataclass(kw_only=True)
class ProcRef(_Model):
    """A process we may signal: pid plus its start time (psutil ``create_time``)."""

    pid: int
    create_time: float
    pgid: int | None = None
    role: str | None = None  # "launcher" (accelerate launch), "worker" (python -m tunedeck.runner.train)


@dataclass(kw_only=True)
class Attempt(_Model):
    """One launch or resume of the run."""

    number: int
    started_at: float
    ended_at: float | None = None
    resume_from: str | None = None
    argv: list[str] = field(default_factory=list)
    overrides: dict[str, Any] = field(default_factory=dict)
    exit_code: int | None = None
    end_reason: str | None = None  # a RunStatus value once ended
    message: str | None = None
    trainer: ProcRef | None = None


@dataclass(kw_only=True)
class SlurmRequeue(_Model):
    """One requeue of a Slurm job (pre-emption, time limit, node failure, ``scontrol requeue``)."""

    at: float
    restart_count: int                # SLURM_RESTART_COUNT the job saw when it started again
    node_list: str | None = None
    resume_from: str | None = None


@dataclass(kw_only=True)
class SlurmRecord(_Model):
    """What a Slurm run's manifest records about its job (backend ``slurm``)."""

    job_id: str
    partition: str | None = None
    nodes: int = 1
    node_list: str | None = None      # SLURM_JOB_NODELIST of the current start
    batch_host: str | None = None
    script: str | None = None         # slurm_job.sh in the run directory
    submitted_at: float | None = None
    requeues: list[SlurmRequeue] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)  # the sbatch choices, for resume
    runner_pid: int | None = None     # the job runner (on batch_host)
    final_state: str | None = None    # Slurm's word once the job ended (COMPLETED, TIMEOUT...)
    previous_jobs: list[dict[str, Any]] = field(default_factory=list)  # earlier jobs of this run (resume)


@dataclass(kw_only=True)
class RunManifest(_Model):
    schema_version: int = 1
    id: str
    name: str
    output_dir: str
    config_path: str                  # the user's config as launched (frozen copy is config.yaml)
    argv: list[str] = field(default_factory=list)       # exact accelerate launch argv
    env_diff: dict[str, str] = field(default_factory=dict)  # secrets redacted
    host: str = ""
    gpus: list[int] = field(default_factory=list)       # physical indices; [] = CPU
    num_processes: int = 1
    status: RunStatus = RunStatus.STARTING
    exit_code: int | None = None
    message: str | None = None        # last exception line, or why it stopped
    supervisor: ProcRef | None = None
    trainer: ProcRef | None = None
    attempts: list[Attempt] = field(default_factory=list)
    max_restarts: int = 0
    auto_triage: bool = False
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    # -- added by run control (all optional, so older manifests still parse) --
    cwd: str = ""                     # the trainer's working directory (relative paths in the config)
    launch_options: dict[str, Any] = field(default_factory=dict)  # gpus/processes/nodes, to rebuild argv
    procs: list[ProcRef] = field(default_factory=list)  # every process of the trainer tree seen
    restarts: int = 0                 # automatic restarts done by the supervisor
    stop_requested_at: float | None = None
    stop_requested_by: str | None = None
    checkpoint: str | None = None     # newest complete checkpoint when the run ended
    survivors: list[ProcRef] = field(default_factory=list)  # processes left after a stop (should be [])
    # -- after training: what the supervised process is (runner.control.service) --
    job: str = "train"                # "train" | "serve" | "predict"
    details: dict[str, Any] = field(default_factory=dict)  # e.g. a server's url, a predict's source run
    backend: str = "local"            # where it runs: "local" (supervisor) or "slurm" (batch job)
    slurm: SlurmRecord | None = None

    def begin_attempt(self) -> None:
        """Clear what belonged to the previous attempt (end status, pids, stop request)."""
        self.status = RunStatus.STARTING
        self.exit_code = None
        self.message = None
        self.supervisor = None
        self.trainer = None
        self.procs = []
        self.survivors = []
        self.finished_at = None
        self.stop_requested_at = None
        self.stop_requested_by = None
        self.checkpoint = None
        self.restarts = 0

    def write(self, run_dir: str | Path) -> None:
        self.updated_at = time.time()
        atomic_write_text(Path(run_dir) / MANIFEST, self.model_dump_json(indent=2) + "\n")


def read_manifest(run_dir: str | Path) -> RunManifest | None:
    """The manifest of ``run_dir``, or ``None`` if missing, truncated or not ours."""
    p = Path(run_dir) / MANIFEST
    try:
        raw = p.read_bytes()
    except OSError:
        return None
    if not raw.strip():
        return None
    try:
        return RunManifest.model_validate_json(raw)
    except (ValueError, RecursionError):  # ManifestInvalid, bad JSON, [[[[... 100k deep
        return None


def manifest_trusted(run_dir: str | Path) -> bool:
    """May we send signals to the pids this manifest names?

    Not if the file is writable by group/others or owned by someone else: anyone
    who can write it could point our ``stop`` at an arbitrary process.
    """
    p = Path(run_dir) / MANIFEST
    try:
        st = p.stat()
    except OSError:
        return False
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return False
    return st.st_uid == os.getuid()
