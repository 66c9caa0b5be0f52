"""Tables and numbers the notebooks show: calibration, validation scores side by side, skip lists.

The figures are in :mod:`birdclef.report.plots` (which draws from these tables); this module draws nothing.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

# (metrics.json key, what was scored): the scores 03_train compares when the data has labelled soundscapes
VALIDATION_SCORES = (
    ("val_focal_auc", "focal recordings (held-out recordings)"),
    ("val_soundscape_auc", "labelled soundscape windows (held-out files)"),
    ("val_combined_auc", "combined (weighted by class counts)"),
    ("val_mix_auc_head", "validation soundscapes mixed from the validation fold: the head"),
    ("val_mix_auc_finished", "validation soundscapes after the blend and smoothing (as submitted)"),
    ("val_soundscape_files_auc_head", "held-out labelled soundscapes, whole files: the head"),
    ("val_soundscape_files_auc_finished", "held-out labelled soundscapes, whole files, as submitted"),
    ("context_val_auc_before", "context model's held-out soundscapes: before it"),
    ("context_val_auc_after", "context model's held-out soundscapes: after it"),
)


def calibration_table(y_true: np.ndarray, y_score: np.ndarray, *, n_bins: int = 10) -> pd.DataFrame:
    """Reliability table over every (example, class) pair of (n, C) 0/1 truth and probabilities.

    One row per non-empty probability bin: bin_lo, bin_hi, mean_predicted, observed (share of
    positives), count. A calibrated model has observed ≈ mean_predicted.
    """
    t = np.asarray(y_true, np.float64).ravel() > 0.5
    s = np.clip(np.asarray(y_score, np.float64).ravel(), 0, 1)
    edges = np.linspace(0, 1, n_bins + 1)
    which = np.clip(np.digitize(s, edges[1:-1]), 0, n_bins - 1)
    rows = []
    for b in range(n_bins):
        sel = which == b
        if sel.any():
            rows.append({"bin_lo": edges[b], "bin_hi": edges[b + 1], "mean_predicted": float(s[sel].mean()),
                         "observed": float(t[sel].mean()), "count": int(sel.sum())})
    return pd.DataFrame(rows, columns=["bin_lo", "bin_hi", "mean_predicted", "observed", "count"])


def expected_calibration_error(table: pd.DataFrame) -> float:
    """Count-weighted mean |observed - mean_predicted| over the bins of :func:`calibration_table`."""
    if table.empty:
        return float("nan")
    w = table["count"] / table["count"].sum()
    return float((w * (table["observed"] - table["mean_predicted"]).abs()).sum())


def validation_scores(metrics: dict[str, Any]) -> pd.DataFrame:
    """The validation macro ROC-AUCs of a training run (``metrics.json``) side by side: focal
    recordings, labelled soundscape windows, the two combined, the validation soundscapes, the
    held-out labelled soundscapes as whole files, and the context model's held-out files before and
    after it → DataFrame indexed by what was scored, column ``macro ROC-AUC``; the scores the run
    lacks are left out (empty without any)."""
    metrics = dict(metrics)
    if metrics.get("val_combined_auc") is None and metrics.get("val_soundscape_auc") is not None:
        metrics["val_combined_auc"] = metrics.get("val_auc")  # runs that kept the combined score as val_auc
    rows = {what: float(metrics[key]) for key, what in VALIDATION_SCORES if metrics.get(key) is not None}
    return pd.Series(rows, dtype=float, name="macro ROC-AUC").rename_axis("validated on").to_frame()


def show(table: pd.DataFrame, *, empty: str, head: int | None = 20) -> None:
    """Display ``table`` (its first ``head`` rows) in a notebook, or print the one line ``empty`` when it has no row."""
    if table is None or table.empty:
        print(empty)
        return
    from IPython.display import display

    display(table if head is None else table.head(head))
