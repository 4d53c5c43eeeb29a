"""Drivers for the scenarios that need real training runs (tiny model, CPU, accelerate).

A training run costs ~30 s of start-up on the shared 2-core box, so the suite starts every
selected scenario's runs at once (one thread per driver, see ``conftest.fleet``) and each
test then checks its driver's observations. A driver does the things a user or a fault
would do (launch, kill, pull the terminal, fill the disk) and records what it saw; trials
are recorded in a :class:`TrialLog` whose failures the test turns into assertion errors.
Every driver kills whatever of its runs is left when it ends, pass or fail.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from .helpers import (
    assert_no_survivors,
    cli_env,
    kill_run_processes,
    loss_steps,
    manifest,
    stdout_tail,
    tunedeck,
    wait_for,
)

RUN_TIMEOUT = 420.0   # start-up of several runs at once on 2 shared cores; never a speed claim
ACTIVE = ("starting", "running", "stopping")

# Known secrets planted in the observed run (config keys and environment).
SECRETS = {
    "hf_hub_token": "hf_RELIABILITYtestSECRETconfig0001",
    "swanlab_api_key": "swanRELIABILITYsecretKEY0002",
    "hub_token": "hf_RELIABILITYhubTOKENconfig0006",
    "SWANLAB_API_KEY": "swanENVsecretRELIABILITY0003",
    "WANDB_API_KEY": "wandbENVsecretRELIABILITY0004",
    "HF_TOKEN": "hf_ENVsecretRELIABILITY0005",
}


# -----------------------------------------------------------------------------------------
# Trial bookkeeping
# -----------------------------------------------------------------------------------------
@dataclass
class TrialOutcome:
    ok: bool
    lost: bool
    label: str
    error: str = ""


@dataclass
class TrialLog:
    trials: list[TrialOutcome] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    @contextlib.contextmanager
    def trial(self, label: str) -> Iterator[dict[str, bool]]:
        flags = {"lost": False}
        try:
            yield flags
        except Exception:  # noqa: BLE001 - recorded, reported by the test
            self.trials.append(TrialOutcome(False, flags["lost"], label, traceback.format_exc()))
        else:
            self.trials.append(TrialOutcome(not flags["lost"], flags["lost"], label))

    def failures(self) -> list[TrialOutcome]:
        return [t for t in self.trials if not t.ok]


@dataclass
class Ctx:
    """What a driver gets: a fresh directory, the config factory, the trial counts."""

    base: Path
    make_config: Callable[..., Path]
    soak: bool
    seed: int
    base_env: dict[str, str]  # os.environ as it was when the fleet started (threads never read it)

    def n(self, ci: int, soak: int) -> int:
        return soak if self.soak else ci

    def env(self, **extra: str) -> dict[str, str]:
        return cli_env(self.base / "home", self.base_env, **extra)


# -----------------------------------------------------------------------------------------
# Small run helpers
# -----------------------------------------------------------------------------------------
def status_of(run: str | Path, env: dict[str, str]) -> dict[str, Any]:
    res = tunedeck(["status", str(run), "--json"], env, timeout=120)
    assert res.returncode == 0, f"status failed: {res.stderr}"
    try:
        return dict(json.loads(res.stdout))
    except ValueError:
        raise AssertionError(f"status --json printed no JSON: stdout {res.stdout[:300]!r}, "
                             f"stderr {res.stderr[-500:]!r}") from None


def launch(cfg: Path, env: dict[str, str], *extra: str, cwd: Path | None = None) -> str:
    res = tunedeck(["launch", str(cfg), *extra], env, cwd=cwd, timeout=RUN_TIMEOUT)
    assert res.returncode == 0, f"launch failed ({res.returncode}): {res.stderr}"
    return res.stdout.strip().splitlines()[0]


def wait_status(run_dir: Path, pred: Callable[[str], bool], what: str, timeout: float = RUN_TIMEOUT) -> str:
    def check() -> str | None:
        st = manifest(run_dir).get("status")
        return st if isinstance(st, str) and pred(st) else None

    try:
        return str(wait_for(check, timeout, what, poll=0.2))
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- stdout.log ---\n{stdout_tail(run_dir)}") from None


def wait_ended(run_dir: Path, timeout: float = RUN_TIMEOUT) -> str:
    """Wait for the supervisor to record an end (the computed status for a lost run too)."""
    return wait_status(run_dir, lambda s: s not in ACTIVE, "the run to end", timeout)


def wait_steps(run_dir: Path, n: int, timeout: float = RUN_TIMEOUT) -> list[int]:
    """Wait for ``n`` logged loss steps; fail at once (with the log) if the run ends first."""
    def check() -> list[int] | None:
        steps = loss_steps(run_dir)
        if len(steps) >= n:
            return steps
        st = manifest(run_dir).get("status")
        if isinstance(st, str) and st not in ACTIVE:
            raise AssertionError(f"the run ended ({st}) after {len(steps)} of {n} steps\n"
                                 f"--- stdout.log ---\n{stdout_tail(run_dir)}")
        return None

    try:
        return list(wait_for(check, timeout, f"{n} logged steps", poll=0.2))
    except AssertionError as exc:
        if "--- stdout.log ---" in str(exc):
            raise
        raise AssertionError(f"{exc}\n--- stdout.log ---\n{stdout_tail(run_dir)}") from None


def trainer_pid(run_dir: Path) -> int | None:
    """The rank-0 training process: the manifest's trainer itself when one process runs without
    a launcher, else the launcher's direct child running ``tunedeck.runner.train``.

    (The manifest's "worker" role also covers processes the trainer forked, e.g. the
    tokenizer's pool, whose command line is the trainer's.)
    """
    launcher = manifest(run_dir).get("trainer") or {}
    try:
        top = psutil.Process(int(launcher["pid"]))
        cmd = " ".join(top.cmdline())
        if "tunedeck.runner.train" in cmd and "accelerate" not in cmd:
            return top.pid
        kids = top.children()
    except (KeyError, TypeError, ValueError, psutil.Error):
        return None
    for k in kids:
        with contextlib.suppress(psutil.Error):
            if "tunedeck.runner.train" in " ".join(k.cmdline()) and k.status() != psutil.STATUS_ZOMBIE:
                return k.pid
    return None


def worker_pids(run_dir: Path) -> list[int]:
    """The ``python -m tunedeck.runner.train`` processes of a run (not accelerate's launcher)."""
    out = []
    for p in manifest(run_dir).get("procs") or []:
        if p.get("role") == "worker":
            out.append(int(p["pid"]))
    return out


def stop_and_check(run: str, run_dir: Path, env: dict[str, str], timeout: float = 120) -> dict[str, Any]:
    """``tunedeck stop`` then the psutil check (every stop in the suite goes through here)."""
    res = tunedeck(["stop", run, "--timeout", str(timeout), "--json"], env, timeout=timeout + 120)
    assert "Traceback" not in res.stderr, res.stderr
    data = json.loads(res.stdout) if res.stdout.strip().startswith("{") else {}
    assert_no_survivors(run_dir, [manifest(run_dir).get("id", "")])
    return {"code": res.returncode, "stderr": res.stderr, **data}


# -----------------------------------------------------------------------------------------
# A terminal for the TUI / watch: a real pty as the controlling terminal of a new session
# -----------------------------------------------------------------------------------------
PTY_CHILD = r"""
import os, sys
os.setsid()
fd = os.open(sys.argv[1], os.O_RDWR)  # first tty a session leader opens: its controlling terminal
for i in (0, 1, 2):
    os.dup2(fd, i)
if fd > 2:
    os.close(fd)
os.execv(sys.executable, [sys.executable, "-m", "tunedeck.runner.cli", *sys.argv[2:]])
"""


class Terminal:
    """``tunedeck ARGS`` in a pty it owns as controlling terminal; the output is drained."""

    def __init__(self, args: list[str], env: dict[str, str], cols: int = 120, rows: int = 40) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        name = os.ttyname(slave)
        env = {**env, "TERM": "xterm-256color"}
        env.pop("NO_COLOR", None)
        env.pop("COLUMNS", None)
        self.proc = subprocess.Popen([sys.executable, "-c", PTY_CHILD, name, *args], env=env,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, close_fds=True)
        # Kept open until close(): with no slave open at all, reading the master fails with
        # EIO at once (before the child has opened its end).
        self._slave = slave
        self.output = bytearray()
        self._lock = threading.Lock()
        self._closed = False
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                return
            if not chunk:
                return
            with self._lock:
                self.output += chunk
                if len(self.output) > 4 << 20:
                    del self.output[: len(self.output) - (1 << 20)]

    def seen(self, needle: bytes) -> bool:
        with self._lock:
            return needle in self.output

    def hang_up(self) -> None:
        """Close the terminal: the kernel sends SIGHUP to the session (an SSH link dropping)."""
        if not self._closed:
            self._closed = True
            os.close(self.master)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)

    def gone(self, timeout: float) -> bool:
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def close(self) -> None:
        self.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=30)
        self.hang_up()
        with contextlib.suppress(OSError):
            os.close(self._slave)


