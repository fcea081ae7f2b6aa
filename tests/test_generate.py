"""``ggtqc generate`` through the real google-genai client against a fake Gemini server."""

import hashlib
import json
import os
import signal
import socket
import subprocess
import time

import cv2
import numpy as np
import pytest

from tests.helpers import GGTQC, kill_after_rows, photos, read_rows, run_cli, save_rgb, wait_for_rows
from tests.fake_gemini import FakeGemini, photo_of
from PIL import Image
from ggtqc.images import decode_bytes as decode_image_bytes
from ggtqc.images import decode_image
from ggtqc.plugins.gemini import FIXED_PROMPT, nearest_aspect_ratio

KEY = "AIzaFAKE-test-key-0123456789"


@pytest.fixture()
def lq_dir(tmp_path):
    folder = tmp_path / "photos"
    for k, image in enumerate(photos()[:4]):
        save_rgb(folder / f"set{k % 2}" / f"photo{k}.jpg", cv2.resize(image, (96 + 16 * k, 64 + 8 * k)), IMWRITE_JPEG_QUALITY=80)
    return folder


def photo_bytes(lq_dir, name):
    return next(lq_dir.rglob(f"{name}.jpg")).read_bytes()


def generate(fake, lq_dir, out, *args, env=None, key=KEY):
    environment = {"GEMINI_API_KEY": key} if key else {"GEMINI_API_KEY": "", "GOOGLE_API_KEY": ""}
    return run_cli(
        "generate", str(lq_dir), "--out", str(out), "--base-url", fake.url, "--set", "retry_initial_delay_s=0.01",
        "--rpm", "0", *args, env={**environment, **(env or {})},
    )  # fmt: skip


def last_rows(out):
    return {row["id"]: row for row in (json.loads(line) for line in (out / "generation.jsonl").read_text().splitlines())}


def test_success_writes_a_pairs_folder_that_filter_reads(tmp_path, lq_dir):
    out = tmp_path / "pairs"
    with FakeGemini() as fake:
        result = generate(fake, lq_dir, out)
    assert result.returncode == 0, result.stderr
    rows = last_rows(out)
    assert sorted(rows) == ["set0/photo0", "set0/photo2", "set1/photo1", "set1/photo3"]
    for pair_id, row in rows.items():
        assert row["status"] == "ok" and row["hq"] == f"hq/{pair_id}.png"
        assert (out / row["lq"]).read_bytes() == next(lq_dir.glob(f"{pair_id}.jpg")).read_bytes()  # copied unchanged
        assert decode_image(out / row["hq"]).shape[:2] == tuple(2 * v for v in decode_image(out / row["lq"]).shape[:2])
        assert row["analysis"]["degradations"] == ["noise", "blur"]
        assert row["prompt"].startswith("Remove the noise and blur from this photo.")
        assert row["model"] == "gemini-3.1-flash-image" and row["vlm_model"] == "gemini-3-flash"
        assert row["usage"] == {"input_tokens": 2240, "text_output_tokens": 250, "image_output_tokens": 1290, "thinking_tokens": 0}
        assert row["cost_usd"] == pytest.approx(0.067 + 2240 * 0.5e-6 + 250 * 3e-6)
    assert rows["set0/photo0"]["aspect_ratio"] == "3:2"  # 96x64
    image_requests = [r["body"] for r in fake.requests if r["kind"] == "image"]
    assert all(b["generationConfig"]["responseModalities"] == ["IMAGE"] for b in image_requests)
    assert {b["generationConfig"]["imageConfig"]["imageSize"] for b in image_requests} == {"1K"}
    vlm_requests = [r["body"] for r in fake.requests if r["kind"] == "vlm"]
    assert all(b["generationConfig"]["responseMimeType"] == "application/json" for b in vlm_requests)
    assert fake.keys_seen == {KEY}  # the SDK sent the key from the environment

    filtered = run_cli("filter", str(out), "-q", "--plugins", "resolution,ssim", "--out", str(tmp_path / "qc"))
    assert filtered.returncode == 0, filtered.stderr
    assert {row["id"] for row in read_rows(tmp_path / "qc")} == set(rows)


