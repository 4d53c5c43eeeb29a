"""Talk to a model that ``tunedeck serve`` is serving, instead of loading it again.

A chat (the CLI's or the TUI's) opened on a serve job's run, or given ``--server URL``,
streams its answers from the server's ``/v1/chat/completions`` (server-sent events) with the
same messages, system prompt and generation settings a local chat would use. Plain urllib:
no extra client, no torch, so a chat pane on a monitoring box can talk to a GPU box's server.
"""

from __future__ import annotations

import json
import os
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunedeck.runner.errors import TunedeckError

API_KEY_ENV = "TUNEDECK_SERVE_API_KEY"


@dataclass(frozen=True)
class RemoteModel:
    """One model id on one OpenAI-compatible server (``url`` ends in ``/v1``)."""

    url: str
    model: str
    api_key: str | None = None

    @property
    def label(self) -> str:
        return f"{self.model} (served at {self.url})"

    def _request(self, path: str, body: Mapping[str, Any] | None = None, timeout: float = 30) -> Any:
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream, application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url.rstrip("/") + path, data=data, headers=headers,
                                     method="GET" if body is None else "POST")
        try:
            return urllib.request.urlopen(req, timeout=timeout)  # noqa: S310 - a server the user named
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:300]
            with _suppress():
                detail = json.loads(detail)["error"]["message"]
            hint = "pass --api-key (or set TUNEDECK_SERVE_API_KEY)" if exc.code == 401 else None
            raise TunedeckError(f"{self.url}: HTTP {exc.code}: {detail}", hint=hint) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TunedeckError(f"cannot reach the server at {self.url}: {reason}",
                                hint="is it running? tunedeck runs --active") from None


class _suppress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return True


def models(url: str, api_key: str | None = None) -> list[str]:
    """The model ids a server offers (``GET /v1/models``)."""
    with RemoteModel(url, "", api_key)._request("/models") as r:
        return [m["id"] for m in json.load(r).get("data", [])]


def connect(target: str | Path, model: str | None = None, api_key: str | None = None) -> RemoteModel | None:
    """The served model behind ``target`` when it is a running ``tunedeck serve`` job (its run
    id, name or directory) or a server URL; ``None`` when it is neither (load it locally)."""
    key = api_key or os.environ.get(API_KEY_ENV) or None
    text = str(target)
    if text.startswith(("http://", "https://")):
        url = text.rstrip("/")
        url = url if url.endswith("/v1") else url + "/v1"
        ids = models(url, key)
        return RemoteModel(url, _choose(ids, model, url), key)
    from tunedeck.runner.errors import RunNotFound
    from tunedeck.runner.fsutil import read_json
    from tunedeck.runner.rundir.runs import computed_status, raw_manifest, resolve_run

    try:
        run_dir = resolve_run(text)
    except RunNotFound:
        return None
    m = raw_manifest(run_dir) or {}
    if m.get("job") != "serve":
        return None
    status = computed_status(m)
    info = read_json(run_dir / "server.json")
    if not status.active or not isinstance(info, dict) or not info.get("url"):
        raise TunedeckError(f"the server {m.get('name') or run_dir} is not serving (status {status.value})",
                            hint=f"tunedeck serve {(m.get('details') or {}).get('serves', 'RUN')} to start one")
    if info.get("api_key") and not key:
        raise TunedeckError(f"the server {m.get('name')} requires an API key",
                            hint="pass --api-key KEY or set TUNEDECK_SERVE_API_KEY")
    ids = list(info.get("models") or [])
    return RemoteModel(str(info["url"]), _choose(ids, model, str(info["url"])), key)


def _choose(ids: Sequence[str], model: str | None, url: str) -> str:
    if model:
        if model not in ids:
            raise TunedeckError(f"{url} does not serve {model!r}", hint="it serves: " + ", ".join(ids))
        return model
    if not ids:
        raise TunedeckError(f"{url} serves no model")
    return ids[0]


def request_body(remote: RemoteModel, messages: Sequence[Mapping[str, str]], system: str | None,
                 gen: Any) -> dict[str, Any]:
    """The chat request for a conversation, with the local generation settings."""
    msgs = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "tool" if m["role"] == "observation" else m["role"], "content": m["content"]}
        for m in messages]
    sampling = bool(gen.do_sample) and gen.temperature > 0
    return {"model": remote.model, "messages": msgs, "stream": True, "max_tokens": gen.max_new_tokens,
            "temperature": gen.temperature if sampling else 0.0, "top_p": gen.top_p,
            "top_k": gen.top_k, "repetition_penalty": gen.repetition_penalty}


def stream_chat(remote: RemoteModel, messages: Sequence[Mapping[str, str]], system: str | None,
                gen: Any, stop_event: threading.Event | None = None) -> Iterator[str]:
    """Text pieces of the server's answer as they arrive; ``stop_event`` closes the stream (the
    server then stops generating)."""
    resp = remote._request("/chat/completions", request_body(remote, messages, system, gen), timeout=600)
    try:
        for raw in resp:
            if stop_event is not None and stop_event.is_set():
                break
            line = raw.decode("utf-8", errors="replace").strip()
            if not line.startswith("data:"):
                continue
            payload = line[5:].strip()
            if payload == "[DONE]":
                break
            try:
                chunk = json.loads(payload)
            except ValueError:
                continue
            for choice in chunk.get("choices") or []:
                piece = (choice.get("delta") or {}).get("content")
                if piece:
                    yield piece
    finally:
        resp.close()
