"""Comparing runs: one summary row per run, deltas to a baseline, the hyperparameter diff,
and the curves aligned by step, tokens seen or wall time.

Works on anything ``runs`` finds: tunedeck runs (``config.yaml``, the frozen config),
LLaMA-Factory output dirs (``training_args.yaml``, ``trainer_log.jsonl``) and plain
transformers dirs (``trainer_state.json``, ``adapter_config.json``). Headless: the CLI,
the TUI's compare screen and ``--png`` all read these dataclasses.
"""

from __future__ import annotations

import bisect
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunedeck.runner.rundir.protocol import FROZEN_CONFIG

# Keys that differ between any two runs by construction: noise in a diff.
PER_RUN_KEYS = frozenset({"output_dir", "run_name", "logging_dir", "overwrite_output_dir"})
# trainer_state.json fields that are settings (a plain transformers dir has nothing else readable).
STATE_SETTINGS = ("train_batch_size", "num_train_epochs", "max_steps", "logging_steps",
                  "save_steps", "eval_steps")
X_AXES = ("step", "tokens", "time")
SERIES_METRICS = ("loss", "eval_loss", "lr", "grad_norm", "throughput", "vram_reserved")


@dataclass(frozen=True)
class Series:
    """One metric of one run: x by step, plus the step->tokens and step->seconds maps."""

    steps: tuple[float, ...]
    values: tuple[float, ...]


@dataclass
class RunCurves:
    """A run's metric columns and the maps that align it by tokens or wall time."""

    metrics: dict[str, Series] = field(default_factory=dict)
    # Sorted by step: where the log said how many tokens / seconds had passed.
    x_steps: list[float] = field(default_factory=list)
    x_tokens: list[float | None] = field(default_factory=list)
    x_seconds: list[float | None] = field(default_factory=list)

    def x(self, metric: str, axis: str = "step") -> list[float | None]:
        """The x coordinate of each point of ``metric`` on ``axis`` (None where unknown)."""
        s = self.metrics.get(metric)
        if s is None:
            return []
        if axis == "step":
            return list(s.steps)
        col = self.x_tokens if axis == "tokens" else self.x_seconds
        out: list[float | None] = []
        for st in s.steps:
            i = bisect.bisect_right(self.x_steps, st) - 1
            out.append(col[i] if i >= 0 else None)
        return out

    def points(self, metric: str, axis: str = "step") -> tuple[list[float], list[float]]:
        """(x, y) with unknown x and non-finite y dropped."""
        s = self.metrics.get(metric)
        if s is None:
            return [], []
        xs, ys = [], []
        for x, y in zip(self.x(metric, axis), s.values, strict=True):
            if x is not None and math.isfinite(y):
                xs.append(x)
                ys.append(y)
        return xs, ys


@dataclass(frozen=True)
class RunSummary:
    """One row of the compare table."""

    ref: str
    run_dir: str
    name: str
    kind: str
    status: str
    steps: int | None
    total_steps: int | None
    final_loss: float | None
    best_loss: float | None
    best_loss_step: int | None
    best_eval_loss: float | None
    best_eval_step: int | None
    tokens_per_s: float | None
    peak_vram_gib: float | None
    wall_time_s: float | None
    config_source: str | None

    def metric(self, key: str) -> float | None:
        v = getattr(self, key)
        return float(v) if isinstance(v, (int, float)) else None


DELTA_KEYS = ("final_loss", "best_loss", "best_eval_loss", "tokens_per_s", "peak_vram_gib", "wall_time_s")


@dataclass(frozen=True)
class DiffRow:
    key: str
    values: tuple[Any, ...]  # one per run, MISSING where the run has no such key


class _Missing:
    def __repr__(self) -> str:
        return "-"


MISSING: Any = _Missing()


