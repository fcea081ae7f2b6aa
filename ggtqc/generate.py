"""``ggtqc generate``: LQ photos in, an LQ/HQ pairs folder out, one row per photo.

``PAIRS/lq/<id><ext>`` is the original file copied byte for byte, ``PAIRS/hq/<id>.png``
(or the extension of whatever format came back) holds the target's bytes exactly as
returned, and ``PAIRS/generation.jsonl`` gets a row per attempt at a photo: the last row of
an id is its status. Files are written through a temporary name and a rename before their
row, so a killed run leaves no half-written target, and a rerun skips every photo whose
last row is ``ok`` and whose target exists (``overwrite`` redoes them). Photos run
``concurrency`` at a time; API requests are spaced to stay under ``rpm`` per minute.
"""

from __future__ import annotations

import mimetypes
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from ggtqc.generators import FAILED, OK, Generation, Generator, Photo
from ggtqc.pairs import PairsError, images_by_id
from ggtqc.rowlog import RowLog, write_atomic

LOG = "generation.jsonl"
INVALID_INPUT = "invalid input"  # the LQ photo itself cannot be read; nothing was sent
EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp"}


@dataclass
class GenerateOptions:
    concurrency: int = 4
    rpm: float = 60.0
    limit: int | None = None
    overwrite: bool = False


class RateLimiter:
    """Spaces request starts at least ``60 / rpm`` seconds apart, across threads."""

    def __init__(self, rpm: float) -> None:
        self.interval = 60.0 / rpm if rpm > 0 else 0.0
        self.lock = threading.Lock()
        self.next_start = time.monotonic()

    def wait(self) -> None:
        # Sleep holding the lock and count the interval from the actual wake-up: a thread
        # that oversleeps on a busy machine then delays the next start instead of
        # letting it follow too closely.
        with self.lock:
            delay = self.next_start - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.next_start = time.monotonic() + self.interval


@dataclass
class Plan:
    photos: dict[str, Path]
    skipped: list[str]  # done before: ok row and target present
    todo: list[str]
    problems: dict[str, str]  # ids that cannot be sent, with why


def plan(lq_dir: Path, out: Path, options: GenerateOptions) -> Plan:
    if not lq_dir.is_dir():
        raise PairsError(f"{lq_dir} is not a folder of LQ photos")
    if out.resolve().is_relative_to(lq_dir.resolve()):
        raise PairsError(f"--out {out} is inside {lq_dir}: its targets would be read as photos; choose a folder outside")
    found = images_by_id(lq_dir)
    photos = {pair_id: paths[0] for pair_id, paths in sorted(found.items())}
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
    done = set(skipped)
    todo = [pair_id for pair_id in photos if pair_id not in done]
    if options.limit is not None:
        todo = todo[: options.limit]
    return Plan(photos, skipped, todo, problems)


def last_rows(out: Path) -> dict[str, dict[str, Any]]:
    return RowLog(out / LOG).last()


def run(
    the_plan: Plan,
    out: Path,
    generator: Generator,
    options: GenerateOptions,
    on_row: Callable[[dict[str, Any]], None] = lambda row: None,
) -> Counter:
    (out / "lq").mkdir(parents=True, exist_ok=True)
    (out / "hq").mkdir(parents=True, exist_ok=True)
    for stale in list((out / "lq").rglob(".*.part")) + list((out / "hq").rglob(".*.part")):
        stale.unlink()  # left by a killed run: never a finished file
    log = RowLog(out / LOG)
    limiter = RateLimiter(options.rpm)
    generator.before_request = limiter.wait
    statuses: Counter = Counter()
    with ThreadPoolExecutor(max(1, options.concurrency), thread_name_prefix="ggtqc-generate") as pool:
        futures = [pool.submit(restore_one, pair_id, the_plan.photos[pair_id], out, generator, the_plan.problems) for pair_id in the_plan.todo]
        for future in as_completed(futures):
            row = future.result()
            log.append([row])  # one writer: this thread
            statuses[row["status"]] += 1
            on_row(row)
    return statuses


def restore_one(pair_id: str, path: Path, out: Path, generator: Generator, problems: dict[str, str]) -> dict[str, Any]:
    started = time.perf_counter()
    row: dict[str, Any] = {"id": pair_id, "lq": f"lq/{pair_id}{path.suffix.lower()}", "hq": None}
    photo, reason = read_photo(pair_id, path)
    if pair_id in problems or photo is None:
        row.update(status=INVALID_INPUT, reason=problems.get(pair_id) or reason)
        return _finish(row, generator, started)
    try:
        result = generator.generate(photo)
    except Exception as error:  # a generator must not raise; one that does fails this photo only
        result = Generation(FAILED, reason=f"generator {generator.name} raised {type(error).__name__}: {error}")
    row.update(status=result.status, reason=result.reason, **result.details)
    if result.status == OK:
        row["hq"] = _write_pair(out, pair_id, path, result)
    return _finish(row, generator, started)


