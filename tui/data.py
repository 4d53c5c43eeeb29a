"""Where the TUI does I/O through ``runner``: reading runs (through
:mod:`tunedeck.runner.rundir`), GPUs, logs, checkpoints, and the actions that change a run
(launch, stop, resume, apply a triage patch).

Everything here runs in thread workers and returns immutable snapshots that the widgets
render. Screens and widgets import ``runner`` only for its types, the schema and pure
helpers; anything that reads a file or starts a process goes through this module.
"""

from __future__ import annotations

import contextlib
import math
import re
import shutil
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunedeck.runner.rundir.protocol import FROZEN_CONFIG, STDOUT_LOG, RunStatus

# tunedeck.runner.config (ruamel.yaml), estimate, triage and control are imported inside the
# functions that need them: the dashboard's first frame should not wait for them.

# --------------------------------------------------------------------------------------
# Snapshots handed to the UI
# --------------------------------------------------------------------------------------

METRICS: tuple[tuple[str, str], ...] = (
    ("loss", "loss"),
    ("eval_loss", "eval loss"),
    ("lr", "learning rate"),
    ("grad_norm", "grad norm"),
    ("throughput", "tokens/s"),
)
SPARK_POINTS = 400  # enough for any sparkline width; the widget buckets further


@dataclass(frozen=True)
class Alert:
    """A banner-worthy problem with a run (what the dashboard shows in red)."""

    kind: str   # oom | diverged | failed | lost | stalled | disk | low_util
    text: str


@dataclass(frozen=True)
class MetricSeries:
    name: str
    values: tuple[float, ...]      # downsampled for display, NaN/inf removed
    last: float | None
    minimum: float | None
    count: int
    xy: tuple[tuple[float, ...], tuple[float, ...]] = ((), ())  # (steps, values) for the chart


@dataclass(frozen=True)
class RunsView:
    root: Path
    runs: tuple[Any, ...]          # tunedeck.runner.rundir.runs.RunSnapshot
    error: str | None = None
    taken_at: float = field(default_factory=time.time)
    queue: tuple[Any, ...] = ()    # tunedeck.runner.control.runqueue.QueueEntry not yet started
    queue_note: str = ""           # "paused" / "runner not running" / ""


@dataclass(frozen=True)
class RunDetail:
    run_dir: Path
    run: Any | None                # RunSnapshot
    series: Mapping[str, MetricSeries]
    log_tail: tuple[str, ...]
    checkpoints: tuple[Any, ...]   # tunedeck.runner.rundir.checkpoints.CheckpointInfo, newest first
    alerts: tuple[Alert, ...]
    taken_at: float = field(default_factory=time.time)
    has_stdout_log: bool = True    # False: the run directory has no stdout.log at all


@dataclass(frozen=True)
class GpuView:
    snapshot: Any                  # tunedeck.runner.monitor.nvml.GpuSnapshot
    history: Mapping[int, tuple[tuple[float, ...], tuple[float, ...]]]  # idx -> (vram %, util %)
    users: Mapping[int, tuple[tuple[str, int], ...]]                    # idx -> ((run name, bytes),)


@dataclass(frozen=True)
class EditorAnalysis:
    generation: int                 # which edit this answers (stale answers are dropped)
    findings: tuple[Any, ...]       # tunedeck.runner.config.validate.Finding
    estimate: Any | None            # tunedeck.runner.estimate.MemoryEstimate
    estimate_error: str | None
    memory_label: str               # where the GPU memory figure comes from
    yaml_text: str
    diff: tuple[str, ...]           # unified diff against the file on disk
    disk_changed: bool
    gpus_detected: bool | None = None  # asked NVML (no preset): did it find a GPU?


@dataclass(frozen=True)
class TriageView:
    run_dir: Path
    diagnoses: tuple[Any, ...]     # tunedeck.runner.triage.Diagnosis
    values: Mapping[str, Any]      # the frozen config the patches apply to
    error: str | None = None


# --------------------------------------------------------------------------------------
# GPUs
# --------------------------------------------------------------------------------------


def gpu_snapshot() -> Any:
    from tunedeck.runner.monitor.nvml import get_nvml

    return get_nvml().snapshot()


