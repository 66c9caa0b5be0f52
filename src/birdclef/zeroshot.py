"""Zero-shot scores: a backbone's own species classifier, mapped onto the competition taxonomy.

A backbone that classifies species itself (BirdNET: 6,522) offers ``scores(windows)`` →
(n, n_species) and ``labels`` → [(scientific_name, common_name)] per score column. A taxonomy
class whose scientific name is one of those species is *mapped*; for it, the backbone's
score can be blended into the head's probability (:func:`birdclef.postprocess.blend_zero_shot`,
weight ``zero_shot_weight``). Unmapped classes (the demo's synthetic species, most insects and
frogs) keep the head's probability, so with no mapped class blending changes nothing.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from birdclef.backbones import BackboneSpec
from birdclef.config import Config
from birdclef.embeddings import embed_recording, frames_in, n_windows
from birdclef.errors import BirdclefError

log = logging.getLogger(__name__)


def _norm(name: object) -> str:
    return " ".join(str(name).lower().replace("_", " ").split())


def map_taxonomy(taxonomy: pd.DataFrame, species: list[tuple[str, str]]) -> np.ndarray:
    """(n_classes,) int: the score column of each taxonomy class, -1 where none matches.

    Classes match a species by scientific name (case and spacing ignored); ``species`` is the
    backbone's [(scientific_name, common_name)] in score-column order.
    """
    column = {}
    for j, (scientific, _) in enumerate(species):
        column.setdefault(_norm(scientific), j)
    names = taxonomy["scientific_name"] if "scientific_name" in taxonomy else pd.Series([""] * len(taxonomy))
    return np.array([column.get(_norm(n), -1) for n in names], np.int64)


class _ScoresAsEmbedding:
    """Presents ``backbone.scores`` as ``embed``, so the embedding stage's audio path is reused."""

    def __init__(self, backbone) -> None:
        spec = backbone.spec
        self._backbone = backbone
        self.spec = BackboneSpec(spec.name, spec.sample_rate_hz, spec.window_s, len(backbone.labels), spec.hop_s)

    def embed(self, windows: np.ndarray) -> np.ndarray:
        return np.asarray(self._backbone.scores(windows), np.float32)


@dataclass
class ZeroShot:
    """A backbone's species scores for one taxonomy: ``window_scores(path)`` per soundscape."""

    backbone: object  # has spec, labels and scores(windows)
    columns: np.ndarray  # (n_classes,) score column per class, -1: unmapped
    config: Config

    @property
    def mapped(self) -> np.ndarray:
        """(n_classes,) bool: classes the backbone scores."""
        return self.columns >= 0

    def window_scores(self, path: str | Path) -> np.ndarray:
        """(n_windows, n_classes) float32: per window, the highest score of the frames starting in it
        (0 for unmapped classes). Audio is cleaned as for the embeddings (VAD aside)."""
        config = dataclasses.replace(self.config, vad=False)
        e = embed_recording(path, backbone=_ScoresAsEmbedding(self.backbone), config=config)
        count = n_windows(e.duration_s, config.window_s)
        out = np.zeros((count, len(self.columns)), np.float32)
        mapped = self.mapped
        for w in range(count):
            idx = frames_in(e, w * config.window_s, (w + 1) * config.window_s)
            if len(idx) == 0:
                idx = np.array([len(e.starts_s) - 1])
            out[w, mapped] = e.embeddings[idx][:, self.columns[mapped]].max(axis=0)
        return out


def load_zero_shot(config: Config, taxonomy: pd.DataFrame, *, backbone=None) -> ZeroShot | None:
    """The zero-shot scorer for ``config.backbone``, or None (with a log line) when the backbone has
    no species scores or no taxonomy class maps to one of its species."""
    if backbone is None:
        from birdclef.backbones import get_backbone

        backbone = get_backbone(config.backbone, model_path=config.backbone_path)
    try:
        species = list(backbone.labels) if callable(getattr(backbone, "scores", None)) else None
    except (BirdclefError, AttributeError, OSError) as err:  # e.g. BirdNET without its labels file
        log.warning("backbone %s species names unavailable (%s): zero-shot blending is off", config.backbone, err)
        return None
    if species is None:
        log.warning("backbone %s has no species scores with names: zero-shot blending is off", config.backbone)
        return None
    columns = map_taxonomy(taxonomy, species)
    if not (columns >= 0).any():
        log.warning("no taxonomy class maps to a %s species: zero-shot blending changes nothing", config.backbone)
        return None
    log.info("zero-shot: %d of %d classes map to %s species", int((columns >= 0).sum()), len(columns), config.backbone)
    return ZeroShot(backbone, columns, config)
