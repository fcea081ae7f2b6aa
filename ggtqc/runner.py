"""The batched runner: load → score → decide → write, one batch at a time.

Filters run cheap first, and each filter's scores are judged as they arrive
(``ggtqc.decide``). Unless ``all_scores`` is set, a pair rejected by one filter is not
scored by the later ones; a pair in a review band is. A filter that raises on a batch is retried pair by pair, so
only the pairs it really fails on become ``error`` rows, each naming the filter. Filters
that score pair by pair may spread a batch over ``workers`` threads (``Batch.map``).

With ``processes`` > 1, batches are decoded and scored in that many worker processes
(spawned, each with its own copy of the filters and ``workers`` threads), and this process
only writes their rows, in input order. Threads share one interpreter lock, which the
filters' Python glue between OpenCV and NumPy calls takes for a sizeable share of their
time; processes share nothing, so they are the way to use many cores.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import pickle
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import torch

from ggtqc.batch import Batch, LoadedPair, chunks, load_batches, load_pair
from ggtqc.decide import RowDecider, Rules, default_margin
from ggtqc.filters import Filter, Scores
from ggtqc.host import Entry, PluginError
from ggtqc.images import DecodeLimits
from ggtqc.pairs import Pair
from ggtqc.results import ResultsLog


@dataclass
class Stage:
    """A configured filter in the run, with its thresholds and this run's timing."""

    filter: Filter
    entry: Entry
    thresholds: dict[str, float | None]
    margins: dict[str, float] = field(default_factory=dict)
    """Review margins set by the config; other fields take their declared or default margin."""
    seconds: float = 0.0
    pairs: int = 0
    spent: dict[str, float] = field(default_factory=dict)
    """What the filter's ``accounting()`` reported in this run, added up."""

    @property
    def name(self) -> str:
        return self.filter.name

    def describe(self) -> dict[str, Any]:
        return {
            "version": self.filter.version,
            "plugin": self.entry.plugin,
            "package": self.entry.package,
            "settings": dict(sorted(self.filter.settings.items())),
            "thresholds": {f.name: self.thresholds[f.name] for f in self.filter.fields},
            "margins": {
                f.name: self.margins.get(f.name, default_margin(self.thresholds[f.name], f.margin)) for f in self.filter.fields
            },
            "better": {f.name: f.better for f in self.filter.fields},
            **({"settles_review": True} if self.filter.settles_review else {}),
        }


def add_spent(stage: Stage, spent: Mapping[str, float] | None) -> None:
    for key, value in (spent or {}).items():
        stage.spent[key] = round(stage.spent.get(key, 0) + value, 6)


def spent_text(stages: Sequence[Stage]) -> str:
    """The filters' running cost for the progress line: ``judge $0.0123 (12 requests)``."""
    parts = []
    for stage in stages:
        if stage.spent:
            usd = f"${stage.spent['usd']:.4f}" if "usd" in stage.spent else ""
            requests = f" ({int(stage.spent['requests'])} requests)" if "requests" in stage.spent else ""
            parts.append(f"{stage.name} {usd}{requests}".strip())
    return "  ".join(parts)


def rules_of(stages: Sequence[Stage]) -> Rules:
    return Rules.from_run({s.name: s.describe() for s in stages}, [s.name for s in stages])


@dataclass
class RunOptions:
    batch_size: int = 16
    workers: int = 2
    processes: int = 1
    all_scores: bool = False
    limits: DecodeLimits = field(default_factory=DecodeLimits)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise PluginError("--device cuda asked for, but torch sees no CUDA GPU; use --device cpu")
    return torch.device(name)


def check_ready(stages: Sequence[Stage], device: torch.device, selection: str | None = "all") -> None:
    """Fail before any work if a filter cannot run: missing weights or no GPU.

    ``selection`` is the ``--plugins`` value, so the suggested exclusion keeps it; None
    (one filter asked for by name) suggests no exclusion.
    """
    problems: list[tuple[str, str]] = []
    for stage in stages:
        if stage.filter.gpu == "required" and device.type != "cuda":
            problems.append((stage.name, f"needs a GPU, and the run is on {device}"))
        for weight in stage.filter.weights():
            if weight.found is None:
                places = ", ".join(str(p) for p in weight.searched) or "nowhere"
                problems.append((stage.name, f"{weight.description} not found (looked in: {places})"))
        problems.extend((stage.name, text) for text in stage.filter.missing())
    if problems:
        lines = "\n".join(f"  - {name}: {text}" for name, text in problems)
        exclude = ",".join(f"-{name}" for name in dict.fromkeys(name for name, _ in problems))
        how = f"exclude them with --plugins {selection},{exclude} or provide" if selection is not None else "provide"
        raise PluginError(
            f"these filters cannot run:\n{lines}\n{how} what they need ('ggtqc weights' shows where each file is looked for)"
        )


