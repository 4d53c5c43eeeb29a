"""The run-directory protocol (docs/protocol.md): file names, statuses, exit codes.

This module is imported by the trainer (inside ``accelerate launch``), by the
supervisor, by the CLI and by the TUI; it must stay dependency-free.
"""

from __future__ import annotations

import enum

# -- files inside a run's output_dir ------------------------------------------
MANIFEST = "tunedeck_run.json"      # supervisor: the run manifest
FROZEN_CONFIG = "config.yaml"       # launcher: frozen copy of the launched config
LF_CONFIG = "training_args.yaml"    # LLaMA Board: the config it launched with (a foreign run)
TRAINER_LOG = "trainer_log.jsonl"   # trainer rank 0: one JSON object per logging step
STDOUT_LOG = "stdout.log"           # supervisor: combined stdout/stderr of the tree, appended
STOP_REQUEST = "tunedeck_stop"      # controller -> supervisor: please stop (JSON body: who/when)
TRAINER_EXIT = "trainer_exit.json"  # trainer rank 0: why it ended (reason, step, message)
LOCK_FILE = ".tunedeck.lock"        # one launch per output_dir (flock)
TRAINER_STATE = "trainer_state.json"
INCOMPLETE_MARKER = "checkpoint-is-incomplete.txt"  # transformers' jit checkpoint sentinel
CHECKPOINT_PREFIX = "checkpoint-"


class RunStatus(str, enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    FINISHED = "finished"
    FAILED = "failed"
    OOM = "oom"
    DIVERGED = "diverged"
    KILLED = "killed"
    STOPPED = "stopped"
    PREEMPTED = "preempted"
    LOST = "lost"

    @property
    def active(self) -> bool:
        return self in (RunStatus.STARTING, RunStatus.RUNNING, RunStatus.STOPPING)

    def __str__(self) -> str:  # so f"{status}" prints the word
        return self.value


ACTIVE_STATUSES = frozenset({RunStatus.STARTING, RunStatus.RUNNING, RunStatus.STOPPING})


class TrainerExit(enum.IntEnum):
    """Exit codes of ``python -m tunedeck.runner.train``.

    ``accelerate launch`` and torchrun turn any non-zero child code into 1, so the
    trainer also writes :data:`TRAINER_EXIT` with the reason; the supervisor reads
    that first and the code second.
    """

    OK = 0
    ERROR = 1
    CONFIG_ERROR = 2
    STOPPED = 75      # SIGTERM: saved a checkpoint at the step boundary and left
    PREEMPTED = 76    # SIGUSR1 (Slurm's warning before preemption): same, recorded differently
    DIVERGED = 77     # loss became NaN/inf
    OOM = 78          # CUDA out of memory
    DISK_FULL = 79    # ENOSPC while writing a checkpoint or a log


# Environment switch for fault injection in tests (documented in README):
#   TUNEDECK_FAULT="oom@5"         raise torch.cuda.OutOfMemoryError at step 5
#   TUNEDECK_FAULT="nan@5"         make the loss NaN from step 5
#   TUNEDECK_FAULT="enospc@save"   raise OSError(ENOSPC) while saving a checkpoint
#   TUNEDECK_FAULT="slow@0.5"      sleep 0.5 s per step (to test stop timing)
#   TUNEDECK_FAULT="exit@5"        hard os._exit(1) at step 5 (a crash without a message)
#   TUNEDECK_FAULT="stop@10"       the worker SIGTERMs itself at the end of step 10 (a stop request
#                                  that lands exactly on a step boundary: deterministic stop/resume)
#   TUNEDECK_FAULT="preempt@10"    same with SIGUSR1 (preemption warning)
#   Faults combine with commas ("slow@0.2,nan@7"); see runner/train/faults.py.
FAULT_ENV = "TUNEDECK_FAULT"
