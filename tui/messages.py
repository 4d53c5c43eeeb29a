"""The TUI's messages: what sampler workers, screens and flows tell the app.

Samples: workers run in threads and only ever ``post_message`` an immutable snapshot
(never a widget); the app's ``@on`` handlers on the main thread keep it in the app's
reactives, which the dashboard binds. High-rate messages can be replaced in the queue by
a newer one of the same kind (``can_replace``), so a slow frame never builds a backlog.

Requests: a screen or a flow (``tunedeck.tui.flows``) tells the app what it must know by
posting one of the requests below (they bubble from a screen to the app); nothing calls
an app method by name.
"""

from __future__ import annotations

from pathlib import Path
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


# -- requests to the app (from screens and flows) -----------------------------------


class RunSelected(Message):
    """The dashboard's cursor moved to another run (None: no run): sample that one."""

    def __init__(self, run_dir: Path | None) -> None:
        super().__init__()
        self.run_dir = run_dir


class MetricChosen(Message):
    """The dashboard plots another metric: sample its series now."""

    def __init__(self, metric: str) -> None:
        super().__init__()
        self.metric = metric


class RunsChanged(Message):
    """A flow stopped, resumed or launched a run: list the runs now.

    ``started``: the run that was started; the app returns to the dashboard, which
    selects that run as soon as it is listed.
    """

    def __init__(self, started: Path | None = None) -> None:
        super().__init__()
        self.started = started


class RootChosen(Message):
    """List the runs under this directory (an existing one, absolute) from now on."""

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root
