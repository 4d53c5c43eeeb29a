"""The ``tunedeck`` command: headless subcommands; with no subcommand, the TUI.

Exit codes (documented in README):
  0 success; 1 unexpected failure; 2 invalid config or usage; 3 run not found;
  4 run busy (locked / already active); 5 launch failed; 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from tunedeck.runner import __version__
from tunedeck.runner.errors import TunedeckError

# name -> (module under tunedeck.runner.commands, one-line help). Order is the help order.
COMMANDS: dict[str, tuple[str, str]] = {
    "validate": ("validate", "check configs: every error, warning and advice with file:line"),
    "estimate": ("estimate", "estimate GPU memory for a config, per component, with a verdict"),
    "schema": ("schema", "print the parameter schema (markdown table or JSON)"),
    "launch": ("launch", "start a detached, supervised training run"),
    "runs": ("runs", "list runs under a root (tunedeck, LLaMA-Factory, transformers)"),
    "status": ("status", "show one run's status, progress, loss, ETA"),
    "logs": ("logs", "print or follow a run's stdout.log"),
    "stop": ("stop", "stop a run cleanly (checkpoint, then exit) and verify nothing is left"),
    "resume": ("resume", "resume a run from its newest complete checkpoint (or a chosen one)"),
    "compare": ("compare", "compare runs side by side: losses, speed, VRAM, deltas, differing settings"),
    "archive": ("archive", "hide runs from listings (nothing deleted); --undo shows them again"),
    "delete": ("delete", "delete a finished run with its checkpoints, after a confirmation naming the bytes"),
    "queue": ("queue", "queue runs (and sweeps) that start in order when their GPUs are free"),
    "checkpoints": ("checkpoints", "list a run's checkpoints: step, time, size, loss, complete"),
    "triage": ("triage", "diagnose a failed or struggling run; --apply N writes a patched config"),
    "notify": ("notify", "list alert destinations (apprise URLs); --test sends a test message"),
    "gpus": ("gpus", "show GPUs, memory, utilisation and which run uses them"),
    "watch": ("watch", "lightweight auto-refreshing view for a tmux pane (no TUI)"),
    "serve": ("serve", "serve a run's checkpoints over an OpenAI-compatible API, as a supervised job"),
    "predict": ("predict", "generate for an eval set row by row and score it (bleu-4, rouge-1/2/l)"),
    "demo": ("demo", "build the tiny offline model and data, train it, show progress"),
    "chat": ("chat", "talk to a run's checkpoint (or a config / exported model), tokens streamed"),
    "export": ("export", "merge a run's LoRA into its base model and write a deployable folder"),
    "make-tiny-model": ("make_tiny_model", "build a tiny LLaMA model + tokenizer offline"),
    "make-demo-data": ("make_demo_data", "write the demo instruction datasets + dataset_info.json"),
    "tui": ("tui", "open the terminal UI (same as running tunedeck with no command)"),
    "supervise": ("supervise", argparse.SUPPRESS),  # internal: the detached supervisor
}


def _selected_command(argv: Sequence[str]) -> str | None:
    for tok in argv:
        if tok.startswith("-"):
            continue
        return tok if tok in COMMANDS else None
    return None


def build_parser(selected: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tunedeck",
        description="A terminal control room for LLM fine-tuning. "
        "Run with no command to open the TUI.",
        epilog="Exit codes: 0 ok, 1 failure, 2 invalid config/usage, 3 run not found, "
        "4 run busy, 5 launch failed, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"tunedeck {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        if help_text is argparse.SUPPRESS:
            p = sub.add_parser(name)
        else:
            p = sub.add_parser(name, help=help_text, description=help_text)
        if name == selected:
            mod = importlib.import_module(f"tunedeck.runner.commands.{module}")
            mod.add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    selected = _selected_command(args_list)
    if selected is None and not any(a in ("-h", "--help", "--version") for a in args_list):
        # `tunedeck [--root DIR] [--readonly] [--theme NAME]` opens the TUI.
        selected = "tui"
        args_list = ["tui", *args_list]
    parser = build_parser(selected)
    # parse_known_args so that key=value overrides may follow options
    # (`tunedeck resume RUN --follow lr=1e-4`), which argparse alone refuses.
    args, extra = parser.parse_known_args(args_list)
    if extra:
        if hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides = [*(args.overrides or []), *extra]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command is None:
        parser.print_help()
        return 0
    mod = importlib.import_module(f"tunedeck.runner.commands.{COMMANDS[args.command][0]}")
    try:
        return int(mod.run(args) or 0)
    except TunedeckError as exc:
        print(f"tunedeck: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("tunedeck: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `tunedeck runs | head`: the reader went away; that is not an error.
        sys.stdout = None  # type: ignore[assignment]  # no flush of the dead pipe at exit
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
