"""``judge``: a Gemini model's second opinion on whether an HQ target faithfully restores its LQ.

Per pair, the model (``model``, ``gemini-3-flash``) sees a fixed, versioned rubric
(:data:`RUBRIC`, version :data:`RUBRIC_VERSION`), the LQ and the HQ as JPEG views at most
``max_side`` pixels a side, and the reasons the metric filters gave the pair. It answers
under a response schema with exactly ``faithful``, ``quality`` (1-5), ``defects`` (each a
``kind`` and a ``severity``) and ``reason`` (one sentence). The answer becomes the fields
below; the sentence and the defect kinds become the row's note (``judge: <sentence>``).

Fields, and why their thresholds sit where they do:

- ``faithful`` (1 or 0, higher better, threshold 0.5, no review band): the model's yes or
  no on content: anything added, removed or changed is a rejection, since a training target
  that hallucinates teaches a restorer to hallucinate;
- ``quality`` (1-5, higher better, threshold 3, no band): the rubric defines 3 as "clean
  enough to train on, minor flaws"; 2 and 1 are targets a person would not keep;
- ``major_defects`` (count, lower better, threshold 0.5, no band): a defect the model calls
  major rejects the pair even when it calls the whole faithful and good, since the rubric
  defines major as "visible at a glance, the pair should not be used";
- ``minor_defects``, ``input_tokens``, ``output_tokens`` and ``cost_usd`` are recorded only.

The judge is itself the review: its fields have no review band, and a passing answer
settles the review bands of the metric filters (``settles_review``). A judge that cannot
answer (a safety block, an empty or malformed answer, a request that failed after retries,
a stopped run) never accepts: its fields are null and the pair goes to review with
``judge unsure: <why>``.

Which pairs: ``pairs = "review"`` (default) those the metric filters send to review;
``"all"`` every pair not yet failed; ``"rejected"`` those they reject (an audit).

Cost: each image costs ``tokens_per_image`` input tokens (1120, Gemini 3's default
``media_resolution`` for images, which does not depend on the size below it; see
docs/judge.md), so a pair is about 2 x 1120 + 700 rubric and reasons = 2,940 input tokens
and ~200 output tokens: $0.0021 at the default prices ($0.50 / $3.00 per million). Tokens
come from each response's usage metadata; the spend shows on the progress line and in
summary.json. Requests go through the shared client (``gemini_client``): ``rpm`` and
``concurrency`` limits, retries with backoff for 408, 429 and 5xx, the key read by the SDK
from the environment and never passed, stored or printed.

Cache: good answers are kept in ``$GGTQC_CACHE/judge/answers.jsonl`` (default
``~/.cache/ggtqc``), keyed by the SHA-256 of the LQ's and HQ's decoded pixels, the model
and the rubric version, so a rerun or a resumed run asks nothing twice.

Batch mode (``batch = true``, half price): uncached pairs go into one Batch API job per
scored batch and to review, saying so; a later run collects finished jobs into the cache at
setup (docs/judge.md).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ggtqc import hookimpl
from ggtqc.filters import Field, Filter, Scores
from ggtqc.plugins.gemini_client import (
    BATCH_PRICE,
    KEY_VARIABLES,
    Account,
    GeminiClient,
    Prices,
    RequestFailed,
    Stopped,
    key_is_set,
    parse_json_object,
    read_reply,
    scrub,
)

RUBRIC_VERSION = "1"
DEFECT_KINDS = (
    "hallucinated_object", "removed_object", "text_changed", "identity_changed", "colour_shift",
    "geometry_changed", "plastic", "over_sharpened", "artifacts", "not_restored", "other",
)  # fmt: skip
RUBRIC = f"""You check training pairs for image restoration (rubric version {RUBRIC_VERSION}).
The first image is the degraded input (LQ); the second is the proposed restoration (HQ).
A good HQ shows exactly the same scene as the LQ, only clean: same objects, people, faces,
text, layout, geometry and colours, with the degradation (noise, blur, compression, rain,
haze, scratches, low light) removed, and natural detail, not painted or waxy.

Answer in JSON with exactly these keys:
- "faithful": true if the HQ adds, removes or changes no content of the LQ (objects, people,
  identity, text, geometry, colours); false otherwise;
- "quality": an integer from 1 to 5 for the HQ as a training target: 5 excellent, clean and
  natural; 4 good; 3 clean enough to train on, minor flaws; 2 poor, visible flaws or the
  degradation partly left; 1 unusable;
