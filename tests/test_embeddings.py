import pytest

from birdclef.data.competition import WINDOW_TOLERANCE_S, n_windows


@pytest.mark.parametrize("duration_s, rows", [
    (59.9, 12), (60.0, 12), (60.001, 12), (60.4, 12), (60.0 + WINDOW_TOLERANCE_S, 12), (60.6, 13), (62.0, 13),
    (65.0, 13), (3.0, 1), (0.1, 1), (5.0, 1), (5.4, 1), (120.0, 24),
])
def test_a_soundscape_gets_the_sample_submissions_rows(duration_s, rows):
    # 12 rows for a one-minute file, even decoded a few samples long; a window starts only past the tolerance
    assert n_windows(duration_s, 5.0) == rows


def _worker_state() -> tuple[bool, int]:
    """In a pool worker: was torch imported by the worker's start-up, and its threads once imported."""
    import sys

    imported = "torch" in sys.modules
    import torch

    return imported, torch.get_num_threads()


def test_a_pool_worker_starts_without_torch_and_torch_gets_one_thread():
    # the embedding pool's initializer: no ~1-s torch import a TFLite backbone never needs, but a
    # backbone that does import torch still runs one thread per worker
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    from birdclef.features.embeddings import init_worker_process

    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"), initializer=init_worker_process) as pool:
        imported, threads = pool.submit(_worker_state).result(timeout=120)
    assert not imported
    assert threads == 1
