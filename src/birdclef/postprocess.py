"""Post-processing of one soundscape's window probabilities (rows: 5-s windows in time order).

Calls last longer than a window and species call in bouts, so a window's neighbours carry
evidence about it: :func:`smooth_windows` mixes them in. :func:`blend_zero_shot` mixes in the
backbone's own species scores where a class maps to one; :func:`average` is the ensemble.
Every function returns a new array.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def smooth_windows(prob: np.ndarray, kernel: Sequence[float]) -> np.ndarray:
    """(n_windows, n_classes) → the same shape, each window a weighted mean of its neighbours.

    ``kernel`` has an odd length and is centred on the window (e.g. (0.1, 0.2, 0.4, 0.2, 0.1));
    at the ends of the soundscape the weights that fall outside are dropped and the rest
    renormalised, so a constant input stays constant. ``(1.0,)`` returns a copy.
    """
    prob = np.asarray(prob, np.float32)
    k = np.asarray(kernel, np.float64)
    if k.ndim != 1 or len(k) % 2 == 0 or (k < 0).any() or k.sum() <= 0:
        raise ValueError(f"kernel must be an odd number of non-negative weights with a positive sum, got {kernel}")
    if len(k) == 1 or len(prob) <= 1:
        return prob.copy()
    half = len(k) // 2
    n = len(prob)
    out = np.zeros(prob.shape, np.float64)
    norm = np.zeros((n, 1), np.float64)
    for j, weight in enumerate(k):
        offset = j - half  # the window `offset` places away contributes `weight`
        lo, hi = max(0, -offset), min(n, n - offset)
        if lo >= hi:
            continue
        out[lo:hi] += weight * prob[lo + offset:hi + offset]
        norm[lo:hi] += weight
    return (out / np.maximum(norm, 1e-12)).astype(np.float32)


def blend_zero_shot(prob: np.ndarray, scores: np.ndarray, mapped: np.ndarray, weight: float) -> np.ndarray:
    """(n_windows, n_classes) head probabilities blended with the backbone's scores where mapped.

    ``scores``: (n_windows, n_classes) the backbone's species scores in taxonomy order (any
    value where a class is unmapped); ``mapped``: (n_classes,) bool. Mapped classes get
    ``(1 - weight) * prob + weight * scores``; the others keep ``prob``.
    """
    prob = np.asarray(prob, np.float32)
    scores = np.asarray(scores, np.float32)
    mapped = np.asarray(mapped, bool)
    if scores.shape != prob.shape or mapped.shape != prob.shape[1:]:
        raise ValueError(f"shapes differ: prob {prob.shape}, scores {scores.shape}, mapped {mapped.shape}")
    if not 0 <= weight <= 1:
        raise ValueError(f"weight must be in [0, 1], got {weight}")
    out = prob.copy()
    out[:, mapped] = (1 - weight) * prob[:, mapped] + weight * scores[:, mapped]
    return out


def average(probs: Sequence[np.ndarray]) -> np.ndarray:
    """Mean of several runs' (n_windows, n_classes) probabilities for one soundscape."""
    if not probs:
        raise ValueError("nothing to average")
    shapes = {np.shape(p) for p in probs}
    if len(shapes) != 1:
        raise ValueError(f"ensemble members disagree on the shape: {sorted(shapes)}")
    return np.mean(np.stack([np.asarray(p, np.float32) for p in probs]), axis=0)
