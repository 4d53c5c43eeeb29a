"""``tunedeck chat RUN|CONFIG [--checkpoint N|latest|base|PATH] [key=value ...]``: talk to a model.

Interactive on a terminal (readline history, tokens streamed as they come, Ctrl+C stops the
answer, not the chat; Ctrl+D or /exit leaves). With stdin not a terminal, every input line is
a message (or a slash command) and each answer is printed on stdout, one per line, so scripts
and tests can drive it; diagnostics go to stderr. In both modes ``\\n`` in a line is a newline
(answers printed in batch mode escape newlines the same way).
"""

from __future__ import annotations

import argparse
import sys

EPILOG = """\
The prompt is formatted by the run's own template code (the same that formatted its training
data). Commands inside the chat:
  /system TEXT      set the system prompt (no TEXT: the template's default)
  /set KEY VALUE    change a generation setting (temperature, top_p, top_k, max_new_tokens,
                    do_sample, num_beams, repetition_penalty, length_penalty, ...)
  /retry  /undo  /clear  /save FILE  /exit  /help
Checkpoint: none = the run's final weights (else its newest complete checkpoint); N or
checkpoint-N; latest; base (the base model without the adapter); or a path.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from tunedeck.runner.commands.launch import add_overrides_argument

    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("target", metavar="RUN|CONFIG|SERVER",
                        help="run id, run name, output_dir, an inference config, an exported model dir, "
                             "or a running `tunedeck serve` job / server URL (talks to it over HTTP)")
    parser.add_argument("--checkpoint", metavar="N|latest|base|PATH", help="which weights to load")
    parser.add_argument("--system", metavar="TEXT", help="system prompt (default: the template's)")
    parser.add_argument("--seed", type=int, metavar="N", help="seed sampling for a reproducible answer")
    parser.add_argument("--model", metavar="ID", help="with a server: which served model (default the first)")
    parser.add_argument("--api-key", metavar="KEY", help="with a server that requires one "
                        "(default $TUNEDECK_SERVE_API_KEY)")
    add_overrides_argument(parser)


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from tunedeck.runner.infer import resolve
    from tunedeck.runner.infer.chat import ChatSession

    interactive = sys.stdin.isatty()
    remote = _served(args)
    if remote is not None:
        from tunedeck.runner.config.yamlio import parse_overrides
        from tunedeck.runner.infer.spec import GenConfig

        gen = GenConfig.from_values(parse_overrides(args.overrides or []))
        session = ChatSession(label=remote.label, gen=gen, system=args.system, remote=remote)
        _say(f"chat with {remote.label}; /help for commands"
             + (", Ctrl+C stops an answer, Ctrl+D leaves" if interactive else ""))
        return _interactive(session) if interactive else _batch(session)

    spec = resolve(args.target, args.checkpoint, args.overrides or [])
    from tunedeck.runner.infer.engine import load_model, seed_everything

    loaded = load_model(spec, progress=lambda s: _say(f"loading: {s}"))
    seed_everything(args.seed)
    session = ChatSession(label=spec.label, gen=spec.generation, system=args.system, loaded=loaded)
    _say(f"chat with {spec.label} (template {loaded.template.name}, {loaded.device}); "
         "/help for commands" + (", Ctrl+C stops an answer, Ctrl+D leaves" if interactive else ""))
    return _interactive(session) if interactive else _batch(session)


def _served(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """A running ``tunedeck serve`` job or a server URL as the target: talk to it over HTTP."""
    from tunedeck.runner.infer.remote import connect

    model = args.model or (None if args.checkpoint in (None, "latest") else args.checkpoint)
    return connect(args.target, model=model, api_key=args.api_key)


def _stream(session, *, echo: bool) -> str:  # type: ignore[no-untyped-def]
    """Generate the pending answer; Ctrl+C (SIGINT) stops it at the next token."""
    import signal
    import threading

    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    parts: list[str] = []
    try:
        for piece in session.reply(stop):
            parts.append(piece)
            if echo:
                sys.stdout.write(piece)
                sys.stdout.flush()
    finally:
        signal.signal(signal.SIGINT, previous)
    if stop.is_set() and echo:
        sys.stdout.write(" [stopped]")
    return "".join(parts)


def _handle(session, line: str, *, echo: bool) -> tuple[bool, str | None]:  # type: ignore[no-untyped-def]
    """(keep going, answer or None)."""
    from tunedeck.runner.errors import TunedeckError
    from tunedeck.runner.infer.chat import parse_command, unescape_line

    try:
        out = session.apply(parse_command(unescape_line(line)))
    except TunedeckError as exc:
        _say(f"tunedeck: {exc}")
        return True, None
    if out.message:
        _say(out.message)
    if out.action == "exit":
        return False, None
    if out.action == "generate":
        return True, _stream(session, echo=echo)
    return True, None


def _interactive(session) -> int:  # type: ignore[no-untyped-def]
    import contextlib

    with contextlib.suppress(ImportError):
        import readline  # noqa: F401 - line editing and history for input()
    while True:
        try:
            line = input("\nUser: ")
        except EOFError:
            print()
            return 0
        except KeyboardInterrupt:
            print("^C (Ctrl+D or /exit leaves)")
            continue
        if not line.strip():
            continue
        if not line.startswith("/") or line.startswith(("/retry", "//")):
            sys.stdout.write("Assistant: ")
            sys.stdout.flush()
        go, answer = _handle(session, line, echo=True)
        if answer is not None:
            sys.stdout.write("\n")
        if not go:
            return 0


def _batch(session) -> int:  # type: ignore[no-untyped-def]
    for raw in sys.stdin:
        line = raw.rstrip("\n")
        if not line.strip():
            continue
        go, answer = _handle(session, line, echo=False)
        if answer is not None:
            # one answer per line: a newline inside an answer is written as \n
            print(answer.replace("\\", "\\\\").replace("\n", "\\n"), flush=True)
        if not go:
            break
    return 0