@pytest.mark.parametrize(
    "behaviours,status,image_requests",
    [
        (("429", "ok"), "ok", 2),  # the SDK retries 429
        (("503",), "failed after retries", 3),  # attempts=3, all 5xx
        (("blocked",), "blocked", 1),
        (("image_safety",), "blocked", 1),
        (("no_image",), "no image", 3),  # 1 + no_image_retries=2
        (("garbage",), "invalid image", 1),
        (("400",), "request rejected", 1),  # not retried
    ],
)
def test_each_failure_gets_its_own_status(tmp_path, lq_dir, behaviours, status, image_requests):
    out = tmp_path / "pairs"
    target = photo_bytes(lq_dir, "photo1")
    with FakeGemini() as fake:
        fake.on(target, "image", *behaviours)
        result = generate(fake, lq_dir, out, "--prompt-mode", "fixed", "--set", "attempts=3")
        calls = fake.calls
    assert result.returncode == (0 if status == "ok" else 3), result.stderr  # 3: some photo has no target
    row = last_rows(out)["set1/photo1"]
    assert row["status"] == status, row
    assert calls[(hashlib.sha256(target).hexdigest(), "image")] == image_requests
    row_requests = last_rows(out)["set1/photo1"]["requests"]
    assert row_requests == image_requests  # every attempt, retries included
    billed_images = {"ok": 1, "invalid image": 1}.get(status, 0)  # an undecodable image is paid for too
    answered = 0 if status == "failed after retries" else image_requests - sum(b.isdigit() for b in behaviours)
    expected = answered * 1120 * 0.5e-6 + billed_images * 0.067
    assert last_rows(out)["set1/photo1"]["cost_usd"] == pytest.approx(expected)
    if status == "ok":
        assert decode_image(out / row["hq"]) is not None
    else:
        assert row["hq"] is None and row["reason"]
        assert not list((out / "hq").rglob("photo1*"))  # never a file for a failed photo
    assert {r["status"] for i, r in last_rows(out).items() if i != "set1/photo1"} == {"ok"}


def test_an_unusable_vlm_answer_falls_back_to_the_fixed_prompt_and_says_so(tmp_path, lq_dir):
    out = tmp_path / "pairs"
    with FakeGemini() as fake:
        fake.on(photo_bytes(lq_dir, "photo2"), "vlm", "prose")
        fake.on(photo_bytes(lq_dir, "photo3"), "vlm", "no_key")
        result = generate(fake, lq_dir, out)
    assert result.returncode == 0, result.stderr
    rows = last_rows(out)
    prose, no_key = rows["set0/photo2"], rows["set1/photo3"]
    assert prose["status"] == "ok" and prose["prompt"] == FIXED_PROMPT
    assert "not JSON" in prose["prompt_fallback"] and prose["vlm_answer"].startswith("This photo looks noisy")
    assert no_key["prompt"] == FIXED_PROMPT and "no 'restoration_prompt' key" in no_key["prompt_fallback"]
    assert "set1/photo3: VLM answer unusable (no 'restoration_prompt' key" in result.stderr  # on the console
    assert "(2 with the fixed prompt: VLM answer unusable)" in result.stdout  # and in the summary


def test_reruns_send_nothing_for_finished_photos_and_retry_failures(tmp_path, lq_dir):
    out = tmp_path / "pairs"
    flaky = photo_bytes(lq_dir, "photo3")
    with FakeGemini() as fake:
        fake.on(flaky, "image", "503", "503", "ok")  # fails the first run (attempts=2), then works
        assert generate(fake, lq_dir, out, "--set", "attempts=2").returncode == 3
        assert last_rows(out)["set1/photo3"]["status"] == "failed after retries"
        first = len(fake.requests)
        again = generate(fake, lq_dir, out, "--set", "attempts=2")
        assert again.returncode == 0, again.stderr
        resent = fake.requests[first:]
        assert len(resent) == 2 and "1 sent, 3 done before" in again.stdout  # vlm + image, for photo3 only
        assert last_rows(out)["set1/photo3"]["status"] == "ok"
        third = generate(fake, lq_dir, out)
        assert len(fake.requests) == first + 2 and "0 sent, 4 done before" in third.stdout
        overwrite = generate(fake, lq_dir, out, "--overwrite", "--limit", "1")
        assert overwrite.returncode == 0 and len(fake.requests) == first + 4


