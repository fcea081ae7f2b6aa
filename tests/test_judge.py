"""The ``judge`` filter against a loopback stand-in for the Gemini API: no network."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from tests.helpers import make_pair_folder, photos, run_cli
from tests.fake_judge import FakeJudge
from tests.review_helpers import serving
from ggtqc.batch import Batch
from ggtqc.decide import RowDecider, Rules
from ggtqc.host import Entry, select_filters
from ggtqc.plugins.judge import Judge, parse_answer, view_bytes

KEY = "test-key-5b1c9e"


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    monkeypatch.setenv("GGTQC_CACHE", str(tmp_path / "cache"))
    return {"GEMINI_API_KEY": KEY, "GGTQC_CACHE": str(tmp_path / "cache")}


def pairs(count: int = 2) -> tuple[list[np.ndarray], list[np.ndarray]]:
    hq = [np.ascontiguousarray(p[:200, :240]) for p in photos()[:count]]
    lq = [np.ascontiguousarray(h[::2, ::2]) for h in hq]
    return lq, hq


def judge(fake: FakeJudge, **settings) -> Judge:
    instance = Judge(base_url=fake.url, retry_initial_delay_s=0.01, rpm=0.0, attempts=3, **settings)
    instance.setup(torch.device("cpu"))
    return instance


def score(instance: Judge, lq, hq, reasons=None):
    return instance.score(Batch([f"p{i}" for i in range(len(lq))], lq, hq, reasons=reasons))


def verdict(instance: Judge, scores, k: int, metric_review: bool = True) -> tuple[str, list[str]]:
    """The verdict of pair ``k`` after a metric sent it to review and the judge scored it."""
    rules = Rules(
        {"metric": [], "judge": Rules.from_run({"judge": _describe(instance)}).by_filter["judge"]},
        frozenset({"judge"}),
    )
    decider = RowDecider(rules)
    if metric_review:
        decider.review.append("metric.x")
        decider.entries.append(("review", "metric.x 0.5 within review margin 0.1 of 0.5"))
    decider.add_scores("judge", {n: v[k] for n, v in scores.values.items()}, scores.unsure[k], scores.notes[k])
    decision = decider.decision()
    return decision.verdict, decision.reasons


def _describe(instance: Judge) -> dict:
    return {
        "thresholds": {f.name: f.threshold for f in instance.fields},
        "margins": {f.name: f.margin for f in instance.fields},
        "better": {f.name: f.better for f in instance.fields},
    }


def test_good_and_bad_answers_become_fields_verdicts_and_reasons(env):
    lq, hq = pairs(3)
    with FakeJudge() as fake:
        fake.on(view_bytes(hq[1], 1024), "bad")
        fake.on(view_bytes(hq[2], 1024), "minor")
        instance = judge(fake, concurrency=3)
        scores = score(instance, lq, hq, reasons=[["metric.x 0.5 within review margin 0.1 of 0.5"], [], []])
        spent = instance.accounting()
    assert scores.values["faithful"] == [1.0, 0.0, 1.0]
    assert scores.values["quality"] == [4.0, 2.0, 4.0]
    assert scores.values["major_defects"] == [0.0, 1.0, 0.0] and scores.values["minor_defects"] == [0.0, 0.0, 1.0]
    assert scores.values["input_tokens"] == [2940] * 3 and scores.values["output_tokens"] == [160] * 3
    assert scores.unsure == [None, None, None]
    assert scores.notes[2] == "Faithful, with slightly waxy skin. [defects: plastic (minor)]"
    assert spent["requests"] == 3 and spent["input_tokens"] == 3 * 2940
    assert spent["usd"] == pytest.approx(3 * (2940 * 0.5 + 160 * 3.0) / 1e6)
    # the request: rubric, two JPEG views, the metrics' notes, a response schema
    body = next(r["body"] for r in fake.requests if "metric.x" in json.dumps(r["body"]))
    parts = body["contents"][0]["parts"]
    images = [p["inlineData"] for p in parts if "inlineData" in p]
    assert [i.get("mimeType", i.get("mime_type")) for i in images] == ["image/jpeg", "image/jpeg"]
    assert parts[-1]["text"] == "Metric notes: metric.x 0.5 within review margin 0.1 of 0.5"
    assert body["generationConfig"]["responseMimeType"] == "application/json"
    assert set(body["generationConfig"]["responseSchema"]["properties"]) == {"faithful", "quality", "defects", "reason"}
    assert fake.keys_seen == {KEY}
    # a passing judge settles the metric's review band; a failing one rejects
    assert verdict(instance, scores, 0) == ("accept", ["judge: A faithful, clean restoration of the same scene.", "judge settled the review of metric.x"])
    v, reasons = verdict(instance, scores, 1)
    assert v == "reject" and "judge.faithful 0 < 0.5" in reasons and "judge.major_defects 1 > 0.5" in reasons
    assert "judge: The HQ adds a window that the LQ does not show. [defects: hallucinated_object (major)]" in reasons


def test_429_then_success_is_retried_and_every_attempt_counted(env):
    lq, hq = pairs(1)
    with FakeJudge() as fake:
        fake.on(view_bytes(hq[0], 1024), "429", "good")
        instance = judge(fake)
        scores = score(instance, lq, hq)
    assert scores.values["faithful"] == [1.0] and scores.unsure == [None]
    assert len(fake.requests) == 2 and instance.accounting()["requests"] == 2


@pytest.mark.parametrize(
    "behaviour, why",
    [
        ("500", "judge error: request failed: HTTP 500"),
        ("blocked", "judge error: blocked by safety filters (SAFETY)"),
        ("safety", "judge error: answer blocked by safety filters (SAFETY)"),
        ("empty", "judge error: empty answer"),
        ("malformed", "judge error: malformed answer: not JSON"),
        ("wrong_keys", "judge error: malformed answer: keys defects, faithful, quality"),
    ],
)
def test_a_judge_that_cannot_answer_sends_the_pair_to_review_never_accepts(env, behaviour, why):
    lq, hq = pairs(1)
    with FakeJudge(default=behaviour) as fake:
        instance = judge(fake)
        scores = score(instance, lq, hq)
    assert scores.unsure[0].startswith(why), scores.unsure[0]
    assert all(np.isnan(scores.values[name][0]) for name in ("faithful", "quality", "major_defects"))
    assert len(fake.requests) == (3 if behaviour == "500" else 1)  # 5xx retried, `attempts` in all
    v, reasons = verdict(instance, scores, 0)
    assert v == "review" and f"judge unsure: {scores.unsure[0]}" in reasons
    assert verdict(instance, scores, 0, metric_review=False)[0] == "review"
    assert not (Path(env["GGTQC_CACHE"]) / "judge" / "answers.jsonl").exists()  # nothing cached


def test_a_rerun_sends_nothing_twice(env):
    lq, hq = pairs(2)
    with FakeJudge() as fake:
        first = score(judge(fake), lq, hq)
        assert len(fake.requests) == 2
        again = judge(fake)
        second = score(again, lq, hq)
        assert len(fake.requests) == 2
        other_model = score(judge(fake, model="gemini-3-pro"), lq, hq)
        assert len(fake.requests) == 4  # the model is part of the key
    assert second.values["faithful"] == first.values["faithful"] and second.notes == first.notes
    assert second.values["cost_usd"] == [0.0, 0.0] and again.accounting()["cached"] == 2
    assert other_model.unsure == [None, None]
    assert KEY not in (Path(env["GGTQC_CACHE"]) / "judge" / "answers.jsonl").read_text()


def test_parse_answer_checks_what_the_schema_promises():
    good = {"faithful": True, "quality": 5, "defects": [], "reason": "Fine."}
    assert parse_answer(json.dumps(good)) == (good, None)
    for bad, problem in [
        ({**good, "quality": 6}, "'quality' 6"),
        ({**good, "quality": True}, "'quality' True"),
        ({**good, "faithful": "yes"}, "'faithful'"),
        ({**good, "defects": [{"kind": "blurry", "severity": "major"}]}, "'defects'"),
        ({**good, "reason": " "}, "'reason' is empty"),
        ({**good, "extra": 1}, "keys"),
    ]:
        answer, why = parse_answer(json.dumps(bad))
        assert answer is None and problem in why
    assert parse_answer("[1, 2]")[1] == "malformed answer: a JSON list, not an object"


def test_which_pairs_the_judge_sees_and_that_all_leaves_it_out():
    assert [Judge().wants(v) for v in ("accept", "review", "reject")] == [False, True, False]
    assert [Judge(pairs="all").wants(v) for v in ("accept", "review", "reject")] == [True, True, False]
    assert [Judge(pairs="rejected").wants(v) for v in ("accept", "review", "reject")] == [False, False, True]
    assert Judge(pairs="some").missing()[-1] == "pairs = 'some'; give one of review, all, rejected"
    metric = type("Metric", (), {"cost": 1.0, "opt_in": False})
    available = {"judge": Entry(Judge, "judge", "ggtqc"), "metric": Entry(metric, "metric", "x")}
    assert select_filters("all", available) == ["metric"]
    assert select_filters("all,judge", available) == ["metric", "judge"]


def write_config(path: Path, url: str, pairs: str = "review") -> Path:
    # a scale margin of 0.5 around 1.0 puts every same-size pair in the review band
    path.write_text(f'[resolution.thresholds]\nhq_short_side = 64\n\n[resolution.margins]\nscale = 0.5\n\n[judge]\nbase_url = "{url}"\npairs = "{pairs}"\nretry_initial_delay_s = 0.01\n')
    return path


def test_filter_command_judges_review_pairs_shows_cost_and_reason(tmp_path, env):
    ids = make_pair_folder(tmp_path / "pairs", 3)
    out = tmp_path / "qc"
    with FakeJudge() as fake:
        config = write_config(tmp_path / "qc.toml", fake.url)
        args = ["filter", str(tmp_path / "pairs"), "--plugins", "resolution,judge", "--config", str(config), "--out", str(out)]
        result = run_cli(*args, env=env)
        assert result.returncode == 0, result.stderr
        assert len(fake.requests) == 3
        rows = {r["id"]: r for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())}
        assert {r["verdict"] for r in rows.values()} == {"accept"}, rows
        row = rows[ids[0]]
        assert row["notes"] == {"judge": "A faithful, clean restoration of the same scene."}
        assert "judge: A faithful, clean restoration of the same scene." in row["reasons"]
        assert row["scores"]["judge"]["faithful"] == 1.0 and row["scores"]["judge"]["input_tokens"] == 2940
        summary = json.loads((out / "summary.json").read_text())
        spent = summary["filters"]["judge"]["spent"]
        assert spent["requests"] == 3 and spent["usd"] == pytest.approx(3 * (2940 * 0.5 + 160 * 3.0) / 1e6)
        assert re.search(r"judge \$0\.00\d\d \(3 requests\)", result.stderr), result.stderr  # the progress line
        # the report and the review API show the judge's sentence
        assert run_cli("report", str(out), env=env).returncode == 0
        assert "judge: A faithful, clean restoration of the same scene." in (out / "report" / "index.html").read_text()
        with serving(out) as (_, client):  # the review page's pair API
            assert "judge: A faithful, clean restoration of the same scene." in client.json("/api/pair?queue=accepted&index=0")["reasons"]
        # a fresh rerun asks nothing again: every answer is cached
        again = run_cli(*args, "--fresh", "--processes", "2", env=env)
        assert again.returncode == 0 and len(fake.requests) == 3
        spent = json.loads((out / "summary.json").read_text())["filters"]["judge"]["spent"]
        assert spent["cached"] == 3 and spent["requests"] == 0  # added up over the worker processes
    for text in ((out / "results.jsonl").read_text(), (out / "summary.json").read_text(), (out / "run.json").read_text(), result.stderr):
        assert KEY not in text


def test_filter_command_without_a_key_stops_before_any_work(tmp_path, env):
    make_pair_folder(tmp_path / "pairs", 1)
    with FakeJudge() as fake:
        config = write_config(tmp_path / "qc.toml", fake.url)
        result = run_cli(
            "filter", str(tmp_path / "pairs"), "--plugins", "resolution,judge", "--config", str(config), "--out", str(tmp_path / "qc"),
            env={"GEMINI_API_KEY": "", "GOOGLE_API_KEY": ""},
        )  # fmt: skip
        assert not fake.requests
    assert result.returncode != 0
    assert "judge: no Gemini API key: set GEMINI_API_KEY" in result.stderr
    assert not (tmp_path / "qc" / "results.jsonl").exists()


def test_judge_estimate_prices_the_review_pairs_of_a_metrics_run(tmp_path, env):
    make_pair_folder(tmp_path / "pairs", 3)
    config = write_config(tmp_path / "qc.toml", "http://127.0.0.1:9")
    metrics = run_cli("filter", str(tmp_path / "pairs"), "-q", "--plugins", "resolution", "--config", str(config), "--out", str(tmp_path / "qc"), env=env)
    assert metrics.returncode == 0, metrics.stderr
    result = run_cli("judge-estimate", str(tmp_path / "qc"), "--config", str(config), env=env)
    assert result.returncode == 0, result.stderr
    per_pair = (2 * 1120 + 700) * 0.5 / 1e6 + 200 * 3.0 / 1e6
    assert result.stdout.startswith("3 pairs (review) x (2940 input tokens") and f"${3 * per_pair:.4f}" in result.stdout


def test_batch_mode_submits_one_job_and_a_later_run_collects_it_into_the_cache(env):
    lq, hq = pairs(3)
    with FakeJudge() as fake:
        fake.on(view_bytes(hq[1], 1024), "bad")
        fake.on(view_bytes(hq[2], 1024), "malformed")
        first = score(judge(fake, batch=True), lq, hq)
        assert [r["path"].endswith(":batchGenerateContent") for r in fake.requests] == [True]
        assert all(u == "judge batch job batches/job0 submitted; run again later to collect" for u in first.unsure)
        running = score(judge(fake, batch=True), lq, hq)  # polled once: still running
        assert all("still running" in u for u in running.unsure) and len(fake.jobs) == 1
        collector = judge(fake, batch=True)  # collected at setup, at half price
        spent = collector.accounting()
        assert spent["usd"] == pytest.approx(3 * (2940 * 0.5 + 160 * 3.0) / 1e6 * 0.5)
        done = score(collector, lq, hq)
    assert done.values["faithful"][:2] == [1.0, 0.0] and done.unsure[:2] == [None, None]
    assert done.unsure[2] == "judge batch job batches/job1 submitted; run again later to collect"  # the unusable answer, asked again
    assert not [r for r in fake.requests if r["path"].endswith(":generateContent")]  # nothing interactive


def test_an_unreachable_server_stops_sending_and_the_pairs_go_to_review(env):
    lq, hq = pairs(3)
    instance = Judge(base_url="http://127.0.0.1:9", retry_initial_delay_s=0.01, rpm=0.0, attempts=2, unreachable_after=2, concurrency=1)
    instance.setup(torch.device("cpu"))
    scores = score(instance, lq, hq)
    assert all(u.startswith("judge error: ") for u in scores.unsure), scores.unsure
    assert "cannot reach http://127.0.0.1:9" in scores.unsure[-1] and instance.accounting()["requests"] == 2


def test_thinking_tokens_are_billed_as_output_for_each_pair_and_the_run(env):
    lq, hq = pairs(4)
    with FakeJudge() as fake:
        fake.usage = {"promptTokenCount": 3000, "candidatesTokenCount": 50, "thoughtsTokenCount": 4000}
        instance = judge(fake)
        scores = score(instance, lq[:2], hq[:2])
        spent = instance.accounting()
        fake.polls_while_running = 0
        score(judge(fake, batch=True), lq[2:], hq[2:])
        collected = judge(fake, batch=True).accounting()  # the job collected at setup, at half price
    per_pair = (3000 * 0.5 + 4050 * 3.0) / 1e6
    assert scores.values["output_tokens"] == [4050, 4050] and scores.values["cost_usd"] == pytest.approx([per_pair, per_pair])
    assert spent["output_tokens"] == 2 * 4050 and spent["usd"] == pytest.approx(2 * per_pair)
    assert collected["output_tokens"] == 2 * 4050 and collected["usd"] == pytest.approx(per_pair)


@pytest.mark.parametrize(
    "state, answered",
    [("BATCH_STATE_FAILED", 0), ("BATCH_STATE_EXPIRED", 0), ("BATCH_STATE_CANCELLED", 1), ("JOB_STATE_PARTIALLY_SUCCEEDED", 2)],
)
def test_a_batch_job_that_ends_keeps_its_answers_and_only_the_rest_go_again(env, state, answered):
    lq, hq = pairs(3)
    with FakeJudge() as fake:
        fake.polls_while_running = 0
        fake.job_state, fake.answered_before_end = state, answered
        score(judge(fake, batch=True), lq, hq)
        collector = judge(fake, batch=True)
        assert not collector.jobs.pending  # finished: never waited on again
        again = score(collector, lq, hq)
        assert len(fake.jobs["batches/job1"]["requests"]) == 3 - answered  # answers held are not bought twice
    assert again.values["faithful"][:answered] == [1.0] * answered and again.unsure[:answered] == [None] * answered
    assert again.unsure[answered:] == ["judge batch job batches/job1 submitted; run again later to collect"] * (3 - answered)
