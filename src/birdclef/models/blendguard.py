"""The blend's guard: the finished default is not knowingly below the backbone it starts from (issue 31).

After training, the validation soundscapes (:mod:`birdclef.models.valsoundscapes`, mixed from the
validation fold's recordings like the test's) are scored three ways on the classes the backbone knows
(mapped, with a scored positive and negative window): the backbone's own logits alone, nothing else;
the finished default, the head blended with the backbone by the chosen weights and then the
submission's post-processing chain; and the backbone's weights (1) through that same chain. Where the weights were chosen on these very windows (``val_select="soundscapes"``)
the finished score is cross-fitted: the files are dealt into two seeded halves and each half is
finished with the weights the other half chose. With ``val_select="labelled"`` the weights were chosen on
the focal recordings and labelled windows; the validation soundscapes are mixed from those same
recordings (other stretches, over a bed, faint), so that check is out of those rows but not of those
recordings. The noise of each paired difference is its standard deviation over bootstrap resamples of the files (a file's windows stay together: neighbouring windows
share calls). Where the finished default is below the backbone by more than ``blend_guard_sd`` such
standard deviations and the same chain with the backbone's weights (1 for every mapped class) finishes
higher, or where those weights through the chain beat the chosen ones by more than their own noise, the
run falls back to the backbone's weights; where the chain after the blend is what costs, a fallback would
not recover it, and the guard says so instead. Either way ``metrics.json`` records it
(:meth:`GuardResult.metrics`).
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from birdclef.config import Config
from birdclef.data.metric import masked_auc_columns
from birdclef.models.valsoundscapes import ValSoundscapes, finished

log = logging.getLogger(__name__)
BOOTSTRAP = 200  # resamples of the files for the noise of the paired difference


@dataclass(frozen=True)
class GuardResult:
    """What the guard measured on the mapped classes of the validation soundscapes (macro ROC-AUC)."""

    backbone_auc: float  # the backbone's logits alone, nothing else (the reference of issue 31)
    backbone_finished_auc: float  # the backbone's weights (1 on every mapped class) through the same chain
    finished_auc: float  # the finished default: the chosen weights (cross-fitted where due), then the chain
    noise: float  # sd of (finished − backbone alone) over bootstrap resamples of the files; inf with < 2 files
    noise_finished: float  # the same for (finished − backbone's weights through the chain)
    below: bool  # the finished default is below the backbone alone by more than sd_limit × noise
    fallback: bool  # the run falls back to the backbone's weights (see :func:`check`)
    sd_limit: float
    n_classes: int  # mapped classes with a scored positive
    n_files: int
    crossfit: bool

    def metrics(self) -> dict:
        """The fields ``metrics.json`` records."""
        def num(x: float) -> float | None:
            return float(x) if np.isfinite(x) else None

        return {"guard_backbone_auc": self.backbone_auc, "guard_backbone_finished_auc": self.backbone_finished_auc,
                "guard_finished_auc": self.finished_auc, "guard_noise": num(self.noise),
                "guard_noise_finished": num(self.noise_finished), "guard_below": self.below,
                "guard_fallback": self.fallback, "guard_sd_limit": self.sd_limit, "guard_classes": self.n_classes,
                "guard_files": self.n_files, "guard_crossfit": self.crossfit}

    def sentence(self) -> str:
        """One line for the training log (:func:`describe` of :meth:`metrics`)."""
        return describe(self.metrics())


def describe(metrics: dict) -> str:
    """What the guard did, in words, from a run's ``metrics.json`` (03_train shows it); "" where it did not run."""
    if "guard_fallback" not in metrics:
        return ""
    m = metrics

    def sd(key: str) -> str:
        return "n/a" if m[key] is None else f"{m[key]:.3f}"

    head = (f"blend guard on {m['guard_classes']} mapped classes of {m['guard_files']} validation soundscapes: finished "
            f"default {m['guard_finished_auc']:.3f}{' (cross-fitted)' if m['guard_crossfit'] else ''} vs the backbone "
            f"alone {m['guard_backbone_auc']:.3f} (noise sd {sd('guard_noise')}) and the backbone's weights through the "
            f"same post-processing {m['guard_backbone_finished_auc']:.3f} (noise sd {sd('guard_noise_finished')}); ")
    if m["guard_fallback"]:
        return head + "the blend was below by more than its noise: fell back to the backbone's weights (1 on every mapped class)"
    if m["guard_below"]:
        return head + ("below the backbone alone, but its weights finish no higher (the post-processing costs, not the "
                       "blend): kept the chosen blend")
    return head + "not below by more than its noise: kept the chosen blend"


def _mean_auc(truth: np.ndarray, score: np.ndarray) -> float:
    auc = masked_auc_columns(truth, score)
    return float(np.nanmean(auc)) if np.isfinite(auc).any() else float("nan")


def backbone_weights(mapped: np.ndarray) -> np.ndarray:
    """(n_classes,) the fallback: weight 1 (the backbone's logit) on every mapped class, 0 elsewhere."""
    return np.where(np.asarray(mapped, bool), 1.0, 0.0)


