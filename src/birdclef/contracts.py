"""The types several floors share, beneath every one of them (it imports no birdclef module).

- :class:`Settings`: a run's settings as the floors beneath :mod:`birdclef.config` read them. The
  post-processing chain and the model-family protocol sit beneath config (config validates against
  them), so they name this protocol, never :class:`birdclef.config.Config` itself; ``Config``
  satisfies it (``tests/test_layout.py`` checks every attribute named here is a Config field).
- :class:`Evidence`, :class:`RankReference`: what a post-processing step may draw on besides a
  soundscape's window probabilities.
- :class:`ZeroShotMapping`: a backbone's class columns for one taxonomy (which classes it scores);
  :class:`birdclef.features.zeroshot.ZeroShot` adds reading its logits from cached embeddings.
- :class:`ChosenWeights`: anything carrying per-class blend weights chosen on validation (a head's
  metadata, an ensemble member).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Sequence

import numpy as np
import pandas as pd


class Settings(Protocol):
    """What the chain and the family protocol read of a run's :class:`birdclef.config.Config` (read-only).
    A step reads the fields it declares (``Step.fields``); a model family receives the whole Config."""

    data_dir: str
    model_family: str
    postprocess: tuple[str, ...]
    zero_shot_weight: float | None  # None: the weights the heads chose on validation
    smoothing_kernel: tuple[float, ...]
    taxon_smoothing_kernels: tuple[str, ...]
    file_boost_alpha: float
    file_boost_power: float
    genus_weight: float
    family_weight: float
    rank_blend_weight: float
    site_prior_weight: float


class ChosenWeights(Protocol):
    """Per class, the zero-shot blend weights chosen on validation (``()``: none)."""

    @property
    def zero_shot_weights(self) -> Sequence[float]: ...


@dataclass(frozen=True)
class RankReference:
    """Every window of a submission set (all its files), sorted per class: what ``rank_blend`` ranks a
    file's windows against, so a step that sees one file at a time ranks within the whole set."""

    head: np.ndarray  # (n_rows, n_classes) float64 the member's scores where rank_blend runs, each column sorted
    backbone: np.ndarray  # (n_rows, n_classes) float64 its backbone's logits, each column sorted
    mapped: np.ndarray  # (n_classes,) bool: the classes the backbone knows (the others are left alone)


@dataclass(frozen=True)
class Evidence:
    """What post-processing steps may draw on for one soundscape besides its window probabilities."""

    zero_shot_logits: np.ndarray | None = None  # (n_windows, n_classes) the backbone's own logits
    zero_shot_weights: np.ndarray | None = None  # (n_classes,) their blend weights in [0, 1]
    prior_shift: np.ndarray | None = None  # (n_classes,) logit shift of the file's site and hour (birdclef.postprocess.priors)
    # one row per class in the submission's label order: columns primary_label, scientific_name,
    # class_name and, where the taxonomy has one, family (birdclef.data.competition.load_taxonomy, reindexed)
    taxonomy: pd.DataFrame | None = None
    rank_reference: RankReference | None = None  # every window of the set, for rank_blend (birdclef.postprocess.rank_reference)
    context: Any = None  # a trained context model (birdclef.models.context.ContextModel), for the context step


@dataclass(frozen=True)
class ZeroShotMapping:
    """A backbone's species columns for one taxonomy: which classes it scores, and from which column."""

    class_columns: np.ndarray  # (n_classes,) backbone column per taxonomy class, -1: unmapped

    @property
    def mapped(self) -> np.ndarray:
        """(n_classes,) bool: classes the backbone scores."""
        return self.class_columns >= 0

    @property
    def score_columns(self) -> np.ndarray:
        """Sorted backbone columns the embedding stage must store."""
        return np.unique(self.class_columns[self.mapped])
