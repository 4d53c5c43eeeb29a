"""Messages that sampler workers post to the app: immutable snapshots, never widgets.

Workers run in threads and only ever ``post_message`` one of these; ``@on`` handlers
on the main thread own the state and update the widgets. High-rate messages can be
replaced in the queue by a newer one of the same kind (``can_replace``), so a slow
frame never builds a backlog.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:
    from tunedeck.tui.data.detail import RunDetail
    from tunedeck.tui.data.editor import EditorAnalysis
    from tunedeck.tui.data.gpus import GpuView
    from tunedeck.tui.data.runs import RunsView


class _Sample(Message, bubble=False):
    """A periodic snapshot; a newer one of the same kind replaces a queued older one."""

    def can_replace(self, message: Message) -> bool:
        return type(message) is type(self)


class GpusSampled(_Sample):
    def __init__(self, view: GpuView) -> None:
        super().__init__()
        self.view = view


class RunsSampled(_Sample):
    def __init__(self, view: RunsView) -> None:
        super().__init__()
        self.view = view


class RunDetailSampled(Message, bubble=False):
    """The selected run's sample. Never coalesced: each one carries the poll chain on
    (the app has one sample in flight at a time, so they never pile up)."""

    def __init__(self, detail: RunDetail) -> None:
        super().__init__()
        self.detail = detail


class EditorAnalysed(_Sample):
    def __init__(self, analysis: EditorAnalysis) -> None:
        super().__init__()
        self.analysis = analysis