# -----------------------------------------------------------------------------------------
# Driver: the observed run (TUI/watch killed and hung up; secrets; permissions; odd path)
# -----------------------------------------------------------------------------------------
def drive_observed(ctx: Ctx) -> TrialLog:
    log = TrialLog()
    rng = random.Random(ctx.seed)
    root = ctx.base / "runs"
    # Spaces, quotes and shell metacharacters in the run directory: handled as data end to end.
    out = root / "obs run 'q' \"dq\" $(touch PWNED) ;&|"
    steps = 200 if ctx.soak else 60  # long enough that the kills land while the loss is being written
    cfg = ctx.make_config(ctx.base, output_dir=str(out), max_steps=steps, save_steps=10,
                          hf_hub_token=SECRETS["hf_hub_token"], swanlab_api_key=SECRETS["swanlab_api_key"],
                          hub_token=SECRETS["hub_token"])
    env = ctx.env(SWANLAB_API_KEY=SECRETS["SWANLAB_API_KEY"], WANDB_API_KEY=SECRETS["WANDB_API_KEY"],
                  HF_TOKEN=SECRETS["HF_TOKEN"], TUNEDECK_FAULT="slow@0.4")
    log.data.update(run_dir=out, root=root, env=env, cfg=cfg, steps=steps)
    try:
        # Launched under the umask many shared boxes use (002: group-writable by default).
        res = subprocess.run(
            [sys.executable, "-c", "import os, sys; os.umask(0o002); from tunedeck.runner.cli import main; "
             "sys.exit(main(sys.argv[1:]))", "launch", str(cfg), "--name", "observed"],
            env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT, stdin=subprocess.DEVNULL)
        assert res.returncode == 0, res.stderr
        log.data["launch_output"] = res.stdout + res.stderr
        run_id = res.stdout.strip().splitlines()[0]
        log.data["run_id"] = run_id
        kills = ctx.n(3, 10)
        wait_steps(out, 1)  # the trainer is writing its loss curve from now on
        plan = [("tui", signal.SIGKILL), ("tui", "hangup"), ("watch", signal.SIGKILL),
                ("watch", "hangup")]
        during = 0
        for i in range(kills):
            kind, how = plan[i % len(plan)]
            label = f"{kind} {'SIGKILL' if how == signal.SIGKILL else 'hang-up (SIGHUP)'} #{i + 1}"
            with log.trial(label):
                args = (["--root", str(root)] if kind == "tui" else
                        ["watch", "--root", str(root), "--interval", "0.5"])
                term = Terminal(args, env)
                try:
                    needle = b"observed"
                    wait_for(lambda t=term, nd=needle: t.seen(nd) or t.proc.poll() is not None, 120,  # type: ignore[misc]
                             f"the {kind} to show the run")
                    assert term.proc.poll() is None, f"the {kind} exited by itself: {bytes(term.output[-500:])!r}"
                    time.sleep(rng.uniform(0.2, 2.5))  # a random moment: the fault, not synchronisation
                    if manifest(out).get("status") in ACTIVE:
                        during += 1
                    if how == "hangup":
                        term.hang_up()
                        assert term.gone(30), f"the {kind} kept running after its terminal went away"
                    else:
                        term.kill()
                        assert term.gone(30)
                finally:
                    term.close()
                # The run did not notice: still going (or ended on its own), never failed by this.
                st = manifest(out).get("status")
                assert st in (*ACTIVE, "finished"), f"the run is {st} after the {kind} was killed"
        log.notes.append(f"{kills} TUI/watch kills, {during} while the run was active")
        log.data["status"] = wait_ended(out)
        log.data["final"] = status_of(out, env)
        with log.trial("nothing of the finished run is left running"):
            assert_no_survivors(out, [run_id])
    finally:
        kill_run_processes(out, [log.data.get("run_id", "")])
    return log


