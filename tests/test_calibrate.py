"""Calibration from human labels: the bound, the guarantee on unseen pairs, and the command."""

import json
import shutil

import numpy as np
import pytest

from tests.helpers import REPO, read_rows, run_cli
from ggtqc.calibrate import calibrate, labels_needed, lower_bound
from ggtqc.decide import Rules
from ggtqc.labels import append_label, make_label

EXAMPLES = REPO / "examples" / "pairs"


@pytest.mark.parametrize(
    "kept,n,confidence,expected",
    [(114, 114, 0.9, 0.98000450), (150, 153, 0.9, 0.95685790), (98, 100, 0.95, 0.93838080), (1, 1, 0.9, 0.1)],
)
def test_lower_bound_is_clopper_pearson(kept, n, confidence, expected):
    assert lower_bound(kept, n, confidence) == pytest.approx(expected, abs=1e-7)  # scipy.stats.beta.ppf(1 - c, k, n - k + 1)


def test_the_claim_needs_114_kept_good_pairs_for_98_percent_at_90_percent_confidence():
    assert labels_needed(0.98, 0.9) == 114 and lower_bound(113, 113, 0.9) < 0.98 <= lower_bound(114, 114, 0.9)


RULES = Rules.from_run(
    {"f": {"thresholds": {"noise": 1.0, "sharp": 0.5}, "better": {"noise": "lower", "sharp": "higher"}}}
)


def population(n, rng, fault_share=0.3):
    """Pairs whose honest scores the default thresholds reject far too often: the noise
    threshold (1.0) sits inside the honest spread, and faults are noisy or blurred."""
    rows, truth = {}, {}
    for i in range(n):
        fault = rng.random() < fault_share
        noise, sharp = rng.normal(1.0, 0.4), rng.normal(1.0, 0.15)
        if fault and rng.random() < 0.5:
            noise += rng.uniform(1.5, 3.0)
        elif fault:
            sharp -= rng.uniform(0.5, 0.8)
        rows[f"p{i}"] = {"id": f"p{i}", "verdict": "accept", "scores": {"f": {"noise": noise, "sharp": sharp}}}
        truth[f"p{i}"] = "reject" if fault else "accept"
    return rows, truth


def kept_share(rows, truth, thresholds, label):
    limit_noise, limit_sharp = thresholds.get("f.noise", 1.0), thresholds.get("f.sharp", 0.5)
    ids = [i for i in rows if truth[i] == label]
    kept = [rows[i]["scores"]["f"]["noise"] <= limit_noise and rows[i]["scores"]["f"]["sharp"] >= limit_sharp for i in ids]
    return sum(kept) / len(kept)


def test_calibrated_thresholds_keep_the_target_share_of_unseen_good_pairs():
    rng = np.random.default_rng(0)
    rows, truth = population(600, rng)
    consensus = {i: {"id": i, "label": truth[i], "tags": [], "audit": True, "votes": {}} for i in rows}
    result = calibrate(rows, consensus, RULES, target=0.95, confidence=0.9)
    assert result.guaranteed and "guaranteed" in result.claim and result.counts["audit_good"] > 300
    unseen, unseen_truth = population(20000, np.random.default_rng(1))
    assert kept_share(unseen, unseen_truth, {}, "accept") < 0.6  # the defaults lose many honest pairs
    assert kept_share(unseen, unseen_truth, result.thresholds, "accept") >= 0.95
    assert 1 - kept_share(unseen, unseen_truth, result.thresholds, "reject") > 0.8  # and still catch most faults
    assert any("held-out report" in line for line in result.lines)


def test_too_few_audit_labels_give_thresholds_marked_unguaranteed():
    rng = np.random.default_rng(2)
    rows, truth = population(60, rng)
    consensus = {i: {"id": i, "label": truth[i], "tags": [], "audit": True, "votes": {}} for i in rows}
    result = calibrate(rows, consensus, RULES, target=0.98, confidence=0.9)
    assert not result.guaranteed and "NOT guaranteed" in result.claim and "at least 114" in result.claim
    assert result.thresholds["f.noise"] > 1.0  # still the best the labels support: looser than the default


