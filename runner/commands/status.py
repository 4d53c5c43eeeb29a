"""``tunedeck status RUN``: one run's status, progress, loss, ETA, checkpoints."""

from __future__ import annotations

import argparse
import json
import math

from tunedeck.runner.rundir.runs import RunSnapshot


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN", help="run id, run name, or output_dir path")
    parser.add_argument("--root", metavar="DIR", help="also look for RUN by name under DIR")
    parser.add_argument("--json", action="store_true", help="machine-readable output on stdout")


def _num(v: float | None, spec: str) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    return format(v, spec)


def _slurm_lines(s: RunSnapshot) -> list[str]:
    x = s.extra
    if x.get("backend") != "slurm":
        return []
    parts = [f"job {x.get('job_id') or '?'}", str(x.get("queue") or x.get("slurm_state") or "?")]
    if x.get("node_list"):
        parts.append(f"on {x['node_list']}")
    more = [f"{k} {x[k]}" for k in ("partition", "elapsed", "time_limit") if x.get(k)]
    if x.get("requeues"):
        more.append(f"requeued {x['requeues']}x")
    if x.get("slurm_exit_code") not in (None, "0:0"):
        more.append(f"exit code {x['slurm_exit_code']}")
    return [f"slurm:       {' '.join(parts)}" + (f" ({', '.join(more)})" if more else "")]


def render(s: RunSnapshot) -> str:
    """The human form of a RunSnapshot (several ``key: value`` lines)."""
    from tunedeck.runner.control.follow import fmt_duration

    steps = "-"
    if s.current_steps is not None:
        steps = f"{s.current_steps}/{s.total_steps if s.total_steps is not None else '?'}"
        if s.percentage is not None:
            steps += f" ({s.percentage:.1f}%)"
    latest = s.latest_checkpoint
    cks = s.checkpoints
    lines = [
        f"run:         {s.id}" + (f"  ({s.name})" if s.name != s.id else ""),
        f"status:      {s.status.value}",
        f"kind:        {s.kind}",
        *_slurm_lines(s),
        f"dir:         {s.run_dir}",
        f"steps:       {steps}",
        f"loss:        {_num(s.loss, '.4f')}" + (f"   eval_loss {_num(s.eval_loss, '.4f')}" if s.eval_loss is not None else ""),
        f"lr:          {_num(s.lr, '.3e')}",
        f"throughput:  {_num(s.throughput, '.0f')} tokens/s",
        f"elapsed:     {fmt_duration(s.elapsed_seconds)}   eta {fmt_duration(s.eta_seconds)}",
        f"checkpoints: {len(cks)}" + (f" (newest complete: {latest.path})" if latest else ""),
    ]
    if s.kind == "tunedeck":
        lines.append(f"attempts:    {s.attempts}" + (f" ({s.restarts} automatic restart(s))" if s.restarts else ""))
    if s.last_log_age_s is not None:
        lines.append(f"last log:    {fmt_duration(s.last_log_age_s)} ago")
    if s.message:
        lines.append(f"message:     {s.message}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from tunedeck.runner.rundir.runs import read_run, resolve_run

    snap = read_run(resolve_run(args.run, args.root))
    if args.json:
        print(json.dumps(snap.to_dict(), indent=2, default=str))
    else:
        print(render(snap))
    return 0
