"""Pseudo-labelling rounds, fold ensembles and the runs table on the tiny demo (melstats backbone)."""
import dataclasses

import numpy as np
import pandas as pd
import pytest

from birdclef.config import build_config
from birdclef.features.embeddings import Embedded
from birdclef.features.preprocess import run_preprocess
from birdclef.features.soundscapes import load_soundscapes
from birdclef.models.examples import speech_free_frames
from birdclef.models.pseudo import pseudo_examples, pseudo_label, round_heads, select_windows, soft_examples
from birdclef.models.softlabels import soft_targets
from birdclef.models.train import run_training
from birdclef.runs import load_runs
from birdclef.submission.submit import run_submission


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


@pytest.mark.slow
def test_rounds_are_reported_and_only_non_decreasing_rounds_kept(improved):
    config, result = improved
    rounds = result.pseudo_rounds
    assert list(rounds.columns) == ["round", "n_windows", "n_examples", "precision", "mean_target_sum", "val_auc",
                                    "guard", "gain", "kept"]
    assert rounds["round"].iloc[0] == 0 and bool(rounds["kept"].iloc[0])
    assert 1 <= len(rounds) <= config.pseudo_rounds + 1 and rounds["n_windows"].iloc[1] > 0
    kept = rounds["kept"].astype(bool).tolist()
    assert kept == sorted(kept, reverse=True)  # nothing is kept after the first dropped round
    assert (rounds.loc[rounds["kept"].astype(bool), "guard"].diff().dropna() >= 0).all()
    assert result.metrics["pseudo_rounds_kept"] == sum(kept) - 1
    assert result.metrics["pseudo_guard"] == "soundscape_score"  # the demo has train-soundscape truth
    assert (result.out_dir / "pseudo_rounds.csv").exists()
    assert sorted(round_heads(result.out_dir)) == list(range(len(rounds)))


@pytest.mark.slow
def test_training_writes_calibration_inputs_and_a_runs_row(improved):
    config, result = improved
    val = np.load(result.out_dir / "val_predictions.npz")
    assert val["y_true"].shape == val["y_score"].shape
    runs = load_runs(config.work_dir)
    row = runs[runs["stage"] == "train"].iloc[-1]
    assert row["run_name"] == "improved-tiny" and row["loss"] == "bce" and np.isfinite(row["val_auc"])
    assert "soundscape_score" in runs.columns


@pytest.mark.slow
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


@pytest.mark.slow
def test_improved_training_cleans_half_of_each_recording_and_writes_the_table(improved):
    import matplotlib

    matplotlib.use("Agg")
    from birdclef.report import plots

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


@pytest.mark.slow
def test_training_without_cleaning_removes_a_stale_cleaning_table(improved, tmp_path):
    config, result = improved
    plain = build_config(**{**config.to_dict(), "segment_cleaning": 0.0, "pseudo_rounds": 0})
    again = run_training(config=plain, progress=False)
    assert again.out_dir == result.out_dir and not (again.out_dir / "cleaning.csv").exists()
    assert "n_cleaned_segments" not in again.metrics


def test_soft_targets_apply_the_power_and_cap_each_window_sum():
    prob = np.array([[0.9, 0.8, 0.1], [0.3, 0.2, 0.1], [1.2, -0.1, 0.5]])
    np.testing.assert_allclose(soft_targets(prob), np.clip(prob, 0, 1), rtol=1e-6)  # power 1, no cap: the probability
    powered = soft_targets(prob, power=2.0)
    np.testing.assert_allclose(powered, np.clip(prob, 0, 1) ** 2, rtol=1e-6)
    capped = soft_targets(prob, power=2.0, cap=0.75)
    assert (capped.sum(axis=1) <= 0.75 + 1e-6).all()
    np.testing.assert_allclose(capped[0], powered[0] * 0.75 / powered[0].sum(), rtol=1e-6)  # scaled down, same shape
    np.testing.assert_array_equal(capped[1], powered[1])  # 0.14 under the cap: unchanged
    np.testing.assert_allclose(capped[2].sum(), 0.75, rtol=1e-6)
    with pytest.raises(ValueError, match="power"):
        soft_targets(prob, power=0.0)


def test_soft_examples_take_every_window_with_capped_targets():
    e = Embedded(np.ones((10, 3), np.float32), np.arange(10.0), np.zeros(10, np.float32), 10.0)
    probs = {"s": np.array([[0.9, 0.8, 0.05], [0.01, 0.02, 0.03]], np.float32)}  # the 2nd is confident of nothing
    config = build_config(loss="bce", hop_s=1.0, pseudo_rounds=1, pseudo_targets="soft", pseudo_power=1.0,
                          pseudo_cap=0.75, pseudo_weight=0.4)
    ex, n_windows, mean_sum = soft_examples({"s": e}, probs, config)
    assert n_windows == 2 and len(ex) == 10 and set(ex.weights) == {np.float32(0.4)}
    assert (ex.targets.sum(axis=1) <= 0.75 + 1e-6).all() and set(ex.kinds) == {"pseudo"}
    np.testing.assert_allclose(ex.targets[-1], [0.01, 0.02, 0.03], rtol=1e-6)  # a quiet window: a soft negative
    assert mean_sum == pytest.approx((0.75 + 0.06) / 2, rel=1e-5)


