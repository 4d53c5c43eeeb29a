"""``tunedeck launch CONFIG [key=value ...]``: start a detached, supervised training run."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

EPILOG = """\
output_dir is the run directory. What happens when it already holds checkpoint-N
folders follows LLaMA-Factory, made explicit:
  * no --overwrite, overwrite_output_dir unset/false: the run RESUMES from the newest
    complete checkpoint (LLaMA-Factory's implicit resume); launch says so on stderr.
  * --overwrite: the previous checkpoint-N folders, trainer_log.jsonl, trainer_state.json
    and *_results.json in output_dir are DELETED and training starts from step 0
    (LLaMA-Factory's overwrite_output_dir also deletes trainer_log.jsonl; we delete the
    old checkpoints too, so a later resume can never pick one from the previous run).
  * overwrite_output_dir: true in the config without --overwrite: refused (exit 4);
    tunedeck never deletes checkpoints unless told so on the command line.
  * only incomplete checkpoints: refused without --overwrite.
  * resume_from_checkpoint set in the config (a path, or latest): used as given.
One launch per output_dir at a time: a second launch while a run holds the
directory's lock is refused with exit 4.

exit codes: 0 started (with --follow: the run finished), 2 invalid config, 4 busy,
5 launch failed; with --follow the run's outcome: 75 stopped, 76 preempted,
77 diverged, 78 oom, 1 failed/killed/lost.
"""


def add_overrides_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="config overrides, LLaMA-Factory style (e.g. learning_rate=1e-4)")


def add_hardware_arguments(parser: argparse.ArgumentParser) -> None:
    hw = parser.add_argument_group("hardware")
    hw.add_argument("--gpus", metavar="LIST", help="physical GPU indices, e.g. 0,2 (sets CUDA_VISIBLE_DEVICES; "
                    "one process per GPU)")
    hw.add_argument("--num-processes", type=int, metavar="N",
                    help="processes on this machine (default: one per --gpus entry, else 1)")
    hw.add_argument("--cpu", action="store_true", default=None,
                    help="train on the CPU (default: when no GPU is visible or use_cpu is set)")
    hw.add_argument("--nodes", type=int, default=1, metavar="N", help="number of machines (default 1)")
    hw.add_argument("--machine-rank", type=int, default=0, metavar="R", help="this machine's rank (0..nodes-1)")
    hw.add_argument("--main-ip", metavar="IP", help="address of the rank-0 machine (multi-node)")
    hw.add_argument("--main-port", type=int, metavar="PORT",
                    help="rendezvous port (default: a free one on a single machine)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("config", metavar="CONFIG", help="a LLaMA-Factory-style YAML config")
    add_overrides_argument(parser)
    add_hardware_arguments(parser)
    parser.add_argument("--name", help="a name for the run (default: the output_dir's name)")
    parser.add_argument("--follow", action="store_true",
                        help="stream progress until the run ends; exit with its outcome")
    parser.add_argument("--max-restarts", type=int, default=None, metavar="N",
                        help="resume automatically from the newest complete checkpoint after a crash "
                        "or kill, up to N times (never after a config error or a stop); default 0, "
                        "with --slurm 3 (requeues after pre-emption or the time limit)")
    parser.add_argument("--auto-triage", action="store_true",
                        help="after OOM or divergence, restart (within --max-restarts) with triage's "
                        "first suggested patch applied")
    parser.add_argument("--overwrite", action="store_true",
                        help="delete the previous checkpoints and logs in output_dir and start from step 0")
    parser.add_argument("--print-command", action="store_true",
                        help="print the exact accelerate command and environment; launch nothing")
    parser.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    add_slurm_arguments(parser)


def add_slurm_arguments(parser: argparse.ArgumentParser) -> None:
    sl = parser.add_argument_group(
        "Slurm", "submit the run as a batch job instead of starting it here (defaults for partition, "
        "account, qos, time and extra #SBATCH lines come from the slurm block of settings.json)")
    sl.add_argument("--slurm", action="store_true", help="submit to Slurm with sbatch (writes slurm_job.sh "
                    "into the run directory, which every node must see)")
    sl.add_argument("--gpus-per-node", type=int, metavar="G", help="GPUs per node (one process each)")
    sl.add_argument("--cpus-per-task", type=int, metavar="C", help="CPUs for each node's task")
    sl.add_argument("--tasks-per-node", type=int, metavar="K", help=argparse.SUPPRESS)
    sl.add_argument("--partition", metavar="P")
    sl.add_argument("--time", metavar="T", help="time limit, Slurm's format (e.g. 1-00:00:00)")
    sl.add_argument("--account", metavar="A")
    sl.add_argument("--qos", metavar="Q")
    sl.add_argument("--sbatch-arg", action="append", default=[], metavar="ARG",
                    help="one more #SBATCH argument, e.g. --sbatch-arg=--exclusive (repeatable)")
    sl.add_argument("--signal-seconds", type=int, metavar="S",
                    help="USR1 this many seconds before the time limit, so the trainer saves (default 300)")
    sl.add_argument("--print-script", action="store_true", help="print slurm_job.sh; submit nothing")


def slurm_options_from_args(args: argparse.Namespace) -> Any:
    from tunedeck.runner.control.backends.slurm import options_with_settings

    if args.gpus is not None or args.machine_rank or args.main_ip:
        from tunedeck.runner.errors import ConfigError

        raise ConfigError("--gpus, --machine-rank and --main-ip are for runs on this machine; a Slurm job "
                          "gets its nodes and GPUs from the allocation", file="command line",
                          hint="use --nodes and --gpus-per-node")
    return options_with_settings({
        "nodes": args.nodes, "tasks_per_node": args.tasks_per_node, "gpus_per_node": args.gpus_per_node,
        "cpus_per_task": args.cpus_per_task, "partition": args.partition, "time": args.time,
        "account": args.account, "qos": args.qos, "sbatch_args": args.sbatch_arg,
        "signal_seconds": args.signal_seconds,
    })


def options_from_args(args: argparse.Namespace) -> object:
    from tunedeck.runner.control.launch import LaunchOptions, parse_gpus

    return LaunchOptions(
        gpus=parse_gpus(args.gpus),
        num_processes=args.num_processes,
        num_machines=args.nodes,
        machine_rank=args.machine_rank,
        main_process_ip=args.main_ip,
        main_process_port=args.main_port,
        cpu=True if args.cpu else None,
        name=getattr(args, "name", None),
        max_restarts=_max_restarts(args),
        auto_triage=bool(getattr(args, "auto_triage", False)),
        overwrite=bool(getattr(args, "overwrite", False)),
    )


def _max_restarts(args: argparse.Namespace) -> int:
    n = getattr(args, "max_restarts", None)
    if n is None and getattr(args, "slurm", False):
        from tunedeck.runner.control.backends.slurm import DEFAULT_MAX_RESTARTS

        return DEFAULT_MAX_RESTARTS
    return n or 0


def _print_command(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tunedeck.runner.config.yamlio import ConfigDoc
    from tunedeck.runner.control.launch import _validate, build_launch_plan, resolve_output_dir
    from tunedeck.runner.control.secrets import redact_env
    from tunedeck.runner.rundir.protocol import FROZEN_CONFIG

    opts = options_from_args(args)
    doc = ConfigDoc.load(args.config, args.overrides)
    for w in _validate(doc):
        print(w, file=sys.stderr)
    values = doc.values()
    run_dir = resolve_output_dir(values, Path.cwd(), doc.source)
    plan = build_launch_plan(values, config_path=run_dir / FROZEN_CONFIG, **opts.plan_kwargs())  # type: ignore[attr-defined]
    if args.json:
        print(json.dumps({
            "argv": plan.argv,
            "env": redact_env(plan.env),
            "command": plan.shell_command(),
            "accelerate_config_path": str(plan.accelerate_config_path),
            "accelerate_config": plan.accelerate_config,
            "world_size": plan.world_size,
            "backend": plan.backend,
        }, indent=2))
        return 0
    print(plan.shell_command())
    print(f"# launch writes {run_dir / FROZEN_CONFIG} (the frozen config) and "
          f"{plan.accelerate_config_path} (the accelerate config) before running this; "
          "environment shown is what tunedeck adds to yours", file=sys.stderr)
    return 0


def _print_script(args: argparse.Namespace) -> int:
    from tunedeck.runner.control.backends.slurm import script_preview

    opts = options_from_args(args)
    print(script_preview(args.config, args.overrides, opts, slurm_options_from_args(args),
                         warn=lambda t: print(t, file=sys.stderr)), end="")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.print_script:
        return _print_script(args)
    if args.print_command:
        return _print_command(args)
    from tunedeck.runner.control import forkstart
    from tunedeck.runner.control.follow import follow, outcome_exit_code
    from tunedeck.runner.control.launch import launch

    forkstart.allow()  # this short-lived command forks the supervisor (see forkstart)
    opts = options_from_args(args)
    slurm = slurm_options_from_args(args) if args.slurm else None
    res = launch(args.config, args.overrides, opts,  # type: ignore[arg-type]
                 warn=lambda t: print(t, file=sys.stderr, flush=True), slurm=slurm)
    if args.json:
        print(json.dumps({
            "id": res.run_id, "name": res.name, "run_dir": str(res.run_dir), "attempt": res.attempt,
            "resume_from": res.resume_from, "supervisor_pid": res.supervisor_pid, "argv": res.plan.argv,
            "backend": res.backend, "job_id": res.job_id,
        }), flush=True)
    else:
        print(res.run_id, flush=True)
        where = f" as Slurm job {res.job_id}" if res.job_id else ""
        print(f"started run {res.run_id}{where} in {res.run_dir}"
              + (f" (resuming from {res.resume_from})" if res.resume_from else "")
              + f"\n  tunedeck status {res.run_id}   tunedeck logs -f {res.run_id}   tunedeck stop {res.run_id}",
              file=sys.stderr, flush=True)
    if not args.follow:
        return 0
    try:
        status = follow(res.run_dir, from_start=res.resume_from is None, as_json=args.json)
    except KeyboardInterrupt:
        print(f"stopped following; the run goes on (tunedeck stop {res.run_id} stops it)", file=sys.stderr)
        return 130
    return outcome_exit_code(status)
