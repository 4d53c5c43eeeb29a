"""``tunedeck gpus``: GPUs, memory, utilisation, temperature, power, and which run uses them.

Processes are attributed to runs by reading the manifests of the runs under
``--root`` and matching the pids of their process trees. With no NVIDIA driver
it says so on stderr and exits 0 (``--json`` still prints an object with
``"available": false``). Exit 1 when NVML is present but failing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from tunedeck.runner.monitor import MIN_POLL_INTERVAL as MIN_INTERVAL
from tunedeck.runner.monitor.nvml import NO_DRIVER_MESSAGE, GpuSnapshot, get_nvml, snapshot_to_dict

if TYPE_CHECKING:
    from tunedeck.runner.rundir.procs import RunProcesses

GiB = float(1 << 30)
RUN_REFRESH_S = 10.0  # re-discover runs under --root this often in --watch


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON (one object per refresh)")
    parser.add_argument("--watch", action="store_true", help="refresh until Ctrl-C")
    parser.add_argument(
        "--interval", type=float, default=1.0, help=f"seconds between refreshes (>= {MIN_INTERVAL})"
    )
    parser.add_argument(
        "--root", type=Path, default=Path("."), help="where to look for runs (default: cwd)"
    )
    parser.add_argument("--depth", type=int, default=4, help="how deep to look for runs")


def _owner_lookup(runs: list[RunProcesses]) -> Callable[[int], tuple[str, str] | None]:
    from tunedeck.runner.rundir.procs import owner_table, owning_run

    owners = owner_table(runs)
    parents: dict[int, int | None] = {}

    def owner(pid: int) -> tuple[str, str] | None:
        r = owning_run(pid, owners, parents)
        return (r.run_id, r.name) if r is not None else None

    return owner


def _gib(b: int | None) -> str:
    return "n/a" if b is None else f"{b / GiB:.1f}"


def _na(v: object, fmt: str = "{}") -> str:
    return "n/a" if v is None else fmt.format(v)


def render(snapshot: GpuSnapshot, owner: Callable[[int], tuple[str, str] | None]) -> str:
    """The human table (fits 80 columns)."""
    if not snapshot.available:
        return snapshot.message or NO_DRIVER_MESSAGE
    head = f"driver {snapshot.driver_version or 'n/a'} · {len(snapshot.gpus)} GPU(s)"
    lines = [
        head,
        f"{'GPU':>3}  {'NAME':<30} {'MEMORY GiB':>13} {'UTIL':>5} {'TEMP':>5} {'POWER W':>10}",
    ]
    for g in snapshot.gpus:
        name = (g.name or "n/a")[:30]
        if g.error:
            lines.append(f"{g.index:>3}  {name:<30} error: {g.error}")
            continue
        mem = f"{_gib(g.mem_used)}/{_gib(g.mem_total)}"
        power = f"{_na(g.power_w, '{:.0f}')}/{_na(g.power_limit_w, '{:.0f}')}"
        if g.power_w is None and g.power_limit_w is None:
            power = "n/a"
        lines.append(
            f"{g.index:>3}  {name:<30} {mem:>13} {_na(g.util_gpu, '{}%'):>5} "
            f"{_na(g.temperature, '{}C'):>5} {power:>10}"
        )
        for p in g.processes:
            who = owner(p.pid)
            run = f"  run {who[1]} ({who[0]})" if who else ""
            used = "n/a" if p.used_bytes is None else f"{p.used_bytes / GiB:.1f} GiB"
            lines.append(f"       pid {p.pid:<8} {(p.name or '?')[:16]:<16} {used:>10}{run}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if not args.interval >= MIN_INTERVAL:
        print(f"tunedeck: error: --interval must be >= {MIN_INTERVAL} s", file=sys.stderr)
        return 2
    nvml = get_nvml()
    runs: list[RunProcesses] = []
    run_dirs: list[Path] = []
    dirs_at = -RUN_REFRESH_S
    clear = args.watch and not args.json and sys.stdout.isatty()
    noted = False
    try:
        while True:
            snap = nvml.snapshot()
            runs = []
            if snap.available and any(g.processes for g in snap.gpus):
                # Only now: reading manifests pulls in pydantic (~0.3 s to import).
                from tunedeck.runner.rundir.discover import discover_runs
                from tunedeck.runner.rundir.procs import run_processes

                # Directories change rarely: re-discover every RUN_REFRESH_S; process
                # trees change all the time: re-read them every refresh.
                if time.monotonic() - dirs_at >= RUN_REFRESH_S:
                    run_dirs = discover_runs(args.root, max_depth=args.depth)
                    dirs_at = time.monotonic()
                runs = run_processes(run_dirs)
            owner = _owner_lookup(runs)
            if not snap.available and not noted:
                print(snap.message or NO_DRIVER_MESSAGE, file=sys.stderr)
                noted = True
            if args.json:
                print(json.dumps(snapshot_to_dict(snap, owner)), flush=True)
            elif snap.available:
                if clear:
                    sys.stdout.write("\x1b[H\x1b[2J")
                print(render(snap, owner), flush=True)
            if not args.watch:
                break
            time.sleep(args.interval)  # the next poll starts after this one finished
    except KeyboardInterrupt:
        return 0
    return 0 if snap.available or snap.no_driver else 1
