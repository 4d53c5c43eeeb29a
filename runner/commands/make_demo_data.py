"""``tunedeck make-demo-data DIR [--seed S] [--n N]``: write the offline demo datasets."""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", help="folder to write the datasets and dataset_info.json into")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same files)")
    p.add_argument("--n", type=int, default=1000, metavar="N",
                   help="examples per instruction dataset (preference sets get N/4)")
    p.add_argument("--json", action="store_true", help="print name -> file as JSON")


def run(args: argparse.Namespace) -> int:
    from tunedeck.runner.data.demo import write_demo_data
    from tunedeck.runner.errors import ConfigError

    if args.n < 1:
        raise ConfigError("--n must be at least 1", file="command line")
    try:
        files = write_demo_data(args.dir, seed=args.seed, n=args.n)
    except OSError as exc:
        raise ConfigError(f"cannot write demo data: {exc}", file=args.dir) from exc
    if args.json:
        json.dump({k: str(v) for k, v in files.items()}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(f"wrote {len(files)} datasets to {args.dir} (dataset_dir for your config):")
        for name, path in files.items():
            print(f"  {name:<14} {path.name}")
    return 0
