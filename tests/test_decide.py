"""The verdict rule (ggtqc.decide): margins, unsure filters, and one rule for runner and decide."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from ggtqc import Field, Filter, Scores
from ggtqc.batch import LoadedPair
from ggtqc.config import ConfigError, load_config
from ggtqc.decide import Rule, Rules, decide_row
from ggtqc.host import Entry
from ggtqc.pairs import Pair
from ggtqc.plugins.resolution import Resolution
from ggtqc.runner import Stage, rules_of, score_batch


@pytest.mark.parametrize(
    "better,value,outcome",
    [
        ("lower", 8.0, "fail"), ("lower", 7.1, "review"), ("lower", 6.5, "review"), ("lower", 5.9, "review"),
        ("lower", 5.7, "pass"), ("higher", 5.7, "fail"), ("higher", 6.0, "review"), ("higher", 7.5, "pass"),
        ("lower", math.nan, "pass"), ("lower", None, "pass"),
    ],
)  # fmt: skip
def test_a_score_within_the_margin_on_either_side_goes_to_review(better, value, outcome):
    assert Rule("f.x", better, 6.5, margin=0.65).judge(value) == outcome


def test_without_a_margin_the_threshold_is_a_hard_limit():
    rule = Rule("resolution.scale", "higher", 1.0, margin=0.0)
    assert [rule.judge(v) for v in (0.99, 1.0, 1.01)] == ["fail", "pass", "pass"]
    assert Rule("f.x", "lower", None, margin=1.0).judge(1e9) == "pass"  # record-only


class Tilt(Filter):
    """A field scored from the HQ's mean, and a note when the LQ is flat (nothing to judge)."""

    name = "tilt"
    version = "1"
    fields = (Field("level", "lower", 100.0),)

    def score(self, batch):
        unsure = ["flat source" if lq.std() == 0 else None for lq in batch.lq]
        return Scores({"level": [float(hq.mean()) for hq in batch.hq]}, unsure=unsure)


def loaded(pair_id, fill, hq_side=300, lq_noise=True):
    rng = np.random.default_rng(0)
    lq = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) if lq_noise else np.full((64, 64, 3), 9, np.uint8)
    pair = Pair(pair_id, Path(f"/p/lq/{pair_id}.png"), Path(f"/p/hq/{pair_id}.png"), Path("/p"))
    return LoadedPair(pair, lq, np.full((hq_side, hq_side, 3), fill, np.uint8))


def stages(**margins):
    return [
        Stage(Resolution(), Entry(Resolution, "resolution", "ggtqc"), {f.name: f.threshold for f in Resolution.fields}),
        Stage(Tilt(), Entry(Tilt, "tilt", "test"), {"level": 100.0}, margins),
    ]


def test_runner_sends_band_and_unsure_pairs_to_review_and_decide_row_agrees():
    pairs = [
        loaded("clear", 50), loaded("near", 95), loaded("over", 140), loaded("flat", 50, lq_noise=False),
        loaded("small_and_near", 95, hq_side=32),
    ]  # fmt: skip
    the_stages = stages()
    rows = {row["id"]: row for row in score_batch(pairs, the_stages, False, torch.device("cpu"))}
    assert rows["clear"]["verdict"] == "accept" and "review" not in rows["clear"]
    assert rows["near"]["verdict"] == "review" and rows["near"]["review"] == ["tilt.level"]
    assert rows["near"]["reasons"] == ["tilt.level 95 within review margin 5 of 100"]  # the default 5 % margin
    assert rows["over"]["verdict"] == "reject" and rows["over"]["failed"] == ["tilt.level"]
    assert rows["flat"]["verdict"] == "review" and rows["flat"]["unsure"] == {"tilt": "flat source"}
    assert rows["flat"]["reasons"] == ["tilt unsure: flat source"]
    small = rows["small_and_near"]  # rejected by resolution: the later filter is skipped
    assert small["verdict"] == "reject" and "tilt" not in small["scores"] and "review" not in small
    rules = rules_of(the_stages)
    for row in rows.values():
        decision = decide_row(row, rules)
        assert (decision.verdict, decision.reasons, decision.failed) == (row["verdict"], row["reasons"], row.get("failed", []))