@dataclass
class Comparison:
    runs: list[RunSummary]
    baseline: int
    diff: list[DiffRow]
    deltas: list[dict[str, float | None]]
    curves: list[RunCurves]
    settings: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        def clean(v: Any) -> Any:
            if v is MISSING:
                return None
            if isinstance(v, float) and not math.isfinite(v):
                return None if math.isinf(v) else "NaN"
            return v

        rows = []
        for s, d in zip(self.runs, self.deltas, strict=True):
            row = {k: clean(v) for k, v in s.__dict__.items()}
            row["delta"] = {k: clean(v) for k, v in d.items()}
            rows.append(row)
        return {
            "baseline": self.runs[self.baseline].ref,
            "runs": rows,
            "diff": {r.key: [clean(v) for v in r.values] for r in self.diff},
        }


# ----------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------
def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v)


def _records(run_dir: Path) -> list[dict[str, Any]]:
    from tunedeck.runner.rundir.logs import read_log_records

    return read_log_records(run_dir).records


def read_curves(run_dir: str | os.PathLike[str], records: list[dict[str, Any]] | None = None) -> RunCurves:
    """The metric curves of a run and its step->tokens / step->seconds maps."""
    from tunedeck.runner.rundir.logs import MetricHistory
    from tunedeck.runner.rundir.runs import parse_duration

    recs = _records(Path(run_dir)) if records is None else records
    hist = MetricHistory()
    xmap: dict[float, tuple[float | None, float | None]] = {}
    t0: float | None = None
    for rec in recs:
        hist.append(rec)
        step = _num(rec.get("current_steps"))
        if step is None:
            step = _num(rec.get("step"))
        if step is None:
            continue
        tokens = _num(rec.get("total_tokens")) or _num(rec.get("num_input_tokens_seen"))
        seconds = parse_duration(rec.get("elapsed_time"))
        ts = _num(rec.get("timestamp"))
        if seconds is None and ts is not None:
            t0 = ts if t0 is None else t0
            seconds = ts - t0
        if tokens is not None or seconds is not None:
            old = xmap.get(step, (None, None))
            xmap[step] = (tokens if tokens is not None else old[0], seconds if seconds is not None else old[1])
    curves = RunCurves()
    for m in hist.names():
        curves.metrics[m] = Series(tuple(hist.steps(m)), tuple(hist.values(m)))
    for st in sorted(xmap):
        curves.x_steps.append(st)
        curves.x_tokens.append(xmap[st][0])
        curves.x_seconds.append(xmap[st][1])
    return curves


def _load_yaml(path: Path) -> dict[str, Any]:
    from tunedeck.runner.config.yamlio import load_config
    from tunedeck.runner.errors import TunedeckError

    try:
        return dict(load_config(path).values())
    except (TunedeckError, OSError, ValueError):
        return {}


def read_settings(run_dir: str | os.PathLike[str]) -> tuple[dict[str, Any], str | None]:
    """A run's hyperparameters and where they came from.

    tunedeck: the frozen ``config.yaml``; LLaMA-Factory: ``training_args.yaml``; both
    completed with the settings ``trainer_state.json`` records. A plain transformers dir:
    ``trainer_state.json``'s settings and ``adapter_config.json`` (as ``adapter.KEY``);
    its ``training_args.bin`` is a pickle and is never loaded.
    """
    from tunedeck.runner.rundir.logs import trainer_state_path

    run = Path(run_dir)
    out: dict[str, Any] = {}
    source: str | None = None
    for name in (FROZEN_CONFIG, "training_args.yaml"):
        p = run / name
        if p.is_file():
            out = _load_yaml(p)
            source = str(p)
            break
    state_p = trainer_state_path(run)
    if state_p is not None:
        try:
            state = json.loads(state_p.read_bytes())
        except (OSError, ValueError, RecursionError):
            state = None
        if isinstance(state, dict):
            for k in STATE_SETTINGS:
                if k in state and k not in out and state[k] is not None:
                    out[k] = state[k]
            source = source or str(state_p)
    if source is None or source == str(state_p):
        ad = run / "adapter_config.json"
        try:
            adapter = json.loads(ad.read_bytes()) if ad.is_file() else None
        except (OSError, ValueError, RecursionError):
            adapter = None
        if isinstance(adapter, dict):
            for k, v in adapter.items():
                if isinstance(v, (str, int, float, bool, list)) or v is None:
                    out[f"adapter.{k}"] = v
    return out, source


