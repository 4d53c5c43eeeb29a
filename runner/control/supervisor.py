"""The detached supervisor: one per run, alive for the run's whole life.

``python -m tunedeck.runner.control.supervisor RUN_DIR`` (or ``tunedeck supervise RUN_DIR``)
is started by ``tunedeck launch`` / ``resume`` in a new session. It:

- holds the output_dir lock it inherited (so a second launch is refused);
- spawns ``python -m tunedeck.runner.train <run_dir>/config.yaml`` (one process) or
  ``accelerate launch ... -m tunedeck.runner.train ...`` (several, DeepSpeed, FSDP) in its
  own process group, stdout/stderr appended to ``stdout.log`` (a file, not a pipe);
- keeps ``tunedeck_run.json`` current with atomic writes: pids with start times,
  status ``starting -> running -> (stopping) -> <end>``, attempts;
- on a stop request (the ``tunedeck_stop`` file, or SIGTERM/SIGINT to itself):
  SIGTERM to the trainer's group, wait up to the timeout, SIGKILL what is left,
  then verify with psutil (and NVML) that no process of the run survives;
- classifies the end (:mod:`tunedeck.runner.control.classify`) and applies the restart
  policy: ``max_restarts`` resumes from the newest complete checkpoint after a
  crash or kill (with a back-off), never after a config error or a user stop,
  after OOM/divergence only with ``auto_triage`` (applying triage's first patch).

It ignores SIGHUP and does not care whether its parent lives.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from tunedeck.runner.control import procs as P
from tunedeck.runner.control.alerts import (
    ALERT_STATUSES,
    Notifier,
    RunWatch,
    make_alert,
    notify_urls,
)
from tunedeck.runner.control.classify import ExitInfo, classify_exit
from tunedeck.runner.control.launch import (
    RUN_ID_ENV,
    build_launch_plan,
    keep_attempt_copy,
    launcher_preexec,
    uses_launcher,
    write_plan_files,
)
from tunedeck.runner.control.lock import LOCK_FD_ENV, RunLock, adopt
from tunedeck.runner.fsutil import atomic_write_text, read_json
from tunedeck.runner.rundir.checkpoints import newest_complete
from tunedeck.runner.rundir.manifest import Attempt, ProcRef, RunManifest, read_manifest
from tunedeck.runner.rundir.protocol import (
    FROZEN_CONFIG,
    STDOUT_LOG,
    STOP_REQUEST,
    TRAINER_EXIT,
    RunStatus,
)

POLL = 0.2                 # seconds between checks of the trainer and the stop file
TREE_POLL = 0.5            # seconds between process-tree scans
DEFAULT_STOP_TIMEOUT = 300.0  # long enough for a big model to reach a step boundary and save
KILL_WAIT = 10.0           # after SIGKILL, how long to wait for the kernel to reap
FINAL_WRITE_PATIENCE = 120.0  # seconds to keep trying to record the end on a full disk
# Once the trainer has written trainer_exit.json it has nothing left to do but exit; a
# process still there this long after is stuck in its teardown (torch's gloo/DDP
# destructors can deadlock) and would keep the run "running" forever.
EXIT_GRACE_ENV = "TUNEDECK_EXIT_GRACE"
DEFAULT_EXIT_GRACE = 120.0
EXIT_KILL_AFTER = 10.0     # SIGTERM to SIGKILL for a trainer stuck after its exit record
BACKOFF_ENV = "TUNEDECK_RESTART_BACKOFF"   # first restart delay in seconds (doubles, max 300)
DEFAULT_BACKOFF = 10.0


def _say(text: str) -> None:
    """A line in stdout.log (the supervisor's stdout), marked as ours. Never raises: a full
    disk under the run directory must not take the supervisor down with its log line."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    with contextlib.suppress(OSError, ValueError):
        print(f"[tunedeck {stamp}] {text}", flush=True)


def _own_ref() -> ProcRef:
    ct = P.create_time(os.getpid())
    if ct is None:  # not Linux: ask psutil
        import psutil

        ct = psutil.Process().create_time()
    return ProcRef(pid=os.getpid(), create_time=ct, pgid=os.getpgrp(), role="supervisor")


class Supervisor:
    def __init__(self, run_dir: Path, lock: RunLock | None) -> None:
        self.run_dir = run_dir
        self.lock = lock
        self.signal_stop: str | None = None
        self.preempt_pending = False
        self.proc: subprocess.Popen[bytes] | None = None
        self._pidfd: tuple[int, int] | None = None  # (pid, pidfd) of the trainer we wait on
        self.stopping = False
        self.stop_timeout = DEFAULT_STOP_TIMEOUT
        self.kill_at: float | None = None
        self.killed = False
        self.exit_grace = _env_seconds(EXIT_GRACE_ENV, DEFAULT_EXIT_GRACE)
        self.exit_seen_at: float | None = None
        self.exit_hung = False
        self._roles: dict[int, str] = {}  # pid -> launcher / worker / helper (see _track_tree)
        self.write_failing = False
        m = read_manifest(run_dir)
        if m is None:
            raise SystemExit(f"tunedeck supervisor: no readable manifest in {run_dir}")
        self.m: RunManifest = m
        self.env = {k: v for k, v in os.environ.items() if k != LOCK_FD_ENV}
        self.env.setdefault(RUN_ID_ENV, m.id)
        self.notifier: Notifier | None = None
        self.watch: RunWatch | None = None
        with contextlib.suppress(Exception):  # alerts are a courtesy; the run never depends on them
            urls = notify_urls()
            if urls:
                self.notifier = Notifier(urls, log=_say)
                _say(f"alerts: {len(urls)} destination(s)")

    # -- signals ------------------------------------------------------------------
    def install_signals(self) -> None:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the terminal going away is not our business
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)
        signal.signal(signal.SIGUSR1, self._on_preempt_signal)

    def _on_stop_signal(self, signum: int, _frame: Any) -> None:
        self.signal_stop = f"{signal.Signals(signum).name} to the supervisor"

    def _on_preempt_signal(self, _signum: int, _frame: Any) -> None:
        self.preempt_pending = True

    # -- manifest -------------------------------------------------------------------
    def write(self) -> bool:
        """Write the manifest; False (and the run goes on) when the disk refuses it.

        The next write tries again; :meth:`_finish` insists for a while, since a run whose
        last status never reached the disk would show as lost.
        """
        try:
            self.m.write(self.run_dir)
        except OSError as exc:
            if not self.write_failing:
                _say(f"cannot write {self.run_dir / 'tunedeck_run.json'}: {exc.strerror or exc}; "
                     "will try again")
            self.write_failing = True
            return False
        self.write_failing = False
        return True

    def stop_request(self) -> dict[str, Any] | None:
        if self.signal_stop:
            return {"by": self.signal_stop}
        path = self.run_dir / STOP_REQUEST
        if not path.exists():
            return None
        data = read_json(path)
        return data if isinstance(data, dict) else {"by": "stop file"}

    # -- main -------------------------------------------------------------------------
    def run(self) -> int:
        self.m.supervisor = _own_ref()
        self.write()
        _say(f"supervisor {os.getpid()} for run {self.m.id} in {self.run_dir}")
        while True:
            attempt = self.m.attempts[-1]
            req = self.stop_request()
            if req is not None:
                # Stopped before the trainer started: nothing to save, nothing to kill.
                self._record_stop_request(req)
                info = ExitInfo(RunStatus.STOPPED, None, "stopped before the trainer started")
                self._end_attempt(attempt, info)
                break
            info = self._run_attempt(attempt)
            # Decided before the end is written: a run about to restart never shows an
            # ended status (a reader or `--follow` would take "killed" for the end).
            patch = self._restart_patch(info)
            self._end_attempt(attempt, info, restarting=patch is not None)
            if patch is None:
                break
            if not self._backoff():
                self.m.status = RunStatus.STOPPED
                self.m.message = "stopped on request while waiting to restart"
                break
            self._prepare_restart(attempt, info, patch)
        self._finish()
        if self.m.status.value in ALERT_STATUSES:
            self._alert(self.m.status.value)
        return 0

    def _alert(self, status: str, detail: str | None = None) -> None:
        if self.notifier is None:
            return
        try:
            self.notifier.send(make_alert(self.run_dir, status, detail=detail))
        except Exception as exc:
            _say(f"alert {status} not sent: {type(exc).__name__}: {exc}")

    def _watch_tick(self, now: float) -> None:
        if self.watch is None:
            return
        try:
            for status, detail in self.watch.tick(now):
                _say(f"alert: the run is {status}: {detail}")
                self._alert(status, detail)
        except Exception as exc:
            _say(f"stall/idle watch off: {type(exc).__name__}: {exc}")
            self.watch = None

    # -- one attempt ------------------------------------------------------------------
    def _run_attempt(self, attempt: Attempt) -> ExitInfo:
        run_dir = self.run_dir
        with contextlib.suppress(FileNotFoundError):
            (run_dir / TRAINER_EXIT).unlink()
        log_path = run_dir / STDOUT_LOG
        try:
            offset = log_path.stat().st_size
        except OSError:
            offset = 0
        self.stopping = False
        self.kill_at = None
        self.killed = False
        self.exit_seen_at = None
        self.exit_hung = False
        _say(f"attempt {attempt.number}: {' '.join(self.m.argv)}")
        started = self._start_trainer(attempt, log_path)
        if isinstance(started, ExitInfo):
            return started
        pid, ct = started
        known: dict[int, P.ProcId] = {pid: P.ProcId(pid, ct)}
        self.watch = None
        if self.notifier is not None:
            with contextlib.suppress(Exception):
                self.watch = RunWatch(run_dir, pids=lambda: [p.pid for p in known.values()])
        rc = self._watch_trainer(pid, ct, known)
        left = self._verify_gone(known, pid)
        info = classify_exit(run_dir, rc, log_offset=offset, stop_requested=self.stopping)
        return self._annotate_exit(info, left)

    def _start_trainer(self, attempt: Attempt, log_path: Path) -> tuple[int, float] | ExitInfo:
        """Start the attempt's command (stdout appended to ``log_path``) and record it running:
        (its pid, its create time), or the failed attempt's end when it cannot start."""
        log = open(log_path, "ab")  # noqa: SIM115 - the child's stdout; closed below
        try:
            self.proc = subprocess.Popen(
                self.m.argv,
                cwd=self.m.cwd or None,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: one killpg reaches the launcher and rank 0
                close_fds=True,
                # accelerate/torchrun must not act on SIGTERM (see launch.launcher_preexec);
                # this process has no threads, so a preexec_fn is safe here.
                preexec_fn=launcher_preexec if uses_launcher(self.m.argv) else None,  # noqa: PLW1509
            )
        except OSError as exc:
            log.close()
            return ExitInfo(RunStatus.FAILED, None, f"cannot start the trainer: {exc}", config_error=True)
        log.close()
        pid = self.proc.pid
        ct = P.create_time(pid) or time.time()
        ref = ProcRef(pid=pid, create_time=ct, pgid=pid,
                      role="launcher" if uses_launcher(self.m.argv) else "worker")
        self.m.trainer = ref
        attempt.trainer = ref
        self.m.procs = [ref]
        self.m.status = RunStatus.RUNNING
        self.write()
        return pid, ct

    def _watch_trainer(self, pid: int, ct: float, known: dict[int, P.ProcId]) -> int:
        """Poll until the trainer and every process it started are gone, acting on stop
        requests, preemption warnings, a hung exit and the stall/idle watch; its exit code."""
        assert self.proc is not None
        next_tree = 0.0
        rc: int | None = None
        while True:
            if rc is None:
                rc = self.proc.poll()
            now = time.monotonic()
            if now >= next_tree:
                next_tree = now + TREE_POLL
                self._track_tree(pid, ct, known)
            req = self.stop_request()
            if req is not None and not self.stopping:
                self._begin_stop(req, known, pid)
            if self.preempt_pending:
                self.preempt_pending = False
                _say("SIGUSR1 (preemption warning): passing it to the trainer")
                P.signal_all(known.values(), [pid], signal.SIGUSR1)
            self._exit_watchdog(now, known, pid)
            if not self.stopping and rc is None:
                self._watch_tick(now)
            if (self.stopping or self.exit_hung) and not self.killed and self.kill_at is not None \
                    and now >= self.kill_at:
                self._kill(known, pid)
            # Once the launcher is gone, its children (the trainer when accelerate was
            # killed alone, torchrun workers) may still be finishing: wait for them too.
            if rc is not None and not P.survivors(known.values(), [pid]):
                return rc
            if rc is None:
                # Wake the moment the trainer exits, not up to POLL later: a finished run's
                # end is recorded (and --follow returns) that much sooner.
                self._wait_exit(POLL)
            else:
                time.sleep(POLL)

    def _annotate_exit(self, info: ExitInfo, left: list[P.ProcId]) -> ExitInfo:
        """The classified end with what the supervisor saw: a stop, a hung exit, survivors."""
        if self.stopping:
            note = info.message or "stopped on request"
            if self.killed and not self.exit_hung:
                note = f"did not stop within {self.stop_timeout:.0f}s; killed with SIGKILL ({note})"
            info = ExitInfo(RunStatus.STOPPED, info.exit_code, note, info.checkpoint,
                            info.config_error, info.signal, info.trainer_exit)
        if self.exit_hung:
            info = ExitInfo(info.status, info.exit_code,
                            (info.message or "") + f" [the trainer wrote {TRAINER_EXIT} but had not exited "
                            f"{self.exit_grace:.0f}s later; its processes were "
                            + ("killed with SIGKILL]" if self.killed else "ended with SIGTERM]"),
                            info.checkpoint, info.config_error, info.signal, info.trainer_exit)
        if left:
            self.m.survivors = [ProcRef(pid=p.pid, create_time=p.create_time) for p in left]
            info = ExitInfo(info.status, info.exit_code,
                            (info.message or "") + f" [{len(left)} process(es) of the run survived: "
                            + ", ".join(str(p.pid) for p in left) + "]",
                            info.checkpoint, info.config_error, info.signal, info.trainer_exit)
        return info

    def _wait_exit(self, timeout: float) -> None:
        """Sleep up to ``timeout``, waking the moment the trainer exits.

        On a pidfd (Linux 5.3+) the kernel wakes us; elsewhere ``Popen.wait`` polls (it
        sleeps 1 ms, then doubling up to 50 ms, which costs CPU and up to 50 ms of lag).
        """
        proc = self.proc
        assert proc is not None
        if self._pidfd is not None and self._pidfd[0] != proc.pid:
            self._close_pidfd()
        if self._pidfd is None and hasattr(os, "pidfd_open"):
            with contextlib.suppress(OSError):
                self._pidfd = (proc.pid, os.pidfd_open(proc.pid))
        if self._pidfd is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=timeout)
            return
        import select

        with contextlib.suppress(OSError, ValueError):
            select.select([self._pidfd[1]], [], [], timeout)

    def _close_pidfd(self) -> None:
        if self._pidfd is not None:
            with contextlib.suppress(OSError):
                os.close(self._pidfd[1])
            self._pidfd = None

    def _exit_watchdog(self, now: float, known: dict[int, P.ProcId], pgid: int) -> None:
        """End a trainer that wrote its exit record but does not exit (see EXIT_GRACE_ENV)."""
        if self.exit_hung or self.killed:
            return
        if self.exit_seen_at is None:
            if (self.run_dir / TRAINER_EXIT).exists():
                self.exit_seen_at = now
            return
        if now - self.exit_seen_at < self.exit_grace:
            return
        self.exit_hung = True
        _say(f"the trainer wrote {TRAINER_EXIT} {self.exit_grace:.0f}s ago and has not exited "
             f"(stuck in its teardown): SIGTERM, then SIGKILL after {EXIT_KILL_AFTER:.0f}s")
        P.signal_all(known.values(), [pgid], signal.SIGTERM)
        deadline = now + EXIT_KILL_AFTER
        self.kill_at = min(self.kill_at, deadline) if self.kill_at is not None else deadline

    def _track_tree(self, pid: int, ct: float, known: dict[int, P.ProcId]) -> None:
        for p in P.descendants(pid, ct):
            known.setdefault(p.pid, p)
        # torchrun workers are not in our group and may outlive a killed parent:
        # also find them by the run id every process inherits. Roles are read again on
        # every scan: a worker caught between fork and exec still shows the launcher's
        # command line, and would stay a "helper" if its role were fixed at first sight.
        refs = []
        for p in known.values():
            cmd = " ".join(P.cmdline(p.pid))
            if cmd:  # a process that has exited keeps the role it had
                trainer = "tunedeck.runner.train" in cmd and "accelerate" not in cmd
                # A one-process run starts the trainer itself: the launched pid is the worker.
                self._roles[p.pid] = "worker" if trainer else ("launcher" if p.pid == pid else "helper")
            refs.append(ProcRef(pid=p.pid, create_time=p.create_time, pgid=P.pgid_of(p.pid),
                                role=self._roles.get(p.pid, "helper")))
        if [(r.pid, r.role, r.pgid) for r in refs] != [(r.pid, r.role, r.pgid) for r in self.m.procs or []]:
            self.m.procs = refs
            self.write()

    def _record_stop_request(self, req: dict[str, Any]) -> None:
        self.m.stop_requested_at = float(req.get("at") or time.time())
        self.m.stop_requested_by = str(req.get("by") or "tunedeck stop")
        with contextlib.suppress(TypeError, ValueError):
            if req.get("timeout") is not None:
                self.stop_timeout = max(0.0, float(req["timeout"]))

    def _begin_stop(self, req: dict[str, Any], known: dict[int, P.ProcId], pgid: int) -> None:
        self._record_stop_request(req)
        self.stopping = True
        self.m.status = RunStatus.STOPPING
        self.write()
        _say(f"stop requested by {self.m.stop_requested_by}: SIGTERM to the trainer "
             f"(SIGKILL after {self.stop_timeout:.0f}s)")
        P.signal_all(known.values(), [pgid], signal.SIGTERM)
        self.kill_at = time.monotonic() + self.stop_timeout

    def _kill(self, known: dict[int, P.ProcId], pgid: int) -> None:
        self.killed = True
        extra = P.find_by_env(RUN_ID_ENV, self.m.id, exclude=[os.getpid()])
        targets = list(known.values()) + extra
        why = (f"did not exit after writing {TRAINER_EXIT}" if self.exit_hung and not self.stopping
               else f"did not stop within {self.stop_timeout:.0f}s")
        _say(f"the trainer {why}: SIGKILL to "
             + ", ".join(str(p.pid) for p in P.survivors(targets, [pgid])))
        P.signal_all(targets, [pgid], signal.SIGKILL)
        for p in extra:
            known.setdefault(p.pid, p)

    def _verify_gone(self, known: dict[int, P.ProcId], pgid: int) -> list[P.ProcId]:
        """After the end: nothing of the run may survive. Kill stragglers; report the rest."""
        self._close_pidfd()
        strays = P.find_by_env(RUN_ID_ENV, self.m.id, exclude=[os.getpid()])
        candidates = list(known.values()) + strays
        left = P.survivors(candidates, [pgid])
        if left:
            _say("processes of the run still alive after it ended: "
                 + ", ".join(str(p.pid) for p in left) + "; sending SIGKILL")
            P.signal_all(left, [pgid], signal.SIGKILL)
            left = P.wait_gone(left, [pgid], KILL_WAIT)
        holders = P.nvml_holders([p.pid for p in candidates])
        if holders:
            _say("GPU memory still held by: " + ", ".join(
                f"pid {pid} on GPU {gpu}" for gpu, pid, _b in holders))
        return left

    # -- end of an attempt and of the run --------------------------------------------------
    def _end_attempt(self, attempt: Attempt, info: ExitInfo, *, restarting: bool = False) -> None:
        from tunedeck.runner.control.secrets import redact_text

        secrets = _secrets_from_env()
        msg = redact_text(info.message, secrets) if info.message else None
        attempt.ended_at = time.time()
        attempt.exit_code = info.exit_code
        attempt.end_reason = info.status.value
        attempt.message = msg
        self.m.status = info.status
        self.m.exit_code = info.exit_code
        self.m.message = msg
        ck = info.checkpoint
        if ck is None:
            with contextlib.suppress(Exception):
                newest = newest_complete(self.run_dir)
                ck = str(newest) if newest else None
        self.m.checkpoint = ck
        if restarting:
            # Not over yet: say so before the back-off, so nobody mistakes it for the end.
            self.m.status = RunStatus.STARTING
            self.m.message = (f"attempt {attempt.number} ended {info.status.value}"
                              + (f" ({msg})" if msg else "")
                              + f"; restart {self.m.restarts + 1} of {self.m.max_restarts} pending")
        self.write()
        _say(f"attempt {attempt.number} ended: {info.status.value}"
             + (f" (exit code {info.exit_code})" if info.exit_code is not None else "")
             + (f": {msg}" if msg else ""))

    def _finish(self) -> None:
        self.m.finished_at = time.time()
        deadline = time.monotonic() + FINAL_WRITE_PATIENCE
        while not self.write() and time.monotonic() < deadline:
            time.sleep(2.0)  # a full disk: someone may free space (the trainer freed its partial save)
        with contextlib.suppress(FileNotFoundError):
            (self.run_dir / STOP_REQUEST).unlink()
        _say(f"run {self.m.id} ended: {self.m.status.value}")

    # -- restart policy ---------------------------------------------------------------------
    def _restart_patch(self, info: ExitInfo) -> dict[str, Any] | None:
        """The config patch for an automatic restart, or None for no restart (and why, logged)."""
        st = info.status
        if st in (RunStatus.FINISHED, RunStatus.STOPPED) or self.stop_request() is not None:
            return None
        if self.m.restarts >= self.m.max_restarts:
            if self.m.max_restarts:
                _say(f"not restarting: {self.m.restarts} of {self.m.max_restarts} restart(s) used")
            return None
        if info.config_error:
            _say("not restarting: a configuration error fails the same way every time")
            return None
        if st is RunStatus.PREEMPTED:
            _say("not restarting: the run was preempted (resume it where it is rescheduled)")
            return None
        if st in (RunStatus.OOM, RunStatus.DIVERGED):
            if not self.m.auto_triage:
                _say(f"not restarting after {st.value}: the same settings would fail again "
                     "(launch with --auto-triage to retry with triage's first suggestion)")
                return None
            patch = _first_triage_patch(self.run_dir)
            if not patch:
                _say(f"not restarting after {st.value}: triage has no suggestion to apply")
                return None
            _say("auto-triage: applying " + json.dumps(patch, default=str))
            return patch
        return {}

    def _backoff(self) -> bool:
        """Sleep before a restart; False when a stop arrives meanwhile."""
        try:
            base = float(os.environ.get(BACKOFF_ENV, DEFAULT_BACKOFF))
        except ValueError:
            base = DEFAULT_BACKOFF
        delay = min(300.0, base * (2 ** self.m.restarts))
        _say(f"restarting in {delay:.1f}s ({self.m.restarts + 1} of {self.m.max_restarts})")
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline:
            req = self.stop_request()
            if req is not None:
                self._record_stop_request(req)
                return False
            time.sleep(min(POLL, max(0.0, deadline - time.monotonic())))
        return True

    def _prepare_restart(self, attempt: Attempt, info: ExitInfo, patch: dict[str, Any]) -> None:
        from tunedeck.runner.config.yamlio import ConfigDoc

        ck = newest_complete(self.run_dir)
        keep_attempt_copy(self.run_dir, attempt.number)
        cfg = self.run_dir / FROZEN_CONFIG
        doc = ConfigDoc.load(cfg)
        for k, v in patch.items():
            if v is None:
                doc.delete(k)
            else:
                doc.set(k, v)
        if ck is not None:
            doc.set("resume_from_checkpoint", str(ck))
        else:
            doc.delete("resume_from_checkpoint")
        atomic_write_text(cfg, doc.dumps())
        values = doc.values()
        opts = dict(self.m.launch_options)
        plan = build_launch_plan(values, config_path=cfg, cwd=self.m.cwd or None, **opts)
        write_plan_files(plan, values)
        self.env.update(plan.env)
        self.m.argv = plan.argv
        self.m.restarts += 1
        self.m.attempts.append(
            Attempt(
                number=attempt.number + 1,
                started_at=time.time(),
                resume_from=str(ck) if ck else None,
                argv=plan.argv,
                overrides=patch,
            )
        )
        self.m.status = RunStatus.STARTING
        self.m.exit_code = None
        self.m.message = None
        self.m.trainer = None
        self.m.survivors = []
        self.write()
        _say(f"restart {self.m.restarts}: resuming from {ck.name if ck else 'scratch (no complete checkpoint)'}")