def test_noisy_student_options_are_refused_where_they_would_do_nothing():
    with pytest.raises(ValueError, match="pseudo_targets"):
        build_config(loss="bce", pseudo_power=2.0, pseudo_rounds=1)  # power shapes soft targets only
    with pytest.raises(ValueError, match="multi-label"):
        build_config(loss="ce", pseudo_rounds=1, pseudo_targets="soft")
    with pytest.raises(ValueError, match="pseudo_share"):
        build_config(loss="bce", pseudo_share=0.5)  # no pseudo rounds
    with pytest.raises(ValueError, match="pseudo_cap"):
        build_config(loss="bce", pseudo_rounds=1, pseudo_targets="soft", pseudo_cap=1.5)
    defaults = build_config()
    assert (defaults.pseudo_rounds, defaults.pseudo_targets, defaults.pseudo_power, defaults.pseudo_cap,
            defaults.pseudo_share, defaults.pseudo_mixup) == (0, "confident", 1.0, None, None, 0.0)


@pytest.mark.slow
def test_soft_rounds_stop_on_a_falling_guard_and_discard_that_head(improved):
    """The guard is the judge's validation-soundscape score: up in round 1 (kept), down in round 2
    (dropped, its head discarded, the loop ends)."""
    from birdclef.data.competition import competition_paths, load_taxonomy
    from birdclef.features.embeddings import EmbeddingCache
    from birdclef.models.examples import build_examples, load_manifest
    from birdclef.models.head import MLPHead
    from birdclef.models.train import head_meta

    base, _ = improved
    config = dataclasses.replace(base, pseudo_rounds=3, pseudo_targets="soft", pseudo_power=2.0, pseudo_cap=0.75)
    labels = load_taxonomy(competition_paths(config.data_dir).taxonomy)["primary_label"].tolist()
    ex, _ = build_examples(load_manifest(config), EmbeddingCache(config.work_dir, config), labels, config, None)
    meta = head_meta(ex, labels, config)
    heads, extras = [], []

    def fit(examples, *, extra=None, checkpoint=None):
        torch_head = MLPHead(ex.x.shape[-1], len(labels), config.hidden_sizes, config.dropout)
        torch_head.set_standardisation(ex.x)
        heads.append(torch_head)
        extras.append(extra)
        return torch_head, pd.DataFrame({"epoch": [1]}), {"val_auc": 0.5, "round": len(heads)}

    first = fit(ex)
    heads.clear(), extras.clear()
    scores = {}

    def judge(m):
        order = [first[0], *heads]
        return meta, scores.setdefault(id(m), [0.6, 0.7, 0.65, 0.9][order.index(m)])

    model, _, metrics, table, kept_extra = pseudo_label(ex, labels, config, first[0], first[1], first[2], fit=fit,
                                                        meta=meta, progress=False, judge=judge)
    assert list(table["kept"]) == [True, True, False] and len(heads) == 2  # no third round after the fall
    assert model is heads[0] and metrics["round"] == 1 and kept_extra is extras[0]
    assert metrics["pseudo_guard"] == "val_mix_auc_finished" and metrics["pseudo_rounds_kept"] == 1
    np.testing.assert_allclose(table["guard"], [0.6, 0.7, 0.65])
    # every window of the unlabelled train soundscapes that has a speech-free frame, confident or not, capped
    embedded = load_soundscapes(config)
    n_windows = sum(len(speech_free_frames(e, w * config.window_s, (w + 1) * config.window_s, config)) > 0
                    for e in embedded.values() for w in range(int(np.ceil(e.duration_s / config.window_s))))
    assert embedded and table["n_windows"].iloc[1] == n_windows and (extras[0].targets.sum(axis=1) <= 0.75 + 1e-6).all()
    assert (table["mean_target_sum"].iloc[1:] <= 0.75 + 1e-6).all()


def test_pseudo_rounds_without_an_unlabelled_soundscape_say_so_and_train_nothing(monkeypatch, caplog):
    """Every train soundscape labelled (BirdCLEF+ 2026): the rounds are skipped with a warning naming why,
    never a silent round that adds nothing and looks like the guard's rejection."""
    import logging

    monkeypatch.setattr("birdclef.models.pseudo.load_soundscapes", lambda config, **_: {})
    config = build_config(backbone="melstats", pseudo_rounds=2, pseudo_targets="soft")

    def fit(*_, **__):
        raise AssertionError("no round may train")

    model, hist = object(), pd.DataFrame({"epoch": [1]})
    with caplog.at_level(logging.WARNING, logger="birdclef.models.pseudo"):
        kept, h, metrics, rounds, extra = pseudo_label(None, ["a"], config, model, hist, {"val_auc": 0.7}, fit=fit,
                                                       meta=None, progress=False)
    assert kept is model and h is hist and extra is None
    assert metrics["pseudo_rounds_kept"] == 0 and metrics["pseudo_soundscapes"] == 0 and metrics["val_auc"] == 0.7
    assert rounds["round"].tolist() == [0] and bool(rounds["kept"].iloc[0])
    assert "no unlabelled train soundscape to pseudo-label" in caplog.text and "pseudo_rounds=2" in caplog.text
