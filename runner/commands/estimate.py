"""``tunedeck estimate CONFIG [key=value ...]``: GPU memory per component, and a verdict."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="the training config (YAML)")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="override config keys, LLaMA-Factory style (right after CONFIG)")
    p.add_argument("--gpu-mem", type=float, metavar="GiB",
                   help="memory of one GPU in GiB (default: detected through NVML)")
    p.add_argument("--num-gpus", type=int, metavar="N",
                   help="number of GPUs training (default: detected, else 1)")
    p.add_argument("--params", metavar="SIZE",
                   help="model size such as 7B (or a name such as Qwen2.5-7B) when the "
                        "model's config.json is not local")
    p.add_argument("--json", action="store_true", help="print the estimate as JSON")


def run(args: argparse.Namespace) -> int:
    from tunedeck.runner.config.yamlio import ConfigDoc
    from tunedeck.runner.errors import ConfigError
    from tunedeck.runner.estimate import estimate

    if args.num_gpus is not None and args.num_gpus < 1:
        raise ConfigError("--num-gpus must be at least 1", file="command line")
    if args.gpu_mem is not None and args.gpu_mem <= 0:
        raise ConfigError("--gpu-mem must be a positive number of GiB", file="command line")
    path = Path(args.config)
    doc = ConfigDoc.load(path, args.overrides)
    est = estimate(doc.values(), config_dir=path.resolve().parent, num_gpus=args.num_gpus,
                   gpu_mem_gib=args.gpu_mem, params=args.params)
    if args.json:
        json.dump(est.to_dict(), sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
        return 0
    render(est, str(path))
    return 0


def render(est, title: str) -> None:  # type: ignore[no-untyped-def]
    """Print the estimate with rich: component table, total, verdict, levels, assumptions."""
    from rich.console import Console
    from rich.table import Table

    from tunedeck.runner.estimate import format_bytes

    con = Console(highlight=False)
    shape = est.shape
    pct = 100 * est.trainable_params / max(1, shape.total_params)
    con.print(f"[bold]{title}[/]: {shape.total_params / 1e9:.2f}B params "
              f"({shape.source}); trainable {est.trainable_params:,} ({pct:.2f}%)")
    t = Table(show_edge=False, header_style="bold")
    t.add_column("component")
    t.add_column("per GPU", justify="right")
    t.add_column("how", overflow="fold")
    for c in est.components:
        t.add_row(c.name, format_bytes(c.bytes), c.note)
    t.add_section()
    gpus = f"{est.num_gpus} GPU" + ("s" if est.num_gpus != 1 else "")
    t.add_row("[bold]total[/]", f"[bold]{format_bytes(est.per_gpu_bytes)}[/]", f"per GPU, {gpus}")
    con.print(t)
    style = "green" if est.fits else "red" if est.fits is False else "yellow"
    con.print(f"[{style}]{est.verdict()}[/]")
    if est.levels and est.fits is not True:   # when it fits, the levels are noise
        lt = Table(title="the guide's optimisation levels (9.3), applied cumulatively",
                   show_edge=False, header_style="bold", title_justify="left")
        lt.add_column("level")
        lt.add_column("adds", overflow="fold")
        lt.add_column("per GPU", justify="right")
        lt.add_column("fits")
        for lv in est.levels:
            patch = ", ".join(f"{k}={v}" for k, v in lv.patch.items())
            fits = "?" if lv.fits is None else ("yes" if lv.fits else "no")
            lt.add_row(lv.title, patch, format_bytes(lv.per_gpu_bytes), fits)
        con.print(lt)
    if est.assumptions:
        con.print("[dim]assumptions:[/]")
        for a in est.assumptions:
            con.print(f"[dim]  - {a}[/]")
