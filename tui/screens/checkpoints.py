"""A run's checkpoints: resume from one, delete one (carefully), show its path."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.widgets import DataTable, Static

from tunedeck.tui import format as fmt
from tunedeck.tui.data.checkpoints import delete_checkpoint, export_argv, scan_checkpoints
from tunedeck.tui.data.runs import read_run
from tunedeck.tui.flows import host, resume
from tunedeck.tui.screens.base import RunScreen
from tunedeck.tui.screens.modals import ConfirmationModal, PathPrompt
from tunedeck.tui.widgets.footer import AppFooter

if TYPE_CHECKING:
    from tunedeck.tui.data.checkpoints import CheckpointInfo

COLUMNS = (("step", "Step"), ("time", "Saved"), ("size", "Size"), ("loss", "Loss"),
           ("eval", "Eval loss"), ("kind", "Kind"), ("complete", "Complete"))


class CheckpointsScreen(RunScreen):
    SCOPE = "checkpoints"

    def __init__(self, run_dir: Path) -> None:
        super().__init__(run_dir)
        self.checkpoints: tuple[CheckpointInfo, ...] = ()
        self.export_proc: subprocess.Popen[str] | None = None
        self.export_progress: list[str] = []

    def compose(self) -> ComposeResult:
        yield Static(f"Checkpoints of {self.run_dir.name}  ({self.run_dir})", classes="screen-title")
        yield DataTable(id="ckpt-table", cursor_type="row")
        yield Static("p: show the full path (copied to the clipboard)", id="ckpt-path")
        yield AppFooter()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for key, label in COLUMNS:
            table.add_column(label, key=key)
        table.focus()
        self.reload()

    @work(thread=True, exclusive=True, group="ckpt-scan", exit_on_error=False)
    def reload(self) -> None:
        try:
            cks = scan_checkpoints(self.run_dir)
        except Exception as exc:  # noqa: BLE001
            self.app.call_from_thread(self.notify, f"cannot scan checkpoints: {exc}", severity="error")
            cks = ()
        self.app.call_from_thread(self._show, cks)

    def _show(self, cks: tuple[CheckpointInfo, ...]) -> None:
        self.checkpoints = cks
        table = self.query_one(DataTable)
        keep = table.cursor_row
        table.clear()
        var = self.app.theme_variables
        now = time.time()
        newest = self.newest_complete()
        for c in cks:
            complete = Text("✔ yes", style=fmt.style_for(var, "status-running")) if c.complete else \
                Text("✖ no", style=fmt.style_for(var, "status-failed"))
            loss = fmt.checkpoint_metric(c.loss, c.loss_step, c.step) or "--"
            ev = fmt.checkpoint_metric(c.eval_loss, c.eval_loss_step, c.step) or "--"
            step = f"{c.step}" + (" (newest)" if newest is not None and c.path == newest.path else "")
            table.add_row(step, f"{fmt.duration(now - c.mtime)} ago", fmt.size(c.size_bytes), loss, ev,
                          c.kind, complete, key=str(c.path))
        if not cks:
            self.query_one("#ckpt-path", Static).update("This run has no checkpoints yet.")
        elif keep is not None:
            table.move_cursor(row=min(keep, len(cks) - 1))

    def newest_complete(self) -> CheckpointInfo | None:
        return next((c for c in self.checkpoints if c.complete), None)  # sorted newest first

    def selected(self) -> CheckpointInfo | None:
        table = self.query_one(DataTable)
        if not self.checkpoints or table.cursor_row is None:
            return None
        row = table.cursor_row
        return self.checkpoints[row] if 0 <= row < len(self.checkpoints) else None

    # -- actions -----------------------------------------------------------
    def action_back(self) -> None:
        self.dismiss()

    def action_show_path(self) -> None:
        c = self.selected()
        if c is None:
            return
        self.query_one("#ckpt-path", Static).update(str(c.path))
        self.app.copy_to_clipboard(str(c.path))
        self.notify("Path copied to the clipboard (where the terminal supports it).")

    def _complete_selected(self, refusal: str) -> CheckpointInfo | None:
        """The selected checkpoint if it is complete; else None (an incomplete one is refused
        with a notification ending in ``refusal``)."""
        c = self.selected()
        if c is not None and not c.complete:
            self.notify(f"checkpoint-{c.step} is incomplete: {refusal}.", severity="error")
            return None
        return c

    def action_chat(self) -> None:
        from tunedeck.tui.screens.chat import ChatScreen, ChatTarget

        c = self._complete_selected("nothing to load")
        if c is None:
            return
        self.app.push_screen(ChatScreen([ChatTarget(str(self.run_dir), str(c.path))]))

    def action_export(self) -> None:
        c = self._complete_selected("nothing to export")
        if c is None:
            return
        if self.export_proc is not None and self.export_proc.poll() is None:
            self.notify("An export is already running.", severity="warning")
            return
        default = str(self.run_dir.parent / f"{self.run_dir.name}-checkpoint-{c.step}-merged")

        def chosen(path: str | None) -> None:
            if path:
                self._export(Path(c.path), Path(path).expanduser())

        self.app.push_screen(PathPrompt(f"Merge checkpoint-{c.step} into its base model and write it to",
                                        value=default), chosen)

    @work(thread=True, group="ckpt-export", exit_on_error=False)
    def _export(self, checkpoint: Path, export_dir: Path) -> None:
        """``tunedeck export`` in its own process (its memory goes when it ends); its progress
        lines are shown as they come."""
        proc = subprocess.Popen(export_argv(self.run_dir, checkpoint, export_dir), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                stdin=subprocess.DEVNULL)
        self.export_proc = proc
        tail: list[str] = []
        assert proc.stderr is not None
        for line in proc.stderr:
            line = line.rstrip()
            if line.startswith("export: "):
                self.export_progress.append(line[len("export: "):])
                self.app.call_from_thread(self._export_status, f"exporting {checkpoint.name}: {line[8:]}")
            elif line.strip():
                tail.append(line)
        proc.wait()
        if proc.returncode == 0:
            self.app.call_from_thread(self._export_status, f"exported {checkpoint.name} to {export_dir}")
            self.app.call_from_thread(self.notify, f"Exported {checkpoint.name} to {export_dir}.")
        else:
            why = next((t for t in reversed(tail) if t.startswith("tunedeck: error")), tail[-1] if tail else "")
            self.app.call_from_thread(self._export_status, f"export failed: {why}")
            self.app.call_from_thread(self.notify, f"Export failed: {why}", severity="error", timeout=10)

    def _export_status(self, text: str) -> None:
        if self.is_mounted:
            self.query_one("#ckpt-path", Static).update(text)

    def on_unmount(self) -> None:
        # leaving the screen does not leave an export running unseen: it is stopped (its temp
        # folder is removed; export_dir never appears half-written)
        if self.export_proc is not None and self.export_proc.poll() is None:
            self.export_proc.terminate()

    def action_resume_from(self) -> None:
        c = self.selected()
        if c is None:
            return
        if not c.complete:
            self.notify(f"checkpoint-{c.step} is incomplete: resuming from it would fail. "
                        "Pick a complete one.", severity="error")
            return
        run = read_run(self.run_dir)
        if run is None:
            self.notify("Cannot read this run.", severity="error")
            return
        resume.choose_resume(host(self), run, checkpoint=Path(c.path))

    def action_delete(self) -> None:
        c = self.selected()
        if c is None:
            return
        newest = self.newest_complete()
        is_newest = newest is not None and newest.path == c.path
        lines = [
            f"Delete {c.path}",
            f"Step {c.step}, {fmt.size(c.size_bytes)}, {'complete' if c.complete else 'incomplete'}.",
            "The directory and everything in it are removed from disk. This cannot be undone.",
        ]
        if is_newest:
            lines.append("This is the NEWEST COMPLETE checkpoint: resuming would fall back to an "
                         "older one and lose the progress since.")

        def second(ok: bool | None) -> None:
            if ok:
                self._delete(c)

        def first(ok: bool | None) -> None:
            if not ok:
                return
            if is_newest:
                self.app.push_screen(
                    ConfirmationModal(
                        "Really delete the newest complete checkpoint?",
                        [f"{c.path}", "Second confirmation: this is the run's latest resume point."],
                        yes="Delete it", id="confirm-delete-newest",
                    ),
                    second,
                )
            else:
                self._delete(c)

        self.app.push_screen(ConfirmationModal(f"Delete checkpoint-{c.step}?", lines, yes="Delete",
                                               id="confirm-delete"), first)

    @work(thread=True, group="ckpt-delete", exit_on_error=False)
    def _delete(self, c: CheckpointInfo) -> None:
        try:
            delete_checkpoint(Path(c.path))
        except Exception as exc:  # noqa: BLE001
            self.app.call_from_thread(self.notify, f"delete failed: {exc}", severity="error")
            return
        self.app.call_from_thread(self.notify, f"Deleted {Path(c.path).name}.")
        self.app.call_from_thread(self.reload)
