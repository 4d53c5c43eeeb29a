"""Reading a Slurm run: the scheduler's view of its job, merged with the manifest.

The job runner inside the job (:mod:`tunedeck.runner.control.slurm_job`) keeps the
manifest current; what only the scheduler knows (pending and why, a requeue, an end
the runner could not record: node failure, cancel before start, time limit) comes from
``scontrol -o show job`` and, when accounting exists, ``sacct`` (without slurmdbd it
exits 1 saying accounting is disabled: nothing more is learnt and nothing breaks).
Every command is an argv list; a missing one is an error naming it. Readers never write.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tunedeck.runner.errors import LaunchError, TunedeckError
from tunedeck.runner.rundir.protocol import ACTIVE_STATUSES, STOP_REQUEST, TRAINER_EXIT, RunStatus

SCHED_TIMEOUT = 30.0               # seconds for one scheduler command (submit, cancel)
READ_TIMEOUT = 10.0                # seconds for one status query (readers must not hang)
_CACHE_TTL = 1.0                   # a status is asked again after this long
_FAIL_TTL = 15.0                   # a scheduler that did not answer is asked again after this long

PENDING_STATES = frozenset({"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING",
                            "RESIZING", "SUSPENDED", "STOPPED", "SPECIAL_EXIT", "RESV_DEL_HOLD"})
RUNNING_STATES = frozenset({"RUNNING", "COMPLETING", "SIGNALING", "STAGE_OUT"})
# Slurm's end state -> tunedeck status, for a job whose runner could not record its end.
END_STATES: dict[str, RunStatus] = {
    "COMPLETED": RunStatus.FINISHED,
    "FAILED": RunStatus.FAILED,
    "CANCELLED": RunStatus.KILLED,
    "TIMEOUT": RunStatus.KILLED,
    "NODE_FAIL": RunStatus.LOST,
    "BOOT_FAIL": RunStatus.LOST,
    "PREEMPTED": RunStatus.PREEMPTED,
    "OUT_OF_MEMORY": RunStatus.FAILED,
    "DEADLINE": RunStatus.KILLED,
    "REVOKED": RunStatus.LOST,
}

def require(cmd: str) -> str:
    """The path of a Slurm command, or a LaunchError naming it."""
    path = shutil.which(cmd)
    if path is None:
        raise LaunchError(
            f"Slurm's `{cmd}` command is not on PATH: this machine cannot submit or query Slurm jobs",
            hint="run tunedeck on a login node of the cluster (or install slurm-client), "
            "or launch without --slurm",
        )
    return path


def run_cmd(argv: list[str], *, timeout: float = SCHED_TIMEOUT, env: Mapping[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
    argv = [require(argv[0]), *argv[1:]]
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              env=dict(env) if env is not None else None, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(argv, 124, "", f"{argv[0]} did not answer within {timeout:.0f}s")


_cache: dict[str, tuple[float, dict[str, str] | None]] = {}
_failed: dict[str, tuple[float, TunedeckError]] = {}


def parse_scontrol(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for tok in text.split():
        k, sep, v = tok.partition("=")
        if sep and k and k not in out:
            out[k] = v
    return out


def query(job_id: str, *, fresh: bool = False) -> dict[str, str] | None:
    """The job as the scheduler sees it (scontrol's fields), ``None`` when it no longer knows it.

    Raises LaunchError when Slurm's commands are missing, TunedeckError when it cannot answer.
    """
    now = time.monotonic()
    hit = _cache.get(job_id)
    if hit is not None and not fresh and now - hit[0] < _CACHE_TTL:
        return hit[1]
    bad = _failed.get(job_id)
    if bad is not None and not fresh and now - bad[0] < _FAIL_TTL:
        raise bad[1]  # a dashboard polling an unreachable controller must not wait every time
    try:
        result = _query(job_id)
    except TunedeckError as exc:
        _failed[job_id] = (now, exc)
        raise
    _failed.pop(job_id, None)
    _cache[job_id] = (now, result)
    return result


def _query(job_id: str) -> dict[str, str] | None:
    r = run_cmd(["scontrol", "-o", "show", "job", str(job_id)], timeout=READ_TIMEOUT)
    result: dict[str, str] | None
    if r.returncode == 0 and "JobId=" in r.stdout:
        result = parse_scontrol(r.stdout.splitlines()[0])
        result["Source"] = "scontrol"
    elif "Invalid job id" in (r.stderr + r.stdout):
        result = _sacct(job_id)
    else:
        raise TunedeckError(f"scontrol could not answer for job {job_id}: "
                            f"{(r.stderr or r.stdout).strip() or r.returncode}")
    return result


def _sacct(job_id: str) -> dict[str, str] | None:
    """A job the controller has forgotten, from accounting when there is any (else None)."""
    if shutil.which("sacct") is None:
        return None
    r = run_cmd(["sacct", "-n", "-P", "-X", "-j", str(job_id), "-o", "JobID,State,ExitCode,NodeList,Partition"],
                timeout=READ_TIMEOUT)
    if r.returncode != 0:
        return None  # "Slurm accounting storage is disabled": nothing more to learn
    for line in r.stdout.splitlines():
        parts = line.split("|")
        if len(parts) >= 5 and parts[0] == str(job_id):
            return {"JobId": parts[0], "JobState": parts[1].split()[0], "ExitCode": parts[2],
                    "NodeList": parts[3], "Partition": parts[4], "Source": "sacct"}
    return None


def _state_word(js: dict[str, str] | None) -> str:
    if js is None:
        return "unknown"
    return (js.get("JobState") or "unknown").split("+")[0].upper()


def _slurm_of(m: Mapping[str, Any]) -> dict[str, Any]:
    s = m.get("slurm")
    return s if isinstance(s, dict) else {}


def _restarts_recorded(m: Mapping[str, Any]) -> int:
    req = _slurm_of(m).get("requeues")
    if not isinstance(req, list) or not req:
        return 0
    last = req[-1]
    return int(last.get("restart_count") or 0) if isinstance(last, dict) else 0


def _stop_requested(m: Mapping[str, Any], run_dir: Path | None) -> bool:
    if m.get("stop_requested_at"):
        return True
    return run_dir is not None and (run_dir / STOP_REQUEST).exists()


def view(m: Mapping[str, Any]) -> tuple[RunStatus, dict[str, Any]]:
    """The status to show and the scheduler's side of it (``info``)."""
    try:
        recorded = RunStatus(m.get("status"))
    except ValueError:
        recorded = RunStatus.LOST
    s = _slurm_of(m)
    job = str(s.get("job_id") or "")
    run_dir = Path(str(m.get("output_dir"))) if m.get("output_dir") else None
    info: dict[str, Any] = {"backend": "slurm", "job_id": job or None,
                            "partition": s.get("partition"), "node_list": s.get("node_list"),
                            "requeues": len(s.get("requeues") or [])}
    if not job:
        return recorded, info
    try:
        js = query(job)
    except TunedeckError as exc:
        info["slurm_state"] = "unknown"
        info["slurm_message"] = exc.message
        return recorded, info
    state = _state_word(js)
    reason = (js or {}).get("Reason")
    restarts = int((js or {}).get("Restarts") or 0) if (js or {}).get("Restarts", "").isdigit() else 0
    info["slurm_state"] = state.lower() if js is not None else (s.get("final_state") or "gone").lower()
    if reason and reason != "None":
        info["slurm_reason"] = reason
    if js is not None:
        info["slurm_exit_code"] = js.get("ExitCode")
        info["partition"] = js.get("Partition") or info["partition"]
        nl = js.get("NodeList")
        if nl and nl != "(null)":
            info["node_list"] = nl
        for k, key in (("elapsed", "RunTime"), ("time_limit", "TimeLimit")):
            if js.get(key):
                info[k] = js[key]
        info["slurm_restarts"] = restarts
    queue = info["slurm_state"]
    if state in PENDING_STATES and reason and reason != "None":
        queue += f" ({reason})"
    info["queue"] = queue

    if js is not None and state in PENDING_STATES:
        if recorded.active:
            return RunStatus.STARTING, info
        if restarts > _restarts_recorded(m):
            # Requeued after the runner recorded the attempt's end: it will resume.
            info["queue"] = f"requeued ({reason})" if reason and reason != "None" else "requeued"
            return RunStatus.STARTING, info
        return recorded, info
    if js is not None and state in RUNNING_STATES:
        if recorded.active:
            return recorded, info
        if restarts > _restarts_recorded(m):
            return RunStatus.STARTING, info
        return recorded, info
    # The job has ended (or the controller forgot it).
    if not recorded.active:
        if recorded is RunStatus.PREEMPTED and state == "CANCELLED":
            return (RunStatus.STOPPED if _stop_requested(m, run_dir) else RunStatus.KILLED), info
        return recorded, info
    if js is None:
        info["slurm_message"] = f"Slurm no longer knows job {job} and the run never recorded its end"
        return RunStatus.LOST, info
    mapped = END_STATES.get(state, RunStatus.LOST)
    if state == "CANCELLED" and _stop_requested(m, run_dir):
        mapped = RunStatus.STOPPED
    if state == "COMPLETED" and not _trainer_done(run_dir):
        mapped = RunStatus.LOST
    info["slurm_message"] = (f"job {job} ended {state.lower()}"
                             + (f" (exit code {js.get('ExitCode')})" if js.get("ExitCode") not in (None, "0:0") else "")
                             + " before tunedeck's job runner recorded the end")
    return mapped, info


def _trainer_done(run_dir: Path | None) -> bool:
    return run_dir is not None and (run_dir / TRAINER_EXIT).exists()


def state_of(job: str) -> str:
    try:
        return _state_word(query(job, fresh=True))
    except TunedeckError:
        return "UNKNOWN"



class SlurmReader:
    name = "slurm"

    def status(self, m: dict[str, Any], now: float | None = None) -> RunStatus:
        return view(m)[0]

    def ended(self, m: dict[str, Any]) -> bool:
        st, info = view(m)
        if st in ACTIVE_STATUSES:
            return False
        return info.get("slurm_state") not in {s.lower() for s in RUNNING_STATES | PENDING_STATES}

    def info(self, m: dict[str, Any]) -> dict[str, Any]:
        return view(m)[1]
