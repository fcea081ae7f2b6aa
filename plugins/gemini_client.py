"""The Gemini API seen from ggtqc: one client, its retries, its errors and its bill.

Every plugin that talks to Gemini (the ``gemini`` generator and the ``judge`` filter) calls
the API through :class:`GeminiClient`, so retries, the stop signal, the unreachable-server
check, the key's hygiene and cost accounting behave the same everywhere.

- Retries are ours, not the SDK's (its own are switched off), so every attempt is counted
  on the row, a stop request is honoured between attempts, and a waiting photo says so on
  the console. 408, 429 and 5xx answers and network errors are retried with jittered
  exponential backoff, ``attempts`` tries at most; other 4xx answers are not.
- A connection that cannot be opened is not the server talking: after ``unreachable_after``
  such failures in a row, across all photos, the client calls ``halt`` with a one-line
  message naming the address, and the run stops sending.
- The API key is read by the SDK from the environment and never passed, printed or
  stored; :func:`scrub` removes it (and any credential in a URL) from text all the same.
- :class:`Account` adds up requests, tokens and returned images per photo or pair;
  :meth:`Prices.cost` turns them into an estimate that includes billed attempts that failed
  (a blocked or an undecodable image is paid for). Google's pricing page lists output
  prices as including thinking tokens, so ``thoughts_token_count`` is counted, at the text
  output price, for every model; one path prices every plugin's requests.
- :func:`read_reply` reads a response the way every plugin must before its content (a
  refused prompt, the first candidate, a safety finish); :func:`parse_json_object` is the
  first check of a model's JSON answer; :meth:`GeminiClient.submit_batch_job` and
  :meth:`GeminiClient.read_batch_job` handle Batch API jobs, whose states are read one way.
"""

from __future__ import annotations

import json
import os
import random
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

KEY_VARIABLES = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
RETRY_STATUS_CODES = (408, 429, 500, 502, 503, 504)
CONNECT_ERRORS = ("ConnectError", "ConnectTimeout", "ConnectionRefusedError", "ConnectionResetError")
TRANSIENT_ERRORS = CONNECT_ERRORS + ("ReadTimeout", "WriteTimeout", "PoolTimeout", "TimeoutException", "ReadError", "RemoteProtocolError")
# Finish reasons that mean the answer was withheld for safety, not that it ended.
SAFETY_FINISH = {"SAFETY", "IMAGE_SAFETY", "PROHIBITED_CONTENT", "IMAGE_PROHIBITED_CONTENT", "BLOCKLIST", "SPII"}
BATCH_PRICE = 0.5  # the Batch API's share of the interactive price
JOB_SUCCEEDED = "JOB_STATE_SUCCEEDED"
# Batch job states after which nothing more comes: the requests the job did not answer must
# be sent again, and the answers it holds (a cancelled job may hold some) kept, as they are billed.
JOB_ENDED_WITHOUT_SUCCESS = ("JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED")
JOB_FINISHED = (JOB_SUCCEEDED, "JOB_STATE_PARTIALLY_SUCCEEDED") + JOB_ENDED_WITHOUT_SUCCESS


class Stopped(Exception):
    """The run asked to stop (Ctrl-C, or an unreachable server) before this request was sent."""


class RequestFailed(Exception):
    """A request that failed for good: ``retried`` says whether retrying could have helped."""

    def __init__(self, message: str, code: int | None = None, retried: bool = True) -> None:
        super().__init__(message)
        self.code = code
        self.retried = retried


def key_is_set() -> bool:
    vertex = os.environ.get("GOOGLE_GENAI_USE_VERTEXAI", "").lower() in ("1", "true")
    return vertex or any(os.environ.get(name) for name in KEY_VARIABLES)


def scrub(text: str) -> str:
    """``text`` without any API key from the environment or credential inside a URL."""
    for name in KEY_VARIABLES:
        key = os.environ.get(name)
        if key:
            text = text.replace(key, "[key]")
    text = re.sub(r"(?i)([?&](?:key|api_key|apikey|token|access_token)=)[^&\s'\"]+", r"\1[key]", text)
    return re.sub(r"(//)[^/@\s'\"]+@", r"\1[credentials]@", text)


def safe_url(url: str) -> str:
    """``url`` as it may be shown: no user, password, query or fragment."""
    if not url:
        return DEFAULT_BASE_URL
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return scrub(urlunsplit((parts.scheme, host, parts.path, "", "")))