class GpuSampler:
    """Keeps a short VRAM/utilisation history per GPU. Used from one worker at a time."""

    def __init__(self, points: int = 120) -> None:
        self._vram: dict[int, deque[float]] = {}
        self._util: dict[int, deque[float]] = {}
        self._points = points

    def sample(self, runs: Sequence[Any] = ()) -> GpuView:
        snap = gpu_snapshot()
        for g in snap.gpus:
            v = self._vram.setdefault(g.index, deque(maxlen=self._points))
            u = self._util.setdefault(g.index, deque(maxlen=self._points))
            if g.mem_used is not None and g.mem_total:
                v.append(100.0 * g.mem_used / g.mem_total)
            if g.util_gpu is not None:
                u.append(float(g.util_gpu))
        history = {i: (tuple(self._vram[i]), tuple(self._util.get(i, ()))) for i in self._vram}
        from tunedeck.runner.rundir.procs import gpu_users

        return GpuView(snap, history, gpu_users(snap, runs))


# --------------------------------------------------------------------------------------
# Runs
# --------------------------------------------------------------------------------------


def list_runs(root: Path) -> RunsView:
    """Every registered run plus every run under ``root`` (one-off; the dashboard polls
    with :class:`RunsSampler`, which lists the same runs)."""
    return RunsSampler(root).sample()


class RunsSampler:
    """The dashboard's runs: ``list_runs`` with every registered run (the demo in the
    cache dir, a run launched into any directory) plus every run found under ``root``,
    each directory once. Polled: ended, unchanged runs are not read again
    (:class:`tunedeck.runner.rundir.runs.RunCache`). Used from one worker at a time."""

    def __init__(self, root: Path) -> None:
        from tunedeck.runner.rundir.runs import RunCache

        self.root = root
        self._cache = RunCache()

    def sample(self) -> RunsView:
        from tunedeck.runner.rundir import runs as runs_mod

        try:
            snaps = runs_mod.list_runs(self.root, cache=self._cache, every_registered=True)
            hidden = _archived()   # `tunedeck archive` hides a run from the dashboard
            snaps = [r for r in snaps if str(Path(r.run_dir).resolve()) not in hidden]
        except Exception as exc:  # noqa: BLE001 - a broken tree must not kill the dashboard
            return RunsView(self.root, (), error=f"cannot list runs under {self.root}: {exc}")
        queue, note = _queue()
        return RunsView(self.root, tuple(snaps), queue=queue, queue_note=note)


def _archived() -> set[str]:
    try:
        from tunedeck.runner.control.history import archived_dirs

        return archived_dirs()
    except Exception:  # noqa: BLE001 - the index is a convenience
        return set()


def _queue() -> tuple[tuple[Any, ...], str]:
    """Queue entries that have not started (and the ones that could not), for the dashboard."""
    try:
        from tunedeck.runner.control import runqueue as q

        waiting = tuple(e for e in q.load_entries() if e.state in ("queued", "starting", "invalid", "failed"))
        if not waiting:
            return (), ""
        note = "paused" if q.paused() else ("" if q.runner_info() else "runner not running")
        return waiting, note
    except Exception:  # noqa: BLE001
        return (), ""


def read_run(run_dir: Path) -> Any | None:
    from tunedeck.runner.rundir import runs as runs_mod

    try:
        return runs_mod.read_run(run_dir)
    except Exception:  # noqa: BLE001
        return None


def _finite(values: Sequence[float]) -> list[float]:
    return [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]