def run(
    pairs: Sequence[Pair],
    stages: Sequence[Stage],
    log: ResultsLog,
    options: RunOptions,
    device: torch.device,
    on_batch: Callable[[list[dict[str, Any]]], None] = lambda rows: None,
) -> None:
    todo = [p for p in pairs if p.id not in log.done]
    scored = _scored_in_processes if options.processes > 1 else _scored_here
    with contextlib.closing(scored(todo, stages, options, device)) as batches:  # closed at once if writing fails
        for rows in batches:
            for row in rows:
                if "heatmaps" in row:  # saved before the row, so a written row's files exist
                    row["heatmaps"] = {name: log.save_heatmap(name, row["id"], m) for name, m in row["heatmaps"].items()}
            log.append(rows)
            on_batch(rows)


def _scored_here(
    todo: list[Pair], stages: Sequence[Stage], options: RunOptions, device: torch.device
) -> Iterator[list[dict[str, Any]]]:
    for stage in stages:
        stage.filter.setup(device)
    with ThreadPoolExecutor(max_workers=options.workers, thread_name_prefix="ggtqc-score") as executor:
        for loaded in load_batches(todo, options.batch_size, options.limits, options.workers):
            yield score_batch(loaded, stages, options.all_scores, device, executor)


def _scored_in_processes(
    todo: list[Pair], stages: Sequence[Stage], options: RunOptions, device: torch.device
) -> Iterator[list[dict[str, Any]]]:
    """Rows of each batch, in input order, scored by ``options.processes`` worker processes."""
    try:
        payload = pickle.dumps((list(stages), options, device))
    except Exception as e:  # a filter holding something that cannot cross a process boundary
        raise PluginError(f"the filters cannot be sent to worker processes ({type(e).__name__}: {e}); use --processes 1") from None
    context = multiprocessing.get_context("spawn")  # fork would copy locks held by this process's threads
    pool = ProcessPoolExecutor(options.processes, mp_context=context, initializer=_start_worker, initargs=(payload, os.getpid()))
    pending: deque[Future] = deque()
    try:
        for chunk in chunks(todo, options.batch_size):
            pending.append(pool.submit(_score_in_worker, chunk))
            if len(pending) > 2 * options.processes:  # enough queued to keep every worker busy
                yield _collect(pending.popleft(), stages)
        while pending:
            yield _collect(pending.popleft(), stages)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _collect(future: Future, stages: Sequence[Stage]) -> list[dict[str, Any]]:
    try:
        rows, timings = future.result()
    except BrokenProcessPool:
        raise RuntimeError(
            "a worker process died (killed, or out of memory?); rows written so far are kept: "
            "run the same command again to resume, with fewer --processes if memory is short"
        ) from None
    for stage, (seconds, count, spent) in zip(stages, timings):
        stage.seconds += seconds
        stage.pairs += count
        add_spent(stage, spent)
    return rows


_worker: dict[str, Any] = {}


def _start_worker(payload: bytes, parent: int) -> None:
    """Set up a worker process: its filters, and threads limited to its share of the cores."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the main process handles it
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    try:
        stages, options, device = pickle.loads(payload)
        torch.set_num_threads(options.workers)
        cv2.setNumThreads(options.workers)
        for stage in stages:
            stage.filter.setup(device)
        executor = ThreadPoolExecutor(options.workers, thread_name_prefix="ggtqc-score") if options.workers > 1 else None
        _worker.update(stages=stages, options=options, device=device, executor=executor)
    except BaseException as e:  # raised again by each task, so the run reports it like any other
        _worker["error"] = e


def _exit_with_parent(parent: int) -> None:
    """A worker of a killed run has no one to send rows to: it ends instead of waiting forever."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def _score_in_worker(chunk: list[Pair]) -> tuple[list[dict[str, Any]], list[tuple[float, int, dict[str, float]]]]:
    if "error" in _worker:
        raise _worker["error"]
    stages, options = _worker["stages"], _worker["options"]
    for stage in stages:
        stage.seconds, stage.pairs, stage.spent = 0.0, 0, {}
    rows = score_pairs(chunk, stages, options, _worker["device"], _worker["executor"])
    return rows, [(stage.seconds, stage.pairs, stage.spent) for stage in stages]


def score_pairs(
    pairs: Sequence[Pair], stages: Sequence[Stage], options: RunOptions, device: torch.device, executor: Executor | None = None
) -> list[dict[str, Any]]:
    """Decode ``pairs`` (on ``executor``'s threads when given) and score them as one batch:
    the unit of work of the worker processes and of the Ray engine's tasks alike."""
    limits = [options.limits] * len(pairs)
    loaded = list(executor.map(load_pair, pairs, limits) if executor else map(load_pair, pairs, limits))
    return score_batch(loaded, stages, options.all_scores, device, executor)