def test_a_killed_run_resumes_without_repeats_or_partial_files(tmp_path, lq_dir):
    out = tmp_path / "pairs"
    for k in range(4, 10):  # ten photos in all
        save_rgb(lq_dir / f"more/photo{k}.jpg", cv2.resize(photos()[k % 6], (80 + k, 60)), IMWRITE_JPEG_QUALITY=80)
    with FakeGemini(delay=0.25) as fake:
        command = ["generate", str(lq_dir), "--out", str(out), "--base-url", fake.url, "--prompt-mode", "fixed", "--concurrency", "1", "--rpm", "0", "-q"]
        kill_after_rows(command, out / "generation.jsonl", 3, {"GEMINI_API_KEY": KEY})
        done_before = {i for i, row in last_rows(out).items() if row["status"] == "ok"}
        assert 3 <= len(done_before) < 10
        requested_before = len(fake.requests)
        resumed = generate(fake, lq_dir, out, "--prompt-mode", "fixed")
        assert resumed.returncode == 0, resumed.stderr
        resent_photos = [r["body"]["contents"][0]["parts"][0]["inlineData"]["data"][:40] for r in fake.requests[requested_before:]]
    assert len(resent_photos) == 10 - len(done_before)  # one request per unfinished photo, none for done ones
    rows = last_rows(out)
    assert len(rows) == 10 and all(row["status"] == "ok" for row in rows.values())
    assert not [p for p in out.rglob("*") if p.name.endswith(".part")]
    for row in rows.values():
        decode_image(out / row["hq"])  # every target is whole


def test_concurrency_and_request_rate_are_bounded(tmp_path, lq_dir):
    out = tmp_path / "pairs"
    with FakeGemini(delay=0.3) as fake:
        assert generate(fake, lq_dir, out, "--prompt-mode", "fixed", "--concurrency", "2").returncode == 0
        assert fake.max_in_flight == 2
    with FakeGemini() as fake:
        assert generate(fake, lq_dir, tmp_path / "paced", "--prompt-mode", "fixed", "--rpm", "300", "--concurrency", "4").returncode == 0
        arrivals = sorted(r["arrived"] for r in fake.requests)
        # Starts 0.2 s apart, not all at once; a busy machine may delay one request after
        # its start, so the check leaves room for that, not for a missing limit. The first
        # request also opens the connection and often arrives ~40 ms after its start, so
        # the span is measured from the second.
        assert len(arrivals) == 4 and arrivals[-1] - arrivals[1] >= 0.95 * 2 * 60 / 300
        assert min(np.diff(arrivals)[1:]) >= 0.5 * 60 / 300


def test_the_key_never_reaches_output_files_or_logs(tmp_path, lq_dir):
    out = tmp_path / "pairs"
    with FakeGemini() as fake:
        fake.on(photo_bytes(lq_dir, "photo0"), "image", "400")
        fake.on(photo_bytes(lq_dir, "photo1"), "image", "garbage")
        result = generate(fake, lq_dir, out)
    texts = [result.stdout, result.stderr] + [p.read_bytes().decode("latin-1") for p in out.rglob("*") if p.is_file()]
    assert all(KEY not in text for text in texts)


