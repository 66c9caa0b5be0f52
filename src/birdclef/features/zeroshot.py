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
fold (:func:`choose_weights`), or fixed by ``zero_shot_weight``. Weight 1 is the backbone alone,
so a class the head cannot improve keeps the backbone's ranking. Unmapped classes (most
insects and frogs, the demo's synthetic species) keep the head's probability.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from birdclef.backbones import backbone_spec, labels_reader
from birdclef.config import Config
from birdclef.data.competition import n_windows
from birdclef.data.metric import masked_auc_columns
from birdclef.errors import BirdclefError
from birdclef.features.embeddings import Embedded, frames_in

log = logging.getLogger(__name__)

WEIGHT_GRID = tuple(np.round(np.linspace(0.0, 1.0, 11), 2))
SHRINK_RECORDINGS = 2.0  # a class's own validation evidence counts as much as the all-class curve at this many recordings


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
class ZeroShot:
    """A backbone's species logits for one taxonomy, read from cached embeddings."""

    class_columns: np.ndarray  # (n_classes,) backbone column per taxonomy class, -1: unmapped

    @property
    def mapped(self) -> np.ndarray:
        """(n_classes,) bool: classes the backbone scores."""
        return self.class_columns >= 0

    @property
    def score_columns(self) -> np.ndarray:
        """Sorted backbone columns the embedding stage must store."""
        return np.unique(self.class_columns[self.mapped])

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


def choose_weights(prob: np.ndarray, logits: np.ndarray, y: np.ndarray, mapped: np.ndarray,
                   val_recordings: np.ndarray, *, grid=WEIGHT_GRID, shrink: float = SHRINK_RECORDINGS,
                   learned: np.ndarray | None = None) -> tuple[np.ndarray, pd.DataFrame]:
    """Blend weight per class from validation examples → ((n_classes,) weights, curve table).

    ``prob``: (n, C) head probabilities; ``logits``: (n, C) the backbone's logits; ``y``: (n, C)
    0/1 truth (NaN: a cell not scored); ``val_recordings``: (C,) validation recordings per class.
    For every weight of ``grid`` the blend's ROC-AUC per mapped class is measured; the all-class
    curve (mean over mapped classes with validation positives that the head ``learned``) picks a
    shared weight, and each class takes the weight that maximises its own curve shrunk toward the
    shared one, ``(n_c · auc_c(w) + shrink · auc_all(w)) / (n_c + shrink)`` (ties go to the larger
    weight, the backbone's side). Classes without validation recordings, and mapped classes the
    head did not learn (``learned`` False: no training recording in the fold, so its validation
    curve says nothing of the refit head that will), take the shared weight. Unmapped classes get
    weight 0. The table has one row per (weight, class) measured.
    """
    y = np.asarray(y, np.float64)
    prob, logits, y = np.asarray(prob), np.asarray(logits), np.where(np.isnan(y), np.nan, y > 0.5)
    mapped = np.asarray(mapped, bool)
    learned = np.ones(len(mapped), bool) if learned is None else np.asarray(learned, bool)
    weights = np.zeros(len(mapped), np.float64)
    if not mapped.any():
        return weights, pd.DataFrame(columns=["weight", "class_index", "auc"])
    head = _logit(prob[:, mapped])
    zs = np.asarray(logits, np.float64)[:, mapped]
    curves = np.stack([masked_auc_columns(y[:, mapped], (1 - w) * head + w * zs) for w in grid])  # (grid, mapped)
    counts = np.asarray(val_recordings, np.float64)[mapped]
    scored = ~np.isnan(curves).any(axis=0)
    if not scored.any():  # no validation positive among mapped classes: trust the backbone
        weights[mapped] = 1.0
        return weights, pd.DataFrame(columns=["weight", "class_index", "auc"])
    pooled = scored & learned[mapped] if (scored & learned[mapped]).any() else scored
    overall = curves[:, pooled].mean(axis=1)  # (grid,)
    g = np.asarray(grid, np.float64)
    shared = g[len(g) - 1 - np.argmax(overall[::-1])]  # ties → the larger weight
    own = np.where(np.isnan(curves), overall[:, None], curves)
    n = np.where(scored, counts, 0.0)
    shrunk = (n * own + shrink * overall[:, None]) / (n + shrink)
    picked = g[len(g) - 1 - np.argmax(shrunk[::-1], axis=0)]
    weights[mapped] = np.where(scored & learned[mapped], picked, shared)
    idx = np.flatnonzero(mapped)
    table = pd.DataFrame([(float(w), int(idx[j]), float(curves[i, j])) for i, w in enumerate(grid)
                          for j in range(len(idx)) if scored[j]], columns=["weight", "class_index", "auc"])
    return weights, table
