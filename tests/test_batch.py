import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from ggtqc.batch import Batch, load_batches
from ggtqc.images import DecodeLimits
from ggtqc.pairs import discover

from tests.helpers import make_pair_folder


def test_subsets_keep_the_pairs_in_the_order_asked():
    rng = np.random.default_rng(0)
    lq = [rng.integers(0, 256, shape, np.uint8) for shape in [(4, 6, 3), (5, 6, 3), (4, 6, 3)]]
    hq = [rng.integers(0, 256, (2 * a.shape[0], 2 * a.shape[1], 3), np.uint8) for a in lq]
    batch = Batch(["a", "b", "c"], lq, hq)
    sub = batch.subset([2, 0])
    assert sub.ids == ["c", "a"] and sub.lq[0] is lq[2] and sub.hq[1] is hq[0] and len(sub) == 2
    sub.cache["x", "c"] = 1
    assert batch.cache == {("x", "c"): 1}  # filters share what they computed


def test_map_runs_on_the_executor_the_batch_was_given_and_keeps_order():
    batch = Batch(["a", "b", "c"], [np.zeros((2, 2, 3), np.uint8)] * 3, [np.zeros((4, 4, 3), np.uint8)] * 3)
    assert batch.map(lambda i, j: (i, j, threading.get_ident()), [1, 2, 3], "xyz") == [
        (1, "x", threading.get_ident()), (2, "y", threading.get_ident()), (3, "z", threading.get_ident())
    ]  # fmt: skip
    with ThreadPoolExecutor(2, thread_name_prefix="test-map") as executor:
        threaded = Batch(batch.ids, batch.lq, batch.hq, executor=executor).subset([2, 1, 0])
        out = threaded.map(lambda i: (i, threading.current_thread().name), range(8))
    assert [i for i, _ in out] == list(range(8)) and all(name.startswith("test-map") for _, name in out)


def test_decoded_images_are_read_only_so_filters_cannot_corrupt_each_other(tmp_path):
    make_pair_folder(tmp_path, 2)
    [loaded] = load_batches(discover(tmp_path), 2, DecodeLimits(), workers=2)
    with pytest.raises(ValueError):
        loaded[0].lq[0, 0, 0] = 1


@pytest.mark.parametrize("workers,batch_size", [(1, 1), (3, 4), (2, 64)])
def test_loader_keeps_input_order_and_covers_every_pair(tmp_path, workers, batch_size):
    ids = make_pair_folder(tmp_path, 11)
    pairs = discover(tmp_path)
    batches = list(load_batches(pairs, batch_size, DecodeLimits(), workers=workers, prefetch=2))
    assert [len(b) for b in batches][:-1] == [batch_size] * (len(batches) - 1)
    assert [item.pair.id for b in batches for item in b] == sorted(ids)
    assert all(item.error is None and item.lq.shape[2] == 3 for b in batches for item in b)
