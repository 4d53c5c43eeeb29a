"""The live memory estimate: per-component table, total vs the GPU, fits / does not fit,
and which of the guide's optimisation levels would make it fit."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from tunedeck.tui import format as fmt

if TYPE_CHECKING:
    from tunedeck.tui.data.editor import MemoryEstimate


def render_estimate(est: MemoryEstimate | None, error: str | None, label: str,
                    variables: Mapping[str, str]) -> RenderableType:
    muted = fmt.style_for(variables, "muted")
    if est is None:
        return Text(f"No estimate: {error or 'not computed yet'}", style=muted)
    parts: list[RenderableType] = []
    head = Text()
    head.append("GPU memory: ", style="bold")
    head.append(label)
    parts.append(head)
    table = Table(show_header=False, box=None, expand=True, padding=(0, 1))
    table.add_column("component", ratio=1, overflow="fold")
    table.add_column("bytes", justify="right", no_wrap=True)
    for c in est.components:
        table.add_row(c.name, fmt.size(c.bytes))
    table.add_row(Text("per GPU", style="bold"), Text(fmt.size(est.per_gpu_bytes), style="bold"))
    parts.append(table)
    verdict = Text()
    if est.fits is None:
        verdict.append("? no GPU size known: ", style=fmt.style_for(variables, "status-stopped", bold=True))
        verdict.append("ctrl+g picks a 24/48/80GB preset", style=muted)
    elif est.fits:
        verdict.append("✔ fits", style=fmt.style_for(variables, "status-running", bold=True))
        verdict.append(f": {fmt.size(est.headroom_bytes)} headroom of {fmt.size(est.gpu_mem_bytes)}"
                       f" on {est.num_gpus} GPU{'s' if est.num_gpus != 1 else ''}")
    else:
        verdict.append("✖ does not fit", style=fmt.style_for(variables, "status-failed", bold=True))
        verdict.append(f": needs {fmt.size(est.per_gpu_bytes)} of {fmt.size(est.gpu_mem_bytes)} per GPU")
    parts.append(verdict)
    if est.fits is False and est.levels:
        first = next((lv for lv in est.levels if lv.fits), None)
        if first is not None:
            parts.append(Text(f"Fits from optimisation level {first.level}: {first.title} "
                              f"({fmt.size(first.per_gpu_bytes)})"))
        else:
            parts.append(Text("No optimisation level of the guide makes it fit: more GPUs or a "
                              "smaller model.", style=muted))
    if error:
        parts.append(Text(error, style=muted))
    if est.assumptions:
        parts.append(Text("Assumes: " + "; ".join(est.assumptions[:4]), style=muted))
    return Group(*parts)