def check(val: ValSoundscapes, prob: np.ndarray, weights: np.ndarray, mapped: np.ndarray, config: Config, *,
          choose: Callable[[np.ndarray], np.ndarray] | None = None, seed: int = 0,
          n_boot: int | None = None) -> GuardResult | None:
    """The guard on validation soundscapes ``val`` → :class:`GuardResult`; None (logged) where it cannot
    measure (no backbone logits, no mapped class with a scored positive) or ``config.blend_guard`` is off.

    ``prob``: (n_windows, n_classes) the head's probabilities on ``val``; ``weights``: (n_classes,) the
    chosen blend weights; ``mapped``: (n_classes,) bool. ``choose``: where the weights were chosen on these
    windows, a function from a (n_windows,) bool mask of the windows to choose on → (n_classes,) weights
    (the same choice, on those windows only): the finished score is then cross-fitted over two seeded halves
    of the files. None: ``weights`` were chosen elsewhere, and every file is finished with them."""
    if not config.blend_guard:
        return None
    n_boot = BOOTSTRAP if n_boot is None else n_boot
    mapped = np.asarray(mapped, bool)
    truth = np.asarray(val.truth, np.float64)
    if val.zero_shot is None or not mapped.any():
        log.info("blend guard: no backbone logits on the validation soundscapes; not run")
        return None
    scored = ~np.isnan(truth)
    both = (scored & (truth > 0.5)).any(axis=0) & (scored & (truth <= 0.5)).any(axis=0)  # an AUC is defined
    cols = np.flatnonzero(both & mapped)
    if not len(cols):
        log.warning("blend guard: no mapped class has both a positive and a negative window in the validation "
                    "soundscapes; not run")
        return None
    counts = np.asarray(val.counts, int)
    edges = np.cumsum([0, *counts])
    file_of = np.repeat(np.arange(len(counts)), counts)
    zs = np.asarray(val.zero_shot, np.float64)
    prob = np.asarray(prob, np.float64)

    def finish(files: np.ndarray, w: np.ndarray) -> np.ndarray:
        rows = np.concatenate([np.arange(edges[f], edges[f + 1]) for f in files]) if len(files) else np.zeros(0, int)
        return finished(prob[rows], counts[files], config, zero_shot=zs[rows], weights=w, mapped=mapped)

    files = np.arange(len(counts))
    done = np.zeros_like(prob)
    crossfit = choose is not None and len(counts) >= 2
    if crossfit:
        half = np.random.default_rng(seed).permutation(len(counts)) % 2
        for h in (0, 1):
            out = files[half == h]
            rows = np.concatenate([np.arange(edges[f], edges[f + 1]) for f in out])
            done[rows] = finish(out, np.asarray(choose(half[file_of] != h), np.float64))
    else:
        done = finish(files, np.asarray(weights, np.float64))
    backbone = 1 / (1 + np.exp(-np.clip(zs, -30, 30)))
    fallback_done = finish(files, backbone_weights(mapped))
    t = truth[:, cols]
    scores = {"finished": done[:, cols], "backbone": backbone[:, cols], "backbone_finished": fallback_done[:, cols]}
    auc = {k: _mean_auc(t, v) for k, v in scores.items()}
    noise = {"backbone": float("inf"), "backbone_finished": float("inf")}
    if len(counts) >= 2:
        rng = np.random.default_rng(10_000 + seed)
        diffs: dict[str, list[float]] = {k: [] for k in noise}
        for _ in range(n_boot):  # files resampled with replacement, a file's windows together
            pick = rng.integers(0, len(counts), len(counts))
            rows = np.concatenate([np.arange(edges[f], edges[f + 1]) for f in pick])
            per_class = {k: masked_auc_columns(t[rows], v[rows]) for k, v in scores.items()}
            for k in noise:
                both = np.isfinite(per_class["finished"]) & np.isfinite(per_class[k])
                if both.any():
                    diffs[k].append(float(np.mean(per_class["finished"][both] - per_class[k][both])))
        noise = {k: float(np.std(d, ddof=1)) if len(d) >= 2 else float("inf") for k, d in diffs.items()}
    limit = float(config.blend_guard_sd)

    def beaten_by(k: str) -> bool:
        return bool(np.isfinite(noise[k]) and auc[k] - auc["finished"] > limit * noise[k])

    below = beaten_by("backbone")
    # the fallback changes only the blend: it is taken where the backbone's weights through the same chain beat the
    # chosen ones beyond their noise, or where the finished default is below the backbone alone and those weights
    # finish higher (where the chain after the blend is what costs, they would not recover it)
    fallback = beaten_by("backbone_finished") or (below and auc["backbone_finished"] > auc["finished"])
    result = GuardResult(auc["backbone"], auc["backbone_finished"], auc["finished"], noise["backbone"],
                         noise["backbone_finished"], below, fallback, limit, len(cols), len(counts), crossfit)
    (log.warning if fallback else log.info)("%s", result.sentence())
    return result