# -----------------------------------------------------------------------------------------
# Driver: two launches on one output_dir at the same moment
# -----------------------------------------------------------------------------------------
RACER = r"""
import os, sys, time
ready, go = sys.argv[1], sys.argv[2]
sys.path.insert(0, os.getcwd())
from tunedeck.runner.cli import main  # imported before the start: the race is the launch itself
open(ready, "w").close()
while not os.path.exists(go):  # both racers spin on the same file: they start within a tick
    time.sleep(0.0005)
sys.exit(main(sys.argv[3:]))
"""


def drive_race(ctx: Ctx) -> TrialLog:
    log = TrialLog()
    env = ctx.env(TUNEDECK_FAULT="slow@0.5")
    for i in range(ctx.n(3, 10)):
        d = ctx.base / f"race{i}"
        d.mkdir(parents=True)
        cfg = ctx.make_config(d, max_steps=50)
        out = d / "out"
        go = d / "go"
        procs = [subprocess.Popen([sys.executable, "-c", RACER, str(d / f"ready{k}"), str(go), "launch", str(cfg)],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(d))
                 for k in range(2)]
        run_id = ""
        with log.trial(f"race {i + 1}"):
            try:
                ready = [d / f"ready{k}" for k in range(2)]
                wait_for(lambda r=ready: all(x.exists() for x in r), 120, "both launchers ready",  # type: ignore[misc]
                         poll=0.01)
                go.touch()
                results = [(p.wait(timeout=RUN_TIMEOUT), *p.communicate()) for p in procs]
            finally:
                for p in procs:
                    if p.poll() is None:
                        p.kill()
                        p.wait()
            codes = sorted(r[0] for r in results)
            assert codes == [0, 4], f"want one launch and one refusal (exit 4), got {results}"
            winner = next(r for r in results if r[0] == 0)
            loser = next(r for r in results if r[0] == 4)
            run_id = winner[1].strip().splitlines()[0]
            assert "in use by another tunedeck run" in loser[2] or "still active" in loser[2], loser[2]
            assert "Traceback" not in loser[2] and loser[2].startswith("tunedeck: error:"), loser[2]
            m = manifest(out)
            assert m.get("id") == run_id and len(m.get("attempts") or []) == 1, m
            # Exactly one supervisor for this output_dir.
            sups = [p for p in psutil.process_iter(["cmdline"])
                    if "tunedeck.runner.control.supervisor" in " ".join(p.info["cmdline"] or []) and
                    any(str(out) in a for a in (p.info["cmdline"] or []))]
            assert len(sups) == 1, [p.pid for p in sups]
            log.data.setdefault("refusals", []).append(loser[2].strip().splitlines()[0].split(": ", 2)[-1])
            res = stop_and_check(run_id, out, env)
            assert res.get("status") in ("stopped",), res
        kill_run_processes(out, [run_id])
    return log