class RunDetailSampler:
    """Incremental readers for the selected run; only one worker uses it at a time.

    Each sample reads only what was appended. Per metric, the count, last and
    minimum are updated incrementally; the (downsampled) sparkline series is
    computed only for the metric on screen and only when its history grew, so a
    long run (a million log lines) costs the same per second as a short one.
    """

    def __init__(self) -> None:
        self._histories: dict[Path, Any] = {}
        self._ckpt: dict[Path, Any] = {}
        self._series: dict[tuple[Path, str], tuple[int, int, float | None, tuple[float, ...], Any]] = {}
        # The readers keep byte offsets: two threads polling one would read a chunk twice.
        # The app has one sample in flight; the lock covers a test's sample_once beside it.
        self._lock = threading.Lock()

    def forget(self, keep: set[Path]) -> None:
        with self._lock:
            self._forget(keep)

    def _forget(self, keep: set[Path]) -> None:
        for d in list(self._histories):
            if d not in keep:
                self._histories.pop(d, None)
                self._ckpt.pop(d, None)
                for key in [k for k in self._series if k[0] == d]:
                    self._series.pop(key, None)

    def history(self, run_dir: Path) -> Any:
        from tunedeck.runner.rundir.logs import RunHistory

        h = self._histories.get(run_dir)
        if h is None:
            h = self._histories[run_dir] = RunHistory(run_dir)
        return h

    def _metric(self, run_dir: Path, hist: Any, name: str, shown: bool) -> MetricSeries:
        from tunedeck.runner.rundir.logs import downsample

        vals = hist.values(name)
        n = len(vals)
        rewinds = getattr(hist, "rewinds", 0)
        cached = self._series.get((run_dir, name))
        if cached is not None and cached[1] == rewinds and cached[0] <= n:
            done, _, minimum, points, xy = cached
        else:
            done, minimum, points, xy = 0, None, (), ((), ())
        if n > done:  # fold in only what is new
            new_min = min((v for v in vals[done:] if math.isfinite(v)), default=None)
            if new_min is not None and (minimum is None or new_min < minimum):
                minimum = new_min
        if shown and (n != done or (not points and n)):
            from tunedeck.runner.chartdata import downsample_xy

            points = tuple(downsample(vals, SPARK_POINTS))
            xy = downsample_xy(hist.steps(name), vals, SPARK_POINTS)
        elif not shown:
            points = points if n == done else ()  # stale series are dropped, not shown
            xy = xy if n == done else ((), ())
        self._series[(run_dir, name)] = (n, rewinds, minimum, points, xy)
        last = next((vals[k] for k in range(n - 1, max(-1, n - 50), -1) if math.isfinite(vals[k])), None)
        return MetricSeries(name, points, last, minimum, n, xy)

    def sample(self, run_dir: Path, run: Any | None, gpus: Any | None = None,
               tail_lines: int = 60, metric: str = "loss") -> RunDetail:
        with self._lock:
            return self._sample(run_dir, run, gpus, tail_lines, metric)

    def _sample(self, run_dir: Path, run: Any | None, gpus: Any | None,
                tail_lines: int, metric: str) -> RunDetail:
        from tunedeck.runner.rundir import logs

        follower = self.history(run_dir)
        with contextlib.suppress(Exception):
            follower.poll()
        hist = follower.history
        # Eval loss is drawn on the loss chart's axes: sampled with it.
        series = {name: self._metric(run_dir, hist, name,
                                     shown=name == metric or (metric, name) == ("loss", "eval_loss"))
                  for name, _ in METRICS}
        try:
            tail = tuple(logs.tail_lines(run_dir / STDOUT_LOG, tail_lines))
        except Exception:  # noqa: BLE001
            tail = ()
        has_log = bool(tail) or (run_dir / STDOUT_LOG).exists()
        try:
            cks = self._checkpoints(run_dir, hist)
        except Exception:  # noqa: BLE001
            cks = ()
        alerts = run_alerts(run_dir, run, series, hist, cks, gpus)
        return RunDetail(run_dir, run, series, tail, cks, alerts, has_stdout_log=has_log)

    def _checkpoints(self, run_dir: Path, hist: Any) -> tuple[Any, ...]:
        from tunedeck.runner.rundir import checkpoints as ck

        watcher = self._ckpt.get(run_dir)
        if watcher is None:
            watcher = self._ckpt[run_dir] = ck.CheckpointWatcher(run_dir)
        return _newest_first(watcher.poll(hist))


def _newest_first(cks: Any) -> tuple[Any, ...]:
    return tuple(sorted(cks, key=lambda c: c.step, reverse=True))


def _status(run: Any | None) -> str:
    s = getattr(run, "status", None)
    return str(s.value if isinstance(s, RunStatus) else s or "")


def _stall(run_dir: Path, run: Any | None) -> Any | None:
    """THE stall rule (the one triage uses) on the end of the run's log."""
    from tunedeck.runner.rundir.health import stall_check
    from tunedeck.runner.rundir.logs import read_log_records

    try:
        records = read_log_records(run_dir, tail_bytes=STALL_TAIL_BYTES).records
    except Exception:  # noqa: BLE001 - a broken log must not kill the dashboard
        return None
    return stall_check(records, getattr(run, "last_log_age_s", None))


STALL_TAIL_BYTES = 128 * 1024  # enough records for the rule's medians


