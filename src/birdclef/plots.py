"""Figures the notebooks show. Each function draws on a new or given Axes and returns the Figure."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd


def log_mel(x: np.ndarray, sr: int, *, n_mels: int = 96, hop_s: float = 0.01) -> np.ndarray:
    """(n,) → (n_mels, frames) log-mel power in dB."""
    import torch
    import torchaudio

    mel = torchaudio.transforms.MelSpectrogram(sample_rate=sr, n_fft=2048 if sr > 24000 else 1024,
                                               hop_length=int(sr * hop_s), n_mels=n_mels, f_min=50, f_max=sr / 2)
    with torch.inference_mode():
        m = mel(torch.from_numpy(np.asarray(x, np.float32)))
    return (10 * torch.log10(m + 1e-10)).numpy()


def plot_class_counts(recordings: pd.DataFrame, *, top: int = 40):
    counts = recordings["primary_label"].value_counts()
    fig, axes = plt.subplots(1, 2, figsize=(14, 4), gridspec_kw={"width_ratios": [3, 1]})
    counts.head(top).plot.bar(ax=axes[0], color="tab:green")
    axes[0].set(title=f"recordings per class (top {min(top, len(counts))} of {len(counts)})", ylabel="recordings")
    if "class_name" in recordings:
        recordings["class_name"].value_counts().plot.barh(ax=axes[1], color="tab:blue")
        axes[1].set(title="recordings per taxon class")
    fig.tight_layout()
    return fig


def plot_durations(recordings: pd.DataFrame):
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.hist(recordings["duration_s"].clip(upper=120), bins=40, color="tab:gray")
    ax.set(xlabel="duration (s, clipped at 120)", ylabel="recordings", title="recording durations")
    fig.tight_layout()
    return fig


def plot_waveform_mel(x: np.ndarray, sr: int, *, title: str = "", speech: list[tuple[float, float]] | None = None,
                      axes=None):
    """Waveform above its log-mel spectrogram; speech intervals shaded red."""
    if axes is None:
        fig, axes = plt.subplots(2, 1, figsize=(10, 4), sharex=True, gridspec_kw={"height_ratios": [1, 2]})
    fig = axes[0].figure
    t = np.arange(len(x)) / sr
    axes[0].plot(t, x, lw=0.4, color="k")
    axes[0].set(title=title, ylabel="amplitude")
    m = log_mel(x, sr)
    axes[1].imshow(m, origin="lower", aspect="auto", extent=(0, len(x) / sr, 0, m.shape[0]), cmap="magma",
                   vmin=m.max() - 80)
    axes[1].set(xlabel="time (s)", ylabel="mel band")
    for a, b in speech or []:
        for ax in axes:
            ax.axvspan(a, b, color="red", alpha=0.25)
    fig.tight_layout()
    return fig


def plot_history(history: pd.DataFrame):
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.5))
    axes[0].plot(history["epoch"], history["train_loss"], label="train")
    axes[0].plot(history["epoch"], history["val_loss"], label="validation")
    axes[0].set(title="loss", xlabel="epoch")
    axes[0].legend()
    axes[1].plot(history["epoch"], history["val_auc"], color="tab:green")
    axes[1].set(title="validation macro ROC-AUC", xlabel="epoch")
    axes[2].plot(history["epoch"], history["lr"], color="tab:gray")
    axes[2].set(title="learning rate (OneCycle)", xlabel="epoch")
    fig.tight_layout()
    return fig


def plot_per_class_auc(per_class: pd.DataFrame, *, top: int = 60):
    df = per_class.dropna(subset=["auc"]).sort_values("auc").head(top)
    fig, ax = plt.subplots(figsize=(max(6, 0.25 * len(df)), 3.5))
    ax.bar(df["label"].astype(str), df["auc"], color="tab:purple")
    ax.axhline(df["auc"].mean(), color="k", ls="--", lw=1, label=f"macro {df['auc'].mean():.3f}")
    ax.set(ylim=(min(0.5, df["auc"].min() - 0.02), 1.0), ylabel="ROC-AUC", title="per-class validation ROC-AUC (worst first)")
    ax.tick_params(axis="x", rotation=90)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_embedding_pca(x: np.ndarray, labels: np.ndarray):
    """2-D PCA of pooled embeddings (n, dim), coloured by label."""
    from sklearn.decomposition import PCA

    z = PCA(n_components=2, random_state=0).fit_transform((x - x.mean(0)) / (x.std(0) + 1e-6))
    fig, ax = plt.subplots(figsize=(6, 5))
    for lab in sorted(set(labels)):
        sel = labels == lab
        ax.scatter(z[sel, 0], z[sel, 1], s=6, label=str(lab), alpha=0.6)
    ax.set(title="embeddings (PCA)", xlabel="PC1", ylabel="PC2")
    if len(set(labels)) <= 20:
        ax.legend(fontsize=7, markerscale=2, ncol=2)
    fig.tight_layout()
    return fig


def plot_soundscape(prob: pd.DataFrame, truth: pd.DataFrame | None = None, *, top: int = 12):
    """Heatmap of window probabilities (rows: windows of one soundscape) for the top classes."""
    labels = prob.drop(columns="row_id").max().sort_values(ascending=False).head(top).index
    if truth is not None:
        present = truth.drop(columns="row_id").columns[truth.drop(columns="row_id").sum() > 0]
        labels = list(dict.fromkeys([*present, *labels]))[:max(top, len(present))]
    fig, ax = plt.subplots(figsize=(10, 0.3 * len(labels) + 1.5))
    ax.imshow(prob[labels].to_numpy().T, aspect="auto", cmap="viridis", vmin=0, vmax=1)
    if truth is not None:
        ys, xs = np.nonzero(truth[labels].to_numpy().T)
        ax.scatter(xs, ys, marker="s", s=40, facecolors="none", edgecolors="red", label="truth")
        ax.legend(loc="upper right", fontsize=7)
    ax.set_yticks(range(len(labels)), [str(c) for c in labels], fontsize=7)
    ax.set_xticks(range(len(prob)), [r.rsplit("_", 1)[-1] for r in prob["row_id"]], fontsize=7)
    ax.set(xlabel="window end (s)", title="window probabilities")
    fig.tight_layout()
    return fig


def plot_cleaning(table: pd.DataFrame, *, n: int = 6):
    """Weak-label cleaning (``model/cleaning.csv``): for the ``n`` longest recordings, the first
    fit's probability of the recording's label per segment; cleaned segments in grey."""
    names = table.groupby("filename").size().sort_values(ascending=False).index[:n]
    fig, axes = plt.subplots(len(names), 1, figsize=(9, 1.3 * len(names) + 0.6), sharex=True, squeeze=False)
    for ax, name in zip(axes[:, 0], names):
        rows = table[table["filename"] == name]
        colors = np.where(rows["cleaned"].astype(bool), "lightgrey", "tab:green")
        ax.bar(rows["segment"], rows["probability"], color=colors, width=0.9)
        ax.set_ylim(0, 1)
        ax.set_ylabel("p(label)", fontsize=8)
        ax.set_title(f"{name}  ({int(rows['cleaned'].sum())} of {len(rows)} segments cleaned)", fontsize=9, loc="left")
    axes[-1, 0].set_xlabel("segment")
    fig.suptitle("weak-label cleaning: kept (green) and cleaned (grey) segments", fontsize=10)
    fig.tight_layout()
    return fig
