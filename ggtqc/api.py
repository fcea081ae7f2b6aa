"""The library layer: a whole run, the filter list, and one filter, as three functions.

``ggtqc filter`` and ``ggtqc plugins`` are thin shells over these, so a notebook, a Ray
task and a test use the same entry points as the command line:

- :func:`filter_pairs` selects filters, applies a config, checks that they can run, opens
  the results folder (resuming it), runs, exports and returns the summary;
- :func:`list_filters` describes every installed filter, as ``ggtqc plugins --json`` does;
- :func:`create_filter` configures one filter whose ``score_pair(lq, hq)`` scores and
  decides two images, through the same batch scorer and verdict rule as a run.

Errors a user can fix are raised as the typed exceptions the CLI turns into one-line
messages: :class:`~ggtqc.pairs.PairsError`, :class:`~ggtqc.host.PluginError`,
:class:`~ggtqc.config.ConfigError`, :class:`~ggtqc.results.ResumeError` and
:class:`~ggtqc.export.ExportError`.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np
import torch

from ggtqc.batch import LoadedPair
from ggtqc.config import FilterConfig, load_config
from ggtqc.engines import ENGINES
from ggtqc.export import check_export_dir, export_accepted
from ggtqc.host import Entry, Host, PluginError, load_host, select_filters
from ggtqc.images import DecodeError, DecodeLimits, decode_image
from ggtqc.pairs import Naming, Pair, discover
from ggtqc.results import ROW_SCHEMA, ResultsLog, check_parquet, write_parquet
from ggtqc.runner import RunOptions, Stage, check_ready, resolve_device, run, score_batch, spent_text

if TYPE_CHECKING:
    from ggtqc.engines.ray import RaySettings

Config = Union[str, os.PathLike, Mapping[str, Any], None]
"""A TOML file of thresholds, margins and options, or a mapping of the same tables."""
Image = Union[np.ndarray, str, os.PathLike]
"""An RGB ``uint8`` array of shape ``(H, W, 3)`` (or ``(H, W)`` grayscale), or an image file."""
ProgressCallback = Callable[[list[dict[str, Any]], int, int], None]
"""Called as ``progress(rows, done, total)``: once before any work with no rows, then after
each batch with the rows just written; ``done`` counts pairs with a row, earlier runs included.
A callback with a ``spent`` attribute (as :class:`ggtqc.progress.Progress`) gets the filters'
running cost set there before each call."""


class PluginWarning(UserWarning):
    """An installed plugin failed to load; the others still run."""


def list_filters(host: Host | None = None) -> list[dict[str, Any]]:
    """Every installed filter, sorted by name: ``name``, ``version``, ``plugin``,
    ``package``, ``gpu``, ``weights``, ``options`` and ``fields`` (each with ``name``,
    ``better``, ``threshold`` and ``help``)."""
    host = host or _load_host()
    return [_describe(name, entry) for name, entry in sorted(host.filters().items())]


def _describe(name: str, entry: Entry) -> dict[str, Any]:
    cls = entry.cls
    return {
        "name": name,
        "version": cls.version,
        "plugin": entry.plugin,
        "package": entry.package,
        "gpu": cls.gpu,
        "weights": [w.description for w in cls().weights()],
        "options": dict(cls.options),
        "fields": [{"name": f.name, "better": f.better, "threshold": f.threshold, "help": f.help} for f in cls.fields],
    }


def build_stages(names: Sequence[str], available: Mapping[str, Entry], config: Config = None) -> list[Stage]:
    """The filters ``names`` (in that order), configured by ``config``, with their thresholds."""
    configs = load_config(config, {name: entry.cls for name, entry in available.items()})
    return [_stage(available[name], configs[name]) for name in names]


def _stage(entry: Entry, config: FilterConfig) -> Stage:
    instance = entry.cls(**config.settings)
    thresholds = {f.name: config.thresholds.get(f.name, f.threshold) for f in entry.cls.fields}
    return Stage(instance, entry, thresholds, dict(config.margins))


def filter_pairs(
    pairs: str | os.PathLike,
    out: str | os.PathLike = "qc",
    plugins: str | Sequence[str] = "all",
    config: Config = None,
    *,
    device: str = "auto",
    batch_size: int = 16,
    processes: int = 1,
    workers: int | None = None,
    all_scores: bool = False,
    fresh: bool = False,
    export: str | os.PathLike | None = None,
    limits: DecodeLimits | None = None,
    naming: Naming | None = None,
    progress: ProgressCallback | None = None,
    host: Host | None = None,
    engine: str = "local",
    ray: RaySettings | None = None,
    parquet: bool = False,
) -> dict[str, Any]:
    """Score and decide every pair in ``pairs`` and write the results to ``out``; return the
    summary (what ``out/summary.json`` holds).

    ``pairs`` is a pairs folder (``lq/`` and ``hq/``) or a pairs file (CSV/TSV/JSONL, or
    Parquet with paths or the images themselves, ``ggtqc.parquet``).
    ``plugins`` is ``"all"``, a comma list, exclusions (``"all,-clip"``) or a list of names.
    The options are those of ``ggtqc filter``: ``workers`` defaults to the cores divided by
    ``processes``; ``export`` links the accepted pairs into ``export/lq`` and ``export/hq``
    (checked before the run) and the summary says how many under ``"export"``. A run whose
    ``out`` holds rows of the same configuration resumes; ``fresh`` starts over. ``naming``
    gives file-name templates of a pairs folder (``Naming(lq="{}x4")``); without it, files
    pair by name, then by the common conventions (``ggtqc.pairs``).

    ``engine="ray"`` scores on Ray Data (``ggtqc.engines.ray``) in resumable shards, with
    ``ray`` (a :class:`~ggtqc.engines.ray.RaySettings`) saying where and how; the rows are
    those of the local engine. ``parquet`` also writes the rows as ``out/results.parquet``
    (pyarrow). With the Ray engine, ``processes`` is unused and ``workers`` (default 1) is
    the CPUs and threads of each Ray task. Without Ray installed it raises
    :class:`~ggtqc.engines.EngineError` saying what to install.
    """
    source = Path(pairs).resolve()
    found = discover(source, naming)
    host = host or _load_host()
    available = host.filters()
    selection = plugins.replace(" ", "") if isinstance(plugins, str) else ",".join(plugins)
    stages = build_stages(select_filters(selection, available), available, config)
    if engine not in ENGINES:
        raise PluginError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    ray_engine = None
    if engine == "ray":
        from ggtqc.engines.ray import RayEngine, RaySettings

        ray_engine = RayEngine(ray or RaySettings())
        torch_device = ray_engine.device(device, stages)
    else:
        torch_device = resolve_device(device)
    check_ready(stages, torch_device, selection)
    export_dir = Path(export) if export is not None else None
    if export_dir is not None:
        check_export_dir(export_dir)
    if parquet:
        check_parquet()

    limits = limits or DecodeLimits()
    run_config = {
        "row_schema": ROW_SCHEMA,
        "order": [s.name for s in stages],
        "input": str(source),
        "filters": {s.name: {k: v for k, v in s.describe().items() if k not in ("plugin", "package")} for s in stages},
        "all_scores": all_scores,
        "limits": {"max_pixels": limits.max_pixels, "max_bytes": limits.max_bytes},
    }
    if naming is not None and not naming.exact:  # other templates, other pairs: no resuming across them
        run_config["naming"] = {"lq": naming.lq, "hq": naming.hq}
    out = Path(out)
    log = ResultsLog(out, run_config, fresh=fresh)
    if ray_engine is not None:
        done_before = ray_engine.prepare(found, out, log.path, run_config)
        workers = workers or 1
    else:
        done_before = sum(1 for p in found if p.id in log.done)
    if workers is None:
        workers = max(1, (os.cpu_count() or 1) // processes)
    options = RunOptions(batch_size=batch_size, workers=workers, processes=processes, all_scores=all_scores, limits=limits)
    done = done_before

    def on_batch(rows: list[dict[str, Any]]) -> None:
        nonlocal done
        done += len(rows)
        if progress is not None:
            if hasattr(progress, "spent"):
                progress.spent = spent_text(stages)
            progress(rows, done, len(found))

    if progress is not None:
        progress([], done, len(found))
    started = time.perf_counter()
    try:
        if ray_engine is not None:
            ray_engine.run(stages, options, torch_device, on_batch=on_batch)
        else:
            run(found, stages, log, options, torch_device, on_batch=on_batch)
    finally:
        if source.suffix.lower() == ".parquet" or source.is_dir():
            from ggtqc.parquet import close_readers

            close_readers()  # the slices of images kept for the run (of a file or a folder of shards)

    from ggtqc import __version__

    extra: dict[str, Any] = {
        "ggtqc_version": __version__,
        "input": str(source),
        "device": str(torch_device),
        "engine": engine,
        "filters": {s.name: {**s.describe(), "seconds": round(s.seconds, 3), "pairs_scored": s.pairs, **({"spent": s.spent} if s.spent else {})} for s in stages},
        "this_run": {"pairs": len(found) - done_before, "seconds": round(time.perf_counter() - started, 3)},
    }
    if ray_engine is not None:
        extra["ray"] = ray_engine.describe()
    if parquet:
        write_parquet(out)
    if export_dir is not None:
        extra["export"] = {"dir": str(export_dir), "pairs": export_accepted(log.rows(), source, export_dir)}
    return log.write_summary(extra)


class PairScorer:
    """One configured filter that scores and decides pairs in memory (:func:`create_filter`).

    ``score_pair(lq, hq)`` returns ``{"scores": {field: value}, "verdict": ..., "reasons":
    [...]}``, plus ``"heatmap"`` (a 2-D float array) where the filter drew one for a pair it
    rejects or sends to review. Images are arrays or files; a file is decoded by the same
    rules as a run (EXIF orientation, 16-bit, alpha, size caps), and one that cannot be
    decoded gives an ``error`` verdict whose reason names the side, as a run's row does.
    The filter's ``setup`` (model loading) runs once, at the first call.
    """

    def __init__(self, stage: Stage, device: torch.device, limits: DecodeLimits) -> None:
        self.stage = stage
        self.device = device
        self.limits = limits
        self._ready = False

    @property
    def name(self) -> str:
        return self.stage.name

    @property
    def filter(self):
        return self.stage.filter

    @property
    def thresholds(self) -> dict[str, float | None]:
        return self.stage.describe()["thresholds"]

    @property
    def margins(self) -> dict[str, float]:
        return self.stage.describe()["margins"]

    @property
    def better(self) -> dict[str, str]:
        """Each field's better direction: ``"higher"`` or ``"lower"``."""
        return self.stage.describe()["better"]

    def __repr__(self) -> str:
        return f"<ggtqc filter {self.name} {self.filter.version} on {self.device}>"

    def score_pair(self, lq: Image, hq: Image) -> dict[str, Any]:
        """Scores, verdict and reasons of one pair."""
        return self.score_pairs([(lq, hq)])[0]

    __call__ = score_pair

    def score_pairs(self, pairs: Iterable[tuple[Image, Image]]) -> list[dict[str, Any]]:
        """Scores, verdict and reasons of each ``(lq, hq)`` pair, scored as one batch."""
        loaded = [self._load(k, lq, hq) for k, (lq, hq) in enumerate(pairs)]
        if not self._ready:
            self.stage.filter.setup(self.device)
            self._ready = True
        rows = score_batch(loaded, [self.stage], all_scores=True, device=self.device)
        results = []
        for row in rows:
            result = {"scores": row["scores"].get(self.name, {}), "verdict": row["verdict"], "reasons": row["reasons"]}
            if self.name in row.get("heatmaps", {}):
                result["heatmap"] = row["heatmaps"][self.name]
            results.append(result)
        return results

    def _load(self, index: int, lq: Image, hq: Image) -> LoadedPair:
        images: dict[str, np.ndarray] = {}
        paths: dict[str, Path | None] = {}
        errors = []
        for side, image in (("lq", lq), ("hq", hq)):
            if isinstance(image, (str, os.PathLike)):
                paths[side] = Path(image)
                try:
                    images[side] = decode_image(image, self.limits)
                except DecodeError as e:
                    errors.append(f"{side}: {e}")
            else:
                paths[side] = None
                images[side] = _as_rgb8(side, image)
        pair = Pair(f"pair{index}", paths["lq"], paths["hq"], Path.cwd())
        if errors:
            return LoadedPair(pair, error="; ".join(errors))
        return LoadedPair(pair, images["lq"], images["hq"])


