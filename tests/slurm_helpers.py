"""A private, real Slurm cluster on localhost for the Slurm tests.

:class:`SlurmCluster` starts ``munged``, ``slurmctld`` and ``slurmd`` from Debian's
packages in a fresh directory (its own munge key and socket, non-default ports, its
own state), so nothing is shared with a system Slurm or with another test session.
Every client call needs ``SLURM_CONF`` (see :meth:`SlurmCluster.env`). When a daemon
cannot start, :class:`ClusterError` carries the daemon's log: the tests fail with it,
they are never skipped.

Teardown follows the order that leaves nothing behind: cancel every job, wait until
the queue is empty (job processes outlive a killed slurmd), then SIGTERM slurmd,
slurmctld and munged by the pids in their pid files, waiting for each.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

DAEMONS = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel", "sinfo")


class ClusterError(RuntimeError):
    """The private cluster could not start (the message holds the daemon logs)."""


def _free_port_pair() -> tuple[int, int]:
    """Two ports nothing listens on (slurmctld, slurmd), away from Slurm's 6817/6818."""
    for base in range(16817, 17800, 2):
        ok = True
        for port in (base, base + 1):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return base, base + 1
    raise ClusterError("no two free ports between 16817 and 17800 for slurmctld/slurmd")


def _cpus() -> int:
    """CPUs of this node as slurmd sees them (``slurmd -C``), else ``nproc``."""
    try:
        out = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, timeout=30).stdout
        for tok in out.split():
            if tok.startswith("CPUs="):
                return max(1, int(tok.split("=", 1)[1]))
    except (OSError, ValueError, subprocess.SubprocessError):
        pass
    return max(1, os.cpu_count() or 1)


class SlurmCluster:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.conf = base / "etc" / "slurm.conf"
        self.munge_socket = base / "munge" / "munge.socket"
        self.cpus = _cpus()
        self.partition = "debug"
        self._started: list[str] = []

    # -- environment for every client call ---------------------------------------------
    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ if base is None else base)
        env["SLURM_CONF"] = str(self.conf)
        return env

    def run(self, *argv: str, check: bool = False, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(argv), env=self.env(), capture_output=True, text=True, timeout=timeout,
                              check=check)

    # -- start ----------------------------------------------------------------------------
    def start(self, timeout: float = 120.0) -> None:
        missing = [d for d in DAEMONS if shutil.which(d) is None
                   and not Path("/usr/sbin", d).exists()]
        if missing:
            raise ClusterError(
                "Slurm is not installed here: missing " + ", ".join(missing)
                + " (apt-get install slurmctld slurmd slurm-client munge)")
        b = self.base
        # munged wants execute-for-all on every directory above its socket.
        os.chmod(b, 0o755)
        for sub in ("etc", "munge", "state/ctld", "state/d", "log", "run"):
            (b / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(b / "munge", 0o755)  # munged refuses a socket directory without x for all
        key = b / "munge" / "munge.key"
        self._check([_sbin("mungekey"), "--create", f"--keyfile={key}"], "mungekey")
        os.chmod(key, 0o600)
        self._check([_sbin("munged"), f"--key-file={key}", f"--socket={self.munge_socket}",
                     f"--pid-file={b / 'run' / 'munged.pid'}", f"--log-file={b / 'log' / 'munged.log'}",
                     f"--seed-file={b / 'munge' / 'munged.seed'}"], "munged")
        self._started.append("munged")
        ctld_port, d_port = _free_port_pair()
        self.conf.write_text(self._conf_text(ctld_port, d_port), encoding="utf-8")
        self._check([_sbin("slurmctld")], "slurmctld")
        self._started.append("slurmctld")
        self._check([_sbin("slurmd"), "-N", "localhost"], "slurmd")
        self._started.append("slurmd")
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            r = self.run("sinfo", "-h", "-n", "localhost", "-o", "%T", timeout=30)
            state = r.stdout.strip()
            if state == "idle":
                return
            time.sleep(0.2)
        raise ClusterError(f"the node did not become idle within {timeout:.0f}s (sinfo said {state!r})\n"
                           + self.logs())

    def _check(self, argv: list[str], what: str) -> None:
        r = subprocess.run(argv, env=self.env(), capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise ClusterError(f"{what} failed to start (exit {r.returncode}): {r.stderr.strip()}\n"
                               + self.logs())

    def _conf_text(self, ctld_port: int, d_port: int) -> str:
        b = self.base
        return "\n".join([
            "ClusterName=fixture",
            "SlurmctldHost=localhost",
            f"SlurmctldPort={ctld_port}",
            f"SlurmdPort={d_port}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={self.munge_socket},cred_expire=5",
            f"StateSaveLocation={b / 'state' / 'ctld'}",
            f"SlurmdSpoolDir={b / 'state' / 'd'}",
            f"SlurmctldPidFile={b / 'run' / 'slurmctld.pid'}",
            f"SlurmdPidFile={b / 'run' / 'slurmd.pid'}",
            f"SlurmctldLogFile={b / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={b / 'log' / 'slurmd.log'}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "SchedulerType=sched/backfill",
            "SchedulerParameters=bf_interval=1,batch_sched_delay=0,sched_interval=2",
            "MpiDefault=none",
            "MailProg=/bin/true",
            "ReturnToService=2",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/filetxt",
            f"JobCompLoc={b / 'log' / 'jobcomp.txt'}",
            "MinJobAge=600",
            "KillWait=30",
            f"NodeName=localhost NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory=1000 State=UNKNOWN",
            "PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP",
            "",
        ])

    # -- inspection -----------------------------------------------------------------------
    def logs(self, lines: int = 40) -> str:
        out = []
        for name in ("munged.log", "slurmctld.log", "slurmd.log"):
            p = self.base / "log" / name
            try:
                text = p.read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                text = ["(no log)"]
            out.append(f"--- {p.name} ---\n" + "\n".join(text))
        return "\n".join(out)

    def job_field(self, job_id: str, key: str) -> str | None:
        r = self.run("scontrol", "-o", "show", "job", job_id)
        for tok in r.stdout.split():
            if tok.startswith(key + "="):
                return tok.split("=", 1)[1]
        return None

    def queue_empty(self) -> bool:
        r = self.run("squeue", "-h", "-o", "%i")
        return r.returncode == 0 and not r.stdout.strip()

    # -- teardown -------------------------------------------------------------------------
    def stop(self) -> None:
        if "slurmctld" in self._started:
            with contextlib.suppress(Exception):
                self.run("scancel", f"--user={os.getuid()}")
                _poll(self.queue_empty, 60)
        for name in ("slurmd", "slurmctld", "munged"):
            if name not in self._started:
                continue
            pid = _read_pid(self.base / "run" / f"{name}.pid")
            if pid is None:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            if not _poll(lambda p=pid: not _alive(p), 30):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                _poll(lambda p=pid: not _alive(p), 10)
        self._started.clear()


def _sbin(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _poll(pred: Callable[[], Any], timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(interval)
    return False
