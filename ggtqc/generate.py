"""``ggtqc generate``: LQ photos in, an LQ/HQ pairs folder out, one row per photo.

``PAIRS/lq/<id><ext>`` is the original file copied byte for byte, ``PAIRS/hq/<id>.png``
(or the extension of whatever format came back) holds the target's bytes exactly as
returned, and ``PAIRS/generation.jsonl`` gets a row per attempt at a photo: the last row of
an id is its status. Files are written through a temporary name and a rename before their
row, so a killed run leaves no half-written target, and a rerun skips every photo whose
target exists (``overwrite`` redoes them), rebuilding the row of a target that has none.
Photos run ``concurrency`` at a time and are handed out one by one, so a stop sends
nothing more; API requests are spaced to stay under ``rpm`` per minute. Each photo is
fitted to the formats and sizes the generator accepts before it is sent.
"""

from __future__ import annotations

import hashlib
import io
import math
import mimetypes
import os
import re
import shutil
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError

from ggtqc.generators import FAILED, OK, STOPPED, Generation, Generator, GeneratorError, InputLimits, Photo
from ggtqc.images import IMAGE_EXTENSIONS
from ggtqc.pairs import PairsError, images_by_id
from ggtqc.rowlog import RowLog, write_atomic

LOG = "generation.jsonl"
INVALID_INPUT = "invalid input"  # the LQ photo itself cannot be read; nothing was sent
EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp"}
# Image files that are not photos ggtqc sends: each gets an "invalid input" row, never silence.
UNSUPPORTED = frozenset({".gif", ".heic", ".heif", ".avif", ".jxl", ".jp2", ".ico", ".svg", ".psd", ".dng", ".cr2", ".nef", ".arw"})
RECOVERED = "row rebuilt from the target found on disk: the run that bought it stopped before writing its row"
EXIT_SOME_FAILED = 3  # the run finished, but some photos it tried have no target (their rows say why)


@dataclass
class GenerateOptions:
    concurrency: int = 4
    rpm: float = 60.0
    limit: int | None = None
    overwrite: bool = False


class RateLimiter:
    """Spaces request starts at least ``60 / rpm`` seconds apart, across threads.

    A set ``stop`` event ends the wait at once, so a stopping run sends nothing more.
    """

    def __init__(self, rpm: float, stop: threading.Event | None = None) -> None:
        self.interval = 60.0 / rpm if rpm > 0 else 0.0
        self.stop = stop or threading.Event()
        self.lock = threading.Lock()
        self.next_start = time.monotonic()

    def wait(self) -> None:
        # Sleep holding the lock and count the interval from the actual wake-up: a thread
        # that oversleeps on a busy machine then delays the next start instead of
        # letting it follow too closely.
        with self.lock:
            while (delay := self.next_start - time.monotonic()) > 0:  # an event's wait may end a little early
                if self.stop.wait(delay):
                    return
            self.next_start = time.monotonic() + self.interval


@dataclass
class Plan:
    photos: dict[str, Path]
    skipped: list[str]  # done before: ok row and target present
    todo: list[str]
    problems: dict[str, str]  # ids that cannot be sent, with why
    recovered: dict[str, Path] = field(default_factory=dict)  # targets on disk without an ok row
    unsupported: dict[str, Path] = field(default_factory=dict)  # image files in formats not sent


