import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers import save_rgb
from ggtqc import Field, Filter, PairFilter, WeightFile
from ggtqc.batch import LoadedPair
from ggtqc.host import Entry, PluginError
from ggtqc.pairs import Pair
from ggtqc.plugins.resolution import Resolution
from ggtqc.results import ResultsLog
from ggtqc.runner import RunOptions, Stage, check_ready, run, score_batch

CPU = torch.device("cpu")


def loaded(pair_id, lq_shape, hq_shape, fill=100):
    pair = Pair(pair_id, Path(f"/p/lq/{pair_id}.png"), Path(f"/p/hq/{pair_id}.png"), Path("/p"))
    return LoadedPair(pair, np.full(lq_shape, fill, np.uint8), np.full(hq_shape, fill, np.uint8))


def stage(cls, **thresholds):
    return Stage(cls(), Entry(cls, "test", "test 0"), {f.name: thresholds.get(f.name, f.threshold) for f in cls.fields})


class Brightness(Filter):
    """Mean HQ value; NaN for pairs whose LQ is all zero."""

    name = "brightness"
    version = "1"
    fields = (Field("mean", "higher", 50.0),)
    calls: list = []

    def score(self, batch):
        Brightness.calls.append(list(batch.ids))
        return {"mean": torch.tensor([math.nan if lq.max() == 0 else float(hq.mean()) for lq, hq in zip(batch.lq, batch.hq)])}


class FailsOnDark(Filter):
    name = "fragile"
    version = "1"
    fields = (Field("x", "lower", None),)

    def score(self, batch):
        if any(hq.mean() < 20 for hq in batch.hq):
            raise RuntimeError("cannot handle dark images\nsecond line")
        return {"x": np.zeros(len(batch))}


def test_thresholds_decide_and_reasons_say_why():
    rows = score_batch(
        [loaded("ok", (64, 64, 3), (300, 300, 3)), loaded("small", (64, 64, 3), (32, 32, 3))],
        [stage(Resolution)],
        all_scores=False,
        device=CPU,
    )
    assert rows[0]["verdict"] == "accept" and rows[0]["reasons"] == [] and "failed" not in rows[0]
    assert rows[1]["verdict"] == "reject"
    assert rows[1]["reasons"] == ["resolution.hq_short_side 32 < 256", "resolution.scale 0.5 < 1"]
    assert rows[1]["failed"] == ["resolution.hq_short_side", "resolution.scale"]
    assert rows[1]["scores"]["resolution"]["scale"] == 0.5
    assert rows[1]["scores"]["resolution"]["scale_error"] is None  # NaN: not measured, not decided


def test_overridden_threshold_and_record_only_fields():
    rows = score_batch([loaded("a", (64, 64, 3), (300, 300, 3), fill=40)], [stage(Brightness, mean=None)], False, CPU)
    assert rows[0]["verdict"] == "accept" and rows[0]["scores"]["brightness"]["mean"] == 40
    rows = score_batch([loaded("a", (64, 64, 3), (300, 300, 3), fill=40)], [stage(Brightness, mean=30)], False, CPU)
    assert rows[0]["verdict"] == "accept"
    rows = score_batch([loaded("a", (64, 64, 3), (300, 300, 3), fill=40)], [stage(Brightness)], False, CPU)
    assert rows[0]["reasons"] == ["brightness.mean 40 < 50"]


def test_nan_score_never_decides():
    rows = score_batch([loaded("a", (64, 64, 3), (300, 300, 3), fill=0)], [stage(Brightness)], False, CPU)
    assert rows[0]["verdict"] == "accept" and rows[0]["scores"]["brightness"]["mean"] is None


