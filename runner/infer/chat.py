"""A chat conversation and its slash commands, shared by ``tunedeck chat`` and the TUI Chat screen.

:class:`ChatSession` holds the history, the system prompt and the generation settings of one
model; :func:`parse_command` reads ``/system``, ``/set temperature 0.3``, ``/retry``, ``/undo``,
``/save FILE``, ``/clear``, ``/exit``, ``/help``. The model side (prompt ids, streaming) is
reached through :mod:`tunedeck.runner.infer.engine`, imported only when a reply is generated,
so the TUI can build sessions before torch is loaded.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tunedeck.runner.errors import TunedeckError
from tunedeck.runner.infer.spec import GENERATION_KEYS, GenConfig

if TYPE_CHECKING:
    from tunedeck.runner.infer.engine import Loaded

COMMANDS: dict[str, str] = {
    "/system": "/system TEXT: set the system prompt (no text: back to the template's default)",
    "/set": "/set KEY VALUE: change a generation setting (" + ", ".join(GENERATION_KEYS) + ")",
    "/retry": "/retry: answer the last message again",
    "/undo": "/undo: remove the last exchange",
    "/save": "/save FILE: write the conversation, system prompt and settings as JSON",
    "/clear": "/clear: start a new conversation (keeps system prompt and settings)",
    "/exit": "/exit: leave the chat",
    "/help": "/help: this list",
}


@dataclass(frozen=True)
class Command:
    name: str   # "/set" ...; "" for a plain message
    arg: str = ""


@dataclass(frozen=True)
class Outcome:
    """What a command did: ``generate`` asks the caller to stream a reply now."""

    action: Literal["none", "generate", "exit"] = "none"
    message: str = ""


def parse_command(line: str) -> Command:
    """``/set temperature 0.3`` -> ``Command("/set", "temperature 0.3")``; text -> ``Command("", text)``.

    Unknown ``/words`` raise (a typo must not be sent to the model as a message); ``//text`` sends
    ``/text`` literally.
    """
    text = line.rstrip("\n")
    if text.startswith("//"):
        return Command("", text[1:])
    if not text.startswith("/"):
        return Command("", text)
    name, _, arg = text.partition(" ")
    if name not in COMMANDS:
        raise TunedeckError(f"unknown command {name}", hint="commands: " + " ".join(COMMANDS))
    return Command(name, arg.strip())


@dataclass
class ChatSession:
    """One conversation with one model."""

    label: str
    gen: GenConfig = field(default_factory=GenConfig)
    system: str | None = None
    messages: list[dict[str, str]] = field(default_factory=list)
    loaded: Loaded | None = None
    remote: Any = None   # a runner.infer.remote.RemoteModel: answers come from a served run

    # -- commands ------------------------------------------------------------------------------

    def apply(self, cmd: Command) -> Outcome:
        """Apply a command (or queue a plain message). Raises :class:`TunedeckError` on bad input."""
        if cmd.name == "":
            if not cmd.arg.strip():
                return Outcome()
            self.messages.append({"role": "user", "content": cmd.arg})
            return Outcome("generate")
        if cmd.name == "/exit":
            return Outcome("exit")
        if cmd.name == "/help":
            return Outcome(message="\n".join(COMMANDS.values()))
        if cmd.name == "/system":
            self.system = cmd.arg or None
            return Outcome(message=f"system prompt: {cmd.arg!r}" if cmd.arg else "system prompt: the template's default")
        if cmd.name == "/set":
            key, value = _key_value(cmd.arg)
            self.gen = self.gen.with_(key, value)
            return Outcome(message=f"{key} = {getattr(self.gen, key)}")
        if cmd.name == "/clear":
            self.messages.clear()
            return Outcome(message="conversation cleared")
        if cmd.name == "/undo":
            if not self.messages:
                return Outcome(message="nothing to undo")
            if self.messages[-1]["role"] == "assistant":
                self.messages.pop()
            if self.messages and self.messages[-1]["role"] == "user":
                self.messages.pop()
            return Outcome(message=f"removed the last exchange ({len(self.messages) // 2} left)")
        if cmd.name == "/retry":
            if self.messages and self.messages[-1]["role"] == "assistant":
                self.messages.pop()
            if not self.messages:
                return Outcome(message="nothing to retry")
            return Outcome("generate")
        if cmd.name == "/save":
            if not cmd.arg:
                raise TunedeckError("/save needs a file name", hint="/save chat.json")
            path = self.save(Path(cmd.arg).expanduser())
            return Outcome(message=f"saved {len(self.messages)} messages to {path}")
        raise TunedeckError(f"unknown command {cmd.name}")  # pragma: no cover - parse_command guards

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.label, "system": self.system, "generation": self.gen.to_dict(),
                "messages": list(self.messages)}

    def save(self, path: Path) -> Path:
        from tunedeck.runner.fsutil import atomic_write_json

        atomic_write_json(path, self.to_dict())
        return path

    # -- generation ----------------------------------------------------------------------------

    def prompt_ids(self) -> list[int]:
        from tunedeck.runner.infer.engine import format_chat

        if self.loaded is None:
            raise TunedeckError(f"{self.label}: the model is not loaded yet")
        return format_chat(self.loaded, self.messages, self.system)

    def reply(self, stop_event: threading.Event | None = None) -> Iterator[str]:
        """Stream the answer to the pending user message; the answer (complete, or as far as it
        got when stopped) joins the history when the stream ends."""
        from tunedeck.runner.infer.engine import generate_stream
        from tunedeck.runner.infer.remote import stream_chat

        if self.loaded is None and self.remote is None:
            raise TunedeckError(f"{self.label}: the model is not loaded yet")
        if not self.messages or self.messages[-1]["role"] != "user":
            raise TunedeckError("no message to answer")
        if self.remote is not None:
            pieces = stream_chat(self.remote, self.messages, self.system, self.gen, stop_event)
        elif self.loaded is not None:
            pieces = generate_stream(self.loaded, self.prompt_ids(), self.gen, stop_event)
        parts: list[str] = []
        try:
            for piece in pieces:
                parts.append(piece)
                yield piece
        finally:
            self.messages.append({"role": "assistant", "content": "".join(parts)})


def unescape_line(line: str) -> str:
    """``\\n`` typed in a one-line input is a newline; ``\\\\`` is a backslash."""
    out, i = [], 0
    while i < len(line):
        if line[i] == "\\" and i + 1 < len(line) and line[i + 1] in "n\\":
            out.append("\n" if line[i + 1] == "n" else "\\")
            i += 2
        else:
            out.append(line[i])
            i += 1
    return "".join(out)


def _key_value(arg: str) -> tuple[str, str]:
    if "=" in arg and " " not in arg.split("=", 1)[0]:
        key, _, value = arg.partition("=")
    else:
        key, _, value = arg.partition(" ")
    key, value = key.strip(), value.strip()
    if not key or not value:
        raise TunedeckError("/set needs a key and a value", hint="/set temperature 0.3")
    return key, value
