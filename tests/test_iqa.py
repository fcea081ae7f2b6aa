"""iqa through its real loading code: PIQE offline, a learned metric from a local checkpoint."""

import threading
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest
import torch

from tests.helpers import photos
from ggtqc.batch import Batch
from ggtqc.config import ConfigError
from ggtqc.host import Entry, PluginError
from ggtqc.plugins import iqa as iqa_module
from ggtqc.plugins.iqa import Iqa
from ggtqc.runner import Stage, check_ready


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
