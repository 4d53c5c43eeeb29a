"""``tunedeck archive RUN...``: hide runs from ``runs`` and the TUI; nothing is deleted."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run ids, names or output_dir paths")
    parser.add_argument("--root", metavar="DIR", help="also look for RUN by directory name under DIR")
    parser.add_argument("--undo", action="store_true", help="show the runs again")


def run(args: argparse.Namespace) -> int:
    from tunedeck.runner.control.history import archive, unarchive
    from tunedeck.runner.rundir.runs import resolve_run

    dirs = [resolve_run(r, args.root) for r in args.runs]
    for ref, d in zip(args.runs, dirs, strict=True):
        if args.undo:
            print(f"{ref}: {'unarchived' if unarchive(d) else 'was not archived'} ({d})")
        else:
            print(f"{ref}: {'archived' if archive(d) else 'already archived'} ({d}); "
                  "`tunedeck runs --archived` lists it, nothing was deleted")
    return 0
