"""Post-processing of one soundscape's window probabilities (rows: 5-s windows in time order).

Calls last longer than a window and species call in bouts, so a window's neighbours carry
evidence about it: :func:`smooth_windows` mixes them in. :func:`blend_logits` mixes in the
backbone's own species logits where a class maps to one; :func:`average` is the ensemble.
Every function returns a new array.

After the ensemble, a soundscape's probabilities go through the post-processing chain: the
ordered steps named by ``Config.postprocess`` (default ``("blend", "site_prior", "smoothing")``),
each a :class:`Step` in :data:`STEPS` — one function of (probabilities, config, :class:`Evidence`)
and the Config fields it reads. :func:`run_chain` runs them; :func:`chain_table` says what a
config's chain does. A new step is one function registered with :func:`step`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from birdclef.priors import apply_shift


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


@dataclass(frozen=True)
class Evidence:
    """What post-processing steps may draw on for one soundscape besides its window probabilities."""

    zero_shot_logits: np.ndarray | None = None  # (n_windows, n_classes) the backbone's own logits
    zero_shot_weights: np.ndarray | None = None  # (n_classes,) their blend weights in [0, 1]
    prior_shift: np.ndarray | None = None  # (n_classes,) logit shift of the file's site and hour (birdclef.priors)


StepFunction = Callable[[np.ndarray, Any, Evidence], np.ndarray]


@dataclass(frozen=True)
class Step:
    """One post-processing step: ``apply(prob (n_windows, n_classes), config, evidence)`` → a new
    array of the same shape; ``fields``: the Config fields it reads (its settings)."""

    name: str
    apply: StepFunction
    fields: tuple[str, ...]
    summary: str


STEPS: dict[str, Step] = {}


def step(name: str, *, fields: tuple[str, ...], summary: str) -> Callable[[StepFunction], StepFunction]:
    """Register a post-processing step under ``name`` (decorator)."""
    def register(fn: StepFunction) -> StepFunction:
        if name in STEPS:
            raise ValueError(f"post-processing step {name!r} registered twice")
        STEPS[name] = Step(name, fn, fields, summary)
        return fn
    return register


def chain(names: Sequence[str]) -> list[Step]:
    """The registered steps ``names``, in that order (an unknown or repeated name is refused)."""
    unknown = [n for n in names if n not in STEPS]
    if unknown:
        raise ValueError(f"unknown post-processing step(s) {unknown}; known: {', '.join(map(repr, STEPS))}")
    if len(set(names)) != len(names):
        raise ValueError(f"a post-processing step is named twice in {list(names)}")
    return [STEPS[n] for n in names]


def run_chain(prob: np.ndarray, config: Any, evidence: Evidence = Evidence()) -> np.ndarray:
    """One soundscape's (n_windows, n_classes) probabilities through ``config.postprocess`` in order."""
    out = np.asarray(prob, np.float32)
    for s in chain(config.postprocess):
        out = s.apply(out, config, evidence)
    return out


def chain_table(config: Any) -> list[dict[str, str]]:
    """One row per step of ``config.postprocess``: order, step, settings (``field=value``), what it does."""
    return [{"order": str(i + 1), "step": s.name, "settings": ", ".join(f"{f}={getattr(config, f)!r}" for f in s.fields),
             "does": s.summary} for i, s in enumerate(chain(config.postprocess))]


@step("blend", fields=("zero_shot_weight",),
      summary="head probabilities blended with the backbone's own logits in logit space, per mapped class")
def _blend_step(prob: np.ndarray, config: Any, evidence: Evidence) -> np.ndarray:
    if evidence.zero_shot_logits is None or evidence.zero_shot_weights is None:
        return prob  # a member without backbone logits (SED), or the blend off
    return blend_logits(prob, evidence.zero_shot_logits, evidence.zero_shot_weights)


@step("site_prior", fields=("site_prior_weight",),
      summary="the site and hour prior of the labelled train soundscapes, weighted, in logit space")
def _site_prior_step(prob: np.ndarray, config: Any, evidence: Evidence) -> np.ndarray:
    if evidence.prior_shift is None:
        return prob
    return apply_shift(prob, evidence.prior_shift, config.site_prior_weight)


@step("smoothing", fields=("smoothing_kernel",),
      summary="each window a weighted mean of its neighbours (the kernel, centred)")
def _smoothing_step(prob: np.ndarray, config: Any, evidence: Evidence) -> np.ndarray:
    return smooth_windows(prob, config.smoothing_kernel)
