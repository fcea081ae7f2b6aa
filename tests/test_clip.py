"""clip through its real loading code, on random weights saved to local files."""

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers import REPO, photos, read_rows, run_cli
from ggtqc.batch import Batch
from ggtqc.host import Entry, PluginError
from ggtqc.plugins.clip import Clip
from ggtqc.runner import Stage, check_ready

TINY = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """A small open_clip ViT with random weights, saved as a local checkpoint."""
    import open_clip

    folder = tmp_path_factory.mktemp("clip")
    config = folder / "ggtqc-tiny-vit.json"
    config.write_text(json.dumps(TINY))
    open_clip.add_model_config(str(config))
    torch.manual_seed(0)
    model = open_clip.create_model("ggtqc-tiny-vit")
    checkpoint = folder / "tiny.pt"
    torch.save(model.state_dict(), checkpoint)
    return {"model": "ggtqc-tiny-vit", "pretrained": "", "checkpoint": str(checkpoint), "model_config": str(config)}, model


def loaded(settings, **more):
    f = Clip(**settings, **more)
    f.setup(torch.device("cpu"))
    return f


def test_clip_loads_the_saved_weights_not_a_fresh_model(tiny_clip):
    settings, saved = tiny_clip
    f = loaded(settings)
    image = photos()[0]
    pixels = f.preprocess(Image.fromarray(image))[None]
    with torch.no_grad():
        expected = torch.nn.functional.normalize(saved.eval().encode_image(pixels), dim=-1)
    np.testing.assert_allclose(f.embed([Image.fromarray(image)]).numpy(), expected.numpy(), atol=1e-5)


def test_clip_scores_identical_pairs_one_and_finds_the_changed_crop(tiny_clip):
    settings, _ = tiny_clip
    f = loaded(settings)
    scene = cv2.resize(photos()[1], (300, 300))
    changed = scene.copy()
    changed[200:300, 0:100] = cv2.resize(photos()[0], (100, 100))  # bottom-left crop of a 3x3 grid
    batch = Batch(["same", "changed"], [scene, scene], [scene, changed])
    out = f.score(batch)
    assert out["similarity"][0] == pytest.approx(1.0, abs=1e-5) and out["worst_crop"][0] == pytest.approx(1.0, abs=1e-5)
    lq, hq = batch.cache[f._key("changed")]
    cosines = (lq * hq).sum(dim=-1)[1:]
    assert int(cosines.argmin()) == 6 and out["worst_crop"][1] == pytest.approx(float(cosines.min()))
    assert np.allclose(np.delete(cosines.numpy(), 6), 1.0, atol=1e-5)


def test_clip_batched_equals_single_and_reuses_the_batch_cache(tiny_clip, monkeypatch):
    settings, _ = tiny_clip
    f = loaded(settings)
    pairs = [(photos()[k][:200, :260], cv2.resize(photos()[(k + 1) % 4], (520, 400))) for k in range(3)]
    batch = Batch(["a", "b", "c"], [p[0] for p in pairs], [p[1] for p in pairs])
    together = f.score(batch)
    for k, (lq, hq) in enumerate(pairs):
        alone = f.score(Batch(["x"], [lq], [hq]))
        assert alone["similarity"][0] == pytest.approx(together["similarity"][k], abs=1e-5)
    calls = []
    monkeypatch.setattr(f.model, "encode_image", lambda *a, **k: calls.append(1))
    assert f.score(batch) == together and calls == []  # embeddings came from the cache


def test_clip_preprocesses_on_the_hosts_threads_with_the_same_scores(tiny_clip):
    settings, _ = tiny_clip
    f = loaded(settings, batch_size=7)  # chunks that split pairs' views
    pairs = [(photos()[k][:200, :260], cv2.resize(photos()[(k + 1) % 4], (520, 400))) for k in range(3)]
    ids, lq, hq = ["a", "b", "c"], [p[0] for p in pairs], [p[1] for p in pairs]
    alone = f.score(Batch(ids, lq, hq))
    preprocess, threads = f.preprocess, set()
    f.preprocess = lambda image: threads.add(threading.current_thread().name) or preprocess(image)
    with ThreadPoolExecutor(3, thread_name_prefix="host") as executor:
        threaded = f.score(Batch(ids, lq, hq, executor=executor))
    assert threads and all(name.startswith("host") for name in threads)
    np.testing.assert_allclose(threaded["similarity"], alone["similarity"], atol=1e-6)
    np.testing.assert_allclose(threaded["worst_crop"], alone["worst_crop"], atol=1e-6)


