"""Alerts: the supervisor tells a run's owner when it ends, fails, stalls or idles.

Destinations are `apprise <https://github.com/caronc/apprise>`_ URLs (Slack, Discord,
Telegram, ntfy, email, ``json://host/path`` webhooks...) from ``$TUNEDECK_NOTIFY``
(space or comma separated) and the ``notify`` key of ``settings.json`` (a string or a
list). We write no per-service code.

A notifier never harms the run: messages go through a queue to one background thread,
each delivery is tried a few times (with a back-off) and then dropped with a log line;
nothing here raises into the supervisor's loop, and apprise is imported only there.
"""

from __future__ import annotations

import contextlib
import os
import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NOTIFY_ENV = "TUNEDECK_NOTIFY"
STALL_FACTOR_ENV = "TUNEDECK_STALL_FACTOR"      # no step for N x the median step interval
STALL_SECONDS_ENV = "TUNEDECK_STALL_SECONDS"    # or a fixed number of seconds (overrides N)
IDLE_MINUTES_ENV = "TUNEDECK_IDLE_MINUTES"      # GPUs at 0% while holding memory for M minutes
DEFAULT_STALL_FACTOR = 10.0
MIN_STALL_SECONDS = 120.0   # the N x median rule never fires sooner than this
DEFAULT_IDLE_MINUTES = 15.0
IDLE_UTIL_PCT = 2           # at or below this utilisation a GPU counts as idle
RETRIES = 3
RETRY_BACKOFF = 1.0         # seconds, doubled each retry

# Statuses that end a run and are worth a message (a stop the user asked for is not).
ALERT_STATUSES = frozenset({"finished", "failed", "oom", "diverged", "killed", "preempted", "lost"})