def test_rejected_pairs_skip_later_filters_unless_all_scores():
    pairs = [loaded("big", (64, 64, 3), (300, 300, 3)), loaded("tiny", (64, 64, 3), (32, 32, 3))]
    Brightness.calls = []
    rows = score_batch(pairs, [stage(Resolution), stage(Brightness)], False, CPU)
    assert Brightness.calls == [["big"]] and "brightness" not in rows[1]["scores"]
    Brightness.calls = []
    rows = score_batch(pairs, [stage(Resolution), stage(Brightness)], True, CPU)
    assert Brightness.calls == [["big", "tiny"]] and rows[1]["scores"]["brightness"]["mean"] == 100


def test_a_raising_filter_marks_only_the_pairs_it_fails_on():
    pairs = [loaded("bright", (64, 64, 3), (300, 300, 3)), loaded("dark", (64, 64, 3), (300, 300, 3), fill=5)]
    rows = score_batch(pairs, [stage(FailsOnDark), stage(Brightness)], False, CPU)
    assert rows[0]["verdict"] == "accept" and rows[0]["scores"]["fragile"] == {"x": 0.0}
    assert rows[1]["verdict"] == "error"
    assert rows[1]["reasons"] == ["filter fragile failed: RuntimeError: cannot handle dark images"]
    assert "brightness" not in rows[1]["scores"]


def test_a_rejection_stands_when_a_later_filter_fails_under_all_scores():
    tiny_dark = loaded("a", (64, 64, 3), (32, 32, 3), fill=5)
    [row] = score_batch([tiny_dark], [stage(Resolution), stage(FailsOnDark)], True, CPU)
    assert row["verdict"] == "reject" and "resolution.scale" in row["failed"]
    assert row["reasons"][-1].startswith("filter fragile failed")


def test_decode_errors_pass_through_untouched():
    broken = LoadedPair(Pair("b", Path("/p/lq/b.png"), Path("/p/hq/b.png"), Path("/p")), error="hq: truncated file")
    rows = score_batch([broken, loaded("a", (64, 64, 3), (300, 300, 3))], [stage(Resolution)], False, CPU)
    assert rows[0] == {"id": "b", "lq": "lq/b.png", "hq": "hq/b.png", "verdict": "error", "reasons": ["hq: truncated file"], "scores": {}}
    assert rows[1]["verdict"] == "accept"


@pytest.mark.parametrize(
    "output,message",
    [
        ([1.0], "not a mapping"),
        ({"mean": [1.0], "extra": [2.0]}, "returned fields"),
        ({"mean": [1.0, 2.0]}, "returned 2 values"),
    ],
)
def test_contract_violations_become_error_rows(output, message):
    class Broken(Brightness):
        name = "broken"

        def score(self, batch):
            return output

    rows = score_batch([loaded("a", (64, 64, 3), (300, 300, 3))], [stage(Broken)], False, CPU)
    assert rows[0]["verdict"] == "error" and message in rows[0]["reasons"][0] and "filter broken failed" in rows[0]["reasons"][0]


def test_batched_and_single_scores_are_identical():
    rng = np.random.default_rng(1)
    items = [
        LoadedPair(Pair(f"p{k}", Path("/l"), Path("/h"), Path("/")), rng.integers(0, 256, (40 + k, 50, 3), np.uint8), rng.integers(0, 256, (80 + 2 * k, 100, 3), np.uint8))
        for k in range(6)
    ]
    stages = [stage(Resolution), stage(Brightness)]
    together = score_batch(items, stages, True, CPU)
    one_by_one = [score_batch([item], stages, True, CPU)[0] for item in items]
    assert together == one_by_one


class Meeting(PairFilter):
    """Scores only if another pair is being scored at the same moment."""

    name = "meeting"
    version = "1"
    threadsafe = True
    fields = (Field("threads", "lower", None),)

    def __init__(self, **settings):
        super().__init__(**settings)
        self.barrier = threading.Barrier(2, timeout=10)
        self.threads = set()

    def score_pair(self, lq, hq):
        self.threads.add(threading.get_ident())
        self.barrier.wait()  # breaks (an error row) unless two pairs are scored at once
        return {"threads": 0.0}