def run_alerts(run_dir: Path, run: Any | None, series: Mapping[str, MetricSeries], hist: Any,
               checkpoints: Sequence[Any], gpus: Any | None) -> tuple[Alert, ...]:
    """Cheap checks for the banner: OOM, divergence, failure, stall, disk, low GPU use."""
    out: list[Alert] = []
    status = _status(run)
    msg = getattr(run, "message", None) or ""
    if status == "oom":
        out.append(Alert("oom", "CUDA out of memory: press t for the fixes, smallest first."))
    elif status == "diverged":
        out.append(Alert("diverged", "Loss became NaN/inf: the run was stopped (t for triage)."))
    elif status in ("failed", "killed"):
        out.append(Alert("failed", f"Run {status}: {msg or 'see the log (l)'}"))
    elif status == "lost":
        out.append(Alert("lost", "Supervisor vanished without a final status: the run is lost."))
    if status in ("running", "starting"):
        stall = _stall(run_dir, run)
        if stall is not None and stall.stalled:
            out.append(Alert("stalled", f"No new log line for {stall.idle_s / 60:.0f} min "
                                        f"({stall.basis}): the run may be stalled."))
        with contextlib.suppress(Exception):
            from tunedeck.runner.rundir.checkpoints import disk_headroom

            head = disk_headroom(run_dir, sorted(checkpoints, key=lambda c: c.step))
            if head.low and head.message:
                out.append(Alert("disk", "Disk nearly full: " + head.message + "."))
        idx = list(getattr(run, "gpus", ()) or ())
        if gpus is not None and getattr(gpus, "available", False) and idx:
            utils = [g.util_gpu for g in gpus.gpus if g.index in idx and g.util_gpu is not None]
            if utils and max(utils) < 20 and status == "running":
                out.append(Alert("low_util", f"GPU utilisation is {max(utils)}%: the GPUs are "
                                             "waiting (data loading? try dataloader_num_workers)."))
    return tuple(out)


# --------------------------------------------------------------------------------------
# Checkpoints, logs
# --------------------------------------------------------------------------------------


def scan_checkpoints(run_dir: Path) -> tuple[Any, ...]:
    """Every checkpoint of a run, newest first, with loss/eval loss at its step."""
    from tunedeck.runner.rundir import checkpoints as ck
    from tunedeck.runner.rundir.logs import load_history

    return _newest_first(ck.scan_checkpoints(run_dir, load_history(run_dir)))


def delete_checkpoint(path: Path) -> None:
    """Remove one checkpoint directory (the caller confirmed it)."""
    from tunedeck.runner.rundir.checkpoints import checkpoint_step

    if checkpoint_step(path.name) is None or not path.is_dir():
        raise ValueError(f"{path} is not a checkpoint directory")
    shutil.rmtree(path)


MAX_LOG_BYTES = 32 * 1024 * 1024


def read_log(path: Path) -> tuple[list[str], int, bool]:
    """All lines of a log (its last 32 MiB when bigger), the end offset, truncated?"""
    try:
        size = path.stat().st_size
    except OSError:
        return [], 0, False
    start = max(0, size - MAX_LOG_BYTES)
    with open(path, "rb") as fh:
        fh.seek(start)
        data = fh.read(size - start)
    text = data.decode("utf-8", "replace")
    if start:
        text = text.split("\n", 1)[-1]
    return text.splitlines(), start + len(data), bool(start)


def read_log_from(path: Path, offset: int) -> tuple[list[str], int]:
    """Complete lines appended since ``offset`` and the new offset (follow mode)."""
    try:
        size = path.stat().st_size
    except OSError:
        return [], offset
    if size < offset:  # truncated or replaced: start over
        offset = 0
    if size == offset:
        return [], offset
    with open(path, "rb") as fh:
        fh.seek(offset)
        data = fh.read(min(size - offset, MAX_LOG_BYTES))
    cut = data.rfind(b"\n")
    if cut < 0:
        return [], offset
    return data[: cut + 1].decode("utf-8", "replace").splitlines(), offset + cut + 1


ERROR_RE = re.compile(
    r"Traceback \(most recent call last\)|out of memory|OutOfMemoryError|\bError\b|error:|"
    r"\bnan\b|\binf\b loss|Killed|FAILED|RuntimeError|ValueError",
    re.IGNORECASE,
)


# --------------------------------------------------------------------------------------
# Config editor
# --------------------------------------------------------------------------------------


def schema() -> Any:
    from tunedeck.runner.config import schema as s

    return s


