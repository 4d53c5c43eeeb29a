"""A real HTTP receiver on 127.0.0.1 for the alert tests (apprise's json:// posts to it)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    def __init__(self, server: ThreadingHTTPServer) -> None:
        self.server = server
        self.messages: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.server.server_address[1]}/hook"

    def got(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.messages)

    def statuses(self) -> list[str]:
        out = []
        for m in self.got():
            for line in str(m.get("message", "")).splitlines():
                if line.startswith("status: "):
                    out.append(line[len("status: "):])
        return out


@contextmanager
def receiver() -> Iterator[Receiver]:
    box: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n)
            try:
                data = json.loads(body)
            except ValueError:
                data = {"raw": body.decode("utf-8", "replace")}
            with box["r"].lock:
                box["r"].messages.append(data)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    box["r"] = Receiver(server)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield box["r"]
    finally:
        server.shutdown()
        server.server_close()


def closed_port_url() -> str:
    """A json:// URL on a port nothing listens on (bound, then released)."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"json://127.0.0.1:{port}/down"
