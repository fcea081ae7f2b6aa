"""The planted-fault accuracy benchmark on a small subset, through the real command."""

import cv2
import numpy as np
import pytest

from benchmarks import accuracy, planted
from ggtqc.calibrate import wilson

TARGET = 0.95  # honest acceptance and clear-strength recall (docs/accuracy.md)
# Faults whose pooled clear recall (benchmarks/results/accuracy.md, three seeds) is within a
# few pairs of the target (0.95 to 0.98): on 8 pairs one miss is chance, so they are held to a
# floor that one or two misses pass, and the pooled benchmark measures the target.
KNOWN_GAPS = {
    "removed_content": "content removed under heavy snow or in the dark is partly missed (docs/accuracy.md: known gaps)",
    "color_shift": "a cast along the photo's dominant hue reads partly as saturation (docs/accuracy.md: known gaps)",
}
GAP_FLOOR = 0.75


@pytest.fixture(scope="module")
def result():
    return accuracy.evaluate("calibration", per_photo=1, seeds=(0, 1))  # two seeds pooled, as docs/accuracy.md's numbers are


def recall(result, fault, strength="clear"):
    hits = result["cases"][(fault, strength)]
    return sum(hits) / len(hits)


def test_seeds_get_their_own_ids():
    twin = {"id": "twin/noise/clear/a-0", "kind": "twin", "of": "fault/noise/clear/a-0"}
    assert accuracy.seeded(twin, 3) == {"id": "seed3/twin/noise/clear/a-0", "kind": "twin", "of": "seed3/fault/noise/clear/a-0"}


def test_wilson_interval():
    assert wilson(0, 10)[1] == pytest.approx(1.96**2 / (10 + 1.96**2))  # closed form at k = 0
    low, high = wilson(131, 144)
    assert low < 131 / 144 < high and high - low < 0.1
    assert accuracy.share([True] * 9 + [False], interval=True) == "9/10 = 0.90 (0.60-0.98)"


def test_honest_pairs_are_accepted(result):
    honest = [ok for (kind, _), oks in result["cases"].items() if kind == "honest" for ok in oks]
    assert len(honest) == 2 * 4 * len(planted.GROUPS)  # two seeds, four photos, each group once
    assert sum(honest) / len(honest) >= TARGET, result["honest_failures"]


@pytest.mark.parametrize("fault", planted.FAULTS)
def test_clear_faults_are_caught(result, fault):
    assert len(result["cases"][(fault, "clear")]) == 8
    floor = GAP_FLOOR if fault in KNOWN_GAPS else TARGET
    assert recall(result, fault) >= floor, (KNOWN_GAPS.get(fault, ""), result["caught_by"][(fault, "clear")])


def test_faults_borrow_from_another_photo_never_the_same(tmp_path):
    labels = planted.make_pairs(tmp_path, "calibration", per_photo=4, seed=0, strengths=("clear",))
    faults = [label for label in labels if label["kind"] == "fault"]
    assert faults and all(label["other"] in planted.SPLITS["calibration"] and label["other"] != label["photo"] for label in faults)


def test_pairs_come_at_the_scales_and_degradations_asked_for(tmp_path):
    labels = planted.make_pairs(tmp_path, "calibration", per_photo=1, seed=0, strengths=("clear",), scales=(4,), degradations="shifted")
    honest = [label for label in labels if label["kind"] == "honest"]
    assert {label["scale"] for label in labels} == {4} and len(honest) == 4 * len(planted.GROUPS)
    for label in honest:
        lq, hq = (cv2.imread(str(tmp_path / side / f"{label['id']}.png")) for side in ("lq", "hq"))
        assert hq.shape[:2] == (4 * lq.shape[0], 4 * lq.shape[1])
    assert set(planted.DEGRADATIONS["shifted"]) == set(planted.GROUPS)


def test_twins_are_the_targets_before_their_faults_and_change_nothing_else(tmp_path):
    kwargs = dict(split="calibration", per_photo=1, seed=0, strengths=("clear",), scales=(2,))
    plain = planted.make_pairs(tmp_path / "plain", **kwargs)
    labels = planted.make_pairs(tmp_path / "twins", **kwargs, twins=True)
    assert [label for label in labels if label["kind"] != "twin"] == plain

    def read(root, side, label_id):
        return (root / side / f"{label_id}.png").read_bytes()

    for label in plain:
        for side in ("lq", "hq"):
            assert read(tmp_path / "plain", side, label["id"]) == read(tmp_path / "twins", side, label["id"])
    twins = [label for label in labels if label["kind"] == "twin"]
    assert len(twins) == sum(label["kind"] == "fault" for label in plain)
    for twin in twins:
        assert read(tmp_path / "twins", "lq", twin["id"]) == read(tmp_path / "twins", "lq", twin["of"])
        assert read(tmp_path / "twins", "hq", twin["id"]) != read(tmp_path / "twins", "hq", twin["of"])


