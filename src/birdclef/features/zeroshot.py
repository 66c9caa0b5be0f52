"""Zero-shot scores: a backbone's own species classifier, mapped onto the competition taxonomy.

A backbone whose spec declares ``has_scores`` (BirdNET: 6,522 species) gives, in the same pass
as its embeddings, one logit per species; ``backbone.labels`` names them
[(scientific_name, common_name)], and the reader it registers
(:func:`birdclef.backbones.labels_reader`) reads the same list without loading the model (every stage maps the taxonomy; only the embedding stage
needs the model). A taxonomy class whose scientific name is one of those species is *mapped*.
The embedding stage stores the mapped columns' logits with the embeddings
(:func:`score_columns`), so the zero-shot scores of a window come from the cache, never from a
second decode.

For a mapped class the head's probability is blended with the backbone's logit in logit space
(:func:`birdclef.postprocess.blend_logits`); the weight per class is chosen on the validation
fold (:func:`choose_weights`, each weight as far from a backbone-leaning prior as its evidence
carries it: :class:`BlendPrior`), or fixed by ``zero_shot_weight``. Weight 1 is the backbone alone,
so a class the head cannot improve keeps the backbone's ranking. Unmapped classes (most
insects and frogs, the demo's synthetic species) keep the head's probability.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd

from birdclef.backbones import backbone_spec, labels_reader
from birdclef.config import Config
from birdclef.contracts import ZeroShotMapping
from birdclef.data.competition import n_windows
from birdclef.data.metric import masked_auc_columns
from birdclef.errors import BirdclefError
from birdclef.features.embeddings import Embedded, frames_in

log = logging.getLogger(__name__)

WEIGHT_GRID = tuple(np.round(np.linspace(0.0, 1.0, 11), 2))


def _norm(name: object) -> str:
    return " ".join(str(name).lower().replace("_", " ").split())


def _taxon_id(value: object) -> str | None:
    """An iNat taxon id as a comparable string ("123", 123, 123.0 → "123"); None when empty."""
    text = str(value).strip() if value is not None else ""
    if text.lower() in ("", "nan", "none"):
        return None
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if number.is_integer() else text


def map_taxonomy(taxonomy: pd.DataFrame, species: list[tuple]) -> np.ndarray:
    """(n_classes,) int: the score column of each taxonomy class, -1 where none matches.

    ``species`` is the backbone's [(scientific_name, common_name)] in score-column order; an
    entry may carry a third element, its iNat taxon id (None or "" for none). A class whose
    ``inat_taxon_id`` equals a species' id maps to it (an id outlives a renamed species);
    otherwise classes match by scientific name (case and spacing ignored). The first column
    wins when several match.
    """
    by_name: dict[str, int] = {}
    by_id: dict[str, int] = {}
    for j, entry in enumerate(species):
        if _norm(entry[0]):  # an empty name matches no class
            by_name.setdefault(_norm(entry[0]), j)
        taxon = _taxon_id(entry[2]) if len(entry) > 2 else None
        if taxon is not None:
            by_id.setdefault(taxon, j)
    empty = pd.Series([""] * len(taxonomy))
    names = taxonomy["scientific_name"] if "scientific_name" in taxonomy else empty
    ids = taxonomy["inat_taxon_id"] if "inat_taxon_id" in taxonomy and by_id else empty
    return np.array([by_id.get(_taxon_id(t) or "", by_name.get(_norm(n), -1)) for n, t in zip(names, ids)],
                    np.int64)


@dataclass(frozen=True)
class ZeroShot(ZeroShotMapping):
    """A backbone's species logits for one taxonomy, read from cached embeddings (its mapping:
    :class:`birdclef.contracts.ZeroShotMapping`)."""

    def frame_logits(self, e: Embedded) -> np.ndarray:
        """(n_frames, n_classes) float32: the backbone's logit per frame, 0 for unmapped classes."""
        out = np.zeros((len(e.starts_s), len(self.class_columns)), np.float32)
        out[:, self.mapped] = e.species_logits(self.class_columns[self.mapped])
        return out

    def window_logits(self, e: Embedded, window_s: float = 5.0) -> np.ndarray:
        """(n_windows, n_classes) float32: per submission window, the highest logit of the frames
        starting in it (the last frame for a window past the last start; 0 for unmapped)."""
        frames = self.frame_logits(e)
        count = n_windows(e.duration_s, window_s)
        out = np.zeros((count, frames.shape[1]), np.float32)
        for w in range(count):
            idx = frames_in(e, w * window_s, (w + 1) * window_s)
            out[w] = frames[idx if len(idx) else [len(frames) - 1]].max(axis=0)
        return out