def plan(lq_dir: Path, out: Path, options: GenerateOptions) -> Plan:
    """What a run will do: which photos are done, which are sent, which cannot be.

    A target in ``out/hq`` whose row is missing (a run killed between the two writes) counts
    as done: its row is rebuilt from the file rather than the photo bought again.
    """
    if not lq_dir.is_dir():
        raise PairsError(f"{lq_dir} is not a folder of LQ photos")
    if out.resolve().is_relative_to(lq_dir.resolve()):
        raise PairsError(f"--out {out} is inside {lq_dir}: its targets would be read as photos; choose a folder outside")
    found = images_by_id(lq_dir)
    photos = {pair_id: paths[0] for pair_id, paths in sorted(found.items())}
    unsupported = {
        path.relative_to(lq_dir).as_posix(): path
        for path in sorted(lq_dir.rglob("*"))
        if path.suffix.lower() in UNSUPPORTED and path.is_file() and not any(p.startswith(".") for p in path.relative_to(lq_dir).parts)
    }
    if not photos and not unsupported:
        accepted = " ".join(sorted(IMAGE_EXTENSIONS))
        raise PairsError(f"no photos in {lq_dir} (looked for {accepted}, in subfolders too)")
    problems = {
        pair_id: f"ambiguous: several files for this id ({', '.join(p.name for p in paths)})"
        for pair_id, paths in found.items()
        if len(paths) > 1
    }
    last = last_rows(out)
    skipped = [
        pair_id
        for pair_id in photos
        if not options.overwrite and last.get(pair_id, {}).get("status") == OK and (out / last[pair_id]["hq"]).is_file()
    ]
    targets = images_by_id(out / "hq") if (out / "hq").is_dir() and not options.overwrite else {}
    recovered = {
        pair_id: targets[pair_id][0]
        for pair_id in photos
        if pair_id in targets and pair_id not in skipped and pair_id not in problems and len(targets[pair_id]) == 1
    }
    done = set(skipped) | set(recovered)
    todo = [pair_id for pair_id in photos if pair_id not in done]
    if options.limit is not None:
        todo = todo[: options.limit]
    return Plan(photos, skipped, todo, problems, recovered, unsupported)


def last_rows(out: Path) -> dict[str, dict[str, Any]]:
    return RowLog(out / LOG).last()


@dataclass
class RunResult:
    """What one run did: rows it wrote by status, and why it stopped early, if it did."""

    statuses: Counter = field(default_factory=Counter)
    rows: int = 0
    cost_usd: float = 0.0
    fallbacks: int = 0  # photos whose prompt fell back to the fixed one
    interrupted: bool = False  # Ctrl-C
    halted: str | None = None  # the generator stopped the run (e.g. an unreachable server)
    not_sent: int = 0  # photos planned but never started

    @property
    def failed(self) -> int:
        return sum(n for status, n in self.statuses.items() if status != OK)

    def count(self, row: dict[str, Any]) -> None:
        self.rows += 1
        self.statuses[row["status"]] += 1
        self.cost_usd += row.get("cost_usd") or 0.0
        self.fallbacks += bool(row.get("prompt_fallback"))


def prepare(out: Path, the_plan: Plan, generator: Generator, log: RowLog, on_row: Callable[[dict[str, Any]], None]) -> RunResult:
    """Create the folders, clear a killed run's partial files, and write the rows that need
    no request: targets recovered from disk and files in formats that are not sent."""
    (out / "lq").mkdir(parents=True, exist_ok=True)
    (out / "hq").mkdir(parents=True, exist_ok=True)
    for stale in list((out / "lq").rglob(".*.part")) + list((out / "hq").rglob(".*.part")):
        stale.unlink()  # left by a killed run: never a finished file
    result = RunResult()
    for pair_id, hq in the_plan.recovered.items():
        path = the_plan.photos[pair_id]
        lq = out / "lq" / f"{pair_id}{path.suffix.lower()}"
        if not lq.is_file():
            _copy_original(path, lq)
        row = {"id": pair_id, "lq": lq.relative_to(out).as_posix(), "hq": hq.relative_to(out).as_posix(), "status": OK,
               "reason": None, "recovered": RECOVERED, "generator": f"{generator.name} {generator.version}"}  # fmt: skip
        log.append([row])
        on_row(row)
    for name, path in the_plan.unsupported.items():
        accepted = " ".join(sorted(IMAGE_EXTENSIONS))
        row = {"id": name, "lq": None, "hq": None, "status": INVALID_INPUT,
               "reason": f"{path.suffix.lower()} is not a supported photo format (accepted: {accepted}); convert it to send it",
               "generator": f"{generator.name} {generator.version}"}  # fmt: skip
        log.append([row])
        result.count(row)
        on_row(row)
    return result


