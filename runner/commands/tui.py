"""``tunedeck tui`` (and ``tunedeck`` with no command): open the terminal UI.

Textual is imported only when the command runs, so ``tunedeck tui --help`` and every
other subcommand stay free of it.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", metavar="DIR", default=None,
                        help="where runs are discovered (default: the current directory)")
    parser.add_argument("--readonly", action="store_true",
                        help="watch only: every action that changes a run or a file is removed")
    parser.add_argument("--theme", metavar="NAME", default=None,
                        help="colour theme: tunedeck-dark (default), tunedeck-light, tunedeck-contrast "
                             "(16 colours), or a user theme; remembered for next time")
    parser.add_argument("--config", metavar="FILE", default=None,
                        help="open this YAML config in the editor right away")


def run(args: argparse.Namespace) -> int:
    from tunedeck.runner.errors import ConfigError, TunedeckError

    class UsageError(TunedeckError):
        exit_code = 2  # "invalid config or usage" (see runner/cli.py)

    root = Path(args.root).expanduser() if args.root else Path.cwd()
    if not root.is_dir():
        raise UsageError(f"--root {root} is not a directory", hint="pass the folder that holds your runs")
    if args.config and not Path(args.config).expanduser().is_file():
        raise ConfigError("config file not found", file=args.config, hint="--config takes a YAML file")
    from tunedeck.tui.app import TunedeckApp

    app = TunedeckApp(root=root, readonly=args.readonly, theme=args.theme,
                      config=Path(args.config).expanduser() if args.config else None)
    result = app.run()
    # An unhandled exception inside the app: Textual restores the terminal, prints the
    # traceback and returns no result, but sets return_code (1). Never report success then.
    if app.return_code:
        return int(app.return_code)
    return int(result or 0)