@dataclass
class Account:
    """What requests cost: attempts, tokens, and images returned (paid for).

    ``thinking_tokens`` are kept apart from the answer's own tokens so a row shows both,
    and priced as text output: Google bills thinking as output tokens.
    """

    requests: int = 0
    input_tokens: int = 0
    text_output_tokens: int = 0
    image_output_tokens: int = 0
    thinking_tokens: int = 0
    images: int = 0

    def add(self, response: Any, output: str) -> None:
        usage = getattr(response, "usage_metadata", None)
        if usage is not None:
            self.input_tokens += usage.prompt_token_count or 0
            self.thinking_tokens += getattr(usage, "thoughts_token_count", None) or 0
            if output == "text":
                self.text_output_tokens += usage.candidates_token_count or 0
            else:
                self.image_output_tokens += usage.candidates_token_count or 0

    @property
    def billed_text_tokens(self) -> int:
        """Output tokens billed at the text price: the text answers and all thinking."""
        return self.text_output_tokens + self.thinking_tokens

    def usage(self) -> dict[str, int]:
        return {
            "input_tokens": self.input_tokens,
            "text_output_tokens": self.text_output_tokens,
            "image_output_tokens": self.image_output_tokens,
            "thinking_tokens": self.thinking_tokens,
        }


@dataclass
class Prices:
    """Estimated prices: input and text output (thinking included) per million tokens, output images flat."""

    usd_per_image: float
    usd_per_mtok_input: float
    usd_per_mtok_text_output: float

    def cost(self, account: Account, factor: float = 1.0) -> float:
        cost = account.input_tokens * self.usd_per_mtok_input / 1e6
        cost += account.billed_text_tokens * self.usd_per_mtok_text_output / 1e6
        cost += account.images * self.usd_per_image
        return round(cost * factor, 6)


@dataclass
class Reachability:
    """Connection failures in a row, across threads; any answer from the server resets it."""

    limit: int
    failures: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def failed(self) -> bool:
        """Count one failure; True when the limit is reached."""
        with self.lock:
            self.failures += 1
            return self.limit > 0 and self.failures >= self.limit

    def answered(self) -> None:
        with self.lock:
            self.failures = 0


class GeminiClient:
    """google-genai's client with ggtqc's retries, stop signal and accounting around it.

    ``before_request`` runs before every attempt (the runner's rate limiter);
    ``stopping`` is an event that, once set, ends a photo at its next attempt;
    ``halt(message)`` stops the whole run; ``notice(text)`` shows a waiting photo.
    """

    def __init__(
        self,
        settings: dict[str, Any],
        before_request: Callable[[], None] = lambda: None,
        stopping: threading.Event | None = None,
        halt: Callable[[str], None] = lambda message: None,
        notice: Callable[[str], None] = lambda text: None,
    ) -> None:
        from google import genai
        from google.genai import types

        self.types = types
        self.errors = genai.errors
        self.settings = settings
        self.base_url = str(settings.get("base_url") or "") or os.environ.get("GOOGLE_GEMINI_BASE_URL", "")
        self.before_request = before_request
        self.stopping = stopping or threading.Event()
        self.halt = halt
        self.notice = notice
        self.reachability = Reachability(int(settings.get("unreachable_after", 3)))
        options = types.HttpOptions(
            base_url=self.base_url or None,
            timeout=int(float(settings["timeout_s"]) * 1000),  # milliseconds
            retry_options=types.HttpRetryOptions(attempts=1),  # retries are ours, below
        )
        self.sdk = genai.Client(http_options=options)

    def generate_content(self, model: str, contents: list, config: Any, account: Account, output: str, label: str = ""):
        """One answer from ``model``, retried as the module says; every attempt is counted."""
        return self.call(lambda: self.sdk.models.generate_content(model=model, contents=contents, config=config), account, label, output)

    def call(self, request: Callable[[], Any], account: Account | None, label: str = "", output: str | None = None):
        """Run ``request`` with retries; raise :class:`Stopped` or :class:`RequestFailed`."""
        attempts = max(1, int(self.settings["attempts"]))
        delay = float(self.settings["retry_initial_delay_s"])
        for attempt in range(1, attempts + 1):
            if self.stopping.is_set():
                raise Stopped()
            self.before_request()
            if self.stopping.is_set():
                raise Stopped()
            if account is not None:
                account.requests += 1
            try:
                response = request()
            except Exception as error:  # classified below; nothing escapes unclassified
                failure, connect = self.classify(error)
                if connect and self.reachability.failed():
                    self.halt(
                        f"cannot reach {safe_url(self.base_url)}: {self.reachability.limit} connection failures in a row "
                        f"({failure}); nothing more is sent. Check --base-url and the network, then run the same command again"
                    )
                    raise RequestFailed(f"connection failed: {failure}") from None
                if not connect:
                    self.reachability.answered()
                if not failure.retried or attempt == attempts:
                    raise failure from None
                wait = min(60.0, delay * 2 ** (attempt - 1)) if not connect else delay
                wait += random.uniform(0, min(1.0, delay))
                self.notice(f"{label}{failure}; attempt {attempt + 1} of {attempts} in {wait:.1f} s")
                if self.stopping.wait(wait):
                    raise Stopped() from None
                continue
            self.reachability.answered()
            if account is not None and output is not None:
                account.add(response, output)
            return response
        raise AssertionError("unreachable")

    def classify(self, error: Exception) -> tuple[RequestFailed, bool]:
        """A failed attempt as a :class:`RequestFailed`, and whether the connection never opened."""
        if isinstance(error, self.errors.APIError):
            code = getattr(error, "code", None)
            message = scrub(f"HTTP {code}: {getattr(error, 'message', '') or error}")
            return RequestFailed(message, code, retried=code in RETRY_STATUS_CODES), False
        names = set()
        cause: BaseException | None = error
        while cause is not None and len(names) < 8:
            names.add(type(cause).__name__)
            cause = cause.__cause__ or cause.__context__
        message = scrub(f"{type(error).__name__}: {error}")
        connect = bool(names & set(CONNECT_ERRORS))
        return RequestFailed(message, None, retried=bool(names & set(TRANSIENT_ERRORS))), connect

    def submit_batch_job(self, model: str, requests: list[tuple[list, Any, dict[str, str]]], display_name: str, label: str = "") -> str:
        """Submit one Batch API job of inlined ``(contents, config, metadata)`` requests; its name.

        The metadata comes back with each answer: it is how an answer finds its photo or pair.
        """
        types = self.types
        inlined = [types.InlinedRequest(model=model, contents=contents, config=config, metadata=metadata) for contents, config, metadata in requests]
        config = types.CreateBatchJobConfig(display_name=display_name)
        return self.call(lambda: self.sdk.batches.create(model=model, src=inlined, config=config), None, label).name

    def read_batch_job(self, name: str, label: str = "") -> BatchJob:
        job = self.call(lambda: self.sdk.batches.get(name=name), None, label)
        state = enum_name(job.state) or "JOB_STATE_UNSPECIFIED"
        responses = (job.dest.inlined_responses if job.dest else None) or []
        return BatchJob(name, state, list(responses))