def summarize(run_dir: str | os.PathLike[str], ref: str | None = None,
              curves: RunCurves | None = None) -> RunSummary:
    """The compare row of one run."""
    from tunedeck.runner.rundir.runs import read_run

    snap = read_run(run_dir)
    cur = curves if curves is not None else read_curves(run_dir)

    def best(metric: str) -> tuple[float | None, int | None]:
        s = cur.metrics.get(metric)
        if s is None:
            return None, None
        pts = [(v, st) for st, v in zip(s.steps, s.values, strict=True) if math.isfinite(v)]
        if not pts:
            return None, None
        v, st = min(pts, key=lambda p: (p[0], p[1]))
        return v, int(st)

    loss = cur.metrics.get("loss")
    final = loss.values[-1] if loss and loss.values else None
    best_loss, best_loss_step = best("loss")
    best_eval, best_eval_step = best("eval_loss")
    tp = cur.metrics.get("throughput")
    tps = [v for v in (tp.values if tp else ()) if math.isfinite(v) and v > 0]
    tokens_per_s = sorted(tps)[len(tps) // 2] if tps else None
    vram: list[float] = []
    for m in ("vram_reserved", "vram_allocated"):
        s = cur.metrics.get(m)
        if s:
            vram.extend(v for v in s.values if math.isfinite(v))
    wall = snap.elapsed_seconds
    if wall is None:
        secs = [x for x in cur.x_seconds if x is not None]
        wall = max(secs) if secs else None
    if wall is None:
        for rec in reversed(_records(Path(run_dir)) if curves is None else []):
            rt = _num(rec.get("train_runtime"))
            if rt is not None:
                wall = rt
                break
    if wall is None and snap.created_at and snap.finished_at:
        wall = snap.finished_at - snap.created_at
    _, source = read_settings(run_dir)
    return RunSummary(
        ref=ref or snap.name,
        run_dir=str(snap.run_dir),
        name=snap.name,
        kind=snap.kind,
        status=snap.status.value,
        steps=snap.current_steps,
        total_steps=snap.total_steps,
        final_loss=final,
        best_loss=best_loss,
        best_loss_step=best_loss_step,
        best_eval_loss=best_eval,
        best_eval_step=best_eval_step,
        tokens_per_s=tokens_per_s,
        peak_vram_gib=max(vram) if vram else None,
        wall_time_s=wall,
        config_source=source,
    )


def diff_settings(settings: list[dict[str, Any]]) -> list[DiffRow]:
    """Only the keys whose values are not the same in every run (a missing key differs)."""
    keys: list[str] = []
    seen: set[str] = set()
    for s in settings:
        for k in s:
            if k not in seen and k not in PER_RUN_KEYS:
                seen.add(k)
                keys.append(k)
    rows = []
    for k in keys:
        vals = tuple(s.get(k, MISSING) for s in settings)
        canon = {json.dumps(v, sort_keys=True, default=str) if v is not MISSING else "\0missing" for v in vals}
        if len(canon) > 1:
            rows.append(DiffRow(k, vals))
    rows.sort(key=lambda r: r.key)
    return rows


def compare_dirs(run_dirs: list[Path], refs: list[str] | None = None, baseline: int = 0) -> Comparison:
    """Compare run directories; ``baseline`` indexes the run the deltas are taken against."""
    refs = refs or [d.name for d in run_dirs]
    curves = [read_curves(d) for d in run_dirs]
    runs = [summarize(d, r, c) for d, r, c in zip(run_dirs, refs, curves, strict=True)]
    settings = [read_settings(d)[0] for d in run_dirs]
    base = runs[baseline]
    deltas = []
    for r in runs:
        d: dict[str, float | None] = {}
        for k in DELTA_KEYS:
            a, b = r.metric(k), base.metric(k)
            d[k] = None if a is None or b is None else a - b
        deltas.append(d)
    return Comparison(runs, baseline, diff_settings(settings), deltas, curves, settings)


# ----------------------------------------------------------------------------
# Text
# ----------------------------------------------------------------------------
def fmt_num(v: float | None, spec: str = ".4f") -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    return format(v, spec)


def fmt_value(v: Any) -> str:
    if v is MISSING:
        return "-"
    if isinstance(v, bool) or v is None:
        return str(v).lower() if v is not None else "null"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, dict)):
        return json.dumps(v)
    return str(v)