def test_missing_key_stops_before_any_request_and_dry_run_needs_none(tmp_path, lq_dir):
    with FakeGemini() as fake:
        blocked = generate(fake, lq_dir, tmp_path / "pairs", key=None)
        assert blocked.returncode == 2 and "GEMINI_API_KEY" in blocked.stderr and not fake.requests
        plan = generate(fake, lq_dir, tmp_path / "pairs", "--dry-run", key=None)
        assert plan.returncode == 0 and not fake.requests
    planned = json.loads(plan.stdout)
    assert planned["to_send"] == 4 and planned["estimate"]["usd"] == pytest.approx(4 * planned["estimate"]["usd_per_photo"], abs=1e-4)
    assert not (tmp_path / "pairs" / "generation.jsonl").exists()


def test_bad_options_are_one_line_errors(tmp_path, lq_dir):
    with FakeGemini() as fake:
        for args, message in [
            (["--out", str(lq_dir / "pairs")], "is inside"),
            (["--set", "nonsense=1"], "has no option 'nonsense'"),
            (["--set", "attempts=many"], "expected int"),
            (["--image-size", "8K"], "'8K' is not one of"),
            (["--generator", "dalle"], "unknown generator 'dalle'"),
        ]:
            result = generate(fake, lq_dir, tmp_path / "pairs", *args)
            assert result.returncode == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("size,ratio", [((1024, 1024), "1:1"), ((1200, 800), "3:2"), ((800, 1200), "2:3"), ((1920, 1080), "16:9"), ((2560, 1080), "21:9"), ((1000, 780), "5:4")])
def test_nearest_aspect_ratio(size, ratio):
    assert nearest_aspect_ratio(*size) == ratio


def test_batch_mode_submits_small_jobs_then_collects_them_on_a_later_run(tmp_path, lq_dir):
    out = tmp_path / "pairs"
    with FakeGemini() as fake:
        fake.on(photo_bytes(lq_dir, "photo2"), "image", "image_safety")
        first = generate(fake, lq_dir, out, "--batch", "--batch-job-size", "3")
        assert first.returncode == 0, first.stderr
        assert "submitted 2 jobs" in first.stdout and [len(j["requests"]) for j in fake.jobs.values()] == [3, 1]
        assert not [r for r in fake.requests if r["kind"] == "image"]  # images only through the Batch API
        jobs = [json.loads(line) for line in (out / "batch_jobs.jsonl").read_text().splitlines()]
        assert [job["id"] for job in jobs] == ["batches/job0", "batches/job1"]
        assert all(job["details"][i]["prompt"].startswith("Remove the noise") for job in jobs for i in job["photos"])

        running = generate(fake, lq_dir, out, "--batch")
        assert "2 jobs still running" in running.stdout and "submitted 0 jobs" in running.stdout

        collected = generate(fake, lq_dir, out, "--batch")
        assert collected.returncode == 3  # photo2 was blocked
        assert "collected 4 photos" in collected.stdout and "submitted 0 jobs" in collected.stdout
        assert len(fake.jobs) == 2
    rows = last_rows(out)
    assert rows["set0/photo2"]["status"] == "blocked"
    ok = [row for row in rows.values() if row["status"] == "ok"]
    assert len(ok) == 3 and all(row["batch"] for row in ok)
    for row in ok:
        decode_image(out / row["hq"])
        # half the interactive image price, plus the prompt's interactive text calls
        assert row["cost_usd"] == pytest.approx(0.5 * (0.067 + 1120 * 0.5e-6) + 1120 * 0.5e-6 + 250 * 3e-6)


def test_a_failed_batch_job_leaves_its_photos_for_the_next_submission(tmp_path, lq_dir):
    out = tmp_path / "pairs"
    with FakeGemini() as fake:
        fake.polls_while_running = 0
        fake.job_state = "BATCH_STATE_EXPIRED"
        assert generate(fake, lq_dir, out, "--batch", "--prompt-mode", "fixed").returncode == 0
        closed = generate(fake, lq_dir, out, "--batch", "--prompt-mode", "fixed")
        assert closed.returncode == 3 and "submitted 0 jobs" in closed.stdout
        assert {row["status"] for row in last_rows(out).values()} == {"failed after retries"}
        assert "JOB_STATE_EXPIRED" in next(iter(last_rows(out).values()))["reason"]
        fake.job_state = "BATCH_STATE_SUCCEEDED"
        again = generate(fake, lq_dir, out, "--batch", "--prompt-mode", "fixed")
        assert "submitted 1 jobs" in again.stdout and len(fake.jobs) == 2  # the expired job's photos go out again