def check_value(name: str, value: Any) -> str | None:
    from tunedeck.runner.config import validate

    try:
        return validate.check_value(name, value)
    except Exception as exc:  # noqa: BLE001 - a checker bug must not eat the keypress
        return str(exc)


def redact(values: Mapping[str, Any]) -> dict[str, Any]:
    return dict(schema().redact(dict(values)))


def secret_keys() -> set[str]:
    return {n for n, p in schema().PARAMS.items() if p.secret}


def analyse(generation: int, text: str, path: Path | None, *, num_gpus: int | None,
            gpu_mem_gib: float | None, memory_label: str) -> EditorAnalysis:
    """Validate, estimate and diff an editor buffer (the YAML it would save)."""
    import difflib

    from tunedeck.runner import estimate as est
    from tunedeck.runner.config import validate, yamlio

    source = str(path) if path else "<new config>"
    try:
        doc = yamlio.ConfigDoc.loads(text, source=source, path=path)
    except Exception as exc:  # noqa: BLE001 - the buffer is generated, but be safe
        return EditorAnalysis(generation, (), None, str(exc), memory_label, text, (), False)
    try:
        findings = tuple(validate.validate_doc(doc, check_files=True))
        err: str | None = None
    except Exception as exc:  # noqa: BLE001
        findings = ()
        err = f"validator failed: {exc}"
    values = doc.values()
    config_dir = path.parent if path else None
    estimate = None
    estimate_error = err
    try:
        estimate = est.estimate(values, config_dir=config_dir, num_gpus=num_gpus,
                                gpu_mem_gib=gpu_mem_gib, detect_gpus=gpu_mem_gib is None)
    except Exception as exc:  # noqa: BLE001 - e.g. no model shape: say so in the panel
        estimate_error = str(exc).splitlines()[0]
    gpus_detected: bool | None = None
    if gpu_mem_gib is None:
        if estimate is not None:
            gpus_detected = estimate.gpu_source.startswith("detected")
        else:
            gpus_detected = est.detect_gpu_memory() is not None
    disk_text = ""
    disk_changed = False
    if path is not None:
        try:
            disk_text = path.read_text(encoding="utf-8")
        except OSError:
            disk_text = ""
            disk_changed = path is not None and not path.exists()
    diff = tuple(
        difflib.unified_diff(
            _redact_yaml_lines(disk_text.splitlines()),
            _redact_yaml_lines(text.splitlines()),
            fromfile=f"{path.name if path else 'new'} (on disk)",
            tofile=f"{path.name if path else 'new'} (edited)",
            lineterm="",
        )
    )
    return EditorAnalysis(generation, findings, estimate, estimate_error, memory_label,
                          "\n".join(_redact_yaml_lines(text.splitlines())), diff, disk_changed,
                          gpus_detected)


def _redact_yaml_lines(lines: Sequence[str]) -> list[str]:
    """Mask the value of any secret key in YAML text meant for the screen."""
    keys = secret_keys()
    if not keys:
        return list(lines)
    pat = re.compile(r"^(\s*(?:" + "|".join(re.escape(k) for k in sorted(keys)) + r")\s*:\s*)(\S.*)$")
    return [pat.sub(lambda m: m.group(1) + "'***'", ln) for ln in lines]


def sample_config_paths() -> list[Path]:
    try:
        from tunedeck import sample_configs
    except ImportError:
        return []
    base = Path(sample_configs.__file__).resolve().parent
    return sorted(p for p in base.glob("*.yaml"))


def hardware_presets() -> list[Any]:
    from tunedeck.runner.config import presets

    return list(presets.HARDWARE_PRESETS.values())


# --------------------------------------------------------------------------------------
# Run control
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedLaunch:
    """What the launch modal shows: the exact command and where the run will go."""

    command: str          # shell-quoted, secrets redacted
    run_dir: Path
    env: tuple[str, ...]  # KEY=value lines added to the environment (redacted)
    notes: tuple[str, ...]
    trust_remote_code: bool
    model: str | None


def _override_strings(overrides: Mapping[str, Any]) -> list[str]:
    import json

    return [f"{k}={'null' if v is None else (v if isinstance(v, str) and v and _plain(v) else json.dumps(v))}"
            for k, v in overrides.items()]


def _plain(text: str) -> bool:
    return re.fullmatch(r"[A-Za-z0-9_./:@+-]+", text) is not None and text.lower() not in (
        "true", "false", "null", "yes", "no", "on", "off", "~")


