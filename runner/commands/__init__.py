"""One module per ``tunedeck`` subcommand.

Each module exposes ``add_arguments(parser)`` and ``run(args) -> int``. The CLI
imports only the module of the command being run, so ``tunedeck status`` never
pays for what ``tunedeck demo`` needs. None of them may import torch or Textual at
module level.
"""

from __future__ import annotations

import argparse


def add_job_target(parser: argparse.ArgumentParser, overrides_help: str) -> None:
    """What an inference job (``predict``, ``serve``) loads: a run, a config or an exported
    model, and ``key=value`` overrides of its inference keys."""
    parser.add_argument("target", metavar="RUN|CONFIG|EXPORT_DIR")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help=overrides_help)
