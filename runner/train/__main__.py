"""Entry point: ``accelerate launch ... -m tunedeck.runner.train CONFIG.yaml [key=value ...]``."""

from __future__ import annotations

import sys

from tunedeck.runner.train.workflow import hard_exit, main, needs_hard_exit

if __name__ == "__main__":
    code = main()
    if needs_hard_exit():
        hard_exit(code)  # a distributed worker: see workflow.hard_exit
    sys.exit(code)
