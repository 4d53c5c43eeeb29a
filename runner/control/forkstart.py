"""Starting the detached supervisor as a fork of ``tunedeck launch`` instead of a new Python.

A fresh ``python -m tunedeck.runner.control.supervisor`` costs an interpreter start and
its imports (~0.1 s of CPU on an idle machine, several times that on a busy one) before
the trainer can start. The launcher has already imported nearly everything the supervisor
needs, so when it is the ``tunedeck`` command (a short-lived, single-threaded process
without torch) it forks instead, and the child becomes the supervisor as a spawned one
would: a new session (survives the terminal and SSH hang-ups), stdin from /dev/null,
stdout/stderr appended to ``stdout.log``, the caller's inherited descriptors closed
(a pipe the caller reads must see EOF when ``launch`` exits, not when the run ends), the
run's environment and working directory, and only the inherited lock descriptor kept.
The child never returns into the launcher's code: it runs the supervisor and ``_exit``s.

Anything else (the TUI, which has threads; a test calling ``launch()`` in-process; a
process that imported torch) spawns a fresh interpreter as before, and so does
``TUNEDECK_SUPERVISOR_FORK=0``. ``ps`` shows a forked supervisor with the command line of
the supervisor's own, ``python -m tunedeck.runner.control.supervisor RUN_DIR`` (rewritten
with ``setproctitle``), exactly as a spawned one, so ``ps``, ``pgrep -f`` and anything that
finds supervisors by their command line see no difference.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Mapping
from pathlib import Path

FORK_ENV = "TUNEDECK_SUPERVISOR_FORK"  # "0": always start a fresh interpreter
PROCESS_NAME = b"tunedeck-superv"     # /proc/PID/comm (15 bytes at most)
_allowed = False


def allow() -> None:
    """Called by the ``tunedeck`` commands that start runs: this process may fork it."""
    global _allowed
    _allowed = True


def may_fork() -> bool:
    if not _allowed or os.environ.get(FORK_ENV, "").strip() == "0" or not hasattr(os, "fork"):
        return False
    if any(m in sys.modules for m in ("torch", "textual")):
        return False  # the supervisor must not carry them (nor the threads they start)
    try:
        return len(os.listdir("/proc/self/task")) == 1  # no thread of any kind
    except OSError:
        return False  # not Linux: spawn


def fork_supervisor(run_dir: Path, lock_fd: int, env: Mapping[str, str], cwd: Path,
                    log_fd: int) -> int | None:
    """Fork the supervisor of ``run_dir``; its pid, or ``None`` when this process must not
    fork (the caller then spawns one). Raises OSError when the fork fails."""
    if not may_fork():
        return None
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()  # nothing buffered may be written twice
    pid = os.fork()
    if pid:
        return pid
    _become_supervisor(run_dir, lock_fd, env, cwd, log_fd)  # never returns
    raise AssertionError("unreachable")  # pragma: no cover


def _become_supervisor(run_dir: Path, lock_fd: int, env: Mapping[str, str], cwd: Path,
                       log_fd: int) -> None:
    code = 1
    try:
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(devnull)
        _close_inherited(keep=(0, 1, 2, lock_fd))
        _retitle(run_dir)
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
        import signal

        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1):
            signal.signal(sig, signal.SIG_DFL)  # the supervisor installs its own
        from tunedeck.runner.control.supervisor import main

        code = main([str(run_dir)])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        import traceback

        with contextlib.suppress(Exception):
            traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


def _retitle(run_dir: Path) -> None:
    """Show the supervisor's command line in ps, not the launcher's."""
    title = f"{sys.executable} -m tunedeck.runner.control.supervisor {run_dir}"
    try:
        import setproctitle

        setproctitle.setproctitle(title)
    except Exception:  # noqa: BLE001 - the title is cosmetic; fall back to the short name
        with contextlib.suppress(OSError), open("/proc/self/comm", "wb") as fh:
            fh.write(PROCESS_NAME)


def _close_inherited(keep: tuple[int, ...]) -> None:
    """Close the descriptors this process inherited from its caller (inheritable ones:
    the launcher's own are close-on-exec and owned by Python objects, left alone)."""
    try:
        fds = [int(n) for n in os.listdir("/proc/self/fd")]
    except OSError:
        return
    for fd in fds:
        if fd in keep:
            continue
        with contextlib.suppress(OSError):
            if os.get_inheritable(fd):
                os.close(fd)
