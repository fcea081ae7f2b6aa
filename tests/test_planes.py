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
