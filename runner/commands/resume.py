"""``tunedeck resume RUN [--from latest|checkpoint-N|PATH] [key=value ...]``."""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Relaunch a run's frozen config from a checkpoint (detached, like launch), as a new "
        "attempt of the same run. Overrides are applied to the frozen config; the config the "
        "previous attempt ran is kept as config.attempt-N.yaml. Warns before launching when the "
        "checkpoint already reached max_steps / num_train_epochs; refuses an incomplete checkpoint."
    )
    parser.add_argument("run", metavar="RUN", help="run id, run name, or output_dir path")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides for this attempt")
    parser.add_argument("--from", dest="from_", default="latest", metavar="CKPT",
                        help="latest (default: newest complete), checkpoint-N, or a path")
    parser.add_argument("--follow", action="store_true", help="stream progress until the run ends")
    parser.add_argument("--max-restarts", type=int, default=None, metavar="N",
                        help="automatic restarts after a crash (default: as launched)")
    parser.add_argument("--auto-triage", action="store_true", default=None,
                        help="after OOM/divergence, restart with triage's first patch")
    parser.add_argument("--root", metavar="DIR", help="also look for RUN by name under DIR")
    parser.add_argument("--json", action="store_true", help="machine-readable output on stdout")


def run(args: argparse.Namespace) -> int:
    from tunedeck.runner.control import forkstart
    from tunedeck.runner.control.follow import follow, outcome_exit_code
    from tunedeck.runner.control.resume import resume

    forkstart.allow()  # this short-lived command forks the supervisor (see forkstart)
    from tunedeck.runner.rundir.runs import resolve_run

    run_dir = resolve_run(args.run, args.root)
    res = resume(run_dir, from_=args.from_, overrides=args.overrides, max_restarts=args.max_restarts,
                 auto_triage=args.auto_triage, warn=lambda t: print(t, file=sys.stderr, flush=True))
    if args.json:
        print(json.dumps({"id": res.run_id, "run_dir": str(res.run_dir), "checkpoint": str(res.checkpoint),
                          "attempt": res.attempt, "supervisor_pid": res.supervisor_pid,
                          "job_id": res.job_id}), flush=True)
    else:
        print(res.run_id, flush=True)
        print(f"resumed run {res.run_id} from {res.checkpoint.name} (attempt {res.attempt})"
              + (f" as Slurm job {res.job_id}" if res.job_id else ""),
              file=sys.stderr, flush=True)
    if not args.follow:
        return 0
    try:
        return outcome_exit_code(follow(res.run_dir, from_start=False, as_json=args.json))
    except KeyboardInterrupt:
        print(f"stopped following; the run goes on (tunedeck stop {res.run_id} stops it)", file=sys.stderr)
        return 130