def test_a_cancelled_batch_job_keeps_the_answers_it_holds_and_sends_only_the_rest_again(tmp_path, lq_dir):
    out = tmp_path / "pairs"
    with FakeGemini() as fake:
        fake.polls_while_running = 0
        fake.job_state = "BATCH_STATE_CANCELLED"
        fake.answered_before_end = 1  # it answered one photo before it was cancelled
        fake.thoughts["image"] = 10000
        assert generate(fake, lq_dir, out, "--batch", "--prompt-mode", "fixed").returncode == 0
        collected = generate(fake, lq_dir, out, "--batch", "--prompt-mode", "fixed")
        assert collected.returncode == 3 and "submitted 0 jobs" in collected.stdout
        answered = fake.jobs["batches/job0"]["requests"][0]["metadata"]["id"]
        rows = last_rows(out)
        assert rows[answered]["status"] == "ok" and (out / rows[answered]["hq"]).is_file()
        assert rows[answered]["usage"]["thinking_tokens"] == 10000  # billed as output, at half price
        assert rows[answered]["cost_usd"] == pytest.approx(0.5 * (0.067 + 1120 * 0.5e-6 + 10000 * 3e-6))
        others = [row for pair_id, row in rows.items() if pair_id != answered]
        assert len(others) == 3 and all(r["status"] == "failed after retries" and "JOB_STATE_CANCELLED" in r["reason"] for r in others)
        fake.job_state = "BATCH_STATE_SUCCEEDED"
        again = generate(fake, lq_dir, out, "--batch", "--prompt-mode", "fixed")
        assert "submitted 1 jobs" in again.stdout
        assert answered not in {r["metadata"]["id"] for r in fake.jobs["batches/job1"]["requests"]}  # never bought twice
        assert len(fake.jobs["batches/job1"]["requests"]) == 3


def test_thinking_tokens_are_billed_in_rows_and_in_the_run_cost(tmp_path, lq_dir):
    out = tmp_path / "pairs"
    with FakeGemini() as fake:
        fake.thoughts = {"vlm": 20000, "image": 30000}  # the VLM's prompt-writing call thinks too
        result = generate(fake, lq_dir, out)
    assert result.returncode == 0, result.stderr
    per_photo = 0.067 + 2240 * 0.5e-6 + (250 + 50000) * 3e-6  # thinking is billed at the text output price
    for row in last_rows(out).values():
        assert row["usage"] == {"input_tokens": 2240, "text_output_tokens": 250, "image_output_tokens": 1290, "thinking_tokens": 50000}
        assert row["cost_usd"] == pytest.approx(per_photo)
    assert f", ${4 * per_photo:.2f}; all photos" in result.stdout  # the run's cost on the summary line


def test_a_request_that_times_out_fails_after_bounded_retries(tmp_path, lq_dir):
    out = tmp_path / "pairs"
    with FakeGemini(delay=1.5) as fake:
        result = generate(fake, lq_dir, out, "--prompt-mode", "fixed", "--limit", "1", "--set", "timeout_s=0.3", "--set", "attempts=2")
    assert result.returncode == 3, result.stderr
    (row,) = last_rows(out).values()
    assert row["status"] == "failed after retries" and "Timeout" in row["reason"] and row["hq"] is None


def many_photos(folder, count):
    for k in range(count):
        save_rgb(folder / f"photo{k:02d}.jpg", cv2.resize(photos()[k % 6], (80 + k, 60)), IMWRITE_JPEG_QUALITY=80)
    return folder


