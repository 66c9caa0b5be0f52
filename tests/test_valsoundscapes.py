"""Validation that predicts the test: validation soundscapes in training, cross-fitted blend weights,
session and site-day folds."""
import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from birdclef.config import build_config
from birdclef.errors import BirdclefError
from birdclef.features.zeroshot import BlendPrior, ZeroShot, choose_weights
from birdclef.models import valsoundscapes
from birdclef.models.examples import Examples, focal_fold_group, soundscape_fold_group
from birdclef.models.train import blend_weights, run_training, split_folds


@pytest.fixture(scope="module")
def trained(tiny_demo, tmp_path_factory):
    """The tiny demo trained with the validation soundscapes choosing the epoch."""
    from birdclef.features.preprocess import run_preprocess

    work = tmp_path_factory.mktemp("valmix")
    config = build_config(data_dir=str(tiny_demo), work_dir=str(work), backbone="melstats", epochs=8,
                          val_soundscapes=12, val_select="soundscapes", n_workers=1)
    run_preprocess(config=config)
    return config, run_training(config=config, progress=False)


@pytest.mark.slow
def test_validation_soundscapes_are_mixed_from_the_validation_fold_only(trained):
    from birdclef.features.embeddings import EmbeddingCache
    from birdclef.models.examples import FOCAL, build_examples, load_manifest

    config, result = trained
    (folder,) = (result.out_dir.parent / "preprocess" / "val_soundscapes").iterdir()
    built = json.loads((folder / "build.json").read_text())["recordings"]
    ex, _ = build_examples(load_manifest(config), EmbeddingCache(config.work_dir, config), list(result.meta.labels), config)
    tr, va = split_folds(ex, n_folds=config.n_folds, fold=config.fold, seed=config.seed)
    assert built == sorted(set(ex.groups[va][ex.kinds[va] == FOCAL]))
    assert not set(built) & set(ex.groups[tr])
    assert len(list(folder.glob("val_*.ogg"))) == config.val_soundscapes


@pytest.mark.slow
def test_the_validation_soundscapes_pick_the_epoch_and_score_like_the_test(trained):
    config, result = trained
    hist, m = result.history, result.metrics
    assert {"val_mix_auc", "val_labelled_auc"} <= set(hist.columns)
    best = hist["val_mix_auc"].to_numpy()
    assert m["best_epoch"] == int(hist["epoch"][np.flatnonzero(best == best.max())[-1]])  # ties → later epoch
    assert m["val_auc"] == pytest.approx(best.max()) and m["val_select"] == "soundscapes"
    saved = result.out_dir / valsoundscapes.FILE
    with np.load(saved) as z:
        truth, counts = z["truth"], z["counts"]
    assert len(counts) == 12 and counts.sum() == len(truth)
    # the saved predictions re-score any post-processing; the training config's gives the training metric
    assert valsoundscapes.saved_score(result.out_dir, config) == pytest.approx(m["val_mix_auc_finished"])
    wide = dataclasses.replace(config, smoothing_kernel=(0.1, 0.2, 0.4, 0.2, 0.1))
    assert valsoundscapes.saved_score(result.out_dir, wide) != pytest.approx(m["val_mix_auc_finished"])


def test_score_leaves_ignored_cells_out():
    truth = np.array([[1.0], [0.0], [0.0], [np.nan]])
    prob = np.array([[0.6], [0.1], [0.2], [0.9]])  # the ignored cell scores highest: counted, AUC would drop
    assert valsoundscapes.score(truth, prob) == 1.0
    assert np.isnan(valsoundscapes.score(np.zeros((3, 1)), prob[:3]))


def test_blend_auc_is_cross_fitted_not_measured_on_the_rows_that_chose_the_weights():
    rng = np.random.default_rng(0)
    n, c = 60, 40
    y = (rng.random((n, c)) < 0.2).astype(np.float64)
    prob, zs = rng.random((n, c)), rng.standard_normal((n, c))  # both pure noise: no weight is better
    groups = np.array([f"rec{i}" for i in range(n)], dtype=object)
    zero_shot = ZeroShot(np.arange(c))
    labels = [f"c{j}" for j in range(c)]
    weights, table = blend_weights(prob, zs, y, groups, np.full(c, 3), zero_shot, labels)
    from birdclef.data.metric import auc_columns
    from birdclef.postprocess import blend_logits

    in_sample = np.nanmean(auc_columns(y > 0.5, blend_logits(prob, zs, weights)))
    crossed = table["val_auc_blend"].mean()
    assert in_sample > 0.53  # picking each class's best weight on its own rows flatters noise
    assert crossed < in_sample - 0.04  # each half blended with the weights the other half chose


def test_a_class_the_fold_head_never_learned_takes_the_prior():
    rng = np.random.default_rng(1)
    n = 300
    y = (rng.random((n, 3)) < 0.3).astype(np.float64)
    head = 1 / (1 + np.exp(-(3 * y - 1.5 + 0.8 * rng.standard_normal((n, 3)))))  # good on the classes it learned
    head[:, 0] = rng.random(n)  # class 0: the fold's head never saw it, so it is noise on validation
    zs = 0.6 * y + rng.standard_normal((n, 3))  # the backbone: weakly informative everywhere
    counts = np.full(3, 10)
    prior = BlendPrior(weight=0.6)
    trained = np.array([0, 8, 8])
    chosen = choose_weights(head, zs, y, np.ones(3, bool), counts, train_recordings=trained, prior=prior)
    assert not chosen.measured[0]  # its curve measures a head that never saw it, not the refit head that will
    # the prior, leaning on the backbone by the recordings the submitting head trains on (here none)
    assert chosen.weights[0] == 1.0
    refit = choose_weights(head, zs, y, np.ones(3, bool), counts, train_recordings=trained, prior=prior,
                           head_recordings=trained + counts)
    assert refit.weights[0] == pytest.approx(prior.lean(0.6, 10))
    assert (refit.weights[1:] < 0.5).all()  # the classes it learned: their own curves, the head's side