def create_filter(
    name: str,
    *,
    thresholds: Mapping[str, float | None] | None = None,
    margins: Mapping[str, float] | None = None,
    config: Config = None,
    device: str = "auto",
    limits: DecodeLimits | None = None,
    host: Host | None = None,
    **options: bool | int | float | str,
) -> PairScorer:
    """The filter ``name`` with its ``options``, ready to score pairs one call at a time.

    ``thresholds`` and ``margins`` override the field defaults (``{"cast": 5}``; a threshold
    of None records the field without deciding on it); ``config`` is applied first, as a
    run applies it, and the keywords on top. Missing weights or a missing GPU raise
    :class:`~ggtqc.host.PluginError` here, before anything loads.
    """
    host = host or _load_host()
    available = host.filters()
    if name not in available or name == "all":
        select_filters(name, available)  # raises with a close match if there is one
        raise PluginError(f"create_filter takes one filter name, not {name!r}")
    classes = {n: entry.cls for n, entry in available.items()}
    from_file = load_config(config, classes)[name]
    table: dict[str, Any] = dict(options)
    if thresholds:
        table["thresholds"] = dict(thresholds)
    if margins:
        table["margins"] = dict(margins)
    given = load_config({name: table}, classes, label="create_filter")[name]
    merged = FilterConfig(
        {**from_file.settings, **given.settings},
        {**from_file.thresholds, **given.thresholds},
        {**from_file.margins, **given.margins},
    )
    stage = _stage(available[name], merged)
    torch_device = resolve_device(device)
    check_ready([stage], torch_device, None)
    return PairScorer(stage, torch_device, limits or DecodeLimits())


def _as_rgb8(side: str, image: np.ndarray) -> np.ndarray:
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise TypeError(f"{side}: expected a uint8 RGB array, got dtype {array.dtype}")
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    elif array.ndim == 3 and array.shape[2] == 4:
        array = array[:, :, :3]  # alpha dropped, as the decoder drops it
    if array.ndim != 3 or array.shape[2] != 3 or 0 in array.shape:
        raise ValueError(f"{side}: expected an (H, W, 3) RGB array, got shape {array.shape}")
    view = np.ascontiguousarray(array).view()
    view.flags.writeable = False  # filters share it; the caller's own array stays writeable
    return view


def _load_host() -> Host:
    host = load_host()
    for plugin, reason in host.failures.items():
        warnings.warn(f"plugin {plugin!r} failed to load: {reason}", PluginWarning, stacklevel=3)
    return host
