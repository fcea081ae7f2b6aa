"""``ggtqc decide``: re-deciding a finished run from its stored scores, as a user runs it."""

import json
import shutil

import pytest

from tests.helpers import REPO, read_rows, run_cli

EXAMPLES = REPO / "examples" / "pairs"


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "qc"
    result = run_cli("filter", str(EXAMPLES), "-q", "--plugins", "resolution,ssim,color,hallucination", "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture
def run(scored, tmp_path):
    shutil.copytree(scored, tmp_path / "qc")
    return tmp_path / "qc"


def test_decide_applies_new_thresholds_and_keeps_the_previous_verdicts(run, tmp_path):
    before = {row["id"]: row for row in read_rows(run)}
    assert before["lowlight/rocket"]["verdict"] == "review"
    config = tmp_path / "strict.toml"
    config.write_text("[hallucination.thresholds]\nadded = 0.3\n")
    result = run_cli("decide", str(run), "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert "1 changed verdict" in result.stdout and "review -> reject: 1" in result.stdout
    after = {row["id"]: row for row in read_rows(run)}
    assert list(after) == list(before)
    rocket = after["lowlight/rocket"]
    assert rocket["verdict"] == "reject" and rocket["failed"] == ["hallucination.added"] and "review" not in rocket
    assert rocket["reasons"] == ["hallucination.added 0.3907 > 0.3"]
    assert rocket["scores"] == before["lowlight/rocket"]["scores"]  # scores untouched
    [history] = (run / "history").iterdir()
    assert [r["verdict"] for r in read_rows(history)] == [r["verdict"] for r in before.values()]
    run_json = json.loads((run / "run.json").read_text())
    assert run_json["filters"]["hallucination"]["thresholds"]["added"] == 0.3
    assert run_json["filters"]["hallucination"]["margins"]["added"] == pytest.approx(0.015)  # the same share as before
    summary = json.loads((run / "summary.json").read_text())
    assert summary["verdicts"]["review"] == 0 and summary["rejected_by"]["hallucination.added"] >= 1
    assert summary["filters"]["hallucination"]["thresholds"]["added"] == 0.3


def test_decide_with_the_run_config_changes_nothing_and_dry_run_writes_nothing(run, tmp_path):
    rows = (run / "results.jsonl").read_bytes()
    result = run_cli("decide", str(run))
    assert result.returncode == 0 and "0 changed verdict" in result.stdout
    assert (run / "results.jsonl").read_bytes() == rows
    config = tmp_path / "loose.toml"
    config.write_text("[hallucination.thresholds]\nadded = 0.9\nremoved = 0.2\nreplaced = 2\n")
    result = run_cli("decide", str(run), "--config", str(config), "--dry-run")
    assert result.returncode == 0 and "review -> accept: 1" in result.stdout
    assert (run / "results.jsonl").read_bytes() == rows and len(list((run / "history").iterdir())) == 1


def test_decide_refuses_when_a_needed_score_was_never_computed(run, tmp_path):
    config = tmp_path / "loose.toml"
    config.write_text("[resolution.thresholds]\nhq_short_side = 64\nscale = 0.25\n")  # frees the small target
    result = run_cli("decide", str(run), "--config", str(config))
    assert result.returncode == 2
    message = result.stderr.strip()
    assert message.count("\n") == 0 and "--all-scores" in message and "ssim (1)" in message
    assert not (run / "history").exists()


@pytest.mark.parametrize(
    "text,message",
    [
        ("[ssim]\nanalysis_side = 128\n", "changes how pairs are scored"),
        ("[clip.thresholds]\nsimilarity = 0.5\n", "unknown filter 'clip'"),
        ("[color.thresholds]\ncasts = 5\n", "did you mean 'cast'"),
    ],
)
def test_decide_says_what_is_wrong_with_a_config_in_one_line(run, tmp_path, text, message):
    config = tmp_path / "bad.toml"
    config.write_text(text)
    result = run_cli("decide", str(run), "--config", str(config))
    assert result.returncode == 2 and message in result.stderr and result.stderr.strip().count("\n") == 0


def test_decide_on_a_folder_that_is_not_a_run(tmp_path):
    result = run_cli("decide", str(tmp_path))
    assert result.returncode == 2 and "holds no ggtqc results" in result.stderr


def test_a_run_of_row_schema_1_is_re_decided_with_default_margins(run):
    old = json.loads((run / "run.json").read_text())
    for key in ("row_schema", "order"):
        del old[key]
    for spec in old["filters"].values():
        del spec["margins"]
    (run / "run.json").write_text(json.dumps(old))
    rows = [{k: v for k, v in row.items() if k != "review"} for row in read_rows(run)]
    for row in rows:  # schema 1 knew accept, reject and error only
        row["verdict"] = "accept" if row["verdict"] == "review" else row["verdict"]
    (run / "results.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    result = run_cli("decide", str(run))
    assert result.returncode == 0, result.stderr
    assert "accept -> review" in result.stdout  # the band appears; filters run in name order
    after = {row["id"]: row for row in read_rows(run)}
    assert after["lowlight/rocket"]["verdict"] == "review"
    assert json.loads((run / "run.json").read_text())["row_schema"] == 2