- "defects": each flaw you see, as {{"kind", "severity"}}: kind one of {", ".join(DEFECT_KINDS)};
  severity "major" if it is visible at a glance and the pair should not be used, else "minor";
  an empty list if there are none;
- "reason": one sentence saying why, naming the most important flaw if any.
Automatic metrics may have flagged the pair; their notes follow the images. Look for
yourself: the metrics are often wrong near their thresholds."""
RESPONSE_SCHEMA = {
    "type": "OBJECT",
    "properties": {
        "faithful": {"type": "BOOLEAN"},
        "quality": {"type": "INTEGER", "minimum": 1, "maximum": 5},
        "defects": {
            "type": "ARRAY",
            "items": {
                "type": "OBJECT",
                "properties": {
                    "kind": {"type": "STRING", "enum": list(DEFECT_KINDS)},
                    "severity": {"type": "STRING", "enum": ["minor", "major"]},
                },
                "required": ["kind", "severity"],
            },
        },
        "reason": {"type": "STRING"},
    },
    "required": ["faithful", "quality", "defects", "reason"],
    "propertyOrdering": ["faithful", "quality", "defects", "reason"],
}
PAIRS = ("review", "all", "rejected")
PROMPT_TOKENS = 700  # the rubric and the metrics' reasons, about
ANSWER_TOKENS = 200


class Judge(Filter):
    name = "judge"
    version = "1"
    cost = 1000.0  # after every metric filter
    opt_in = True  # it sends pairs to a paid API: only when named
    settles_review = True
    fields = (
        Field("faithful", "higher", 0.5, "1: nothing added, removed or changed; 0: the judge saw content change", margin=0.0),
        Field("quality", "higher", 3.0, "1-5; 3: clean enough to train on", margin=0.0),
        Field("major_defects", "lower", 0.5, "defects the judge calls major", margin=0.0),
        Field("minor_defects", "lower", None, "defects the judge calls minor (recorded)", margin=0.0),
        Field("input_tokens", "lower", None, "input tokens this run sent for the pair (0 if cached)", margin=0.0),
        Field("output_tokens", "lower", None, "output tokens (answer and thinking) billed", margin=0.0),
        Field("cost_usd", "lower", None, "estimated cost of the pair's requests in this run", margin=0.0),
    )
    options = {
        "pairs": "review",
        "model": "gemini-3-flash",
        "base_url": "",
        "max_side": 1024,
        "jpeg_quality": 90,
        "rpm": 60.0,
        "concurrency": 4,
        "timeout_s": 120.0,
        "attempts": 5,
        "retry_initial_delay_s": 2.0,
        "unreachable_after": 3,
        "usd_per_mtok_input": 0.5,
        "usd_per_mtok_output": 3.0,
        "tokens_per_image": 1120,
        "cache": True,
        "batch": False,
    }

    def missing(self) -> Sequence[str]:
        problems = []
        if not key_is_set():
            problems.append(f"no Gemini API key: set {KEY_VARIABLES[0]} (or {KEY_VARIABLES[1]}, or the Vertex AI variables)")
        if self.settings["batch"] and not self.settings["cache"]:
            problems.append("batch = true needs cache = true: a batch job's answers are collected into the cache")
        if self.settings["pairs"] not in PAIRS:
            problems.append(f"pairs = {self.settings['pairs']!r}; give one of {', '.join(PAIRS)}")
        return problems

    def wants(self, verdict_so_far: str) -> bool | None:
        pairs = self.settings["pairs"]
        return pairs == "all" and verdict_so_far != "reject" or verdict_so_far == {"review": "review", "rejected": "reject"}.get(pairs)

    def estimate(self, pair_count: int) -> dict[str, Any]:
        """The cost of judging ``pair_count`` pairs, before sending anything."""
        s = self.settings
        tokens_in = 2 * int(s["tokens_per_image"]) + PROMPT_TOKENS
        per_pair = tokens_in * float(s["usd_per_mtok_input"]) / 1e6 + ANSWER_TOKENS * float(s["usd_per_mtok_output"]) / 1e6
        return {
            "pairs": pair_count,
            "input_tokens_per_pair": tokens_in,
            "output_tokens_per_pair": ANSWER_TOKENS,
            "usd_per_pair": round(per_pair, 6),
            "usd": round(per_pair * pair_count, 4),
            "model": s["model"],
        }

    # --- setup and accounting -------------------------------------------------------

    def setup(self, device) -> None:
        from ggtqc.generate import RateLimiter

        self.stopping = threading.Event()
        self.halted: list[str] = []
        self.limiter = RateLimiter(float(self.settings["rpm"]), self.stopping)
        self.client = GeminiClient(self.settings, before_request=self.limiter.wait, stopping=self.stopping, halt=self._halt)
        s = self.settings
        self.prices = Prices(0.0, float(s["usd_per_mtok_input"]), float(s["usd_per_mtok_output"]))  # the judge returns no images
        self.lock = threading.Lock()
        self.spent = {"usd": 0.0, "requests": 0, "input_tokens": 0, "output_tokens": 0, "cached": 0}
        self.cache = AnswerCache(cache_path() if self.settings["cache"] else None)
        self.jobs = BatchJobs(cache_path().with_name("jobs.jsonl")) if self.settings["batch"] else None
        if self.jobs is not None:
            self._collect_jobs()

    def _halt(self, message: str) -> None:
        self.halted.append(message)
        self.stopping.set()

    def accounting(self) -> Mapping[str, float] | None:
        with self.lock:
            spent, self.spent = self.spent, {key: 0 for key in self.spent}
        return spent if any(spent.values()) else None

    def __getstate__(self) -> dict[str, Any]:  # sent to worker processes before setup
        return {"settings": self.settings}

    # --- scoring ----------------------------------------------------------------------

    def score(self, batch) -> Scores:
        reasons = batch.reasons or [[] for _ in batch.ids]
        if self.jobs is not None:
            return self._score_by_batch_job(batch, reasons)
        with ThreadPoolExecutor(max(1, int(self.settings["concurrency"])), thread_name_prefix="ggtqc-judge") as pool:
            results = list(pool.map(self.judge_pair, batch.lq, batch.hq, reasons))
        names = [f.name for f in self.fields]
        values = {name: [r[0].get(name, math.nan) for r in results] for name in names}
        return Scores(values, unsure=[r[1] for r in results], notes=[r[2] for r in results])

    def judge_pair(self, lq: np.ndarray, hq: np.ndarray, reasons: Sequence[str]) -> tuple[dict[str, float], str | None, str | None]:
        """``(fields, unsure, note)`` for one pair; never raises for the API's sake."""
        s = self.settings
        key = cache_key(content_hash(lq), content_hash(hq), s["model"], RUBRIC_VERSION)
        answer = self.cache.get(key)
        usage = {"input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0}
        if answer is not None:
            with self.lock:
                self.spent["cached"] += 1
            return {**fields_of(answer), **usage}, None, note_of(answer)
        account = Account()
        try:
            answer, problem = self._ask(lq, hq, reasons, account)
        except Stopped:
            answer, problem = None, "the run stopped before the judge answered" + (f" ({self.halted[0]})" if self.halted else "")
        except RequestFailed as error:
            answer, problem = None, f"request failed: {error}"
        except Exception as error:  # an answer the SDK could not read: this pair only
            answer, problem = None, scrub(f"{type(error).__name__}: {error}")[:300]
        usage = self._spend(account)
        if answer is None:
            return usage, f"judge error: {problem}", None
        self.cache.put(key, answer, usage)
        return {**fields_of(answer), **usage}, None, note_of(answer)

    def _contents(self, lq, hq, reasons) -> list:
        types = self.client.types
        s = self.settings
        return [
            RUBRIC,
            "LQ (degraded input):",
            types.Part.from_bytes(data=view_bytes(lq, int(s["max_side"]), int(s["jpeg_quality"])), mime_type="image/jpeg"),
            "HQ (proposed restoration):",
            types.Part.from_bytes(data=view_bytes(hq, int(s["max_side"]), int(s["jpeg_quality"])), mime_type="image/jpeg"),
            "Metric notes: " + ("; ".join(reasons) if reasons else "none"),
        ]

    def _config(self):
        return self.client.types.GenerateContentConfig(response_mime_type="application/json", response_schema=RESPONSE_SCHEMA)

    def _spend(self, account: Account, price: float = 1.0) -> dict[str, float]:
        """Add ``account`` to the run's spend; the pair's usage fields (output: answer and thinking)."""
        usage = {"input_tokens": account.input_tokens, "output_tokens": account.billed_text_tokens, "cost_usd": self.prices.cost(account, price)}
        with self.lock:
            self.spent["requests"] += account.requests
            self.spent["input_tokens"] += usage["input_tokens"]
            self.spent["output_tokens"] += usage["output_tokens"]
            self.spent["usd"] = round(self.spent["usd"] + usage["cost_usd"], 6)
        return usage

    # --- Batch API: half price, answers collected into the cache by a later run --------

    def _score_by_batch_job(self, batch, reasons) -> Scores:
        """Cached pairs are answered; the others go into one batch job and to review, saying
        so. A later run (``--fresh``, or a new out folder) collects the job at setup."""
        s = self.settings
        keys = [cache_key(content_hash(lq), content_hash(hq), s["model"], RUBRIC_VERSION) for lq, hq in zip(batch.lq, batch.hq)]
        results: list[tuple[dict[str, float], str | None, str | None]] = []
        todo = []
        for k, key in enumerate(keys):
            answer = self.cache.get(key)
            if answer is not None:
                with self.lock:
                    self.spent["cached"] += 1
                results.append(({**fields_of(answer), "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0}, None, note_of(answer)))
            elif (job := self.jobs.pending.get(key)) is not None:
                results.append(({}, f"judge batch job {job} still running; run again later to collect", None))
            else:
                todo.append(k)
                results.append(({}, None, None))
        if todo:
            requests = [(self._contents(batch.lq[k], batch.hq[k], reasons[k]), self._config(), {"key": keys[k]}) for k in todo]
            try:
                name = self.client.submit_batch_job(s["model"], requests, "ggtqc-judge", "judge batch job: ")
                self.jobs.add(name, [keys[k] for k in todo])
                with self.lock:
                    self.spent["requests"] += 1
                why = f"judge batch job {name} submitted; run again later to collect"
            except (RequestFailed, Stopped) as error:
                why = f"judge error: batch job not submitted: {error or 'the run stopped'}"
            for k in todo:
                results[k] = ({}, why, None)
        names = [f.name for f in self.fields]
        values = {name: [r[0].get(name, math.nan) for r in results] for name in names}
        return Scores(values, unsure=[r[1] for r in results], notes=[r[2] for r in results])

    def _collect_jobs(self) -> None:
        """Copy the answers of finished batch jobs into the cache and forget the jobs: pairs a
        job did not answer (it failed, was cancelled or expired) are submitted again."""
        for name in sorted(set(self.jobs.pending.values())):
            try:
                job = self.client.read_batch_job(name, f"{name}: ")
            except (RequestFailed, Stopped):
                continue  # asked again next run
            if not job.finished:
                continue
            for metadata, response, error in job.answers():
                key = metadata.get("key")
                if key is None or error is not None:
                    continue
                account = Account()
                account.add(response, "text")
                usage = self._spend(account, BATCH_PRICE)
                answer, _ = read_response(response)
                if answer is not None:  # an unusable answer is asked again
                    self.cache.put(key, answer, usage)
            self.jobs.finish(name)

    def _ask(self, lq, hq, reasons, account: Account) -> tuple[dict | None, str | None]:
        """The answer, or None and why; the client adds the response's tokens to ``account``."""
        response = self.client.generate_content(self.settings["model"], self._contents(lq, hq, reasons), self._config(), account, "text")
        return read_response(response)


def estimate_run(run_dir: Path, judge: Judge) -> str:
    """One line: what judging a finished run's pairs would cost, by its verdicts so far.

    Pairs the judge already scored are left out; answers in the cache are not (the cache is
    keyed by pixels, which this does not read), so the figure is an upper bound.
    """
    from ggtqc.decide import read_run
    from ggtqc.results import RESULTS
    from ggtqc.rowlog import read_rows

    read_run(run_dir)
    verdicts = {"review": ("review",), "all": ("accept", "review"), "rejected": ("reject",)}[judge.settings["pairs"]]
    count = sum(1 for row in read_rows(run_dir / RESULTS) if row["verdict"] in verdicts and "judge" not in row.get("scores", {}))
    e = judge.estimate(count)
    return (
        f"{count} pairs ({judge.settings['pairs']}) x ({e['input_tokens_per_pair']} input tokens x ${judge.settings['usd_per_mtok_input']}/M "
        f"+ {e['output_tokens_per_pair']} output x ${judge.settings['usd_per_mtok_output']}/M) = about ${e['usd']:.4f} with {e['model']}"
    )


def read_response(response: Any) -> tuple[dict | None, str | None]:
    """The judge's answer from a response, or None and why there is none."""
    reply = read_reply(response)
    if reply.prompt_blocked:
        return None, f"blocked by safety filters ({reply.prompt_blocked})"
    if reply.output_blocked:
        return None, f"answer blocked by safety filters ({reply.finish})"
    text = reply.text()
    if not text.strip():
        return None, f"empty answer (finish: {reply.finish})"
    return parse_answer(text)


def parse_answer(text: str) -> tuple[dict | None, str | None]:
    """A checked answer, or None and what is wrong with it (the schema is not trusted)."""
    answer, problem = parse_json_object(text)
    if answer is None:
        return None, f"malformed answer: {problem}"
    expected = {"faithful", "quality", "defects", "reason"}
    if set(answer) != expected:
        return None, f"malformed answer: keys {', '.join(sorted(answer)) or 'none'}, not {', '.join(sorted(expected))}"
    if not isinstance(answer["faithful"], bool):
        return None, "malformed answer: 'faithful' is not true or false"
    quality = answer["quality"]
    if isinstance(quality, bool) or not isinstance(quality, (int, float)) or quality != int(quality) or not 1 <= quality <= 5:
        return None, f"malformed answer: 'quality' {quality!r} is not an integer 1-5"
    defects = answer["defects"]
    if not isinstance(defects, list) or not all(
        isinstance(d, dict) and d.get("kind") in DEFECT_KINDS and d.get("severity") in ("minor", "major") for d in defects
    ):
        return None, "malformed answer: 'defects' is not a list of {kind, severity} of the known kinds"
    if not isinstance(answer["reason"], str) or not answer["reason"].strip():
        return None, "malformed answer: 'reason' is empty"
    return {**answer, "quality": int(quality), "reason": " ".join(answer["reason"].split())}, None


def fields_of(answer: Mapping[str, Any]) -> dict[str, float]:
    severities = [d["severity"] for d in answer["defects"]]
    return {
        "faithful": 1.0 if answer["faithful"] else 0.0,
        "quality": float(answer["quality"]),
        "major_defects": float(severities.count("major")),
        "minor_defects": float(severities.count("minor")),
    }


def note_of(answer: Mapping[str, Any]) -> str:
    """The judge's sentence, with the defects it names: ``... [defects: plastic (minor)]``."""
    reason = answer["reason"]
    if answer["defects"]:
        reason += " [defects: " + ", ".join(f"{d['kind']} ({d['severity']})" for d in answer["defects"]) + "]"
    return reason


def view_bytes(image: np.ndarray, max_side: int, quality: int = 90) -> bytes:
    """An RGB image as JPEG bytes, scaled down to at most ``max_side`` pixels a side."""
    h, w = image.shape[:2]
    scale = max_side / max(h, w)
    if scale < 1:
        image = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".jpg", np.ascontiguousarray(image[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return data.tobytes()


def content_hash(image: np.ndarray) -> str:
    """SHA-256 of the decoded pixels and their shape: the same picture in any file format."""
    digest = hashlib.sha256(repr(image.shape).encode())
    digest.update(np.ascontiguousarray(image).data)
    return digest.hexdigest()


def cache_key(lq_hash: str, hq_hash: str, model: str, rubric: str) -> str:
    return hashlib.sha256(f"{lq_hash}\n{hq_hash}\n{model}\n{rubric}".encode()).hexdigest()


def cache_path() -> Path:
    from ggtqc.weights import cache_dir

    return cache_dir() / "judge" / "answers.jsonl"


class AnswerCache:
    """Good answers by key, in a JSON-lines file that several processes may append to."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.answers: dict[str, dict] = {}
        if path is not None and path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                    self.answers[entry["key"]] = entry["answer"]
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut short by a killed run

    def get(self, key: str) -> dict | None:
        with self.lock:
            return self.answers.get(key)

    def put(self, key: str, answer: dict, usage: Mapping[str, float]) -> None:
        line = json.dumps({"key": key, "rubric": RUBRIC_VERSION, "answer": answer, "usage": dict(usage)}, ensure_ascii=False) + "\n"
        with self.lock:
            self.answers[key] = answer
            if self.path is None:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line.encode())  # one write: appends from several processes do not interleave
            finally:
                os.close(fd)


class BatchJobs:
    """Submitted batch jobs not yet collected, by the cache keys they answer:
    ``jobs.jsonl`` beside the answers, one line per job submitted or finished."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.pending: dict[str, str] = {}  # cache key -> job name
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if entry.get("finished"):
                    self.pending = {k: job for k, job in self.pending.items() if job != entry["job"]}
                else:
                    self.pending.update(dict.fromkeys(entry.get("keys", ()), entry["job"]))

    def add(self, job: str, keys: list[str]) -> None:
        with self.lock:
            self.pending.update(dict.fromkeys(keys, job))
            self._append({"job": job, "keys": keys})

    def finish(self, job: str) -> None:
        with self.lock:
            self.pending = {k: name for k, name in self.pending.items() if name != job}
            self._append({"job": job, "finished": True})

    def _append(self, entry: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (json.dumps(entry) + "\n").encode())
        finally:
            os.close(fd)


@hookimpl
def ggtqc_register_filters(register):
    register(Judge)
