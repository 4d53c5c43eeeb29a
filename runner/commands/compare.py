"""``tunedeck compare RUN RUN...``: a table of the runs side by side, deltas to a baseline,
and the hyperparameters that differ; ``--png`` writes the overlaid loss curves."""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN",
                        help="run ids, run names or output_dir paths (tunedeck, LLaMA-Factory, transformers); "
                        "a directory holding runs (a sweep's output_dir) stands for all of them")
    parser.add_argument("--baseline", metavar="RUN", help="the run deltas are taken against (default: the first)")
    parser.add_argument("--root", metavar="DIR", help="also look for RUN by directory name under DIR")
    parser.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    parser.add_argument("--png", metavar="FILE", help="write the overlaid loss / eval loss chart (matplotlib)")
    parser.add_argument("--x", choices=("step", "tokens", "time"), default="step",
                        help="align the curves of --png by step, tokens seen or wall time")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tunedeck.runner.commands.runs import format_table
    from tunedeck.runner.compare import compare_dirs, diff_rows, table_rows, write_png
    from tunedeck.runner.errors import TunedeckError
    from tunedeck.runner.rundir.discover import discover_runs, run_kind
    from tunedeck.runner.rundir.runs import resolve_run

    # A directory that holds runs but is none (a sweep's output_dir) stands for its runs.
    refs: list[str] = []
    for r in args.runs:
        p = Path(r).expanduser()
        if p.is_dir() and run_kind(p) == "unknown":
            found = [d for d in discover_runs(p, 2) if d.resolve() != p.resolve()]
            if found:
                refs.extend(str(d) for d in found)
                continue
        refs.append(r)
    dirs = [resolve_run(r, args.root) for r in refs]
    if len({str(d) for d in dirs}) != len(dirs):
        raise TunedeckError("the same run is named twice", hint="name each run once")
    baseline = 0
    if args.baseline:
        bdir = resolve_run(args.baseline, args.root)
        if bdir not in dirs:
            refs.append(args.baseline)
            dirs.append(bdir)
        baseline = dirs.index(bdir)
    labels = [Path(r).name if ("/" in r and Path(r).name) else r for r in refs]
    if len(set(labels)) != len(labels):
        labels = refs
    c = compare_dirs(list(dirs), labels, baseline)
    if args.png:
        out = write_png(c, args.png, args.x)
        print(f"wrote {out}", file=sys.stderr)
    if args.json:
        print(json.dumps(c.to_dict(), indent=2, default=str))
        return 0
    print(format_table(table_rows(c)))
    print("\n* baseline; (+/-) is the difference to it")
    if c.diff:
        print(f"\nhyperparameters that differ ({len(c.diff)}):")
        print(format_table(diff_rows(c)))
    else:
        print("\nno hyperparameter differs")
    return 0