def run(
    the_plan: Plan,
    out: Path,
    generator: Generator,
    options: GenerateOptions,
    on_row: Callable[[dict[str, Any]], None] = lambda row: None,
    on_stop: Callable[[str], None] = lambda message: None,
) -> RunResult:
    """Send the plan's photos, ``concurrency`` at a time, and write a row for each.

    Photos are handed to the threads one at a time as others finish, so a stop (Ctrl-C,
    an unreachable server) sends nothing more: photos already in flight finish and get
    their rows. On the main thread, a first Ctrl-C stops the run that way and a second
    one ends the process at once (a rerun rebuilds the row of any target already written).
    """
    log = RowLog(out / LOG)
    result = prepare(out, the_plan, generator, log, on_row)
    stop = generator.stopping
    limiter = RateLimiter(options.rpm, stop)
    generator.before_request = limiter.wait

    def halt(message: str) -> None:
        if result.halted is None:
            result.halted = message
        stop.set()

    generator.halt = halt
    waiting = iter(the_plan.todo)
    in_flight: dict[Future, str] = {}
    announced = False
    with _interrupts(stop, result):
        with ThreadPoolExecutor(max(1, options.concurrency), thread_name_prefix="ggtqc-generate") as pool:
            while True:
                if result.interrupted and not announced:  # said here, not in the handler: it may interrupt a write
                    announced = True
                    on_stop(f"stopping: {len(in_flight)} photos in flight finish; nothing more is sent (Ctrl-C again to quit now)")
                while not stop.is_set() and len(in_flight) < max(1, options.concurrency):
                    pair_id = next(waiting, None)
                    if pair_id is None:
                        break
                    in_flight[pool.submit(restore_one, pair_id, the_plan.photos[pair_id], out, generator, the_plan.problems)] = pair_id
                if not in_flight:
                    break
                finished, _ = wait(in_flight, timeout=0.5, return_when=FIRST_COMPLETED)
                for future in finished:
                    del in_flight[future]
                    row = future.result()
                    if row["status"] == STOPPED and not row.get("requests"):
                        result.not_sent += 1
                        continue  # nothing was sent for it: no row, as for a photo never started
                    log.append([row])  # one writer: this thread
                    result.count(row)
                    on_row(row)
    result.not_sent += sum(1 for _ in waiting)
    return result


class RowLines:
    """Console lines for a run: ``[n/N] id: status (why)``, the photo's cost, the run's cost
    so far and an ETA; rows that needed no request (recovered, unsupported) without counts."""

    def __init__(self, total: int, echo: Callable[[str], None]) -> None:
        self.total = total
        self.echo = echo
        self.started = time.monotonic()
        self.shown = 0
        self.cost = 0.0

    def __call__(self, row: dict[str, Any]) -> None:
        if row.get("recovered") or (row["status"] == INVALID_INPUT and row["lq"] is None):
            self.echo(f"{row['id']}: {row['status']} ({row.get('recovered') or row['reason']})")
            return
        self.shown += 1
        self.cost += row.get("cost_usd") or 0.0
        notes = [text for text in (row.get("reason"), row.get("prompt_fallback"), (row.get("sent") or {}).get("changed")) if text]
        eta = (time.monotonic() - self.started) / self.shown * max(0, self.total - self.shown)
        self.echo(
            f"[{self.shown}/{self.total}] {row['id']}: {row['status']}" + (f" ({'; '.join(notes)})" if notes else "")
            + f"  ${row.get('cost_usd') or 0:.3f}, run ${self.cost:.2f}, ETA {int(eta // 60)}:{int(eta % 60):02d}"
        )  # fmt: skip