def test_folds_keep_recording_sessions_together():
    rows = pd.DataFrame({"filename": [f"r{i}.ogg" for i in range(12)], "session": [f"session:s{i // 3}" for i in range(12)],
                         "author": ["x"] * 12})
    groups = np.array([focal_fold_group(r, "session") for r in rows.itertuples(index=False)], dtype=object)
    assert set(groups) == {f"session:s{k}" for k in range(4)}
    assert focal_fold_group(rows.drop(columns="session").iloc[0], "session") == "r0.ogg"  # an old manifest
    primary = np.arange(12) % 2
    ex = Examples(np.zeros((12, 1, 2), np.float32), np.eye(2, dtype=np.float32)[primary], primary,
                  rows["filename"].to_numpy(object), groups, np.ones(12, np.float32))
    for fold in range(2):
        tr, va = split_folds(ex, n_folds=2, fold=fold, seed=0)
        assert len(va) and not set(groups[tr]) & set(groups[va])


def test_soundscape_folds_keep_a_site_and_day_together():
    same_day = [soundscape_fold_group(f"BC2026_Train_0001_S08_20250606_{t}.ogg", "S08", "site_day")
                for t in ("060000", "061000")]
    other_day = soundscape_fold_group("BC2026_Train_0002_S08_20250607_060000.ogg", "S08", "site_day")
    assert same_day[0] == same_day[1] != other_day
    assert soundscape_fold_group("H02_20230420_074000.ogg", "", "site") == "site:H02"
    assert soundscape_fold_group("odd_name.ogg", "", "site_day") == "soundscape:odd_name.ogg"
    assert soundscape_fold_group(f"H02_20230420_074000.ogg", "", "file") == "soundscape:H02_20230420_074000.ogg"


def test_labelled_soundscapes_are_read_whole_their_unlabelled_or_unknown_windows_unscored():
    from birdclef.features.embeddings import Embedded

    class Cache:
        def load(self, path, *, need_speech=False, score_columns=None):
            return {"/x/s1.ogg": Embedded(np.zeros((12, 4), np.float32), np.arange(12) * 2.5, np.zeros(12), 30.0),
                    "/x/s2.ogg": Embedded(np.zeros((8, 4), np.float32), np.arange(8) * 2.5, np.zeros(8), 20.0)
                    }.get(str(path))

    rows = [("s1.ogg", 0, "b;c"), ("s1.ogg", 10, "a"), ("s2.ogg", 5, "zzz"), ("s2.ogg", 15, "c"), ("s2.ogg", 40, "a")]
    windows = pd.DataFrame([{"filename": f, "path": f"/x/{f}", "start_s": s, "labels": lab} for f, s, lab in rows])
    config = build_config(backbone="melstats")
    sets = valsoundscapes.labelled(windows, Cache(), ["a", "b", "c"], config, None)
    assert sets.names == ["s1.ogg", "s2.ogg"] and list(sets.counts) == [6, 4] and sets.zero_shot is None
    expected = np.full((10, 3), np.nan, np.float32)
    expected[0] = [0, 1, 1]
    expected[2] = [1, 0, 0]
    expected[6 + 3] = [0, 0, 1]  # s2's window at 5 s has a label outside the taxonomy, at 40 s is past its end
    np.testing.assert_array_equal(sets.truth, expected)
    assert valsoundscapes.labelled(windows.iloc[:0], Cache(), ["a"], config, None) is None
    missing = pd.DataFrame([{"filename": "s9.ogg", "path": "/x/s9.ogg", "start_s": 0, "labels": "a"}])
    with pytest.raises(BirdclefError, match="no cached embedding"):
        valsoundscapes.labelled(missing, Cache(), ["a"], config, None)


def test_the_sources_of_the_validation_soundscapes_are_bounded_and_spread_over_the_classes():
    from birdclef.models.valsoundscapes import source_sample

    counts = {"a": 50, "b": 3, "c": 1, "d": 20}
    fold = pd.DataFrame({"primary_label": [c for c, n in counts.items() for _ in range(n)]}).assign(
        filename=lambda d: [f"{c}/{i}.ogg" for i, c in enumerate(d["primary_label"])])
    fold.index = fold.index * 7  # a filtered manifest's index
    picked = source_sample(fold, seed=0, limit=10)
    assert len(picked) == 10 and picked["filename"].is_unique and picked.index.isin(fold.index).all()
    assert list(picked.index) == sorted(picked.index)  # in the fold's order
    per_class = picked["primary_label"].value_counts()
    assert set(per_class.index) == set(counts) and per_class["c"] == 1 and per_class["b"] == 3  # round-robin
    assert per_class.max() - per_class[per_class.index.isin(["a", "d"])].min() <= 1
    assert source_sample(fold, seed=0, limit=10).equals(picked) and not source_sample(fold, seed=1, limit=10).equals(picked)
    assert source_sample(fold, seed=0, limit=len(fold)) is fold  # a small fold: every recording
