"""``ggtqc compare`` as a user runs it: the installed command over real runs."""

import csv
import shutil

import pytest

from tests.helpers import REPO, make_pair_folder, read_rows, run_cli
from ggtqc.compare import wilson

EXAMPLES = REPO / "examples" / "pairs"


def test_wilson_interval_matches_published_values():
    # Newcombe (1998), table I: 0/10 -> 0 to 0.2775; 5/10 -> 0.2366 to 0.7634 (and never outside 0..1)
    assert [round(x, 4) for x in wilson(0, 10)] == [0.0, 0.2775]
    assert [round(x, 4) for x in wilson(5, 10)] == [0.2366, 0.7634]
    assert wilson(0, 0) == (0.0, 1.0)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three runs over the sample LQ photos: defaults, a stricter config, and another folder layout."""
    root = tmp_path_factory.mktemp("compare")
    (root / "strict.toml").write_text("[resolution.thresholds]\nhq_short_side = 512\n")
    other = shutil.copytree(EXAMPLES, root / "other")
    (other / "lq").rename(other / "input")
    (other / "hq").rename(other / "target")
    for args in (
        [str(EXAMPLES), "--out", str(root / "default")],
        [str(EXAMPLES), "--out", str(root / "strict"), "--config", str(root / "strict.toml")],
        [str(other), "--out", str(root / "moved")],
    ):
        done = run_cli("filter", *args, "-q", "-p", "resolution")
        assert done.returncode == 0, done.stderr
    return root


def test_compare_ranks_runs_and_shows_disagreements_side_by_side(runs):
    default, strict, moved = (read_rows_by_lq(runs / name, side) for name, side in (("default", "lq"), ("strict", "lq"), ("moved", "input")))
    result = run_cli("compare", str(runs / "strict"), str(runs / "default"), str(runs / "moved"), "--out", str(runs / "cmp"), "--show", "3")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["rank", "run", "pairs"]
    ranked = [line.split()[1] for line in lines[1:4]]
    assert ranked[2] == "strict" and sorted(ranked[:2]) == ["default", "moved"]  # the strict thresholds pass fewer
    accepted = sum(row["verdict"] == "accept" for row in default.values())
    assert f"  {accepted / 14:.3f} [" in lines[1]
    differ = sum(default[lq]["verdict"] != strict[lq]["verdict"] for lq in default)
    assert differ > 0 and default.keys() == strict.keys() == moved.keys()
    # the moved layout matched by content: 14 photos in every run, one of them the LQ of two pairs
    assert lines[4] == f"14 LQ photos in every run, {differ} with verdicts that differ; 42 rows matched by LQ content"
    assert lines[5] == f"compare: {runs / 'cmp' / 'index.html'}"

    table = list(csv.DictReader((runs / "cmp" / "table.csv").open()))
    assert [row["run"] for row in table] == ranked
    strict_row = table[2]
    assert int(strict_row["pairs"]) == 14 and int(strict_row["reject"]) > 0
    assert strict_row["rejected_by"].startswith("resolution.hq_short_side ")
    assert float(strict_row["accept_low"]) <= float(strict_row["accept_rate"]) <= float(strict_row["accept_high"])

    page = (runs / "cmp" / "index.html").read_text()
    assert f"{differ} LQ photos (3 shown)" in page
    assert page.count("<div class='photo'>") == 3
    assert page.count("<img ") == 3 * 4  # the LQ, then each run's target
    assert "resolution.hq_short_side 256 &lt; 512" in page and "None" not in page
    assert len(list((runs / "cmp" / "thumbs").glob("*.jpg"))) == 12


def read_rows_by_lq(out, side):
    return {row["lq"].removeprefix(side + "/"): row for row in read_rows(out)}


def test_compare_names_runs_and_refuses_what_it_cannot_compare(runs, tmp_path):
    named = run_cli("compare", str(runs / "default"), str(runs / "strict"), "--name", "gen-a", "--name", "gen-b", "--out", str(tmp_path / "cmp"))
    assert named.returncode == 0, named.stderr
    assert [line.split()[1] for line in named.stdout.splitlines()[1:3]] == ["gen-a", "gen-b"]

    make_pair_folder(tmp_path / "unrelated", 2)
    assert run_cli("filter", str(tmp_path / "unrelated"), "-q", "-p", "resolution", "--out", str(tmp_path / "u")).returncode == 0
    for args, message in (
        ([str(runs / "default")], "give two or more RUN folders"),
        ([str(runs / "default"), str(tmp_path)], "holds no ggtqc results"),
        ([str(runs / "default"), str(tmp_path / "u")], "the runs share no LQ photo"),
        ([str(runs / "default"), str(runs / "strict"), "--name", "one"], "1 names for 2 runs"),
    ):
        refused = run_cli("compare", *args, "--out", str(tmp_path / "no"))
        assert refused.returncode == 2, refused.stderr
        assert message in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
