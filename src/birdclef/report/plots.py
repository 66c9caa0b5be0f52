"""Every figure the notebooks show (tables and numbers are in :mod:`birdclef.report.tables` and :mod:`birdclef.report.eda`).

Each function draws a new Figure and returns it. Axes carry physical units (seconds, kHz, dB),
colour scales have a colour bar, and plots over classes stay readable at 234 classes: they show
the top ``k`` and say how many there are.
"""
from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from birdclef.report.tables import calibration_table, expected_calibration_error

MEL_F_MIN_HZ = 50.0
WINDOW_S = 5.0  # the competition's scoring window


# ---------------------------------------------------------------- audio


def log_mel(x: np.ndarray, sr: int, *, n_mels: int = 96, hop_s: float = 0.01) -> np.ndarray:
    """(n,) samples → (n_mels, frames) log-mel power in dB (HTK mel bands from 50 Hz to sr / 2)."""
    import torch
    import torchaudio

    mel = torchaudio.transforms.MelSpectrogram(sample_rate=sr, n_fft=2048 if sr > 24000 else 1024,
                                               hop_length=int(sr * hop_s), n_mels=n_mels, f_min=MEL_F_MIN_HZ,
                                               f_max=sr / 2)
    with torch.inference_mode():
        m = mel(torch.from_numpy(np.asarray(x, np.float32)))
    return (10 * torch.log10(m + 1e-10)).numpy()


def _mel(f_hz):
    return 2595.0 * np.log10(1.0 + np.asarray(f_hz, np.float64) / 700.0)  # HTK, as torchaudio's default


def _envelope(ax, x: np.ndarray, sr: int, start_s: float, *, bins: int = 2000) -> None:
    """The waveform as its min/max per time bin: looks like every sample drawn, costs 2000 points."""
    x = np.asarray(x, np.float32)
    edges = np.linspace(0, len(x), min(bins, len(x)) + 1).astype(int)[:-1]
    lo, hi = np.minimum.reduceat(x, edges), np.maximum.reduceat(x, edges)
    ax.fill_between(start_s + edges / sr, lo, hi, color="k", lw=0.3, step="post")


MEL_CMAP = matplotlib.colormaps["magma"].resampled(32)  # 2.5-dB steps over 80 dB: reads the same, a PNG half the size
MEL_RANGE_DB = 80.0


def _mel_image(ax, x: np.ndarray, sr: int, *, start_s: float = 0.0, relative: bool = False):
    """Draw the log-mel spectrogram of ``x`` on ``ax``: time in s, frequency in kHz on a mel scale.

    The colour range is the top :data:`MEL_RANGE_DB` dB; ``relative``: dB below the clip's peak
    (0 at the peak), so several clips share one colour bar. Returns the image (for a colour bar).
    """
    m = log_mel(x, sr)
    if relative:
        m = m - m.max()
    lo, hi = _mel(MEL_F_MIN_HZ), _mel(sr / 2)
    half = (hi - lo) / (m.shape[0] + 1) / 2  # band centres lie between the edges' mel points
    end_s = start_s + len(x) / sr
    im = ax.imshow(m, origin="lower", aspect="auto", extent=(start_s, end_s, lo + half, hi - half), cmap=MEL_CMAP,
                   vmin=float(m.max()) - MEL_RANGE_DB, vmax=float(m.max()), interpolation="nearest")
    ticks = [k for k in (0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 24) if MEL_F_MIN_HZ < k * 1000 <= sr / 2]
    ax.set_yticks(_mel(np.array(ticks) * 1000), [f"{k:g}" for k in ticks])
    ax.set(xlim=(start_s, end_s))
    return im