def test_a_configured_margin_widens_or_removes_the_band():
    near = loaded("near", 95)
    [row] = score_batch([near], stages(level=0.0), False, torch.device("cpu"))
    assert row["verdict"] == "accept"
    [row] = score_batch([loaded("far", 80)], stages(level=25.0), False, torch.device("cpu"))
    assert row["verdict"] == "review"


def test_margins_load_from_the_config_and_a_misplaced_threshold_says_where_it_goes(tmp_path):
    config = tmp_path / "qc.toml"
    config.write_text("[tilt.margins]\nlevel = 2.5\n")
    assert load_config(config, {"tilt": Tilt})["tilt"].margins == {"level": 2.5}
    config.write_text("[tilt.margins]\nlevel = -1\n")
    with pytest.raises(ConfigError, match="a margin is >= 0"):
        load_config(config, {"tilt": Tilt})
    config.write_text("[tilt]\nlevel = 90\n")
    with pytest.raises(ConfigError, match=r"its threshold goes in \[tilt.thresholds\] as level = 90"):
        load_config(config, {"tilt": Tilt})


def test_rules_of_a_schema_1_run_take_the_default_margins():
    rules = Rules.from_run({"color": {"thresholds": {"cast": 6.5, "chroma": None}, "better": {"cast": "lower", "chroma": "lower"}}})
    assert [(r.field, r.margin) for r in rules.by_filter["color"]] == [("color.cast", pytest.approx(0.325)), ("color.chroma", 0.0)]
    old_row = {"id": "a", "verdict": "reject", "reasons": ["color.cast 7.5 > 6.5"], "failed": ["color.cast"], "scores": {"color": {"cast": 7.5}}}
    assert decide_row(old_row, rules).verdict == "reject"
    errored = {"id": "b", "verdict": "error", "reasons": ["filter color failed: ValueError: x"], "scores": {}}
    assert decide_row(errored, rules).reasons == ["filter color failed: ValueError: x"]


class Judge(Filter):
    """A second opinion on borderline pairs only: bright targets fail, others pass."""

    name = "judge"
    version = "1"
    cost = 1e6
    settles_review = True
    fields = (Field("faithful", "higher", 0.5, margin=0),)
    seen: list = []

    def wants(self, verdict_so_far):
        return verdict_so_far == "review"

    def score(self, batch):
        Judge.seen += list(batch.ids)
        faithful = [0.0 if hq.mean() > 96 else 1.0 for hq in batch.hq]
        return Scores({"faithful": faithful}, notes=["too bright" if f == 0 else "looks faithful" for f in faithful])


def test_a_settling_filter_scores_only_the_review_band_and_decides_it():
    Judge.seen = []
    the_stages = [*stages(), Stage(Judge(), Entry(Judge, "judge", "test"), {"faithful": 0.5})]
    pairs = [loaded("clear", 50), loaded("near_dim", 96), loaded("near_bright", 100), loaded("over", 140)]
    rows = {row["id"]: row for row in score_batch(pairs, the_stages, False, torch.device("cpu"))}
    assert sorted(Judge.seen) == ["near_bright", "near_dim"]  # only the review band is sent
    assert rows["clear"]["verdict"] == "accept" and "judge" not in rows["clear"]["scores"]
    assert rows["over"]["verdict"] == "reject" and "judge" not in rows["over"]["scores"]
    dim = rows["near_dim"]
    assert dim["verdict"] == "accept" and "review" not in dim and dim["notes"] == {"judge": "looks faithful"}
    assert dim["reasons"] == ["judge: looks faithful", "judge settled the review of tilt.level"]
    bright = rows["near_bright"]
    assert bright["verdict"] == "reject" and bright["failed"] == ["judge.faithful"]
    assert bright["reasons"] == ["judge.faithful 0 < 0.5", "judge: too bright"]
    rules = rules_of(the_stages)
    assert rules.settling == {"judge"}
    for row in rows.values():
        decision = decide_row(row, rules)
        assert (decision.verdict, decision.reasons) == (row["verdict"], row["reasons"])
