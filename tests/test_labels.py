import json

import pytest

from ggtqc.labels import LabelError, append_label, make_label, read_labels


def test_last_label_per_pair_and_reviewer_wins(tmp_path):
    path = tmp_path / "labels.jsonl"
    append_label(path, make_label("a", "accept", "ana", "audit"))
    append_label(path, make_label("a", "reject", "ana", "audit", tags=["plastic"]))
    append_label(path, make_label("a", "accept", "bo", "review"))
    labels = read_labels(path)
    assert labels.latest[("a", "ana")]["label"] == "reject"
    assert labels.latest[("a", "bo")]["label"] == "accept"
    assert labels.reviewers() == ["ana", "bo"]
    assert not labels.problems


def test_corrupt_and_half_written_lines_are_reported_and_skipped(tmp_path):
    path = tmp_path / "labels.jsonl"
    append_label(path, make_label("a", "accept", "ana", "audit"))
    with path.open("ab") as f:
        f.write(b'{"id": "b", "label": "rej')  # a crash mid-write
    append_label(path, make_label("c", "reject", "ana", "audit"))  # must not be swallowed
    with path.open("ab") as f:
        f.write(json.dumps({"id": "d", "label": "maybe", "reviewer": "ana", "queue": "audit"}).encode() + b"\n")
    labels = read_labels(path)
    assert sorted(pair for pair, _ in labels.latest) == ["a", "c"]
    assert [p.split(":")[0] for p in labels.problems] == ["labels.jsonl line 2", "labels.jsonl line 4"]
    assert "label" in labels.problems[1]


def test_consensus_is_the_majority_and_drops_ties_and_unsure(tmp_path):
    path = tmp_path / "labels.jsonl"
    for pair, label, reviewer, queue in [
        ("a", "accept", "ana", "audit"), ("a", "accept", "bo", "review"), ("a", "reject", "cy", "review"),
        ("b", "accept", "ana", "review"), ("b", "reject", "bo", "review"),
        ("c", "unsure", "ana", "audit"),
        ("d", "reject", "ana", "review"),
    ]:  # fmt: skip
        append_label(path, make_label(pair, label, reviewer, queue, tags=["text_changed"] if label == "reject" else []))
    consensus = read_labels(path).consensus()
    assert sorted(consensus) == ["a", "d"]
    assert consensus["a"]["label"] == "accept" and consensus["a"]["audit"]
    assert consensus["d"] == {"id": "d", "label": "reject", "tags": ["text_changed"], "audit": False, "votes": {"reject": 1}}


def test_a_bad_label_is_refused_before_writing(tmp_path):
    path = tmp_path / "labels.jsonl"
    with pytest.raises(LabelError, match="label"):
        make_label("a", "yes", "ana", "audit")
    with pytest.raises(LabelError, match="reviewer"):
        append_label(path, {"id": "a", "label": "accept", "reviewer": "", "queue": "audit"})
    assert not path.exists()