def load_zero_shot(config: Config, taxonomy: pd.DataFrame, *, backbone=None) -> ZeroShot | None:
    """The zero-shot mapping for ``config.backbone`` and ``taxonomy``, or None (logged) when the
    backbone has no species scores or no class maps to one of its species. Reads the backbone's
    label file only (:func:`birdclef.backbones.labels_reader`), unless a built ``backbone`` is given."""
    if not backbone_spec(config.backbone).has_scores:
        return None
    read = (lambda: backbone.labels) if backbone is not None else labels_reader(config.backbone,
                                                                                model_path=config.backbone_path)
    try:
        species = list(read())
    except (BirdclefError, OSError) as err:  # e.g. BirdNET without its labels file
        log.warning("backbone %s species names unavailable (%s): zero-shot blending is off", config.backbone, err)
        return None
    columns = map_taxonomy(taxonomy, species)
    if not (columns >= 0).any():
        log.info("no taxonomy class maps to a %s species: zero-shot blending changes nothing", config.backbone)
        return None
    log.info("zero-shot: %d of %d classes map to %s species", int((columns >= 0).sum()), len(columns), config.backbone)
    return ZeroShot(columns)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


@dataclass(frozen=True)
class BlendPrior:
    """How much evidence a blend weight needs before it moves away from the backbone (issue 31).

    ``weight``: the backbone's weight where the fold measured nothing (backbone-leaning: on real
    recordings the backbone alone was never far below the best blend, and far above the head alone);
    ``pairs``: the (class, validation recording) pairs at which the pooled curve's optimum counts as
    much as ``weight``; ``class_recordings``: the validation recordings at which a class's own optimum
    counts as much as the shared weight; ``train_recordings``: the training recordings at which the
    head keeps half of the share it would otherwise get (fewer: the weight leans on the backbone);
    ``pool_untrained``: the pooled curve also averages the classes the fold's head never trained on
    (their curves compare the backbone with a head that knows nothing of them: the floor of what a head
    trained on a handful of recordings brings)."""

    weight: float = 0.8
    pairs: float = 10.0
    class_recordings: float = 2.0
    train_recordings: float = 2.0
    pool_untrained: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.weight <= 1:
            raise ValueError(f"blend prior weight must be in [0, 1], got {self.weight}")
        for name in ("pairs", "class_recordings", "train_recordings"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"blend prior {name} must be >= 0, got {getattr(self, name)}")

    @classmethod
    def of(cls, config: Config) -> BlendPrior:
        """The prior ``config``'s ``blend_*`` fields give."""
        return cls(config.blend_prior_weight, config.blend_prior_pairs, config.blend_class_recordings,
                   config.blend_train_recordings, config.blend_pool_untrained)

    def lean(self, weight: np.ndarray | float, train_recordings: np.ndarray | float) -> np.ndarray:
        """``weight`` with the head's share ``1 − weight`` scaled by ``t / (t + train_recordings)``
        (``t``: the head's training recordings of the class; inf: no lean)."""
        t = np.asarray(train_recordings, np.float64)
        with np.errstate(invalid="ignore"):
            keep = np.where(np.isinf(t), 1.0, t / (t + self.train_recordings)) if self.train_recordings > 0 \
                else np.where(t > 0, 1.0, 0.0)
        return 1.0 - (1.0 - np.asarray(weight, np.float64)) * np.nan_to_num(keep, nan=1.0)


class ChosenWeights(NamedTuple):
    weights: np.ndarray  # (n_classes,) in [0, 1]; 0 for unmapped classes
    curves: pd.DataFrame  # one row per (weight, class_index) measured: the blend's validation AUC
    shared: float  # the shared weight: the pooled optimum shrunk toward the prior
    pairs: int  # (class, validation recording) pairs behind the pooled curve
    measured: np.ndarray  # (n_classes,) bool: the classes that took their own curve into account