def start(fake_url, lq_dir, out, *args):
    command = [str(GGTQC), "generate", str(lq_dir), "--out", str(out), "--base-url", fake_url, "--prompt-mode", "fixed", *args]
    return subprocess.Popen(command, env={**os.environ, "GEMINI_API_KEY": KEY}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def image_requests(fake):
    return len([r for r in fake.requests if r["kind"] == "image"])


def test_ctrl_c_stops_sending_keeps_every_row_and_a_rerun_buys_only_the_rest(tmp_path):
    lq_dir, out = many_photos(tmp_path / "photos", 12), tmp_path / "pairs"
    with FakeGemini(delay=1.0) as fake:
        process = start(fake.url, lq_dir, out, "--concurrency", "2", "--rpm", "0")
        wait_for_rows(out / "generation.jsonl", 2, 60, process)
        os.kill(process.pid, signal.SIGINT)
        interrupted = time.monotonic()
        _, stderr = process.communicate(timeout=60)
        elapsed = time.monotonic() - interrupted
        sent = image_requests(fake)
        time.sleep(1.5)
        assert image_requests(fake) == sent  # nothing more arrives after the exit
        assert process.returncode == 130 and "stopping:" in stderr and "run the same command again" in stderr
        assert elapsed < 10  # the photos in flight (1 s each here) finish; the other 8+ are never sent
        rows = last_rows(out)
        assert 2 <= sent <= 6 and len(rows) == sent  # every request sent has its row
        assert sorted(p.stem for p in (out / "hq").glob("*.png")) == sorted(rows)  # and its target
        again = generate(fake, lq_dir, out, "--prompt-mode", "fixed")
        assert again.returncode == 0, again.stderr
        assert image_requests(fake) == 12  # each photo bought once, over both runs
    assert all(row["status"] == "ok" for row in last_rows(out).values()) and len(last_rows(out)) == 12


def test_a_second_ctrl_c_quits_at_once_and_nothing_on_disk_is_bought_again(tmp_path):
    lq_dir, out = many_photos(tmp_path / "photos", 6), tmp_path / "pairs"
    with FakeGemini(delay=6.0) as fake:
        process = start(fake.url, lq_dir, out, "--concurrency", "2", "--rpm", "0")
        deadline = time.monotonic() + 60
        while image_requests(fake) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGINT)
        time.sleep(0.5)
        os.kill(process.pid, signal.SIGINT)
        second = time.monotonic()
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 130 and time.monotonic() - second < 3  # not after the 6 s requests
        assert "quitting now" in stderr and image_requests(fake) == 2
        assert not (out / "generation.jsonl").exists() or not (out / "generation.jsonl").read_text().strip()
    with FakeGemini() as fake:
        assert generate(fake, lq_dir, out, "--prompt-mode", "fixed").returncode == 0
        assert image_requests(fake) == 6  # answers that never arrived are bought in this run


def test_a_target_without_its_row_is_recovered_not_bought_again(tmp_path, lq_dir):
    out = tmp_path / "pairs"
    with FakeGemini() as fake:
        assert generate(fake, lq_dir, out, "--prompt-mode", "fixed").returncode == 0
        lines = (out / "generation.jsonl").read_text().splitlines()
        lost = json.loads(lines[-1])["id"]
        (out / "generation.jsonl").write_text("\n".join(lines[:-1]) + "\n")  # killed between target and row
        (out / json.loads(lines[-1])["lq"]).unlink()
        before = len(fake.requests)
        again = generate(fake, lq_dir, out, "--prompt-mode", "fixed")
        assert again.returncode == 0 and len(fake.requests) == before  # nothing bought
    row = last_rows(out)[lost]
    assert row["status"] == "ok" and "rebuilt from the target" in row["recovered"] and (out / row["lq"]).is_file()
    assert "1 recovered from disk" in again.stdout


