"""Validation folds over groups: the one rule every model family follows.

A validation fold holds whole groups (recording sessions, recordings, authors, soundscape site-days)
so that nothing validates on a near-copy of what it trained on. Real metadata often has fewer
groups than the folds asked for (every clip of a small set by one recordist at one place is one
session), or classes with fewer members than folds. Then:

- fewer groups than folds: as many folds as there are groups, at least two (:func:`fold_plan`, its
  ``note`` says why);
- fewer than two groups: no validation at all (``FoldPlan.n_folds == 0``): training uses everything;
- every class with fewer members than folds (scikit-learn's StratifiedGroupKFold refuses that):
  whole groups are dealt to the folds in a seeded order, not stratified (:func:`group_folds`).

Used by the embedding head (:func:`birdclef.models.train.split_folds`) and the SED family
(:func:`birdclef.models.sed.data.split_recordings`).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold


@dataclass(frozen=True)
class FoldPlan:
    """How many folds a split uses. ``n_folds``: 0 when there is no validation (fewer than two
    groups), else 2 or more; ``note``: why the folds differ from those asked for ('' when they don't)."""

    n_folds: int
    note: str = ""

    @property
    def validates(self) -> bool:
        return self.n_folds >= 2


def fold_plan(n_folds: int, n_groups: int, *, what: str = "groups") -> FoldPlan:
    """The folds a split of ``n_groups`` groups into ``n_folds`` folds can use. ``what`` names the
    groups in the note (e.g. "recording sessions")."""
    if n_groups < 2:
        return FoldPlan(0, f"only {n_groups} group(s) of {what} to keep apart, so there is no validation "
                           f"fold: training uses every example without validation")
    if n_groups < n_folds:
        return FoldPlan(n_groups, f"only {n_groups} groups of {what} for {n_folds} folds: using {n_groups} folds "
                                  f"(each validation fold is about 1/{n_groups} of the data)")
    return FoldPlan(n_folds)


def deal_groups(groups: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """(n,) fold of each row: the distinct ``groups`` (n,) dealt to ``n_folds`` folds in a seeded random
    order (with at least ``n_folds`` groups, every fold gets one)."""
    groups = np.asarray(groups).astype(str)
    names = np.unique(groups)
    order = names[np.random.default_rng(seed).permutation(len(names))]
    fold_of = dict(zip(order, np.arange(len(names)) % n_folds))
    return np.array([fold_of[g] for g in groups], np.int64)


def group_folds(labels: np.ndarray, groups: np.ndarray, n_folds: int, seed: int) -> tuple[np.ndarray, str]:
    """((n,) fold of each row, note): whole ``groups`` (n,) per fold, stratified by ``labels`` (n,)
    (StratifiedGroupKFold, shuffled with ``seed``) where that is possible, else dealt in a seeded order
    (:func:`deal_groups`) with a note saying why. Needs at least ``n_folds`` distinct groups."""
    labels, groups = np.asarray(labels).astype(str), np.asarray(groups).astype(str)
    if len(np.unique(groups)) < n_folds:
        raise ValueError(f"{len(np.unique(groups))} groups cannot fill {n_folds} folds; see fold_plan")
    _, counts = np.unique(labels, return_counts=True)
    if (counts < n_folds).all():
        return deal_groups(groups, n_folds, seed), (
            f"no class has {n_folds} or more examples, so the {n_folds} folds keep groups whole but are "
            "not stratified by class")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # some classes with fewer members than folds
        splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        fold_of = np.zeros(len(labels), np.int64)
        for k, (_, va) in enumerate(splitter.split(np.zeros(len(labels)), labels, groups)):
            fold_of[va] = k
    if len(np.unique(fold_of)) < n_folds:  # a fold left empty: a split must have both sides
        return deal_groups(groups, n_folds, seed), "stratified folds left a fold empty; groups dealt instead"
    return fold_of, ""