def enum_name(value: Any) -> str | None:
    """An SDK enum's name (``"SAFETY"``), a plain string as it is, None as None."""
    if value is None:
        return None
    return getattr(value, "name", None) or str(value)


@dataclass
class Reply:
    """A response as every plugin must read it before its content: refused or not, and how it ended.

    ``prompt_blocked`` is the block reason when the prompt was refused (there is then no
    candidate); ``finish`` the first candidate's finish reason; ``parts`` its content parts.
    """

    prompt_blocked: str | None
    finish: str | None
    parts: list

    @property
    def output_blocked(self) -> bool:
        """The answer was withheld for safety (it may still hold a billed image)."""
        return self.finish in SAFETY_FINISH

    def text(self) -> str:
        """The answer's text, without the model's thoughts."""
        return "".join(p.text for p in self.parts if getattr(p, "text", None) and not getattr(p, "thought", False))


def read_reply(response: Any) -> Reply:
    feedback = getattr(response, "prompt_feedback", None)
    if feedback is not None and feedback.block_reason:
        return Reply(enum_name(feedback.block_reason), None, [])
    candidate = (response.candidates or [None])[0]
    finish = enum_name(getattr(candidate, "finish_reason", None))
    parts = (candidate.content.parts or []) if candidate is not None and candidate.content else []
    return Reply(None, finish, list(parts))


def parse_json_object(text: str) -> tuple[dict[str, Any] | None, str | None]:
    """``text`` as a JSON object, or None and what is wrong: a model's JSON is never trusted."""
    try:
        value = json.loads(text)
    except ValueError as error:
        return None, f"not JSON: {error}"
    if not isinstance(value, dict):
        return None, f"a JSON {type(value).__name__}, not an object"
    return value, None


@dataclass
class BatchJob:
    """A Batch API job as read back: its state and the answers it holds so far."""

    name: str
    state: str
    inlined_responses: list

    @property
    def finished(self) -> bool:
        """Nothing more will come: waiting on a job past this would wait forever."""
        return self.state in JOB_FINISHED

    def answers(self) -> list[tuple[dict[str, Any], Any, str | None]]:
        """``(metadata, response, error)`` per answered request; ``error`` set when there is no response."""
        answers = []
        for item in self.inlined_responses:
            error = None
            if item.error is not None:
                error = scrub(f"batch item error: {item.error.message}")
            elif item.response is None:
                error = "batch item without a response"
            answers.append((dict(item.metadata or {}), item.response if error is None else None, error))
        return answers
