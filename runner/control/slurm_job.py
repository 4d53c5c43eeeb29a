"""Inside a Slurm job: the job runner (batch step) and the per-node task wrapper.

``python -m tunedeck.runner.control.slurm_job RUN_DIR -- srun ...`` is what
``slurm_job.sh`` execs, so it *is* the batch step and receives the signals Slurm
sends it (``--signal=B:USR1@S`` before the time limit, ``scancel --signal=USR1
--batch`` from ``tunedeck stop``, SIGTERM on pre-emption or ``scontrol requeue``).
It plays the local supervisor's part for one start of the job:

- after a requeue (``SLURM_RESTART_COUNT`` above what the manifest recorded) it
  records the requeue and a new attempt and points ``resume_from_checkpoint`` at the
  newest complete checkpoint, within ``max_restarts``;
- it records itself, the node list and ``running`` in the manifest, runs ``srun``,
  passes USR1 on to it (srun forwards it to every task), and when the trainer has
  left it classifies the end exactly like the supervisor does and records it;
- a USR1 that is not a user's stop is the time limit approaching: once the trainer has
  saved and left, the runner requeues the job (``scontrol requeue``) if restarts are left.

``python -m tunedeck.runner.control.slurm_job --task -- CMD ...`` runs on every node
for multi-process runs: it expands ``$SLURM_PROCID``-style arguments from its
environment, starts ``accelerate launch`` in its own process group and passes USR1/TERM
to the trainer workers themselves (torchrun's agent would die of USR1), then makes
sure nothing of the group outlives it.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tunedeck.runner.rundir.protocol import (
    FROZEN_CONFIG,
    STDOUT_LOG,
    STOP_REQUEST,
    TRAINER_EXIT,
    RunStatus,
)

_VAR = re.compile(r"^\$([A-Za-z_][A-Za-z0-9_]*)$")


def _say(text: str) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    with contextlib.suppress(OSError, ValueError):
        print(f"[tunedeck {stamp}] {text}", flush=True)


class JobRunner:
    def __init__(self, run_dir: Path, cmd: list[str]) -> None:
        self.run_dir = run_dir
        self.cmd = cmd
        self.proc: subprocess.Popen[bytes] | None = None
        self.user_stop = False
        self.time_limit = False
        self.term = False
        self.job = os.environ.get("SLURM_JOB_ID", "")
        self.restart = _int_env("SLURM_RESTART_COUNT")

    # -- signals ---------------------------------------------------------------------
    def install(self) -> None:
        signal.signal(signal.SIGUSR1, self._on_usr1)
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    def _on_usr1(self, _s: int, _f: Any) -> None:
        if (self.run_dir / STOP_REQUEST).exists():
            self.user_stop = True
        else:
            self.time_limit = True
        self._forward(signal.SIGUSR1)

    def _on_term(self, _s: int, _f: Any) -> None:
        # Slurm sends SIGTERM to every process of the job (requeue, pre-emption, scancel):
        # the trainer has its own; we only note it and stay to record the end.
        self.term = True

    def _forward(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, sig)

    # -- main ------------------------------------------------------------------------------
    def run(self) -> int:
        from tunedeck.runner.rundir.manifest import read_manifest

        m = read_manifest(self.run_dir)
        if m is None or m.slurm is None:
            _say(f"no tunedeck manifest with a Slurm job in {self.run_dir}: running the command as is")
            return subprocess.call(self.cmd)
        recorded = m.slurm.requeues[-1].restart_count if m.slurm.requeues else 0
        if self.restart > recorded and not self._requeued(m):
            return 1
        m.status = RunStatus.RUNNING if not self.user_stop else RunStatus.STOPPING
        m.slurm.job_id = self.job or m.slurm.job_id
        m.slurm.node_list = os.environ.get("SLURM_JOB_NODELIST") or m.slurm.node_list
        m.slurm.batch_host = socket.gethostname()
        m.slurm.runner_pid = os.getpid()
        m.slurm.final_state = None
        m.host = m.slurm.batch_host
        m.write(self.run_dir)
        attempt = m.attempts[-1]
        _say(f"Slurm job {self.job} (start {self.restart + 1}) on {m.slurm.node_list}: attempt {attempt.number}"
             + (f", resuming from {attempt.resume_from}" if attempt.resume_from else ""))
        try:
            offset = (self.run_dir / STDOUT_LOG).stat().st_size
        except OSError:
            offset = 0
        with contextlib.suppress(FileNotFoundError):
            (self.run_dir / TRAINER_EXIT).unlink()
        if self.user_stop:
            return self._end(m, None, offset)
        try:
            self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL)
        except OSError as exc:
            m.status = RunStatus.FAILED
            m.message = f"cannot start {self.cmd[0]}: {exc}"
            return self._record(m, None, 1)
        if self.user_stop or self.time_limit:
            self._forward(signal.SIGUSR1)  # arrived while srun was starting
        while True:
            try:
                rc = self.proc.wait()
                break
            except InterruptedError:
                continue
        return self._end(m, rc, offset)

    def _requeued(self, m: Any) -> bool:
        """A new start after a requeue: record it; resume from the newest complete checkpoint."""
        from tunedeck.runner.config.yamlio import ConfigDoc
        from tunedeck.runner.control.launch import keep_attempt_copy
        from tunedeck.runner.fsutil import atomic_write_text
        from tunedeck.runner.rundir.checkpoints import newest_complete
        from tunedeck.runner.rundir.manifest import Attempt, SlurmRequeue

        node_list = os.environ.get("SLURM_JOB_NODELIST")
        if self.restart > m.max_restarts:
            m.slurm.requeues.append(SlurmRequeue(at=time.time(), restart_count=self.restart, node_list=node_list))
            m.status = RunStatus.FAILED
            m.message = (f"Slurm requeued job {self.job} {self.restart} time(s); --max-restarts is "
                         f"{m.max_restarts}: not resuming (tunedeck resume {m.id} continues it)")
            m.finished_at = time.time()
            m.write(self.run_dir)
            _say(m.message)
            return False
        ck = newest_complete(self.run_dir)
        prev = m.attempts[-1] if m.attempts else None
        if prev is not None:
            keep_attempt_copy(self.run_dir, prev.number)
            if prev.ended_at is None:
                prev.ended_at = time.time()
                prev.end_reason = RunStatus.PREEMPTED.value
                prev.message = "the job was requeued before its runner recorded the end"
        cfg = self.run_dir / FROZEN_CONFIG
        doc = ConfigDoc.load(cfg)
        if ck is not None:
            doc.set("resume_from_checkpoint", str(ck))
        else:
            doc.delete("resume_from_checkpoint")
        atomic_write_text(cfg, doc.dumps())
        m.slurm.requeues.append(SlurmRequeue(at=time.time(), restart_count=self.restart, node_list=node_list,
                                             resume_from=str(ck) if ck else None))
        m.attempts.append(Attempt(number=(prev.number + 1) if prev else 1, started_at=time.time(),
                                  resume_from=str(ck) if ck else None, argv=list(m.argv)))
        m.begin_attempt()
        m.restarts = self.restart
        _say(f"Slurm requeue {self.restart} of job {self.job}: resuming from "
             + (ck.name if ck else "step 0 (no complete checkpoint)"))
        return True

    def _end(self, m: Any, rc: int | None, offset: int) -> int:
        from tunedeck.runner.control.classify import classify_exit
        from tunedeck.runner.rundir.manifest import read_manifest

        info = classify_exit(self.run_dir, rc, log_offset=offset, stop_requested=self.user_stop)
        status, msg = info.status, info.message
        requeue = False
        if self.user_stop:
            status = RunStatus.STOPPED
            msg = msg or "stopped on request"
        elif self.term and status is not RunStatus.FINISHED:
            status = RunStatus.PREEMPTED
            msg = "SIGTERM from Slurm (pre-emption, requeue or scancel)" + (f": {msg}" if msg else "")
        elif self.time_limit and status in (RunStatus.PREEMPTED, RunStatus.STOPPED):
            status = RunStatus.PREEMPTED
            if self.restart < m.max_restarts:
                requeue = True
                msg = "the time limit is near: checkpoint saved, job requeued"
            else:
                msg = f"the time limit is near: checkpoint saved; --max-restarts ({m.max_restarts}) used up"
        cur = read_manifest(self.run_dir) or m  # a stop may have been recorded meanwhile
        cur.status = status
        cur.exit_code = info.exit_code
        cur.message = msg
        ck = info.checkpoint
        if ck is None:
            from tunedeck.runner.rundir.checkpoints import newest_complete

            newest = newest_complete(self.run_dir)
            ck = str(newest) if newest else None
        cur.checkpoint = ck
        if self.user_stop and cur.stop_requested_at is None:
            cur.stop_requested_at = time.time()
            cur.stop_requested_by = "tunedeck stop (Slurm)"
        code = 0 if status in (RunStatus.FINISHED, RunStatus.STOPPED) else (
            rc if rc is not None and 0 < rc < 256 else 1)
        if status is RunStatus.PREEMPTED:
            code = 0
        rc_out = self._record(cur, info.exit_code, code, ended=not (requeue or self.term))
        if requeue:
            from tunedeck.runner.control.backends.slurm import run_cmd

            r = run_cmd(["scontrol", "requeue", self.job])
            _say("requeued the job" if r.returncode == 0 else f"scontrol requeue failed: {r.stderr.strip()}")
        return rc_out

    def _record(self, m: Any, exit_code: int | None, code: int, *, ended: bool = True) -> int:
        if m.attempts:
            a = m.attempts[-1]
            a.ended_at = time.time()
            a.exit_code = exit_code
            a.end_reason = m.status.value
            a.message = m.message
        if ended:
            m.finished_at = time.time()
        m.write(self.run_dir)
        _say(f"attempt ended: {m.status.value}" + (f" (exit code {exit_code})" if exit_code is not None else "")
             + (f": {m.message}" if m.message else ""))
        return code


# ----------------------------------------------------------------------------
# The per-node task wrapper (multi-process runs)
# ----------------------------------------------------------------------------
def expand(argv: list[str], env: dict[str, str] | os._Environ[str]) -> list[str]:
    """``$NAME`` arguments (whole arguments only) replaced by their value in ``env``."""
    out = []
    for a in argv:
        mt = _VAR.match(a)
        if mt:
            if mt.group(1) not in env:
                raise SystemExit(f"tunedeck task: ${mt.group(1)} is not set in this Slurm task")
            out.append(env[mt.group(1)])
        else:
            out.append(a)
    return out


def task_main(cmd: list[str]) -> int:
    from tunedeck.runner.control import procs as P
    from tunedeck.runner.control.launch import launcher_preexec, uses_launcher

    argv = expand(cmd, os.environ)
    # As on the local backend: torchrun's agent ignores SIGTERM/USR1 (Slurm sends SIGTERM to
    # every process of the job on a requeue), so it never kills a worker that is saving.
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True,
                            preexec_fn=launcher_preexec if uses_launcher(argv) else None)  # noqa: PLW1509
    ct = P.create_time(proc.pid) or time.time()

    def workers() -> list[P.ProcId]:
        out = []
        for p in P.descendants(proc.pid, ct):
            line = " ".join(P.cmdline(p.pid))
            if p.pid != proc.pid and "tunedeck.runner.train" in line and "accelerate" not in line:
                out.append(p)
        return out

    def on_signal(signum: int, _f: Any) -> None:
        targets = workers()
        if targets:
            P.signal_all(targets, [], signum)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signum)

    for sig in (signal.SIGUSR1, signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    while True:
        try:
            rc = proc.wait()
            break
        except InterruptedError:
            continue
    left = P.survivors([], [proc.pid])
    if left:
        P.signal_all(left, [proc.pid], signal.SIGKILL)
    return rc if rc >= 0 else 128 - rc


def _int_env(name: str) -> int:
    try:
        return max(0, int(os.environ.get(name) or 0))
    except ValueError:
        return 0


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if "--" not in args:
        print("usage: python -m tunedeck.runner.control.slurm_job (RUN_DIR | --task) -- COMMAND ...",
              file=sys.stderr)
        return 2
    cut = args.index("--")
    head, cmd = args[:cut], args[cut + 1:]
    if head == ["--task"]:
        return task_main(cmd)
    if len(head) != 1 or not cmd:
        print("usage: python -m tunedeck.runner.control.slurm_job RUN_DIR -- COMMAND ...", file=sys.stderr)
        return 2
    os.umask(os.umask(0) | 0o022)
    runner = JobRunner(Path(head[0]).resolve(), cmd)
    runner.install()
    return runner.run()


if __name__ == "__main__":
    sys.exit(main())
