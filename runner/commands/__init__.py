"""One module per ``tunedeck`` subcommand.

Each module exposes ``add_arguments(parser)`` and ``run(args) -> int``. The CLI
imports only the module of the command being run, so ``tunedeck status`` never
pays for what ``tunedeck demo`` needs. None of them may import torch or Textual at
module level.
"""
