"""Model-quality figures and tables: calibration, pseudo-labelling rounds, runs side by side.

Each plotting function draws on a new Figure and returns it (as :mod:`birdclef.plots`).
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd


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


def plot_calibration(y_true: np.ndarray, y_score: np.ndarray, *, n_bins: int = 10, title: str = "validation"):
    """Reliability diagram (observed vs predicted, diagonal = calibrated) above a histogram of the predictions."""
    table = calibration_table(y_true, y_score, n_bins=n_bins)
    fig, axes = plt.subplots(2, 1, figsize=(5, 5.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    axes[0].plot([0, 1], [0, 1], color="gray", ls="--", lw=1, label="calibrated")
    axes[0].plot(table["mean_predicted"], table["observed"], marker="o", color="tab:blue", label="model")
    axes[0].set(ylabel="observed share of positives", xlim=(0, 1), ylim=(0, 1),
                title=f"calibration ({title}); ECE {expected_calibration_error(table):.3f}")
    axes[0].legend(loc="upper left")
    axes[1].bar((table["bin_lo"] + table["bin_hi"]) / 2, table["count"], width=1 / n_bins * 0.9, color="tab:gray")
    axes[1].set(yscale="log", xlabel="predicted probability", ylabel="pairs")
    fig.tight_layout()
    return fig


def plot_pseudo_rounds(rounds: pd.DataFrame):
    """Guard score and validation AUC per pseudo-labelling round, windows added as bars."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax2 = ax.twinx()
    ax2.bar(rounds["round"], rounds["n_windows"], color="tab:gray", alpha=0.3, label="windows pseudo-labelled")
    ax2.set_ylabel("windows")
    ax.plot(rounds["round"], rounds["guard"], marker="o", color="tab:green", label="guard score")
    ax.plot(rounds["round"], rounds["val_auc"], marker="s", color="tab:blue", label="validation AUC")
    for r in rounds[~rounds["kept"].astype(bool)].itertuples():
        ax.annotate("dropped", (r.round, r.guard), textcoords="offset points", xytext=(0, 8), ha="center",
                    color="tab:red", fontsize=8)
    ax.set(xlabel="round", ylabel="macro ROC-AUC", title="pseudo-labelling rounds", xticks=rounds["round"])
    ax.set_zorder(ax2.get_zorder() + 1)
    ax.patch.set_visible(False)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def plot_runs(runs: pd.DataFrame, metrics: list[str], *, by: str = "run_name"):
    """One panel per metric: mean ± standard deviation over the runs of each ``by`` group, side by side."""
    present = [m for m in metrics if m in runs.columns and runs[m].notna().any()]
    fig, axes = plt.subplots(1, max(1, len(present)), figsize=(4.5 * max(1, len(present)), 3.8), squeeze=False)
    for ax, metric in zip(axes[0], present):
        g = runs.dropna(subset=[metric]).groupby(by, sort=False)[metric].agg(["mean", "std", "count"])
        ax.bar(range(len(g)), g["mean"], yerr=g["std"].fillna(0), color="tab:blue", alpha=0.8, capsize=3)
        ax.set_xticks(range(len(g)), g.index.astype(str), rotation=60, ha="right", fontsize=8)
        lo = float((g["mean"] - g["std"].fillna(0)).min())
        ax.set(title=metric, ylim=(max(0.0, lo - 0.05), min(1.0, float(g["mean"].max()) + 0.05)))
    if not present:
        axes[0][0].text(0.5, 0.5, "no runs with these metrics yet", ha="center", va="center")
    fig.tight_layout()
    return fig


def plot_zero_shot_blend(table: pd.DataFrame):
    """The zero-shot blend chosen on validation (``model/zero_shot.csv``): left, per mapped class
    with validation recordings, the head's validation ROC-AUC against the backbone's, coloured by
    the weight chosen; right, how many classes took each weight."""
    mapped = table[table["mapped"].astype(bool)]
    scored = mapped.dropna(subset=["val_auc_head", "val_auc_zero_shot"])
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [1.2, 1]})
    sc = ax.scatter(scored["val_auc_zero_shot"], scored["val_auc_head"], c=scored["weight"], cmap="viridis",
                    vmin=0, vmax=1, s=28, edgecolor="k", linewidth=0.3)
    lo = float(min(scored[["val_auc_head", "val_auc_zero_shot"]].min().min(), 0.5)) if len(scored) else 0.5
    ax.plot([lo, 1], [lo, 1], color="grey", lw=0.8, ls="--")
    ax.set(xlabel="backbone alone: validation ROC-AUC", ylabel="trained head: validation ROC-AUC",
           title=f"{len(scored)} mapped classes with validation recordings")
    fig.colorbar(sc, ax=ax, label="blend weight of the backbone")
    counts = mapped["weight"].round(2).value_counts().sort_index()
    bx.bar(counts.index, counts.to_numpy(), width=0.07)
    bx.set(xlabel="blend weight of the backbone (0: head only, 1: backbone only)", ylabel="classes",
           title=f"weights of the {len(mapped)} mapped classes", xlim=(-0.08, 1.08))
    fig.tight_layout()
    return fig