def test_clip_weights_are_found_in_the_ggtqc_cache(tiny_clip, tmp_path, monkeypatch):
    settings, _ = tiny_clip
    monkeypatch.setenv("GGTQC_CACHE", str(tmp_path))
    (tmp_path / "clip").mkdir()
    (tmp_path / "clip" / "ggtqc-tiny-vit-custom.bin").write_bytes(open(settings["checkpoint"], "rb").read())
    f = Clip(**{**settings, "checkpoint": str(tmp_path / "absent.pt")})
    (weight,) = f.weights()
    assert weight.found == tmp_path / "clip" / "ggtqc-tiny-vit-custom.bin"
    assert weight.searched[0] == tmp_path / "absent.pt"


def test_missing_clip_weights_stop_the_run_listing_every_place(tmp_path, monkeypatch):
    monkeypatch.setenv("GGTQC_CACHE", str(tmp_path))
    f = Clip()
    (weight,) = f.weights()
    assert weight.found is None and weight.source == "hf://laion/CLIP-ViT-B-32-laion2B-s34B-b79K/open_clip_model.safetensors"
    stage = Stage(f, Entry(Clip, "clip", "ggtqc"), {"similarity": 0.8, "worst_crop": 0.7})
    with pytest.raises(PluginError) as error:
        check_ready([stage], torch.device("cpu"), "all")
    message = str(error.value)
    assert "models--laion--CLIP-ViT-B-32-laion2B-s34B-b79K" in message and str(tmp_path / "clip") in message
    assert "--plugins all,-clip" in message
    with pytest.raises(FileNotFoundError):  # never falls back to random weights
        f.setup(torch.device("cpu"))


def test_clip_on_the_real_vit_b_32_architecture(tmp_path):
    import open_clip

    torch.manual_seed(1)
    checkpoint = tmp_path / "vit-b-32-random.pt"
    torch.save(open_clip.create_model("ViT-B-32").state_dict(), checkpoint)
    f = loaded({"checkpoint": str(checkpoint)}, grid=2)
    scene = photos()[2]
    out = f.score(Batch(["p"], [scene], [scene]))
    assert out["similarity"][0] == pytest.approx(1.0, abs=1e-4)


def test_filter_runs_clip_from_a_config_file(tiny_clip, tmp_path):
    settings, _ = tiny_clip
    config = tmp_path / "qc.toml"
    config.write_text(
        "[clip]\n" + "".join(f'{key} = "{value}"\n' for key, value in settings.items()) + "\n[clip.thresholds]\nsimilarity = 0.99\n"
    )
    result = run_cli("filter", str(REPO / "examples" / "pairs"), "-q", "-p", "resolution,clip", "--config", str(config), "--out", str(tmp_path / "qc"))
    assert result.returncode == 0, result.stderr
    rows = {row["id"]: row for row in read_rows(tmp_path / "qc")}
    assert 0 < rows["haze/coffee"]["scores"]["clip"]["similarity"] <= 1
    weights = run_cli("weights", "-p", "clip", "--config", str(config))
    assert weights.returncode == 0 and f"found: {settings['checkpoint']}" in weights.stdout
    offline = {"GGTQC_CACHE": str(tmp_path / "empty"), "HF_HUB_OFFLINE": "1"}
    missing = run_cli("weights", "-p", "clip", env=offline)
    assert missing.returncode == 1 and "MISSING" in missing.stdout and "looked in" in missing.stdout
    fetched = run_cli("weights", "-p", "clip", "--fetch", env=offline)  # no network: says so, goes on
    assert fetched.returncode == 1 and "could not fetch open_clip ViT-B-32" in fetched.stderr and "Traceback" not in fetched.stderr