def test_labels_from_the_review_queue_alone_never_certify():
    rng = np.random.default_rng(3)
    rows, truth = population(600, rng)
    consensus = {i: {"id": i, "label": truth[i], "tags": [], "audit": False, "votes": {}} for i in rows}
    result = calibrate(rows, consensus, RULES, target=0.95, confidence=0.9)
    assert not result.guaranteed and "no audit labels" in result.claim


@pytest.fixture(scope="module")
def labelled_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "qc"
    result = run_cli("filter", str(EXAMPLES), "-q", "--plugins", "resolution,ssim,color,hallucination", "--all-scores", "--out", str(out))
    assert result.returncode == 0, result.stderr
    faults = {"fault/color_cast", "fault/mirrored", "fault/pasted_object", "fault/wrong_image"}
    for row in read_rows(out):
        if row["verdict"] != "error":
            label = "reject" if row["id"] in faults else "accept"
            append_label(out / "labels.jsonl", make_label(row["id"], label, "ana", "audit"))
    return out


def test_calibrate_command_writes_a_config_that_decide_and_filter_load(labelled_run, tmp_path):
    run = tmp_path / "qc"
    shutil.copytree(labelled_run, run)
    with (run / "labels.jsonl").open("a") as f:
        f.write('{"id": "haze/coffee", "label": \n')  # a corrupt line: reported, never fatal
    thresholds = tmp_path / "thresholds.toml"
    result = run_cli("calibrate", str(run), "--out", str(thresholds))
    assert result.returncode == 0, result.stderr
    assert "labels.jsonl line" in result.stderr and "not JSON" in result.stderr
    assert "NOT guaranteed" in result.stdout and "at least 114" in result.stdout  # 8 good pairs cannot carry the claim
    assert "audit sample" in result.stdout and "held-out report" in result.stdout
    assert "change verdict under them" in result.stdout
    text = thresholds.read_text()
    assert text.startswith("# ggtqc calibrate") and "NOT guaranteed" in text
    assert "[hallucination.thresholds]" in text and "resolution" not in text  # hard limits stay as they are
    decided = run_cli("decide", str(run), "--config", str(thresholds))
    assert decided.returncode == 0, decided.stderr
    rows = {row["id"]: row for row in read_rows(run)}
    assert rows["lowlight/rocket"]["verdict"] == "accept"  # the good pair in the review band is kept
    assert all(rows[i]["verdict"] == "reject" for i in ("fault/color_cast", "fault/pasted_object", "fault/wrong_image"))
    again = run_cli("filter", str(EXAMPLES), "-q", "--plugins", "resolution,ssim,color,hallucination", "--all-scores",
                    "--config", str(thresholds), "--out", str(tmp_path / "fresh"))  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert {r["id"]: r["verdict"] for r in read_rows(tmp_path / "fresh")} == {i: r["verdict"] for i, r in rows.items()}


def test_calibrate_without_labels_says_how_to_get_them(labelled_run, tmp_path):
    run = tmp_path / "qc"
    shutil.copytree(labelled_run, run)
    (run / "labels.jsonl").unlink()
    result = run_cli("calibrate", str(run), "--out", str(tmp_path / "t.toml"))
    assert result.returncode == 2 and "ggtqc review" in result.stderr and not (tmp_path / "t.toml").exists()
    (run / "labels.jsonl").write_text(json.dumps({"id": "haze/coffee", "label": "accept", "reviewer": "a", "queue": "audit"}) + "\n")
    result = run_cli("calibrate", str(run), "--out", str(tmp_path / "t.toml"))
    assert result.returncode == 2 and "labelled faults" in result.stderr


def test_audit_good_pairs_unlike_the_fitted_ones_leave_the_claim_unmade_and_say_why():
    rows, truth = population(600, np.random.default_rng(4))
    audit = {i: int(i[1:]) % 2 == 0 for i in rows}
    for i, row in rows.items():  # the audit half's honest targets are noisier than any fitted one
        if audit[i] and truth[i] == "accept":
            row["scores"]["f"]["noise"] += 1.5
    consensus = {i: {"id": i, "label": truth[i], "tags": [], "audit": audit[i], "votes": {}} for i in rows}
    result = calibrate(rows, consensus, RULES, target=0.95, confidence=0.9)
    assert not result.guaranteed and "differ from the ones fitted on" in result.claim