def settings_path() -> Path:
    """The user settings file the TUI also uses (``$TUNEDECK_HOME/settings.json``, else
    ``$XDG_CONFIG_HOME/tunedeck/settings.json``)."""
    home = os.environ.get("TUNEDECK_HOME")
    if home:
        return Path(home).expanduser() / "settings.json"
    xdg = os.environ.get("XDG_CONFIG_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".config") / "tunedeck" / "settings.json"


def _settings() -> dict[str, Any]:
    from tunedeck.runner.fsutil import read_json

    data = read_json(settings_path())
    return data if isinstance(data, dict) else {}


def notify_urls(settings: dict[str, Any] | None = None) -> list[str]:
    """The apprise URLs to notify: ``$TUNEDECK_NOTIFY`` then ``settings.json``'s ``notify``."""
    urls: list[str] = []
    env = os.environ.get(NOTIFY_ENV, "")
    urls.extend(u for u in env.replace(",", " ").split() if u)
    cfg = (settings if settings is not None else _settings()).get("notify")
    if isinstance(cfg, str):
        cfg = cfg.replace(",", " ").split()
    if isinstance(cfg, list):
        urls.extend(str(u) for u in cfg if isinstance(u, str) and u.strip())
    seen: set[str] = set()
    return [u for u in urls if not (u in seen or seen.add(u))]  # type: ignore[func-returns-value]


def _float_setting(env: str, key: str, default: float | None) -> float | None:
    raw: Any = os.environ.get(env)
    if raw is None:
        raw = _settings().get(key)
    if raw is None:
        return default
    try:
        v = float(raw)
    except (TypeError, ValueError):
        return default
    return v if v > 0 and v == v and v != float("inf") else default


@dataclass(frozen=True)
class Alert:
    """One message: what happened to which run, and what to run next."""

    run_id: str
    run_name: str
    status: str          # finished | failed | oom | diverged | stalled | idle | started | test ...
    host: str
    last_loss: float | None = None
    step: int | None = None
    detail: str | None = None
    next_command: str | None = None

    @property
    def title(self) -> str:
        return f"tunedeck: {self.run_name} {self.status}"

    @property
    def body(self) -> str:
        loss = "-" if self.last_loss is None else f"{self.last_loss:.4f}"
        lines = [
            f"run: {self.run_name} ({self.run_id})",
            f"host: {self.host}",
            f"status: {self.status}",
            f"last loss: {loss}" + (f" at step {self.step}" if self.step is not None else ""),
        ]
        if self.detail:
            lines.append(f"detail: {self.detail}")
        if self.next_command:
            lines.append(f"next: {self.next_command}")
        return "\n".join(lines)


def next_command(status: str, ref: str) -> str:
    """What the owner most likely runs next."""
    if status in ("failed", "oom", "diverged", "stalled", "idle"):
        return f"tunedeck triage {ref}"
    if status in ("killed", "preempted", "lost"):
        return f"tunedeck resume {ref}"
    if status == "started":
        return f"tunedeck logs {ref} -f"
    return f"tunedeck status {ref}"


def make_alert(run_dir: Path, status: str, *, detail: str | None = None) -> Alert:
    """An alert for a run directory, with its newest loss read from the log."""
    from tunedeck.runner.rundir.runs import read_run

    snap = read_run(run_dir)
    ref = snap.id if snap.kind == "tunedeck" else str(run_dir)
    loss = snap.loss
    return Alert(
        run_id=snap.id,
        run_name=snap.name,
        status=status,
        host=snap.host or socket.gethostname(),
        last_loss=None if loss is None or loss != loss else loss,
        step=snap.current_steps,
        detail=detail if detail is not None else snap.message,
        next_command=next_command(status, ref),
    )


def deliver(urls: list[str], alert: Alert) -> bool:
    """Send once through apprise; True when every destination took it."""
    import apprise

    ap = apprise.Apprise()
    for u in urls:
        if not ap.add(u):
            raise ValueError(f"not an apprise URL: {u}")
    return bool(ap.notify(title=alert.title, body=alert.body))


@dataclass
class Notifier:
    """A queue and one daemon thread that delivers alerts with retries; never raises."""

    urls: list[str]
    log: Callable[[str], None] = print
    retries: int = RETRIES
    backoff: float = RETRY_BACKOFF
    sent: list[Alert] = field(default_factory=list)
    dropped: list[Alert] = field(default_factory=list)
    _q: queue.Queue[Alert | None] = field(default_factory=queue.Queue)
    _thread: threading.Thread | None = None

    def send(self, alert: Alert) -> None:
        if not self.urls:
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="tunedeck-notify", daemon=True)
            self._thread.start()
        self._q.put(alert)

    def _loop(self) -> None:
        while True:
            alert = self._q.get()
            try:
                if alert is None:
                    return
                self._deliver(alert)
            finally:
                self._q.task_done()

    def _deliver(self, alert: Alert) -> None:
        # Each destination on its own: a dead one is retried without repeating the
        # message to the others.
        ok = True
        for url in self.urls:
            ok = self._deliver_one(url, alert) and ok
        (self.sent if ok else self.dropped).append(alert)

    def _deliver_one(self, url: str, alert: Alert) -> bool:
        delay = self.backoff
        where = url.split("://", 1)[0] + "://..."
        for attempt in range(1, self.retries + 1):
            try:
                if deliver([url], alert):
                    self._log(f"notified {where}: {alert.title}")
                    return True
                why = "not accepted"
            except Exception as exc:  # a notifier's failure is never the run's
                why = f"{type(exc).__name__}: {exc}"
            if attempt < self.retries:
                self._log(f"notification {alert.title!r} to {where} failed ({why}); "
                          f"retry {attempt} of {self.retries - 1} in {delay:.0f}s")
                time.sleep(delay)
                delay *= 2
            else:
                self._log(f"notification {alert.title!r} to {where} dropped after "
                          f"{self.retries} attempts ({why})")
        return False

    def _log(self, text: str) -> None:
        with contextlib.suppress(Exception):
            self.log(text)

    def close(self, timeout: float = 60.0) -> bool:
        """Deliver what is queued (up to ``timeout`` seconds); True when nothing was left."""
        if self._thread is None:
            return True
        self._q.put(None)
        self._thread.join(timeout)
        return not self._thread.is_alive()


