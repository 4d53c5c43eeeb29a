"""``tunedeck runs [--root DIR]``: list runs (tunedeck, LLaMA-Factory, plain transformers)."""

from __future__ import annotations

import argparse
import json
import math

from tunedeck.runner.rundir.runs import RunSnapshot


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", metavar="DIR",
                        help="discover run directories under DIR (anything with trainer_log.jsonl, "
                        "trainer_state.json or a tunedeck manifest); default: the registered runs")
    parser.add_argument("--depth", type=int, default=4, metavar="N", help="how deep to look under --root")
    parser.add_argument("--active", action="store_true", help="only runs that are starting/running/stopping")
    parser.add_argument("--status", action="append", metavar="STATUS",
                        help="only runs with this status (repeat or comma-separate: finished,oom)")
    parser.add_argument("--since", metavar="WHEN", help="only runs active since 30m, 12h, 2d, 1w ago or a date")
    parser.add_argument("--name", metavar="GLOB", help="only runs whose name (or id) matches the glob")
    parser.add_argument("--sort", default="date", metavar="KEY",
                        help="date (newest first, default), eval_loss (best first), loss, name, status")
    parser.add_argument("--reverse", action="store_true", help="reverse the sort order")
    arch = parser.add_mutually_exclusive_group()
    arch.add_argument("--archived", action="store_true", help="only archived runs")
    arch.add_argument("--all", action="store_true", help="archived runs too")
    parser.add_argument("--json", action="store_true", help="machine-readable output on stdout")


def _cell(v: object) -> str:
    return "-" if v is None else str(v)


def table_rows(snaps: list[RunSnapshot]) -> list[list[str]]:
    from tunedeck.runner.control.follow import fmt_duration

    rows = [["ID", "NAME", "KIND", "STATUS", "STEP", "LOSS", "ETA", "CKPTS", "DIR"]]
    for s in snaps:
        step = "-" if s.current_steps is None else f"{s.current_steps}/{_cell(s.total_steps)}"
        if s.loss is None:
            loss = "-"
        elif math.isnan(s.loss):
            loss = "nan"
        else:
            loss = f"{s.loss:.4f}"
        eta = fmt_duration(s.eta_seconds) if s.active else "-"
        done = sum(1 for c in s.checkpoints if c.complete)
        ck = f"{done}" if done == len(s.checkpoints) else f"{done}+{len(s.checkpoints) - done}?"
        rid = s.id if s.kind == "tunedeck" else "-"
        kind = s.kind
        if s.extra.get("backend") == "slurm":  # where it runs: the job and its queue state
            kind = f"slurm {s.extra.get('job_id') or '?'} {s.extra.get('queue') or ''}".strip()
        rows.append([rid, s.name, kind, s.status.value, step, loss, eta, ck, str(s.run_dir)])
    return rows


def format_table(rows: list[list[str]]) -> str:
    # Names and paths are data: show control characters escaped, never interpreted.
    clean = [[c.encode("unicode_escape").decode("ascii") if not c.isprintable() else c for c in r]
             for r in rows]
    widths = [max(len(r[i]) for r in clean) for i in range(len(clean[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in clean)


def run(args: argparse.Namespace) -> int:
    import sys

    from tunedeck.runner.control.history import filter_runs, parse_since, sort_runs
    from tunedeck.runner.errors import TunedeckError
    from tunedeck.runner.rundir.protocol import RunStatus
    from tunedeck.runner.rundir.runs import list_runs

    statuses = [x.strip() for v in (args.status or []) for x in v.split(",") if x.strip()]
    known = {st.value for st in RunStatus}
    for st in statuses:
        if st not in known:
            raise TunedeckError(f"--status {st!r}: unknown status", hint="one of " + ", ".join(sorted(known)))
    since = parse_since(args.since) if args.since else None
    snaps = list_runs(args.root, max_depth=args.depth)
    if args.active:
        snaps = [s for s in snaps if s.active]
    snaps = filter_runs(snaps, statuses=statuses or None, since=since, name_glob=args.name,
                        archived="only" if args.archived else "show" if args.all else "hide")
    snaps = sort_runs(snaps, args.sort, reverse=args.reverse)
    if args.json:
        print(json.dumps([s.to_dict() for s in snaps], indent=2, default=str))
        return 0
    if not snaps:
        where = f"under {args.root}" if args.root else "registered (try --root DIR)"
        print(f"no runs {where}", file=sys.stderr)
        return 0
    print(format_table(table_rows(snaps)))
    return 0
