"""Parquet pairs files: path columns, image bytes as ``datasets`` and ``ggtqc export --format
hf`` write them, driven through the command line and ``ggtqc.api.filter_pairs``."""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from tests.helpers import REPO, kill_after_rows, make_pair_folder, read_rows, run_cli
from ggtqc import api
from ggtqc.export import ExportError, export_run
from ggtqc.images import DecodeLimits, decode_image
from ggtqc.pairs import PairsError, discover

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

os.environ.setdefault("HF_HUB_OFFLINE", "1")
PLUGINS = "resolution,ssim,color"
IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def pair_files(folder: Path) -> list[tuple[str, str]]:
    """``(lq, hq)`` paths relative to ``folder`` of a pairs folder, sorted."""
    return sorted((p.relative_to(folder).as_posix(), next((folder / "hq").glob(p.relative_to(folder / "lq").with_suffix(".*").as_posix())).relative_to(folder).as_posix()) for p in (folder / "lq").rglob("*.*"))


def image_cells(folder: Path, names: list[str], path: str | None = None) -> list[dict]:
    return [{"bytes": (folder / name).read_bytes(), "path": path or Path(name).name} for name in names]


def scores_by_id(out: Path) -> dict[str, tuple]:
    return {row["id"]: (row["verdict"], row["scores"], row["reasons"]) for row in read_rows(out)}


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("parquet") / "pairs"
    make_pair_folder(root, 8, seed=3)
    return root


def test_path_columns_read_like_a_csv_pairs_file(folder, tmp_path):
    files = pair_files(folder)
    pairs = shutil.copytree(folder, tmp_path / "pairs")
    (pairs / "pairs.csv").write_text("lq,hq\n" + "".join(f"{lq},{hq}\n" for lq, hq in files))
    table = pa.table({"lq_path": [lq for lq, _ in files], "hq_path": [hq for _, hq in files]})
    pq.write_table(table, pairs / "pairs.parquet")  # relative paths resolve against the file's folder

    listed = run_cli("pairs", str(pairs / "pairs.parquet"), "--list")
    assert listed.returncode == 0, listed.stderr
    first = listed.stdout.splitlines()[0].split("\t")
    assert first[1:] == [files[0][0], files[0][1], "row"]

    for name in ("pairs.csv", "pairs.parquet"):
        result = run_cli("filter", str(pairs / name), "-q", "--plugins", PLUGINS, "--out", str(tmp_path / f"qc-{name}"))
        assert result.returncode == 0, result.stderr
    csv_rows = sorted(read_rows(tmp_path / "qc-pairs.csv"), key=lambda r: r["id"])
    parquet_rows = sorted(read_rows(tmp_path / "qc-pairs.parquet"), key=lambda r: r["id"])
    assert len(parquet_rows) == len(files) and parquet_rows == csv_rows  # same ids, paths, scores, verdicts


@pytest.fixture(scope="module")
def datasets_run(folder, tmp_path_factory) -> Path:
    """The pairs of ``folder`` (PNG, JPEG, WebP, BMP and TIFF) written by ``datasets`` as one
    Parquet file of images, and a run of it."""
    datasets = pytest.importorskip("datasets")
    base = tmp_path_factory.mktemp("datasets")
    files = pair_files(folder)
    table = {"lq": image_cells(folder, [lq for lq, _ in files]), "hq": image_cells(folder, [hq for _, hq in files])}
    dataset = datasets.Dataset.from_dict(table).cast_column("lq", datasets.Image()).cast_column("hq", datasets.Image())
    dataset.to_parquet(str(base / "hf.parquet"))
    result = run_cli("filter", str(base / "hf.parquet"), "-q", "--plugins", PLUGINS, "--out", str(base / "qc"))
    assert result.returncode == 0, result.stderr
    return base / "qc"


