"""clip and iqa through their real loading code, on random weights saved to local files."""

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
from ggtqc.config import ConfigError
from ggtqc.host import Entry, PluginError
from ggtqc.plugins.clip import Clip
from ggtqc.plugins import iqa as iqa_module
from ggtqc.plugins.iqa import Iqa
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


# --- iqa ---------------------------------------------------------------------------------


def test_iqa_piqe_runs_offline_and_matches_pyiqa():
    import pyiqa

    f = Iqa()
    assert f.weights() == []
    f.setup(torch.device("cpu"))
    clean = cv2.resize(photos()[0], (384, 384), interpolation=cv2.INTER_AREA)
    noisy = np.clip(clean + np.random.default_rng(0).normal(0, 20, clean.shape), 0, 255).astype(np.uint8)
    out = f.score(Batch(["p"], [noisy], [clean]))
    reference = pyiqa.create_metric("piqe", device="cpu")(torch.from_numpy(clean).permute(2, 0, 1)[None].float() / 255).item()
    assert out["piqe_hq"][0] == pytest.approx(reference, rel=1e-4)
    assert out["piqe_gain"][0] > 0  # the clean target scores better than its noisy source
    assert np.isnan(out["musiq_hq"][0])  # not enabled: not measured


def test_iqa_scores_the_same_on_the_hosts_threads():
    # pyiqa's PIQE keeps its last result on the model object: threads sharing one model
    # handed each other's scores (about one run in ten with 4 pairs on 3 threads).
    f = Iqa()
    f.setup(torch.device("cpu"))
    rng = np.random.default_rng(1)
    hq = [cv2.resize(p[k * 20 :, k * 20 :], (256, 192), interpolation=cv2.INTER_AREA) for k in range(3) for p in photos()[:4]]
    lq = [np.clip(h + rng.normal(0, 12, h.shape), 0, 255).astype(np.uint8) for h in hq]
    ids = [str(i) for i in range(len(hq))]
    alone = f.score(Batch(ids, lq, hq))
    measure, threads = f.measure, set()
    f.measure = lambda *pair: threads.add(threading.current_thread().name) or measure(*pair)
    with ThreadPoolExecutor(4, thread_name_prefix="host") as executor:
        for _ in range(5):
            threaded = f.score(Batch(ids, lq, hq, executor=executor))
            assert threaded["piqe_hq"] == alone["piqe_hq"] and threaded["piqe_gain"] == alone["piqe_gain"]
    assert threads and all(name.startswith("host") for name in threads)  # the pairs ran on the host's threads
    assert len(set(alone["piqe_hq"])) == len(hq)  # every pair its own score


def test_iqa_stacks_pairs_of_one_size_and_scores_them_as_one_by_one(monkeypatch):
    # Off the CPU's threads (a GPU, a learned metric) pairs whose views share a size go
    # through each model as one stack; every pair must keep its own scores.
    f = Iqa()
    f.setup(torch.device("cpu"))
    rng = np.random.default_rng(2)
    sizes = [(160, 128), (96, 144)]
    hq = [cv2.resize(p[k * 30 :], size, interpolation=cv2.INTER_AREA) for k in range(2) for p in photos()[:3] for size in sizes]
    hq.insert(3, cv2.resize(hq[0], (600, 12), interpolation=cv2.INTER_AREA))  # a sliver: not measured
    lq = [np.clip(h + rng.normal(0, 15, h.shape), 0, 255).astype(np.uint8) for h in hq]
    ids = [str(i) for i in range(len(hq))]
    one_by_one = f.score(Batch(ids, lq, hq))
    model, calls = f.models()["piqe"], []
    f.per_thread.models = {"piqe": lambda x: calls.append(len(x)) or model(x)}
    f.threaded = False
    resize, threads = iqa_module._tensor, set()
    monkeypatch.setattr(iqa_module, "_tensor", lambda *view: threads.add(threading.current_thread().name) or resize(*view))
    with ThreadPoolExecutor(3, thread_name_prefix="host") as executor:
        stacked = f.score(Batch(ids, lq, hq, executor=executor))
    assert sorted(calls) == [6, 6, 6, 6]  # each size's six pairs in one call per side
    assert threads and all(name.startswith("host") for name in threads)  # the views were resized on the host's threads
    np.testing.assert_allclose(stacked["piqe_hq"], one_by_one["piqe_hq"], rtol=1e-6)
    np.testing.assert_allclose(stacked["piqe_gain"], one_by_one["piqe_gain"], rtol=1e-5)
    assert np.isnan(stacked["piqe_hq"][3]) and np.isfinite(np.delete(stacked["piqe_hq"], 3)).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_iqa_piqe_on_a_gpu_scores_as_float64_on_the_cpu():
    # float32 PIQE on an H200 differed from the CPU's by 1-2 points on clean photos
    import pyiqa

    rng = np.random.default_rng(3)
    hq = [cv2.resize(p, (512, 384), interpolation=cv2.INTER_AREA) for p in photos()[:4]]
    lq = [np.clip(h + rng.normal(0, 10, h.shape), 0, 255).astype(np.uint8) for h in hq]
    f = Iqa()
    f.setup(torch.device("cuda"))
    out = f.score(Batch(list("abcd"), lq, hq, torch.device("cuda")))
    reference = pyiqa.create_metric("piqe", device="cpu")
    for i, image in enumerate(hq):
        expected = reference(torch.from_numpy(image).permute(2, 0, 1)[None].double() / 255).item()
        assert out["piqe_hq"][i] == pytest.approx(expected, abs=1e-3)