def launch_plan(config_path: Path, overrides: Mapping[str, Any], gpus: Sequence[int] | None,
                *, text: str | None = None) -> PlannedLaunch:
    """The command a launch of ``config_path`` would run. ``text``: plan from this YAML (an
    editor's unsaved buffer, to be saved to ``config_path`` on confirm) instead of the file."""
    from tunedeck.runner.config import yamlio
    from tunedeck.runner.control import launch as launch_mod
    from tunedeck.runner.control.secrets import redact_env

    if text is None:
        doc = yamlio.ConfigDoc.load(config_path, _override_strings(overrides))
    else:
        doc = yamlio.ConfigDoc.loads(text, source=str(config_path), path=config_path)
        doc.apply(dict(overrides))
    values = doc.values()
    run_dir = launch_mod.resolve_output_dir(values, Path.cwd(), doc.source)
    plan = launch_mod.build_launch_plan(values, config_path=run_dir / FROZEN_CONFIG,
                                        gpus=list(gpus) if gpus else None)
    env = tuple(f"{k}={v}" for k, v in sorted(redact_env(plan.env).items()))
    return PlannedLaunch(plan.shell_command(redact=True), run_dir, env, tuple(plan.notes),
                         values.get("trust_remote_code") is True,
                         str(values.get("model_name_or_path") or "") or None)


def launch(config_path: Path, overrides: Mapping[str, Any], gpus: Sequence[int] | None,
           *, slurm: bool = False) -> Any:
    """Start a detached supervised run (or submit it to Slurm with the settings' defaults);
    returns runner's LaunchResult (run_dir, name, ...)."""
    from tunedeck.runner.control import launch as launch_mod

    if slurm:
        from tunedeck.runner.control.backends.slurm import (
            DEFAULT_MAX_RESTARTS,
            options_with_settings,
        )

        opts = launch_mod.LaunchOptions(max_restarts=DEFAULT_MAX_RESTARTS)
        return launch_mod.launch(config_path, _override_strings(overrides), opts,
                                 slurm=options_with_settings({}))
    opts = launch_mod.LaunchOptions(gpus=list(gpus) if gpus else None)
    return launch_mod.launch(config_path, _override_strings(overrides), opts)


def slurm_script(config_path: Path, overrides: Mapping[str, Any], *, text: str | None = None) -> str:
    """The ``slurm_job.sh`` a Slurm launch of ``config_path`` would submit (nothing written).
    ``text``: an editor's unsaved buffer, as in :func:`launch_plan`."""
    from tunedeck.runner.config import yamlio
    from tunedeck.runner.control.backends.slurm import options_with_settings, script_preview
    from tunedeck.runner.control.launch import LaunchOptions

    if text is None:
        doc = yamlio.ConfigDoc.load(config_path, _override_strings(overrides))
    else:
        doc = yamlio.ConfigDoc.loads(text, source=str(config_path), path=config_path)
        doc.apply(dict(overrides))
    return script_preview(config_path, [], LaunchOptions(), options_with_settings({}), doc=doc)


def stop(run_dir: Path) -> Any:
    """Ask the supervisor to stop (returns at once; the dashboard shows the rest)."""
    from tunedeck.runner.control import stop as stop_mod

    return stop_mod.stop_run(run_dir, wait=False)


def resume(run_dir: Path, from_: str | None = None, overrides: Mapping[str, Any] | None = None) -> Any:
    from tunedeck.runner.control import resume as resume_mod

    return resume_mod.resume(run_dir, from_=from_ or "latest", overrides=_override_strings(overrides or {}))


def triage(run_dir: Path) -> TriageView:
    from tunedeck.runner import triage as triage_mod
    from tunedeck.runner.config import yamlio

    values: dict[str, Any] = {}
    with contextlib.suppress(Exception):
        values = yamlio.ConfigDoc.load(run_dir / FROZEN_CONFIG).values()
    try:
        diags = tuple(triage_mod.triage_run(run_dir))
    except Exception as exc:  # noqa: BLE001
        return TriageView(run_dir, (), values, error=f"triage failed: {exc}")
    return TriageView(run_dir, diags, values)


def apply_suggestion(run_dir: Path, suggestion: Any) -> Path:
    from tunedeck.runner import triage as triage_mod

    return Path(triage_mod.apply_suggestion(run_dir, suggestion))
