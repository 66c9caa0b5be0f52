"""Soft pseudo labels: a teacher's window probabilities → a noisy student's targets.

Shared by both model families' noisy students (the embedding head's :mod:`birdclef.models.pseudo` and the
SED family's :mod:`birdclef.models.sed.noisy_student`), so each turns probabilities into targets the same
way. It depends on numpy alone: neither family reaches into the other through it.
"""
from __future__ import annotations

import numpy as np


def soft_targets(prob: np.ndarray, *, power: float = 1.0, cap: float | None = None) -> np.ndarray:
    """(n_windows, n_classes) probabilities in [0, 1] → float32 targets: ``clip(prob, 0, 1) ** power``,
    each row whose sum exceeds ``cap`` scaled down to sum exactly ``cap`` (rows at or under it unchanged;
    None: no cap). A power above 1 quiets the teacher's low scores; a cap below 1 keeps a pseudo-labelled
    window's total evidence under a labelled focal example's (1st place, BirdCLEF+ 2025: 0.75)."""
    if power <= 0:
        raise ValueError(f"power must be > 0, got {power}")
    if cap is not None and cap <= 0:
        raise ValueError(f"cap must be > 0 or None, got {cap}")
    t = np.clip(np.asarray(prob, np.float64), 0.0, 1.0) ** power
    if cap is not None:
        total = t.sum(axis=-1, keepdims=True)
        t = np.where(total > cap, t * (cap / np.maximum(total, 1e-12)), t)
    return t.astype(np.float32)
