"""Runs table: a DataTable updated in place by row key, so cursor and scroll never jump."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual.widgets import DataTable

from tunedeck.tui import format as fmt
from tunedeck.tui.data.runs import RunStatus
from tunedeck.tui.widgets.palette import Palette

if TYPE_CHECKING:
    from tunedeck.tui.data.runs import RunSnapshot

COLUMNS: tuple[tuple[str, str], ...] = (
    ("name", "Run"),
    ("status", "Status"),
    ("progress", "Progress"),
    ("loss", "Loss"),
    ("throughput", "Tok/s"),
    ("eta", "ETA"),
    ("gpus", "GPUs"),
)


# The status column fits the longest status word from the start ("stopping" must not be
# cut to "stoppin" because the column was sized when every run was "running").
STATUS_WIDTH = max(len(fmt.status_text(s, fmt.no_paint).plain) for s in fmt.STATUS_ICON)


def run_key(run: RunSnapshot) -> str:
    return str(run.run_dir)


class RunsTable(DataTable[Any]):
    """One row per run, keyed by its directory. :meth:`update_runs` adds, updates, removes."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "runs-table--status-running",
        "runs-table--status-finished",
        "runs-table--status-stopped",
        "runs-table--status-failed",
        "runs-table--muted",
        "runs-table--gauge-low",
        "runs-table--gauge-empty",
    }
    """
    | Class | Description |
    | :- | :- |
    | `runs-table--status-running` | Status cell: starting, running. |
    | `runs-table--status-finished` | Status cell: finished. |
    | `runs-table--status-stopped` | Status cell: stopping, stopped, preempted. |
    | `runs-table--status-failed` | Status cell: failed, oom, diverged, killed, lost. |
    | `runs-table--muted` | Status cell: a status word we do not know. |
    | `runs-table--gauge-low` | The progress bar's fill. |
    | `runs-table--gauge-empty` | The progress bar's empty part. |
    """

    DEFAULT_CSS = """
    RunsTable {
        & > .runs-table--status-running { color: $status-running; text-style: bold; }
        & > .runs-table--status-finished { color: $status-finished; text-style: bold; }
        & > .runs-table--status-stopped { color: $status-stopped; text-style: bold; }
        & > .runs-table--status-failed { color: $status-failed; text-style: bold; }
        & > .runs-table--muted { color: $muted; text-style: bold; }
        & > .runs-table--gauge-low { color: $gauge-low; }
        & > .runs-table--gauge-empty { color: $gauge-empty; }
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=False)
        self._rows: dict[str, tuple[Any, ...]] = {}
        self._runs: dict[str, RunSnapshot] = {}
        self.marked: list[str] = []  # run keys marked for compare, in marking order
        self.flashing: set[str] = set()  # runs that just ended: shown reversed for a few seconds
        self.name_width = 22
        self.bar_width = 8
        self.palette = Palette(self, "runs-table")

    def on_mount(self) -> None:
        self._add_columns()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        # The cells hold text painted with the old colours. The component classes are styled
        # right after this call: compare then, and paint the rows again if the theme changed.
        self.call_later(self._recolour_if_changed)

    def _recolour_if_changed(self) -> None:
        if self.palette.changed():
            self.update_runs(list(self._runs.values()), force=True)

    def _add_columns(self) -> None:
        for key, label in COLUMNS:
            self.add_column(label, key=key, width=STATUS_WIDTH if key == "status" else None)

    def run_at_cursor(self) -> RunSnapshot | None:
        if not self.row_count:
            return None
        try:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        except Exception:  # noqa: BLE001 - an empty/shrinking table
            return None
        return self._runs.get(str(key.value))

    def select_run_dir(self, run_dir: str) -> bool:
        if run_dir not in self._rows:
            return False
        self.move_cursor(row=self.get_row_index(run_dir))
        return True

    def toggle_mark(self) -> RunSnapshot | None:
        """Mark or unmark the run under the cursor; returns it."""
        run = self.run_at_cursor()
        if run is None:
            return None
        key = run_key(run)
        if key in self.marked:
            self.marked.remove(key)
        else:
            self.marked.append(key)
        self.update_cell(key, "name", self._cells(run)[0])
        self._rows[key] = self._cells(run)
        return run

    def flash(self, key: str, seconds: float = 4.0) -> None:
        """Show a run's name reversed for a few seconds (it just ended)."""
        if key not in self._runs:
            return
        self.flashing.add(key)
        self._refresh_name(key)

        def done() -> None:
            self.flashing.discard(key)
            self._refresh_name(key)

        self.set_timer(seconds, done)

    def _refresh_name(self, key: str) -> None:
        run = self._runs.get(key)
        if run is None or key not in self._rows:
            return
        cells = self._cells(run)
        self.update_cell(key, "name", cells[0])
        self._rows[key] = cells

    def marked_runs(self) -> list[RunSnapshot]:
        return [self._runs[k] for k in self.marked if k in self._runs]

    def set_widths(self, width: int) -> None:
        """Give the name column what the others leave, on narrow terminals too."""
        self.name_width = max(10, min(40, width - 62))
        self.bar_width = 8 if width >= 90 else 5

    def _cells(self, run: RunSnapshot) -> tuple[Any, ...]:
        paint = self.palette
        status = run.status
        pct = run.percentage
        if pct is None and run.total_steps:
            pct = 100.0 * (run.current_steps or 0) / run.total_steps
        prog = Text()
        prog.append_text(fmt.bar(None if pct is None else pct / 100, self.bar_width, paint, level_colours=False))
        prog.append(f" {'--' if pct is None else f'{pct:.0f}%':>4}")
        if run.gpus:
            gpus = ",".join(str(g) for g in run.gpus)
        else:  # a tunedeck run with no GPU is a CPU run; for a foreign run we cannot tell
            gpus = "cpu" if run.kind == "tunedeck" else "--"
        eta = fmt.duration(run.eta_seconds, coarse=True) if status in (RunStatus.RUNNING, RunStatus.STARTING) else "--"
        status_cell = fmt.status_text(status, paint)
        gpus_width = 7
        extra = run.extra
        if extra.get("backend") == "slurm":
            # A Slurm run: the job and where it is in the queue in place of GPUs (the GPU panel is
            # about this machine; the status column has a fixed width).
            queue = str(extra.get("queue") or extra.get("slurm_state") or "")
            gpus = f"job {extra.get('job_id') or '?'}" + (f" {queue}" if queue and queue != status else "")
            gpus_width = 34
        mark = "● " if run_key(run) in self.marked else ""
        name: str | Text = mark + fmt.truncate(run.name or run.id, self.name_width - len(mark))
        if run_key(run) in self.flashing:
            name = Text(str(name), style="reverse bold")
        return (
            name,
            status_cell,
            prog,
            fmt.number(run.loss),
            fmt.rate(run.throughput),
            eta,
            fmt.truncate(gpus, gpus_width),
        )

    def rebuild(self, runs: Sequence[RunSnapshot]) -> None:
        """Columns sized afresh (after a resize: auto widths only ever grow); the
        cursor stays on the same run."""
        current = self.run_at_cursor()
        self.clear(columns=True)
        self._rows.clear()
        self._runs.clear()
        self._add_columns()
        self.update_runs(runs)
        if current is not None:
            self.select_run_dir(run_key(current))

    def update_runs(self, runs: Sequence[RunSnapshot], *, force: bool = False) -> None:
        """Sync rows with ``runs`` by key: changed cells are updated, nothing is cleared."""
        seen: set[str] = set()
        for run in runs:
            key = run_key(run)
            seen.add(key)
            self._runs[key] = run
            cells = self._cells(run)
            old = self._rows.get(key)
            if old is None:
                self.add_row(*cells, key=key)
            elif force or old != cells:
                for (col, _), new, prev in zip(COLUMNS, cells, old, strict=True):
                    if force or new != prev:
                        self.update_cell(key, col, new, update_width=col != "status")
            self._rows[key] = cells
        for key in [k for k in self._rows if k not in seen]:
            self.remove_row(key)
            self._rows.pop(key, None)
            self._runs.pop(key, None)
