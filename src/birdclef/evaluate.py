"""The competition metric and per-class diagnostics.

:func:`score` has the Kaggle BirdCLEF metric's semantics: macro-averaged ROC-AUC over the
solution's class columns that have at least one positive; the submission must have the same
rows (by ``row_id``) and the same class columns, with finite numeric values; the solution holds 0/1.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from birdclef.errors import SchemaError


def score(solution: pd.DataFrame, submission: pd.DataFrame, row_id_column_name: str = "row_id") -> float:
    """Macro ROC-AUC over the classes with a positive in ``solution``.

    Rows are matched by ``row_id_column_name`` (order does not matter); a missing or extra row,
    a missing or extra class column, a non-numeric / NaN / infinite value, or a solution value
    other than 0 and 1 (the two tables swapped) raises :class:`SchemaError`.
    """
    for name, df in (("solution", solution), ("submission", submission)):
        if row_id_column_name not in df.columns:
            raise SchemaError(f"{name} has no {row_id_column_name!r} column")
        if df[row_id_column_name].duplicated().any():
            dup = df[row_id_column_name][df[row_id_column_name].duplicated()].iloc[0]
            raise SchemaError(f"{name} has duplicated row id {dup!r}")
    sol = solution.set_index(row_id_column_name)
    sub = submission.set_index(row_id_column_name)
    missing_rows = sol.index.difference(sub.index)
    extra_rows = sub.index.difference(sol.index)
    if len(missing_rows) or len(extra_rows):
        raise SchemaError(
            f"submission rows do not match the solution: {len(missing_rows)} missing "
            f"(e.g. {list(missing_rows[:3])}), {len(extra_rows)} unexpected (e.g. {list(extra_rows[:3])})"
        )
    missing_cols = [c for c in sol.columns if c not in sub.columns]
    if missing_cols:
        raise SchemaError(f"submission lacks class column(s) {missing_cols[:5]} ({len(missing_cols)} in all)")
    extra_cols = [c for c in sub.columns if c not in sol.columns]
    if extra_cols:
        raise SchemaError(f"submission has class column(s) the solution lacks: {extra_cols[:5]} ({len(extra_cols)} in all)")
    sub = sub.loc[sol.index, list(sol.columns)]
    values = sub.apply(pd.to_numeric, errors="coerce")
    if values.isna().to_numpy().any():
        bad = values.columns[values.isna().any()][0]
        raise SchemaError(f"submission column {bad!r} has non-numeric or NaN values")
    if not np.isfinite(values.to_numpy(dtype=np.float64)).all():
        raise SchemaError("submission has infinite values")
    truth = sol.apply(pd.to_numeric, errors="coerce")
    if truth.isna().to_numpy().any():
        raise SchemaError("solution has non-numeric or NaN values")
    not_binary = ~truth.isin([0, 1])
    if not_binary.to_numpy().any():
        column = not_binary.columns[not_binary.any()][0]
        raise SchemaError(f"solution column {column!r} has values other than 0 and 1 (e.g. "
                          f"{truth.loc[not_binary[column], column].iloc[0]!r}): are the solution and submission swapped?")
    scored = truth.columns[truth.sum(axis=0) > 0]
    if len(scored) == 0:
        raise SchemaError("solution has no positive label in any class: nothing to score")
    return float(roc_auc_score(truth[scored].to_numpy(), values[scored].to_numpy(), average="macro"))


def per_class_auc(y_true: np.ndarray, y_score: np.ndarray, labels: list[str] | tuple[str, ...]) -> pd.DataFrame:
    """(n, C) 0/1 truth and scores → one row per class: label, positives, auc (NaN when undefined)."""
    y_true = np.asarray(y_true)
    rows = []
    for j, label in enumerate(labels):
        pos = int((y_true[:, j] > 0.5).sum())
        auc = np.nan
        if 0 < pos < len(y_true):
            auc = float(roc_auc_score(y_true[:, j] > 0.5, y_score[:, j]))
        rows.append({"label": label, "positives": pos, "auc": auc})
    return pd.DataFrame(rows)


def macro_auc(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Macro ROC-AUC over classes with at least one positive and one negative (NaN if none)."""
    aucs = per_class_auc(y_true, y_score, [str(i) for i in range(np.asarray(y_true).shape[1])])["auc"]
    return float(aucs.mean()) if aucs.notna().any() else float("nan")


def auc_columns(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Per-column ROC-AUC of scores ``s`` (n, C) against 0/1 ``y`` (n, C); NaN where undefined.
    Rank-based (Mann–Whitney), ties counted half: the same value as :func:`per_class_auc`, for all
    columns at once."""
    from scipy.stats import rankdata

    r = rankdata(s, axis=0)
    pos = y.sum(axis=0)
    neg = len(y) - pos
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = ((r * y).sum(axis=0) - pos * (pos + 1) / 2) / (pos * neg)
    return np.where((pos > 0) & (neg > 0), auc, np.nan)
