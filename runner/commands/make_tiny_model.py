"""``tunedeck make-tiny-model DIR [--seed S]``: a tiny LLaMA model + tokenizer, built offline.

Nothing is downloaded: the byte-level BPE tokenizer is trained on synthetic text and
the weights are random, deterministically from the seed (same seed, same bytes).
"""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", help="folder to write config.json, model.safetensors and the tokenizer into")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same files)")
    p.add_argument("--hidden", type=int, default=128, help="hidden size (default 128)")
    p.add_argument("--layers", type=int, default=2, help="decoder layers (default 2)")
    p.add_argument("--json", action="store_true", help="print what was built as JSON")


def run(args: argparse.Namespace) -> int:
    from tunedeck.runner.errors import ConfigError

    if args.hidden < 16 or args.hidden % 4:
        raise ConfigError("--hidden must be a multiple of 4 and at least 16", file="command line")
    if args.layers < 1:
        raise ConfigError("--layers must be at least 1", file="command line")
    from tunedeck.runner.control.requirements import require_training_stack

    require_training_stack("build the tiny model")
    # The training stack is imported only now that the command really runs.
    from tunedeck.runner.train.tiny import build_tiny_model, read_build_info

    try:
        out = build_tiny_model(args.dir, seed=args.seed, hidden=args.hidden, layers=args.layers)
    except OSError as exc:
        raise ConfigError(f"cannot write the model: {exc}", file=args.dir) from exc
    info = read_build_info(out) or {}
    if args.json:
        json.dump({"dir": str(out), **info}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(f"wrote a tiny LLaMA model to {out}: {info.get('params', 0):,} parameters, "
              f"hidden {info.get('hidden')}, {info.get('layers')} layers, vocab {info.get('vocab_size')}, "
              f"seed {info.get('seed')}")
        print(f"  use it with: model_name_or_path: {out}")
    return 0