@contextmanager
def _interrupts(stop: threading.Event, result: RunResult) -> Iterator[None]:
    """Ctrl-C once: set ``stop``; twice: end the process now with exit code 130."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum, frame) -> None:
        if result.interrupted:
            os.write(2, b"ggtqc: interrupted again; quitting now. Run the same command again: targets already written are kept\n")
            os._exit(130)
        result.interrupted = True
        stop.set()

    previous = signal.signal(signal.SIGINT, handle)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def restore_one(pair_id: str, path: Path, out: Path, generator: Generator, problems: dict[str, str]) -> dict[str, Any]:
    started = time.perf_counter()
    row: dict[str, Any] = {"id": pair_id, "lq": f"lq/{pair_id}{path.suffix.lower()}", "hq": None}
    photo, note = read_photo(pair_id, path, generator.input_limits())
    if pair_id in problems or photo is None:
        row.update(status=INVALID_INPUT, reason=problems.get(pair_id) or note)
        return _finish(row, generator, started)
    if generator.stopping.is_set():
        row.update(status=STOPPED, reason="the run stopped before this photo was sent")
        return _finish(row, generator, started)
    row["sent"] = {"mime_type": photo.mime_type, "width": photo.width, "height": photo.height, "bytes": len(photo.data)}
    if note:
        row["sent"]["changed"] = note
    try:
        result = generator.generate(photo)
    except Exception as error:  # a generator must not raise; one that does fails this photo only
        result = Generation(FAILED, reason=f"generator {generator.name} raised {type(error).__name__}: {error}")
    row.update(status=result.status, reason=result.reason, **result.details)
    if result.status == OK:
        row["hq"] = _write_pair(out, pair_id, path, result)
    return _finish(row, generator, started)


def _write_pair(out: Path, pair_id: str, path: Path, result: Generation) -> str:
    """Write the original LQ, then the target as returned; the target's relative path.

    The target comes last: once it is on disk the pair is whole, and a rerun that finds it
    without a row rebuilds the row instead of buying the photo again.
    """
    lq = out / "lq" / f"{pair_id}{path.suffix.lower()}"
    if lq.resolve() != path.resolve():
        _copy_original(path, lq)
    extension = EXTENSIONS.get(result.mime_type or "", mimetypes.guess_extension(result.mime_type or "") or ".png")
    hq = out / "hq" / f"{pair_id}{extension}"
    hq.parent.mkdir(parents=True, exist_ok=True)
    for other in hq.parent.glob(f"{hq.stem}.*"):
        if other != hq:
            other.unlink()  # an earlier target in another format would make the id ambiguous
    write_atomic(hq, result.image)
    return hq.relative_to(out).as_posix()


def _copy_original(path: Path, lq: Path) -> None:
    """Copy the original photo byte for byte, through a temporary name and a rename."""
    lq.parent.mkdir(parents=True, exist_ok=True)
    tmp = lq.with_name(f".{lq.name}.part")
    shutil.copyfile(path, tmp)
    with tmp.open("rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, lq)


def _finish(row: dict[str, Any], generator: Generator, started: float) -> dict[str, Any]:
    row["generator"] = f"{generator.name} {generator.version}"
    row["seconds"] = round(time.perf_counter() - started, 3)
    return row


def read_photo(pair_id: str, path: Path, limits: InputLimits | None = None) -> tuple[Photo | None, str | None]:
    """The photo as it is to be sent, and what was changed to fit ``limits`` (or why it
    cannot be read). A photo that fits is sent byte for byte; one in another format is
    re-encoded, and one too large is downscaled (JPEG stays JPEG, others become PNG,
    then JPEG if still too large). Large JPEGs are decoded at a reduced scale."""
    limits = limits or InputLimits()
    try:
        size = path.stat().st_size
        with Image.open(path) as image:
            width, height = image.size
            rotated = image.getexif().get(0x0112, 1) in (5, 6, 7, 8)  # shown rotated by 90 degrees
            if rotated:
                width, height = height, width
            mime = Image.MIME.get(image.format or "", "application/octet-stream")
            too_big = limits.max_side and max(width, height) > limits.max_side
            too_heavy = limits.max_bytes and size > limits.max_bytes
            if mime in limits.mime_types and not too_big and not too_heavy:
                return Photo(pair_id, path.read_bytes(), mime, width, height), None
            return _fit(pair_id, image, mime, (width, height), limits)
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError, ValueError) as error:
        return None, f"lq: cannot read the photo ({type(error).__name__}: {error})"


def _fit(pair_id: str, image: Image.Image, mime: str, shown: tuple[int, int], limits: InputLimits) -> tuple[Photo, str]:
    width, height = shown
    scale = min(1.0, limits.max_side / max(width, height)) if limits.max_side else 1.0
    if image.format == "JPEG" and scale < 1:
        image.draft("RGB", (math.ceil(image.size[0] * scale), math.ceil(image.size[1] * scale)))
    image = ImageOps.exif_transpose(image)
    if image.mode not in ("RGB", "RGBA"):
        image = image.convert("RGBA" if "A" in image.getbands() or "transparency" in image.info else "RGB")
    jpeg = mime == "image/jpeg"
    while True:
        target = (max(1, round(width * scale)), max(1, round(height * scale)))
        fitted = image if target == image.size else image.resize(target, Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        if jpeg:
            fitted.convert("RGB").save(buffer, "JPEG", quality=92)
        else:
            fitted.save(buffer, "PNG")
        data = buffer.getvalue()
        if not limits.max_bytes or len(data) <= limits.max_bytes:
            break
        if not jpeg:
            jpeg = True  # PNG too large: try JPEG at the same size before scaling down
            continue
        scale *= 0.75
    sent = "image/jpeg" if jpeg else "image/png"
    changes = []
    if mime != sent:
        changes.append(f"re-encoded {mime.split('/')[-1].upper()} as {sent.split('/')[-1].upper()}")
    if target != (width, height):
        changes.append(f"downscaled {width}x{height} to {target[0]}x{target[1]}")
    return Photo(pair_id, data, sent, *target), "; ".join(changes) or "re-encoded"


def shown_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """Settings as they may be printed: a URL's user, password and query are hidden."""
    return {key: _hide_credentials(value) if isinstance(value, str) else value for key, value in settings.items()}


