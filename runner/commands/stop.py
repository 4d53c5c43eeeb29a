"""``tunedeck stop RUN``: stop a run cleanly (checkpoint, then exit) and verify nothing is left."""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from tunedeck.runner.control.stop import DEFAULT_TIMEOUT

    parser.description = (
        "Ask the run's supervisor to stop: SIGTERM to the trainer's process group, the trainer "
        "saves a complete checkpoint at the next step boundary and exits; after --timeout "
        "seconds whatever is left gets SIGKILL. Then checks (psutil, and NVML where present) "
        "that no process of the run survives. If the supervisor itself is gone, stop signals "
        "the trainer directly (each pid verified by its start time)."
    )
    parser.epilog = "exit codes: 0 stopped cleanly with a complete checkpoint (or --no-wait: requested); " \
                    "1 stopped without a clean checkpoint, or the run was not running; 3 run not found"
    parser.add_argument("run", metavar="RUN", help="run id, run name, or output_dir path")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="S",
                        help=f"seconds to wait for the checkpoint before SIGKILL (default {DEFAULT_TIMEOUT:.0f})")
    parser.add_argument("--no-wait", action="store_true", help="request the stop and return at once")
    parser.add_argument("--root", metavar="DIR", help="also look for RUN by name under DIR")
    parser.add_argument("--json", action="store_true", help="machine-readable output on stdout")


def run(args: argparse.Namespace) -> int:
    from tunedeck.runner.control.stop import stop_run
    from tunedeck.runner.rundir.protocol import ACTIVE_STATUSES, RunStatus
    from tunedeck.runner.rundir.runs import computed_status, raw_manifest, resolve_run

    run_dir = resolve_run(args.run, args.root)
    # Promise a wait only to a run that is running (stop_run says why it is not, at once).
    live = computed_status(raw_manifest(run_dir) or {}) in (*ACTIVE_STATUSES, RunStatus.LOST)
    if not args.no_wait and live:
        print(f"stopping {run_dir} (up to {args.timeout:.0f}s for a checkpoint)...", file=sys.stderr, flush=True)
    res = stop_run(run_dir, timeout=args.timeout, wait=not args.no_wait)
    if args.json:
        print(json.dumps({
            "run_dir": str(run_dir),
            "status": res.status.value,
            "stopped_cleanly": res.stopped_cleanly,
            "checkpoint": res.checkpoint,
            "survivors": res.survivors,
            "gpu_holders": [{"gpu": g, "pid": p, "used_bytes": b} for g, p, b in res.gpu_holders],
            "message": res.message,
            "waited": res.waited,
        }))
    else:
        print(res.message)
        if res.waited:
            if res.checkpoint:
                print(f"checkpoint: {res.checkpoint}")
            if res.survivors:
                print("processes still alive: " + ", ".join(map(str, res.survivors)))
            elif res.status.value in ("stopped", "lost"):
                print("no process of the run is left")
            for g, p, b in res.gpu_holders:
                mem = f" ({b / 2**30:.1f} GiB)" if b else ""
                print(f"GPU {g}: pid {p} still holds memory{mem}")
    if not res.waited:
        return 0 if res.status.value == "stopping" else (0 if res.stopped_cleanly else 1)
    return 0 if res.stopped_cleanly else 1
