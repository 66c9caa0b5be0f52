"""Inference: a soundscape's cached embeddings → one probability row per submission window."""
from __future__ import annotations

import numpy as np

from birdclef.embeddings import Embedded, frames_in, n_windows, pool_segments
from birdclef.model import HeadMeta, MLPHead, predict


def predict_windows(e: Embedded, model: MLPHead, meta: HeadMeta, *, window_s: float = 5.0) -> np.ndarray:
    """(n_windows(duration), n_classes) probabilities.

    Each window's frames are cut into the head's segments (``meta.segment_frames`` frames,
    as in training); segment probabilities are averaged over the window.
    """
    count = n_windows(e.duration_s, window_s)
    segments, owner = [], []
    for w in range(count):
        idx = frames_in(e, w * window_s, (w + 1) * window_s)
        if len(idx) == 0:  # a window past the last frame start: use the last frame
            idx = np.array([len(e.starts_s) - 1])
        segs = pool_segments(e, idx, meta.segment_frames)
        segments.append(segs)
        owner.extend([w] * len(segs))
    prob = predict(model, meta, np.concatenate(segments))
    owner_arr = np.asarray(owner)
    out = np.zeros((count, prob.shape[1]), np.float32)
    for w in range(count):
        out[w] = prob[owner_arr == w].mean(axis=0)
    return out


def prior_windows(meta: HeadMeta, count: int) -> np.ndarray:
    """(count, n_classes) rows of the training prior (uniform when no prior was saved)."""
    n = len(meta.labels)
    prior = np.asarray(meta.prior, np.float32) if len(meta.prior) == n else np.full(n, 1.0 / n, np.float32)
    return np.repeat(prior[None], count, axis=0)
