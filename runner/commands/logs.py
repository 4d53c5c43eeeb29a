"""``tunedeck logs RUN [-f] [-n N]``: print or follow a run's stdout.log."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tunedeck.runner.rundir.protocol import STDOUT_LOG, TRAINER_LOG

# LLaMA-Factory runs have no stdout.log: LLaMA Board writes these instead.
_CANDIDATES = (STDOUT_LOG, "running_log.txt", "webui_subprocess.log", TRAINER_LOG)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN", help="run id, run name, or output_dir path")
    parser.add_argument("-n", "--lines", type=int, default=40, metavar="N", help="last N lines (default 40)")
    parser.add_argument("-f", "--follow", action="store_true",
                        help="keep printing new lines until the run ends (or Ctrl-C)")
    parser.add_argument("--file", metavar="NAME", help="which file in the run dir (default: stdout.log, "
                        "else LLaMA Board's running_log.txt / webui_subprocess.log, else trainer_log.jsonl)")
    parser.add_argument("--root", metavar="DIR", help="also look for RUN by name under DIR")


def pick_log(run_dir: Path, name: str | None) -> Path:
    from tunedeck.runner.errors import TunedeckError

    if name:
        p = run_dir / name
        if "/" in name or name in ("", ".", ".."):
            raise TunedeckError(f"--file {name!r}: give a file name inside the run directory")
        return p
    for n in _CANDIDATES:
        if (run_dir / n).is_file():
            return run_dir / n
    raise TunedeckError(f"{run_dir} has no log file yet ({', '.join(_CANDIDATES)})")


def run(args: argparse.Namespace) -> int:
    from tunedeck.runner.rundir.logs import TextTail, tail_lines
    from tunedeck.runner.rundir.runs import raw_manifest, resolve_run, run_ended

    run_dir = resolve_run(args.run, args.root)
    path = pick_log(run_dir, args.file)
    out = sys.stdout
    if not args.follow:
        for line in tail_lines(path, max(0, args.lines)):
            out.write(line + "\n")
        out.flush()
        return 0
    tail = TextTail(path, initial_lines=max(0, args.lines))
    ended_polls = 0
    while True:
        for line in tail.poll():
            out.write(line + "\n")
        out.flush()
        m = raw_manifest(run_dir)
        if m is not None and run_ended(m):
            # One more poll after the end so the supervisor's last lines are shown.
            ended_polls += 1
            if ended_polls > 1:
                if tail.partial:
                    out.write(tail.partial + "\n")
                return 0
        time.sleep(0.5)
