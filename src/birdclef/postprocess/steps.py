"""The post-processing steps, each one function registered with :func:`birdclef.postprocess.registry.step`
under its name, with the Config fields it reads; and the array functions they are built from (smoothing,
the zero-shot and rank blends, the file boost, per-taxon and genus smoothing, ensemble averages).
Every function returns a new array."""
from __future__ import annotations

import functools
import logging
import re
from typing import Any, Sequence

import numpy as np

from birdclef.contracts import ChosenWeights, Evidence, RankReference, Settings
from birdclef.postprocess.priors import apply_shift
from birdclef.postprocess.registry import step


log = logging.getLogger(__name__)


def check_kernel(kernel: Sequence[float]) -> np.ndarray:
    """``kernel`` as a float64 array, or ValueError: it must be an odd number of non-negative
    weights with a positive sum (what :func:`smooth_windows` takes)."""
    k = np.asarray(kernel, np.float64)
    if k.ndim != 1 or len(k) % 2 == 0 or np.isnan(k).any() or (k < 0).any() or k.sum() <= 0:
        raise ValueError(f"kernel must be an odd number of non-negative weights with a positive sum, got {kernel}")
    return k


def smooth_windows(prob: np.ndarray, kernel: Sequence[float]) -> np.ndarray:
    """(n_windows, n_classes) → the same shape, each window a weighted mean of its neighbours.

    ``kernel`` has an odd length and is centred on the window (e.g. (0.1, 0.2, 0.4, 0.2, 0.1));
    at the ends of the soundscape the weights that fall outside are dropped and the rest
    renormalised, so a constant input stays constant. ``(1.0,)`` returns a copy.
    """
    prob = np.asarray(prob, np.float32)
    k = check_kernel(kernel)
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


def rank_reference(head: Sequence[np.ndarray], backbone: Sequence[np.ndarray], mapped: np.ndarray) -> RankReference:
    """Per file (n_windows_i, n_classes) scores and backbone logits → their :class:`RankReference`."""
    h = np.sort(np.concatenate([np.asarray(x, np.float64) for x in head]), axis=0)
    b = np.sort(np.concatenate([np.asarray(x, np.float64) for x in backbone]), axis=0)
    mapped = np.asarray(mapped, bool)
    if h.shape != b.shape or mapped.shape != h.shape[1:]:
        raise ValueError(f"shapes differ: head {h.shape}, backbone {b.shape}, mapped {mapped.shape}")
    return RankReference(h, b, mapped)


