"""``tunedeck triage RUN [--apply N] [--json]``: diagnose a run; write a patched config."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run id or output_dir path")
    p.add_argument("--apply", type=int, metavar="N",
                   help="write suggestion N's patch into config.triage-<n>.yaml next to the "
                        "frozen config (the original is untouched) and print the resume command")
    p.add_argument("--json", action="store_true", help="print the diagnoses as JSON")


def resolve_run_dir(ref: str) -> tuple[Path, str]:
    """(run directory, how to name the run on a command line) for an id or a path."""
    from tunedeck.runner.rundir.protocol import FROZEN_CONFIG
    from tunedeck.runner.rundir.runs import resolve_run

    try:
        p = Path(ref).expanduser()
        if p.is_dir() and ((p / FROZEN_CONFIG).is_file() or (p / "training_args.yaml").is_file()):
            return p, ref   # a config is enough to triage, even before any log exists
    except (OSError, RuntimeError):  # a name too long to be a path; ~nosuchuser: not a path
        pass
    return resolve_run(ref), ref


def run(args: argparse.Namespace) -> int:
    from tunedeck.runner.errors import TunedeckError
    from tunedeck.runner.triage import (
        apply_suggestion,
        diagnose,
        diagnoses_to_data,
        gather,
        numbered,
    )

    run_dir, ref = resolve_run_dir(args.run)
    inp = gather(run_dir)
    diags = diagnose(inp)
    flat = numbered(diags)

    if args.apply is not None:
        pick = [s for n, _, s in flat if n == args.apply]
        if not pick:
            raise TunedeckError(f"no suggestion {args.apply}",
                                hint=f"choose 1..{len(flat)} from `tunedeck triage {ref}`"
                                if flat else "this run has no suggestions")
        sugg = pick[0]
        path = apply_suggestion(run_dir, sugg)
        cmd = ["tunedeck", "resume", ref, *sugg.overrides()]
        if args.json:
            json.dump({"run_dir": str(run_dir), "applied": args.apply, "title": sugg.title,
                       "patch": sugg.patch, "config": str(path), "resume_argv": cmd},
                      sys.stdout, indent=2, default=str)
            sys.stdout.write("\n")
            return 0
        print(f"applied {args.apply}: {sugg.title}")
        for line in sugg.diff_lines(inp.values):
            print(f"  {line}")
        print(f"wrote {path} (the frozen config is unchanged)")
        print("resume with the patch as overrides:")
        print("  " + shlex.join(cmd))
        return 0

    if args.json:
        json.dump({"run_dir": str(run_dir), "status": inp.status,
                   "diagnoses": diagnoses_to_data(diags, inp.values)},
                  sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
        return 0
    _render(diags, inp.values, ref)
    return 0


def _render(diags: list, values: dict[str, Any], ref: str) -> None:  # type: ignore[type-arg]
    from rich.console import Console
    from rich.markup import escape

    from tunedeck.runner.estimate import format_bytes
    from tunedeck.runner.triage import numbered

    con = Console(highlight=False)
    nums = {id(s): n for n, _, s in numbered(diags)}
    for d in diags:
        colour = "green" if d.kind == "healthy" else "yellow" if d.kind in (
            "disk_low", "slow", "not_converging", "resume_past_end") else "red"
        con.print(f"[bold {colour}]{d.kind}[/]: {escape(d.summary)}")
        for e in d.evidence:
            con.print(f"  [dim]- {escape(e)}[/]")
        for s in d.suggestions:
            n = nums[id(s)]
            con.print(f"  [bold]{n}. {escape(s.title)}[/] [dim](guide {escape(s.guide_ref)})[/]")
            for line in s.diff_lines(values):
                con.print(f"       {escape(line)}")
            if s.before_bytes is not None and s.after_bytes is not None and s.patch:
                d = s.after_bytes - s.before_bytes
                sign = "+" if d > 0 else "-" if d < 0 else ""
                con.print(f"       memory per GPU: {format_bytes(s.before_bytes)} -> "
                          f"{format_bytes(s.after_bytes)} ({sign}{format_bytes(abs(d))})")
            con.print(f"       [dim]{escape(s.rationale)}[/]")
    if any(s.patch for _, _, s in numbered(diags)):
        con.print(f"\napply one with: tunedeck triage {shlex.quote(ref)} --apply N")
