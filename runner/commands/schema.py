"""``tunedeck schema [--markdown|--json] [--group G]``: the parameter reference."""

from __future__ import annotations

import argparse
import json
import sys

from tunedeck.runner.config.schema import GROUPS, schema_as_json, schema_markdown
from tunedeck.runner.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    fmt = parser.add_mutually_exclusive_group()
    fmt.add_argument("--markdown", action="store_true", help="Markdown tables (the default)")
    fmt.add_argument("--json", action="store_true", help="JSON: groups and parameters")
    parser.add_argument("--group", metavar="G", help="only one form pane: " + ", ".join(g.id for g in GROUPS))


def run(args: argparse.Namespace) -> int:
    if args.group is not None and args.group not in {g.id for g in GROUPS}:
        raise ConfigError(f"unknown group {args.group!r}",
                          hint="groups: " + ", ".join(g.id for g in GROUPS))
    if args.json:
        json.dump(schema_as_json(args.group), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(schema_markdown(args.group))
    return 0