def _largest_argmax(curves: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """The grid weight maximising each column of ``curves`` (grid, ...); ties → the larger (the backbone's side)."""
    return grid[len(grid) - 1 - np.argmax(curves[::-1], axis=0)]


def choose_weights(prob: np.ndarray, logits: np.ndarray, y: np.ndarray, mapped: np.ndarray,
                   val_recordings: np.ndarray, *, train_recordings: np.ndarray | None = None,
                   head_recordings: np.ndarray | None = None, prior: BlendPrior = BlendPrior(),
                   grid=WEIGHT_GRID) -> ChosenWeights:
    """Blend weight per class from validation examples, each weighed by the evidence behind it.

    ``prob``: (n, C) head probabilities; ``logits``: (n, C) the backbone's logits; ``y``: (n, C)
    0/1 truth (NaN: a cell not scored); ``val_recordings``: (C,) validation recordings with a
    positive per class; ``train_recordings``: (C,) the fold head's training recordings per class
    (None: every class learned, no lean); ``head_recordings``: (C,) the recordings the head that
    submits trains on per class, which set the lean (None: ``train_recordings``; with a refit, every
    recording). For every weight of ``grid`` the blend's ROC-AUC per mapped
    class with validation positives is measured (its curve).

    - The shared weight: the optimum of the mean curve of those classes (those the head trained on,
      and with ``prior.pool_untrained`` the others too) shrunk toward ``prior.weight`` by the
      (class, validation recording) pairs behind it: ``(N · w_pool + prior.pairs · prior.weight) /
      (N + prior.pairs)``. One class with one recording moves it by 1 / (1 + prior.pairs) of the way.
    - A class the fold measured (validation positives and a training recording) takes its own
      optimum shrunk toward the shared weight by its validation recordings n:
      ``(n · w_own + prior.class_recordings · w_base) / (n + prior.class_recordings)``, where ``w_base`` is
      the shared weight leaning on the backbone by its training recordings (:meth:`BlendPrior.lean`).
    - A mapped class the fold could not measure (no validation positive, or no training recording: its
      curve describes a head that never saw it) takes ``prior.weight``, leaning the same way.
    - Unmapped classes get weight 0. Ties on a curve go to the larger weight (the backbone's side).
    """
    y = np.asarray(y, np.float64)
    prob, logits, y = np.asarray(prob), np.asarray(logits), np.where(np.isnan(y), np.nan, y > 0.5)
    mapped = np.asarray(mapped, bool)
    trained = (np.full(len(mapped), np.inf) if train_recordings is None
               else np.asarray(train_recordings, np.float64))
    if trained.shape != mapped.shape or np.asarray(val_recordings).shape != mapped.shape:
        raise ValueError(f"per-class counts must have {len(mapped)} entries: train {trained.shape}, "
                         f"validation {np.asarray(val_recordings).shape}")
    weights = np.zeros(len(mapped), np.float64)
    empty = pd.DataFrame(columns=["weight", "class_index", "auc"])
    if not mapped.any():
        return ChosenWeights(weights, empty, float(prior.weight), 0, np.zeros(len(mapped), bool))
    g = np.asarray(grid, np.float64)
    head = _logit(prob[:, mapped])
    zs = np.asarray(logits, np.float64)[:, mapped]
    curves = np.stack([masked_auc_columns(y[:, mapped], (1 - w) * head + w * zs) for w in g])  # (grid, mapped)
    counts = np.asarray(val_recordings, np.float64)[mapped]
    t = trained[mapped]
    t_head = t if head_recordings is None else np.asarray(head_recordings, np.float64)[mapped]
    scored = ~np.isnan(curves).any(axis=0)
    measured = scored & (t > 0)
    pool = scored if prior.pool_untrained else measured
    pairs = int(counts[pool].sum())
    pooled = _largest_argmax(curves[:, pool].mean(axis=1), g) if pool.any() else prior.weight
    total = pairs + prior.pairs
    shared = float((pairs * pooled + prior.pairs * prior.weight) / total) if total > 0 else float(prior.weight)
    n = np.where(measured, counts, 0.0)
    own = _largest_argmax(np.where(np.isnan(curves), 0.0, curves), g)
    base = prior.lean(shared, t_head)
    with np.errstate(invalid="ignore"):
        own_shrunk = np.where(n + prior.class_recordings > 0,
                              (n * own + prior.class_recordings * base) / (n + prior.class_recordings), own)
    weights[mapped] = np.clip(np.where(measured, own_shrunk, prior.lean(prior.weight, t_head)), 0.0, 1.0)
    idx = np.flatnonzero(mapped)
    table = pd.DataFrame([(float(w), int(idx[j]), float(curves[i, j])) for i, w in enumerate(g)
                          for j in range(len(idx)) if scored[j]], columns=["weight", "class_index", "auc"])
    out_measured = np.zeros(len(mapped), bool)
    out_measured[idx] = measured
    return ChosenWeights(weights, table if len(table) else empty, shared, pairs, out_measured)
