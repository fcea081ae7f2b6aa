import json

import pytest

from ggtqc.results import ResultsLog, ResumeError

CONFIG = {"filters": {"resolution": {"version": "1"}}}


def row(pair_id, verdict="accept"):
    return {"id": pair_id, "verdict": verdict, "reasons": [], "scores": {}}


def test_rows_append_and_resume_reads_done_ids(tmp_path):
    log = ResultsLog(tmp_path, CONFIG)
    log.append([row("a"), row("b", "reject")])
    again = ResultsLog(tmp_path, CONFIG)
    assert again.done == {"a", "b"}
    assert [r["id"] for r in again.rows()] == ["a", "b"]


def test_half_written_last_line_is_cut_off(tmp_path):
    ResultsLog(tmp_path, CONFIG).append([row("a")])
    with (tmp_path / "results.jsonl").open("a") as f:
        f.write('{"id": "b", "verdict": "acc')
    log = ResultsLog(tmp_path, CONFIG)
    assert log.done == {"a"}
    log.append([row("b")])
    assert [json.loads(line)["id"] for line in (tmp_path / "results.jsonl").read_text().splitlines()] == ["a", "b"]


def test_complete_last_row_missing_only_its_newline_is_kept(tmp_path):
    ResultsLog(tmp_path, CONFIG).append([row("a")])
    with (tmp_path / "results.jsonl").open("a") as f:
        f.write(json.dumps(row("b")))
    log = ResultsLog(tmp_path, CONFIG)
    assert log.done == {"a", "b"}
    log.append([row("c")])
    assert [r["id"] for r in log.rows()] == ["a", "b", "c"]


def test_damage_before_the_last_line_is_not_papered_over(tmp_path):
    ResultsLog(tmp_path, CONFIG)
    (tmp_path / "results.jsonl").write_text('{"id": "a"}\ngarbage\n{"id": "c"}\n')
    with pytest.raises(ResumeError, match="line 2 is not a row"):
        ResultsLog(tmp_path, CONFIG)


def test_changed_configuration_needs_fresh(tmp_path):
    ResultsLog(tmp_path, CONFIG).append([row("a")])
    changed = {"filters": {"resolution": {"version": "2"}}}
    with pytest.raises(ResumeError, match=r"another configuration \(changed: filters\); rerun with --fresh"):
        ResultsLog(tmp_path, changed)
    log = ResultsLog(tmp_path, changed, fresh=True)
    assert log.done == set() and json.loads((tmp_path / "run.json").read_text()) == changed


def test_results_without_run_file_are_not_silently_reused(tmp_path):
    (tmp_path / "results.jsonl").write_text(json.dumps(row("a")) + "\n")
    with pytest.raises(ResumeError, match="without run.json"):
        ResultsLog(tmp_path, CONFIG)


def test_summary_counts_verdicts_and_reasons(tmp_path):
    log = ResultsLog(tmp_path, CONFIG)
    log.append([
        row("a"),
        {**row("b", "reject"), "failed": ["resolution.scale"], "reasons": ["resolution.scale 0.5 < 1"]},
        {**row("c", "error"), "reasons": ["hq: corrupt image data (broken data stream)"]},
        {**row("d", "review"), "review": ["color.cast"], "reasons": ["color.cast 6.2 within review margin 0.65 of 6.5"]},
    ])  # fmt: skip
    summary = log.write_summary({"extra": 1})
    assert summary["verdicts"] == {"accept": 1, "review": 1, "reject": 1, "error": 1}
    assert summary["rejected_by"] == {"resolution.scale": 1}
    assert summary["review_by"] == {"color.cast": 1}
    assert summary["errors"] == {"hq: corrupt image data": 1}
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
