"""An OpenAI-compatible server for a run's checkpoints, with transformers (``infer_backend:
huggingface``): ``python -m tunedeck.runner.infer.server SERVE_JSON``.

``tunedeck serve`` starts this as a supervised job (see :mod:`tunedeck.runner.infer.serve`);
the job directory's ``serve.json`` says what to serve, and the server writes ``server.json``
(its URL and model ids) once the weights are loaded and the socket listens.

Routes: ``GET /health``, ``GET /v1/models``, ``POST /v1/chat/completions`` (JSON or
server-sent events with ``stream: true``), ``POST /v1/completions``. Chat prompts go through
the run's own template (the training formatter). Several LoRA checkpoints of one base are
served as named adapters of one model (``model`` in a request picks one), something
LLaMA-Factory's API, which serves one adapter named "default", cannot. Requests are answered
one at a time (a CPU or a single GPU gains nothing from more). With an API key
(``TUNEDECK_SERVE_API_KEY`` in the environment, never on the command line) every request must
carry ``Authorization: Bearer KEY``; the key is never logged.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from tunedeck.runner.errors import TunedeckError
from tunedeck.runner.fsutil import atomic_write_json
from tunedeck.runner.infer.serve import API_KEY_ENV, SERVER_INFO, model_id

log = logging.getLogger("tunedeck.serve")


@dataclass
class Served:
    """One model id a client can ask for."""

    id: str
    loaded: Any            # runner.infer.engine.Loaded
    adapter: str | None    # the peft adapter to activate for it (several on one base)


class ModelPool:
    """The loaded models; ``pick(name)`` activates the right adapter. One request at a time."""

    def __init__(self, served: list[Served]) -> None:
        self.served = served
        self.by_id = {s.id: s for s in served}
        self.lock = threading.Lock()

    def ids(self) -> list[str]:
        return [s.id for s in self.served]

    def pick(self, name: str | None) -> Served:
        if not name or name not in self.by_id:
            if name and name not in self.by_id and len(self.served) > 1:
                raise KeyError(name)
            return self.served[0]
        return self.by_id[name]

    def activate(self, s: Served) -> None:
        if s.adapter is not None:
            s.loaded.model.set_adapter(s.adapter)



def load_pool(specs: Sequence[Any], names: Sequence[str], progress: Any = print) -> ModelPool:
    """Load every spec; LoRA checkpoints of the same base share one model as named adapters."""
    from tunedeck.runner.infer.engine import load_model

    served: list[Served] = []
    shared: dict[tuple[str, tuple[str, ...]], Any] = {}
    for spec, name in zip(specs, names, strict=True):
        key = (spec.model_name_or_path, tuple(spec.adapters[:-1]))
        lora = spec.finetuning_type == "lora" and len(spec.adapters) >= 1
        host = shared.get(key) if lora else None
        if host is not None and hasattr(host.model, "load_adapter"):
            progress(f"adapter {spec.adapters[-1]} as {name!r}")
            host.model.load_adapter(spec.adapters[-1], adapter_name=name, is_trainable=False)
            served.append(Served(name, host, name))
            continue
        loaded = load_model(spec, progress)
        if lora and hasattr(loaded.model, "load_adapter"):
            shared[key] = loaded
            # peft names the first adapter "default"; serve it under that name
            served.append(Served(name, loaded, "default"))
        else:
            served.append(Served(name, loaded, None))
    return ModelPool(served)


# ---------------------------------------------------------------------------------------------
# requests -> generation settings

def gen_for(loaded: Any, body: dict[str, Any]) -> Any:
    """The spec's generation settings with the request's OpenAI fields applied."""
    gen = loaded.spec.generation
    if body.get("temperature") is not None:
        t = float(body["temperature"])
        gen = gen.with_("do_sample", t > 0)
        if t > 0:
            gen = gen.with_("temperature", t)
    if body.get("top_p") is not None:
        gen = gen.with_("top_p", float(body["top_p"]))
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if limit is not None:
        gen = gen.with_("max_new_tokens", int(limit))
    for ours in ("top_k", "repetition_penalty", "do_sample"):   # extensions LLaMA-Factory accepts too
        if body.get(ours) is not None:
            gen = gen.with_(ours, body[ours])
    return gen


def _messages(body: dict[str, Any]) -> tuple[list[dict[str, str]], str | None]:
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise ValueError("messages must be a non-empty list")
    system = None
    out: list[dict[str, str]] = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant", "tool"):
            raise ValueError(f"messages[{i}]: role must be system, user, assistant or tool")
        content = m.get("content")
        if isinstance(content, list):  # [{"type": "text", "text": ...}]
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        if not isinstance(content, str):
            raise ValueError(f"messages[{i}]: content must be text")
        if m["role"] == "system":
            if i != 0:
                raise ValueError("only the first message may be a system message")
            system = content
            continue
        out.append({"role": "observation" if m["role"] == "tool" else m["role"], "content": content})
    return out, system


# ---------------------------------------------------------------------------------------------
# the app

def create_app(pool: ModelPool, api_key: str | None) -> Any:
    """The FastAPI application over ``pool`` (``api_key`` None: no authentication)."""
    app = FastAPI(title="tunedeck", docs_url=None, redoc_url=None, openapi_url=None)
    api = _Endpoints(pool)
    app.middleware("http")(_authenticator(api_key))
    app.get("/health")(api.health)
    app.get("/v1/models")(api.models)
    app.post("/v1/chat/completions")(api.chat)
    app.post("/v1/completions")(api.completions)
    return app


def _error(status: int, message: str, kind: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status_code=status)


def _authenticator(api_key: str | None) -> Any:
    """The middleware that refuses a request without ``Authorization: Bearer api_key``."""

    async def authenticate(request: Request, call_next: Any) -> Any:
        if api_key is not None:
            given = request.headers.get("authorization", "")
            token = given[7:] if given.lower().startswith("bearer ") else ""
            if not hmac.compare_digest(token.encode(), api_key.encode()):
                return _error(401, "invalid or missing API key (Authorization: Bearer KEY)",
                              "authentication_error")
        return await call_next(request)

    return authenticate


async def _body_of(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise ValueError("the request body is not JSON") from None
    if not isinstance(body, dict):
        raise ValueError("the request body must be a JSON object")
    if int(body.get("n") or 1) != 1:
        raise ValueError("n must be 1")
    return body


def _prompt_ids(served: Served, body: dict[str, Any]) -> list[int]:
    """A completion request's prompt (one string) as token ids."""
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise ValueError("prompt must be one string")
    return served.loaded.tokenizer.encode(prompt, add_special_tokens=True)


