"""Post-processing of one soundscape's window probabilities (rows: 5-s windows in time order).

Calls last longer than a window and species call in bouts, so a window's neighbours carry
evidence about it: :func:`smooth_windows` mixes them in. :func:`blend_logits` mixes in the
backbone's own species logits where a class maps to one; :func:`average` is the ensemble.
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


def blend_logits(prob: np.ndarray, logits: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Head probabilities blended with the backbone's own logits, in logit space, per class.

    ``prob``, ``logits``: (n, n_classes); ``weights``: (n_classes,) in [0, 1]. A class with
    weight w > 0 gets ``sigmoid((1 - w) · logit(prob) + w · logits)`` (w = 1: the backbone
    alone, its ranking kept exactly); weight 0 (unmapped classes) keeps ``prob`` unchanged.
    """
    prob = np.asarray(prob, np.float32)
    logits = np.asarray(logits, np.float32)
    weights = np.asarray(weights, np.float64)
    if logits.shape != prob.shape or weights.shape != prob.shape[1:]:
        raise ValueError(f"shapes differ: prob {prob.shape}, logits {logits.shape}, weights {weights.shape}")
    if np.isnan(weights).any() or (weights < 0).any() or (weights > 1).any():
        raise ValueError("weights must lie in [0, 1]")
    out = prob.copy()
    on = weights > 0
    if on.any():
        p = np.clip(prob[:, on].astype(np.float64), 1e-7, 1 - 1e-7)
        z = (1 - weights[on]) * np.log(p / (1 - p)) + weights[on] * logits[:, on]
        out[:, on] = (1 / (1 + np.exp(-np.clip(z, -60, 60)))).astype(np.float32)
    return out


def average(probs: Sequence[np.ndarray], weights: Sequence[float] | None = None) -> np.ndarray:
    """(Weighted) mean of several runs' (n_windows, n_classes) probabilities for one soundscape."""
    if not probs:
        raise ValueError("nothing to average")
    shapes = {np.shape(p) for p in probs}
    if len(shapes) != 1:
        raise ValueError(f"ensemble members disagree on the shape: {sorted(shapes)}")
    w = np.ones(len(probs)) if weights is None or not len(weights) else np.asarray(weights, np.float64)
    if len(w) != len(probs) or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"{len(probs)} members need as many non-negative weights with a positive sum, got {weights}")
    stacked = np.stack([np.asarray(p, np.float64) for p in probs])
    return (np.tensordot(w / w.sum(), stacked, axes=1)).astype(np.float32)


def rank_average(probs: Sequence[np.ndarray], weights: Sequence[float] | None = None) -> np.ndarray:
    """Per-class rank blend: each member's (n_rows, n_classes) scores over every test window become
    ranks scaled to (0, 1] per class (ties share their mean rank), then their (weighted) mean.
    Members whose scales differ (a sigmoid head, a SED model) then count by their ordering only,
    which is all the ROC-AUC metric sees."""
    from scipy.stats import rankdata

    ranked = [rankdata(np.asarray(p, np.float64), axis=0) / max(len(p), 1) for p in probs]
    return average(ranked, weights)
