"""``ggtqc report`` as a user runs it, on the sample pairs and on hostile ids."""

import html
import re
import shutil
from collections import Counter
from pathlib import Path
from urllib.parse import unquote

import cv2
import pytest

from tests.helpers import REPO, WEIGHTS_FREE, fingerprint, photos, read_rows, run_cli, save_rgb
from ggtqc.report import pick, spread

EXAMPLES = REPO / "examples" / "pairs"


def images_on(page: Path) -> list[Path]:
    return [page.parent / unquote(html.unescape(src)) for src in re.findall(r"<img src='([^']+)'", page.read_text())]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("qc")
    done = run_cli("filter", str(EXAMPLES), "-q", "-p", WEIGHTS_FREE, "--all-scores", "--out", str(out), "--fresh")  # every rejecting field draws
    assert done.returncode == 0, done.stderr
    return out


def test_report_shows_each_rejecting_field_errors_and_accepted_pairs(results):
    before = fingerprint(EXAMPLES), fingerprint(results)
    made = run_cli("report", str(results))
    assert made.returncode == 0, made.stderr
    page = results / "report" / "index.html"
    assert made.stdout.strip() == f"report: {page}"
    text = page.read_text()

    rows = read_rows(results)
    failed = {name for row in rows for name in row.get("failed", ())}
    assert failed and all(f"<h2 id='{name}'>" in text for name in failed)
    for row in rows:
        assert html.escape(row["id"]) in text, row["id"]  # every row of this small run is shown somewhere
    pasted = next(row for row in rows if row["id"] == "fault/pasted_object")
    assert f"<img src='../{pasted['heatmaps']['hallucination']}'" in text  # the filter's heatmap beside the pair
    assert "HQ: truncated file" in text and "HQ: no file" in text  # broken pairs say why there is no picture

    shown = images_on(page)
    assert len(shown) >= 2 * len(rows) - 3
    for image in shown:
        decoded = cv2.imread(str(image))
        assert decoded is not None and max(decoded.shape[:2]) <= 256, image
    assert fingerprint(EXAMPLES) == before[0]
    assert {k: v for k, v in fingerprint(results).items() if not k.startswith("report/")} == before[1]  # only report/ is new


def test_per_reason_limits_each_section_and_out_puts_it_elsewhere(results, tmp_path):
    made = run_cli("report", str(results), "--per-reason", "1", "--accepted", "0", "--out", str(tmp_path / "r"))
    assert made.returncode == 0, made.stderr
    text = (tmp_path / "r" / "index.html").read_text()
    counts = Counter(name for row in read_rows(results) for name in row.get("failed", ()))
    shown = dict((name, (int(total), int(n))) for name, total, n in re.findall(r"<h2 id='([a-z_.]+)'>[a-z_.]+: (\d+) pairs? \((\d+) shown\)", text))
    assert shown == {name: (total, 1) for name, total in counts.items()}
    assert "Accepted: a sample of 0" in text
    assert all(image.is_file() for image in images_on(tmp_path / "r" / "index.html"))  # heatmaps linked across folders


def test_odd_ids_are_escaped_and_their_heatmaps_still_found(tmp_path):
    pairs = tmp_path / "pairs"
    photo = cv2.resize(photos()[1], (320, 256))
    odd = "x/<b>bold</b> & 'quoted' #1?"
    save_rgb(pairs / "lq" / f"{odd}.png", cv2.resize(photo, (160, 128)))
    save_rgb(pairs / "hq" / f"{odd}.png", photo[:, ::-1].copy())  # mirrored, so it has a section and a heatmap
    assert run_cli("filter", str(pairs), "-q", "-p", "hallucination", "--out", str(tmp_path / "qc")).returncode == 0
    assert run_cli("report", str(tmp_path / "qc")).returncode == 0
    page = tmp_path / "qc" / "report" / "index.html"
    text = page.read_text()
    assert "<h2 id='hallucination.added'>" in text
    assert "<b>bold</b>" not in text and html.escape(odd) in text
    heatmaps = [image for image in images_on(page) if "heatmaps" in image.parts]
    assert heatmaps and all(image.is_file() for image in heatmaps)
    assert not any(c in src for src in re.findall(r"<img src='([^']+)'", text) for c in "#? ")  # a URL, not a bare path


def test_a_folder_without_results_or_with_damaged_ones_is_a_one_line_error(tmp_path):
    failed = run_cli("report", str(tmp_path))
    assert failed.returncode == 2
    assert failed.stderr.strip() == f"ggtqc: {tmp_path} holds no ggtqc results (results.jsonl and run.json); give the --out folder of a 'ggtqc filter' run"
    (tmp_path / "results.jsonl").write_text('{"id": "a", "verdict": "accept", "reasons": []}\nnot json\n')
    for run_json in ("{broken", '{"filters": {}}', '{"input": "/p", "filters": {}}'):
        (tmp_path / "run.json").write_text(run_json)
        failed = run_cli("report", str(tmp_path))
        assert failed.returncode == 2 and len(failed.stderr.strip().splitlines()) == 1, failed.stderr
        assert ("run.json is damaged" if "input" not in run_json else "line 2 is not a row") in failed.stderr


def test_spread_takes_both_ends_and_even_steps():
    assert spread(list(range(10)), 4) == [0, 3, 6, 9]
    assert spread([1, 2], 5) == [1, 2] and spread(list(range(9)), 1) == [0]


def test_sections_are_ordered_by_count_and_a_pair_appears_under_each_field_it_failed():
    rows = [
        {"id": "a", "verdict": "reject", "failed": ["f.x", "g.y"], "reasons": []},
        {"id": "b", "verdict": "reject", "failed": ["g.y"], "reasons": []},
        {"id": "c", "verdict": "error", "reasons": ["hq: truncated file"]},
        {"id": "d", "verdict": "error", "reasons": ["lq: empty file (0 bytes)"]},
        {"id": "e", "verdict": "accept", "reasons": []},
    ]
    picked = pick(rows, per_reason=5, accepted=5)
    assert list(picked.by_field) == ["g.y", "f.x"] and [r["id"] for r in picked.by_field["g.y"]] == ["a", "b"]
    assert picked.error_totals == {"hq: truncated file": 1, "lq: empty file": 1}
    assert [r["id"] for r in picked.accepted] == ["e"]


def test_a_report_of_moved_pairs_says_so_instead_of_failing(results, tmp_path):
    moved = tmp_path / "qc"
    shutil.copytree(results, moved, ignore=shutil.ignore_patterns("report"))
    run = (moved / "run.json").read_text().replace(str(EXAMPLES), str(tmp_path / "gone"))
    (moved / "run.json").write_text(run)
    assert run_cli("report", str(moved)).returncode == 0
    assert "LQ: file not found" in (moved / "report" / "index.html").read_text()


def test_a_log_still_being_written_is_read_without_touching_it(results, tmp_path):
    live = tmp_path / "qc"
    shutil.copytree(results, live, ignore=shutil.ignore_patterns("report"))
    with (live / "results.jsonl").open("a") as f:
        f.write('{"id": "half/writ')  # a row the run is writing right now
    before = (live / "results.jsonl").read_bytes()
    made = run_cli("report", str(live))
    assert made.returncode == 0, made.stderr
    assert (live / "results.jsonl").read_bytes() == before
    assert "half/writ" not in (live / "report" / "index.html").read_text()
