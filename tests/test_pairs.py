import json

import pytest

from ggtqc.pairs import Naming, PairsError, discover


def touch(path, content=b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def test_folder_pairs_match_by_relative_path_without_extension(tmp_path):
    touch(tmp_path / "lq/rain/0001.jpg")
    touch(tmp_path / "hq/rain/0001.png")
    touch(tmp_path / "lq/haze/deep/0002.PNG")
    touch(tmp_path / "hq/haze/deep/0002.webp")
    pairs = discover(tmp_path)
    assert [p.id for p in pairs] == ["haze/deep/0002", "rain/0001"]
    assert pairs[1].relative(pairs[1].lq) == "lq/rain/0001.jpg"
    assert pairs[1].relative(pairs[1].hq) == "hq/rain/0001.png"
    assert all(p.error is None for p in pairs)


@pytest.mark.parametrize("lq,hq", [("LQ", "HQ"), ("lq", "gt"), ("input", "target"), ("LR", "HR"), ("Input", "GT")])
def test_folder_aliases(tmp_path, lq, hq):
    touch(tmp_path / lq / "a.png")
    touch(tmp_path / hq / "a.png")
    [pair] = discover(tmp_path)
    assert pair.id == "a" and pair.error is None and pair.lq.parent.name == lq


def test_unpaired_files_on_either_side_become_error_pairs(tmp_path):
    touch(tmp_path / "lq/sunset.png")
    touch(tmp_path / "hq/harbour.png")
    by_id = {p.id: p for p in discover(tmp_path)}
    assert "no HQ file" in by_id["sunset"].error
    assert "no LQ file" in by_id["harbour"].error


def test_two_files_for_one_id_are_an_error_not_a_guess(tmp_path):
    touch(tmp_path / "lq/a.png")
    touch(tmp_path / "lq/a.jpg")
    touch(tmp_path / "hq/a.png")
    [pair] = discover(tmp_path)
    assert pair.error.startswith("lq: ambiguous") and "a.jpg" in pair.error


def test_hidden_and_non_image_files_are_ignored(tmp_path):
    touch(tmp_path / "lq/a.png")
    touch(tmp_path / "hq/a.png")
    touch(tmp_path / "lq/.DS_Store")
    touch(tmp_path / "hq/notes.txt")
    touch(tmp_path / "lq/.cache/b.png")
    assert [p.id for p in discover(tmp_path)] == ["a"]


def test_layout_errors(tmp_path):
    with pytest.raises(PairsError, match="does not exist"):
        discover(tmp_path / "nope")
    (tmp_path / "images").mkdir()
    with pytest.raises(PairsError, match="no LQ/HQ folders"):
        discover(tmp_path)
    for name in ("lq", "hq", "input", "target"):
        (tmp_path / name).mkdir()
    with pytest.raises(PairsError, match="ambiguous"):
        discover(tmp_path)


def test_pairs_file_csv_and_jsonl(tmp_path):
    touch(tmp_path / "data/x_lq.png")
    touch(tmp_path / "data/x_hq.png")
    touch(tmp_path / "data/y_lq.png")
    (tmp_path / "pairs.csv").write_text("lq,hq,id\ndata/x_lq.png,data/x_hq.png,x\ndata/y_lq.png,data/y_hq.png,\n")
    pairs = discover(tmp_path / "pairs.csv")
    assert [(p.id, p.error) for p in pairs] == [("data/y_lq", "hq: file not found"), ("x", None)]
    assert pairs[1].relative(pairs[1].lq) == "data/x_lq.png"
    rows = [{"lq": "data/x_lq.png", "hq": "data/x_hq.png"}, {"lq": str(tmp_path / "data/y_lq.png"), "hq": "data/x_hq.png", "id": "y"}]
    (tmp_path / "pairs.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    assert [(p.id, p.error) for p in discover(tmp_path / "pairs.jsonl")] == [("data/x_lq", None), ("y", None)]


def test_pairs_file_errors_name_the_line(tmp_path):
    (tmp_path / "dup.csv").write_text("lq,hq,id\na.png,b.png,same\nc.png,d.png,same\n")
    with pytest.raises(PairsError, match=r"dup.csv:3: id 'same' repeats line 2"):
        discover(tmp_path / "dup.csv")
    (tmp_path / "bad.csv").write_text("input,output\na.png,b.png\n")
    with pytest.raises(PairsError, match="header must name 'lq' and 'hq'"):
        discover(tmp_path / "bad.csv")
    (tmp_path / "bad.jsonl").write_text('{"lq": "a.png", "hq": "b.png"}\n{oops\n')
    with pytest.raises(PairsError, match="bad.jsonl:2: not valid JSON"):
        discover(tmp_path / "bad.jsonl")
    (tmp_path / "list.txt").write_text("a.png b.png\n")
    with pytest.raises(PairsError, match="must end in"):
        discover(tmp_path / "list.txt")


def layout(root, names):
    for name in names:
        touch(root / name)


def test_div2k_style_names_pair_by_the_scale_suffix_and_say_so(tmp_path):
    layout(tmp_path, ["hq/0001.png", "hq/0002.png", "lq/0001x4.png", "lq/0002x4.png", "hq/sub/7_HR.png", "lq/sub/7_LR.png"])
    pairs = {p.id: p for p in discover(tmp_path)}
    assert sorted(pairs) == ["0001", "0002", "sub/7"]
    assert pairs["0001"].lq.name == "0001x4.png" and pairs["0001"].hq.name == "0001.png"
    assert pairs["0001"].matched == "convention: x4" and pairs["sub/7"].matched == "convention: _HR _LR"
    assert all(p.error is None for p in pairs.values())


def test_a_convention_never_steals_a_file_that_pairs_by_name_and_collisions_are_errors(tmp_path):
    layout(tmp_path, ["hq/b.png", "lq/b.png", "lq/b_x4.png", "hq/c.png", "lq/c_x4.png", "lq/c_LR.png"])
    pairs = {p.id: p for p in discover(tmp_path)}
    assert pairs["b"].matched == "name" and pairs["b"].lq.name == "b.png"
    assert pairs["b_x4"].error.startswith("unpaired")  # b is taken: no guess
    assert pairs["c"].error == "lq: ambiguous, several files for this id (c_LR.png, c_x4.png)"


def test_templates_read_names_exactly(tmp_path):
    layout(tmp_path, ["hq/0001.png", "lq/0001x4.png", "lq/0002x4.png", "lq/0003_lr.png"])
    pairs = {p.id: p for p in discover(tmp_path, Naming(lq="{}x4", hq="{}"))}
    assert pairs["0001"].matched == "template" and pairs["0001"].error is None
    assert pairs["0002"].error.startswith("unpaired: no HQ file")
    assert pairs["unmatched-lq/0003_lr"].error == "lq: name does not fit --lq-template '{}x4'"
    with pytest.raises(PairsError, match="must hold"):
        Naming(lq="x4")
    touch(tmp_path / "pairs.csv", b"lq,hq\nlq/0001x4.png,hq/0001.png\n")
    with pytest.raises(PairsError, match="pairs folder"):
        discover(tmp_path / "pairs.csv", Naming(lq="{}x4"))