def closed_port_url():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def test_an_unreachable_server_stops_the_run_quickly_with_a_message(tmp_path):
    lq_dir, out = many_photos(tmp_path / "photos", 10), tmp_path / "pairs"
    url = closed_port_url()
    began = time.monotonic()
    result = run_cli("generate", str(lq_dir), "--out", str(out), "--base-url", url, "--prompt-mode", "fixed", "--concurrency", "2",
                     env={"GEMINI_API_KEY": KEY})  # fmt: skip
    assert time.monotonic() - began < 30  # default retry delays: a few seconds, not 32 s per photo
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(f"ggtqc: cannot reach {url}: 3 connection failures in a row")
    rows = last_rows(out)
    assert 1 <= len(rows) <= 2 and all(row["status"] in ("failed after retries", "stopped") for row in rows.values())
    assert "8 not sent" in result.stdout or "9 not sent" in result.stdout


def test_server_errors_are_the_server_talking_not_an_unreachable_server(tmp_path, lq_dir):
    with FakeGemini() as fake:
        for name in ("photo0", "photo1", "photo2"):
            fake.on(photo_bytes(lq_dir, name), "image", "503")
        result = generate(fake, lq_dir, tmp_path / "pairs", "--prompt-mode", "fixed", "--set", "attempts=2", "--concurrency", "1")
    assert result.returncode == 3 and "cannot reach" not in result.stderr
    assert [row["requests"] for row in last_rows(tmp_path / "pairs").values()].count(2) == 3  # every attempt counted


def sent_images(fake):
    """(mime type, width, height) of each photo the stand-in received for an image request."""
    found = []
    for r in fake.requests:
        if r["kind"] == "image":
            part = next(p["inlineData"] for p in r["body"]["contents"][0]["parts"] if "inlineData" in p)
            image = decode_image_bytes(photo_of(r["body"]))
            found.append((part.get("mimeType") or part.get("mime_type"), image.shape[1], image.shape[0]))
    return found


def test_photos_are_fitted_to_what_the_api_accepts_and_the_original_kept(tmp_path):
    lq_dir, out = tmp_path / "photos", tmp_path / "pairs"
    save_rgb(lq_dir / "scan.bmp", cv2.resize(photos()[0], (200, 150)))
    save_rgb(lq_dir / "film.tif", cv2.resize(photos()[1], (160, 120)))
    save_rgb(lq_dir / "big.jpg", cv2.resize(photos()[2], (1200, 900)), IMWRITE_JPEG_QUALITY=90)
    save_rgb(lq_dir / "heavy.png", np.random.default_rng(0).integers(0, 256, (300, 300, 3), dtype=np.uint8))
    with FakeGemini() as fake:
        result = generate(fake, lq_dir, out, "--prompt-mode", "fixed", "--set", "max_input_side=512", "--set", "max_input_mb=0.1")
        sent = sent_images(fake)
    assert result.returncode == 0, result.stderr
    rows = last_rows(out)
    assert sorted(sent) == sorted([("image/png", 200, 150), ("image/png", 160, 120), ("image/jpeg", 512, 384), ("image/jpeg", 300, 300)])
    assert rows["scan"]["sent"] == {"mime_type": "image/png", "width": 200, "height": 150, "bytes": rows["scan"]["sent"]["bytes"], "changed": "re-encoded BMP as PNG"}
    assert rows["big"]["sent"]["changed"] == "downscaled 1200x900 to 512x384"
    assert rows["heavy"]["sent"]["changed"] == "re-encoded PNG as JPEG" and rows["heavy"]["sent"]["bytes"] <= 100_000
    for name in ("scan.bmp", "film.tif", "big.jpg", "heavy.png"):
        assert (out / "lq" / name).read_bytes() == (lq_dir / name).read_bytes()  # the LQ is the original
    assert "re-encoded BMP as PNG" in result.stderr


