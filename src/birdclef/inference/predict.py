"""Inference: test soundscapes → their embeddings (cached) → one probability row per submission window."""
from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from birdclef.config import Config
from birdclef.data import audio
from birdclef.data.competition import n_windows
from birdclef.errors import AudioError, BirdclefError
from birdclef.family import Member, family, uniform_or
from birdclef.features.zeroshot import ZeroShot
from birdclef.models.head import HeadMeta
from birdclef.postprocess import (RankReference, average, finish_windows, needs, rank_average, rank_reference,
                                  split_chain)
from birdclef.postprocess.priors import prior_shift

log = logging.getLogger(__name__)
FALLBACK_DURATION_S = 60.0  # assumed length of a soundscape whose header cannot be read


def prior_windows(member: Member | HeadMeta, count: int) -> np.ndarray:
    """(count, n_classes) rows of an ensemble member's training prior (a head's meta: uniform when
    the head saved none)."""
    if isinstance(member, HeadMeta):
        return np.repeat(uniform_or(member.prior, len(member.labels))[None], count, axis=0)
    return member.prior_windows(count)


def _duration_or_fallback(path: Path) -> float:
    try:
        return audio.audio_info(path).duration_s
    except AudioError:
        return FALLBACK_DURATION_S


def predict_files(
    files: Sequence[Path], members: Sequence[Member], config: Config, labels: list[str],
    *, zero_shot: Sequence[ZeroShot | None] | None = None, weights: Sequence[np.ndarray | None] | None = None,
    site_prior: pd.DataFrame | None = None, taxonomy: pd.DataFrame | None = None, context: object = None,
) -> tuple[dict[str, np.ndarray], list[dict]]:
    """Every soundscape of ``files`` → ({stem: (n_windows, n_classes)}, fallbacks).

    ``members``: trained runs of any model family (:mod:`birdclef.family`); each family predicts
    its members' windows (:meth:`~birdclef.family.ModelFamily.predict`). ``zero_shot[i]``,
    ``weights[i]``: member ``i``'s own backbone scores and their blend weights (None: no blend for
    it), so every member blends with its own backbone. ``config.ensemble_blend``: "mean" runs each
    member alone through the chain up to its blend (:func:`birdclef.postprocess.split_chain`),
    averages them (``ensemble_weights``), and runs the rest of the chain on the mean; "rank"
    post-processes each member alone and averages per-class ranks over every window of every file
    (:func:`birdclef.postprocess.rank_average`). An unreadable file gets the first member's training
    prior in every window and a row in fallbacks (path, reason), with a warning; with
    ``config.strict`` it raises instead. ``taxonomy``: for the post-processing steps that read it.
    ``config.time_budget_min``: the files time would not allow go to the fastest member alone,
    those past the budget get the prior (:func:`run_members`). ``rank_blend`` ranks each member's windows
    within every readable file (:func:`rank_references`); the ``context`` step applies ``context`` (a
    :class:`birdclef.models.context.ContextModel`: the submission loads the first model folder's).
    """
    n = len(members)
    zero_shot = list(zero_shot) if zero_shot is not None else [None] * n
    weights = list(weights) if weights is not None else [None] * n
    if len(zero_shot) != n or len(weights) != n:
        raise ValueError(f"{n} members need one zero-shot mapping and one weight vector each, "
                         f"got {len(zero_shot)} and {len(weights)}")
    # a member blends when it takes the blend, has its backbone's scores and a positive weight somewhere (or the
    # chain's rank blend needs its scores: then weights 0 where it has none, so the logit blend changes nothing)
    rank_blends = "rank_blend" in config.postprocess
    blends = [m.blends_zero_shot and zs is not None and
              (rank_blends or (w is not None and bool((np.asarray(w) > 0).any())))
              for m, zs, w in zip(members, zero_shot, weights)]
    weights = [np.zeros(len(labels)) if w is None else w for w in weights]
    if needs(config, "context") and context is None:
        raise BirdclefError("postprocess ends with 'context' but predict_files was given no context model: load one "
                            "with birdclef.models.context.load_context(ModelFolder(model_dir)) (run_submission does)")
    outputs, timing = run_members(files, members, config, zero_shot,
                                  budget_s=None if config.time_budget_min is None else 60 * config.time_budget_min)
    rank = config.ensemble_blend == "rank" and n > 1
    alone, together = split_chain(config)
    per_member: list[dict[str, np.ndarray]] = [{} for _ in members]
    probs: dict[str, np.ndarray] = {}
    fallbacks = []
    readable = []  # (file, each member's Output, each member's zero-shot evidence, the prior shift)
    for f in files:
        # a file left to the fastest member when time ran short: its output stands in for the others'
        fast = outputs[timing.fastest].get(str(f), f"time budget of {config.time_budget_min} min spent")
        got = [out.get(str(f), fast) for out in outputs]
        reason = next((g for g in got if isinstance(g, str)), None)
        if reason is not None:
            if config.strict:
                raise BirdclefError(f"{f}: unreadable test soundscape ({reason}) and strict=True")
            warnings.warn(f"{f.name}: unreadable ({reason}); writing prior probabilities", stacklevel=3)
            fallbacks.append({"path": str(f), "reason": reason})
            probs[f.stem] = prior_windows(members[0], n_windows(_duration_or_fallback(f), config.window_s))
            for store in per_member:
                store[f.stem] = probs[f.stem]
            continue
        zs = [(g.zero_shot_logits, w) if b else None for g, w, b in zip(got, weights, blends)]
        readable.append((f, got, zs, None if site_prior is None else prior_shift(site_prior, f, labels)))
    references = rank_references(readable, zero_shot, config, taxonomy) if rank_blends else [None] * n
    for f, got, zs, prior in readable:
        if rank:
            for store, g, z, ref in zip(per_member, got, zs, references):
                store[f.stem] = finish_windows(g.prob, config, zero_shot=z, prior=prior, taxonomy=taxonomy,
                                               rank_reference=ref, context=context)
        else:
            each = [finish_windows(g.prob, config, zero_shot=z, prior=prior, taxonomy=taxonomy, steps=alone,
                                   rank_reference=ref) for g, z, ref in zip(got, zs, references)]
            probs[f.stem] = finish_windows(average(each, config.ensemble_weights), config, prior=prior,
                                           taxonomy=taxonomy, steps=together, context=context)
    if rank and per_member[0]:
        stems = list(per_member[0])
        blended = rank_average([np.concatenate([store[s] for s in stems]) for store in per_member],
                               config.ensemble_weights)
        edges = np.cumsum([0] + [len(per_member[0][s]) for s in stems])
        probs = {s: blended[a:b] for s, a, b in zip(stems, edges[:-1], edges[1:])}
    # in the files' order (an unreadable file's prior rows were stored before the readable ones' finished)
    return {f.stem: probs[f.stem] for f in files}, fallbacks, timing


