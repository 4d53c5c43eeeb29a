"""``tunedeck delete RUN [--yes]``: delete a run directory with its checkpoints, after a
confirmation that names the bytes freed. A live run is never deleted."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN", help="run id, name or output_dir path")
    parser.add_argument("--root", metavar="DIR", help="also look for RUN by directory name under DIR")
    parser.add_argument("--yes", "-y", action="store_true", help="do not ask (needed without a terminal)")


def run(args: argparse.Namespace) -> int:
    from tunedeck.runner.control.history import delete_run, fmt_bytes, plan_delete
    from tunedeck.runner.errors import TunedeckError
    from tunedeck.runner.rundir.runs import read_run, resolve_run

    snap = read_run(resolve_run(args.run, args.root))
    plan = plan_delete(snap)
    what = (f"delete {plan.name} ({plan.run_dir}): {plan.checkpoints} checkpoint(s), "
            f"{plan.files} files, {fmt_bytes(plan.bytes)} freed")
    if not args.yes:
        if not sys.stdin.isatty():
            raise TunedeckError(what + ": not confirmed", hint="run it in a terminal or pass --yes")
        answer = input(what + ". Delete? [y/N] ").strip().lower()
        if answer not in ("y", "yes"):
            print("nothing deleted", file=sys.stderr)
            return 1
    delete_run(plan)
    print(f"deleted {plan.run_dir}: {fmt_bytes(plan.bytes)} freed")
    return 0
