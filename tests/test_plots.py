"""The figures: axes in physical units, colour bars, names in titles, readable at 234 classes."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from birdclef.report import eda, plots  # noqa: E402

N_CLASSES = 234  # BirdCLEF+ 2026


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _colorbars(fig):
    """The colour-bar axes of ``fig`` (matplotlib marks them with ``_colorbar``)."""
    return [ax for ax in fig.axes if getattr(ax, "_colorbar", None) is not None]


def _labels(n=N_CLASSES):
    return [f"{1000000 + i}" for i in range(n)]


def test_embedding_pca_colours_the_top_classes_and_greys_the_rest():
    rng = np.random.default_rng(0)
    labels = np.array(_labels())[rng.zipf(1.5, 3000) % N_CLASSES]
    fig = plots.plot_embedding_pca(rng.normal(size=(3000, 32)), labels, top=10)
    ax = fig.axes[0]
    legend = ax.get_legend()
    texts = [t.get_text() for t in legend.get_texts()]
    assert len(texts) == 11  # ≤ k + 1 entries at 234 classes
    assert texts[0].startswith("others") and "classes" in texts[0]
    top10 = pd.Series(labels).value_counts().index[:10]
    assert [t.split(" ")[0] for t in texts[1:]] == list(top10)
    colours = [tuple(np.round(c.get_facecolor()[0][:3], 3)) for c in ax.collections]
    assert len(set(colours[1:])) == 10  # distinct colours, none reused
    assert colours[0] not in colours[1:]  # "others" in its own grey
    bbox = legend.get_window_extent(fig.canvas.get_renderer())
    assert bbox.x0 >= ax.get_window_extent(fig.canvas.get_renderer()).x1  # outside the axes
    assert "variance" in ax.get_xlabel() and "variance" in ax.get_ylabel()
    assert "3000 points" in ax.get_title() and f"{len(set(labels))} classes" in ax.get_title()


def test_embedding_pca_with_few_classes_has_no_others():
    rng = np.random.default_rng(1)
    fig = plots.plot_embedding_pca(rng.normal(size=(60, 8)), np.repeat(["a", "b", "c"], 20))
    texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert len(texts) == 3 and not any(t.startswith("others") for t in texts)


def _soundscape(n_classes=N_CLASSES, seed=0):
    rng = np.random.default_rng(seed)
    row_id = [f"BC2026_Test_0001_S05_20250227_010002_{e}" for e in range(5, 65, 5)]
    prob = pd.DataFrame(rng.random((12, n_classes)) * 0.4, columns=_labels(n_classes))
    prob.insert(0, "row_id", row_id)
    truth = pd.DataFrame(0, index=range(12), columns=_labels(n_classes))
    truth.iloc[[2, 3], 7] = 1  # a class the probabilities do not rank high
    truth.insert(0, "row_id", row_id)
    return prob, truth


def test_soundscape_heatmap_has_a_colour_bar_from_the_data_seconds_and_the_name():
    prob, truth = _soundscape()
    fig = plots.plot_soundscape(prob, truth, top=12)
    ax = fig.axes[0]
    (bar,) = _colorbars(fig)
    image = ax.get_images()[0]
    assert image.get_clim() == (0, pytest.approx(prob[_labels()].to_numpy().max()))  # not a fixed 0-1 scale
    assert "probability" in bar.get_ylabel()
    assert "BC2026_Test_0001_S05_20250227_010002" in ax.get_title()
    assert "(s)" in ax.get_xlabel()
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(e) for e in range(5, 65, 5)]
    assert ax.get_xlim() == (0, 60)  # the windows on a time axis
    rows = [t.get_text() for t in ax.get_yticklabels()]
    assert len(rows) == 13 and _labels()[7] in rows  # the top 12 of 234, and the class in the truth
    assert len(ax.collections[0].get_offsets()) == 2  # its two windows marked


def test_soundscape_heatmap_without_truth_shows_the_top_classes():
    prob, _ = _soundscape()
    ax = plots.plot_soundscape(prob, None, top=5).axes[0]
    peak = prob[_labels()].max().sort_values(ascending=False).index[:5]
    assert [t.get_text() for t in ax.get_yticklabels()] == list(peak)


def test_waveform_mel_has_khz_axis_db_bar_seconds_and_windows():
    sr = 32000
    t = np.arange(12 * sr) / sr
    x = (0.3 * np.sin(2 * np.pi * 4000 * t)).astype(np.float32)  # a 4-kHz tone
    fig = plots.plot_waveform_mel(x, sr, title="S22 soundscape", start_s=3.0, window_s=5.0,
                                  window_labels={10.0: ["a", "b"], 15.0: ["c"]}, speech=[(4.0, 5.0)])
    wave, spec = fig.axes[:2]
    (bar,) = _colorbars(fig)
    assert "dB" in bar.get_ylabel()
    assert "kHz" in spec.get_ylabel() and spec.get_xlabel() == "time (s)"
    assert spec.get_xlim() == pytest.approx((3.0, 15.0))  # recording time, from start_s
    ticks = dict(zip([t.get_text() for t in spec.get_yticklabels()], spec.get_yticks()))
    assert set(ticks) >= {"0.5", "1", "2", "4", "8", "16"}
    # the tone is brightest in the band row at the 4-kHz tick
    image = spec.get_images()[0]
    m = image.get_array()
    lo, hi = image.get_extent()[2:]
    row = int(np.argmax(m.mean(axis=1)))
    centre = lo + (row + 0.5) * (hi - lo) / m.shape[0]
    assert abs(centre - ticks["4"]) < (hi - lo) / m.shape[0] * 1.5
    dashed = [line.get_xdata()[0] for line in spec.get_lines() if line.get_linestyle() == "--"]
    assert dashed == [5.0, 10.0, 15.0]  # the 5-s windows inside 3-15 s
    assert [t.get_text() for t in wave.texts] == ["a\nb", "c"]
    assert wave.texts[0].get_position()[0] == 7.5  # written in the window ending at 10 s
    assert len(spec.patches) == 1  # the speech interval


def test_mel_grid_shares_one_db_scale():
    sr = 16000
    clips = [(np.random.default_rng(i).normal(0, 0.1, 3 * sr).astype(np.float32), sr, f"class {i}") for i in range(5)]
    fig = plots.plot_mel_grid(clips, ncols=3)
    (bar,) = _colorbars(fig)
    assert "dB" in bar.get_ylabel()
    panels = [ax for ax in fig.axes if ax.get_images()]
    assert len(panels) == 5 and all(ax.get_images()[0].get_clim() == (-80.0, 0.0) for ax in panels)
    assert all("kHz" in ax.get_ylabel() for ax in panels if ax.get_subplotspec().is_first_col())
    assert [ax.get_title(loc="left") for ax in panels] == [f"class {i}" for i in range(5)]


def test_per_class_auc_states_its_floor_and_keeps_bars_clear():
    rng = np.random.default_rng(0)
    per_class = pd.DataFrame({"label": _labels(), "positives": rng.integers(1, 40, N_CLASSES),
                              "auc": rng.uniform(0.55, 1.0, N_CLASSES)})
    per_class.loc[3, "auc"] = np.nan  # a class without positives
    fig = plots.plot_per_class_auc(per_class, top=60)
    ax = fig.axes[0]
    assert ax.get_legend() is None  # nothing drawn over the bars
    assert len(ax.patches) == 60 and ax.get_ylim() == (0.5, 1.0) and "0.5" in ax.get_ylabel()
    assert "worst 60 of 233" in ax.get_title()
    assert f"{per_class['auc'].mean():.3f}" in ax.get_title()  # the macro mean over every scored class
    worst = per_class.dropna().sort_values("auc").iloc[0]
    assert ax.get_xticklabels()[0].get_text() == f"{worst['label']} ({worst['positives']})"
    below = per_class.assign(auc=per_class["auc"] - 0.2)
    low = plots.plot_per_class_auc(below).axes[0]
    assert low.get_ylim()[0] <= below["auc"].min() and f"{low.get_ylim()[0]:g}" in low.get_ylabel()


def test_per_class_auc_on_soundscape_windows_from_a_csv(tmp_path):
    # the artefact 03_train shows: model/soundscape_per_class_auc.csv (label, positives, auc)
    csv = tmp_path / "soundscape_per_class_auc.csv"
    csv.write_text("label,positives,auc\n22961,12,0.91\n47158son16,3,0.62\n65380,0,\nrufwar1,7,0.77\ntaweup1,4,0.5\n")
    table = pd.read_csv(csv, dtype={"label": str})
    ax = plots.plot_per_class_auc(table, title="per-class ROC-AUC on held-out labelled soundscape windows",
                                  unit="windows").axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["taweup1 (4)", "47158son16 (3)", "rufwar1 (7)", "22961 (12)"]
    assert "soundscape windows" in ax.get_title() and "windows" in ax.get_xlabel()
    assert "all 4 scored (1 without positives)" in ax.get_title()
    assert [p.get_height() for p in ax.patches] == pytest.approx([0.5, 0.62, 0.77, 0.91])
    assert ax.get_ylim()[0] < 0.5  # a class at chance still shows a bar


def test_runs_show_the_full_scale_with_values_written():
    runs = pd.DataFrame({"run_name": ["seed", "seed", "improved"], "local_score": [0.90, 0.92, 0.95],
                         "val_auc": [0.8, 0.82, np.nan]})
    fig = plots.plot_runs(runs, ["local_score", "val_auc", "absent"])
    assert len(fig.axes) == 2
    ax = fig.axes[0]
    assert ax.get_xlim() == (0, 1) and "full 0–1 scale" in ax.get_xlabel()
    texts = [t.get_text() for t in ax.texts]
    assert texts == ["0.910 ± 0.014 (2 runs)", "0.950 (1 run)"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["seed", "improved"]


def test_species_by_site_and_hour_counts_labelled_windows():
    windows = pd.DataFrame({
        "filename": ["a.ogg", "a.ogg", "b.ogg", "c.ogg", "d.ogg"],
        "labels": [["x", "y"], ["x"], ["y"], ["x", "z"], ["x"]],
        "site": ["S01", "S01", "S02", "S22", None], "hour": [4, 4, 13, 20, None],
    })
    by_site = eda.species_counts(windows, by="site", top=2)
    assert list(by_site.columns) == ["x", "y"] and by_site.attrs["n_species"] == 3  # x: 4 windows, y: 2, z: 1
    assert by_site.loc["S01"].tolist() == [2, 1] and by_site.loc["S22"].tolist() == [1, 0]
    by_hour = eda.species_counts(windows, by="hour", top=2)
    assert list(by_hour.index) == list(range(24)) and by_hour.loc[4].tolist() == [2, 1]
    assert by_hour.to_numpy().sum() == 5 and by_hour.attrs["n_windows"] == 4  # d.ogg: no site, no time
    fig = plots.plot_species_by_site_and_hour(by_site, by_hour)
    site_ax, hour_ax = [ax for ax in fig.axes if ax.get_images()]
    (bar,) = _colorbars(fig)
    assert "windows" in bar.get_ylabel()
    assert site_ax.get_xlabel() == "site" and hour_ax.get_xlabel() == "local hour"
    assert [t.get_text() for t in site_ax.get_yticklabels()] == ["x", "y"]  # one row per species
    assert site_ax.get_images()[0].get_array().tolist() == by_site.T.to_numpy().tolist()
    assert "top 2 of 3 species" in fig.get_suptitle()


def test_soundscape_window_labels_and_the_most_labelled_file():
    windows = pd.DataFrame({"filename": ["a.ogg", "b.ogg", "b.ogg"], "end_s": [5, 5, 10],
                            "labels": [["x", "y", "z"], ["x"], ["y", "z"]]})
    assert eda.most_labelled(windows) == "a.ogg"  # 3 pairs each: the first; b has 3 too
    assert eda.most_labelled(windows.iloc[1:]) == "b.ogg"
    assert eda.most_labelled(None) is None
    assert eda.window_labels(windows, "b.ogg") == {5.0: ["x"], 10.0: ["y", "z"]}


def test_history_and_pseudo_round_legends_stay_off_the_bars():
    history = pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [1, 0.5, 0.3], "val_loss": [1, 0.7, 0.6],
                            "val_auc": [0.6, 0.8, 0.85], "lr": [1e-4, 1e-3, 1e-4]})
    fig = plots.plot_history(history)
    assert all(ax.get_ylabel() for ax in fig.axes)
    rounds = pd.DataFrame({"round": [0, 1, 2], "n_windows": [0, 40, 38], "val_auc": [0.9, 0.91, 0.9],
                           "guard": [0.88, 0.9, 0.89], "kept": [True, True, False]})
    fig = plots.plot_pseudo_rounds(rounds)
    renderer = fig.canvas.get_renderer()
    legend = next(ax.get_legend() for ax in fig.axes if ax.get_legend() is not None)
    assert len(legend.get_texts()) == 3
    assert legend.get_window_extent(renderer).x0 >= max(ax.get_window_extent(renderer).x1 for ax in fig.axes)