# -----------------------------------------------------------------------------------------
# Driver: SIGKILL to the trainer in the middle of writing a checkpoint
# -----------------------------------------------------------------------------------------
SAVE_POINTS = ("dir created", "weights written", "optimizer written", "trainer_state written", "random offset")


def _ck_files(ck: Path) -> list[str]:
    try:
        return sorted(os.listdir(ck))
    except OSError:
        return []


def _complete(files: list[str]) -> bool:
    have = set(files)
    return ("checkpoint-is-incomplete.txt" not in have and "trainer_state.json" in have
            and bool(have & {"adapter_model.safetensors", "model.safetensors"}))


def drive_checkpoint_kill(ctx: Ctx, point: str, auto_restart: bool) -> TrialLog:
    log = TrialLog()
    rng = random.Random(ctx.seed)
    d = ctx.base
    out = d / "out"
    # The narrowest point (state written, marker not yet removed) runs with save_total_limit: 1,
    # so transformers' rotation of older checkpoints happens inside the window too.
    limit = {"save_total_limit": 1} if point == "trainer_state written" else {}
    cfg = ctx.make_config(d, max_steps=12, save_steps=4, **limit)
    # Steps slow enough that the run cannot finish before the poll (a thread among others,
    # under the GIL) has seen checkpoint-8; the save itself is not slowed.
    env = ctx.env(TUNEDECK_FAULT="slow@0.5")
    run_id = ""
    try:
        extra = ("--max-restarts", "1") if auto_restart else ()
        run_id = launch(cfg, env, *extra)
        target = out / "checkpoint-8"
        wait_steps(out, 5)
        worker = wait_for(lambda: trainer_pid(out), 120, "the trainer's pid")
        want = {"weights written": "adapter_model.safetensors", "optimizer written": "optimizer.pt",
                "trainer_state written": "trainer_state.json"}.get(point)
        deadline = time.monotonic() + RUN_TIMEOUT
        # Watch for the checkpoint directory as closely as a poll can (1 ms).
        while not target.exists():
            assert time.monotonic() < deadline, "checkpoint-8 never appeared"
            time.sleep(0.001)
        if want:
            while want not in _ck_files(target) and not _complete(_ck_files(target)):
                assert time.monotonic() < deadline
                time.sleep(0.0005)
        elif point == "random offset":
            time.sleep(rng.uniform(0.0, 0.08))
        os.kill(worker, signal.SIGSTOP)  # freeze it where it is, look, then kill
        files = _ck_files(target)
        ended_first = (out / "trainer_exit.json").exists()
        os.kill(worker, signal.SIGKILL)
        assert not ended_first, "the trainer had already finished when the kill came (too slow a poll)"
        complete_at_kill = _complete(files)
        log.data.update(point=point, files=files, complete_at_kill=complete_at_kill)
        expected = "checkpoint-8" if complete_at_kill else "checkpoint-4"
        label = f"kill at '{point}' ({'complete' if complete_at_kill else 'incomplete'} checkpoint-8)"
        with log.trial(label) as t:
            if auto_restart:
                # The supervisor restarts by itself from the newest complete checkpoint.
                wait_status(out, lambda s: s not in ACTIVE or len(manifest(out).get("attempts") or []) > 1,
                            "the automatic restart")
                attempts = manifest(out).get("attempts") or []
                assert len(attempts) == 2, attempts
                chosen = Path(str(attempts[1].get("resume_from") or "")).name
            else:
                end = wait_ended(out)
                assert end == "killed", f"a SIGKILLed trainer should be 'killed', not {end}"
                res = tunedeck(["resume", run_id, "--from", "latest", "--json"], env, timeout=RUN_TIMEOUT)
                assert res.returncode == 0, res.stderr
                chosen = Path(json.loads(res.stdout)["checkpoint"]).name
            if chosen != expected:
                t["lost"] = not complete_at_kill  # resuming from a half-written checkpoint
            assert chosen == expected, f"resumed from {chosen}, the newest complete one was {expected}"
            final = wait_ended(out)
            assert final == "finished", f"the resumed run ended {final}\n{stdout_tail(out)}"
            st = status_of(out, env)
            assert st["current_steps"] == st["total_steps"] == 12, st
            steps = loss_steps(out)
            assert steps[-1] == 12 and set(range(1, 13)) <= set(steps), steps
            cks = {c["step"]: c["complete"] for c in st["checkpoints"]}
            kept = (12,) if limit else (4, 8, 12)  # save_total_limit: 1 keeps the newest only
            assert sorted(cks) == list(kept) and all(cks.values()), cks
            log.data["resumed_from"] = chosen
        assert_no_survivors(out, [run_id])
    finally:
        kill_run_processes(out, [run_id])
    return log


