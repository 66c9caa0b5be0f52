"""Inference: test soundscapes → their embeddings (cached) → one probability row per submission window."""
from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from birdclef import audio
from birdclef.config import Config
from birdclef.embeddings import Embedded, extract, frames_in, n_windows, pool_segments
from birdclef.errors import AudioError, BirdclefError
from birdclef.model import HeadMeta, MLPHead, predict
from birdclef.postprocess import average, blend_logits, smooth_windows
from birdclef.priors import apply_shift, prior_shift

log = logging.getLogger(__name__)
FALLBACK_DURATION_S = 60.0  # assumed length of a soundscape whose header cannot be read


def predict_windows(
    e: Embedded, model: MLPHead, meta: HeadMeta, *, window_s: float = 5.0, shifts_s: Sequence[float] = (0.0,),
    pool: str = "mean",
) -> np.ndarray:
    """(n_windows(duration), n_classes) probabilities.

    Each window's frames are cut into the head's segments (``meta.segment_frames`` frames,
    as in training); segment probabilities are averaged over the window (``pool="max"``: their
    maximum, so a call in one second of the window counts fully). Each test-time shift
    ``s`` scores the window moved by ``s`` seconds (frames starting in [start + s, end + s),
    clipped to the soundscape); the shifts' probabilities are averaged.
    """
    count = n_windows(e.duration_s, window_s)
    segments, owner = [], []
    for k, shift in enumerate(shifts_s):
        for w in range(count):
            idx = frames_in(e, w * window_s + shift, (w + 1) * window_s + shift)
            if len(idx) == 0:  # a window past the last frame start (or shifted off the start): the nearest frame
                idx = np.array([0 if (w + 1) * window_s + shift <= 0 else len(e.starts_s) - 1])
            segs = pool_segments(e, idx, meta.segment_frames)
            segments.append(segs)
            owner.extend([k * count + w] * len(segs))
    prob = predict(model, meta, np.concatenate(segments))
    owner_arr = np.asarray(owner)
    n = len(shifts_s) * count
    if pool == "max":
        pooled = np.zeros((n, prob.shape[1]), np.float64)
        np.maximum.at(pooled, owner_arr, prob)
    elif pool == "mean":
        pooled = np.zeros((n, prob.shape[1]), np.float64)
        np.add.at(pooled, owner_arr, prob)
        pooled /= np.bincount(owner_arr, minlength=n)[:, None]
    else:
        raise ValueError(f"unknown pool {pool!r}; known: 'mean', 'max'")
    # per (shift, window) pooled over its segments, then averaged over the shifts
    return pooled.reshape(len(shifts_s), count, -1).mean(axis=0).astype(np.float32)


def soundscape_probabilities(
    embedded: Sequence[Embedded], heads: Sequence[tuple[MLPHead, HeadMeta]], config: Config,
    *, zero_shot: tuple[np.ndarray, np.ndarray] | None = None, prior: np.ndarray | None = None,
) -> np.ndarray:
    """One soundscape → (n_windows, n_classes) after every post-processing step of ``config``.

    ``embedded[i]`` is the soundscape under head ``i``'s embedding settings (ensemble members
    may use different backbones). Steps: each head with the test-time shifts
    (``tta_shifts_s``) → mean over heads → blend with the backbone's zero-shot scores
    ``zero_shot = (logits (n_windows, n_classes), weights (n_classes,))``, see
    :func:`zero_shot_weights`) → the site / hour prior ``prior`` ((n_classes,) logit shift,
    :func:`birdclef.priors.prior_shift`) × ``site_prior_weight`` → smoothing across neighbouring
    windows (``smoothing_kernel``).
    """
    if len(embedded) != len(heads) or not heads:
        raise ValueError(f"{len(embedded)} embeddings for {len(heads)} heads")
    prob = average([predict_windows(e, m, meta, window_s=config.window_s, shifts_s=config.tta_shifts_s,
                                    pool=config.window_pool)
                    for e, (m, meta) in zip(embedded, heads)])
    if zero_shot is not None:
        prob = blend_logits(prob, zero_shot[0], zero_shot[1])
    if prior is not None:
        prob = apply_shift(prob, prior, config.site_prior_weight)
    return smooth_windows(prob, config.smoothing_kernel)


