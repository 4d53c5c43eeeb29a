"""``tunedeck watch``: a lightweight auto-refreshing view for a tmux pane (Rich, no Textual).

GPUs (memory, utilisation, which run holds them), then one row per run: status,
progress, loss with a sparkline of its history, ETA. Metric histories are read
incrementally (only what was appended since the last frame), so a long log
costs one cold read, not one per refresh.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

from tunedeck.runner.monitor import MIN_POLL_INTERVAL as MIN_INTERVAL

BLOCKS = "▁▂▃▄▅▆▇█"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--once", action="store_true", help="print one frame and exit")
    parser.add_argument("--interval", type=float, default=2.0, metavar="S",
                        help=f"seconds between refreshes (default 2, at least {MIN_INTERVAL})")
    parser.add_argument("--root", metavar="DIR", help="watch runs under DIR (default: registered runs)")
    parser.add_argument("--all", action="store_true", help="include runs that ended (default: active "
                        "runs plus the 5 most recent)")


def sparkline(values: list[float], width: int) -> str:
    """Unicode block sparkline of ``values`` squeezed into ``width`` columns."""
    from tunedeck.runner.rundir.logs import downsample

    pts = downsample(values, width)
    if not pts:
        return ""
    lo, hi = min(pts), max(pts)
    span = hi - lo
    if span <= 0 or not math.isfinite(span):
        return BLOCKS[0] * len(pts)
    top = len(BLOCKS) - 1
    return "".join(BLOCKS[min(top, int((v - lo) / span * top + 0.5))] for v in pts)


class Histories:
    """One incremental metric reader per run directory, kept across frames."""

    def __init__(self) -> None:
        self._runs: dict[str, Any] = {}

    def loss(self, run_dir: Path) -> list[float]:
        from tunedeck.runner.rundir.logs import RunHistory

        key = str(run_dir)
        rh = self._runs.get(key)
        if rh is None:
            rh = self._runs[key] = RunHistory(run_dir)
        rh.poll()
        return list(rh.history.values("loss"))


def _fmt_bytes(b: int | None) -> str:
    return "-" if b is None else f"{b / 2**30:.1f}G"


def build_frame(snaps: list[Any], gpu_snap: Any, histories: Histories, spark_width: int = 24) -> Any:
    """The Rich renderable for one refresh."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    from tunedeck.runner.control.follow import fmt_duration
    from tunedeck.runner.rundir.procs import gpu_users

    parts: list[Any] = []
    if gpu_snap is None or not getattr(gpu_snap, "available", False):
        msg = getattr(gpu_snap, "message", None) or "no NVIDIA driver: GPU monitoring is off"
        parts.append(Text(f"GPUs: {msg}", style="dim"))
    else:
        gt = Table(title="GPUs", title_justify="left", expand=False, pad_edge=False)
        for col in ("GPU", "name", "memory", "util", "temp", "power", "runs"):
            gt.add_column(col)
        users = gpu_users(gpu_snap, snaps)  # THE pid -> run rule
        for g in gpu_snap.gpus:
            mem = f"{_fmt_bytes(g.mem_used)}/{_fmt_bytes(g.mem_total)}"
            runs = sorted(name for name, _ in users.get(g.index, ()))
            gt.add_row(
                str(g.index), g.name or "-", mem,
                "-" if g.util_gpu is None else f"{g.util_gpu}%",
                "-" if g.temperature is None else f"{g.temperature}C",
                "-" if g.power_w is None else f"{g.power_w:.0f}W",
                ", ".join(runs) or ("error: " + g.error if g.error else ""),
            )
        parts.append(gt)
    rt = Table(title=f"runs ({time.strftime('%H:%M:%S')})", title_justify="left", pad_edge=False)
    for col in ("run", "status", "step", "loss", "curve", "eta"):
        rt.add_column(col, no_wrap=True)
    style = {"running": "green", "starting": "cyan", "stopping": "yellow", "finished": "blue",
             "stopped": "yellow", "failed": "red", "oom": "red", "diverged": "red", "killed": "red",
             "lost": "magenta", "preempted": "yellow"}
    for s in snaps:
        step = "-" if s.current_steps is None else f"{s.current_steps}/{s.total_steps or '?'}"
        if s.percentage is not None:
            step += f" {s.percentage:.0f}%"
        loss = "-" if s.loss is None else ("nan" if math.isnan(s.loss) else f"{s.loss:.4f}")
        curve = sparkline(histories.loss(s.run_dir), spark_width)
        eta = fmt_duration(s.eta_seconds) if s.active else "-"
        name = Text(s.name)  # a Text, so markup-looking names are shown as they are
        status = Text(s.status.value, style=style.get(s.status.value, ""))
        if s.extra.get("backend") == "slurm":  # the job and where it is in the queue
            status.append(f" slurm {s.extra.get('job_id') or '?'} {s.extra.get('queue') or ''}".rstrip(),
                          style="dim")
        rt.add_row(name, status, step, loss, curve, eta)
    if not snaps:
        rt.add_row(Text("no runs", style="dim"), "", "", "", "", "")
    parts.append(rt)
    return Group(*parts)


def _select(snaps: list[Any], show_all: bool) -> list[Any]:
    if show_all:
        return snaps
    active = [s for s in snaps if s.active]
    recent = [s for s in snaps if not s.active][:5]
    return active + recent


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.live import Live

    from tunedeck.runner.errors import ConfigError
    from tunedeck.runner.rundir.runs import list_runs

    if args.interval < MIN_INTERVAL:
        raise ConfigError(f"--interval {args.interval} is below {MIN_INTERVAL}s; polling that fast "
                          "takes CPU from the training", file="command line")
    from tunedeck.runner.monitor.nvml import get_nvml

    nvml = get_nvml()
    hist = Histories()
    console = Console()

    def frame() -> Any:
        snaps = _select(list_runs(args.root), args.all)
        return build_frame(snaps, nvml.snapshot(), hist)

    if args.once:
        console.print(frame())
        return 0
    try:
        with Live(frame(), console=console, auto_refresh=False, screen=False) as live:
            while True:
                time.sleep(args.interval)
                live.update(frame(), refresh=True)
    except KeyboardInterrupt:
        print("", file=sys.stderr)
        return 0
