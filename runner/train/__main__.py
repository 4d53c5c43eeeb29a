"""Entry point: ``accelerate launch ... -m runner.train CONFIG.yaml [key=value ...]``."""

from __future__ import annotations

import sys

from runner.train.workflow import main

if __name__ == "__main__":
    sys.exit(main())
