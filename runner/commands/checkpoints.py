"""``tunedeck checkpoints RUN``: a run's checkpoints: step, time, size, loss, complete."""

from __future__ import annotations

import argparse
import json
import math
import time


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN", help="run id, run name, or output_dir path")
    parser.add_argument("--root", metavar="DIR", help="also look for RUN by name under DIR")
    parser.add_argument("--json", action="store_true", help="machine-readable output on stdout")


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def _loss(v: float | None) -> str:
    if v is None:
        return "-"
    return "nan" if math.isnan(v) else f"{v:.4f}"


def run(args: argparse.Namespace) -> int:
    import sys

    from tunedeck.runner.commands.runs import format_table
    from tunedeck.runner.rundir.checkpoints import scan_checkpoints
    from tunedeck.runner.rundir.logs import load_history
    from tunedeck.runner.rundir.runs import resolve_run

    run_dir = resolve_run(args.run, args.root)
    cks = scan_checkpoints(run_dir, load_history(run_dir))
    if args.json:
        print(json.dumps([
            {
                "step": c.step, "path": str(c.path), "mtime": c.mtime, "size_bytes": c.size_bytes,
                "kind": c.kind, "complete": c.complete, "reason": c.reason,
                "loss": None if c.loss is None or math.isnan(c.loss) else c.loss,
                "eval_loss": None if c.eval_loss is None or math.isnan(c.eval_loss) else c.eval_loss,
                "resumable_full": c.resumable_full,
            }
            for c in cks
        ], indent=2))
        return 0
    if not cks:
        print(f"no checkpoints in {run_dir}", file=sys.stderr)
        return 0
    rows = [["STEP", "SAVED", "SIZE", "LOSS", "EVAL_LOSS", "KIND", "COMPLETE"]]
    for c in cks:
        saved = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(c.mtime)) if c.mtime else "-"
        rows.append([str(c.step), saved, _size(c.size_bytes), _loss(c.loss), _loss(c.eval_loss), c.kind,
                     "yes" if c.complete else f"no: {c.reason}"])
    print(format_table(rows))
    return 0