class _Endpoints:
    """The routes over one pool; one generation runs at a time."""

    def __init__(self, pool: ModelPool) -> None:
        self.pool = pool
        self.gate = asyncio.Lock()

    async def health(self) -> dict[str, Any]:
        return {"status": "ok", "models": self.pool.ids()}

    async def models(self) -> dict[str, Any]:
        now = int(time.time())
        return {"object": "list", "data": [
            {"id": i, "object": "model", "created": now, "owned_by": "tunedeck"} for i in self.pool.ids()]}

    async def chat(self, request: Request) -> Any:
        from tunedeck.runner.infer.engine import format_chat

        def encode(served: Served, body: dict[str, Any]) -> list[int]:
            messages, system = _messages(body)
            return format_chat(served.loaded, messages, system)

        return await self._complete(request, "chat", encode)

    async def completions(self, request: Request) -> Any:
        return await self._complete(request, "completion", _prompt_ids)

    def _choose(self, body: dict[str, Any]) -> Served:
        try:
            return self.pool.pick(body.get("model"))
        except KeyError:
            raise LookupError(f"model {body.get('model')!r} is not served here; "
                              f"GET /v1/models lists {', '.join(self.pool.ids())}") from None

    async def _complete(self, request: Request, kind: str,
                        encode: Callable[[Served, dict[str, Any]], list[int]]) -> Any:
        """Read and check a request, then answer it (``kind``: "chat" or "completion")."""
        try:
            body = await _body_of(request)
            served = self._choose(body)
            ids = encode(served, body)
            gen = gen_for(served.loaded, body)
        except LookupError as exc:
            return _error(404, str(exc), "model_not_found")
        except (ValueError, TypeError, TunedeckError) as exc:
            return _error(400, str(exc))
        reply = _Reply(self.pool, served, ids, gen, kind)
        if not body.get("stream"):
            async with self.gate:
                text = await asyncio.to_thread(lambda: "".join(reply.pieces()))
            return JSONResponse(reply.whole(text))
        return StreamingResponse(self._events(reply), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    async def _events(self, reply: _Reply) -> AsyncIterator[str]:
        """The server-sent events of a streamed answer; a client that leaves stops it."""
        async with self.gate:
            it = await asyncio.to_thread(reply.pieces)
            parts: list[str] = []
            if reply.kind == "chat":
                yield reply.chunk({"role": "assistant", "content": ""}, None)
            try:
                while True:
                    piece = await asyncio.to_thread(next, it, None)
                    if piece is None:
                        break
                    parts.append(piece)
                    yield reply.chunk({"content": piece} if reply.kind == "chat" else piece, None)
            finally:
                reply.stop.set()   # a client that went away stops the generation
                close = getattr(it, "close", None)  # a generator: ends its work at once
                if close is not None:
                    await asyncio.to_thread(close)
            text = "".join(parts)
            yield reply.chunk({} if reply.kind == "chat" else "", reply.finish_reason(text))
            yield "data: [DONE]\n\n"


class _Reply:
    """One answer in OpenAI's shapes: ``kind`` "chat" (chat.completion) or "completion"."""

    def __init__(self, pool: ModelPool, served: Served, ids: list[int], gen: Any, kind: str) -> None:
        self.pool, self.served, self.ids, self.gen, self.kind = pool, served, ids, gen, kind
        self.id = ("chatcmpl-" if kind == "chat" else "cmpl-") + uuid.uuid4().hex[:24]
        self.created = int(time.time())
        self.stop = threading.Event()

    def pieces(self) -> Iterator[str]:
        from tunedeck.runner.infer.engine import generate_stream

        self.pool.activate(self.served)
        return generate_stream(self.served.loaded, self.ids, self.gen, self.stop)

    def finish_reason(self, text: str) -> str:
        return "length" if _hit_limit(self.served, text, self.gen) else "stop"

    def usage(self, text: str) -> dict[str, int]:
        n = len(self.served.loaded.tokenizer.encode(text, add_special_tokens=False))
        return {"prompt_tokens": len(self.ids), "completion_tokens": n, "total_tokens": len(self.ids) + n}

    def whole(self, text: str) -> dict[str, Any]:
        """The JSON answer to a request without ``stream``."""
        finish = self.finish_reason(text)
        if self.kind == "chat":
            choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": text},
                                      "finish_reason": finish}
            obj = "chat.completion"
        else:
            choice = {"index": 0, "text": text, "finish_reason": finish}
            obj = "text_completion"
        return {"id": self.id, "object": obj, "created": self.created, "model": self.served.id,
                "choices": [choice], "usage": self.usage(text)}

    def chunk(self, delta: dict[str, Any] | str, finish: str | None) -> str:
        """One server-sent event of a streamed answer."""
        if self.kind == "chat":
            choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish}
            obj = "chat.completion.chunk"
        else:
            choice = {"index": 0, "text": delta, "finish_reason": finish}
            obj = "text_completion"
        return "data: " + json.dumps({"id": self.id, "object": obj, "created": self.created,
                                      "model": self.served.id, "choices": [choice]}) + "\n\n"


