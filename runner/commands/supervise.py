"""``tunedeck supervise RUN_DIR`` (internal): the detached supervisor of one run.

``tunedeck launch`` and ``tunedeck resume`` start it; running it by hand
supervises a run directory whose manifest is prepared (it takes the lock).
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="the run directory (with tunedeck_run.json)")


def run(args: argparse.Namespace) -> int:
    from tunedeck.runner.control.supervisor import main

    return main([args.run_dir])
