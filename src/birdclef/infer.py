"""Inference: test soundscapes → their embeddings (cached) → one probability row per submission window."""
from __future__ import annotations

import logging
import warnings
from pathlib import Path
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from birdclef import audio
from birdclef.config import Config
from birdclef.embeddings import Embedded, extract, frames_in, init_worker_process, n_windows, pool_segments
from birdclef.errors import AudioError, BirdclefError
from birdclef.model import HeadMeta, MLPHead, predict
from birdclef.postprocess import Evidence, average, rank_average, run_chain
from birdclef.priors import prior_shift
from birdclef.progress import tqdm

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
    prob = average([head_windows(e, m, meta, config) for e, (m, meta) in zip(embedded, heads)])
    return finish_windows(prob, config, zero_shot=zero_shot, prior=prior)


def head_windows(e: Embedded, model: MLPHead, meta: HeadMeta, config: Config) -> np.ndarray:
    """One MLP head's (n_windows, n_classes) probabilities of a soundscape, test-time shifts averaged."""
    return predict_windows(e, model, meta, window_s=config.window_s, shifts_s=config.tta_shifts_s,
                           pool=config.window_pool)


def finish_windows(prob: np.ndarray, config: Config, *, zero_shot: tuple[np.ndarray, np.ndarray] | None = None,
                   prior: np.ndarray | None = None) -> np.ndarray:
    """The post-processing after the ensemble: the chain ``config.postprocess`` (default zero-shot
    blend → site / hour prior → smoothing, :func:`birdclef.postprocess.run_chain`)."""
    evidence = Evidence(zero_shot_logits=None if zero_shot is None else zero_shot[0],
                        zero_shot_weights=None if zero_shot is None else zero_shot[1], prior_shift=prior)
    return run_chain(prob, config, evidence)


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


def prior_windows(member: "Member | HeadMeta", count: int) -> np.ndarray:
    """(count, n_classes) rows of an ensemble member's training prior: a SED run's, or a head's
    (uniform when the head saved none)."""
    if isinstance(member, SedMember):
        prior = np.asarray(member.prior, np.float32)
    else:
        meta = member if isinstance(member, HeadMeta) else member[1]
        n = len(meta.labels)
        prior = np.asarray(meta.prior, np.float32) if len(meta.prior) == n else np.full(n, 1.0 / n, np.float32)
    return np.repeat(prior[None], count, axis=0)


def _duration_or_fallback(path: Path) -> float:
    try:
        return audio.audio_info(path).duration_s
    except AudioError:
        return FALLBACK_DURATION_S


@dataclass(frozen=True)
class SedMember:
    """An ensemble member from the SED family (:mod:`birdclef.sed`): its exported model, run per file."""

    path: Path
    predict: Callable[[Path], np.ndarray]  # a soundscape → (n_windows, n_classes) probabilities
    prior: np.ndarray  # (n_classes,) training class frequencies: an unreadable soundscape's rows
    engine: str = "onnxruntime"  # what runs it (birdclef.sed.run): worker processes open their own


_SED_WORKER: dict = {}
SED_MIN_FILES_PER_WORKER = 4  # below this, starting interpreters costs more than it saves


def _sed_worker_init(runs: list[tuple[str, str]]) -> None:
    """Each worker opens every SED run once, one thread each (workers × threads never exceed the cores)."""
    from birdclef.sed.run import load_run, open_exported

    init_worker_process()
    _SED_WORKER["predict"] = [load_run(p).predictor("torch") if engine == "torch" else
                              open_exported(p, engine=engine, threads=1).predict for p, engine in runs]


def _sed_worker_predict(path: str) -> tuple[str, list[np.ndarray] | str]:
    try:
        return path, [predict(Path(path)) for predict in _SED_WORKER["predict"]]
    except (AudioError, BirdclefError, OSError, ValueError) as err:
        return path, str(err)


def sed_predictions(files: Sequence[Path], members: Sequence[SedMember], n_workers: int = 0
                    ) -> dict[str, list[np.ndarray] | str]:
    """{str(file): [(n_windows, n_classes) per SED member] or the reason it failed}. With more than
    one worker (``n_workers``, 0 = one per core) the files are spread over spawned processes, one
    thread each, every worker holding its own sessions; else they run here in turn."""
    import os

    workers = min(n_workers or os.cpu_count() or 1, len(files) // SED_MIN_FILES_PER_WORKER)
    out: dict[str, list[np.ndarray] | str] = {}
    bar = tqdm(total=len(files), desc=f"test soundscapes ({len(members)} SED model{'s' if len(members) > 1 else ''})",
               unit="file", mininterval=1.0, disable=len(files) < 2)
    if workers > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        runs = [(str(m.path), m.engine) for m in members]
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_sed_worker_init,
                                 initargs=(runs,)) as pool:
            for path, result in pool.map(_sed_worker_predict, [str(f) for f in files]):
                out[path] = result
                bar.update()
    else:
        for f in files:
            try:
                out[str(f)] = [m.predict(f) for m in members]
            except (AudioError, BirdclefError, OSError, ValueError) as err:
                out[str(f)] = str(err)
            bar.update()
    bar.close()
    return out