# -----------------------------------------------------------------------------------------
# Driver: 2-process (gloo) runs: the normal stop, and the supervisor killed
# -----------------------------------------------------------------------------------------
def _dead(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _two_rank_run(d: Path, env: dict[str, str], make_config: Callable[..., Path]) -> tuple[str, Path]:
    """A 2-process CPU (gloo) run, training (both ranks up, steps being logged)."""
    d.mkdir(parents=True, exist_ok=True)
    out = d / "out"
    cfg = make_config(d, max_steps=200, save_steps=100)
    run_id = launch(cfg, env, "--num-processes", "2")
    wait_steps(out, 3)
    wait_for(lambda: len(worker_pids(out)) == 2, 60, "two ranks in the manifest")
    return run_id, out


def _two_rank_trials(ctx: Ctx, what: str, check: Callable[[str, Path, dict[str, str], dict[str, bool], TrialLog], None]) -> TrialLog:
    """``ctx.n(1, 3)`` trials of ``what``, each on a fresh 2-process run (slow@0.3 steps) that
    ``check(run_id, out, env, trial_flags, log)`` drives; nothing of the run is left alive after."""
    log = TrialLog()
    env = ctx.env(TUNEDECK_FAULT="slow@0.3")
    for i in range(ctx.n(1, 3)):
        out, run_id = ctx.base / f"t{i}" / "out", ""
        try:
            with log.trial(f"{what} #{i + 1}") as t:
                run_id, out = _two_rank_run(ctx.base / f"t{i}", env, ctx.make_config)
                check(run_id, out, env, t, log)
        finally:
            kill_run_processes(out, [run_id])
    return log


def drive_gloo_stop(ctx: Ctx) -> TrialLog:
    def check(run_id: str, out: Path, env: dict[str, str], t: dict[str, bool], log: TrialLog) -> None:
        res = stop_and_check(run_id, out, env)
        assert res.get("status") == "stopped" and res.get("stopped_cleanly"), res
        st = status_of(out, env)
        ck = st.get("latest_checkpoint")
        if not ck:
            t["lost"] = True
        assert ck, st
        log.data["checkpoint"] = Path(ck).name

    return _two_rank_trials(ctx, "stop a 2-process run", check)


def drive_gloo_finish(ctx: Ctx) -> TrialLog:
    """2-process runs left to finish: every worker must leave on its own.

    torch's gloo/DDP destructors could deadlock a worker at interpreter exit (about one
    run in twenty on this box under load); the supervisor's exit watchdog would then
    end it after a grace period and say so in the message, which this counts as a failure.
    """
    log = TrialLog()
    env = ctx.env()
    for i in range(ctx.n(1, 20)):
        out, run_id = ctx.base / f"t{i}" / "out", ""
        try:
            with log.trial(f"2-process run left to finish #{i + 1}"):
                d = ctx.base / f"t{i}"
                d.mkdir(parents=True, exist_ok=True)
                out = d / "out"
                run_id = launch(ctx.make_config(d, max_steps=6, save_steps=3), env, "--num-processes", "2")
                status = wait_ended(out)
                m = manifest(out)
                assert status == "finished", f"ended {status}: {m.get('message')}\n{stdout_tail(out)}"
                assert "had not exited" not in str(m.get("message")), m.get("message")
                assert_no_survivors(out, [run_id])
        finally:
            kill_run_processes(out, [run_id])
    return log


def drive_supervisor_kill(ctx: Ctx) -> TrialLog:
    def check(run_id: str, out: Path, env: dict[str, str], t: dict[str, bool], log: TrialLog) -> None:
        sup = manifest(out)["supervisor"]
        assert abs(psutil.Process(sup["pid"]).create_time() - sup["create_time"]) < 0.5
        os.kill(sup["pid"], signal.SIGKILL)
        wait_for(lambda: _dead(sup["pid"]), 30, "the supervisor to die")
        st = status_of(out, env)
        assert st["status"] == "lost", f"a run without its supervisor shows {st['status']}"
        runs = json.loads(tunedeck(["runs", "--json"], env, timeout=120).stdout)
        assert [r["status"] for r in runs if r["id"] == run_id] == ["lost"], runs
        # The trainer keeps training meanwhile (nobody told it anything).
        before = len(loss_steps(out))
        wait_for(lambda: len(loss_steps(out)) > before, 120, "training to go on without the supervisor")
        res = stop_and_check(run_id, out, env)
        assert res.get("status") == "stopped", res
        st = status_of(out, env)
        assert st["status"] == "stopped", st
        if not st.get("latest_checkpoint"):
            t["lost"] = True
        assert st.get("latest_checkpoint"), "the trainer did not save a checkpoint on the stop"
        log.data["message"] = st.get("message")

    return _two_rank_trials(ctx, "supervisor SIGKILLed, then tunedeck stop", check)


# -----------------------------------------------------------------------------------------
# Driver: the disk fills up while a checkpoint is saved
# -----------------------------------------------------------------------------------------
def _mount_tmpfs(where: Path, size_kib: int) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None:
        return False
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k,mode=0755", "tmpfs", str(where)],
                         capture_output=True, text=True)
    return res.returncode == 0


