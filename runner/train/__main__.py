"""Entry point: ``python -m tunedeck.runner.train CONFIG.yaml [key=value ...]``, alone (one
process) or under ``accelerate launch`` (several)."""

from __future__ import annotations

import signal
import sys

# Under several processes the launcher is started with SIGTERM/SIGUSR1 ignored so torchrun's
# agent never kills a saving worker (tunedeck.runner.control.launch.launcher_preexec); the
# workers inherit that. Restore the default first thing, before the imports below take
# seconds: StopSignals installs the real handlers at the start of main().
for _sig in (signal.SIGTERM, signal.SIGUSR1):
    if signal.getsignal(_sig) is signal.SIG_IGN:
        signal.signal(_sig, signal.SIG_DFL)

from tunedeck.runner.train.startup import pause_full_collections  # noqa: E402

# No full garbage collection while torch, transformers ... load (tunedeck.runner.train.startup).
pause_full_collections()

from tunedeck.runner.train.workflow import hard_exit, main, needs_hard_exit  # noqa: E402

if __name__ == "__main__":
    code = main()
    if needs_hard_exit():
        hard_exit(code)  # a distributed worker: see workflow.hard_exit
    sys.exit(code)