def test_images_written_by_datasets_are_decoded_from_their_bytes(folder, datasets_run, tmp_path):
    files = pair_files(folder)
    source = datasets_run.parent / "hf.parquet"
    schema = pq.read_schema(source)
    assert schema.field("lq").type == IMAGE and "huggingface" in json.dumps({k.decode(): v.decode() for k, v in schema.metadata.items()})

    pairs = discover(source)
    assert [p.id for p in pairs] == [Path(lq).stem for lq, _ in files]  # from the path fields, in file order
    assert [str(p.lq) for p in pairs[:2]] == ["hf.parquet#0/lq", "hf.parquet#1/lq"]
    for pair, (lq, hq) in zip(pairs, files):
        assert np.array_equal(decode_image(pair.hq, DecodeLimits()), decode_image(folder / hq))

    out = datasets_run
    reference = tmp_path / "ref"
    assert run_cli("filter", str(folder), "-q", "--plugins", PLUGINS, "--out", str(reference)).returncode == 0
    by_stem = {Path(pair_id).name: value for pair_id, value in scores_by_id(reference).items()}
    assert scores_by_id(out) == by_stem
    assert not any(p.suffix in (".png", ".jpg") for p in out.rglob("*"))  # nothing decoded was written
    rows = read_rows(out)
    assert rows[0]["lq"] == "hf.parquet#0/lq" and rows[0]["hq"] == "hf.parquet#0/hq"
    processes = run_cli("filter", str(source), "-q", "--plugins", PLUGINS, "--processes", "2", "--batch-size", "3", "--out", str(tmp_path / "qc2"))
    assert processes.returncode == 0, processes.stderr
    assert (tmp_path / "qc2" / "results.jsonl").read_bytes() == (out / "results.jsonl").read_bytes()  # each worker reads its own cells


ALL = ("--verdicts", "accept,review,reject")


def originals(folder: Path, run: Path) -> dict[str, dict[str, Path]]:
    """Each exported pair's original files (the bytes its cells hold), by id."""
    by_stem = {Path(lq).stem: {"lq": folder / lq, "hq": folder / hq} for lq, hq in pair_files(folder)}
    return {row["id"]: by_stem[row["id"]] for row in read_rows(run) if row["verdict"] != "error"}


