"""The library layer: ``ggtqc.filter_pairs``, ``ggtqc.list_filters``, ``ggtqc.create_filter``."""

import ast
import json
import subprocess
import sys

import numpy as np
import pytest

import ggtqc
from tests.helpers import REPO, read_rows
from ggtqc import Field, Filter, hookimpl
from ggtqc.config import ConfigError
from ggtqc.export import ExportError
from ggtqc.host import Host, PluginError
from ggtqc.images import decode_image
from ggtqc.pairs import PairsError

EXAMPLES = REPO / "examples" / "pairs"
CAST = (EXAMPLES / "lq/fault/color_cast.jpg", EXAMPLES / "hq/fault/color_cast.jpg")
HONEST = (EXAMPLES / "lq/haze/coffee.jpg", EXAMPLES / "hq/haze/coffee.jpg")


def test_list_filters_describes_every_builtin():
    listing = {f["name"]: f for f in ggtqc.list_filters()}
    assert {"resolution", "ssim", "color", "geometry", "hallucination", "artifacts", "clip", "iqa"} <= set(listing)
    color = listing["color"]
    assert color["package"].startswith("ggtqc ") and color["options"]["analysis_side"] == 64
    cast = next(f for f in color["fields"] if f["name"] == "cast")
    assert cast["better"] == "lower" and cast["threshold"] > 0 and cast["help"]
    assert listing["clip"]["weights"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """resolution and color over the sample pairs, through the library."""
    out = tmp_path_factory.mktemp("api") / "qc"
    seen = []
    summary = ggtqc.filter_pairs(EXAMPLES, out, plugins=["resolution", "color"], progress=lambda rows, done, total: seen.append((len(rows), done, total)), workers=1)
    return out, summary, seen


def test_filter_pairs_returns_the_summary_it_writes_and_reports_progress(run):
    out, summary, seen = run
    assert summary == json.loads((out / "summary.json").read_text())
    assert summary["pairs"] == 14 and list(summary["filters"]) == ["resolution", "color"]
    assert summary["verdicts"]["error"] == 2 and summary["rejected_by"]["color.cast"] >= 1
    assert seen[0] == (0, 0, 14) and seen[-1][1:] == (14, 14)
    assert sum(n for n, _, _ in seen) == 14
    again = ggtqc.filter_pairs(EXAMPLES, out, plugins="resolution,color", workers=1)  # the same configuration resumes
    assert again["this_run"]["pairs"] == 0 and again["verdicts"] == summary["verdicts"]


def test_create_filter_scores_a_pair_as_the_run_did(run):
    out, _, _ = run
    rows = {row["id"]: row for row in read_rows(out)}
    color = ggtqc.create_filter("color", device="cpu")
    for pair_id, (lq, hq) in {"fault/color_cast": CAST, "haze/coffee": HONEST}.items():
        from_paths = color.score_pair(lq, hq)
        assert from_paths["scores"] == rows[pair_id]["scores"]["color"]
        assert from_paths["verdict"] in ("accept", "review", "reject")
        from_arrays = color.score_pair(decode_image(lq), np.array(decode_image(hq)))  # read-only or writeable arrays alike
        assert from_arrays["scores"] == from_paths["scores"] and from_arrays["verdict"] == from_paths["verdict"]
    cast = color(*CAST)
    assert cast["verdict"] == "reject" and any(r.startswith("color.cast ") for r in cast["reasons"])
    assert color.better["cast"] == "lower" and color.thresholds["cast"] > 0
    lenient = ggtqc.create_filter("color", device="cpu", thresholds={"cast": 1e6, "hue_shift_deg": None})
    assert lenient.thresholds["hue_shift_deg"] is None
    assert not any(r.startswith(("color.cast", "color.hue_shift_deg")) for r in lenient.score_pair(*CAST)["reasons"])


def test_create_filter_gives_an_error_verdict_for_a_file_it_cannot_decode(tmp_path):
    resolution = ggtqc.create_filter("resolution", device="cpu")
    broken = resolution.score_pair(EXAMPLES / "lq/broken/truncated.jpg", EXAMPLES / "hq/broken/truncated.png")
    assert broken == {"scores": {}, "verdict": "error", "reasons": ["hq: truncated file"]}
    missing = resolution.score_pair(str(tmp_path / "none.png"), decode_image(HONEST[1]))
    assert missing["verdict"] == "error" and missing["reasons"] == ["lq: file not found"]
    with pytest.raises(TypeError, match="uint8"):
        resolution.score_pair(np.zeros((8, 8, 3), np.float32), np.zeros((8, 8, 3), np.uint8))


class Counting(Filter):
    name = "counting"
    version = "1"
    fields = (Field("mean_gap", "lower", 10.0),)
    options = {"scale": 1.0}
    setups = 0

    def setup(self, device):
        type(self).setups += 1

    def score(self, batch):
        return {"mean_gap": [self.settings["scale"] * abs(float(a.mean()) - float(b.mean())) for a, b in zip(batch.lq, batch.hq)]}


class Plugin:
    @hookimpl
    def ggtqc_register_filters(self, register):
        register(Counting)


def test_create_filter_sets_up_once_at_first_use_and_validates_its_keywords():
    host = Host()
    host.register(Plugin(), "counting-plugin")
    counting = ggtqc.create_filter("counting", host=host, device="cpu", scale=2.0, margins={"mean_gap": 0})
    assert Counting.setups == 0  # nothing loads until a pair is scored
    grey, bright = np.full((16, 16, 3), 100, np.uint8), np.full((16, 16, 3), 104, np.uint8)
    assert counting.score_pair(grey, bright) == {"scores": {"mean_gap": 8.0}, "verdict": "accept", "reasons": []}
    results = counting.score_pairs([(grey, np.full((16, 16), 110, np.uint8)), (grey, grey)])
    assert [r["verdict"] for r in results] == ["reject", "accept"]
    assert results[0]["reasons"] == ["counting.mean_gap 20 > 10"]
    assert Counting.setups == 1
    with pytest.raises(ConfigError, match="create_filter: unknown option of counting 'scal'; did you mean 'scale'"):
        ggtqc.create_filter("counting", host=host, scal=2.0)
    with pytest.raises(ConfigError, match="unknown field of counting 'gap'"):
        ggtqc.create_filter("counting", host=host, thresholds={"gap": 1})
    with pytest.raises(PluginError, match="unknown filter 'countin'; did you mean 'counting'"):
        ggtqc.create_filter("countin", host=host)
    with pytest.raises(PluginError, match="one filter name"):
        ggtqc.create_filter("all", host=host)


def test_create_filter_without_its_weights_says_where_it_looked():
    with pytest.raises(PluginError, match="clip: .* not found \\(looked in: .*\\)\nprovide what they need") as error:
        ggtqc.create_filter("clip", device="cpu")
    assert "--plugins" not in str(error.value)


def test_filter_pairs_checks_everything_before_any_work(tmp_path):
    out = tmp_path / "qc"
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "mine.txt").write_text("keep me")
    with pytest.raises(ExportError, match="not empty"):
        ggtqc.filter_pairs(EXAMPLES, out, "resolution", export=tmp_path / "taken")
    with pytest.raises(ConfigError, match="config: unknown field of color 'cats'; did you mean 'cast'"):
        ggtqc.filter_pairs(EXAMPLES, out, "resolution", config={"color": {"thresholds": {"cats": 5}}})
    with pytest.raises(PairsError, match="does not exist"):
        ggtqc.filter_pairs(tmp_path / "nothing", out)
    assert not out.exists()