def _fill(where: Path, leave: int) -> Path:
    """Fill the filesystem of ``where`` so that about ``leave`` bytes stay free."""
    st = os.statvfs(where)
    free = st.f_bavail * st.f_frsize
    filler = where / "filler.bin"
    with open(filler, "wb") as fh:
        try:
            fh.write(b"\0" * max(0, free - leave))
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
    return filler


def drive_disk_full(ctx: Ctx) -> TrialLog:
    log = TrialLog()
    d = ctx.base
    mnt = d / "small-disk"
    mounted = _mount_tmpfs(mnt, 8 * 1024)
    log.data["mode"] = "tmpfs" if mounted else "simulated"
    out = mnt / "out" if mounted else d / "out"
    env = ctx.env(TUNEDECK_FAULT="slow@0.3")
    run_id = ""
    try:
        with log.trial("disk full while saving checkpoint-8") as t:
            if mounted:
                cfg = ctx.make_config(d, output_dir=str(out), max_steps=12, save_steps=4)
                run_id = launch(cfg, env)
                wait_for(lambda: (out / "checkpoint-4").is_dir() and _complete(_ck_files(out / "checkpoint-4")),
                         RUN_TIMEOUT, "checkpoint-4 to be complete")
                # Room for log lines, not for the next checkpoint (~350 KB of weights + optimizer).
                _fill(mnt, 96 * 1024)
                log.notes.append("a real full disk: 8 MiB tmpfs filled after checkpoint-4")
            else:
                # No mount allowed: the run reaches checkpoint-4, then is resumed with the fault
                # switch that makes the next save raise ENOSPC (the same code path, simulated).
                cfg = ctx.make_config(d, max_steps=4, save_steps=4)
                run_id = launch(cfg, env)
                assert wait_ended(out) == "finished"
                env = {**env, "TUNEDECK_FAULT": "enospc@save"}
                res = tunedeck(["resume", run_id, "max_steps=12"], env, timeout=RUN_TIMEOUT)
                assert res.returncode == 0, res.stderr
                log.notes.append("SIMULATED: mount not permitted, TUNEDECK_FAULT=enospc@save")
            end = wait_ended(out)
            st = status_of(out, env)
            log.data["final"] = st
            assert end == "failed", f"a full disk should end the run as failed, not {end}\n{stdout_tail(out)}"
            msg = (st.get("message") or "").lower()
            assert "disk" in msg or "space" in msg, f"the message does not name the disk: {st.get('message')!r}"
            tri = tunedeck(["triage", run_id, "--json"], env, timeout=120)
            assert tri.returncode == 0, tri.stderr
            kinds = [dg.get("kind") for dg in json.loads(tri.stdout)["diagnoses"]]
            log.data["triage"] = kinds
            assert kinds and kinds[0] == "disk_full", f"triage says {kinds}"
            cks = {c["step"]: c["complete"] for c in st["checkpoints"]}
            if not cks.get(4):
                t["lost"] = True
            assert cks.get(4), f"checkpoint-4 was damaged: {cks}"
            assert_no_survivors(out, [run_id])
    finally:
        kill_run_processes(out, [run_id])
        if mounted:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
    return log


DRIVERS: dict[str, Callable[[Ctx], TrialLog]] = {
    "observed": drive_observed,
    "race": drive_race,
    "ckpt_kill_dir": lambda c: drive_checkpoint_kill(c, "dir created", auto_restart=False),
    "ckpt_kill_weights": lambda c: drive_checkpoint_kill(c, "weights written", auto_restart=True),
    "ckpt_kill_optimizer": lambda c: drive_checkpoint_kill(c, "optimizer written", auto_restart=False),
    "ckpt_kill_state": lambda c: drive_checkpoint_kill(c, "trainer_state written", auto_restart=True),
    "ckpt_kill_random": lambda c: drive_checkpoint_kill(c, "random offset", auto_restart=False),
    "gloo_stop": drive_gloo_stop,
    "gloo_finish": drive_gloo_finish,
    "supervisor_kill": drive_supervisor_kill,
    "disk_full": drive_disk_full,
}
# The checkpoint-kill points run in CI (each costs a run and a resume); --soak runs them all.
CI_CKPT_POINTS = ("ckpt_kill_dir", "ckpt_kill_weights")