def rank_references(readable: Sequence[tuple], zero_shot: Sequence[ZeroShot | None], config: Config,
                    taxonomy: pd.DataFrame | None) -> list[RankReference | None]:
    """Per member, every readable file's windows where ``rank_blend`` runs (the chain's steps before it)
    and its backbone's logits (:func:`birdclef.postprocess.rank_reference`): the rank blend ranks
    within the whole test set although the chain sees one file at a time. None for a member without
    backbone scores. ``readable``: (file, outputs, zero-shot evidence, prior shift) per file."""
    before = tuple(config.postprocess[:list(config.postprocess).index("rank_blend")])
    out: list[RankReference | None] = []
    for i, zs in enumerate(zero_shot):
        if zs is None or not readable or readable[0][2][i] is None:
            out.append(None)
            continue
        heads = [finish_windows(got[i].prob, config, zero_shot=z[i], prior=prior, taxonomy=taxonomy, steps=before)
                 for _, got, z, prior in readable]
        out.append(rank_reference(heads, [z[i][0] for _, _, z, _ in readable], zs.mapped))
    return out


@dataclass(frozen=True)
class Timing:
    """How long each member took, and which files time left to fewer of them."""

    seconds: tuple[float, ...]  # per member, seconds spent predicting (a family's members share their time)
    files: tuple[int, ...]  # per member, files it predicted
    fastest: int  # the member with the fewest seconds per file (the one a short budget falls back to)
    fastest_only: tuple[str, ...] = ()  # files only the fastest member predicted (the budget ran short)
    unscored: tuple[str, ...] = ()  # files no member predicted (the budget was spent)

    def seconds_per_file(self) -> list[float | None]:
        return [s / n if n else None for s, n in zip(self.seconds, self.files)]


