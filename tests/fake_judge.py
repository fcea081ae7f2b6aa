"""A loopback stand-in for the Gemini API answering the ``judge`` filter's requests.

``POST /{version}/models/{model}:generateContent`` with the rubric, two ``inlineData``
JPEG parts (LQ, HQ) and the metrics' notes. What it answers is scripted per pair, by the
SHA-256 of the HQ view's bytes (``judge.view_bytes``), as a list of behaviours, one per
request for that pair; the last repeats. Unscripted pairs get ``default``.

Behaviours: ``good`` (faithful, quality 4, no defects), ``bad`` (not faithful, quality 2,
a major hallucinated object), ``minor`` (faithful, quality 4, a minor plastic look),
``blocked`` (the prompt refused), ``safety`` (the answer stopped for safety), ``empty``
(no text), ``malformed`` (prose, not JSON), ``wrong_keys`` (JSON without ``reason``), or an
HTTP status code such as ``"429"`` or ``"500"``.

Batch API: ``models/{model}:batchGenerateContent`` creates a job of inlined requests;
``GET batches/{id}`` answers RUNNING ``polls_while_running`` times, then SUCCEEDED with each
request's answer, scripted as above.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ANSWERS = {
    "good": {"faithful": True, "quality": 4, "defects": [], "reason": "A faithful, clean restoration of the same scene."},
    "bad": {
        "faithful": False,
        "quality": 2,
        "defects": [{"kind": "hallucinated_object", "severity": "major"}],
        "reason": "The HQ adds a window that the LQ does not show.",
    },
    "minor": {
        "faithful": True,
        "quality": 4,
        "defects": [{"kind": "plastic", "severity": "minor"}],
        "reason": "Faithful, with slightly waxy skin.",
    },
}
USAGE = {"promptTokenCount": 2940, "candidatesTokenCount": 60, "thoughtsTokenCount": 100}


def hq_view(body: dict) -> bytes:
    parts = body["contents"][0]["parts"]
    data = [p["inlineData"]["data"] for p in parts if "inlineData" in p][1]
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


def answer(behaviour: str) -> tuple[int, dict]:
    if behaviour.isdigit():
        code = int(behaviour)
        return code, {"error": {"code": code, "message": "fake error", "status": "RESOURCE_EXHAUSTED" if code == 429 else "UNAVAILABLE"}}
    if behaviour == "blocked":
        return 200, {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 2940}}
    if behaviour == "safety":
        return 200, {"candidates": [{"finishReason": "SAFETY"}], "usageMetadata": USAGE}
    if behaviour == "empty":
        return 200, {"candidates": [{"content": {"role": "model", "parts": []}, "finishReason": "STOP"}], "usageMetadata": USAGE}
    if behaviour == "malformed":
        text = "The restoration looks faithful to me, quality four."
    elif behaviour == "wrong_keys":
        text = json.dumps({k: v for k, v in ANSWERS["good"].items() if k != "reason"})
    else:
        text = json.dumps(ANSWERS[behaviour])
    return 200, {"candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP"}], "usageMetadata": USAGE}


class FakeJudge:
    def __init__(self, default: str = "good") -> None:
        self.default = default
        self.script: dict[str, list[str]] = {}
        self.calls: Counter[str] = Counter()
        self.requests: list[dict] = []
        self.keys_seen: set[str] = set()
        self.in_flight = 0
        self.max_in_flight = 0
        self.jobs: dict[str, dict] = {}
        self.polls_while_running = 1
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = False
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeJudge:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def on(self, hq_view_bytes: bytes, *behaviours: str) -> None:
        self.script[hashlib.sha256(hq_view_bytes).hexdigest()] = list(behaviours)

    def _behaviour(self, sha: str) -> str:
        with self.lock:
            self.calls[sha] += 1
            script = self.script.get(sha, [self.default])
            return script[min(self.calls[sha] - 1, len(script) - 1)]

    def create_job(self, body: dict) -> dict:
        with self.lock:
            name = f"batches/job{len(self.jobs)}"
            self.jobs[name] = {"requests": body["batch"]["inputConfig"]["requests"]["requests"], "polls": 0}
        return {"name": name, "metadata": {"state": "BATCH_STATE_PENDING"}}

    def poll_job(self, name: str) -> dict:
        job = self.jobs[name]
        job["polls"] += 1
        if job["polls"] <= self.polls_while_running:
            return {"name": name, "metadata": {"state": "BATCH_STATE_RUNNING"}}
        answers = [
            {"response": answer(self._behaviour(hashlib.sha256(hq_view(item["request"])).hexdigest()))[1], "metadata": item.get("metadata", {})}
            for item in job["requests"]
        ]
        return {"name": name, "metadata": {"state": "BATCH_STATE_SUCCEEDED", "output": {"inlinedResponses": {"inlinedResponses": answers}}}}

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                with fake.lock:
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                try:
                    body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                    fake.keys_seen.add(self.headers.get("x-goog-api-key", ""))
                    with fake.lock:
                        fake.requests.append({"path": self.path, "body": body})
                    if self.path.endswith(":batchGenerateContent"):
                        return self._send(200, fake.create_job(body))
                    self._send(*answer(fake._behaviour(hashlib.sha256(hq_view(body)).hexdigest())))
                finally:
                    with fake.lock:
                        fake.in_flight -= 1

            def do_GET(self) -> None:
                fake.keys_seen.add(self.headers.get("x-goog-api-key", ""))
                self._send(200, fake.poll_job("batches/" + self.path.split("/batches/")[1].split("?")[0]))

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler
