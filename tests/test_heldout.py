"""The held-out benchmark's pairs: every family and fault kind, labelled with the fields that should fire."""

import json

import cv2

from benchmarks import heldout, planted


def test_pairs_cover_every_family_and_fault_with_labels(tmp_path):
    labels = heldout.make_pairs(tmp_path, per_photo=1, seed=0, photos=("garden",))
    assert [l["what"] for l in labels] == list(heldout.HONEST) + list(heldout.FAULTS)
    assert [json.loads(line) for line in (tmp_path / "labels.jsonl").read_text().splitlines()] == labels
    for label in labels:
        lq, hq = (cv2.imread(str(tmp_path / side / f"{label['id']}.png")) for side in ("lq", "hq"))
        assert hq.shape[0] == lq.shape[0] * label["scale"] and hq.shape[1] == lq.shape[1] * label["scale"]
        assert label["kind"] == "honest" or set(label["expect_fields"]) == set(heldout.EXPECT[label["what"]])


def test_photos_are_none_of_the_calibration_sets():
    used = {name.split(":")[-1] for names in planted.SPLITS.values() for name in names}
    assert not used & set(heldout.PHOTOS)


def test_report_counts_review_as_kept_for_honest_pairs_and_caught_for_faults():
    honest = {"kind": "honest", "what": "sharpened", "scale": 1}
    fault = {"kind": "fault", "what": "colour_shift", "variant": "cast", "degradation": "jpeg_mild", "scale": 1, "expect_fields": ["color.cast"]}
    pairs = [
        (honest, {"verdict": "review", "review": ["artifacts"], "unsure": {"artifacts": "halo: ..."}}),
        (honest, {"verdict": "reject", "failed": ["artifacts.halo"]}),
        (fault, {"verdict": "review", "review": ["color"], "unsure": {"color": "cast: ..."}}),  # the right filter, unsure
        (fault, {"verdict": "reject", "failed": ["artifacts.change"]}),  # caught for another reason
        (fault, {"verdict": "accept"}),
    ]
    text = heldout.report(pairs, "t")
    assert "Honest pairs kept (accepted or sent to review): **1/2 = 0.500**" in text
    assert "accepted outright 0/2" in text
    assert "| sharpened | 1/2 = 0.50 | 0 | 1 |" in text
    assert "| colour_shift | 2/3 = 0.67 | 1 | 1/3 = 0.33 |" in text
