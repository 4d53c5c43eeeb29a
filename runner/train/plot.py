"""``plot_loss``: ``training_loss.png`` (and ``training_eval_loss.png``) like LLaMA-Factory."""

from __future__ import annotations

import json
import math
from pathlib import Path

from tunedeck.runner.rundir.protocol import TRAINER_STATE


def smooth(values: list[float], weight: float | None = None) -> list[float]:
    """Exponential moving average; the weight grows with the series length (LF's sigmoid rule)."""
    if not values:
        return []
    if weight is None:
        weight = 1.8 * (1 / (1 + math.exp(-0.05 * len(values))) - 0.5)
    out, last = [], values[0]
    for v in values:
        last = last * weight + (1 - weight) * v
        out.append(last)
    return out


def plot_loss(output_dir: str | Path, keys: tuple[str, ...] = ("loss", "eval_loss")) -> list[Path]:
    """Draw each key of ``trainer_state.json``'s log history; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(output_dir)
    try:
        history = json.loads((out / TRAINER_STATE).read_text())["log_history"]
    except (OSError, ValueError, KeyError):
        return []
    written: list[Path] = []
    for key in keys:
        steps = [h["step"] for h in history if key in h and "step" in h]
        values = [float(h[key]) for h in history if key in h and "step" in h]
        if not values:
            continue
        fig = plt.figure()
        plt.plot(steps, values, color="#1f77b4", alpha=0.4, label="original")
        plt.plot(steps, smooth(values), color="#1f77b4", label="smoothed")
        plt.title(f"training {key} of {out}")
        plt.xlabel("step")
        plt.ylabel(key)
        plt.legend()
        path = out / f"training_{key.replace('/', '_')}.png"
        plt.savefig(path, format="png", dpi=100)
        plt.close(fig)
        written.append(path)
    return written