def export(run: Path, out: Path, *args: str) -> str:
    result = run_cli("export", str(run), "--out", str(out), *ALL, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def normal(suffix: str) -> str:
    return {".jpeg": ".jpg", ".tiff": ".tif"}.get(suffix, suffix)


def test_folders_export_of_a_bytes_backed_run_writes_each_image_as_it_is_stored(folder, datasets_run, tmp_path):
    expected = originals(folder, datasets_run)
    assert len(expected) == 8 and {p.suffix for sides in expected.values() for p in sides.values()} == {".png", ".jpg", ".webp", ".bmp", ".tif"}
    out = tmp_path / "folders"
    assert "as folders: 16 written files" in export(datasets_run, out)
    for pair_id, sides in expected.items():
        for side, original in sides.items():
            (written,) = (out / side).glob(f"{pair_id}.*")
            assert written.suffix == normal(original.suffix) and written.read_bytes() == original.read_bytes()  # never re-encoded
    assert "16 kept files" in export(datasets_run, out)
    changed = next(iter((out / "hq").iterdir()))
    changed.write_bytes(b"old")
    (out / "lq" / "stray.png").write_bytes(b"x")
    assert "as folders: 15 kept, 1 written, 1 removed files" in export(datasets_run, out)
    assert changed.read_bytes() != b"old" and not (out / "lq" / "stray.png").exists()


def test_basicsr_export_of_a_bytes_backed_run_reads_as_basicsr_reads_it(folder, datasets_run, tmp_path):
    from ggtqc.export import safe_key

    expected = {safe_key(k): v for k, v in originals(folder, datasets_run).items()}
    out = tmp_path / "basicsr"
    summary = export(datasets_run, out, "--format", "basicsr")
    lines = (out / "meta_info.txt").read_text().splitlines()
    assert len(lines) == 8
    kept_as_stored = 0
    for line in lines:  # paired_paths_from_meta_info_file: the GT name, the LQ found by its base name and extension
        gt_name, shape_text = line.split(" ", 1)
        basename, ext = os.path.splitext(gt_name)
        lq_path, gt_path = out / "lq" / f"{basename}{ext}", out / "hq" / gt_name
        gt = decode_image(gt_path)
        assert shape_text == f"({gt.shape[0]},{gt.shape[1]},3)"
        for side, path in (("lq", lq_path), ("hq", gt_path)):
            original = expected[basename][side]
            if normal(original.suffix) == ext:
                assert path.read_bytes() == original.read_bytes()
                kept_as_stored += 1
            else:  # the sides' formats differ: a lossless PNG of the same pixels
                assert ext == ".png" and np.array_equal(decode_image(path), decode_image(original))
    assert 0 < kept_as_stored < 16 and f"as basicsr: {kept_as_stored} written, {16 - kept_as_stored} converted files" in summary
    assert "16 kept files" in export(datasets_run, out, "--format", "basicsr")


def test_hf_export_of_a_bytes_backed_run_copies_the_bytes_and_loads_with_datasets(folder, datasets_run, tmp_path):
    datasets = pytest.importorskip("datasets")
    expected = originals(folder, datasets_run)
    rows = {row["id"]: row for row in read_rows(datasets_run)}
    out = tmp_path / "hf"
    assert "3 shards (3 written" in export(datasets_run, out, "--format", "hf", "--shard-size", "3")
    loaded = datasets.load_dataset("parquet", data_files=str(out / "data" / "*.parquet"), split="train", cache_dir=str(tmp_path / "cache"))
    assert len(loaded) == 8 and set(loaded["id"]) == set(expected) and isinstance(loaded[0]["hq"], Image.Image)
    raw = loaded.cast_column("lq", datasets.Image(decode=False)).cast_column("hq", datasets.Image(decode=False))
    for item in raw:
        for side in ("lq", "hq"):
            original = expected[item["id"]][side]
            stored = item[side]
            if original.suffix in (".png", ".jpg", ".webp"):
                assert stored["bytes"] == original.read_bytes() and stored["path"].endswith(original.suffix)
            else:
                assert stored["path"].endswith(".png") and np.array_equal(decode_image(_png(tmp_path, stored["bytes"])), decode_image(original))
            assert item[f"{side}_file"] == rows[item["id"]][side] and rows[item["id"]][side].startswith("hf.parquet#")
    assert "3 shards (0 written, 3 kept" in export(datasets_run, out, "--format", "hf", "--shard-size", "3")


def _png(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "decoded.png"
    path.write_bytes(data)
    return path


def test_webdataset_export_of_a_bytes_backed_run_reads_back_with_webdataset(folder, datasets_run, tmp_path):
    wds = pytest.importorskip("webdataset")
    from ggtqc.export import safe_key

    expected = {safe_key(k): v for k, v in originals(folder, datasets_run).items()}
    out = tmp_path / "wds"
    export(datasets_run, out, "--format", "webdataset", "--shard-size", "5")
    samples = list(wds.WebDataset(str(out / "shards" / "pairs-{00000..00001}.tar"), shardshuffle=False))
    assert len(samples) == 8
    for sample in samples:
        for side in ("lq", "hq"):
            original = expected[sample["__key__"]][side]
            (name,) = [k for k in sample if k.startswith(f"{side}.")]
            if original.suffix in (".png", ".jpg", ".webp"):
                assert name == f"{side}{original.suffix}" and sample[name] == original.read_bytes()
            else:
                assert name == f"{side}.png" and np.array_equal(decode_image(_png(tmp_path, sample[name])), decode_image(original))
    decoded = next(iter(wds.WebDataset(str(out / "shards" / "pairs-00000.tar"), shardshuffle=False).decode("pil")))
    assert all(isinstance(decoded[k], Image.Image) for k in decoded if k.startswith(("lq.", "hq.")))
    assert "2 shards (0 written, 2 kept" in export(datasets_run, out, "--format", "webdataset", "--shard-size", "5")


@pytest.fixture(scope="module")
def examples_run(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("roundtrip")
    pairs = shutil.copytree(REPO / "examples" / "pairs", base / "pairs")
    result = run_cli("filter", str(pairs), "-q", "--plugins", PLUGINS, "--out", str(base / "run"))
    assert result.returncode == 0, result.stderr
    return base / "run"


def test_our_hf_export_read_back_as_input_gives_the_same_scores(examples_run, tmp_path):
    hf = tmp_path / "hf"
    exported = run_cli("export", str(examples_run), "--format", "hf", "--verdicts", "accept,review,reject", "--out", str(hf))
    assert exported.returncode == 0, exported.stderr
    shard = hf / "data" / "train-00000.parquet"
    again = tmp_path / "again"
    result = run_cli("filter", str(shard), "-q", "--plugins", PLUGINS, "--out", str(again))
    assert result.returncode == 0, result.stderr
    original = {k: v for k, v in scores_by_id(examples_run).items() if v[0] != "error"}
    assert len(original) == 12 and scores_by_id(again) == original  # ids from the id column; lq wins over lq_file

    report = run_cli("report", str(again))
    assert report.returncode == 0, report.stderr
    page = (again / "report" / "index.html").read_text()
    assert "class='missing'" not in page and len(list((again / "report" / "thumbs").glob("*.jpg"))) == 2 * 12

    exported_again = run_cli("export", str(again), "--format", "hf", "--verdicts", "accept,review,reject", "--out", str(tmp_path / "hf2"))
    assert exported_again.returncode == 0, exported_again.stderr
    first, second = (pq.read_table(p / "data" / "train-00000.parquet", columns=["id", "lq", "hq"]).to_pylist() for p in (hf, tmp_path / "hf2"))
    by_id = {row["id"]: row for row in first}
    assert len(second) == 12 and all(row[s]["bytes"] == by_id[row["id"]][s]["bytes"] for row in second for s in ("lq", "hq"))  # bytes copied, not re-encoded


def test_a_corrupt_or_empty_cell_is_an_error_row_and_the_run_goes_on(folder, tmp_path):
    files = pair_files(folder)[:4]
    lq = image_cells(folder, [a for a, _ in files])
    hq = image_cells(folder, [b for _, b in files])
    hq[1]["bytes"] = hq[1]["bytes"][: len(hq[1]["bytes"]) // 3]  # truncated
    lq[2] = {"bytes": None, "path": None}
    hq[3]["bytes"] = b"not an image at all"
    table = pa.table({"id": ["a", "b", "c", "d"], "lq": pa.array(lq, IMAGE), "hq": pa.array(hq, IMAGE)})
    pq.write_table(table, tmp_path / "pairs.parquet", row_group_size=3)

    summary = api.filter_pairs(tmp_path / "pairs.parquet", tmp_path / "qc", "resolution,ssim", device="cpu", workers=2, all_scores=True)
    assert summary["pairs"] == 4 and summary["verdicts"]["error"] == 3
    rows = {row["id"]: row for row in read_rows(tmp_path / "qc")}
    assert rows["a"]["verdict"] != "error" and rows["a"]["scores"]["ssim"]
    assert rows["b"]["reasons"][0].startswith("hq: ") and "truncated" in rows["b"]["reasons"][0]
    assert rows["c"]["reasons"] == ["lq: no image in row 2 of column 'lq' (no bytes, no path)"]
    assert rows["d"]["reasons"] == ["hq: not an image (format not recognised)"]
    summary = api.filter_pairs(tmp_path / "pairs.parquet", tmp_path / "qc-ssim", "ssim", device="cpu", export=tmp_path / "clean")
    assert summary["export"]["pairs"] == 1  # 'filter --export': the accepted pair, written from its bytes
    assert [p.relative_to(tmp_path / "clean").as_posix() for p in sorted((tmp_path / "clean").rglob("*.*"))] == [".ggtqc-export", "hq/a.webp", "lq/a.png"]
    assert (tmp_path / "clean" / "hq" / "a.webp").read_bytes() == hq[0]["bytes"]
    pq.write_table(table.slice(0, 0), tmp_path / "pairs.parquet")  # rewritten since the run: the cells are gone
    with pytest.raises(ExportError, match=r"cannot export pairs.parquet#0/lq: row 0 is past the end of the file \(0 rows\)"):
        export_run(tmp_path / "qc-ssim", tmp_path / "again")


def test_a_killed_run_resumes_without_duplicate_rows(folder, tmp_path, plugin_env):
    many = tmp_path / "many"
    make_pair_folder(many, 24, seed=9)
    files = pair_files(many)
    lq, hq = image_cells(many, [a for a, _ in files], "photo.png"), image_cells(many, [b for _, b in files], "photo.png")
    pq.write_table(pa.table({"lq": pa.array(lq, IMAGE), "hq": pa.array(hq, IMAGE)}), tmp_path / "pairs.parquet", row_group_size=5)
    (tmp_path / "qc.toml").write_text("[meangap]\ndelay = 0.1\n")
    common = ["filter", str(tmp_path / "pairs.parquet"), "-q", "--plugins", "resolution,meangap", "--config", str(tmp_path / "qc.toml"), "--batch-size", "4"]
    reference = run_cli(*common, "--out", str(tmp_path / "ref"), env=plugin_env)
    assert reference.returncode == 0, reference.stderr

    out = tmp_path / "killed"
    kill_after_rows([*common, "--out", str(out)], out / "results.jsonl", 8, plugin_env)
    assert 8 <= len(read_rows(out)) < 24, "the run was not killed mid-way"
    resumed = run_cli(*common, "--out", str(out), env=plugin_env)
    assert resumed.returncode == 0, resumed.stderr
    rows = read_rows(out)
    assert len(rows) == len({row["id"] for row in rows}) == 24
    assert sorted(rows, key=lambda r: r["id"]) == sorted(read_rows(tmp_path / "ref"), key=lambda r: r["id"])
    assert rows[0]["id"] == "000000-photo"  # no id column, paths alike: the row number and the path


def test_ids_fall_back_to_the_row_number_when_paths_repeat_or_are_missing(tmp_path):
    png = cv2.imencode(".png", np.full((8, 8, 3), 90, np.uint8))[1].tobytes()
    table = pa.table({"lq": [png, png, png], "hq": pa.array([{"bytes": png, "path": "x.png"}] * 3, IMAGE)})
    pq.write_table(table, tmp_path / "raw.parquet")
    assert [p.id for p in discover(tmp_path / "raw.parquet")] == ["000000", "000001", "000002"]  # binary columns: no paths
    table = pa.table({"hq": pa.array([{"bytes": png, "path": "x.png"}] * 2, IMAGE), "lq": pa.array([{"bytes": png, "path": "a/x.png"}] * 2, IMAGE)})
    pq.write_table(table, tmp_path / "same.parquet")
    assert [p.id for p in discover(tmp_path / "same.parquet")] == ["000000-a/x", "000001-a/x"]
    assert [p.id for p in discover(tmp_path / "same.parquet")] == ["000000-a/x", "000001-a/x"]  # and again


def test_input_problems_are_one_line_messages(tmp_path):
    pq.write_table(pa.table({"low": ["a.png"], "high": ["b.png"]}), tmp_path / "names.parquet")
    result = run_cli("pairs", str(tmp_path / "names.parquet"))
    assert result.returncode == 2 and "found no LQ and HQ columns among low, high" in result.stderr
    pq.write_table(pa.table({"lq": [1], "hq": [2]}), tmp_path / "numbers.parquet")
    with pytest.raises(PairsError, match="column 'lq' is int64; expected paths"):
        discover(tmp_path / "numbers.parquet")
    (tmp_path / "fake.parquet").write_bytes(b"PAR1 nothing")
    with pytest.raises(PairsError, match="not a readable Parquet file"):
        discover(tmp_path / "fake.parquet")
    pq.write_table(pa.table({"id": ["x", "x"], "lq": ["a.png", "b.png"], "hq": ["c.png", "d.png"]}), tmp_path / "dup.parquet")
    with pytest.raises(PairsError, match="row 1: id 'x' repeats row 0"):
        discover(tmp_path / "dup.parquet")

    fake = tmp_path / "site" / "pyarrow"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('no pyarrow here')\n")
    missing = run_cli("filter", str(tmp_path / "names.parquet"), "-q", "--out", str(tmp_path / "qc"), env={"PYTHONPATH": str(tmp_path / "site")})
    assert missing.returncode == 2
    assert missing.stderr == "ggtqc: a Parquet pairs file needs pyarrow: pip install -e '.[hf]'\n"


def test_cells_are_read_in_slices_and_only_a_few_are_kept(tmp_path, monkeypatch):
    from ggtqc import parquet

    images = [cv2.imencode(".png", np.full((16, 16, 3), k, np.uint8))[1].tobytes() for k in range(40)]
    table = pa.table({"lq": pa.array([{"bytes": b, "path": None} for b in images], IMAGE), "hq": images})
    pq.write_table(table, tmp_path / "one_group.parquet", row_group_size=1000)  # one row group: never read whole
    per_row = pq.ParquetFile(tmp_path / "one_group.parquet").metadata.row_group(0).total_byte_size / 40
    monkeypatch.setattr(parquet, "SLICE_BYTES", 8 * per_row + 1)  # slices of 8 rows
    parquet.close_readers()
    pairs = discover(tmp_path / "one_group.parquet")
    for k, pair in enumerate(pairs):
        assert decode_image(pair.lq)[0, 0, 0] == k and decode_image(pair.hq)[0, 0, 0] == k
    reader = next(iter(parquet._readers.values()))
    assert reader.slice_rows == [8] and reader.slices_read == 5 and len(reader.kept) == parquet.KEEP
    assert decode_image(pairs[39].lq)[0, 0, 0] == 39 and reader.slices_read == 5  # kept: not read again
    assert decode_image(pairs[3].hq)[0, 0, 0] == 3 and reader.slices_read == 6  # behind: streamed again from its group's start
    parquet.close_readers()


def test_review_serves_the_images_of_a_bytes_backed_pair(folder, tmp_path):
    from tests.review_helpers import serving

    files = pair_files(folder)[:2]
    table = pa.table({"lq": pa.array(image_cells(folder, [a for a, _ in files]), IMAGE), "hq": pa.array(image_cells(folder, [b for _, b in files]), IMAGE)})
    pq.write_table(table, tmp_path / "pairs.parquet")
    assert run_cli("filter", str(tmp_path / "pairs.parquet"), "-q", "--plugins", "resolution", "--out", str(tmp_path / "qc")).returncode == 0
    with serving(tmp_path / "qc") as (_, client):
        pair = client.json("/api/pair?queue=audit&index=0")
        assert pair["images"]["hq"]["problem"] is None and pair["images"]["hq"]["name"].startswith("pairs.parquet#")
        status, body, kind = client.get(pair["images"]["hq"]["url"])
    assert status == 200 and kind == "image/png"
    shown = np.asarray(Image.open(io.BytesIO(body)).convert("RGB"))
    hq = dict(zip([Path(a).stem for a, _ in files], [b for _, b in files]))[pair["id"]]
    assert np.array_equal(shown, decode_image(folder / hq))


def test_a_damaged_row_group_makes_error_rows_of_its_pairs_only(tmp_path):
    from ggtqc.batch import load_pair

    rng = np.random.default_rng(0)
    images = [cv2.imencode(".png", rng.integers(0, 255, (40, 40, 3), dtype=np.uint8))[1].tobytes() for _ in range(6)]
    cells = pa.array([{"bytes": b, "path": None} for b in images], IMAGE)
    pq.write_table(pa.table({"lq": cells, "hq": cells}), tmp_path / "pairs.parquet", row_group_size=3)
    chunk = pq.ParquetFile(tmp_path / "pairs.parquet").metadata.row_group(1).column(0)
    data = bytearray((tmp_path / "pairs.parquet").read_bytes())
    start = chunk.dictionary_page_offset or chunk.data_page_offset
    data[start + 3 : start + 23] = b"\xff" * 20  # the second group's first page header
    (tmp_path / "pairs.parquet").write_bytes(bytes(data))
    loaded = [load_pair(pair, DecodeLimits()) for pair in discover(tmp_path / "pairs.parquet")]
    assert [item.error for item in loaded[:3]] == [None] * 3
    assert all(item.error.startswith("lq: cannot read row ") and "of pairs.parquet" in item.error for item in loaded[3:])


def test_a_folder_of_shards_is_one_dataset_under_the_same_ids(examples_run, tmp_path):
    hf = tmp_path / "hf"
    exported = run_cli("export", str(examples_run), "--format", "hf", *ALL, "--shard-size", "5", "--out", str(hf))
    assert exported.returncode == 0, exported.stderr
    data = hf / "data"
    assert sorted(p.name for p in data.iterdir()) == ["train-00000.parquet", "train-00001.parquet", "train-00002.parquet"]
    listed = run_cli("pairs", str(data), "--list")
    assert listed.returncode == 0, listed.stderr
    lines = [line.split("\t") for line in listed.stdout.splitlines()]
    assert len(lines) == 12 and lines[5][1:] == ["train-00001.parquet#0/lq", "train-00001.parquet#0/hq", "row"]

    again = tmp_path / "again"
    result = run_cli("filter", str(data), "-q", "--plugins", PLUGINS, "--out", str(again))
    assert result.returncode == 0, result.stderr
    original = {k: v for k, v in scores_by_id(examples_run).items() if v[0] != "error"}
    assert scores_by_id(again) == original  # the id column's ids, across the three shards
    rows = {row["id"]: row for row in read_rows(again)}
    assert {row["hq"].split("#")[0] for row in rows.values()} == {p.name for p in data.iterdir()}

    report = run_cli("report", str(again))
    assert report.returncode == 0, report.stderr
    assert len(list((again / "report" / "thumbs").glob("*.jpg"))) == 2 * 12  # cells of every shard found again
    folders = tmp_path / "folders"
    assert run_cli("export", str(again), *ALL, "--out", str(folders)).returncode == 0
    for pair_id in rows:
        (written,) = (folders / "hq").glob(f"{pair_id}.*")
        assert written.read_bytes() == (REPO / "examples" / "pairs" / "hq").joinpath(written.relative_to(folders / "hq")).read_bytes()


def test_shard_ids_are_prefixed_by_the_shard_without_an_id_column_and_never_overwritten(folder, tmp_path, monkeypatch):
    from ggtqc import parquet

    files = pair_files(folder)
    shards = tmp_path / "data"
    shards.mkdir()
    for n, part in enumerate((files[:3], files[3:5])):
        cells = {side: pa.array(image_cells(folder, [f[k] for f in part]), IMAGE) for k, side in enumerate(("lq", "hq"))}
        pq.write_table(pa.table(cells), shards / f"train-0000{n}-of-00002.parquet")
    (shards / "notes.txt").write_text("other files beside the shards are left alone")
    pairs = discover(shards)
    assert [p.id for p in pairs] == [f"train-00000-of-00002/{Path(f[0]).stem}" for f in files[:3]] + [f"train-00001-of-00002/{Path(f[0]).stem}" for f in files[3:5]]
    assert [str(p.lq) for p in pairs[2:4]] == ["train-00000-of-00002.parquet#2/lq", "train-00001-of-00002.parquet#0/lq"]
    assert all(p.error is None for p in pairs) and discover(shards) == pairs  # the same ids on every run
    monkeypatch.setattr(parquet, "OPEN", 1)
    parquet.close_readers()
    for pair, (lq, hq) in zip(pairs, files):
        assert np.array_equal(decode_image(pair.hq), decode_image(folder / hq))
        assert len(parquet._readers) == 1  # the shard before is closed with its slices
    parquet.close_readers()

    ids = pa.table({"id": ["a", "b"], "lq": pa.array(image_cells(folder, [f[0] for f in files[:2]]), IMAGE), "hq": pa.array(image_cells(folder, [f[1] for f in files[:2]]), IMAGE)})
    pq.write_table(ids, shards / "train-00000-of-00002.parquet")
    pq.write_table(ids.slice(1, 1), shards / "train-00001-of-00002.parquet")  # 'b' again
    pairs = discover(shards)
    assert [p.id for p in pairs] == ["a", "b"] and pairs[0].error is None
    assert pairs[1].error == "id in several shards (train-00000-of-00002.parquet row 1, train-00001-of-00002.parquet row 0); ids must be unique across shards"
    out = tmp_path / "qc"
    assert run_cli("filter", str(shards), "-q", "--plugins", "resolution", "--out", str(out)).returncode == 0
    assert [(row["id"], row["verdict"]) for row in read_rows(out)][1] == ("b", "error")

    images = tmp_path / "images"
    make_pair_folder(images, 2, seed=1)
    shutil.copy(shards / "train-00000-of-00002.parquet", images / "pairs.parquet")
    assert sorted(p.id for p in discover(images)) == ["group0/0000", "group1/0001"]  # LQ/HQ folders: a folder of images
    (tmp_path / "empty").mkdir()
    with pytest.raises(PairsError, match=r"no LQ/HQ folders; expected one of: .*, or \.parquet shards"):
        discover(tmp_path / "empty")


def test_compare_matches_bytes_backed_pairs_by_content_and_shows_their_thumbnails(folder, tmp_path):
    files = pair_files(folder)
    sizes = {lq: min(Image.open(folder / hq).size) for lq, hq in files}
    threshold = sorted(sizes.values())[4]  # about half the targets pass this, all pass the default
    for name, order in (("a", files), ("b", files[::-1])):  # the same photos in another row order, under the same file name
        cells = {side: pa.array(image_cells(folder, [f[k] for f in order]), IMAGE) for k, side in enumerate(("lq", "hq"))}
        (tmp_path / name).mkdir()
        pq.write_table(pa.table({"id": [f"{name}{k}" for k in range(len(order))], **cells}), tmp_path / name / "pairs.parquet")
    (tmp_path / "strict.toml").write_text(f"[resolution.thresholds]\nhq_short_side = {threshold}\n")
    for name, extra in (("a", []), ("b", ["--config", str(tmp_path / "strict.toml")])):
        done = run_cli("filter", str(tmp_path / name / "pairs.parquet"), "-q", "-p", "resolution", "--out", str(tmp_path / f"qc-{name}"), *extra)
        assert done.returncode == 0, done.stderr
    result = run_cli("compare", str(tmp_path / "qc-a"), str(tmp_path / "qc-b"), "--out", str(tmp_path / "cmp"))
    assert result.returncode == 0, result.stderr
    verdicts = {name: {row["lq"]: row["verdict"] for row in read_rows(tmp_path / f"qc-{name}")} for name in "ab"}
    differ = sum(verdicts["a"][f"pairs.parquet#{k}/lq"] != verdicts["b"][f"pairs.parquet#{len(files) - 1 - k}/lq"] for k in range(len(files)))
    assert differ > 0
    assert f"8 LQ photos in every run, {differ} with verdicts that differ; 16 rows matched by LQ content" in result.stdout
    page = (tmp_path / "cmp" / "index.html").read_text()
    assert page.count("<img ") == 3 * differ and "class='missing'" not in page