def _env_seconds(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name, ""))
    except ValueError:
        return default
    return value if value >= 0 and value == value and value != float("inf") else default


def _secrets_from_env() -> dict[str, Any]:
    from tunedeck.runner.control.secrets import SECRETS_ENV

    raw = os.environ.get(SECRETS_ENV)
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _first_triage_patch(run_dir: Path) -> dict[str, Any] | None:
    """The patch of triage's first suggestion for this run that can start on this machine
    (one that needs an uninstalled package is passed over, and the log says so), or None."""
    try:
        from tunedeck.runner.triage import missing_requirements, triage_run

        for diag in triage_run(run_dir):
            for sug in getattr(diag, "suggestions", None) or ():
                patch = getattr(sug, "patch", None)
                if not patch:
                    continue
                missing = missing_requirements(patch)
                if missing:
                    _say(f"auto-triage: passing over {sug.title!r}: needs {', '.join(missing)}, "
                         "not installed here")
                    continue
                _say(f"auto-triage: applying {sug.title!r} ({sug.guide_ref})")
                return dict(patch)
    except Exception as exc:  # triage is advice; its failure must not take the run down
        _say(f"auto-triage failed: {type(exc).__name__}: {exc}")
    return None


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m tunedeck.runner.control.supervisor RUN_DIR", file=sys.stderr)
        return 2
    run_dir = Path(args[0]).resolve()
    # Everything the run writes (the trainer inherits this): no group/world write, whatever
    # the user's umask (002 is common), so nobody else can edit a checkpoint or a log.
    os.umask(os.umask(0) | 0o022)
    lock: RunLock | None = None
    sup: Supervisor | None = None
    fd = os.environ.get(LOCK_FD_ENV)
    if fd and fd.isdigit():
        lock = adopt(int(fd), run_dir)
    else:
        # Started by hand: take the lock ourselves (refused if a run is active).
        from tunedeck.runner.control.lock import acquire

        lock = acquire(run_dir)
    try:
        sup = Supervisor(run_dir, lock)
        sup.install_signals()
        return sup.run()
    except SystemExit:
        raise
    except BaseException:
        _say("supervisor error:\n" + traceback.format_exc())
        return 1
    finally:
        if lock is not None:
            lock.release()
        # The run is recorded and its lock free: now wait (bounded) for the last alert.
        if sup is not None and sup.notifier is not None and not sup.notifier.close(timeout=90.0):
            _say("alerts: gave up waiting for the notifier")


if __name__ == "__main__":
    sys.exit(main())
