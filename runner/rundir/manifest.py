"""``tunedeck_run.json``: the run manifest, written only by the supervisor (atomically).

Readers must tolerate a missing or unparsable manifest (plain transformers and
LLaMA-Factory runs have none) and must never trust one that is group/world
writable or owned by another user when it comes to sending signals.
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from tunedeck.runner.fsutil import atomic_write_text
from tunedeck.runner.rundir.protocol import MANIFEST, RunStatus


class ProcRef(BaseModel):
    """A process we may signal: pid plus its start time (psutil ``create_time``)."""

    pid: int
    create_time: float
    pgid: int | None = None
    role: str | None = None  # "launcher" (accelerate launch), "worker" (python -m tunedeck.runner.train)


class Attempt(BaseModel):
    """One launch or resume of the run."""

    number: int
    started_at: float
    ended_at: float | None = None
    resume_from: str | None = None
    argv: list[str] = Field(default_factory=list)
    overrides: dict[str, Any] = Field(default_factory=dict)
    exit_code: int | None = None
    end_reason: str | None = None  # a RunStatus value once ended
    message: str | None = None
    trainer: ProcRef | None = None


class SlurmRequeue(BaseModel):
    """One requeue of a Slurm job (pre-emption, time limit, node failure, ``scontrol requeue``)."""

    at: float
    restart_count: int                # SLURM_RESTART_COUNT the job saw when it started again
    node_list: str | None = None
    resume_from: str | None = None


class SlurmRecord(BaseModel):
    """What a Slurm run's manifest records about its job (backend ``slurm``)."""

    job_id: str
    partition: str | None = None
    nodes: int = 1
    node_list: str | None = None      # SLURM_JOB_NODELIST of the current start
    batch_host: str | None = None
    script: str | None = None         # slurm_job.sh in the run directory
    submitted_at: float | None = None
    requeues: list[SlurmRequeue] = Field(default_factory=list)
    options: dict[str, Any] = Field(default_factory=dict)  # the sbatch choices, for resume
    runner_pid: int | None = None     # the job runner (on batch_host)
    final_state: str | None = None    # Slurm's word once the job ended (COMPLETED, TIMEOUT...)
    previous_jobs: list[dict[str, Any]] = Field(default_factory=list)  # earlier jobs of this run (resume)


class RunManifest(BaseModel):
    schema_version: int = 1
    id: str
    name: str
    output_dir: str
    config_path: str                  # the user's config as launched (frozen copy is config.yaml)
    argv: list[str] = Field(default_factory=list)       # exact accelerate launch argv
    env_diff: dict[str, str] = Field(default_factory=dict)  # secrets redacted
    host: str = ""
    gpus: list[int] = Field(default_factory=list)       # physical indices; [] = CPU
    num_processes: int = 1
    status: RunStatus = RunStatus.STARTING
    exit_code: int | None = None
    message: str | None = None        # last exception line, or why it stopped
    supervisor: ProcRef | None = None
    trainer: ProcRef | None = None
    attempts: list[Attempt] = Field(default_factory=list)
    max_restarts: int = 0
    auto_triage: bool = False
    created_at: float = Field(default_factory=time.time)
    updated_at: float = Field(default_factory=time.time)
    finished_at: float | None = None
    # -- added by run control (all optional, so older manifests still parse) --
    cwd: str = ""                     # the trainer's working directory (relative paths in the config)
    launch_options: dict[str, Any] = Field(default_factory=dict)  # gpus/processes/nodes, to rebuild argv
    procs: list[ProcRef] = Field(default_factory=list)  # every process of the trainer tree seen
    restarts: int = 0                 # automatic restarts done by the supervisor
    stop_requested_at: float | None = None
    stop_requested_by: str | None = None
    checkpoint: str | None = None     # newest complete checkpoint when the run ended
    survivors: list[ProcRef] = Field(default_factory=list)  # processes left after a stop (should be [])
    # -- after training: what the supervised process is (runner.control.service) --
    job: str = "train"                # "train" | "serve" | "predict"
    details: dict[str, Any] = Field(default_factory=dict)  # e.g. a server's url, a predict's source run
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
    except (ValidationError, ValueError):
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