def plot_waveform_mel(x: np.ndarray, sr: int, *, title: str = "", start_s: float = 0.0,
                      speech: list[tuple[float, float]] | None = None, window_s: float | None = None,
                      window_labels: dict[float, list[str]] | None = None):
    """Waveform above its log-mel spectrogram (kHz on a mel scale, dB colour bar), time in seconds.

    ``start_s``: where ``x`` starts in its recording (the time axis shows recording time).
    ``speech``: (start, end) intervals in recording seconds, shaded red. ``window_s``: scoring
    windows drawn as dashed lines every ``window_s`` from 0 (ticks at their ends);
    ``window_labels`` {window end (s): labels}: written in their windows (labelled soundscapes).
    """
    fig = plt.figure(figsize=(11, 4))
    grid = fig.add_gridspec(2, 2, height_ratios=[1, 2.2], width_ratios=[1, 0.015], hspace=0.08, wspace=0.02)
    wave = fig.add_subplot(grid[0, 0])
    spec = fig.add_subplot(grid[1, 0], sharex=wave)
    end_s = start_s + len(x) / sr
    _envelope(wave, x, sr, start_s)
    wave.set(title=title, ylabel="amplitude\n(full scale)")
    wave.tick_params(labelbottom=False)
    im = _mel_image(spec, x, sr, start_s=start_s)
    spec.set(xlabel="time (s)", ylabel="frequency (kHz, mel scale)")
    fig.colorbar(im, cax=fig.add_subplot(grid[1, 1]), label="power (dB, relative)")
    for a, b in speech or []:
        for ax in (wave, spec):
            ax.axvspan(a, b, color="red", alpha=0.25, lw=0)
    if window_s:
        edges = [e for e in np.arange(0, end_s + 1e-6, window_s) if e >= start_s]
        for edge in edges[1:] if edges and edges[0] == start_s else edges:
            for ax in (wave, spec):
                ax.axvline(edge, color="white" if ax is spec else "tab:blue", lw=0.8, ls="--")
        if len(edges) <= 30:
            spec.set_xticks(edges, [f"{e:g}" for e in edges])
        for end, labels in (window_labels or {}).items():  # on the waveform: the spectrogram stays clear
            if start_s < end <= end_s + 1e-6:
                wave.text(end - window_s / 2, 0.97, "\n".join(labels), ha="center", va="top", fontsize=7,
                          transform=wave.get_xaxis_transform(), color="tab:blue",
                          bbox={"facecolor": "white", "alpha": 0.8, "lw": 0, "pad": 1})
    fig.subplots_adjust(left=0.07, right=0.93, top=0.92, bottom=0.12)
    return fig


