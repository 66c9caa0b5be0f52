"""The competition metric and per-class diagnostics.

:func:`score` has the Kaggle BirdCLEF metric's semantics: macro-averaged ROC-AUC over the
solution's class columns that have at least one positive; the submission must have the same
rows (by ``row_id``) and the same class columns, with finite numeric values; the solution holds 0/1.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from birdclef.data.competition import build_submission
from birdclef.errors import SchemaError

IGNORE_FILE = "solution_ignore.csv"  # beside solution.csv: 1 where a (window, class) cell is not scored


def read_solution(path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """solution.csv → (solution, the ignore table written beside it by held-out tasks, or None)."""
    path = Path(path)
    solution = pd.read_csv(path, dtype={"row_id": str})
    ignore = path.with_name(IGNORE_FILE)
    return solution, (pd.read_csv(ignore, dtype={"row_id": str}) if ignore.exists() else None)


def score(solution: pd.DataFrame, submission: pd.DataFrame, row_id_column_name: str = "row_id",
          ignore: pd.DataFrame | None = None) -> float:
    """Macro ROC-AUC over the classes with a positive in ``solution``.

    ``ignore`` (row_id + any of the class columns, 1 = not scored): cells whose truth cannot be judged
    (a held-out task's secondary species, a call grazing a window) are left out of their class's AUC;
    a class is scored on its remaining rows when they hold a positive and a negative.

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
    if ignore is None:
        from sklearn.metrics import roc_auc_score  # here: scikit-learn's import is ~1 s a submission need not pay

        return float(roc_auc_score(truth[scored].to_numpy(), values[scored].to_numpy(), average="macro"))
    skip = ignore.set_index(row_id_column_name).reindex(index=sol.index, columns=scored).fillna(0).to_numpy() > 0
    y = np.where(skip, np.nan, truth[scored].to_numpy(np.float64))
    aucs = masked_auc_columns(y, values[scored].to_numpy(np.float64))
    if np.isnan(aucs).all():
        raise SchemaError("no class keeps a positive and a negative once the ignored cells are left out")
    return float(np.nanmean(aucs))


def per_class_auc(y_true: np.ndarray, y_score: np.ndarray, labels: list[str] | tuple[str, ...]) -> pd.DataFrame:
    """(n, C) 0/1 truth and scores → one row per class: label, positives, auc (NaN when undefined)."""
    from sklearn.metrics import roc_auc_score

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


def masked_auc_columns(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Per-column ROC-AUC where ``y`` (n, C) holds 0/1 or NaN (a cell not scored); NaN where a column
    keeps no positive or no negative."""
    if not np.isnan(y).any():  # nothing masked: every column at once
        return auc_columns(y, s)
    out = np.full(y.shape[1], np.nan)
    for j in range(y.shape[1]):
        keep = ~np.isnan(y[:, j])
        out[j] = auc_columns(y[keep, j:j + 1], s[keep, j:j + 1])[0]
    return out


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


def score_windows(probs: dict[str, np.ndarray], labels: list[str], truth: pd.DataFrame, window_s: float = 5.0
                  ) -> float | None:
    """The competition metric of {stem: (n_windows, n_classes)} against the truth rows of those stems."""
    sub = build_submission(probs, labels, window_s)
    sol = truth[truth["row_id"].isin(set(sub["row_id"]))]
    try:
        return score(sol, sub[sub["row_id"].isin(set(sol["row_id"]))], row_id_column_name="row_id")
    except SchemaError:  # no positive among these rows, or rows that do not match: no score
        return None
