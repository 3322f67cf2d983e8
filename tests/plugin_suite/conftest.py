"""What the suite shares: a receiver for delivery callbacks, so a test awaits delivery."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


class Callbacks:
    """Delivery callbacks POSTed to ``url``, as they come."""

    def __init__(self, url: str, received: queue.Queue[dict[str, Any]]) -> None:
        self.url = url
        self._received = received

    def next(self, timeout: float = 10) -> dict[str, Any]:
        return self._received.get(timeout=timeout)


@pytest.fixture
def callbacks() -> Iterator[Callbacks]:
    received: queue.Queue[dict[str, Any]] = queue.Queue()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            received.put(json.loads(self.rfile.read(length)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Callbacks(f"http://127.0.0.1:{server.server_port}/hook", received)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
