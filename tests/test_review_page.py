"""The review page driven from the keyboard in headless Chromium, as a person would use it.

Needs Debian's ``chromium-headless-shell`` (``.ci/run`` installs it) and Playwright for
Python; without the browser these tests skip with one line. Screenshots go to the test's
folder, or to ``$GGTQC_SCREENSHOTS`` when set.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ggtqc.labels import append_label, make_label, read_labels
from tests.review_helpers import make_large_run, make_run, serving

CHROMIUM = Path("/usr/bin/chromium-headless-shell")
if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium-headless-shell)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        yield browser
        browser.close()


@pytest.fixture()
def run(tmp_path):
    return make_run(tmp_path, count=20)  # review band: p0000, p0005, p0010, p0015


@pytest.fixture()
def shots(tmp_path):
    folder = Path(os.environ.get("GGTQC_SCREENSHOTS") or tmp_path / "shots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def open_page(browser, url):
    page = browser.new_page(viewport={"width": 1400, "height": 820})
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.errors = errors
    page.goto(url)
    return page


def showing(page, pair_id):
    sync_api.expect(page.locator("#pair-id")).to_have_text(pair_id)


def label_lines(run):
    path = run / "labels.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_label_from_the_keyboard_close_restart_and_carry_on(browser, run, shots):
    with serving(run) as (server, _):
        page = open_page(browser, server.url)
        showing(page, "p0000")
        sync_api.expect(page.locator("#progress")).to_have_text("labelled 0 of 4")
        page.wait_for_function("document.querySelector('#pane-b img.hq').naturalWidth > 0")
        page.screenshot(path=shots / "review-first-pair.png")
        page.keyboard.press("a")
        showing(page, "p0005")
        page.keyboard.press("1")  # hallucinated object
        page.keyboard.press("7")  # plastic
        sync_api.expect(page.locator("#tags li.on")).to_have_count(2)
        page.keyboard.press("r")
        showing(page, "p0010")
        sync_api.expect(page.locator("#progress")).to_have_text("labelled 2 of 4")
        lines = label_lines(run)  # on disk as soon as the next pair shows
        assert [(r["id"], r["label"], r["tags"], r["queue"]) for r in lines] == [
            ("p0000", "accept", [], "review"),
            ("p0005", "reject", ["hallucinated_object", "plastic"], "review"),
        ]
        page.reload()
        showing(page, "p0010")  # resumes at the first unlabelled pair
        page.close()
        assert not page.errors
    with serving(run) as (server, _):  # a restart after the browser was closed
        page = open_page(browser, server.url)
        showing(page, "p0010")
        sync_api.expect(page.locator("#progress")).to_have_text("labelled 2 of 4")
        page.keyboard.press("s")
        showing(page, "p0015")
        page.keyboard.press("ArrowLeft")
        showing(page, "p0010")
        sync_api.expect(page.locator("#mine")).to_contain_text("Your label: unsure")
        page.close()
    assert [r["label"] for r in label_lines(run)] == ["accept", "reject", "unsure"]


def test_undo_appends_and_goes_back(browser, run):
    with serving(run) as (server, _):
        page = open_page(browser, server.url)
        showing(page, "p0000")
        page.keyboard.press("r")
        showing(page, "p0005")
        page.keyboard.press("z")
        showing(page, "p0000")
        sync_api.expect(page.locator("#message")).to_contain_text("Undone: p0000")
        page.keyboard.press("a")
        showing(page, "p0005")
        page.keyboard.press("ArrowLeft")
        showing(page, "p0000")
        page.keyboard.press("3")  # a tag on a labelled pair is a new line at once
        sync_api.expect(page.locator("#mine")).to_contain_text("text_changed")
        page.close()
    assert [(r["id"], r["label"], r["tags"]) for r in label_lines(run)] == [
        ("p0000", "reject", []), ("p0000", "unsure", []), ("p0000", "accept", []), ("p0000", "accept", ["text_changed"]),
    ]  # fmt: skip


def test_blind_mode_hides_the_scores_and_says_so_in_the_label(browser, run, shots):
    with serving(run) as (server, _):
        page = open_page(browser, server.url)
        showing(page, "p0000")
        sync_api.expect(page.locator("#verdict")).to_have_text("verdict: review")
        sync_api.expect(page.locator("#scores tr.band")).to_have_count(1)  # color.cast is in the review band
        page.keyboard.press("b")
        sync_api.expect(page.locator("#scored")).to_be_hidden()
        sync_api.expect(page.locator("#blind-badge")).to_be_visible()
        page.wait_for_function("document.querySelector('#pane-b img.hq').naturalWidth > 0")
        page.screenshot(path=shots / "review-blind.png")
        page.keyboard.press("a")
        showing(page, "p0005")
        page.reload()
        showing(page, "p0005")
        sync_api.expect(page.locator("#scored")).to_be_hidden()  # blind mode survives a reload
        page.keyboard.press("b")
        sync_api.expect(page.locator("#scored")).to_be_visible()
        page.close()
    assert label_lines(run)[0]["scores_shown"] is False


def test_flicker_zoom_heatmap_and_missing_images(browser, run, shots):
    with serving(run) as (server, _):
        page = open_page(browser, server.url + "#queue=rejected:color.cast")
        showing(page, "p0001")
        page.wait_for_function("document.querySelector('#pane-b img.hq').naturalWidth > 0")
        transforms = "[...document.querySelectorAll('.stage img')].map(i => i.style.transform)"
        page.keyboard.press("p")  # 1:1 pixels of the HQ image, in both panes
        shown = page.evaluate(transforms)
        assert len(set(shown[:3])) == 1 and "scale(1)" in shown[0]
        page.mouse.move(500, 400)
        page.mouse.wheel(0, -400)
        zoomed = page.evaluate(transforms)
        assert len(set(zoomed)) == 1 and zoomed[0] != shown[0]  # zoom stays in step
        page.mouse.move(300, 300)
        page.mouse.down()
        page.mouse.move(250, 260)
        page.mouse.up()
        assert len(set(page.evaluate(transforms))) == 1
        page.keyboard.press("f")
        page.keyboard.down(" ")
        sync_api.expect(page.locator("#pane-a img.hq")).to_be_visible()
        sync_api.expect(page.locator("#pane-a .caption")).to_contain_text("HQ ⇄")
        page.screenshot(path=shots / "review-flicker.png")
        page.keyboard.up(" ")
        sync_api.expect(page.locator("#pane-a img.lq")).to_be_visible()
        page.keyboard.press("h")
        sync_api.expect(page.locator("#pane-b img.heat")).to_be_visible()
        sync_api.expect(page.locator("#pane-b .caption")).to_contain_text("heatmap: color")
        page.wait_for_function("document.querySelector('#pane-b img.heat').naturalWidth > 0")
        page.screenshot(path=shots / "review-heatmap.png")
        page.keyboard.press("h")
        sync_api.expect(page.locator("#pane-b img.heat")).to_be_hidden()
        page.keyboard.press("ArrowRight")
        showing(page, "p0006")  # its HQ file is gone
        sync_api.expect(page.locator("#pane-b .problem")).to_have_text("HQ: file not found: hq/p0006.png")
        page.screenshot(path=shots / "review-missing.png")
        page.keyboard.press("r")  # it can still be labelled
        showing(page, "p0011")
        page.close()
        assert not page.errors
    assert label_lines(run)[0]["queue"] == "rejected:color.cast"


def test_queues_help_and_the_audit_note(browser, run, shots):
    with serving(run) as (server, _):
        page = open_page(browser, server.url)
        showing(page, "p0000")
        sync_api.expect(page.locator("#note")).to_contain_text("Calibration needs the audit queue")
        for _ in range(4):  # review -> rejected:color.cast -> rejected:ssim.ssim -> accepted -> audit
            page.keyboard.press("q")
        sync_api.expect(page.locator("#queue")).to_have_value("audit")
        sync_api.expect(page.locator("#note")).to_contain_text("uniformly random")
        sync_api.expect(page.locator("#progress")).to_have_text("labelled 0 of 16")
        page.keyboard.press("?")
        sync_api.expect(page.locator("#help")).to_be_visible()
        page.screenshot(path=shots / "review-help.png")
        page.keyboard.press("a")  # ignored while the help is open
        page.keyboard.press("Escape")
        sync_api.expect(page.locator("#help")).to_be_hidden()
        first = page.locator("#pair-id").text_content()
        page.keyboard.press("a")
        sync_api.expect(page.locator("#pair-id")).not_to_have_text(first)
        page.close()
    assert [(r["id"], r["queue"]) for r in label_lines(run)] == [(first, "audit")]


def test_two_tabs_lose_nothing_and_problems_are_shown(browser, run):
    with (run / "labels.jsonl").open("wb") as f:
        f.write(b'{"id": "p0000", "lab\n')  # a corrupt line
    with serving(run) as (server, _):
        first, second = open_page(browser, server.url), open_page(browser, server.url)
        showing(first, "p0000")
        showing(second, "p0000")
        sync_api.expect(first.locator("#message")).to_contain_text("labels.jsonl line 1: not JSON, skipped")
        first.keyboard.press("a")
        showing(first, "p0005")
        second.keyboard.press("r")  # the same pair, from a tab that has not seen the first label
        showing(second, "p0005")
        sync_api.expect(second.locator("#message")).to_contain_text("another tab or window")
        append_label(run / "labels.jsonl", make_label("p0005", "reject", "bo", "review"))  # another reviewer's server
        append_label(run / "labels.jsonl", make_label("p0000", "reject", "bo", "review"))
        first.reload()
        showing(first, "p0005")
        sync_api.expect(first.locator("#others")).to_have_text("Other reviewers: bo reject")
        sync_api.expect(first.locator("#agreement")).to_have_text("agreement 100% on 1 pair labelled by two or more of 2 reviewers")  # kappa: undefined on one pair
        first.close()
        second.close()
    lines = (run / "labels.jsonl").read_text().splitlines()
    assert lines[0] == '{"id": "p0000", "lab'  # left as it was, and skipped
    assert [(r["id"], r["label"]) for r in map(json.loads, lines[1:])] == [("p0000", "accept"), ("p0000", "reject"), ("p0005", "reject"), ("p0000", "reject")]


def test_a_stopped_server_is_reported_and_the_pair_stays(browser, run):
    with serving(run) as (server, _):
        page = open_page(browser, server.url)
        showing(page, "p0000")
    page.keyboard.press("a")
    sync_api.expect(page.locator("#message")).to_contain_text("Not saved: the review server cannot be reached")
    showing(page, "p0000")
    page.close()
    assert not label_lines(run)


def test_a_few_hundred_pairs_from_the_keyboard_then_a_restart(browser, tmp_path):
    run = make_large_run(tmp_path, 300)
    with serving(run, audit_size=300) as (server, _):
        page = open_page(browser, server.url + "#queue=audit")
        sync_api.expect(page.locator("#position")).to_have_text("1 / 300")
        for k in range(250):
            if k % 4 == 0:
                page.keyboard.press("5")  # colour shift
                page.keyboard.press("r")
            else:
                page.keyboard.press("a")
        sync_api.expect(page.locator("#progress")).to_have_text("labelled 250 of 300", timeout=120_000)
        page.close()  # the browser is closed, then the server stopped
    with serving(run, audit_size=300) as (server, _):
        page = open_page(browser, server.url + "#queue=audit")
        sync_api.expect(page.locator("#position")).to_have_text("251 / 300")
        sync_api.expect(page.locator("#progress")).to_have_text("labelled 250 of 300")
        page.close()
    labels = read_labels(run / "labels.jsonl")
    assert len(labels.latest) == 250 and not labels.problems
    consensus = labels.consensus()  # what the calibration reads
    assert len(consensus) == 250 and all(c["audit"] for c in consensus.values())
    rejected = [c for c in consensus.values() if c["label"] == "reject"]
    assert len(rejected) == 63 and all(c["tags"] == ["colour_shift"] for c in rejected)


def test_results_rewritten_while_the_page_is_open(browser, run):
    with serving(run) as (server, _):
        page = open_page(browser, server.url)
        showing(page, "p0000")
        rows = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
        for row in rows:
            if row["id"] == "p0000":
                row.update(verdict="accept", review=[])
        (run / "new.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        os.replace(run / "new.jsonl", run / "results.jsonl")  # as 'ggtqc decide' does
        page.keyboard.press("a")  # the label is by id, so it lands on the pair shown
        sync_api.expect(page.locator("#message")).to_contain_text("the queues were rebuilt")
        showing(page, "p0005")  # the review band is now p0005, p0010, p0015
        sync_api.expect(page.locator("#position")).to_have_text("1 / 3")
        page.close()
        assert not page.errors
    assert [(r["id"], r["label"]) for r in label_lines(run)] == [("p0000", "accept")]