def zero_shot_weights(config: Config, metas: Sequence[HeadMeta], mapped: np.ndarray) -> np.ndarray:
    """(n_classes,) blend weights: ``config.zero_shot_weight`` for every mapped class when it is a
    number, else the mean of the weights the heads chose on validation (heads trained without
    zero-shot scores are left out; with none, the blend is off). Unmapped classes get 0."""
    mapped = np.asarray(mapped, bool)
    if config.zero_shot_weight is not None:
        return np.where(mapped, float(config.zero_shot_weight), 0.0)
    chosen = [np.asarray(m.zero_shot_weights, np.float64) for m in metas if len(m.zero_shot_weights) == len(mapped)]
    if not chosen:
        return np.zeros(len(mapped))
    return np.where(mapped, np.mean(chosen, axis=0), 0.0)


def prior_windows(meta: HeadMeta, count: int) -> np.ndarray:
    """(count, n_classes) rows of the training prior (uniform when no prior was saved)."""
    n = len(meta.labels)
    prior = np.asarray(meta.prior, np.float32) if len(meta.prior) == n else np.full(n, 1.0 / n, np.float32)
    return np.repeat(prior[None], count, axis=0)


def _duration_or_fallback(path: Path) -> float:
    try:
        return audio.audio_info(path).duration_s
    except AudioError:
        return FALLBACK_DURATION_S


def predict_files(
    files: Sequence[Path], members: Sequence[tuple[MLPHead, HeadMeta, Config]], config: Config, labels: list[str],
    *, zero_shot=None, weights: np.ndarray | None = None, site_prior: pd.DataFrame | None = None,
) -> tuple[dict[str, np.ndarray], list[dict]]:
    """Every soundscape of ``files`` → ({stem: (n_windows, n_classes)}, fallbacks).

    ``members``: (head, its meta, the config it embeds under) per ensemble member; files are
    embedded once per embedding setting (cached; no VAD pass: every window is predicted), the
    first member's backbone also storing ``zero_shot``'s logits (whatever the weights, so a later
    run with another weight reads them from the cache), blended where ``weights`` > 0. An
    unreadable file gets the training prior in every window and a row in fallbacks (path,
    reason), with a warning; with ``config.strict`` it raises instead.
    """
    by_key: dict[str, tuple[dict, pd.DataFrame]] = {}
    for i, (_, m_meta, member) in enumerate(members):
        if m_meta.embedding_key not in by_key:
            by_key[m_meta.embedding_key] = extract(
                files, config=member, desc=f"test soundscapes ({member.backbone})", need_speech=False,
                score_columns=zero_shot.score_columns if zero_shot is not None and i == 0 else None)
    heads = [(m, m_meta) for m, m_meta, _ in members]
    blend = zero_shot is not None and weights is not None and bool((np.asarray(weights) > 0).any())
    probs: dict[str, np.ndarray] = {}
    fallbacks = []
    for f in files:
        embedded = [by_key[m_meta.embedding_key][0].get(str(f)) for _, m_meta, _ in members]
        if any(e is None for e in embedded):
            report = next(rep for emb, rep in by_key.values() if str(f) not in emb)
            reason = report.loc[report["path"] == str(f), "reason"].iloc[0]
            if config.strict:
                raise BirdclefError(f"{f}: unreadable test soundscape ({reason}) and strict=True")
            warnings.warn(f"{f.name}: unreadable ({reason}); writing prior probabilities", stacklevel=3)
            fallbacks.append({"path": str(f), "reason": reason})
            probs[f.stem] = prior_windows(heads[0][1], n_windows(_duration_or_fallback(f), config.window_s))
            continue
        zs = (zero_shot.window_logits(embedded[0], config.window_s), weights) if blend else None
        prior = None if site_prior is None else prior_shift(site_prior, f, labels)
        probs[f.stem] = soundscape_probabilities(embedded, heads, config, zero_shot=zs, prior=prior)
    return probs, fallbacks
