"""Chat with a run's checkpoint, one or two side by side (the same prompt to both).

Each pane owns a :class:`~tunedeck.tui.data.chat.ChatSession` (the one ``tunedeck chat``
uses: same template code, same slash commands). Models load in thread workers that report
progress to the pane's header; answers stream from a thread worker into the pane token by
token; ``ctrl+g`` (or ``Esc``) stops generation at the next token. Nothing here blocks the UI.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Input, Static

from tunedeck import themes
from tunedeck.tui.data import chat
from tunedeck.tui.data.chat import ChatSession, TunedeckError
from tunedeck.tui.screens.base import RegistryScreen
from tunedeck.tui.widgets.footer import AppFooter

MAX_PANES = 2


@dataclass(frozen=True)
class ChatTarget:
    """What a pane loads: a run (or config) and a checkpoint choice (None, N, latest, base, path)."""

    target: str
    checkpoint: str | None = None


class ChatPane(Vertical):
    """One model's side: a header (label, loading progress, state) and the transcript."""

    def __init__(self, target: ChatTarget, index: int) -> None:
        super().__init__(id=f"chat-pane-{index}", classes="chat-pane")
        self.target = target
        self.index = index
        self.session: ChatSession | None = None
        self.state = "loading"            # loading | ready | generating | error
        self.status = "resolving"
        self.partial: list[str] = []
        self.stop_event = threading.Event()
        self.stopped = False
        self.progress_log: list[str] = []  # every loading phase reported, in order

    def compose(self) -> ComposeResult:
        yield Static(id=f"chat-header-{self.index}", classes="chat-header")
        with VerticalScroll(id=f"chat-scroll-{self.index}", classes="chat-scroll"):
            yield Static(id=f"chat-log-{self.index}", classes="chat-log")

    def on_mount(self) -> None:
        self.refresh_view()

    @property
    def label(self) -> str:
        if self.session is not None:
            return str(self.session.label)
        ck = f" @ {self.target.checkpoint}" if self.target.checkpoint else ""
        return f"{Path(self.target.target).name}{ck}"

    @property
    def answer_so_far(self) -> str:
        return "".join(self.partial)

    def refresh_view(self) -> None:
        state = {"loading": f"loading: {self.status}", "ready": "ready", "generating": "generating…",
                 "error": f"error: {self.status}"}[self.state]
        header = Text(self.label, style="bold")
        header.append(f"  {state}", style="italic")
        self.query_one(f"#chat-header-{self.index}", Static).update(header)
        log = Text()
        messages = list(self.session.messages) if self.session is not None else []
        if self.state == "generating" and messages and messages[-1]["role"] == "assistant":
            messages = messages[:-1]  # the answer being written is shown from `partial`
        if self.session is not None and self.session.system:
            log.append("system: ", style="italic")
            log.append(self.session.system + "\n\n", style="italic")
        for m in messages:
            who = "you" if m["role"] == "user" else "model"
            log.append(f"{who}: ", style="bold")
            log.append(m["content"] + "\n\n")
        if self.state == "generating":
            log.append("model: ", style="bold")
            log.append(self.answer_so_far + "▌")
        elif self.stopped and messages and messages[-1]["role"] == "assistant":
            log.append("[stopped]\n", style="italic")
        self.query_one(f"#chat-log-{self.index}", Static).update(log)
        self.query_one(f"#chat-scroll-{self.index}", VerticalScroll).scroll_end(animate=False)


