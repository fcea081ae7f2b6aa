"""The generator contract: turn one low-quality photo into a restored target.

A generator restores one photo per call and may be called from several threads at once.
It never raises for a photo that fails: it returns a :class:`Generation` whose ``status``
names what went wrong, so the runner can write a row for every photo and retry failures
on the next run. Settings work as for filters: declared ``options`` with defaults.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

# Statuses a generation ends with. Only "ok" is final; the others are retried next run.
OK = "ok"
BLOCKED = "blocked"  # the service refused the prompt or the output (safety)
NO_IMAGE = "no image"  # it answered without an image
INVALID_IMAGE = "invalid image"  # it answered with bytes that do not decode
REJECTED = "request rejected"  # 4xx other than rate limiting: retrying will not help
FAILED = "failed after retries"  # timeouts, 429 and 5xx beyond the retry budget
STOPPED = "stopped"  # the run stopped (Ctrl-C, unreachable server) before this photo finished
STATUSES = (OK, BLOCKED, NO_IMAGE, INVALID_IMAGE, REJECTED, FAILED, STOPPED)


class GeneratorError(Exception):
    """A problem with the whole run that the user can fix (a missing service, a bad
    address); the command line prints it on one line."""


@dataclass
class Photo:
    """One LQ photo to restore, as it is to be sent (see :class:`InputLimits`)."""

    id: str
    data: bytes
    mime_type: str
    width: int
    height: int


@dataclass(frozen=True)
class InputLimits:
    """What a generator's service accepts as an input photo.

    The runner re-encodes a photo in another format (as PNG, or JPEG for a JPEG source),
    and downscales one whose longer side or encoded size is over the limit, before
    ``generate`` sees it; the LQ kept in the pairs folder is always the original file.
    """

    mime_types: frozenset[str] = frozenset({"image/png", "image/jpeg", "image/webp"})
    max_side: int = 0  # pixels; 0: no limit
    max_bytes: int = 0  # encoded size; 0: no limit
    max_job_bytes: int = 0  # photos' encoded bytes in one batch job; 0: no limit


@dataclass
class Generation:
    status: str
    image: bytes | None = None
    """The target's bytes exactly as returned (never re-encoded)."""
    mime_type: str | None = None
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    """Anything worth keeping in the row: models, prompt, analysis, usage, attempts, cost."""


@dataclass(frozen=True)
class Requirement:
    """Something a generator needs before it can run (a credential, a package)."""

    description: str
    met: bool
    hint: str = ""


class Generator:
    name: ClassVar[str]
    version: ClassVar[str]
    options: ClassVar[Mapping[str, bool | int | float | str]] = {}

    def __init__(self, **settings: bool | int | float | str) -> None:
        unknown = sorted(set(settings) - set(self.options))
        if unknown:
            raise ValueError(f"generator {self.name!r} has no option {unknown[0]!r}")
        self.settings = {**self.options, **settings}
        self.before_request: Callable[[], None] = lambda: None
        """Called before each request to a service; the runner sets it to its rate limiter."""
        self.stopping = threading.Event()
        """Set by the runner when the run stops: send nothing more, return ``STOPPED``."""
        self.halt: Callable[[str], None] = lambda message: self.stopping.set()
        """Stop the whole run with a one-line message (e.g. the service cannot be reached)."""
        self.notice: Callable[[str], None] = lambda text: None
        """Show a line on the console while a photo waits (a retry, a fallback)."""

    def input_limits(self) -> InputLimits:
        """The formats and sizes the service accepts; the runner fits each photo to them."""
        return InputLimits()

    def requirements(self) -> Sequence[Requirement]:
        """What must be in place before any photo is sent; checked, never fetched."""
        return ()

    def setup(self) -> None:
        """Create clients; called once after the requirements are met."""

    def estimate(self, photo_count: int, batch: bool = False) -> dict[str, Any]:
        """The plan's cost estimate for ``--dry-run``: at least ``usd`` (or None if unknown)."""
        return {"usd": None}

    def generate(self, photo: Photo) -> Generation:
        raise NotImplementedError

    # A generator with an asynchronous batch service implements these three.

    def prepare_batch(self, photo: Photo) -> dict[str, Any]:
        """What a photo's batch request needs that costs a request (a prompt); the runner
        keeps it in the pairs folder, so a failed submission never buys it twice."""
        return {}

    def submit_batch(self, photos: list[Photo], prepared: dict[str, dict[str, Any]]) -> tuple[str, dict[str, dict[str, Any]]]:
        """Submit one job; return its name and details to keep for each photo."""
        raise NotImplementedError(f"generator {self.name!r} has no batch mode")

    def collect_batch(self, job_name: str, submitted: dict[str, dict[str, Any]]) -> str | dict[str, Generation]:
        """The job's state (a string) until it succeeded; then each photo's result by id.

        ``submitted`` holds the details ``submit_batch`` returned for the job's photos.
        """
        raise NotImplementedError(f"generator {self.name!r} has no batch mode")