def _hit_limit(served: Served, text: str, gen: Any) -> bool:
    n = len(served.loaded.tokenizer.encode(text, add_special_tokens=False))
    return n >= int(gen.max_new_tokens)


# ---------------------------------------------------------------------------------------------
# the process

def bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: a free one), bound before the server says where it is."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise TunedeckError(f"cannot listen on {host}:{port}: {exc.strerror}",
                            hint="choose another --port (0 picks a free one)") from exc
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def url_of(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/v1"


def main(argv: list[str] | None = None) -> int:
    from tunedeck.runner.control.service import read_job_spec

    got = read_job_spec(argv, "tunedeck.runner.infer.server", "SERVE_JSON")
    if got is None:
        return 2
    job_dir, spec_doc = got
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    from tunedeck.runner.infer.spec import resolve

    try:
        specs = [resolve(spec_doc["target"], ck, spec_doc.get("overrides") or {})
                 for ck in (spec_doc.get("checkpoints") or [None])]
        names = spec_doc.get("model_ids") or [model_id(s, spec_doc.get("run_name")) for s in specs]
        sock = bind(spec_doc.get("host", "127.0.0.1"), int(spec_doc.get("port", 8000)))
        pool = load_pool(specs, names, progress=lambda t: print(f"loading {t}", flush=True))
    except TunedeckError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    host, port = sock.getsockname()[:2]
    import uvicorn

    api_key = os.environ.get(API_KEY_ENV) or None
    config = uvicorn.Config(create_app(pool, api_key), log_level="info", access_log=True,
                            timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)

    info = {"url": url_of(host, port), "host": host, "port": port, "models": pool.ids(),
            "pid": os.getpid(), "api_key": api_key is not None, "started_at": time.time()}

    async def serve() -> None:
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.05)
        if server.started:
            atomic_write_json(job_dir / SERVER_INFO, info)
            print(f"serving {', '.join(pool.ids())} at {info['url']}", flush=True)
        await task

    asyncio.run(serve())
    from tunedeck.runner.rundir.protocol import TRAINER_EXIT

    # uvicorn ended on SIGTERM/SIGINT (tunedeck stop): say so, as a trainer would.
    atomic_write_json(job_dir / TRAINER_EXIT, {"reason": "stopped", "exit_code": 0,
                                               "message": f"server at {info['url']} stopped"})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
