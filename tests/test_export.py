"""``ggtqc export``: each format written by the installed command from a real run of
examples/pairs, then read back by the library that format is for."""

import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers import REPO, run_cli

from ggtqc.export import Keys, safe_key
from ggtqc.exports.files import kept_extension, png_bytes
from ggtqc.images import decode_image

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything here is local; never ask the Hub
ACCEPTED = {"haze/coffee", "lowlight/rocket", "mixed/astronaut", "oldphoto/chelsea", "rain/astronaut_face", "snow/coffee_cup"}
REJECTED = {"fault/color_cast", "fault/mirrored", "fault/small_target", "fault/stretched", "fault/wrong_image"}


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A pairs folder (examples/pairs plus a generation log, as 'ggtqc generate' writes it) and its run."""
    base = tmp_path_factory.mktemp("export")
    pairs = shutil.copytree(REPO / "examples" / "pairs", base / "pairs")
    attempts = [
        {"id": "haze/coffee", "status": "no image", "model": "gemini-3.1-flash-image", "prompt": "first try", "cost_usd": 0.001},
        {"id": "haze/coffee", "status": "ok", "model": "gemini-3.1-flash-image", "prompt": "Remove the haze; keep every object.", "cost_usd": 0.068},
        {"id": "mixed/astronaut", "status": "ok", "model": "gemini-3.1-flash-image", "prompt": "Restore the photo.", "cost_usd": 0.067},
    ]
    (pairs / "generation.jsonl").write_text("".join(json.dumps(a) + "\n" for a in attempts))
    result = run_cli("filter", str(pairs), "-q", "--plugins", "resolution,ssim,color", "--out", str(base / "run"))
    assert result.returncode == 0, result.stderr
    return base / "run"


@pytest.fixture
def run_dir(finished, tmp_path) -> Path:
    """A copy of the run that a test may re-decide."""
    return shutil.copytree(finished, tmp_path / "run")


def export(run: Path, out: Path, *args: str):
    result = run_cli("export", str(run), "--out", str(out), *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def source(run: Path, relative: str) -> Path:
    return Path(json.loads((run / "run.json").read_text())["input"]) / relative


def rows_by_id(run: Path) -> dict[str, dict]:
    return {row["id"]: row for row in map(json.loads, (run / "results.jsonl").read_text().splitlines())}


def test_folders_links_renames_and_follows_the_verdicts(finished, tmp_path):
    out = tmp_path / "clean"
    assert "exported 6 pairs (6 accept) as folders: 12 linked files" in export(finished, out)
    rows = rows_by_id(finished)
    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and p.name != ".ggtqc-export")
    assert names == sorted(rows[i][side] for i in ACCEPTED for side in ("lq", "hq"))
    assert all(os.path.samefile(out / name, source(finished, name)) for name in names)  # linked, not copied
    assert "12 kept files" in export(finished, out)  # a rerun changes nothing
    assert "exported 12 pairs (6 accept, 6 reject)" in export(finished, out, "--verdicts", "accept,reject")
    assert (out / "hq/fault/mirrored.jpg").is_file()
    assert "12 kept, 12 removed files" in export(finished, out)  # back to accepted pairs only
    assert not (out / "hq/fault/mirrored.jpg").exists() and not (out / "lq/fault/mirrored.jpg").exists()
    summary = json.loads((out / ".ggtqc-export").read_text())["summary"]
    assert summary["pairs"] == 6 and summary["files"]["removed"] == 12

    errors = run_cli("export", str(finished), "--out", str(tmp_path / "errors"), "--verdicts", "error")
    assert errors.returncode == 0 and "exported 1 pairs (1 error)" in errors.stdout  # the truncated target is still a file
    assert "warning: 1 pairs left out, their files are gone (e.g. broken/no_target)" in errors.stderr

    flat = tmp_path / "flat"
    export(finished, flat, "--rename")
    assert sorted(p.name for p in (flat / "hq").iterdir()) == sorted(safe_key(i) + Path(rows[i]["hq"]).suffix for i in ACCEPTED)
    assert (flat / "lq" / "haze__coffee.jpg").read_bytes() == source(finished, "lq/haze/coffee.jpg").read_bytes()


def test_export_refuses_what_it_did_not_make_in_one_line(finished, tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    cases = [
        (["export", str(finished), "--out", str(foreign)], "not empty and was not made by ggtqc export"),
        (["export", str(finished), "--out", str(tmp_path / "x"), "--verdicts", "accept,maybe"], "--verdicts 'accept,maybe'"),
        (["export", str(tmp_path), "--out", str(tmp_path / "y")], "holds no ggtqc results"),
        (["export", str(finished), "--out", str(tmp_path / "z"), "--format", "hf", "--rename"], "--rename applies to --format folders"),
    ]
    for args, message in cases:
        result = run_cli(*args)
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert (foreign / "notes.txt").read_text() == "keep me" and len(list(foreign.iterdir())) == 1
    folders = tmp_path / "folders"
    export(finished, folders)
    other = run_cli("export", str(finished), "--out", str(folders), "--format", "webdataset")
    assert other.returncode == 2 and "holds a folders export; choose another folder" in other.stderr


def test_basicsr_folders_read_as_basicsr_reads_a_meta_info_file(finished, tmp_path):
    out = tmp_path / "basicsr"
    export(finished, out, "--format", "basicsr")
    rows = rows_by_id(finished)
    lines = (out / "meta_info.txt").read_text().splitlines(keepends=True)
    assert len(lines) == 6
    by_key = {safe_key(i): rows[i] for i in ACCEPTED}
    for line in lines:
        # basicsr.data.data_util.paired_paths_from_meta_info_file, with filename_tmpl '{}'
        gt_name = line.split(" ")[0]
        basename, ext = os.path.splitext(os.path.basename(gt_name))
        lq_path, gt_path = out / "lq" / f"{'{}'.format(basename)}{ext}", out / "hq" / gt_name
        assert lq_path.is_file() and gt_path.is_file(), line
        row = by_key[basename]
        gt = decode_image(gt_path)
        assert line.rstrip("\n").split(" ", 1)[1] == f"({gt.shape[0]},{gt.shape[1]},3)"
        original_lq, original_hq = source(finished, row["lq"]), source(finished, row["hq"])
        if original_lq.suffix == original_hq.suffix:
            assert os.path.samefile(lq_path, original_lq) and os.path.samefile(gt_path, original_hq)
        else:  # one extension for both sides: lossless PNGs of the same pixels
            assert ext == ".png"
            assert np.array_equal(decode_image(lq_path), decode_image(original_lq))
            assert np.array_equal(gt, decode_image(original_hq))
    assert {line.split(" ")[0] for line in lines} >= {"lowlight__rocket.png", "oldphoto__chelsea.png", "haze__coffee.jpg"}
    assert "12 kept files" in export(finished, out, "--format", "basicsr")


def test_hf_parquet_loads_back_with_datasets(finished, tmp_path):
    datasets = pytest.importorskip("datasets")
    out = tmp_path / "hf"
    assert "exported 6 pairs (6 accept) as hf: 3 shards (3 written" in export(finished, out, "--format", "hf", "--shard-size", "2")
    assert sorted(p.name for p in (out / "data").iterdir()) == ["train-00000.parquet", "train-00001.parquet", "train-00002.parquet"]
    loaded = datasets.load_dataset("parquet", data_files=str(out / "data" / "*.parquet"), split="train", cache_dir=str(tmp_path / "cache"))
    assert isinstance(loaded.features["lq"], datasets.Image) and isinstance(loaded.features["hq"], datasets.Image)
    assert len(loaded) == 6 and set(loaded["id"]) == ACCEPTED and set(loaded["verdict"]) == {"accept"}
    rows = rows_by_id(finished)
    first = loaded[0]
    assert isinstance(first["hq"], Image.Image) and first["hq"].size == Image.open(source(finished, rows[first["id"]]["hq"])).size
    raw = loaded.cast_column("lq", datasets.Image(decode=False)).cast_column("hq", datasets.Image(decode=False))
    for item in raw:
        for side in ("lq", "hq"):
            assert item[side]["bytes"] == source(finished, rows[item["id"]][side]).read_bytes()  # never re-encoded
            assert item[f"{side}_file"] == rows[item["id"]][side]
        assert item["scores"]["ssim"]["structure"] == pytest.approx(rows[item["id"]]["scores"]["ssim"]["structure"])
        assert item["scores"]["resolution"]["scale_error"] is None  # not computed for these pairs
    by_id = {item["id"]: item for item in loaded.remove_columns(["lq", "hq"])}
    coffee = by_id["haze/coffee"]
    assert (coffee["model"], coffee["prompt"], coffee["cost_usd"]) == ("gemini-3.1-flash-image", "Remove the haze; keep every object.", 0.068)
    assert json.loads(coffee["generation"])["status"] == "ok"  # the last attempt is the pair's record
    assert by_id["snow/coffee_cup"]["model"] is None and by_id["snow/coffee_cup"]["generation"] is None

    card = (out / "README.md").read_text()
    assert "| accept | 6 | 6 |" in card and "| reject | 6 | 0 |" in card and "| all | 14 | 6 |" in card
    assert "| ssim | 2 | structure | higher | 0.5 | 0.025 |" in card
    assert "`gemini-3.1-flash-image` (2)" in card and "0.14 USD" in card
    assert "No pair of this run was labelled by a person." in card
    from_card = datasets.load_dataset(str(out), split="train", cache_dir=str(tmp_path / "cache2"))  # the card's configs
    assert len(from_card) == 6 and isinstance(from_card.features["hq"], datasets.Image)


def test_webdataset_shards_read_back_with_webdataset(finished, tmp_path):
    wds = pytest.importorskip("webdataset")
    out = tmp_path / "wds"
    export(finished, out, "--format", "webdataset", "--shard-size", "2")
    rows = rows_by_id(finished)
    urls = str(out / "shards" / "pairs-{00000..00002}.tar")
    samples = list(wds.WebDataset(urls, shardshuffle=False))
    assert len(samples) == 6
    for sample in samples:
        record = json.loads(sample["json"])
        row = rows[record["id"]]
        assert sample["__key__"] == safe_key(record["id"]) and "." not in sample["__key__"] and "/" not in sample["__key__"]
        assert record["verdict"] == "accept" and record["scores"] == row["scores"] and record["reasons"] == row["reasons"]
        for side in ("lq", "hq"):
            (name,) = [k for k in sample if k.startswith(f"{side}.")]
            assert name == f"{side}.{kept_extension(source(finished, row[side]))[1:]}"
            assert sample[name] == source(finished, row[side]).read_bytes()
    decoded = next(iter(wds.WebDataset(urls, shardshuffle=False).decode("pil")))
    assert isinstance(decoded["lq.jpg"], Image.Image)


def test_shards_resume_rewrite_what_changed_and_drop_the_rest(run_dir, tmp_path):
    out = tmp_path / "wds"
    export(run_dir, out, "--format", "webdataset", "--shard-size", "2")
    shards = out / "shards"
    times = {p.name: p.stat().st_mtime_ns for p in shards.iterdir()}
    assert "3 shards (0 written, 3 kept, 0 removed)" in export(run_dir, out, "--format", "webdataset", "--shard-size", "2")
    assert {p.name: p.stat().st_mtime_ns for p in shards.iterdir()} == times
    # A run killed while writing shard 1: its marker never came, a partial file lies under a temporary name.
    (out / ".ggtqc-done" / "pairs-00001.tar.json").unlink()
    (shards / ".pairs-00002.tar.part").write_bytes(b"half a shard")
    assert "3 shards (1 written, 2 kept, 0 removed)" in export(run_dir, out, "--format", "webdataset", "--shard-size", "2")
    assert sorted(p.name for p in shards.iterdir()) == ["pairs-00000.tar", "pairs-00001.tar", "pairs-00002.tar"]
    assert shards.joinpath("pairs-00000.tar").stat().st_mtime_ns == times["pairs-00000.tar"]
    # Stricter thresholds turn accepted pairs into rejects: shards from the first of them on are rewritten, the last ones go.
    (tmp_path / "strict.toml").write_text("[ssim.thresholds]\nstructure = 0.9\n")
    decided = run_cli("decide", str(run_dir), "--config", str(tmp_path / "strict.toml"))
    assert decided.returncode == 0, decided.stderr
    accepted = {i for i, row in rows_by_id(run_dir).items() if row["verdict"] == "accept"}
    assert len(accepted) < 6
    export(run_dir, out, "--format", "webdataset", "--shard-size", "2")
    names = sorted(p.name for p in shards.iterdir())
    assert len(names) == -(-len(accepted) // 2)
    assert sorted(p.name for p in (out / ".ggtqc-done").iterdir()) == [f"{name}.json" for name in names]
    keys = set()
    for name in names:
        with tarfile.open(shards / name) as tar:
            keys |= {json.load(tar.extractfile(m))["id"] for m in tar.getmembers() if m.name.endswith(".json")}
    assert keys == accepted


def test_missing_pyarrow_is_a_one_line_message(finished, tmp_path):
    fake = tmp_path / "site" / "pyarrow"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('no pyarrow here')\n")
    result = run_cli("export", str(finished), "--out", str(tmp_path / "hf"), "--format", "hf", env={"PYTHONPATH": str(tmp_path / "site")})
    assert result.returncode == 2
    assert result.stderr == "ggtqc: --format hf needs pyarrow: pip install 'ggtqc[hf]'\n"
    assert not (tmp_path / "hf").exists()  # refused before anything was written


def test_images_keep_their_bytes_or_become_lossless_png(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (33, 47, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.bmp")
    Image.fromarray(pixels).save(tmp_path / "named.jpg", format="PNG")  # a PNG under a JPEG name
    assert kept_extension(tmp_path / "a.bmp") is None and kept_extension(tmp_path / "named.jpg") == ".png"
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png_bytes(tmp_path / "a.bmp")))), pixels)


def test_keys_are_flat_dotless_and_unique():
    keys = Keys()
    assert keys.key("haze/coffee") == "haze__coffee"
    assert keys.key("a.b c/d") == "a_b_c__d"
    clash = keys.key("haze__coffee")
    assert clash.startswith("haze__coffee-") and clash != "haze__coffee" and "." not in clash


def test_hf_card_tells_labels_and_the_calibration_behind_the_thresholds(run_dir, tmp_path):
    labels = [
        {"id": "haze/coffee", "label": "accept", "tags": [], "reviewer": "ana", "queue": "audit", "time": "2026-12-03T09:14:05Z", "scores_shown": True},
        {"id": "fault/mirrored", "label": "reject", "tags": ["geometry_changed"], "reviewer": "ana", "queue": "rejected:ssim.structure", "time": "2026-12-03T09:15:05Z", "scores_shown": True},
        {"id": "fault/mirrored", "label": "reject", "tags": [], "reviewer": "ben", "queue": "audit", "time": "2026-12-03T09:16:05Z", "scores_shown": False},
    ]
    (run_dir / "labels.jsonl").write_text("".join(json.dumps(label) + "\n" for label in labels))
    thresholds = tmp_path / "thresholds.toml"
    thresholds.write_text(
        f"# ggtqc calibrate {run_dir} --target-accept 0.98 --confidence 0.9\n"
        "# NOT GUARANTEED: 2 audit labels, 114 needed.\n\n[ssim.thresholds]\nstructure = 0.45\n"
    )
    decided = run_cli("decide", str(run_dir), "--config", str(thresholds))
    assert decided.returncode == 0, decided.stderr
    out = tmp_path / "hf"
    export(run_dir, out, "--format", "hf", "--verdicts", "accept,review")
    card = (out / "README.md").read_text()
    assert "3 labels by 2 reviewers; 2 pairs decided by them (1 good, 1 faulty), 2 of them in the audit sample" in card
    assert "re-decided from the stored scores with `thresholds.toml`" in card
    assert "Its calibration: NOT GUARANTEED: 2 audit labels, 114 needed." in card
    assert "whose verdict is accept or review" in card