def _write_pair(out: Path, pair_id: str, path: Path, result: Generation) -> str:
    """Write the target as returned and the original LQ next to it; the target's relative path."""
    extension = EXTENSIONS.get(result.mime_type or "", mimetypes.guess_extension(result.mime_type or "") or ".png")
    hq = out / "hq" / f"{pair_id}{extension}"
    hq.parent.mkdir(parents=True, exist_ok=True)
    for other in hq.parent.glob(f"{hq.stem}.*"):
        if other != hq:
            other.unlink()  # an earlier target in another format would make the id ambiguous
    write_atomic(hq, result.image)
    lq = out / "lq" / f"{pair_id}{path.suffix.lower()}"
    if lq.resolve() != path.resolve():
        lq.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(lq, path.read_bytes())  # the original, byte for byte
    return hq.relative_to(out).as_posix()


def _finish(row: dict[str, Any], generator: Generator, started: float) -> dict[str, Any]:
    row["generator"] = f"{generator.name} {generator.version}"
    row["seconds"] = round(time.perf_counter() - started, 3)
    return row


def read_photo(pair_id: str, path: Path) -> tuple[Photo | None, str | None]:
    try:
        data = path.read_bytes()
        with Image.open(path) as image:
            width, height = image.size
            if image.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # shown rotated by 90 degrees
                width, height = height, width
            mime = Image.MIME.get(image.format or "", "application/octet-stream")
    except (OSError, UnidentifiedImageError) as error:
        return None, f"lq: cannot read the photo ({type(error).__name__})"
    return Photo(pair_id, data, mime, width, height), None


# --- Batch mode --------------------------------------------------------------------------

JOBS = "batch_jobs.jsonl"
DONE_STATES = ("collected", "closed")
ENDED_STATES = ("JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED")  # no results will come


def open_jobs(out: Path) -> dict[str, dict[str, Any]]:
    """Submitted jobs whose results have not been written yet, by job name."""
    return {name: row for name, row in RowLog(out / JOBS).last().items() if row["state"] not in DONE_STATES}


def run_batch(
    the_plan: Plan,
    out: Path,
    generator: Generator,
    job_size: int,
    on_row: Callable[[dict[str, Any]], None] = lambda row: None,
) -> dict[str, Any]:
    """Collect finished jobs, then submit the photos no job holds, ``job_size`` per job.

    A photo whose result arrived in this run, failed or not, is not sent again in it.

    Job names and what was sent are saved in ``PAIRS/batch_jobs.jsonl`` before anything
    else, so a later run (``ggtqc generate --batch`` again) collects them.
    """
    (out / "lq").mkdir(parents=True, exist_ok=True)
    (out / "hq").mkdir(parents=True, exist_ok=True)
    jobs = RowLog(out / JOBS)
    log = RowLog(out / LOG)
    report: dict[str, Any] = {"collected": 0, "running": [], "submitted": []}
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
            on_row(row)
            answered.add(pair_id)
        jobs.append([closing])
    held = {pair_id for job in open_jobs(out).values() for pair_id in job["photos"]}
    waiting = [i for i in the_plan.todo if i not in held and i not in answered and i not in the_plan.problems]
    for start in range(0, len(waiting), job_size):
        chunk = waiting[start : start + job_size]
        photos = [photo for photo, _ in (read_photo(i, the_plan.photos[i]) for i in chunk) if photo is not None]
        if not photos:
            continue
        name, details = generator.submit_batch(photos)
        jobs.append([{"id": name, "state": "submitted", "photos": [p.id for p in photos], "details": details}])
        report["submitted"].append(name)
    return report


def _batch_row(pair_id: str, the_plan: Plan, out: Path, generator: Generator, result: Generation, job: dict) -> dict[str, Any]:
    path = the_plan.photos.get(pair_id)
    row: dict[str, Any] = {"id": pair_id, "lq": f"lq/{pair_id}{path.suffix.lower() if path else ''}", "hq": None}
    row.update(status=result.status, reason=result.reason, **result.details)
    if result.status == OK and path is not None:
        row["hq"] = _write_pair(out, pair_id, path, result)
    row["generator"] = f"{generator.name} {generator.version}"
    return row
