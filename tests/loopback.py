"""The HTTP side of the fake Gemini APIs (tests/fake_gemini.py, tests/fake_judge.py).

A ``LoopbackAPI`` serves JSON on a free port of 127.0.0.1 from a thread, for the duration
of a ``with`` block; ``url`` is what the SDK is pointed at. It records the API keys it was
sent and how many POSTs it answered at once, and hands each request's path and JSON body to
its subclass, which says what to answer.
"""

from __future__ import annotations

import json
import threading
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LoopbackAPI:
    def __init__(self) -> None:
        self.keys_seen: set[str] = set()
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        # Join request threads on close: one still answering at interpreter exit (OpenCV
        # encoding a reply) can abort the process.
        self.server.daemon_threads = False
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def answer_post(self, path: str, headers: Message, body: dict) -> tuple[int, dict]:
        """The HTTP status and JSON payload for a POST of ``body`` to ``path``."""
        raise NotImplementedError

    def answer_get(self, path: str) -> tuple[int, dict]:
        """The HTTP status and JSON payload for a GET of ``path``."""
        raise NotImplementedError

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:
                with api.lock:
                    api.in_flight += 1
                    api.max_in_flight = max(api.max_in_flight, api.in_flight)
                try:
                    body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                    api.keys_seen.add(self.headers.get("x-goog-api-key", ""))
                    self._send(*api.answer_post(self.path, self.headers, body))
                finally:
                    with api.lock:
                        api.in_flight -= 1

            def do_GET(self) -> None:
                api.keys_seen.add(self.headers.get("x-goog-api-key", ""))
                self._send(*api.answer_get(self.path))

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler
