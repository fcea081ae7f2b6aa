"""``iqa``: no-reference quality of the HQ, and its gain over the LQ, with pyiqa metrics.

``metrics`` is a comma list of pyiqa no-reference metrics (default ``piqe``, classical, no
weights). Each known metric has two fields, ``<metric>_hq`` (in the metric's own units and
direction) and ``<metric>_gain`` (how much better HQ scores than LQ, in the better
direction); metrics not enabled are not measured (NaN, never deciding).

The learned metric ``musiq`` (KonIQ) needs its checkpoint, given as ``checkpoints =
"musiq=/path/file.pth"`` or found in the ggtqc cache (``$GGTQC_CACHE/iqa/musiq.pth``) or in
pyiqa's own cache under its published name; pyiqa is handed the local path, so it never
downloads. Learned metrics whose constructors fetch backbone weights of their own
(topiq_nr, maniqa, clipiqa) are left out until those can be located offline too.

Nothing decides by default: on the planted-fault benchmark honest clean targets score
PIQE up to 56 (its "poor" band starts at 51), and published findings agree that
no-reference metrics alone do not rank degraded generated outputs reliably. The scores are
recorded for review and for thresholds a user calibrates (``--config``). Both images are
area-resized so the HQ's long side is at most ``analysis_side`` (512) first: PIQE of both
then takes 30-40 ms per pair of a 1024 px HQ on one core of this project's machine, and
on a CPU pairs run on the host's threads (~24 ms per pair on its two cores), each thread
with its own metric instances. On a GPU, or with a learned metric, the views of one size go
through each model stacked, on one thread with one copy (6 ms per pair on an H200).
"""

from __future__ import annotations

import math
import threading
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch

from ggtqc import Field, Filter, hookimpl
from ggtqc.config import ConfigError
from ggtqc.filters import WeightFile
from ggtqc.planes import common_size
from ggtqc.weights import cache_dir

# metric -> (better, published weights file name in pyiqa's cache, or None for classical)
# Only metrics whose whole weight chain loads from one local file: topiq_nr, maniqa and
# clipiqa also fetch backbone weights (timm, CLIP) in their constructors.
METRICS = {
    "piqe": ("lower", None),
    "musiq": ("higher", "musiq_koniq_ckpt-e95806b9.pth"),
}
PYIQA_CACHE = Path.home() / ".cache" / "torch" / "hub" / "pyiqa"
PIQE_BLOCK = 16  # px: PIQE scores 16-px blocks; a smaller view has none
STACK = 32  # views per model call at most: 32 x 3 x 512 x 512 float32 is 100 MB


class Iqa(Filter):
    name = "iqa"
    version = "3"  # 1 could swap scores between threads; 2 scored PIQE in float32 on a GPU
    cost = 10.0
    gpu = "optional"
    fields = tuple(
        field
        for metric, (better, _) in METRICS.items()
        for field in (
            Field(f"{metric}_hq", better, None, f"{metric} of the HQ ({better} is better; recorded only)"),
            Field(f"{metric}_gain", "higher", None, f"{metric} improvement from LQ to HQ (recorded only)"),
        )
    )
    options = {"metrics": "piqe", "checkpoints": "", "analysis_side": 512}

    def enabled(self) -> list[str]:
        names = [m.strip() for m in str(self.settings["metrics"]).split(",") if m.strip()]
        unknown = [m for m in names if m not in METRICS]
        if unknown:
            raise ConfigError(f"iqa has no metric {unknown[0]!r}; choose from {', '.join(METRICS)}")
        return names

    def _checkpoints(self) -> dict[str, str]:
        pairs = (item.partition("=") for item in str(self.settings["checkpoints"]).split(",") if item.strip())
        return {name.strip(): path.strip() for name, _, path in pairs}

    def weights(self):
        return list(self._weight_files().values())

    def _weight_files(self) -> dict[str, WeightFile]:
        explicit = self._checkpoints()
        files = {}
        for metric in self.enabled():
            published = METRICS[metric][1]
            if published is None:
                continue
            places = [Path(explicit[metric]).expanduser()] if metric in explicit else []
            places += [cache_dir() / "iqa" / f"{metric}.pth", PYIQA_CACHE / published]
            found = next((p for p in places if p.is_file()), None)
            files[metric] = WeightFile(f"pyiqa {metric} weights ({published})", tuple(places), found)
        return files

    def setup(self, device: torch.device) -> None:
        self.checkpoints = {metric: str(weight.found) for metric, weight in self._weight_files().items()}
        self.device = device
        # Classical metrics on a CPU go on the host's threads (PIQE is many small ops, ~1.4x
        # on two cores), each thread with its own instances. Learned ones stay on one thread:
        # torch spreads a network over the cores itself, and one copy of its weights is enough.
        self.threaded = device.type == "cpu" and all(METRICS[metric][1] is None for metric in self.enabled())
        # PIQE thresholds its blocks, so last-bit differences can flip many of them: in float32
        # an H200's scores differed from the CPU's by up to 13.6 on planted pairs, while in
        # float64 the two devices agreed. A GPU scores classical metrics in float64 (as fast
        # there); the CPU keeps float32 (2.5x faster than float64, and within 0.6 of the
        # GPU's float64 on those pairs). Learned metrics keep their float32 weights.
        self.dtypes = {
            metric: torch.float64 if device.type != "cpu" and METRICS[metric][1] is None else torch.float32
            for metric in self.enabled()
        }
        self.per_thread = threading.local()
        self.lock = threading.Lock()
        self.spare = self.create_models()  # built now, so a metric that cannot load stops the run before any work

    def create_models(self) -> dict:
        import pyiqa

        models = {}
        for metric in self.enabled():
            extra = {"pretrained_model_path": self.checkpoints[metric]} if metric in self.checkpoints else {}
            models[metric] = pyiqa.create_metric(metric, device=self.device, **extra)
        return models

    def models(self) -> dict:
        """The calling thread's own metric instances.

        A pyiqa model keeps state per call (PIQE stores its last result on itself), so two
        threads sharing one hand each other's scores. The first thread to ask takes the
        instances built in setup; any other builds its own.
        """
        models = getattr(self.per_thread, "models", None)
        if models is None:
            with self.lock:
                models, self.spare = self.spare, None
            self.per_thread.models = models = models or self.create_models()
        return models

    def score(self, batch):
        if self.threaded:  # one pair per call, on the host's threads
            results = batch.map(lambda lq, hq: self.measure([lq], [hq])[0], batch.lq, batch.hq)
        else:  # a learned metric or a GPU: the pairs of one size go through each model together
            results = self.measure(batch.lq, batch.hq, batch.map)
        return {f.name: [result.get(f.name, math.nan) for result in results] for f in self.fields}

    def measure(self, lqs: list[np.ndarray], hqs: list[np.ndarray], map_: Callable = map) -> list[dict[str, float]]:
        """The enabled metrics' fields for each pair; pairs whose views share a size are stacked.

        ``map_`` runs the resizing (the host's threads, from ``Batch.map``), so a GPU's
        stacked call does not wait on one CPU thread resizing every view.
        """
        side = int(self.settings["analysis_side"])
        by_size = defaultdict(list)
        for i, hq in enumerate(hqs):
            size = common_size(hq, side)
            if min(size) >= PIQE_BLOCK:  # a smaller view is not measured: every field NaN
                by_size[size].append(i)
        stacks = [
            (size, members[at : at + STACK]) for size, members in by_size.items() for at in range(0, len(members), STACK)
        ]
        results = [{} for _ in hqs]
        models = self.models()
        for size, chunk in stacks:
            views = {
                name: torch.stack(list(map_(_tensor, [images[i] for i in chunk], [size] * len(chunk)))).to(self.device)
                for name, images in (("hq", hqs), ("lq", lqs))
            }
            for metric, model in models.items():
                with torch.no_grad():
                    hq_scores, lq_scores = (model(views[name].to(self.dtypes[metric])).flatten().tolist() for name in ("hq", "lq"))
                sign = -1.0 if METRICS[metric][0] == "lower" else 1.0
                for i, hq_score, lq_score in zip(chunk, hq_scores, lq_scores):
                    results[i][f"{metric}_hq"] = hq_score
                    results[i][f"{metric}_gain"] = sign * (hq_score - lq_score)
        return results


def _tensor(image: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    resized = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return torch.from_numpy(resized).permute(2, 0, 1).float().div(255)


@hookimpl
def ggtqc_register_filters(register):
    register(Iqa)
