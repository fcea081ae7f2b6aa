"""A fake Gemini API on 127.0.0.1 speaking the REST protocol the real SDK uses.

``POST /{version}/models/{model}:generateContent`` with JSON ``contents`` holding an
``inlineData`` image part and a text part. What it answers is scripted per photo: the
test maps the SHA-256 of a photo's bytes to a list of behaviours, one per request for that
photo and model kind (``"vlm"`` or ``"image"``); the last behaviour repeats. ``thoughts``
sets the thinking tokens each kind's answers report (``thoughtsTokenCount``), which are billed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections import Counter

import cv2
import numpy as np

from tests.loopback import LoopbackAPI

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


def photo_of(request: dict) -> bytes:
    parts = request["contents"][0]["parts"]
    data = next(p["inlineData"] for p in parts if "inlineData" in p)["data"]
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))  # URL-safe, unpadded from the SDK


def respond(kind: str, photo: bytes, behaviour: str, thoughts: int = 0) -> tuple[int, dict]:
    """The HTTP status and JSON body for one generateContent request."""
    if behaviour.isdigit():  # an HTTP error status
        return int(behaviour), {"error": {"code": int(behaviour), "message": "fake error", "status": "UNAVAILABLE"}}
    usage = {"promptTokenCount": 1120, "candidatesTokenCount": 250 if kind == "vlm" else 1290}
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts
    if kind == "vlm":
        if behaviour == "no_key":  # valid JSON without the prompt
            text = json.dumps({k: v for k, v in VLM_ANSWER.items() if k != "restoration_prompt"})
        else:
            text = json.dumps(VLM_ANSWER) if behaviour == "ok" else "This photo looks noisy; I would denoise it."
        return 200, {"candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP"}], "usageMetadata": usage}
    if behaviour == "blocked":
        return 200, {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": usage}
    if behaviour == "image_safety":
        return 200, {"candidates": [{"finishReason": "IMAGE_SAFETY"}], "usageMetadata": usage}
    if behaviour == "no_image":
        parts = [{"text": "Here is the restored photo."}]
        return 200, {"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP"}], "usageMetadata": usage}
    data = b"\x89PNG\r\n\x1a\n not really a png" if behaviour == "garbage" else restored_png(photo)
    part = {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(data).decode()}}
    return 200, {"candidates": [{"content": {"role": "model", "parts": [part]}, "finishReason": "STOP"}], "usageMetadata": usage}


class FakeGemini(LoopbackAPI):
    def __init__(self, vlm_model: str = "gemini-3-flash", delay: float = 0.0) -> None:
        super().__init__()
        self.vlm_model = vlm_model
        self.delay = delay
        self.script: dict[tuple[str, str], list[str]] = {}
        self.calls: Counter = Counter()  # (sha, kind) -> requests
        self.requests: list[dict] = []
        self.jobs: dict[str, dict] = {}
        self.polls_while_running = 1  # a job answers RUNNING this many times before finishing
        self.job_state = "BATCH_STATE_SUCCEEDED"  # what a job becomes after running
        self.answered_before_end = 0  # requests a job that does not succeed answered all the same
        self.batch_api = True  # False: answer 404 to job submissions, as a server without batches
        self.job_bytes: list[int] = []  # the size of each job submission
        self.thoughts = {"vlm": 0, "image": 0}  # thinking tokens reported per answer, by kind

    def create_job(self, model: str, body: dict) -> dict:
        """A Batch API job (``models/{model}:batchGenerateContent``) holding inlined requests."""
        with self.lock:
            name = f"batches/job{len(self.jobs)}"
            self.jobs[name] = {"model": model, "requests": body["batch"]["inputConfig"]["requests"]["requests"], "polls": 0}
        return {"name": name, "metadata": {"state": "BATCH_STATE_PENDING", "model": f"models/{model}"}}

    def poll_job(self, job_id: str) -> dict:
        name = f"batches/{job_id}"
        job = self.jobs[name]
        job["polls"] += 1
        if job["polls"] <= self.polls_while_running:
            return {"name": name, "metadata": {"state": "BATCH_STATE_RUNNING"}}
        succeeded = self.job_state == "BATCH_STATE_SUCCEEDED"
        answers = []
        for item in job["requests"] if succeeded else job["requests"][: self.answered_before_end]:
            photo = photo_of(item["request"])
            behaviour = self._behaviour(hashlib.sha256(photo).hexdigest(), "image")
            _, response = respond("image", photo, behaviour, self.thoughts["image"])
            answers.append({"response": response, "metadata": item.get("metadata", {})})
        if not answers and not succeeded:
            return {"name": name, "metadata": {"state": self.job_state}}
        output = {"inlinedResponses": {"inlinedResponses": answers}}
        return {"name": name, "metadata": {"state": self.job_state, "output": output}}

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

    def answer_post(self, path: str, headers, body: dict) -> tuple[int, dict]:
        model = path.split("/models/")[1].split(":")[0]
        if path.endswith(":batchGenerateContent"):
            if not self.batch_api:
                return 404, {"error": {"code": 404, "message": "Not Found", "status": "NOT_FOUND"}}
            with self.lock:
                self.job_bytes.append(int(headers["Content-Length"]))
            return 200, self.create_job(model, body)
        kind = "vlm" if model == self.vlm_model else "image"
        photo = photo_of(body)
        with self.lock:
            self.requests.append({"model": model, "kind": kind, "body": body, "arrived": time.monotonic()})
        behaviour = self._behaviour(hashlib.sha256(photo).hexdigest(), kind)
        time.sleep(self.delay)
        return respond(kind, photo, behaviour, self.thoughts[kind])

    def answer_get(self, path: str) -> tuple[int, dict]:
        return 200, self.poll_job(path.split("/batches/")[1].split("?")[0])
