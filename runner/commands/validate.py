"""``tunedeck validate CONFIG... [key=value ...]``: every problem of every config, with its place.

Exit 0 when no file has an error, 2 when any has (warnings and advice never fail).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from tunedeck.runner.config.validate import Finding, has_errors, summarize, validate_path
from tunedeck.runner.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("items", nargs="+", metavar="CONFIG",
                        help="config files; key=value overrides may follow a single config")
    parser.add_argument("--json", action="store_true", help="print the findings as JSON (one object per file)")
    parser.add_argument("--no-files", dest="check_files", action="store_false",
                        help="skip checks that read the filesystem (model, datasets, checkpoints, templates)")
    parser.add_argument("--quiet-advice", action="store_true",
                        help="hide advice (the guide's recommendations and unchecked pass-through keys)")
    parser.add_argument("--cuda", choices=("auto", "yes", "no"), default="auto",
                        help="judge GPU-only settings as if CUDA were present or not (default: detect)")


def _split(items: list[str]) -> tuple[list[str], list[str]]:
    configs: list[str] = []
    overrides: list[str] = []
    for item in items:
        if overrides or ("=" in item and not Path(item).exists()):
            overrides.append(item)
        else:
            configs.append(item)
    return configs, overrides


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 or word == "advice" else f"{n} {word}s"


def run(args: argparse.Namespace) -> int:
    configs, overrides = _split(list(args.items))
    if not configs:
        raise ConfigError("no config file given", hint="tunedeck validate path/to/config.yaml [key=value ...]")
    if overrides and len(configs) > 1:
        raise ConfigError("key=value overrides can only follow a single config",
                          hint="validate the files one at a time to override keys")
    cuda = {"auto": None, "yes": True, "no": False}[args.cuda]
    results: list[tuple[str, list[Finding]]] = []
    for cfg in configs:
        findings = validate_path(cfg, overrides, check_files=args.check_files, cuda_available=cuda)
        results.append((cfg, findings))
    any_error = any(has_errors(f) for _, f in results)
    if args.json:
        out: list[dict[str, Any]] = []
        for cfg, findings in results:
            shown = [f for f in findings if not (args.quiet_advice and f.severity == "advice")]
            out.append({"file": cfg, "findings": [f.to_dict() for f in shown], **summarize(findings)})
        json.dump(out, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 2 if any_error else 0
    for i, (cfg, findings) in enumerate(results):
        if i:
            print()
        counts = summarize(findings)
        shown = [f for f in findings if not (args.quiet_advice and f.severity == "advice")]
        for f in shown:
            print(f.format())
        verdict = "invalid" if counts["errors"] else "ok"
        print(f"{cfg}: {verdict}: {_plural(counts['errors'], 'error')}, "
              f"{_plural(counts['warnings'], 'warning')}, {_plural(counts['advice'], 'advice')}")
    return 2 if any_error else 0
