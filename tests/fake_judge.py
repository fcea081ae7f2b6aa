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
request's answer, scripted as above; or ``job_state`` (``BATCH_STATE_FAILED``...) with the answers
of its first ``answered_before_end`` requests. ``usage`` is the usage metadata every answer reports.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections import Counter

from tests.loopback import LoopbackAPI

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


def answer(behaviour: str, usage: dict = USAGE) -> tuple[int, dict]:
    if behaviour.isdigit():
        code = int(behaviour)
        return code, {"error": {"code": code, "message": "fake error", "status": "RESOURCE_EXHAUSTED" if code == 429 else "UNAVAILABLE"}}
    if behaviour == "blocked":
        return 200, {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 2940}}
    if behaviour == "safety":
        return 200, {"candidates": [{"finishReason": "SAFETY"}], "usageMetadata": usage}
    if behaviour == "empty":
        return 200, {"candidates": [{"content": {"role": "model", "parts": []}, "finishReason": "STOP"}], "usageMetadata": usage}
    if behaviour == "malformed":
        text = "The restoration looks faithful to me, quality four."
    elif behaviour == "wrong_keys":
        text = json.dumps({k: v for k, v in ANSWERS["good"].items() if k != "reason"})
    else:
        text = json.dumps(ANSWERS[behaviour])
    return 200, {"candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP"}], "usageMetadata": usage}


class FakeJudge(LoopbackAPI):
    def __init__(self, default: str = "good") -> None:
        super().__init__()
        self.default = default
        self.script: dict[str, list[str]] = {}
        self.calls: Counter[str] = Counter()
        self.requests: list[dict] = []
        self.jobs: dict[str, dict] = {}
        self.polls_while_running = 1
        self.usage = dict(USAGE)  # the usage metadata of every answer
        self.job_state = "BATCH_STATE_SUCCEEDED"  # what a job becomes after running
        self.answered_before_end = 0  # requests a job that does not succeed answered all the same

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
        succeeded = self.job_state == "BATCH_STATE_SUCCEEDED"
        answers = [
            {"response": answer(self._behaviour(hashlib.sha256(hq_view(item["request"])).hexdigest()), self.usage)[1], "metadata": item.get("metadata", {})}
            for item in (job["requests"] if succeeded else job["requests"][: self.answered_before_end])
        ]
        if not answers and not succeeded:
            return {"name": name, "metadata": {"state": self.job_state}}
        return {"name": name, "metadata": {"state": self.job_state, "output": {"inlinedResponses": {"inlinedResponses": answers}}}}

    def answer_post(self, path: str, headers, body: dict) -> tuple[int, dict]:
        with self.lock:
            self.requests.append({"path": path, "body": body})
        if path.endswith(":batchGenerateContent"):
            return 200, self.create_job(body)
        return answer(self._behaviour(hashlib.sha256(hq_view(body)).hexdigest()), self.usage)

    def answer_get(self, path: str) -> tuple[int, dict]:
        return 200, self.poll_job("batches/" + path.split("/batches/")[1].split("?")[0])