def score_batch(
    loaded: list[LoadedPair],
    stages: Sequence[Stage],
    all_scores: bool,
    device: torch.device,
    executor: Executor | None = None,
) -> list[dict[str, Any]]:
    rules = rules_of(stages)
    rows = [_row(item) for item in loaded]
    deciders = [RowDecider(rules, [item.error] if item.error else []) for item in loaded]
    decoded = [i for i, item in enumerate(loaded) if item.error is None]
    batch = Batch(
        [loaded[i].pair.id for i in decoded],
        [loaded[i].lq for i in decoded],
        [loaded[i].hq for i in decoded],
        device,
        executor=executor,
    )
    for stage in stages:
        todo = [j for j, i in enumerate(decoded) if _wanted(stage.filter, deciders[i], all_scores)]
        if not todo:
            continue
        started = time.perf_counter()
        batch.reasons = [[reason for _, reason in deciders[i].entries] for i in decoded]
        for j, result in _score(stage, batch, todo):
            i = decoded[j]
            if isinstance(result, str):
                deciders[i].add_error(result)
                continue
            scores, heatmap, unsure, note = result
            rows[i]["scores"][stage.name] = {k: (v if math.isfinite(v) else None) for k, v in scores.items()}
            before = len(deciders[i].failed) + len(deciders[i].review)
            deciders[i].add_scores(stage.name, rows[i]["scores"][stage.name], unsure, note)
            if heatmap is not None and len(deciders[i].failed) + len(deciders[i].review) > before:
                rows[i].setdefault("heatmaps", {})[stage.name] = heatmap
        stage.seconds += time.perf_counter() - started
        stage.pairs += len(todo)
        add_spent(stage, stage.filter.accounting())
    for row, decider in zip(rows, deciders):
        apply_decision(row, decider)
    return rows


def _wanted(filter: Filter, decider: RowDecider, all_scores: bool) -> bool:
    """Whether a filter scores a pair: the filter's own choice by the verdict so far, else
    every pair not yet rejected or failed (every pair, with ``all_scores``)."""
    if decider.errors and not all_scores:
        return False
    wants = filter.wants(decider.so_far)
    return wants if wants is not None else all_scores or not decider.stopped


def apply_decision(row: dict[str, Any], decider: RowDecider) -> None:
    """Write a decision into a row: ``verdict`` and ``reasons`` always; ``failed``,
    ``review``, ``unsure`` and ``notes`` where not empty."""
    decision = decider.decision()
    row["verdict"], row["reasons"] = decision.verdict, decision.reasons
    for key, value in (("failed", decision.failed), ("review", decision.review), ("unsure", decider.unsure), ("notes", decider.notes)):
        if value:
            row[key] = value
        else:
            row.pop(key, None)


def _row(item: LoadedPair) -> dict[str, Any]:
    pair = item.pair
    return {"id": pair.id, "lq": pair.relative(pair.lq), "hq": pair.relative(pair.hq), "verdict": "pending", "reasons": [], "scores": {}}


def _score(stage: Stage, batch: Batch, todo: list[int]):
    """Yield ``(index, ({field: value}, heatmap, unsure, note))`` per pair in ``todo``, or ``(index, reason)``.

    A failing batch is retried pair by pair to find the pairs that really fail.
    """
    sub = batch if len(todo) == len(batch) else batch.subset(todo)
    try:
        yield from zip(todo, _checked(stage, sub))
        return
    except Exception as e:
        if len(todo) == 1:
            yield todo[0], f"filter {stage.name} failed: {type(e).__name__}: {_first_line(e)}"
            return
    for j in todo:
        yield from _score(stage, batch, [j])


def _checked(stage: Stage, batch: Batch) -> list[tuple[dict[str, float], np.ndarray | None, str | None, str | None]]:
    """Call the filter and check that it kept the contract."""
    out = stage.filter.score(batch)
    heatmaps: Sequence = [None] * len(batch)
    unsure: Sequence = [None] * len(batch)
    notes: Sequence = [None] * len(batch)
    if isinstance(out, Scores):
        if out.heatmaps is not None:
            heatmaps = list(out.heatmaps)
            if len(heatmaps) != len(batch):
                raise ValueError(f"score() returned {len(heatmaps)} heatmaps for {len(batch)} pairs")
        for name, given in (("unsure", out.unsure), ("notes", out.notes)):
            if given is not None:
                texts = [str(text) if text else None for text in given]
                if len(texts) != len(batch):
                    raise ValueError(f"score() returned {len(texts)} {name} for {len(batch)} pairs")
                unsure, notes = (texts, notes) if name == "unsure" else (unsure, texts)
        out = out.values
    if not isinstance(out, Mapping):
        raise TypeError(f"score() returned {type(out).__name__}, not a mapping of field -> values")
    expected = {f.name for f in stage.filter.fields}
    if set(out) != expected:
        raise KeyError(f"score() returned fields {sorted(out)}, declared {sorted(expected)}")
    columns = {}
    for name, values in out.items():
        if isinstance(values, torch.Tensor):
            values = values.detach().to("cpu", torch.float64)
        array = np.asarray(values, dtype=np.float64).reshape(-1)
        if array.shape[0] != len(batch):
            raise ValueError(f"score() returned {array.shape[0]} values of {name!r} for {len(batch)} pairs")
        columns[name] = array.tolist()
    return [({name: columns[name][k] for name in columns}, heatmaps[k], unsure[k], notes[k]) for k in range(len(batch))]


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else ""
