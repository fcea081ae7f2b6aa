"""A fake Gemini API on 127.0.0.1 speaking the REST protocol the real SDK uses.

``POST /{version}/models/{model}:generateContent`` with JSON ``contents`` holding an
``inlineData`` image part and a text part. What it answers is scripted per photo: the
test maps the SHA-256 of a photo's bytes to a list of behaviours, one per request for that
photo and model kind (``"vlm"`` or ``"image"``); the last behaviour repeats.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np

VLM_ANSWER = {
    "degradations": ["noise", "blur"],
    "scene": "a test photo",
    "preserve": ["everything"],
    "restoration_prompt": "Remove the noise and blur from this photo.",
}


def restored_png(lq_bytes: bytes) -> bytes:
    """A plausible target: the LQ decoded, enlarged 2x and lightly smoothed, as PNG."""
    image = cv2.imdecode(np.frombuffer(lq_bytes, np.uint8), cv2.IMREAD_COLOR)
    image = cv2.GaussianBlur(cv2.resize(image, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC), (0, 0), 0.6)
    return cv2.imencode(".png", image)[1].tobytes()


class FakeGemini:
    def __init__(self, vlm_model: str = "gemini-3-flash", delay: float = 0.0) -> None:
        self.vlm_model = vlm_model
        self.delay = delay
        self.script: dict[tuple[str, str], list[str]] = {}
        self.calls: Counter = Counter()  # (sha, kind) -> requests
        self.in_flight = 0
        self.max_in_flight = 0
        self.keys_seen: set[str] = set()
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeGemini:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def on(self, photo_bytes: bytes, kind: str, *behaviours: str) -> None:
        self.script[(hashlib.sha256(photo_bytes).hexdigest(), kind)] = list(behaviours)

    def requests_for(self, photo_bytes: bytes) -> int:
        sha = hashlib.sha256(photo_bytes).hexdigest()
        return self.calls[(sha, "vlm")] + self.calls[(sha, "image")]

    def _behaviour(self, sha: str, kind: str) -> str:
        with self.lock:
            self.calls[(sha, kind)] += 1
            script = self.script.get((sha, kind), ["ok"])
            return script[min(self.calls[(sha, kind)] - 1, len(script) - 1)]

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:
                with fake.lock:
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                try:
                    self._answer()
                finally:
                    with fake.lock:
                        fake.in_flight -= 1

            def _answer(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.keys_seen.add(self.headers.get("x-goog-api-key", ""))
                model = self.path.split("/models/")[1].split(":")[0]
                kind = "vlm" if model == fake.vlm_model else "image"
                parts = body["contents"][0]["parts"]
                image = next(p["inlineData"] for p in parts if "inlineData" in p)
                data = image["data"]  # the SDK sends URL-safe base64 without padding
                photo = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
                with fake.lock:
                    fake.requests.append({"model": model, "kind": kind, "body": body})
                behaviour = fake._behaviour(hashlib.sha256(photo).hexdigest(), kind)
                time.sleep(fake.delay)
                if behaviour.isdigit():  # an HTTP error status
                    return self._send(int(behaviour), {"error": {"code": int(behaviour), "message": "fake error", "status": "UNAVAILABLE"}})
                usage = {"promptTokenCount": 1120, "candidatesTokenCount": 250 if kind == "vlm" else 1290}
                if kind == "vlm":
                    text = json.dumps(VLM_ANSWER) if behaviour == "ok" else "This photo looks noisy; I would denoise it."
                    return self._send(200, {"candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP"}], "usageMetadata": usage})
                if behaviour == "blocked":
                    return self._send(200, {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": usage})
                if behaviour == "image_safety":
                    return self._send(200, {"candidates": [{"finishReason": "IMAGE_SAFETY"}], "usageMetadata": usage})
                if behaviour == "no_image":
                    parts = [{"text": "Here is the restored photo."}]
                    return self._send(200, {"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP"}], "usageMetadata": usage})
                data = b"\x89PNG\r\n\x1a\n not really a png" if behaviour == "garbage" else restored_png(photo)
                part = {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(data).decode()}}
                self._send(200, {"candidates": [{"content": {"role": "model", "parts": [part]}, "finishReason": "STOP"}], "usageMetadata": usage})

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler
