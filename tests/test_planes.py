import numpy as np
import pytest

from ggtqc.planes import percentile


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8])
@pytest.mark.parametrize("size", [1, 2, 7, 1001, 1024 * 1024])
def test_percentile_is_numpys_to_the_last_bit(dtype, size):
    values = (np.random.default_rng(size).random(size) * 300).astype(dtype)
    for q in (0, 1, 12.345, 30, 50, 95, 99.9, 100):
        assert percentile(values, q) == float(np.percentile(values, q)), q


def test_percentile_of_a_plane_and_of_ties():
    plane = np.array([[3, 1], [2, 2]], np.float32)
    assert percentile(plane, 50) == 2.0 and percentile(plane, 100) == 3.0
    assert percentile(np.full(10, 5.0, np.float32), 37) == 5.0


def test_small_pair_views_of_decoded_images_are_computed_once():
    import gc

    from ggtqc import planes

    rng = np.random.default_rng(0)
    lq, hq = rng.integers(0, 256, (300, 400, 3), np.uint8), rng.integers(0, 256, (600, 800, 3), np.uint8)
    fresh = planes.small_pair(lq, hq, 64, 0.5)
    assert fresh[0].flags.writeable and planes.small_pair(lq, hq, 64, 0.5)[0] is not fresh[0]  # writable input: not kept
    lq.flags.writeable = hq.flags.writeable = False  # as the decoder hands them to every filter
    first = planes.small_pair(lq, hq, 64, 0.5)
    again = planes.small_pair(lq, hq, 64, 0.5)
    assert again[0] is first[0] and again[1] is first[1] and not first[0].flags.writeable
    np.testing.assert_array_equal(first[0], fresh[0])
    np.testing.assert_array_equal(first[1], fresh[1])
    assert planes.small_pair(lq, hq, 96, 0.5)[0].shape != first[0].shape  # another size, another view
    assert planes.small_pair(lq, hq, 256)[0].flags.writeable  # larger than SHARED_SIDE: not kept
    kept = len(planes._VIEWS)
    del lq, hq
    gc.collect()
    assert len(planes._VIEWS) == kept - 2  # forgotten with their images
