"""The Ray engine: a run's pairs scored on Ray Data in fixed shards that survive a kill.

The manifest (the pairs in the order ``ggtqc.pairs.discover`` gives them) is cut into
shards of ``shard_size`` pairs. Each shard is one item of a Ray dataset; a worker reads its
pairs' images from their paths (nothing but paths and small rows crosses the driver),
scores them batch by batch through ``ggtqc.runner.score_pairs``, the function the local
engine's worker processes call, and decides them through ``ggtqc.decide``. So the rows are
those of the local engine, byte for byte once merged.

Under the results folder, which must be on a filesystem that the driver and every worker
see (one machine, or a shared mount on a cluster):

- ``shards/00000.jsonl``: the rows of shard 0, in manifest order, written at once;
- ``shards/00000.done``: its marker ``{"config", "ids", "rows"}``, written after the rows.
  ``config`` hashes ``run.json`` and the shard size, ``ids`` the shard's pair ids, ``rows``
  counts the rows file's lines. A shard is finished only when all three match, so a rerun
  after ``kill -9`` (of the driver or a worker) skips finished shards, redoes the rest, and
  a changed input or configuration never reuses a shard;
- ``shards/00000.<config>.part`` and ``.pending``: a shard in progress. Rows are appended
  batch by batch (``ggtqc.rowlog``, crash-safe), and ``.pending`` names the pairs being
  scored now, so a retried task carries on where the dead one stopped.

When every shard is finished, the driver writes ``results.jsonl`` from the shards in
manifest order, through a temporary file and a rename: it holds one row per pair or the
previous file, never a mixture.

Faults: a pair that raises becomes an ``error`` row (``score_batch`` retries a failing
filter pair by pair, and a batch that raises anywhere else is rescored pair by pair). A
worker that dies (killed, out of memory, a crash in native code) is retried by Ray; when a
batch was in flight, its pairs are then scored one at a time, and a pair whose worker died
twice while scoring it alone gets an ``error`` row instead of a third try.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import socket
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import torch

from ggtqc.batch import LoadedPair, chunks
from ggtqc.engines import EngineError
from ggtqc.host import PluginError
from ggtqc.pairs import Pair
from ggtqc.results import SHARDS, save_heatmap
from ggtqc.rowlog import RowLog, read_rows, write_atomic
from ggtqc.runner import RunOptions, Stage, add_spent, score_batch, score_pairs

INSTALL = "--engine ray needs Ray: pip install 'ggtqc[ray]' (or: pip install 'ray[data]>=2.40')"
DEATHS_BEFORE_BLAME = 2
"""Worker deaths while scoring one pair alone before that pair gets an error row: one death
may be a kill or an out-of-memory event elsewhere; two in a row point at the pair."""
LOCAL_OBJECT_STORE = 512 * 2**20
"""Object store of a local Ray: only shard descriptions and small result rows pass through it."""
PROBE_SECONDS = 5.0  # to reach a cluster's address before Ray is asked to join it


@dataclass
class RaySettings:
    """How the Ray engine runs: ``address`` of a cluster (None: ``RAY_ADDRESS`` if set, else
    a local Ray on this machine), pairs per shard, and the pool: at most ``pool`` tasks or
    actors at once (default: as many as the cluster's CPUs, or GPUs, allow), each actor
    holding ``gpus_per_actor`` GPUs when the run is on GPUs."""

    address: str | None = None
    shard_size: int = 256
    pool: int | None = None
    gpus_per_actor: float = 1.0


def import_ray():
    """Ray, or an :class:`EngineError` that says what to install."""
    try:
        import ray
        import ray.data  # noqa: F401  (ray[data]: Ray core alone lacks it)
    except ImportError:
        raise EngineError(INSTALL) from None
    return ray


def connect(address: str | None):
    """Start a local Ray, or join the cluster at ``address`` (or ``RAY_ADDRESS``); quietly,
    so the run's own progress line is the only one."""
    ray = import_ray()
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    if ray.is_initialized():  # a notebook or a test that started Ray itself
        _quiet()
        return ray
    _quiet()
    address = address or os.environ.get("RAY_ADDRESS") or None
    options: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False, "include_dashboard": False}
    if address is None:
        options["object_store_memory"] = LOCAL_OBJECT_STORE
    else:
        check_reachable(address)
    try:
        ray.init(address=address, **options)
    except ConnectionError as e:
        raise EngineError(f"no Ray cluster at {address}: {e}") from None
    _quiet()
    return ray