def _ranks(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Mean rank in (0, 1] of each of ``values`` (n,) among ``reference`` (N,) sorted (ties: their mean rank,
    as :func:`scipy.stats.rankdata`), divided by N; a value that is in ``reference`` gets its rank there."""
    lo = np.searchsorted(reference, values, side="left")
    hi = np.searchsorted(reference, values, side="right")
    return (lo + hi + 1) / 2 / len(reference)


def rank_blend(prob: np.ndarray, logits: np.ndarray, reference: RankReference, weight: float) -> np.ndarray:
    """(n_windows, n_classes) head scores of one file and its backbone's logits → the same shape.

    For each mapped class: r = (1 − w)·rank(head) + w·rank(backbone), each rank over every window of
    the set (``reference``), then r mapped back onto the head's own scores at that quantile (so later
    steps see the head's scale: weight 0 gives the head's values back, weight 1 the head's values in
    the backbone's order). Unmapped classes unchanged.
    """
    prob = np.asarray(prob, np.float32)
    logits = np.asarray(logits, np.float64)
    if not 0 <= weight <= 1:
        raise ValueError(f"rank_blend needs a weight in [0, 1], got {weight}")
    if logits.shape != prob.shape or reference.head.shape[1:] != prob.shape[1:]:
        raise ValueError(f"shapes differ: prob {prob.shape}, logits {logits.shape}, reference {reference.head.shape}")
    out = prob.copy()
    n = len(reference.head)
    positions = np.arange(1, n + 1) / n  # the quantile of each sorted reference row
    for j in np.flatnonzero(reference.mapped):
        r = (1 - weight) * _ranks(prob[:, j].astype(np.float64), reference.head[:, j])
        if weight > 0:
            r = r + weight * _ranks(logits[:, j], reference.backbone[:, j])
        out[:, j] = np.interp(r, positions, reference.head[:, j])
    return out


@step("blend", fields=("zero_shot_weight",),
      summary="head probabilities blended with the backbone's own logits in logit space, per mapped class")
def _blend_step(prob: np.ndarray, config: Settings, evidence: Evidence) -> np.ndarray:
    if evidence.zero_shot_logits is None or evidence.zero_shot_weights is None:
        return prob  # a member without backbone logits (SED), or the blend off
    return blend_logits(prob, evidence.zero_shot_logits, evidence.zero_shot_weights)


@step("rank_blend", fields=("rank_blend_weight",), evidence=("rank_reference",),
      summary="per mapped class, the head's and the backbone's ranks over every window of the set, weighted "
              "(rank_blend_weight: the backbone's share), mapped back onto the head's scores")
def _rank_blend_step(prob: np.ndarray, config: Settings, evidence: Evidence) -> np.ndarray:
    if evidence.zero_shot_logits is None:
        return prob  # a member without backbone logits (SED)
    if evidence.rank_reference is None:
        raise ValueError("post-processing step 'rank_blend' ranks over every window of the set and needs "
                         "Evidence.rank_reference (postprocess.rank_reference over all files, as "
                         "birdclef.inference.predict.predict_files and birdclef.models.valsoundscapes.finished build it); none was given")
    return rank_blend(prob, evidence.zero_shot_logits, evidence.rank_reference, config.rank_blend_weight)


@step("context", fields=("context_epochs", "context_hidden"), evidence=("context",),
      summary="a small bidirectional GRU over the file's windows corrects each window's logit from its "
              "neighbours (birdclef.models.context; trained in 03_train on the validation soundscapes)")
def _context_step(prob: np.ndarray, config: Settings, evidence: Evidence) -> np.ndarray:
    if evidence.context is None:
        raise ValueError("post-processing step 'context' needs a trained context model (Evidence.context); none "
                         "was given: train one with 'context' in postprocess (03_train, birdclef.models.context.train_context)")
    return evidence.context.apply(prob)


@step("site_prior", fields=("site_prior_weight",),
      summary="the site and hour prior of the labelled train soundscapes, weighted, in logit space")
def _site_prior_step(prob: np.ndarray, config: Settings, evidence: Evidence) -> np.ndarray:
    if evidence.prior_shift is None:
        return prob
    return apply_shift(prob, evidence.prior_shift, config.site_prior_weight)


@step("smoothing", fields=("smoothing_kernel",),
      summary="each window a weighted mean of its neighbours (the kernel, centred)")
def _smoothing_step(prob: np.ndarray, config: Settings, evidence: Evidence) -> np.ndarray:
    return smooth_windows(prob, config.smoothing_kernel)


@step("file_boost", fields=("file_boost_alpha", "file_boost_power"),
      summary="each window raised toward the file's maximum for its class (additive: α; multiplicative: max^β)")
def _file_boost_step(prob: np.ndarray, config: Settings, evidence: Evidence) -> np.ndarray:
    return file_boost(prob, alpha=config.file_boost_alpha, power=config.file_boost_power)


def file_boost(prob: np.ndarray, *, alpha: float = 0.0, power: float = 0.0) -> np.ndarray:
    """(n_windows, n_classes) of one file → the same shape: ``(p·(1 − α) + α·m) · m^β`` per class,
    ``m`` (1, n_classes) the class's maximum over the file's windows.

    α in [0, 1] lifts every window toward ``m`` (α = 1: ``m`` everywhere) and never above it;
    β ≥ 0 scales a class by how sure the file is of it somewhere (β = 0: factor 1). With
    α = β = 0 the input comes back unchanged; probabilities in [0, 1] stay in [0, 1].
    """
    prob = np.asarray(prob, np.float32)
    if not 0 <= alpha <= 1 or not power >= 0:
        raise ValueError(f"file_boost needs alpha in [0, 1] and power >= 0, got alpha={alpha}, power={power}")
    if len(prob) == 0 or (alpha == 0 and power == 0):
        return prob.copy()
    p = prob.astype(np.float64)
    m = p.max(axis=0, keepdims=True)
    if alpha > 0:
        p = p * (1 - alpha) + alpha * m
    if power > 0:
        p = p * np.power(np.clip(m, 0, None), power)
    return p.astype(np.float32)


def _column(taxonomy: Any, column: str, step_name: str, n_classes: int) -> tuple[str, ...]:
    """One taxonomy column as stripped strings (missing values → ""), checked against the classes."""
    if taxonomy is None:
        raise ValueError(f"post-processing step {step_name!r} needs the taxonomy (Evidence.taxonomy: one row per "
                         "class, in the submission's label order); none was given")
    if column not in taxonomy:
        raise ValueError(f"post-processing step {step_name!r} needs the taxonomy column {column!r}; "
                         f"it has {list(taxonomy.keys())}")
    values = tuple("" if v is None or v != v else str(v).strip() for v in taxonomy[column])
    if len(values) != n_classes:
        raise ValueError(f"post-processing step {step_name!r}: the taxonomy has {len(values)} rows but the "
                         f"probabilities {n_classes} classes (it must be one row per class, in label order)")
    return values


def parse_taxon_kernels(entries: Sequence[str]) -> dict[str, tuple[float, ...]]:
    """``("Amphibia:0.1/0.2/0.4/0.2/0.1", "Insecta:0.25/0.5/0.25")`` → {class name (case-folded): kernel}.

    Each entry is ``ClassName:w1/w2/...`` (weights split by ``/``, spaces or commas), the kernel
    valid for :func:`smooth_windows`; a class name may be one no taxonomy has, but only once.
    """
    return dict(_parse_taxon_kernels(tuple(entries)))


@functools.lru_cache(maxsize=64)
def _parse_taxon_kernels(entries: tuple[str, ...]) -> tuple[tuple[str, tuple[float, ...]], ...]:
    out: dict[str, tuple[float, ...]] = {}
    for entry in entries:
        name, sep, weights = str(entry).partition(":")
        name = name.strip()
        if not sep or not name:
            raise ValueError(f"entry {entry!r} is not 'ClassName:w1/w2/w3' (separate a kernel's weights with '/'; "
                             "commas separate entries), e.g. Amphibia:0.25/0.5/0.25")
        try:
            kernel = tuple(float(w) for w in re.split(r"[/,\s]+", weights.strip()) if w)
        except ValueError:
            raise ValueError(f"entry {entry!r}: the weights are not numbers") from None
        try:
            check_kernel(kernel)
        except ValueError as err:
            raise ValueError(f"entry {entry!r}: {err}") from None
        if name.casefold() in out:
            raise ValueError(f"class name {name!r} has two kernels")
        out[name.casefold()] = kernel
    return tuple(out.items())


@functools.lru_cache(maxsize=16)
def _taxon_groups(class_names: tuple[str, ...], entries: tuple[str, ...]
                  ) -> tuple[tuple[np.ndarray, tuple[float, ...]], ...]:
    """(column indices of one class name, its kernel) for each kernel whose class name the taxonomy has."""
    names = np.array([c.casefold() for c in class_names], dtype=object)
    groups = []
    for name, kernel in _parse_taxon_kernels(entries):
        idx = np.flatnonzero(names == name)
        if len(idx):
            groups.append((idx, kernel))
    return tuple(groups)


@step("taxon_smoothing", fields=("taxon_smoothing_kernels",),
      summary="each window a weighted mean of its neighbours with a kernel per taxonomy class_name "
              "(wider for frogs and insects); other classes left as they are", evidence=("taxonomy",))
def _taxon_smoothing_step(prob: np.ndarray, config: Settings, evidence: Evidence) -> np.ndarray:
    prob = np.asarray(prob, np.float32)
    class_names = _column(evidence.taxonomy, "class_name", "taxon_smoothing", prob.shape[1])
    return taxon_smoothing(prob, class_names, config.taxon_smoothing_kernels)


def taxon_smoothing(prob: np.ndarray, class_names: Sequence[str], kernels: Sequence[str]) -> np.ndarray:
    """(n_windows, n_classes) → the same shape: the columns whose ``class_names`` entry (n_classes,)
    has a kernel in ``kernels`` (:func:`parse_taxon_kernels`; names match in any case) smoothed
    over time with it (:func:`smooth_windows`); every other column unchanged."""
    prob = np.asarray(prob, np.float32)
    out = prob.copy()
    for idx, kernel in _taxon_groups(tuple(class_names), tuple(kernels)):
        out[:, idx] = smooth_windows(prob[:, idx], kernel)
    return out


@functools.lru_cache(maxsize=16)
def _mates_matrix(groups: tuple[str, ...]) -> np.ndarray:
    """(n_classes, n_classes) float64 ``A``: ``(p @ A)[:, j]`` is the mean of ``p`` over the other classes
    of ``j``'s group, or ``p[:, j]`` itself when ``j`` is alone in it (an empty group name: alone)."""
    g = np.array(groups, dtype=object)
    same = (g[:, None] == g[None, :]) & (g[:, None] != "")
    np.fill_diagonal(same, False)
    mates = same.sum(axis=0)
    a = np.where(mates > 0, same / np.maximum(mates, 1), 0.0)
    a[np.diag_indices_from(a)] = (mates == 0).astype(np.float64)
    a.setflags(write=False)
    return a


_WARNED: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _WARNED:
        _WARNED.add(message)
        log.warning(message)


@step("genus_smoothing", fields=("genus_weight", "family_weight"),
      summary="each class takes a share of the mean of its genus-mates (and of its family-mates where the "
              "taxonomy has a family column); a class alone in its genus keeps its value", evidence=("taxonomy",))
def _genus_smoothing_step(prob: np.ndarray, config: Settings, evidence: Evidence) -> np.ndarray:
    prob = np.asarray(prob, np.float32)
    n = prob.shape[1]
    genera = tuple(name.split()[0] if name else "" for name in _column(evidence.taxonomy, "scientific_name",
                                                                      "genus_smoothing", n))
    families = None
    if config.family_weight > 0:
        if "family" in evidence.taxonomy:
            families = _column(evidence.taxonomy, "family", "genus_smoothing", n)
        else:
            _warn_once(f"genus_smoothing: family_weight={config.family_weight} but the taxonomy has no 'family' "
                       "column; only the genus share is used")
    return genus_smoothing(prob, genera, config.genus_weight, families, config.family_weight if families else 0.0)


def genus_smoothing(prob: np.ndarray, genera: Sequence[str], genus_weight: float,
                    families: Sequence[str] | None = None, family_weight: float = 0.0) -> np.ndarray:
    """(n_windows, n_classes) → the same shape:
    ``p' = (1 − w_g − w_f)·p + w_g·mean(p over the genus's other classes) + w_f·mean(over the family's)``.

    ``genera``, ``families``: (n_classes,) group names (``families`` None: no family share); the
    family's other classes include the genus-mates. A group term of a class alone in its group is
    the class's own value, so a class alone in its genus (and family) keeps its value exactly.
    Weights ≥ 0 with ``w_g + w_f ≤ 1``; both 0: the input unchanged.
    """
    prob = np.asarray(prob, np.float32)
    if families is None:
        family_weight = 0.0
    if genus_weight < 0 or family_weight < 0 or genus_weight + family_weight > 1:
        raise ValueError(f"genus_smoothing needs weights >= 0 with genus_weight + family_weight <= 1, "
                         f"got {genus_weight}, {family_weight}")
    p = prob.astype(np.float64)
    out = p.copy()
    if genus_weight > 0:
        out += genus_weight * (p @ _mates_matrix(tuple(genera)) - p)
    if family_weight > 0:
        out += family_weight * (p @ _mates_matrix(tuple(families)) - p)
    return out.astype(np.float32)


def zero_shot_weights(config: Settings, metas: Sequence[ChosenWeights], mapped: np.ndarray) -> np.ndarray:
    """(n_classes,) blend weights: ``config.zero_shot_weight`` for every mapped class when it is a
    number, else the mean of the weights the heads (``metas``: their metadata or the members)
    chose on validation (members without zero-shot weights are left out; with none, the blend is
    off). Unmapped classes get 0."""
    mapped = np.asarray(mapped, bool)
    if config.zero_shot_weight is not None:
        return np.where(mapped, float(config.zero_shot_weight), 0.0)
    chosen = [np.asarray(m.zero_shot_weights, np.float64) for m in metas if len(m.zero_shot_weights) == len(mapped)]
    if not chosen:
        return np.zeros(len(mapped))
    return np.where(mapped, np.mean(chosen, axis=0), 0.0)
