"""The planted-fault accuracy benchmark on a small subset, through the real command."""

import sys

import cv2
import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import accuracy  # noqa: E402
import planted  # noqa: E402

@pytest.fixture(scope="module")
def result():
    return accuracy.evaluate("calibration", per_photo=1, seed=0)


def recall(result, fault, strength="clear"):
    hits = result["cases"][(fault, strength)]
    return sum(hits) / len(hits)


def test_honest_pairs_are_accepted(result):
    honest = [ok for (kind, _), oks in result["cases"].items() if kind == "honest" for ok in oks]
    assert len(honest) == 4 * len(planted.GROUPS)
    assert sum(honest) / len(honest) >= 0.95, result["honest_failures"]


@pytest.mark.parametrize("fault", planted.FAULTS)
def test_clear_faults_are_caught(result, fault):
    assert recall(result, fault) >= 0.95, result["caught_by"][(fault, "clear")]


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