# ----------------------------------------------------------------------------
# Watching a live run: stalls and idle GPUs
# ----------------------------------------------------------------------------
class RunWatch:
    """Called from the supervisor's loop; reads the log's new records (one ``stat`` when
    nothing changed) and says once per attempt when the run stalls or idles its GPUs."""

    CHECK_EVERY = 1.0
    GPU_EVERY = 30.0

    def __init__(self, run_dir: Path, pids: Callable[[], list[int]] | None = None,
                 nvml: Any = None) -> None:
        from tunedeck.runner.rundir.logs import TrainerLogReader
        from tunedeck.runner.rundir.protocol import TRAINER_LOG

        self.reader = TrainerLogReader(run_dir / TRAINER_LOG)
        self.reader.poll(limit=0)  # what earlier attempts logged is not news
        self.pids = pids
        self.nvml = nvml
        self.factor = _float_setting(STALL_FACTOR_ENV, "stall_factor", DEFAULT_STALL_FACTOR)
        self.fixed = _float_setting(STALL_SECONDS_ENV, "stall_seconds", None)
        idle = _float_setting(IDLE_MINUTES_ENV, "idle_minutes", DEFAULT_IDLE_MINUTES)
        self.idle_s = (idle or DEFAULT_IDLE_MINUTES) * 60.0
        self.intervals: list[float] = []
        self.last_step: float | None = None
        self.last_step_at: float | None = None
        self.stalled = False
        self.idle_since: float | None = None
        self.idled = False
        self._next = 0.0
        self._next_gpu = 0.0

    def threshold(self) -> float | None:
        """Seconds without a step that count as a stall (None: not enough steps to tell)."""
        if self.fixed is not None:
            return self.fixed
        if not self.intervals:
            return None
        import statistics  # only here: it costs the supervisor's start ~10 ms

        return max(MIN_STALL_SECONDS, (self.factor or DEFAULT_STALL_FACTOR) * statistics.median(self.intervals))

    def tick(self, now: float) -> list[tuple[str, str]]:
        """``[(status, detail)]`` to alert about now (``stalled``/``idle``), each once."""
        if now < self._next:
            return []
        self._next = now + self.CHECK_EVERY
        out: list[tuple[str, str]] = []
        for rec in self.reader.poll(limit=None):
            step = rec.get("current_steps", rec.get("step"))
            if not isinstance(step, (int, float)) or isinstance(step, bool):
                continue
            if self.last_step is None or step > self.last_step:
                if self.last_step_at is not None:
                    self.intervals.append(now - self.last_step_at)
                    del self.intervals[:-200]
                self.last_step, self.last_step_at = step, now
        lim = self.threshold()
        if (not self.stalled and lim is not None and self.last_step_at is not None
                and now - self.last_step_at > lim):
            self.stalled = True
            out.append(("stalled", f"no step for {now - self.last_step_at:.0f}s after step "
                        f"{int(self.last_step or 0)} (threshold {lim:.0f}s)"))
        if self.pids is not None and now >= self._next_gpu and not self.idled:
            self._next_gpu = now + self.GPU_EVERY
            idle = self._gpus_idle()
            if idle is None or not idle:
                self.idle_since = None
            else:
                self.idle_since = self.idle_since or now
                if now - self.idle_since >= self.idle_s:
                    self.idled = True
                    out.append(("idle", idle))
        return out

    def _gpus_idle(self) -> str | None:
        """A description when every GPU the run holds memory on is idle; '' when busy; None
        when there is nothing to tell (no NVML, no memory held)."""
        from tunedeck.runner.monitor.nvml import get_nvml, pids_on_gpus

        assert self.pids is not None
        snap = (self.nvml or get_nvml()).snapshot()
        if not snap.available:
            return None
        held = pids_on_gpus(snap, self.pids())
        if not held:
            return None
        by_index = {g.index: g for g in snap.gpus}
        parts = []
        for idx, procs in sorted(held.items()):
            g = by_index.get(idx)
            if g is None or g.util_gpu is None or g.util_gpu > IDLE_UTIL_PCT:
                return ""
            used = sum(p.used_bytes or 0 for p in procs)
            parts.append(f"GPU {idx} at {g.util_gpu}% holding {used / 2**30:.1f} GiB")
        return ", ".join(parts) + f" for {self.idle_s / 60:.0f} min"