def plot_mel_grid(clips: list[tuple[np.ndarray, int, str]], *, ncols: int = 3, title: str = ""):
    """Log-mel spectrograms of several (samples, sample rate, title) clips side by side, in dB
    below each clip's own peak on one colour bar; time in s, frequency in kHz (mel scale)."""
    nrows = max(1, -(-len(clips) // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols + 0.8, 2.3 * nrows + 0.6), squeeze=False,
                             layout="constrained")
    im = None
    for ax, (x, sr, name) in zip(axes.flat, clips):
        im = _mel_image(ax, x, sr, relative=True)
        ax.set_title(name, fontsize=8, loc="left")
        ax.tick_params(labelsize=7)
    for ax in axes.flat[len(clips):]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("kHz (mel scale)", fontsize=8)
    for ax in axes[-1, :]:
        ax.set_xlabel("time (s)", fontsize=8)
    if im is not None:
        fig.colorbar(im, ax=axes, label="power (dB below the clip's peak)", fraction=0.02, pad=0.01)
    if title:
        fig.suptitle(title)
    return fig


# ---------------------------------------------------------------- the data


def plot_class_counts(recordings: pd.DataFrame, *, top: int = 40):
    """Recordings per class (the ``top`` most recorded of all) and per taxon class."""
    counts = recordings["primary_label"].value_counts()
    fig, axes = plt.subplots(1, 2, figsize=(14, 4), gridspec_kw={"width_ratios": [3, 1]})
    counts.head(top).plot.bar(ax=axes[0], color="tab:green")
    axes[0].set(title=f"recordings per class (top {min(top, len(counts))} of {len(counts)})", ylabel="recordings",
                xlabel="primary_label")
    if "class_name" in recordings:
        recordings["class_name"].value_counts().plot.barh(ax=axes[1], color="tab:blue")
        axes[1].set(title="recordings per taxon class", xlabel="recordings", ylabel="")
    fig.tight_layout()
    return fig


def plot_durations(recordings: pd.DataFrame):
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.hist(recordings["duration_s"].clip(upper=120), bins=40, color="tab:gray")
    ax.set(xlabel="duration (s, clipped at 120)", ylabel="recordings", title="recording durations")
    fig.tight_layout()
    return fig


def _heatmap(ax, table: pd.DataFrame, *, cmap: str, vmax: float):
    """``table`` as an image (rows top to bottom) on a 0–``vmax`` scale, its non-zero counts written in."""
    values = table.to_numpy(np.float64)
    im = ax.imshow(values, aspect="auto", cmap=cmap, vmin=0, vmax=vmax, interpolation="nearest")
    ax.set_xticks(range(table.shape[1]), [str(c) for c in table.columns], fontsize=7)
    ax.set_yticks(range(table.shape[0]), [str(i) for i in table.index], fontsize=7)
    if table.size <= 1500:
        for (i, j), v in np.ndenumerate(values):
            if v:
                ax.text(j, i, f"{v:g}", ha="center", va="center", fontsize=6, color="white" if v > vmax / 2 else "black")
    return im


def plot_species_by_site_and_hour(by_site: pd.DataFrame, by_hour: pd.DataFrame):
    """Labelled 5-s soundscape windows per (species, site) and per (species, local hour): two
    heatmaps side by side on one colour scale, one row per species (the most heard first).

    Inputs: :func:`birdclef.report.eda.species_counts` tables (rows: sites / hours, columns: species).
    """
    n_species = by_site.attrs.get("n_species", by_site.shape[1])
    n_windows = by_site.attrs.get("n_windows")
    widths = [max(by_site.shape[0], 2) + 1, max(by_hour.shape[0], 2) + 1]
    fig, axes = plt.subplots(1, 2, figsize=(0.3 * sum(widths) + 4, 0.28 * by_site.shape[1] + 2.2),
                             gridspec_kw={"width_ratios": widths}, layout="constrained")
    vmax = float(max(by_site.to_numpy().max(initial=0), by_hour.to_numpy().max(initial=0), 1))
    label = "labelled 5-s windows"
    for ax, table, what in ((axes[0], by_site, "site"), (axes[1], by_hour, "local hour")):
        im = _heatmap(ax, table.T, cmap="Greens", vmax=vmax)
        ax.set(xlabel=what, title=f"by {what}")
    axes[0].set_ylabel("species (primary_label)")
    axes[1].set_yticklabels([])
    fig.colorbar(im, ax=axes, label=label, fraction=0.03, pad=0.01)
    shown = f"top {by_site.shape[1]} of {n_species}" if by_site.shape[1] < n_species else f"all {n_species}"
    fig.suptitle(f"{label} per species ({shown} species"
                 + (f", {n_windows} windows" if n_windows is not None else "") + ")")
    return fig


# ---------------------------------------------------------------- embeddings


def plot_embedding_pca(x: np.ndarray, labels: np.ndarray, *, top: int = 10,
                       title: str = "embeddings (PCA of standardised dimensions)"):
    """2-D PCA of (n, dim) embeddings: the ``top`` classes by count in distinct colours, the rest grey."""
    from sklearn.decomposition import PCA

    labels = np.asarray(labels).astype(str)
    pca = PCA(n_components=2, random_state=0)
    z = pca.fit_transform((x - x.mean(0)) / (x.std(0) + 1e-6))
    counts = pd.Series(labels).value_counts()
    shown = list(counts.index[:top])
    fig, ax = plt.subplots(figsize=(8.5, 5.5))
    rest = ~np.isin(labels, shown)
    if rest.any():
        ax.scatter(z[rest, 0], z[rest, 1], s=5, color="lightgrey", alpha=0.6,
                   label=f"others ({len(counts) - len(shown)} classes, {int(rest.sum())} points)")
    colours = matplotlib.colormaps["tab10" if len(shown) <= 10 else "tab20"].colors
    for i, lab in enumerate(shown):
        sel = labels == lab
        ax.scatter(z[sel, 0], z[sel, 1], s=9, color=colours[i % len(colours)], alpha=0.8, label=f"{lab} ({sel.sum()})")
    var = pca.explained_variance_ratio_
    ax.set(title=f"{title}: {len(labels)} points, {len(counts)} classes",
           xlabel=f"PC1 ({var[0]:.0%} of variance)", ylabel=f"PC2 ({var[1]:.0%} of variance)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, markerscale=2, frameon=False,
              title=f"top {len(shown)} classes by count")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- training


def plot_history(history: pd.DataFrame):
    """Loss, validation macro ROC-AUC and learning rate per epoch."""
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.5))
    axes[0].plot(history["epoch"], history["train_loss"], label="train")
    axes[0].plot(history["epoch"], history["val_loss"], label="validation")
    axes[0].set(title="loss", xlabel="epoch", ylabel="loss per example")
    axes[0].legend(frameon=False)
    if "val_mix_auc" in history:  # both validation scores; the one that picked the epoch is solid
        picked_mix = np.allclose(history["val_auc"], history["val_mix_auc"], equal_nan=True)
        axes[1].plot(history["epoch"], history["val_labelled_auc"], color="tab:green", ls=":" if picked_mix else "-",
                     label="focal recordings" + (" + labelled windows" if "val_soundscape_auc" in history else ""))
        axes[1].plot(history["epoch"], history["val_mix_auc"], color="tab:orange", ls="-" if picked_mix else ":",
                     label="validation soundscapes")
        axes[1].legend(frameon=False, title="solid: picks the epoch", fontsize=8, title_fontsize=8)
    else:
        axes[1].plot(history["epoch"], history["val_auc"], color="tab:green")
    axes[1].set(title="validation macro ROC-AUC", xlabel="epoch", ylabel="ROC-AUC")
    axes[2].plot(history["epoch"], history["lr"], color="tab:gray")
    axes[2].set(title="learning rate (OneCycle)", xlabel="epoch", ylabel="learning rate")
    fig.tight_layout()
    return fig


