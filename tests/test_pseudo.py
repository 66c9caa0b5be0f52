"""Pseudo-labelling rounds, fold ensembles and the runs table on the tiny demo (melstats backbone)."""
import numpy as np
import pandas as pd
import pytest

from birdclef.config import build_config
from birdclef.embeddings import Embedded
from birdclef.preprocess import run_preprocess
from birdclef.pseudo import pseudo_examples, round_heads, select_windows
from birdclef.runs import load_runs
from birdclef.submission import run_submission
from birdclef.train import run_training


@pytest.fixture(scope="module")
def improved(tiny_demo, tmp_path_factory):
    work = tmp_path_factory.mktemp("improved")
    config = build_config(recipe="improved", data_dir=str(tiny_demo), work_dir=str(work), backbone="melstats",
                          backbone_path=None, epochs=6, pseudo_threshold=0.1, run_name="improved-tiny")
    run_preprocess(config=config)
    return config, run_training(config=config, progress=False)


def test_select_windows_thresholds_and_caps_per_top_class():
    probs = {"s1": np.array([[0.9, 0.1], [0.2, 0.3], [0.6, 0.7]]), "s2": np.array([[0.8, 0.0], [0.1, 0.95]])}
    rows = select_windows(probs, threshold=0.5, max_per_class=None)
    assert [(s, w) for s, w, _ in rows] == [("s1", 0), ("s1", 2), ("s2", 0), ("s2", 1)]
    capped = select_windows(probs, threshold=0.5, max_per_class=1)
    assert [(s, w) for s, w, _ in capped] == [("s1", 0), ("s2", 1)]  # the most confident of each top class


def test_pseudo_targets_are_soft_for_multi_label_and_hard_for_ce():
    e = Embedded(np.ones((10, 3), np.float32), np.arange(10.0), np.zeros(10, np.float32), 10.0)
    selected = [("s", 1, np.array([0.7, 0.3, 0.05], np.float32))]
    soft = pseudo_examples({"s": e}, selected, build_config(loss="bce", pseudo_threshold=0.2, pseudo_weight=0.4))
    np.testing.assert_allclose(soft.targets[0], [0.7, 0.3, 0.0])
    assert len(soft) == 5 and set(soft.weights) == {np.float32(0.4)} and set(soft.groups) == {"pseudo:s"}
    hard = pseudo_examples({"s": e}, selected, build_config(loss="ce", pseudo_threshold=0.2))
    np.testing.assert_allclose(hard.targets[0], [1.0, 0.0, 0.0])


def test_rounds_are_reported_and_only_non_decreasing_rounds_kept(improved):
    config, result = improved
    rounds = result.pseudo_rounds
    assert list(rounds.columns) == ["round", "n_windows", "n_examples", "precision", "val_auc", "guard", "gain", "kept"]
    assert rounds["round"].iloc[0] == 0 and bool(rounds["kept"].iloc[0])
    assert 1 <= len(rounds) <= config.pseudo_rounds + 1 and rounds["n_windows"].iloc[1] > 0
    kept = rounds["kept"].astype(bool).tolist()
    assert kept == sorted(kept, reverse=True)  # nothing is kept after the first dropped round
    assert (rounds.loc[rounds["kept"].astype(bool), "guard"].diff().dropna() >= 0).all()
    assert result.metrics["pseudo_rounds_kept"] == sum(kept) - 1
    assert result.metrics["pseudo_guard"] == "soundscape_score"  # the demo has train-soundscape truth
    assert (result.out_dir / "pseudo_rounds.csv").exists()
    assert sorted(round_heads(result.out_dir)) == list(range(len(rounds)))


def test_training_writes_calibration_inputs_and_a_runs_row(improved):
    config, result = improved
    val = np.load(result.out_dir / "val_predictions.npz")
    assert val["y_true"].shape == val["y_score"].shape
    runs = load_runs(config.work_dir)
    row = runs[runs["stage"] == "train"].iloc[-1]
    assert row["run_name"] == "improved-tiny" and row["loss"] == "bce" and np.isfinite(row["val_auc"])
    assert "soundscape_score" in runs.columns


def test_fold_ensemble_submission_is_valid_scored_and_recorded(improved, tiny_demo):
    config, result = improved
    single = run_submission(config=config)
    other = build_config(**{**config.to_dict(), "work_dir": str(result.out_dir.parent / "fold1"), "fold": 1,
                            "pseudo_rounds": 0})
    (result.out_dir.parent / "fold1").mkdir(exist_ok=True)
    for sub in ("embeddings", "preprocess"):
        (result.out_dir.parent / "fold1" / sub).symlink_to(result.out_dir.parent / sub)
    fold1 = run_training(config=other, progress=False)
    ens_config = build_config(**{**config.to_dict(), "ensemble_model_dirs": [str(fold1.out_dir)]})
    ens = run_submission(config=ens_config, out_path=result.out_dir.parent / "ensemble.csv")
    labels = pd.read_csv(tiny_demo / "taxonomy.csv", dtype=str)["primary_label"].tolist()
    assert list(ens.submission["row_id"]) == list(single.submission["row_id"])
    assert not np.allclose(ens.submission[labels].to_numpy(), single.submission[labels].to_numpy())
    assert ens.score is not None and single.score is not None
    same = run_submission(config=build_config(**{**config.to_dict(), "ensemble_model_dirs": [str(result.out_dir)]}),
                          out_path=result.out_dir.parent / "same.csv")
    np.testing.assert_allclose(same.submission[labels].to_numpy(), single.submission[labels].to_numpy(), atol=2e-3)
    submits = load_runs(config.work_dir).query("stage == 'submit'")
    assert submits["n_models"].tolist()[-3:] == [1, 2, 2] and submits["local_score"].notna().all()


def test_improved_training_cleans_half_of_each_recording_and_writes_the_table(improved):
    import matplotlib

    matplotlib.use("Agg")
    from birdclef import plots

    config, result = improved
    table = pd.read_csv(result.out_dir / "cleaning.csv")
    assert list(table.columns) == ["filename", "segment", "label", "probability", "cleaned"]
    assert result.metrics["n_cleaned_segments"] == int(table["cleaned"].sum()) > 0
    for _, rows in table.groupby("filename"):
        assert rows["cleaned"].sum() == min(len(rows) // 2, len(rows) - 1)  # segment_cleaning=0.5
        assert list(rows["segment"]) == list(range(len(rows)))
        if rows["cleaned"].any():  # the cleaned ones are the least like the label
            assert rows.loc[rows["cleaned"], "probability"].max() <= rows.loc[~rows["cleaned"], "probability"].min()
    fig = plots.plot_cleaning(table, n=3)
    assert len(fig.axes) == 3


def test_training_without_cleaning_removes_a_stale_cleaning_table(improved, tmp_path):
    config, result = improved
    plain = build_config(**{**config.to_dict(), "segment_cleaning": 0.0, "pseudo_rounds": 0})
    again = run_training(config=plain, progress=False)
    assert again.out_dir == result.out_dir and not (again.out_dir / "cleaning.csv").exists()
    assert "n_cleaned_segments" not in again.metrics