def test_recall_where_the_twin_passed_leaves_out_faults_whose_twin_was_rejected():
    labels = [
        {"id": "h1", "kind": "honest", "what": "snow", "strength": None},
        {"id": "f1", "kind": "fault", "what": "noise", "strength": "clear"},
        {"id": "t1", "kind": "twin", "what": "noise", "strength": "clear", "group": "snow", "of": "f1"},
        {"id": "f2", "kind": "fault", "what": "noise", "strength": "clear"},
        {"id": "t2", "kind": "twin", "what": "noise", "strength": "clear", "group": "snow", "of": "f2"},
        {"id": "f3", "kind": "fault", "what": "noise", "strength": "clear"},
        {"id": "t3", "kind": "twin", "what": "noise", "strength": "clear", "group": "snow", "of": "f3"},
    ]
    verdicts = {"h1": "accept", "f1": "reject", "t1": "accept", "f2": "reject", "t2": "reject", "f3": "accept", "t3": "accept"}
    result = accuracy.summarize(labels, {k: {"verdict": v, "failed": ["color.cast"] if v == "reject" else []} for k, v in verdicts.items()})
    assert result["cases"][("noise", "clear")] == [True, True, False]  # every faulty pair
    assert result["paired"][("noise", "clear")] == [True, False]  # f2 left out: its twin was rejected too
    text = accuracy.table(result, "t")
    assert "clear, twin passed" in text and "Twins accepted: 2/3" in text
    assert "| snow | 1/1 | 2/3 |" in text and "Twins were rejected by: color.cast (1)" in text


def test_a_table_by_scale_counts_honest_acceptance_and_clear_recall_at_each_scale():
    labels = [
        {"id": "h1", "kind": "honest", "what": "snow", "strength": None, "scale": 1},
        {"id": "h2", "kind": "honest", "what": "snow", "strength": None, "scale": 2},
        {"id": "f1", "kind": "fault", "what": "noise", "strength": "clear", "scale": 2},
        {"id": "f2", "kind": "fault", "what": "noise", "strength": "clear", "scale": 2},
        {"id": "f3", "kind": "fault", "what": "noise", "strength": "subtle", "scale": 1},
    ]
    verdicts = {"h1": "accept", "h2": "reject", "f1": "reject", "f2": "accept", "f3": "accept"}
    result = accuracy.summarize(labels, {k: {"verdict": v, "failed": ["x.y"] if v == "reject" else []} for k, v in verdicts.items()})
    text = accuracy.table(result, "t")
    assert "| | 1x | 2x |" in text
    assert "| honest | 1/1 | 0/1 |" in text and "| noise | - | 1/2 |" in text  # the subtle fault is not counted
    one_scale = [label for label in labels if label["scale"] == 2]
    assert "By HQ/LQ scale" not in accuracy.table(accuracy.summarize(one_scale, {k: {"verdict": verdicts[k]} for k in ("h2", "f1", "f2")}), "t")


def test_content_is_removed_where_the_lq_can_show_it():
    # A 1-px checkerboard (top left) that a 2x LQ averages away; 4-px stripes (bottom right) it keeps.
    hq = np.full((240, 240, 3), 128, np.uint8)
    yy, xx = np.mgrid[:80, :80]
    hq[10:90, 10:90] = (((yy + xx) % 2) * 120 + 60)[..., None]
    hq[150:230, 150:230] = ((xx // 4 % 2) * 120 + 60)[..., None]
    centres = {}
    for scale in (1, 2):
        lq = cv2.resize(hq, (240 // scale, 240 // scale), interpolation=cv2.INTER_AREA)
        context = planted.Context(lq, hq, np.random.default_rng(0))
        out, (y, x, h, w) = planted.removed_content(hq, context, "clear")
        centres[scale] = (y + h / 2, x + w / 2)
        assert (out != hq).any() and (out[:y] == hq[:y]).all()  # erased inside the box only
    assert max(centres[1]) < 120 < min(centres[2])