Member = tuple[MLPHead, HeadMeta, Config] | SedMember


def predict_files(
    files: Sequence[Path], members: Sequence[Member], config: Config, labels: list[str],
    *, zero_shot=None, weights: np.ndarray | None = None, site_prior: pd.DataFrame | None = None,
) -> tuple[dict[str, np.ndarray], list[dict]]:
    """Every soundscape of ``files`` → ({stem: (n_windows, n_classes)}, fallbacks).

    ``members``: an MLP head (head, its meta, the config it embeds under) or a :class:`SedMember`
    each. Files are embedded once per embedding setting of the MLP members (cached; no VAD pass:
    every window is predicted); when the first member is an MLP head its backbone also stores
    ``zero_shot``'s logits (whatever the weights, so a later run with another weight reads them
    from the cache), blended where ``weights`` > 0. ``config.ensemble_blend``: "mean" averages the
    members' probabilities (``ensemble_weights``) before the post-processing (:func:`finish_windows`);
    "rank" post-processes each member alone (the zero-shot blend only for MLP heads) and averages
    per-class ranks over every window of every file (:func:`birdclef.postprocess.rank_average`).
    An unreadable file gets the training prior in every window and a row in fallbacks (path,
    reason), with a warning; with ``config.strict`` it raises instead.
    """
    by_key: dict[str, tuple[dict, pd.DataFrame]] = {}
    for i, m in enumerate(members):
        if isinstance(m, SedMember) or m[1].embedding_key in by_key:
            continue
        by_key[m[1].embedding_key] = extract(
            files, config=m[2], desc=f"test soundscapes ({m[2].backbone})", need_speech=False,
            score_columns=zero_shot.score_columns if zero_shot is not None and i == 0 else None)
    blend = (zero_shot is not None and weights is not None and bool((np.asarray(weights) > 0).any())
             and not isinstance(members[0], SedMember))
    rank = config.ensemble_blend == "rank" and len(members) > 1
    sed_members = [m for m in members if isinstance(m, SedMember)]
    sed_out = sed_predictions(files, sed_members, config.n_workers) if sed_members else {}
    per_member: list[dict[str, np.ndarray]] = [{} for _ in members]
    probs: dict[str, np.ndarray] = {}
    fallbacks = []
    for f in files:
        member_probs, reason, k = [], None, 0
        for m in members:
            if isinstance(m, SedMember):
                got = sed_out[str(f)]
                if isinstance(got, str):
                    reason = f"SED model: {got}"
                    break
                member_probs.append(got[k])
                k += 1
                continue
            e = by_key[m[1].embedding_key][0].get(str(f))
            if e is None:
                report = by_key[m[1].embedding_key][1]
                reason = report.loc[report["path"] == str(f), "reason"].iloc[0]
                break
            member_probs.append(head_windows(e, m[0], m[1], config))
        if reason is not None:
            if config.strict:
                raise BirdclefError(f"{f}: unreadable test soundscape ({reason}) and strict=True")
            warnings.warn(f"{f.name}: unreadable ({reason}); writing prior probabilities", stacklevel=3)
            fallbacks.append({"path": str(f), "reason": reason})
            probs[f.stem] = prior_windows(members[0], n_windows(_duration_or_fallback(f), config.window_s))
            for store in per_member:
                store[f.stem] = probs[f.stem]
            continue
        zs = None
        if blend:
            first = by_key[members[0][1].embedding_key][0][str(f)]
            zs = (zero_shot.window_logits(first, config.window_s), weights)
        prior = None if site_prior is None else prior_shift(site_prior, f, labels)
        if rank:
            for store, m, p in zip(per_member, members, member_probs):
                store[f.stem] = finish_windows(p, config, zero_shot=None if isinstance(m, SedMember) else zs,
                                               prior=prior)
        else:
            probs[f.stem] = finish_windows(average(member_probs, config.ensemble_weights), config,
                                           zero_shot=zs, prior=prior)
    if rank and per_member[0]:
        stems = list(per_member[0])
        blended = rank_average([np.concatenate([store[s] for s in stems]) for store in per_member],
                               config.ensemble_weights)
        edges = np.cumsum([0] + [len(per_member[0][s]) for s in stems])
        probs = {s: blended[a:b] for s, a, b in zip(stems, edges[:-1], edges[1:])}
    return probs, fallbacks