def check_reachable(address: str) -> None:
    """Fail at once where nothing listens at ``address`` (``host:port``, or ``ray://host:port``
    for Ray Client): Ray itself retries such an address for minutes before it gives up.
    ``auto`` and ``local`` name no port and are left to Ray."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_SECONDS).close()
    except OSError as e:
        raise EngineError(
            f"no Ray cluster at {address}: nothing answers there ({e.strerror or e}); start one there with "
            "'ray start --head', or leave out --ray-address and RAY_ADDRESS for a local Ray"
        ) from None


def _quiet() -> None:
    """Ray's notices that are not about this run: that progress bars are off (the run draws
    its own line), how a cluster it started authenticates, and Ray Data's informational
    lines. Warnings about the work itself stay."""
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    for name in ("ray.data._internal.progress", "ray._private.authentication.authentication_token_setup"):
        logging.getLogger(name).setLevel(logging.ERROR)


def config_hash(run_config: dict[str, Any], shard_size: int) -> str:
    """What a shard's rows depend on besides its pairs: the run's configuration and the cut."""
    text = json.dumps({"run": run_config, "shard_size": shard_size}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class Shard:
    index: int
    pairs: list[Pair]

    @property
    def name(self) -> str:
        return f"{self.index:05d}"

    @property
    def ids_hash(self) -> str:
        return hashlib.sha256("\n".join(p.id for p in self.pairs).encode()).hexdigest()[:16]


def plan(pairs: Sequence[Pair], shard_size: int) -> list[Shard]:
    return [Shard(k, chunk) for k, chunk in enumerate(chunks(pairs, shard_size))]


class ShardStore:
    """The ``shards/`` folder of one run configuration: which shards are finished, their
    rows, and the merge into ``results.jsonl``."""

    def __init__(self, out: Path, config: str) -> None:
        self.out = out
        self.dir = out / SHARDS
        self.config = config

    def rows_path(self, shard: Shard) -> Path:
        return self.dir / f"{shard.name}.jsonl"

    def marker_path(self, shard: Shard) -> Path:
        return self.dir / f"{shard.name}.done"

    def part_path(self, shard: Shard) -> Path:
        return self.dir / f"{shard.name}.{self.config}.part"

    def pending_path(self, shard: Shard) -> Path:
        return self.dir / f"{shard.name}.{self.config}.pending"

    def finished(self, shard: Shard) -> bool:
        """Whether the shard's rows are there, complete, and of this configuration and these pairs."""
        try:
            marker = json.loads(self.marker_path(shard).read_text(encoding="utf-8"))
            lines = self.rows_path(shard).read_bytes().count(b"\n")
        except (OSError, ValueError):
            return False
        expected = {"config": self.config, "ids": shard.ids_hash, "rows": len(shard.pairs)}
        return marker == expected and lines == len(shard.pairs)

    def write(self, shard: Shard, rows: list[dict[str, Any]]) -> None:
        """The shard's rows, then its marker: a kill between the two leaves it unfinished."""
        if [row["id"] for row in rows] != [p.id for p in shard.pairs]:
            raise RuntimeError(f"shard {shard.name}: rows do not match its pairs")  # a bug, never a partial shard
        self.dir.mkdir(parents=True, exist_ok=True)
        self.marker_path(shard).unlink(missing_ok=True)
        write_atomic(self.rows_path(shard), "".join(_line(row) for row in rows).encode())
        marker = {"config": self.config, "ids": shard.ids_hash, "rows": len(rows)}
        write_atomic(self.marker_path(shard), json.dumps(marker).encode())
        self.part_path(shard).unlink(missing_ok=True)
        self.pending_path(shard).unlink(missing_ok=True)

    def rows(self, shard: Shard) -> list[dict[str, Any]]:
        return list(read_rows(self.rows_path(shard)))

    def adopt(self, shards: Iterable[Shard], results: Path) -> None:
        """Mark as finished the shards whose every pair already has a row in ``results``
        (a local run, or a merged Ray run, of the same configuration): nothing is scored twice."""
        todo = [s for s in shards if not self.finished(s)]
        if not todo or not results.exists():
            return
        have = {row["id"]: row for row in read_rows(results)}
        for shard in todo:
            if all(p.id in have for p in shard.pairs):
                self.write(shard, [have[p.id] for p in shard.pairs])

    def merge(self, shards: Sequence[Shard], path: Path) -> None:
        """Every shard's rows into ``path``, in manifest order, through a temporary file and a rename."""
        tmp = path.with_name(f".{path.name}.part")
        with tmp.open("w", encoding="utf-8") as f:
            for shard in shards:
                for row in read_rows(self.rows_path(shard)):
                    f.write(_line(row))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


