"""The chat screen's sessions: one :class:`ChatSession` per pane (the one ``tunedeck chat``
uses), talking to a running ``tunedeck serve`` job or to a model loaded here. torch and
transformers load in :func:`load_model` (a thread worker), never with the screen."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tunedeck.runner.errors import TunedeckError
from tunedeck.runner.fsutil import atomic_write_json
from tunedeck.runner.infer.chat import COMMANDS, ChatSession, Command, parse_command, unescape_line
from tunedeck.runner.infer.spec import InferSpec

if TYPE_CHECKING:
    from tunedeck.runner.infer.engine import Loaded

__all__ = ["COMMANDS", "ChatSession", "Command", "InferSpec", "TunedeckError", "checkpoint_choices",
           "load_model", "local_session", "parse_command", "remote_session", "save_sessions",
           "unescape_line"]


def remote_session(target: str, checkpoint: str | None, overrides: Sequence[str]) -> tuple[ChatSession, str] | None:
    """A session on a running ``tunedeck serve`` job (or a server URL) and its URL; None when
    ``target`` is not one (then load it here)."""
    from tunedeck.runner.config.yamlio import parse_overrides
    from tunedeck.runner.infer.remote import connect
    from tunedeck.runner.infer.spec import GenConfig

    remote = connect(target, model=None if checkpoint in (None, "latest") else checkpoint)
    if remote is None:
        return None
    session = ChatSession(label=remote.label, remote=remote,
                          gen=GenConfig.from_values(parse_overrides(list(overrides))))
    return session, remote.url


def local_session(target: str, checkpoint: str | None, overrides: Sequence[str]) -> tuple[ChatSession, InferSpec]:
    """A session for a run's checkpoint (or a config) and what to load for it."""
    from tunedeck.runner.infer import resolve

    spec = resolve(target, checkpoint, list(overrides))
    return ChatSession(label=spec.label, gen=spec.generation), spec


def load_model(spec: InferSpec, progress: Callable[[str], None]) -> Loaded:
    """Load the model (imports torch and transformers: call it from a thread worker)."""
    from tunedeck.runner.infer.engine import load_model as load

    return load(spec, progress=progress)


def save_sessions(path: Path, sessions: Sequence[ChatSession]) -> None:
    """Several panes' conversations in one JSON file (``/save`` with two panes)."""
    atomic_write_json(path, {"panes": [s.to_dict() for s in sessions]})


def checkpoint_choices(target: str) -> list[tuple[str, str]]:
    """(checkpoint choice, label): the base model, the final weights, every complete checkpoint."""
    from tunedeck.runner.rundir.checkpoints import scan_checkpoints
    from tunedeck.runner.rundir.runs import resolve_run

    out: list[tuple[str, str]] = [("base", "base model (no adapter)")]
    try:
        run_dir = resolve_run(target)
    except TunedeckError:
        return out
    if any((run_dir / f).is_file() for f in ("adapter_model.safetensors", "model.safetensors")):
        out.append(("final", "final weights (end of training)"))
    for c in reversed(scan_checkpoints(run_dir)):
        if c.complete:
            out.append((str(c.path), f"checkpoint-{c.step}"))
    return out