def plot_per_class_auc(per_class: pd.DataFrame, *, top: int = 60,
                       title: str = "per-class validation ROC-AUC", unit: str = "validation examples"):
    """ROC-AUC per class (columns label, auc and optionally positives), the ``top`` worst shown.

    The dashed line is the macro mean over every scored class (a class without positives has no
    AUC); the y axis starts at 0.5 (chance) unless a class is near or below it, and says so. With ``positives``, each tick names the count of
    positive ``unit``.
    """
    scored = per_class.dropna(subset=["auc"]).sort_values("auc")
    df = scored.head(top)
    fig, ax = plt.subplots(figsize=(max(7.0, 0.25 * len(df) + 2), 4))
    names = df["label"].astype(str)
    if "positives" in df:
        names = [f"{n} ({int(p)})" for n, p in zip(names, df["positives"])]
    ax.bar(range(len(df)), df["auc"], color="tab:purple")
    ax.set_xticks(range(len(df)), names, rotation=90, fontsize=7)
    macro = float(scored["auc"].mean()) if len(scored) else float("nan")
    ax.axhline(macro, color="k", ls="--", lw=1)
    # from 0.5 (chance) unless a class is at or below it: then a little under the worst, so every bar shows
    floor = 0.5 if not len(df) or df["auc"].min() > 0.52 else max(0.0, np.floor((df["auc"].min() - 0.02) * 10) / 10)
    if floor < 0.5:
        ax.axhline(0.5, color="grey", ls=":", lw=1)
    unscored = len(per_class) - len(scored)
    shown = (f"worst {len(df)} of {len(scored)}" if len(df) < len(scored) else f"all {len(scored)}") + " scored"
    shown += f" ({unscored} without positives)" if unscored else ""
    ax.set(ylim=(floor, 1.0), ylabel="ROC-AUC (axis from 0.5 = chance)" if floor == 0.5 else f"ROC-AUC (axis from {floor:g})",
           xlabel="class" + (f" (positive {unit})" if "positives" in df else ""),
           title=f"{title}\n{shown} classes, worst first; dashed: macro {macro:.3f}"
                 + (f" over all {len(scored)}" if len(df) < len(scored) else ""))
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
    axes[-1, 0].set_xlabel("segment (in recording order)")
    fig.suptitle("weak-label cleaning: kept (green) and cleaned (grey) segments", fontsize=10)
    fig.tight_layout()
    return fig


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
    fig, ax = plt.subplots(figsize=(7.5, 3.5))
    ax2 = ax.twinx()
    ax2.bar(rounds["round"], rounds["n_windows"], color="tab:gray", alpha=0.3, label="windows pseudo-labelled")
    ax2.set_ylabel("windows pseudo-labelled")
    ax.plot(rounds["round"], rounds["guard"], marker="o", color="tab:green", label="guard score")
    ax.plot(rounds["round"], rounds["val_auc"], marker="s", color="tab:blue", label="validation AUC")
    for r in rounds[~rounds["kept"].astype(bool)].itertuples():
        ax.annotate("dropped", (r.round, r.guard), textcoords="offset points", xytext=(0, 8), ha="center",
                    color="tab:red", fontsize=8)
    ax.set(xlabel="round", ylabel="macro ROC-AUC", title="pseudo-labelling rounds", xticks=rounds["round"])
    ax.set_zorder(ax2.get_zorder() + 1)
    ax.patch.set_visible(False)
    handles = [h for a in (ax, ax2) for h in a.get_legend_handles_labels()[0]]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.12, 1.0), fontsize=8, frameon=False)
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


