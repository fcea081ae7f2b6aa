"""The CLI as a user runs it: the installed ``ggtqc`` command in a subprocess."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import click
import cv2
import numpy as np
import pytest
from PIL import Image

from tests.helpers import GGTQC, REPO, WEIGHTS_FREE, fingerprint, kill_after_rows, make_pair_folder, photos, read_rows, run_cli, save_rgb, wait_for_rows

EXAMPLES = REPO / "examples" / "pairs"


def test_sample_pairs_show_every_verdict(tmp_path):
    before = fingerprint(EXAMPLES)
    # Without CLIP weights, --plugins all stops before any work and says how to go on.
    blocked = run_cli("filter", str(EXAMPLES), "--plugins", "all", "--out", str(tmp_path / "qc"))
    assert blocked.returncode == 2 and "clip: open_clip ViT-B-32 laion2b_s34b_b79k weights not found" in blocked.stderr
    assert "--plugins all,-clip" in blocked.stderr and not (tmp_path / "qc" / "results.jsonl").exists()
    result = run_cli("filter", str(EXAMPLES), "--plugins", WEIGHTS_FREE, "--out", str(tmp_path / "qc"))
    assert result.returncode == 0, result.stderr
    rows = {row["id"]: row for row in read_rows(tmp_path / "qc")}
    assert rows["mixed/astronaut"]["verdict"] == "accept"
    assert rows["mixed/astronaut"]["scores"]["resolution"]["scale"] == 2.0
    assert rows["fault/small_target"]["verdict"] == "reject"
    assert "resolution.scale 0.5 < 1" in rows["fault/small_target"]["reasons"]
    assert rows["fault/stretched"]["failed"] == ["resolution.aspect_error"]
    for fault in ("fault/mirrored", "fault/wrong_image"):
        assert rows[fault]["verdict"] == "reject"
        assert {name.split(".")[0] for name in rows[fault]["failed"]} & {"ssim", "color", "hallucination", "geometry"}
    assert rows["fault/color_cast"]["failed"] == ["color.hue_shift_deg", "color.cast"]
    assert rows["fault/pasted_object"]["failed"] == ["color.local"]  # the face brings colours of its own; the cheaper filter rejects it first
    alone = run_cli("filter", str(EXAMPLES), "--plugins", "hallucination", "--out", str(tmp_path / "qc-hallucination"))
    assert alone.returncode == 0, alone.stderr
    pasted = {row["id"]: row for row in read_rows(tmp_path / "qc-hallucination")}["fault/pasted_object"]
    assert pasted["failed"] == ["hallucination.added", "hallucination.removed", "hallucination.replaced"]  # the face replaced what was there
    heatmap = cv2.imread(str(tmp_path / "qc-hallucination" / pasted["heatmaps"]["hallucination"]))
    assert heatmap is not None and heatmap.shape[1] > heatmap.shape[0]  # the LQ's 3:2 aspect
    brightest = np.unravel_index(int(np.argmax(heatmap.sum(axis=2))), heatmap.shape[:2])
    assert brightest[1] > heatmap.shape[1] / 2 and brightest[0] < heatmap.shape[0] / 2  # the face, top right
    for honest in ("mixed/astronaut", "haze/coffee", "lowlight/rocket", "oldphoto/chelsea", "rain/astronaut_face", "snow/coffee_cup"):
        assert rows[honest]["verdict"] in ("accept", "review"), rows[honest]
        assert rows[honest]["scores"]["ssim"]["structure"] >= 0.6
    # The dark rocket's added-detail score sits just under its threshold, and its target, a
    # quality-85 JPEG of a smooth photo, steps faintly on the 8-px grid: a person should look.
    rocket = rows["lowlight/rocket"]
    assert rocket["verdict"] == "review" and rocket["review"] == ["hallucination.added", "artifacts.blockiness"]
    assert rocket["reasons"][0].startswith("hallucination.added 0.39") and "within review margin" in rocket["reasons"][0]
    assert rows["broken/truncated"] == {
        "id": "broken/truncated", "lq": "lq/broken/truncated.jpg", "hq": "hq/broken/truncated.png",
        "verdict": "error", "reasons": ["hq: truncated file"], "scores": {},
    }  # fmt: skip
    assert rows["broken/no_target"]["reasons"] == ["unpaired: no HQ file for this LQ in hq/"]
    summary = json.loads((tmp_path / "qc" / "summary.json").read_text())
    assert summary["pairs"] == len(rows) == 14
    assert summary["verdicts"] == {"accept": 5, "review": 1, "reject": 6, "error": 2}
    assert summary["review_by"] == {"hallucination.added": 1, "artifacts.blockiness": 1}
    assert summary["filters"]["resolution"]["thresholds"]["hq_short_side"] == 256
    assert summary["filters"]["resolution"]["version"] == "1"
    assert list(summary["filters"]) == ["resolution", "ssim", "color", "hallucination", "artifacts", "iqa", "geometry"]  # cheap first
    assert f"{len(rows)} pairs:" in result.stdout
    assert fingerprint(EXAMPLES) == before  # inputs untouched


@pytest.mark.parametrize(
    "args,message",
    [
        (["filter", "EXAMPLES", "--batchsize", "4"], "No such option '--batchsize'. Did you mean '--batch-size'?"),
        (["filter", "EXAMPLES", "--plugins", "all,-resolutoin"], "unknown filter 'resolutoin'; did you mean 'resolution'"),
        (["filter", "EXAMPLES", "--device", "tpu"], "'tpu' is not one of"),
        (["filter", "EXAMPLES", "--batch-size", "0"], "--batch-size"),
        (["filter", "MISSING"], "does not exist"),
        (["filter"], "give either a PAIRS folder or --pairs-file"),
        (["filter", "EXAMPLES", "--config", "BADCONFIG"], "unknown option of resolution 'min_side'"),
        (["filter", "EXAMPLES", "--config", "MISSING"], "config file"),
        (["filter", "EXAMPLES", "-p", "resolution", "--export", "TAKEN"], "is not empty and was not made by ggtqc"),  # before the run, not after
    ],
)
def test_user_errors_are_one_line_with_exit_code_2(tmp_path, args, message):
    (tmp_path / "bad.toml").write_text("[resolution]\nmin_side = 512\n")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "mine.txt").write_text("keep me")
    swap = {"EXAMPLES": str(EXAMPLES), "MISSING": str(tmp_path / "missing"), "BADCONFIG": str(tmp_path / "bad.toml"), "TAKEN": str(tmp_path / "taken")}
    result = run_cli(*[swap.get(a, a) for a in args], "--out", str(tmp_path / "qc"))
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "qc" / "results.jsonl").exists()


def test_allow_list_keeps_the_builtins_and_is_named_when_a_filter_is_missing(tmp_path):
    result = run_cli("filter", str(EXAMPLES), "-p", "resolution,mine", "--out", str(tmp_path / "qc"), env={"GGTQC_LOAD_PLUGINS": "mine"})
    assert result.returncode == 2
    warning, error = result.stderr.splitlines()
    assert warning == "warning: plugin 'mine' failed to load: named in GGTQC_LOAD_PLUGINS, but no installed package has a ggtqc plugin of that name"
    assert error.startswith("ggtqc: unknown filter 'mine' (available: artifacts, clip, color, ")  # the built-ins still load
    assert error.endswith("; GGTQC_LOAD_PLUGINS='mine' limits which installed plugins load")


def test_changed_configuration_refuses_to_resume_until_fresh(tmp_path):
    out = str(tmp_path / "qc")
    assert run_cli("filter", str(EXAMPLES), "-q", "-p", WEIGHTS_FREE, "--out", out).returncode == 0
    (tmp_path / "qc.toml").write_text("[resolution.thresholds]\nhq_short_side = 512\n")
    changed = run_cli("filter", str(EXAMPLES), "-q", "-p", WEIGHTS_FREE, "--out", out, "--config", str(tmp_path / "qc.toml"))
    assert changed.returncode == 2 and "rerun with --fresh" in changed.stderr
    fresh = run_cli("filter", str(EXAMPLES), "-q", "-p", WEIGHTS_FREE, "--out", out, "--config", str(tmp_path / "qc.toml"), "--fresh")
    assert fresh.returncode == 0, fresh.stderr
    rows = {row["id"]: row for row in read_rows(tmp_path / "qc")}
    assert rows["haze/coffee"]["reasons"] == ["resolution.hq_short_side 256 < 512"]
    assert len(rows) == 14


def test_pairs_file_and_export(tmp_path):
    (tmp_path / "list.jsonl").write_text(
        json.dumps({"lq": str(EXAMPLES / "lq/mixed/astronaut.jpg"), "hq": str(EXAMPLES / "hq/mixed/astronaut.jpg"), "id": "astro"}) + "\n"
        + json.dumps({"lq": str(EXAMPLES / "lq/fault/small_target.jpg"), "hq": str(EXAMPLES / "hq/fault/small_target.jpg")}) + "\n"
    )  # fmt: skip
    export = tmp_path / "clean"
    result = run_cli("filter", "--pairs-file", str(tmp_path / "list.jsonl"), "-q", "-p", WEIGHTS_FREE, "--out", str(tmp_path / "qc"), "--export", str(export))
    assert result.returncode == 0, result.stderr
    assert sorted(p.relative_to(export).as_posix() for p in export.rglob("*.jpg")) == ["hq/astro.jpg", "lq/astro.jpg"]
    assert (export / "hq/astro.jpg").read_bytes() == (EXAMPLES / "hq/mixed/astronaut.jpg").read_bytes()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "mine.txt").write_text("keep me")
    refused = run_cli("filter", "--pairs-file", str(tmp_path / "list.jsonl"), "-q", "-p", WEIGHTS_FREE, "--out", str(tmp_path / "qc"), "--export", str(tmp_path / "other"))
    assert refused.returncode == 2 and "not empty" in refused.stderr
    assert (tmp_path / "other" / "mine.txt").read_text() == "keep me"


def test_every_option_has_help_and_help_lists_the_environment_variables():
    from ggtqc.cli import cli

    for name, command in cli.commands.items():
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"ggtqc {name} {param.opts[0]} has no help text"
    shown = run_cli("--help")
    assert shown.returncode == 0
    for variable in ("GGTQC_LOAD_PLUGINS", "GGTQC_CACHE", "GGTQC_SSIM_IMPL", "GGTQC_DEBUG"):
        assert variable in shown.stdout


def test_plugins_listing_shows_builtins_with_source():
    result = run_cli("plugins", "--json")
    assert result.returncode == 0, result.stderr
    listing = {f["name"]: f for f in json.loads(result.stdout)["filters"]}
    resolution = listing["resolution"]
    assert resolution["package"].startswith("ggtqc ") and resolution["gpu"] == "unused" and resolution["weights"] == []
    assert {"name": "scale", "better": "higher", "threshold": 1.0, "help": "HQ/LQ size ratio on the tighter axis"} in resolution["fields"]
    table = run_cli("plugins").stdout
    assert "resolution 1  (ggtqc" in table and "aspect_error" in table


def test_third_party_plugin_installed_with_pip_is_found_and_runs(tmp_path, plugin_env):
    listing = json.loads(run_cli("plugins", "--json", env=plugin_env).stdout)
    names = {f["name"]: f for f in listing["filters"]}
    assert names["meangap"]["package"] == "ggtqc-testplugin 0.3.0"
    assert names["meangap"]["plugin"] == "testplugin"
    assert names["learned"]["weights"] == ["learned.pt"]

    # Missing weights stop the run before any work, naming the file, where it was looked for, and the way out.
    blocked = run_cli("filter", str(EXAMPLES), "-p", WEIGHTS_FREE, "--out", str(tmp_path / "qc"), env=plugin_env)
    assert blocked.returncode == 2
    assert "learned: learned.pt not found (looked in: /nonexistent/learned.pt)" in blocked.stderr
    assert f"--plugins {WEIGHTS_FREE},-learned" in blocked.stderr
    assert not (tmp_path / "qc" / "results.jsonl").exists()

    result = run_cli("filter", str(EXAMPLES), "-q", "--plugins", f"{WEIGHTS_FREE},-learned", "--out", str(tmp_path / "qc"), env=plugin_env)
    assert result.returncode == 0, result.stderr
    rows = {row["id"]: row for row in read_rows(tmp_path / "qc")}
    assert rows["mixed/astronaut"]["scores"]["meangap"]["gap"] >= 0
    assert "meangap" not in rows["fault/small_target"]["scores"]  # rejected by the cheaper filter first
    summary = json.loads((tmp_path / "qc" / "summary.json").read_text())
    assert summary["filters"]["meangap"]["package"] == "ggtqc-testplugin 0.3.0"

    model = tmp_path / "learned.pt"
    model.write_bytes(b"weights")
    ready = run_cli("filter", str(EXAMPLES), "-q", "-p", WEIGHTS_FREE, "--out", str(tmp_path / "qc2"), env={**plugin_env, "GGTQC_TESTPLUGIN_MODEL": str(model)})
    assert ready.returncode == 0, ready.stderr

    # A failure while working (here: a corrupt checkpoint) is exit code 1, in one line.
    model.write_bytes(b"garbage")
    for processes in ("1", "2"):  # in a worker process, the filter's setup fails the same way
        out = tmp_path / f"qc3-{processes}"
        failed = run_cli("filter", str(EXAMPLES), "-q", "-p", WEIGHTS_FREE, "--processes", processes, "--out", str(out), env={**plugin_env, "GGTQC_TESTPLUGIN_MODEL": str(model)})
        assert failed.returncode == 1
        assert failed.stderr.strip() == f"ggtqc: run failed: ValueError: {model} is not a learned.pt checkpoint (set GGTQC_DEBUG=1 for the traceback)"


def test_hundred_odd_real_pairs_with_broken_files_get_one_row_each(tmp_path):
    pairs = tmp_path / "pairs"
    good = make_pair_folder(pairs, 110, seed=3)
    photo = photos()[1][:300, :300]
    broken = {
        "bad/truncated": ("hq", lambda p: p.write_bytes(save_rgb(p.with_suffix(".tmp.png"), photo).read_bytes()[:2000]), ".png", "hq: truncated file"),
        "bad/empty": ("lq", lambda p: p.write_bytes(b""), ".jpg", "lq: empty file"),
        "bad/text": ("lq", lambda p: p.write_text("hello"), ".jpg", "lq: not an image"),
        "bad/gif": ("hq", lambda p: Image.fromarray(photo).save(p, format="GIF"), ".png", "hq: unsupported format GIF"),
        "bad/huge": ("hq", lambda p: save_rgb(p, cv2.resize(photo, (700, 700))), ".png", "hq: too many pixels"),
    }
    for pair_id, (side, write, suffix, _) in broken.items():
        other = "lq" if side == "hq" else "hq"
        save_rgb(pairs / other / f"{pair_id}.png", photo)
        (pairs / side / pair_id).parent.mkdir(parents=True, exist_ok=True)
        write(pairs / side / f"{pair_id}{suffix}")
    for tmp in pairs.rglob("*.tmp.png"):
        tmp.unlink()
    save_rgb(pairs / "lq" / "bad/orphan_left.png", photo)
    save_rgb(pairs / "hq" / "bad/orphan_right.png", photo)
    before = fingerprint(pairs)

    out = tmp_path / "qc"
    args = ["filter", str(pairs), "-q", "-p", WEIGHTS_FREE, "--out", str(out), "--batch-size", "8", "--max-pixels", "400000"]
    result = run_cli(*args, "--workers", "3")
    assert result.returncode == 0, result.stderr
    rows = read_rows(out)
    ids = [row["id"] for row in rows]
    assert len(ids) == len(set(ids)) == 110 + len(broken) + 2
    by_id = {row["id"]: row for row in rows}
    for pair_id, (_, _, _, reason) in broken.items():
        assert by_id[pair_id]["verdict"] == "error" and by_id[pair_id]["reasons"][0].startswith(reason), by_id[pair_id]
    assert "no HQ file" in by_id["bad/orphan_left"]["reasons"][0] and "no LQ file" in by_id["bad/orphan_right"]["reasons"][0]
    assert all(by_id[i]["verdict"] in ("accept", "review", "reject") for i in good)

    log = (out / "results.jsonl").read_bytes()
    again = run_cli(*args)
    assert again.returncode == 0, again.stderr
    assert (out / "results.jsonl").read_bytes() == log  # a rerun adds no row
    assert fingerprint(pairs) == before

    single = run_cli(*[str(tmp_path / "qc1") if a == str(out) else a for a in args], "--workers", "1")
    assert single.returncode == 0, single.stderr
    assert (tmp_path / "qc1" / "results.jsonl").read_bytes() == log  # threads change nothing but speed

    processes = run_cli(*[str(tmp_path / "qc2") if a == str(out) else a for a in args], "--processes", "2")
    assert processes.returncode == 0, processes.stderr
    assert (tmp_path / "qc2" / "results.jsonl").read_bytes() == log  # nor do processes
    scored = [{name: f["pairs_scored"] for name, f in json.loads((tmp_path / qc / "summary.json").read_text())["filters"].items()} for qc in ("qc1", "qc2")]
    assert scored[0] == scored[1] and scored[0]["resolution"] == 110  # the workers' counts reach the summary


def test_killed_run_resumes_to_the_same_rows_as_an_uninterrupted_one(tmp_path, plugin_env):
    pairs = tmp_path / "pairs"
    make_pair_folder(pairs, 60, seed=5)
    (tmp_path / "qc.toml").write_text("[meangap]\ndelay = 0.1\n")
    common = ["filter", str(pairs), "-q", "--plugins", "resolution,meangap", "--config", str(tmp_path / "qc.toml"), "--batch-size", "4"]

    reference = run_cli(*common, "--out", str(tmp_path / "ref"), env=plugin_env)
    assert reference.returncode == 0, reference.stderr

    out = tmp_path / "killed"
    kill_after_rows([*common, "--out", str(out)], out / "results.jsonl", 12, plugin_env)
    written = read_rows(out)
    assert 12 <= len(written) < 60, "the run was not killed mid-way"
    with (out / "results.jsonl").open("a") as f:
        f.write('{"id": "group0/00')  # as if killed inside a write

    resumed = run_cli(*common, "--out", str(out), env=plugin_env)
    assert resumed.returncode == 0, resumed.stderr
    key = lambda row: row["id"]  # noqa: E731
    assert sorted(read_rows(out), key=key) == sorted(read_rows(tmp_path / "ref"), key=key)
    assert len(read_rows(out)) == 60


def test_killed_run_with_worker_processes_leaves_none_behind_and_resumes(tmp_path, plugin_env):
    pairs = tmp_path / "pairs"
    make_pair_folder(pairs, 40, seed=6)
    (tmp_path / "qc.toml").write_text("[meangap]\ndelay = 0.5\n")  # --all-scores: every batch waits for it
    common = ["filter", str(pairs), "-q", "--plugins", "resolution,meangap", "--all-scores", "--config", str(tmp_path / "qc.toml"), "--batch-size", "4"]
    reference = run_cli(*common, "--out", str(tmp_path / "ref"), env=plugin_env)
    assert reference.returncode == 0, reference.stderr

    out = tmp_path / "killed"
    children = kill_after_rows([*common, "--processes", "2", "--out", str(out)], out / "results.jsonl", 8, plugin_env)
    assert len(children) >= 2  # two workers (and the semaphore tracker that spawning starts)
    assert 8 <= len(read_rows(out)) < 40, "the run was not killed mid-way"
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(Path(f"/proc/{pid}").exists() for pid in children), "worker processes outlived the killed run"

    resumed = run_cli(*common, "--processes", "2", "--out", str(out), env=plugin_env)
    assert resumed.returncode == 0, resumed.stderr
    key = lambda row: row["id"]  # noqa: E731
    assert sorted(read_rows(out), key=key) == sorted(read_rows(tmp_path / "ref"), key=key)


@pytest.mark.parametrize("processes", ["1", "2"])
def test_ctrl_c_stops_the_run_keeps_its_rows_and_says_how_to_resume(tmp_path, plugin_env, processes):
    pairs = tmp_path / "pairs"
    make_pair_folder(pairs, 40, seed=7)
    (tmp_path / "qc.toml").write_text("[meangap]\ndelay = 0.5\n")
    out = tmp_path / "qc"
    args = ["filter", str(pairs), "-q", "--plugins", "resolution,meangap", "--all-scores", "--config", str(tmp_path / "qc.toml"), "--batch-size", "4", "--processes", processes, "--out", str(out)]
    run = subprocess.Popen(
        [str(GGTQC), *args], env={**os.environ, **plugin_env}, stderr=subprocess.PIPE, text=True,
        start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    wait_for_rows(out / "results.jsonl", 8, 120, run)
    os.killpg(run.pid, signal.SIGINT)  # as a terminal's Ctrl-C: to the whole process group
    stderr = run.communicate(timeout=60)[1]
    assert run.returncode == 130, stderr
    assert stderr.strip().endswith("ggtqc: interrupted; rows written so far are kept, run the same command again to resume")
    assert "Traceback" not in stderr
    assert 8 <= len(read_rows(out)) < 40
    left = lambda: subprocess.run(["pgrep", "-g", str(run.pid)], capture_output=True, text=True).stdout.split()  # noqa: E731
    deadline = time.monotonic() + 10
    while left() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left(), "a process of the run is still there"

    resumed = run_cli(*args, env=plugin_env)
    assert resumed.returncode == 0, resumed.stderr
    ids = [row["id"] for row in read_rows(out)]
    assert len(ids) == len(set(ids)) == 40


def test_pairs_command_lists_how_files_were_matched(tmp_path):
    photo = photos()[0][:64, :64]
    for name in ("0001", "0002"):
        save_rgb(tmp_path / "hq" / f"{name}.png", photo)
        save_rgb(tmp_path / "lq" / f"{name}x4.png", photo)
    save_rgb(tmp_path / "lq" / "0003x4.png", photo)
    result = run_cli("pairs", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "3 ids: 2 pairs, 1 problems" in result.stdout and "matched by convention: x4" in result.stdout
    listing = run_cli("pairs", str(tmp_path), "--lq-template", "{}x4", "--list")
    assert listing.stdout.splitlines()[0] == "0001\tlq/0001x4.png\thq/0001.png\ttemplate"
    bad = run_cli("pairs", str(tmp_path), "--lq-template", "x4")
    assert bad.returncode == 2 and "must hold '{}' once" in bad.stderr


def test_a_div2k_named_folder_filters_with_one_flag(tmp_path):
    photo = photos()[0][:256, :256]
    for name in ("0001", "0002"):
        save_rgb(tmp_path / "pairs" / "hq" / f"{name}.png", photo)
        save_rgb(tmp_path / "pairs" / "lq" / f"{name}x2.png", cv2.resize(photo, (128, 128), interpolation=cv2.INTER_AREA))
    args = ["filter", str(tmp_path / "pairs"), "-q", "-p", "resolution", "--lq-template", "{}x2", "--out", str(tmp_path / "qc")]
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    rows = read_rows(tmp_path / "qc")
    assert [(r["id"], r["lq"], r["verdict"]) for r in rows] == [("0001", "lq/0001x2.png", "accept"), ("0002", "lq/0002x2.png", "accept")]
    assert json.loads((tmp_path / "qc" / "run.json").read_text())["naming"] == {"lq": "{}x2", "hq": "{}"}