class ChatScreen(RegistryScreen[None]):
    """Chat with one or two models; see the module docstring."""

    SCOPE = "chat"
    CSS_PATH = str(themes.SCREENS_TCSS)

    def __init__(self, targets: Sequence[ChatTarget], overrides: Sequence[str] = ()) -> None:
        super().__init__(id="chat")
        self.targets = list(targets)[:MAX_PANES]
        self.overrides = list(overrides)

    # -- layout ------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Static("Chat  (/help for commands; one prompt goes to every pane)", classes="screen-title",
                     id="chat-title")
        with Horizontal(id="chat-panes"):
            for i, t in enumerate(self.targets):
                yield ChatPane(t, i)
        yield Static("", id="chat-status", classes="screen-note")
        yield Input(placeholder="message, or /system /set /retry /undo /save FILE /clear /exit  (\\n: newline)",
                    id="chat-input")
        yield AppFooter()

    def on_mount(self) -> None:
        self.query_one(Input).focus()
        for pane in self.panes():
            self._chat_load(pane)

    def panes(self) -> list[ChatPane]:
        return list(self.query(ChatPane))

    def pane(self, index: int) -> ChatPane:
        return self.query_one(f"#chat-pane-{index}", ChatPane)

    def _chat_status(self, msg: str, error: bool = False) -> None:
        w = self.query_one("#chat-status", Static)
        w.update(msg)
        w.set_class(error, "-error")

    # -- loading (thread workers) -----------------------------------------------------------------
    @work(thread=True, group="chat-load", exit_on_error=False)
    def _chat_load(self, pane: ChatPane) -> None:
        def progress(msg: str) -> None:
            self.app.call_from_thread(self._chat_set_status, pane, "loading", msg)

        try:
            # A running `tunedeck serve` job (or a server URL): talk to it, load nothing.
            remote = chat.remote_session(pane.target.target, pane.target.checkpoint, self.overrides)
            if remote is not None:
                session, url = remote
                self.app.call_from_thread(self._chat_attach, pane, session)
                self.app.call_from_thread(self._chat_set_status, pane, "ready", f"served at {url}")
                return
            session, spec = chat.local_session(pane.target.target, pane.target.checkpoint, self.overrides)
            self.app.call_from_thread(self._chat_attach, pane, session)
            progress("importing torch and transformers")
            loaded = chat.load_model(spec, progress)
        except TunedeckError as exc:
            self.app.call_from_thread(self._chat_set_status, pane, "error", str(exc).replace("\n", " "))
            return
        except Exception as exc:  # noqa: BLE001 - shown in the pane, never a crash
            self.app.call_from_thread(self._chat_set_status, pane, "error", f"{type(exc).__name__}: {exc}")
            return
        session.loaded = loaded
        self.app.call_from_thread(self._chat_set_status, pane, "ready", "ready")

    def _chat_attach(self, pane: ChatPane, session: ChatSession) -> None:
        # a pane opened beside an existing conversation keeps the same system prompt and settings
        others = [p.session for p in self.panes() if p is not pane and p.session is not None]
        if others:
            session.system, session.gen = others[0].system, others[0].gen
        pane.session = session
        pane.refresh_view()

    def _chat_set_status(self, pane: ChatPane, state: str, status: str) -> None:
        if not pane.is_mounted:
            return
        pane.state, pane.status = state, status
        if state == "loading":
            pane.progress_log.append(status)
        pane.refresh_view()

    # -- input --------------------------------------------------------------------------------------
    @on(Input.Submitted, "#chat-input")
    def _submitted(self, event: Input.Submitted) -> None:
        line = event.value
        if not line.strip():
            return
        try:
            cmd = chat.parse_command(chat.unescape_line(line))
        except TunedeckError as exc:
            self._chat_status(str(exc).replace("\n", " "), error=True)
            return
        if cmd.name == "/exit":
            self.action_back()
            return
        panes = self.panes()
        if any(p.state == "generating" for p in panes):
            self._chat_status("an answer is being written: wait, or stop it with ctrl+g", error=True)
            return
        if cmd.name != "/help" and any(p.state == "loading" for p in panes):
            self._chat_status("still loading: wait for every pane to say ready", error=True)
            return
        event.input.value = ""
        live = [p for p in panes if p.session is not None and p.state != "error"]
        if cmd.name == "/save" and len(live) > 1:
            self._chat_save_all(live, cmd.arg)
            return
        messages: list[str] = []
        to_answer: list[ChatPane] = []
        for p in live:
            if p.session is None:
                continue
            try:
                out = p.session.apply(cmd)
            except TunedeckError as exc:
                self._chat_status(str(exc).replace("\n", " "), error=True)
                return
            if out.message and out.message not in messages:
                messages.append(out.message)
            if out.action == "generate":
                to_answer.append(p)
            p.stopped = False
            p.refresh_view()
        if cmd.name == "/help":
            messages = ["  ".join(chat.COMMANDS)]
        self._chat_status(" | ".join(messages))
        for p in to_answer:
            self._chat_answer(p)

    def _chat_save_all(self, panes: list[ChatPane], arg: str) -> None:
        if not arg:
            self._chat_status("/save needs a file name", error=True)
            return
        path = Path(arg).expanduser()
        try:
            chat.save_sessions(path, [p.session for p in panes if p.session is not None])
        except OSError as exc:
            self._chat_status(f"cannot write {path}: {exc}", error=True)
            return
        self._chat_status(f"saved {len(panes)} conversations to {path}")

    # -- generation (thread worker per pane) --------------------------------------------------------
    def _chat_answer(self, pane: ChatPane) -> None:
        pane.partial = []
        pane.stop_event = threading.Event()
        pane.stopped = False
        pane.state = "generating"
        pane.refresh_view()
        self._chat_generate(pane)

    @work(thread=True, group="chat-generate", exit_on_error=False)
    def _chat_generate(self, pane: ChatPane) -> None:
        error: str | None = None
        try:
            for piece in pane.session.reply(pane.stop_event) if pane.session is not None else ():
                self.app.call_from_thread(self._chat_piece, pane, piece)
        except Exception as exc:  # noqa: BLE001 - shown, never a crash
            error = str(exc).replace("\n", " ")
        self.app.call_from_thread(self._chat_done, pane, error)

    def _chat_piece(self, pane: ChatPane, piece: str) -> None:
        pane.partial.append(piece)
        if pane.is_mounted:
            pane.refresh_view()

    def _chat_done(self, pane: ChatPane, error: str | None) -> None:
        pane.stopped = pane.stop_event.is_set()
        pane.state = "ready"
        if pane.is_mounted:
            pane.refresh_view()
        if error:
            self._chat_status(f"{pane.label}: {error}", error=True)
        elif not any(p.state == "generating" for p in self.panes()):
            self._chat_status("stopped" if pane.stopped else "")

    # -- actions ----------------------------------------------------------------------------------
    def generating(self) -> bool:
        return any(p.state == "generating" for p in self.panes())

    def action_stop_generation(self) -> None:
        for p in self.panes():
            if p.state == "generating":
                p.stop_event.set()

    def action_back(self) -> None:
        if self.generating():
            self.action_stop_generation()
            return
        self.dismiss()

    def action_open_beside(self) -> None:
        from tunedeck.tui.screens.modals import ChoiceModal

        panes = self.panes()
        if len(panes) >= MAX_PANES:
            self._chat_status(f"{MAX_PANES} panes at most: leave with esc and open another pair", error=True)
            return
        first = panes[0].target if panes else None
        if first is None:
            return
        choices = beside_choices(first)
        if not choices:
            self._chat_status("nothing else to open beside this one", error=True)
            return

        def chosen(cid: str | None) -> None:
            if cid is None:
                return
            self._chat_add_pane(ChatTarget(first.target, None if cid == "final" else cid))

        self.app.push_screen(ChoiceModal("Open beside it", choices, id="chat-beside"), chosen)

    def _chat_add_pane(self, target: ChatTarget) -> None:
        index = max((p.index for p in self.panes()), default=-1) + 1
        pane = ChatPane(target, index)
        self.query_one("#chat-panes", Horizontal).mount(pane)
        self._chat_load(pane)


def beside_choices(first: ChatTarget) -> list[tuple[str, str]]:
    """(checkpoint choice, label): the base model, the final weights, every complete checkpoint."""
    return chat.checkpoint_choices(first.target)