# ---------------------------------------------------------------- submission and runs


def plot_soundscape(prob: pd.DataFrame, truth: pd.DataFrame | None = None, *, top: int = 12,
                    window_s: float = WINDOW_S):
    """Window probabilities of one soundscape (rows ``<stem>_<end s>``, columns row_id + classes) as a heatmap.

    Rows: the ``top`` classes by highest probability and the classes in ``truth`` (red squares),
    most probable first; columns: the 5-s windows, on a time axis in seconds. The colour scale runs
    from 0 to the highest probability shown.
    """
    classes = prob.drop(columns="row_id")
    peak = classes.max().sort_values(ascending=False, kind="stable")
    labels = list(peak.head(top).index)
    present = []
    if truth is not None:
        present = list(truth.drop(columns="row_id").columns[truth.drop(columns="row_id").sum() > 0])
        labels = [c for c in peak.index if c in set(labels) | set(present)]  # by peak probability
    ends = np.array([float(r.rsplit("_", 1)[-1]) for r in prob["row_id"]])
    stem = str(prob["row_id"].iloc[0]).rsplit("_", 1)[0]
    values = prob[labels].to_numpy(np.float64).T
    vmax = float(values.max()) if values.size and values.max() > 0 else 1.0
    fig, ax = plt.subplots(figsize=(11, 0.3 * len(labels) + 2))
    im = ax.imshow(values, aspect="auto", cmap="viridis", vmin=0, vmax=vmax, interpolation="nearest",
                   extent=(ends[0] - window_s, ends[-1], len(labels) - 0.5, -0.5))
    if truth is not None:
        ys, xs = np.nonzero(truth[labels].to_numpy().T)
        ax.scatter(ends[xs] - window_s / 2, ys, marker="s", s=60, facecolors="none", edgecolors="red", lw=1.2)
    ax.set_yticks(range(len(labels)), [str(c) for c in labels], fontsize=7)
    ax.set_xticks(ends, [f"{e:g}" for e in ends], fontsize=7)
    ax.set(xlabel="time (s): each column is the 5-s window ending there", ylabel="class",
           title=f"{stem}: window probabilities of the top {min(top, len(peak))} of {classes.shape[1]} classes"
                 + (f" and the {len(present)} in the truth (red squares)" if truth is not None else ""))
    fig.colorbar(im, ax=ax, label=f"probability (0 – {vmax:.2f}, the highest shown)", fraction=0.03, pad=0.01)
    fig.tight_layout()
    return fig


def plot_runs(runs: pd.DataFrame, metrics: list[str], *, by: str = "run_name"):
    """One panel per metric: mean ± standard deviation over the runs of each ``by`` group, on the full
    0–1 scale with the values written beside the bars (the differences that matter are often < 0.01)."""
    present = [m for m in metrics if m in runs.columns and runs[m].notna().any()]
    groups = runs[by].astype(str).nunique() if by in runs else 1
    fig, axes = plt.subplots(1, max(1, len(present)), figsize=(5.2 * max(1, len(present)), 0.45 * groups + 1.8),
                             squeeze=False)
    for ax, metric in zip(axes[0], present):
        g = runs.dropna(subset=[metric]).groupby(by, sort=False)[metric].agg(["mean", "std", "count"])
        y = np.arange(len(g))
        ax.barh(y, g["mean"], color="tab:blue", alpha=0.8)
        spread = g["count"] > 1
        ax.errorbar(g["mean"][spread], y[spread.to_numpy()], xerr=g["std"][spread], fmt="none", ecolor="k", capsize=3)
        for yi, (mean, std, count) in zip(y, g.itertuples(index=False)):
            spread = f" ± {std:.3f}" if count > 1 else ""
            ax.text(1.02, yi, f"{mean:.3f}{spread} ({count} run{'s' if count > 1 else ''})", va="center", fontsize=8,
                    transform=ax.get_yaxis_transform())
        ax.set_yticks(y, g.index.astype(str), fontsize=8)
        ax.invert_yaxis()
        ax.set(title=metric, xlim=(0, 1), xlabel=f"{metric} (mean ± sd, full 0–1 scale)")
    if not present:
        axes[0][0].text(0.5, 0.5, "no runs with these metrics yet", ha="center", va="center")
    fig.tight_layout()
    return fig
