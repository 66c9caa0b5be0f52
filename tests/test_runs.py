"""The runs table and the quality report's tables and figures."""
import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from birdclef.config import build_config  # noqa: E402
from birdclef.report.plots import plot_calibration, plot_pseudo_rounds, plot_runs  # noqa: E402
from birdclef.report.tables import calibration_table, expected_calibration_error  # noqa: E402
from birdclef.runs import load_runs, record_run, runs_table_path, summarise  # noqa: E402


def test_runs_accumulate_with_config_and_metrics(tmp_path):
    a = build_config(work_dir=str(tmp_path), recipe="seed", seed=0)
    b = build_config(work_dir=str(tmp_path), recipe="improved", seed=1, run_name="mine")
    assert load_runs(tmp_path).empty
    record_run(a, stage="train", metrics={"val_auc": 0.8})
    path = record_run(b, stage="submit", metrics={"local_score": 0.9})
    assert path == runs_table_path(a) == tmp_path / "runs.csv"
    runs = load_runs(path)
    assert runs["run_name"].tolist() == ["seed", "mine"] and runs["stage"].tolist() == ["train", "submit"]
    assert runs["smoothing_kernel"].iloc[1] == "[0.25, 0.5, 0.25]"
    assert np.isnan(runs["local_score"].iloc[0]) and runs["val_auc"].iloc[0] == 0.8
    assert runs["run_id"].is_unique
    elsewhere = build_config(work_dir=str(tmp_path / "x"), runs_table=str(tmp_path / "all.csv"))
    assert record_run(elsewhere, stage="train", metrics={}) == tmp_path / "all.csv"


def test_summary_and_plot_show_runs_side_by_side():
    runs = pd.DataFrame({"run_name": ["seed", "seed", "improved", "improved"], "local_score": [0.9, 0.92, 0.95, 0.96],
                         "val_auc": [0.8, 0.82, np.nan, 0.85]})
    table = summarise(runs, ["local_score", "val_auc", "absent"])
    assert list(table.index) == ["seed", "improved"]
    assert table.loc["improved", ("local_score", "mean")] == 0.955
    fig = plot_runs(runs, ["local_score", "val_auc"])
    assert len(fig.axes) == 2


def test_calibration_table_and_error():
    rng = np.random.default_rng(0)
    score = rng.random((4000, 3))
    truth = rng.random((4000, 3)) < score  # calibrated by construction
    table = calibration_table(truth, score, n_bins=5)
    assert table["count"].sum() == truth.size and len(table) == 5
    assert expected_calibration_error(table) < 0.02
    assert expected_calibration_error(calibration_table(truth, score ** 4, n_bins=5)) > 0.1
    assert len(plot_calibration(truth, score).axes) == 2


def test_pseudo_rounds_plot_marks_dropped_rounds():
    rounds = pd.DataFrame({"round": [0, 1, 2], "n_windows": [0, 40, 38], "val_auc": [0.9, 0.91, 0.9],
                           "guard": [0.88, 0.9, 0.89], "kept": [True, True, False]})
    fig = plot_pseudo_rounds(rounds)
    assert any(t.get_text() == "dropped" for t in fig.axes[-1].texts + fig.axes[0].texts)