def test_small_things_empty_folder_gif_progress_and_dry_run(tmp_path, lq_dir):
    empty = tmp_path / "empty"
    empty.mkdir()
    with FakeGemini() as fake:
        nothing = generate(fake, empty, tmp_path / "none")
        assert nothing.returncode == 2 and "no photos in" in nothing.stderr and len(nothing.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "none" / "generation.jsonl").exists()

        Image.fromarray(photos()[0][:64, :64]).save(lq_dir / "anim.gif")
        fake.on(photo_bytes(lq_dir, "photo1"), "image", "429", "ok")
        result = generate(fake, lq_dir, tmp_path / "pairs", "--prompt-mode", "fixed", "--concurrency", "1")
        assert result.returncode == 3  # the .gif has no target
        gif = last_rows(tmp_path / "pairs")["anim.gif"]
        assert gif["status"] == "invalid input" and ".gif is not a supported photo format" in gif["reason"]
        assert "[1/4]" in result.stderr and "[4/4]" in result.stderr and "ETA" in result.stderr and "run $" in result.stderr
        assert "set1/photo1: HTTP 429: fake error; attempt 2 of" in result.stderr  # a photo in retries says so

        secret_url = fake.url.replace("http://", "http://user:s3cret@") + "/v1?key=AIzaSECRET"
        plan = generate(fake, lq_dir, tmp_path / "plan", "--dry-run", "--base-url", secret_url, key=None)
    assert plan.returncode == 0 and "s3cret" not in plan.stdout + plan.stderr and "AIzaSECRET" not in plan.stdout + plan.stderr
    assert "warning: a real run would stop before sending anything" in plan.stderr and "GEMINI_API_KEY" in plan.stderr


def test_batch_dry_run_shows_the_batch_price(tmp_path, lq_dir):
    with FakeGemini() as fake:
        interactive = json.loads(generate(fake, lq_dir, tmp_path / "p", "--dry-run").stdout)["estimate"]
        batch = json.loads(generate(fake, lq_dir, tmp_path / "p", "--dry-run", "--batch").stdout)["estimate"]
    image = 0.067 + 1120 * 0.5e-6
    assert interactive["usd_per_photo"] - batch["usd_per_photo"] == pytest.approx(image / 2, abs=1e-5)
    assert batch["pricing"].startswith("batch")


def test_a_server_without_the_batch_api_names_it_and_keeps_the_prompts_it_bought(tmp_path, lq_dir):
    out = tmp_path / "pairs"
    with FakeGemini() as fake:
        fake.batch_api = False
        refused = generate(fake, lq_dir, out, "--batch", "--rpm", "300")
        assert refused.returncode == 1 and "has no Batch API for model gemini-3.1-flash-image" in refused.stderr
        assert refused.stderr.strip().splitlines()[-1].startswith("ggtqc: http://127.0.0.1:") and "Traceback" not in refused.stderr
        vlm = [r for r in fake.requests if r["kind"] == "vlm"]
        assert len(vlm) == 4 and len((out / "batch_prompts.jsonl").read_text().splitlines()) == 4  # bought and kept
        # --rpm applies to the prompt requests (from the second: the first also opens the connection)
        assert min(np.diff(sorted(r["arrived"] for r in vlm))[1:]) >= 0.5 * 60 / 300
        fake.batch_api = True
        again = generate(fake, lq_dir, out, "--batch")
        assert again.returncode == 0, again.stderr
        assert len([r for r in fake.requests if r["kind"] == "vlm"]) == 4  # not bought again
        assert sum(len(j["requests"]) for j in fake.jobs.values()) == 4
        job = next(iter(fake.jobs.values()))
        assert all(item["request"]["contents"][0]["parts"][1]["text"].startswith("Remove the noise") for item in job["requests"])


def test_batch_jobs_are_split_by_bytes(tmp_path, lq_dir):
    sizes = sorted(len(p.read_bytes()) for p in lq_dir.rglob("*.jpg"))
    limit_mb = (sizes[-1] + sizes[-2]) * 4 / 3 / 1e6 * 0.99  # the two largest do not fit together
    with FakeGemini() as fake:
        result = generate(fake, lq_dir, tmp_path / "pairs", "--batch", "--prompt-mode", "fixed", "--set", f"batch_job_mb={limit_mb}")
        assert result.returncode == 0, result.stderr
        counts = [len(j["requests"]) for j in fake.jobs.values()]
    assert sum(counts) == 4 and len(counts) >= 2