def _fmt_delta(d: float | None, spec: str, show: bool) -> str:
    if not show or d is None:
        return ""
    return f" ({'+' if d >= 0 else ''}{format(d, spec)})"


def table_rows(c: Comparison) -> list[list[str]]:
    """The compare table: header, then one row per run (deltas in brackets, not for the baseline)."""
    from tunedeck.runner.control.follow import fmt_duration

    rows = [["RUN", "STATUS", "STEPS", "FINAL LOSS", "BEST LOSS", "BEST EVAL @STEP",
             "TOK/S", "PEAK VRAM", "WALL"]]
    for i, (r, d) in enumerate(zip(c.runs, c.deltas, strict=True)):
        show = i != c.baseline
        steps = "-" if r.steps is None else f"{r.steps}/{r.total_steps if r.total_steps else '?'}"
        best_eval = fmt_num(r.best_eval_loss) + _fmt_delta(d["best_eval_loss"], ".4f", show)
        if r.best_eval_step is not None:
            best_eval += f" @{r.best_eval_step}"
        rows.append([
            r.ref + (" *" if not show else ""),
            r.status,
            steps,
            fmt_num(r.final_loss) + _fmt_delta(d["final_loss"], ".4f", show),
            fmt_num(r.best_loss) + _fmt_delta(d["best_loss"], ".4f", show),
            best_eval,
            fmt_num(r.tokens_per_s, ".0f") + _fmt_delta(d["tokens_per_s"], ".0f", show),
            (fmt_num(r.peak_vram_gib, ".2f") + " GiB" if r.peak_vram_gib is not None else "-")
            + _fmt_delta(d["peak_vram_gib"], ".2f", show),
            fmt_duration(r.wall_time_s) if r.wall_time_s is not None else "-",
        ])
    return rows


def diff_rows(c: Comparison) -> list[list[str]]:
    rows = [["KEY", *[r.ref for r in c.runs]]]
    for d in c.diff:
        rows.append([d.key, *[fmt_value(v) for v in d.values]])
    return rows


# ----------------------------------------------------------------------------
# PNG
# ----------------------------------------------------------------------------
def write_png(c: Comparison, path: str | os.PathLike[str], axis: str = "step") -> Path:
    """The overlay chart (train loss solid, eval loss dashed with markers) as a PNG."""
    try:
        import matplotlib
    except ImportError as exc:
        from tunedeck.runner.errors import TunedeckError

        raise TunedeckError("--png needs matplotlib", hint="pip install matplotlib") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tunedeck.runner.fsutil import atomic_write_bytes

    fig, ax = plt.subplots(figsize=(10, 5.5), dpi=110)
    labels = {"step": "step", "tokens": "tokens seen", "time": "wall time (s)"}
    for r, cur in zip(c.runs, c.curves, strict=True):
        xs, ys = cur.points("loss", axis)
        (line,) = ax.plot(xs, ys, label=f"{r.ref} loss", linewidth=1.4)
        exs, eys = cur.points("eval_loss", axis)
        if exs:
            ax.plot(exs, eys, "--o", color=line.get_color(), markersize=3, linewidth=1,
                    label=f"{r.ref} eval_loss")
    ax.set_xlabel(labels.get(axis, axis))
    ax.set_ylabel("loss")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    ax.set_title("tunedeck compare (* baseline: " + c.runs[c.baseline].ref + ")")
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    out = Path(path)
    atomic_write_bytes(out, buf.getvalue())
    return out