def test_iqa_does_not_measure_a_view_smaller_than_a_piqe_block():
    f = Iqa()
    f.setup(torch.device("cpu"))
    sliver = cv2.resize(photos()[0], (600, 12), interpolation=cv2.INTER_AREA)  # 512 x 10 once sized
    out = f.score(Batch(["p"], [sliver], [sliver]))
    assert all(np.isnan(values[0]) for values in out.values()), out


def test_iqa_loads_a_learned_metric_from_its_local_checkpoint_and_keeps_it_on_one_thread(tmp_path):
    import pyiqa
    from pyiqa.archs.musiq_arch import MUSIQ

    torch.manual_seed(0)
    checkpoint = tmp_path / "musiq.pth"
    torch.save(MUSIQ(pretrained=False).state_dict(), checkpoint)  # the real architecture, random weights
    f = Iqa(metrics="musiq", checkpoints=f"musiq={checkpoint}")
    assert [weight.found for weight in f.weights()] == [checkpoint]
    f.setup(torch.device("cpu"))
    hq = [cv2.resize(p, (128, 96), interpolation=cv2.INTER_AREA) for p in photos()[:2]]
    lq = [cv2.GaussianBlur(h, (0, 0), 2) for h in hq]
    measure, threads = f.measure, set()
    f.measure = lambda *pair: threads.add(threading.current_thread().name) or measure(*pair)
    with ThreadPoolExecutor(2, thread_name_prefix="host") as executor:
        out = f.score(Batch(["a", "b"], lq, hq, executor=executor))
    assert threads == {threading.current_thread().name}  # one thread, one copy of the weights
    direct = pyiqa.create_metric("musiq", device="cpu", pretrained_model_path=str(checkpoint))
    for i, image in enumerate(hq):
        expected = direct(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255).item()
        assert out["musiq_hq"][i] == pytest.approx(expected, rel=1e-5)
    assert np.isnan(out["piqe_hq"]).all()  # not enabled


def test_iqa_learned_metric_without_weights_stops_before_work(tmp_path, monkeypatch):
    monkeypatch.setenv("GGTQC_CACHE", str(tmp_path))
    f = Iqa(metrics="piqe,musiq")
    (weight,) = f.weights()
    assert weight.found is None and weight.searched[0] == tmp_path / "iqa" / "musiq.pth"
    assert weight.searched[-1].name == "musiq_koniq_ckpt-e95806b9.pth"
    with pytest.raises(PluginError, match="pyiqa musiq weights"):
        check_ready([Stage(f, Entry(Iqa, "iqa", "ggtqc"), {})], torch.device("cpu"), "all")
    with pytest.raises(ConfigError, match="no metric 'brisqueish'"):
        Iqa(metrics="brisqueish").weights()