def test_threadsafe_pair_filters_score_a_batch_on_the_hosts_threads():
    items = [loaded(f"p{k}", (8, 8, 3), (16, 16, 3)) for k in range(4)]
    meeting = stage(Meeting)
    with ThreadPoolExecutor(2) as executor:
        rows = score_batch(items, [meeting], False, CPU, executor)
    assert [row["verdict"] for row in rows] == ["accept"] * 4
    assert len(meeting.filter.threads) == 2 and threading.get_ident() not in meeting.filter.threads


def test_other_pair_filters_stay_on_the_calling_thread():
    class Recorder(PairFilter):
        name = "recorder"
        version = "1"
        fields = (Field("x", "lower", None),)
        threads: set = set()

        def score_pair(self, lq, hq):
            Recorder.threads.add(threading.get_ident())
            return {"x": 0.0}

    with ThreadPoolExecutor(2) as executor:
        score_batch([loaded(f"p{k}", (8, 8, 3), (16, 16, 3)) for k in range(4)], [stage(Recorder)], False, CPU, executor)
    assert Recorder.threads == {threading.get_ident()}


def test_missing_weights_and_gpu_needs_stop_before_work():
    class NeedsWeights(Brightness):
        name = "learned"

        def weights(self):
            return [WeightFile("model.pth", (Path("/models/model.pth"), Path("/cache/model.pth")))]

    class NeedsGpu(Brightness):
        name = "gpuonly"
        gpu = "required"

    with pytest.raises(PluginError) as error:
        check_ready([stage(NeedsWeights), stage(NeedsGpu), stage(Resolution)], CPU)
    message = str(error.value)
    assert "learned: model.pth not found (looked in: /models/model.pth, /cache/model.pth)" in message
    assert "gpuonly: needs a GPU" in message
    assert "--plugins all,-learned,-gpuonly" in message
    check_ready([stage(Resolution)], CPU)


class HoldsALock(Brightness):
    """Importable from a worker, but its instance holds a lock, which cannot be pickled."""

    def __init__(self, **settings):
        super().__init__(**settings)
        self.lock = threading.Lock()


def test_a_filter_that_cannot_reach_worker_processes_is_a_clear_error(tmp_path):
    log = ResultsLog(tmp_path / "qc", {})
    pair = Pair("a", tmp_path / "lq" / "a.png", tmp_path / "hq" / "a.png", tmp_path)
    with pytest.raises(PluginError, match=r"cannot be sent to worker processes .*; use --processes 1"):
        run([pair], [stage(HoldsALock)], log, RunOptions(processes=2), CPU)
    assert list(log.rows()) == []


class DiesOnDark(Brightness):
    """Ends its process on a dark pair, as an out-of-memory kill would."""

    def score(self, batch):
        if any(hq.mean() < 20 for hq in batch.hq):
            os._exit(9)
        return super().score(batch)


def test_a_worker_process_that_dies_ends_the_run_with_what_to_do_and_a_log_to_resume(tmp_path):
    pairs = []
    for k, fill in enumerate([100] * 8 + [5]):
        name = f"p{k}"
        save_rgb(tmp_path / "lq" / f"{name}.png", np.full((32, 32, 3), fill, np.uint8))
        save_rgb(tmp_path / "hq" / f"{name}.png", np.full((64, 64, 3), fill, np.uint8))
        pairs.append(Pair(name, tmp_path / "lq" / f"{name}.png", tmp_path / "hq" / f"{name}.png", tmp_path))
    ids = [p.id for p in pairs]
    log = ResultsLog(tmp_path / "qc", {})
    with pytest.raises(RuntimeError, match=r"a worker process died .* rows written so far are kept"):
        run(pairs, [stage(DiesOnDark)], log, RunOptions(batch_size=4, workers=1, processes=2), CPU)
    written = [row["id"] for row in ResultsLog(tmp_path / "qc", {}).rows()]  # reopens as a resume would
    assert written in (ids[:0], ids[:4], ids[:8])  # whole batches in input order (the death may take a batch in flight)
