"""User flows: the dialogs and background steps behind one user action.

By concern: :mod:`.stop` (stop a run, asking first), :mod:`.resume` (pick a checkpoint,
confirm, resume), :mod:`.launch` (the launch dialog with its GPU picker and Slurm choice,
the trust_remote_code check; launch a copy of a run), :mod:`.configs` (open, start or edit a
config in the editor) and :mod:`.runs_root` (list the runs under another directory).

A screen starts a flow with ``<module>.<function>(host(self), ...)``. A flow sees the app only
as a :class:`FlowHost`: it pushes dialogs, notifies, runs the core's calls (``tunedeck.tui.data``)
in thread workers, and reports back to the app by posting messages
(:class:`~tunedeck.tui.messages.RunsChanged`, :class:`~tunedeck.tui.messages.RootChosen`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from tunedeck.tui.messages import RunsChanged

if TYPE_CHECKING:
    from textual.message import Message
    from textual.message_pump import MessagePump
    from textual.screen import Screen

    from tunedeck.tui.data.gpus import GpuView


@runtime_checkable
class FlowHost(Protocol):
    """What a flow needs of the app (``TunedeckApp`` is one)."""

    @property
    def readonly(self) -> bool: ...

    @property
    def root(self) -> Path: ...

    @property
    def gpu_view(self) -> GpuView | None: ...

    @property
    def screen_stack(self) -> list[Screen[Any]]: ...

    def push_screen(self, screen: Any, callback: Any = None) -> Any: ...

    def notify(self, message: str, *, title: str = "", severity: Any = "information",
               timeout: float | None = None, markup: bool = True) -> None: ...

    def run_worker(self, work: Any, name: str | None = "", group: str = "default",
                   description: str = "", exit_on_error: bool = True, start: bool = True,
                   exclusive: bool = False, thread: bool = False) -> Any: ...

    def call_from_thread(self, callback: Callable[..., Any], *args: Any, **kwargs: Any) -> Any: ...

    def post_message(self, message: Message) -> bool: ...


def host(node: MessagePump) -> FlowHost:
    """The app behind ``node`` (a screen), as the flows see it."""
    app = node.app
    if not isinstance(app, FlowHost):
        raise TypeError(f"{type(app).__name__} cannot run tunedeck's flows")
    return app


def in_thread(h: FlowHost, fn: Callable[[], None], *, group: str) -> None:
    """Run ``fn`` (a call into the core) in a thread worker; it reports with :func:`tell`."""
    h.run_worker(fn, thread=True, group=group, exit_on_error=False)


def tell(h: FlowHost, text: str, *, title: str = "", error: bool = False, timeout: float | None = None) -> None:
    """Notify from a worker thread."""
    h.call_from_thread(h.notify, text, title=title, severity="error" if error else "information",
                       timeout=timeout)


def run_started(h: FlowHost, run_dir: Path, text: str) -> None:
    """From a worker thread: a run was started (launched or resumed). Say so, and let the app
    go back to the dashboard, list the runs and select the new one."""
    tell(h, text, title="Run started")
    h.post_message(RunsChanged(started=Path(run_dir)))