def test_filter_pairs_applies_a_config_mapping_and_exports(tmp_path):
    summary = ggtqc.filter_pairs(
        EXAMPLES, tmp_path / "qc", "resolution", config={"resolution": {"thresholds": {"hq_short_side": 512}}}, export=tmp_path / "clean", workers=1
    )
    assert summary["filters"]["resolution"]["thresholds"]["hq_short_side"] == 512
    rows = {row["id"]: row for row in read_rows(tmp_path / "qc")}
    assert rows["haze/coffee"]["reasons"] == ["resolution.hq_short_side 256 < 512"]
    assert summary["export"] == {"dir": str(tmp_path / "clean"), "pairs": summary["verdicts"]["accept"]}
    assert len(list((tmp_path / "clean" / "hq").rglob("*.*"))) == summary["verdicts"]["accept"]


def test_readme_python_example_runs_as_printed(tmp_path):
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Python API", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "examples").symlink_to(REPO / "examples")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    printed = ast.literal_eval(done.stdout.strip())
    shown = ast.literal_eval(code.rsplit("# ", 1)[1].replace(", ...", ""))
    assert printed["verdict"] == shown["verdict"] and printed["reasons"] == shown["reasons"]
    assert {k: round(v, 2) for k, v in printed["scores"].items() if k in shown["scores"]} == shown["scores"]
    summary = json.loads((tmp_path / "qc" / "summary.json").read_text())
    assert summary["verdicts"] == {"accept": 5, "review": 1, "reject": 6, "error": 2}  # as the README's filter example
