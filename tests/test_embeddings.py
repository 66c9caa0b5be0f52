import pytest

from birdclef.embeddings import WINDOW_TOLERANCE_S, n_windows


@pytest.mark.parametrize("duration_s, rows", [
    (59.9, 12), (60.0, 12), (60.001, 12), (60.4, 12), (60.0 + WINDOW_TOLERANCE_S, 12), (60.6, 13), (62.0, 13),
    (65.0, 13), (3.0, 1), (0.1, 1), (5.0, 1), (5.4, 1), (120.0, 24),
])
def test_a_soundscape_gets_the_sample_submissions_rows(duration_s, rows):
    # 12 rows for a one-minute file, even decoded a few samples long; a window starts only past the tolerance
    assert n_windows(duration_s, 5.0) == rows