BUDGET_CHUNKS = 10  # with a time budget, files go in this many chunks, the budget checked after each
BUDGET_MIN_CHUNK = 16  # … of at least this many files (each chunk starts the members' worker processes)


def run_members(files: Sequence[Path], members: Sequence[Member], config: Config,
                zero_shot: Sequence[ZeroShot | None], *, budget_s: float | None = None) -> tuple[list[dict], Timing]:
    """Each family predicts its members' files → ([{str(file): Output or reason} per member], timing).

    Without ``budget_s`` every family sees every file at once. With it, files go in chunks with the
    elapsed time printed after each; when the members' speed so far says the rest would not be done
    within ``budget_s`` seconds, the rest go to the fastest member alone (a warning says how many),
    and once ``budget_s`` is spent no further file is predicted (its rows get the prior).
    """
    n = len(members)
    by_family: dict[str, list[int]] = {}
    for i, m in enumerate(members):
        by_family.setdefault(m.family, []).append(i)
    outputs: list[dict] = [{} for _ in members]
    seconds, counts = np.zeros(n), np.zeros(n, np.int64)
    size = len(files) if budget_s is None else max(BUDGET_MIN_CHUNK, -(-len(files) // BUDGET_CHUNKS))
    active, fastest_only, unscored = list(range(n)), [], []
    t0 = time.perf_counter()
    for start in range(0, len(files), max(size, 1)):
        part = list(files[start:start + size])
        done, elapsed = start, time.perf_counter() - t0
        if budget_s is not None and done:
            rate = lambda idx: sum(seconds[i] / max(counts[i], 1) for i in idx)  # noqa: E731  s per file
            fastest = min(active, key=lambda i: seconds[i] / max(counts[i], 1))
            if elapsed >= budget_s:
                unscored += [str(f) for f in files[start:]]
                warnings.warn(f"time budget of {budget_s / 60:.0f} min spent after {done} of {len(files)} files: the "
                              f"other {len(files) - done} get the training prior", stacklevel=3)
                break
            if len(active) > 1 and elapsed + (len(files) - done) * rate(active) > budget_s:
                warnings.warn(f"at {rate(active):.1f} s per file the {len(files) - done} files left would pass the time "
                              f"budget of {budget_s / 60:.0f} min: they go to the fastest member alone "
                              f"({members[fastest].folder}, {rate([fastest]):.1f} s per file)", stacklevel=3)
                active = [fastest]
            if active == [fastest] and len(members) > 1:
                fastest_only += [str(f) for f in part]
        for name, idx in by_family.items():
            idx = [i for i in idx if i in active]
            if not idx:
                continue
            t = time.perf_counter()
            # backbone scores are asked for whenever the backbone has them: stored with the embeddings,
            # so a later run with another weight reads them from the cache
            got = family(name).predict([members[i] for i in idx], part, config, zero_shot=[zero_shot[i] for i in idx])
            for i, pred in zip(idx, got):
                outputs[i].update(pred)
                seconds[i] += (time.perf_counter() - t) / len(idx)
                counts[i] += len(part)
        if budget_s is not None:
            print(f"test soundscapes: {start + len(part)}/{len(files)} in {(time.perf_counter() - t0) / 60:.1f} min "
                  f"(budget {budget_s / 60:.0f} min)", flush=True)
    fastest = int(np.argmin([s / c if c else np.inf for s, c in zip(seconds, counts)])) if counts.any() else 0
    return outputs, Timing(tuple(float(x) for x in seconds), tuple(int(c) for c in counts), fastest,
                           tuple(fastest_only), tuple(unscored))
