"""``tunedeck queue add|list|remove|pause|resume|start``: runs that wait for free GPUs
and start in order, one machine; ``--sweep`` queues a grid of named runs."""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="queue_command", metavar="ACTION", required=True)
    a = sub.add_parser("add", help="queue a config (or a sweep of it)",
                       description="Queue a config; the queue runner starts it when its GPUs are free.")
    a.add_argument("config", metavar="CONFIG", help="a LLaMA-Factory-style YAML config")
    a.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    a.add_argument("--gpus", metavar="LIST", help="physical GPU indices the run needs, e.g. 0,1 (default: all)")
    a.add_argument("--name", help="run name (default: the output_dir's name; sweeps add key-value)")
    a.add_argument("--sweep", nargs="+", metavar="key=v1,v2",
                   help="queue the grid: one run per combination, each in <output_dir>/<key-value_...>")
    a.add_argument("--no-start", action="store_true", help="do not start the queue runner")
    a.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    ls = sub.add_parser("list", help="the queue, in order, with each entry's state")
    ls.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    rm = sub.add_parser("remove", help="remove an entry that has not started")
    rm.add_argument("entry", metavar="ID", help="entry id (or a unique prefix, or its name)")
    sub.add_parser("pause", help="start nothing more (running runs go on)")
    sub.add_parser("resume", help="start queued runs again")
    sub.add_parser("start", help="start the queue runner if it is not running")
    sub.add_parser("run", help=argparse.SUPPRESS)  # internal: the queue runner itself


def _start(quiet: bool = False) -> None:
    from tunedeck.runner.control.runqueue import paused, runner_info, start_runner

    if paused():
        if not quiet:
            print("the queue is paused: `tunedeck queue resume` starts it", file=sys.stderr)
        return
    pid = start_runner()
    if not quiet:
        info = runner_info()
        print(f"queue runner started (pid {pid})" if pid else
              f"queue runner already running (pid {info['pid'] if info else '?'})", file=sys.stderr)


def rows(entries: list) -> list[list[str]]:  # type: ignore[type-arg]
    from tunedeck.runner.rundir.runs import read_run

    out = [["ID", "STATE", "NAME", "GPUS", "RUN / NOTE"]]
    for e in entries:
        note = e.waiting or e.error or ""
        state = e.state
        if e.state == "launched" and e.run_dir:
            try:
                snap = read_run(e.run_dir)
                state = f"run {snap.status.value}"
                note = e.run_id or ""
            except Exception:
                note = e.run_id or ""
        gpus = ",".join(map(str, e.gpus)) if e.gpus else "any"
        out.append([e.id, state, e.name or "-", gpus, note.splitlines()[0] if note else ""])
    return out


def run(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from tunedeck.runner.commands.runs import format_table
    from tunedeck.runner.control import runqueue as q

    cmd = args.queue_command
    if cmd == "add":
        from tunedeck.runner.control.launch import parse_gpus

        added = q.add(args.config, list(args.overrides or []), gpus=parse_gpus(args.gpus),
                      name=args.name, sweep=args.sweep)
        if args.json:
            print(json.dumps([asdict(e) for e in added], indent=2))
        else:
            for e in added:
                print(f"{e.id}  {e.name}  {e.output_dir}")
        if not args.no_start:
            _start(quiet=args.json)
        return 0
    if cmd == "list":
        entries = q.load_entries()
        info = q.runner_info()
        if args.json:
            print(json.dumps({"paused": q.paused(), "runner_pid": info["pid"] if info else None,
                              "entries": [asdict(e) for e in entries]}, indent=2))
            return 0
        state = "paused" if q.paused() else (f"runner pid {info['pid']}" if info else "runner not running")
        print(f"queue: {sum(e.state == 'queued' for e in entries)} waiting, {state}", file=sys.stderr)
        if entries:
            print(format_table(rows(entries)))
        return 0
    if cmd == "remove":
        e = q.remove_entry(args.entry)
        print(f"removed {e.id} ({e.name})" + (f"; its run {e.run_id} goes on" if e.run_id else ""))
        return 0
    if cmd == "pause":
        q.set_paused(True)
        print("queue paused: nothing more starts; running runs go on")
        return 0
    if cmd == "resume":
        q.set_paused(False)
        print("queue resumed")
        _start()
        return 0
    if cmd == "start":
        _start()
        return 0
    if cmd == "run":
        return q.QueueRunner().run()
    return 2