def _line(row: dict[str, Any]) -> str:
    return json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n"  # as ggtqc.rowlog writes it


class ShardScorer:
    """Scores whole shards inside a Ray worker: the filters are set up once, in
    ``__init__``, so an actor of a pool loads its models once for all its shards.

    Called by Ray Data with a batch of shard descriptions (``shard``: index, ``pairs``: its
    pickled pairs) and returns, per shard, its index, row count, verdict counts and the
    filters' timings; the rows themselves go to the shards folder.
    """

    def __init__(self, payload: bytes) -> None:
        stages, options, device, out, config = pickle.loads(payload)
        self.stages: list[Stage] = stages
        self.options: RunOptions = options
        self.device: torch.device = device
        self.store = ShardStore(Path(out), config)
        torch.set_num_threads(options.workers)  # the CPUs Ray gave this worker, not the machine's
        cv2.setNumThreads(options.workers)
        for stage in stages:
            stage.filter.setup(device)
        self.executor = ThreadPoolExecutor(options.workers, thread_name_prefix="ggtqc-score") if options.workers > 1 else None

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        result: dict[str, list[Any]] = {"shard": [], "rows": [], "timings": []}
        for index, pairs in zip(batch["shard"], batch["pairs"]):
            shard = Shard(int(index), pickle.loads(pairs))
            timings = self.score_shard(shard)
            result["shard"].append(shard.index)
            result["rows"].append(len(shard.pairs))
            result["timings"].append(json.dumps(timings))
        return result

    def score_shard(self, shard: Shard) -> list[tuple[float, int, dict[str, float]]]:
        """Score the shard's pairs that have no row yet, then write the shard; return the
        filters' ``(seconds, pairs, spent)`` for this shard."""
        for stage in self.stages:
            stage.seconds, stage.pairs, stage.spent = 0.0, 0, {}
        if self.store.finished(shard):  # a retry of a task that died after writing it
            return self._timings()
        self.store.dir.mkdir(parents=True, exist_ok=True)
        part = RowLog(self.store.part_path(shard))
        done = {row["id"] for row in part.rows()}
        by_id = {p.id: p for p in shard.pairs}
        alone: list[tuple[Pair, int]] = []  # pairs to score one at a time, with their deaths so far
        pending = self._read_pending(shard)
        if pending is not None:
            unfinished = [i for i in pending["ids"] if i not in done and i in by_id]
            deaths = pending["deaths"] + 1  # the previous attempt died scoring this group
            if len(pending["ids"]) == 1 and unfinished:
                pair = by_id[unfinished[0]]
                if deaths >= DEATHS_BEFORE_BLAME:
                    part.append(self._error_rows([pair], f"worker died scoring this pair ({deaths} times alone)"))
                    done.add(pair.id)
                else:
                    alone.append((pair, deaths))
            else:
                alone.extend((by_id[i], 0) for i in unfinished)
        singles = {pair.id for pair, _ in alone}
        for pair, deaths in alone:
            self._score_group(part, shard, [pair], deaths)
        rest = [p for p in shard.pairs if p.id not in done and p.id not in singles]
        for group in chunks(rest, self.options.batch_size):
            self._score_group(part, shard, group, 0)
        last = part.last()
        self.store.write(shard, [last[p.id] for p in shard.pairs])
        return self._timings()

    def _score_group(self, part: RowLog, shard: Shard, group: list[Pair], deaths: int) -> None:
        note = {"ids": [p.id for p in group], "deaths": deaths}
        write_atomic(self.store.pending_path(shard), json.dumps(note).encode())  # read back only if this worker dies
        part.append(self._rows(group))

    def _rows(self, group: list[Pair]) -> list[dict[str, Any]]:
        try:
            rows = score_pairs(group, self.stages, self.options, self.device, self.executor)
            for row in rows:
                if "heatmaps" in row:  # saved before the row, so a written row's files exist
                    row["heatmaps"] = {n: save_heatmap(self.store.out, n, row["id"], m) for n, m in row["heatmaps"].items()}
            return rows
        except Exception as e:  # decoding or writing raised: find the pairs that really fail
            if len(group) > 1:
                return [row for pair in group for row in self._rows([pair])]
            text = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
            return self._error_rows(group, f"worker failed: {type(e).__name__}: {text}")

    def _error_rows(self, pairs: list[Pair], reason: str) -> list[dict[str, Any]]:
        """Error rows in the runner's own format: the decider writes them, no filter runs."""
        loaded = [LoadedPair(pair, error=reason) for pair in pairs]
        return score_batch(loaded, self.stages, self.options.all_scores, self.device)

    def _read_pending(self, shard: Shard) -> dict[str, Any] | None:
        try:
            return json.loads(self.store.pending_path(shard).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def _timings(self) -> list[tuple[float, int, dict[str, float]]]:
        return [(stage.seconds, stage.pairs, dict(stage.spent)) for stage in self.stages]


def score_shards(batch: dict[str, Any], payload: bytes) -> dict[str, list[Any]]:
    """The task form of :class:`ShardScorer`, for filters without weights: setting them up
    per task costs nothing, and tasks need no long-lived actors."""
    return ShardScorer(payload)(batch)


class RayEngine:
    """A run on Ray: connect, pick the device, find the finished shards, score the others,
    merge. :func:`ggtqc.api.filter_pairs` drives it with ``engine="ray"``."""

    def __init__(self, settings: RaySettings) -> None:
        self.settings = settings
        self.ray = connect(settings.address)
        self.shards: list[Shard] = []
        self.todo: list[Shard] = []

    def device(self, name: str, stages: Sequence[Stage]) -> torch.device:
        """Where the filters run: on the cluster's GPUs when it has some and a filter uses
        them (``auto``), or when asked (``cuda``); otherwise on CPUs."""
        gpus = self.ray.cluster_resources().get("GPU", 0)
        if name.startswith("cuda") and not gpus:
            raise PluginError("--device cuda asked for, but the Ray cluster has no GPUs; use --device cpu")
        if name.startswith("cuda") or (name == "auto" and gpus and any(s.filter.gpu != "unused" for s in stages)):
            return torch.device("cuda")
        return torch.device("cpu")

    def describe(self) -> dict[str, Any]:
        """Where the run went, for ``summary.json``: the cluster's address, nodes, CPUs and
        GPUs, and the shard size."""
        resources = self.ray.cluster_resources()
        return {
            "address": self.ray.get_runtime_context().gcs_address,
            "nodes": sum(1 for node in self.ray.nodes() if node.get("Alive")),
            "cpus": resources.get("CPU", 0),
            "gpus": resources.get("GPU", 0),
            "shard_size": self.settings.shard_size,
            "shards": len(self.shards),
        }

    def prepare(self, pairs: Sequence[Pair], out: Path, results: Path, run_config: dict[str, Any]) -> int:
        """Cut the manifest into shards and find those finished; return how many pairs they hold."""
        self.store = ShardStore(out, config_hash(run_config, self.settings.shard_size))
        self.shards = plan(pairs, self.settings.shard_size)
        self.results = results
        self.store.adopt(self.shards, results)
        self.todo = [s for s in self.shards if not self.store.finished(s)]
        return sum(len(s.pairs) for s in self.shards) - sum(len(s.pairs) for s in self.todo)

    def run(
        self,
        stages: Sequence[Stage],
        options: RunOptions,
        device: torch.device,
        on_batch: Callable[[list[dict[str, Any]]], None] = lambda rows: None,
    ) -> None:
        """Score the unfinished shards, calling ``on_batch`` with each shard's rows as it
        finishes; then write ``results.jsonl`` from all shards."""
        if self.todo:
            dataset = self.ray.data.from_items(
                # pairs pickled whole: paths and whatever else a Pair carries, never image data
                [{"shard": s.index, "pairs": pickle.dumps(s.pairs)} for s in self.todo],
                override_num_blocks=len(self.todo),  # one shard a block, so shards spread over the workers
            )
            mapped = dataset.map_batches(batch_size=1, batch_format="numpy", **self._map_args(stages, options, device))
            by_index = {s.index: s for s in self.todo}
            for item in mapped.iter_rows():
                for stage, (seconds, count, spent) in zip(stages, json.loads(item["timings"])):
                    stage.seconds += seconds
                    stage.pairs += count
                    add_spent(stage, spent)
                on_batch(self.store.rows(by_index[int(item["shard"])]))
        missing = [s.name for s in self.shards if not self.store.finished(s)]
        if missing:  # Ray reported every shard done; a marker that does not hold is a bug or a lost disk
            raise RuntimeError(f"shards {', '.join(missing[:5])} are not finished; run the same command again to redo them")
        self.store.merge(self.shards, self.results)

    def _map_args(self, stages: Sequence[Stage], options: RunOptions, device: torch.device) -> dict[str, Any]:
        """``map_batches`` arguments: an actor pool on GPUs, or for filters that load
        weights (loaded once per actor); plain CPU tasks otherwise."""
        try:
            payload = pickle.dumps((list(stages), options, device, str(self.store.out.resolve()), self.store.config))
        except Exception as e:  # a filter holding something that cannot cross a process boundary
            raise PluginError(f"the filters cannot be sent to Ray workers ({type(e).__name__}: {e}); use --engine local") from None
        resources = self.ray.cluster_resources()
        pool = self.settings.pool
        args: dict[str, Any] = {"num_cpus": options.workers}
        if device.type == "cuda":
            size = pool or max(1, int(resources.get("GPU", 1) // self.settings.gpus_per_actor))
            args["num_gpus"] = self.settings.gpus_per_actor
        elif any(stage.filter.weights() for stage in stages):
            size = pool or max(1, int(resources.get("CPU", 1)) // options.workers)
        else:
            return {**args, "fn": score_shards, "fn_kwargs": {"payload": payload}, "compute": self.ray.data.TaskPoolStrategy(size=pool)}
        return {**args, "fn": ShardScorer, "fn_constructor_kwargs": {"payload": payload}, "compute": self.ray.data.ActorPoolStrategy(size=size)}