def _hide_credentials(text: str) -> str:
    text = re.sub(r"(//)[^/@\s]+@", r"\1[credentials]@", text)
    return re.sub(r"(://[^?\s]*)\?\S*", r"\1?[hidden]", text)


# --- Batch mode --------------------------------------------------------------------------

JOBS = "batch_jobs.jsonl"
DONE_STATES = ("collected", "closed")
ENDED_STATES = ("JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED")  # no results will come


def open_jobs(out: Path) -> dict[str, dict[str, Any]]:
    """Submitted jobs whose results have not been written yet, by job name."""
    return {name: row for name, row in RowLog(out / JOBS).last().items() if row["state"] not in DONE_STATES}


PROMPTS = "batch_prompts.jsonl"


def run_batch(
    the_plan: Plan,
    out: Path,
    generator: Generator,
    job_size: int,
    options: GenerateOptions | None = None,
    on_row: Callable[[dict[str, Any]], None] = lambda row: None,
) -> dict[str, Any]:
    """Collect finished jobs, then submit the photos no job holds, in jobs of at most
    ``job_size`` photos and the generator's ``max_job_bytes``.

    A photo whose result arrived in this run, failed or not, is not sent again in it.
    What a photo's request needs that costs a request (an adaptive prompt) is kept in
    ``PAIRS/batch_prompts.jsonl`` as soon as it is bought, so a submission that fails is
    retried without buying it again. Job names and what was sent are saved in
    ``PAIRS/batch_jobs.jsonl`` before anything else, so a later run collects them.
    """
    options = options or GenerateOptions()
    log = RowLog(out / LOG)
    prepare(out, the_plan, generator, log, on_row)
    generator.before_request = RateLimiter(options.rpm).wait
    halted: list[str] = []

    def halt(message: str) -> None:
        halted.append(message)
        generator.stopping.set()

    generator.halt = halt
    jobs = RowLog(out / JOBS)
    prompts = RowLog(out / PROMPTS)
    report: dict[str, Any] = {"collected": 0, "running": [], "submitted": [], "rows": []}
    answered: set[str] = set()  # photos whose result arrived in this run: failures wait for the next
    for name, job in open_jobs(out).items():
        state = generator.collect_batch(name, job["details"])
        if isinstance(state, str) and state not in ENDED_STATES:
            report["running"].append(name)
            continue
        if isinstance(state, str):  # the job ended without results: each photo failed
            results, missing = {}, f"batch job {name} ended {state}"
            closing = {"id": name, "state": "closed", "job_state": state}
        else:
            results, missing = state, f"batch job {name} returned nothing for it"
            closing = {"id": name, "state": "collected"}
            report["collected"] += len(job["photos"])
        for pair_id in job["photos"]:
            result = results.get(pair_id, Generation(FAILED, reason=missing))
            row = _batch_row(pair_id, the_plan, out, generator, result, job)
            log.append([row])
            report["rows"].append(row)
            on_row(row)
            answered.add(pair_id)
        jobs.append([closing])
    held = {pair_id for job in open_jobs(out).values() for pair_id in job["photos"]}
    waiting = [i for i in the_plan.todo if i not in held and i not in answered and i not in the_plan.problems]
    limits = generator.input_limits()
    bought = prompts.last()
    chunk: list[Photo] = []
    chunk_bytes = 0
    for position, pair_id in enumerate(waiting):
        photo, _ = read_photo(pair_id, the_plan.photos[pair_id], limits)
        if photo is not None:
            stamp = _stamp(the_plan.photos[pair_id], generator)
            if bought.get(pair_id, {}).get("stamp") != stamp:
                prepared = generator.prepare_batch(photo)
                if halted or not prepared:
                    raise GeneratorError(halted[0] if halted else f"no batch request could be prepared for {pair_id}")
                bought[pair_id] = {"id": pair_id, "stamp": stamp, "details": prepared}
                prompts.append([bought[pair_id]])
            size = math.ceil(len(photo.data) * 4 / 3)  # sent as base64
            if chunk and limits.max_job_bytes and chunk_bytes + size > limits.max_job_bytes:
                _submit(generator, chunk, bought, jobs, report)
                chunk, chunk_bytes = [], 0
            chunk.append(photo)
            chunk_bytes += size
        if chunk and (len(chunk) == job_size or position == len(waiting) - 1):
            _submit(generator, chunk, bought, jobs, report)
            chunk, chunk_bytes = [], 0
    return report


def _stamp(path: Path, generator: Generator) -> str:
    """What a bought prompt depends on: the photo file and the generator's settings."""
    info = path.stat()
    text = f"{info.st_size}:{info.st_mtime_ns}:{sorted(generator.settings.items())}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]  # settings may hold a credential: never stored


def _submit(generator: Generator, photos: list[Photo], bought: dict[str, dict], jobs: RowLog, report: dict[str, Any]) -> None:
    name, details = generator.submit_batch(photos, {p.id: bought[p.id]["details"] for p in photos})
    jobs.append([{"id": name, "state": "submitted", "photos": [p.id for p in photos], "details": details}])
    report["submitted"].append(name)


def _batch_row(pair_id: str, the_plan: Plan, out: Path, generator: Generator, result: Generation, job: dict) -> dict[str, Any]:
    path = the_plan.photos.get(pair_id)
    row: dict[str, Any] = {"id": pair_id, "lq": f"lq/{pair_id}{path.suffix.lower() if path else ''}", "hq": None}
    row.update(status=result.status, reason=result.reason, **result.details)
    if result.status == OK and path is not None:
        row["hq"] = _write_pair(out, pair_id, path, result)
    row["generator"] = f"{generator.name} {generator.version}"
    return row
