"""Labelled train-soundscape windows (2026 layout): examples, folds, validation scores, end to end."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from birdclef.config import build_config
from birdclef.errors import BirdclefError
from birdclef.features.embeddings import Embedded
from birdclef.models.examples import FOCAL, SOUNDSCAPE, Examples, concat_examples, soundscape_examples
from birdclef.models.train import Validation, pool_windows, split_folds, validation_scores, validation_set

LABELS = ["a", "b", "c"]


class FakeCache:
    """EmbeddingCache's load() over a dict of {path: Embedded}."""

    def __init__(self, entries: dict[str, Embedded]) -> None:
        self.entries = entries

    def load(self, path, *, need_speech=False, score_columns=None):
        return self.entries.get(str(path))


def soundscape(n_frames: int = 24, hop_s: float = 2.5, speech_at: tuple[int, ...] = ()) -> Embedded:
    rng = np.random.default_rng(n_frames)
    speech = np.zeros(n_frames)
    speech[list(speech_at)] = 1.0
    return Embedded(rng.normal(size=(n_frames, 4)).astype(np.float32), np.arange(n_frames) * hop_s, speech,
                    n_frames * hop_s)


def windows_table(rows: list[tuple[str, int, str, str]]) -> pd.DataFrame:
    """[(file, end_s, labels, site)] → the preprocess stage's soundscape_windows.csv."""
    return pd.DataFrame([{"filename": f, "path": f"/x/{f}", "start_s": end - 5, "end_s": end,
                          "row_id": f"{f.removesuffix('.ogg')}_{end}", "labels": labels, "site": site, "hour": 5}
                         for f, end, labels, site in rows])


def test_window_examples_take_every_label_and_skip_bad_windows_with_a_reason():
    cache = FakeCache({"/x/s1.ogg": soundscape(speech_at=(4, 5)), "/x/s2.ogg": soundscape()})
    config = build_config(backbone="melstats", loss="bce", soundscape_weight=0.7,  # hop 2.5 s: 2 one-frame crops a window
                          soundscape_group_by="file")
    windows = windows_table([("s1.ogg", 5, "b;c", "S01"), ("s1.ogg", 15, "a", "S01"),  # frames 4, 5: speech
                             ("s2.ogg", 10, "zzz", "S02"), ("s2.ogg", 20, "a", "S02")])
    ex, skipped = soundscape_examples(windows, cache, LABELS, config)
    assert list(ex.window) == ["s1_5", "s1_5", "s2_20", "s2_20"]
    np.testing.assert_array_equal(ex.targets[:2], [[0, 1, 1]] * 2)
    assert list(ex.primary) == [1, 1, 0, 0] and set(ex.kind) == {SOUNDSCAPE} and set(ex.weights) == {np.float32(0.7)}
    assert set(ex.fold_groups) == {"soundscape:s1.ogg", "soundscape:s2.ogg"}
    reasons = dict(zip(skipped["row_id"], skipped["reason"]))
    assert set(reasons) == {"s1_15", "s2_10"}
    assert "speech" in reasons["s1_15"] and "zzz" in reasons["s2_10"]
    by_site = build_config(backbone="melstats", soundscape_group_by="site")
    ex_site, _ = soundscape_examples(windows, cache, LABELS, by_site)
    assert set(ex_site.fold_groups) == {"site:S01", "site:S02"}
    with pytest.raises(BirdclefError, match="no cached embedding"):
        soundscape_examples(windows_table([("missing.ogg", 5, "a", "S01")]), cache, LABELS, config)


SITE_DAY_FILES = ["H02_20230420_074000.ogg", "H02_20230420_075000.ogg",  # one recorder, one morning: the pair
                  "H02_20230421_074000.ogg", "H05_20230420_074000.ogg", "BC2026_Train_0001_S08_20250606_060000.ogg",
                  "BC2026_Train_0002_S08_20250607_060000.ogg", "H07_20231129_215000.ogg", "noname.ogg"]


def test_a_site_and_day_never_lands_on_both_sides_of_the_folds():
    cache = FakeCache({f"/x/{f}": soundscape() for f in SITE_DAY_FILES})
    windows = windows_table([(f, end, "a", "") for f in SITE_DAY_FILES for end in (5, 10)])
    config = build_config(backbone="melstats")
    assert config.soundscape_group_by == "site_day"
    ex, _ = soundscape_examples(windows, cache, LABELS, config)
    group = dict(zip(ex.groups, ex.fold_groups))
    assert group["soundscape:H02_20230420_074000.ogg"] == group["soundscape:H02_20230420_075000.ogg"] == \
        "site_day:H02:2023-04-20"
    assert len(set(group.values())) == len(SITE_DAY_FILES) - 1  # other days and sites are groups of their own
    assert group["soundscape:noname.ogg"] == "soundscape:noname.ogg"  # no site or date in the name: the file
    pair = {"soundscape:H02_20230420_074000.ogg", "soundscape:H02_20230420_075000.ogg"}

    def split_pair(ex_) -> bool:
        for seed in range(8):
            for fold in range(3):
                tr, va = split_folds(ex_, n_folds=3, fold=fold, seed=seed)
                if set(ex_.groups[tr]) & pair and set(ex_.groups[va]) & pair:
                    return True
        return False

    assert not split_pair(ex)
    by_file, _ = soundscape_examples(windows, cache, LABELS,
                                     build_config(backbone="melstats", soundscape_group_by="file"))
    assert split_pair(by_file)  # grouped by file, the same folds do put the pair on both sides


def focal_examples(n_per_class: int = 6) -> Examples:
    rng = np.random.default_rng(0)
    primary = np.repeat(np.arange(3), n_per_class)
    n = len(primary)
    return Examples(rng.normal(size=(n, 1, 4)).astype(np.float32), np.eye(3, dtype=np.float32)[primary], primary,
                    np.array([f"r{i}" for i in range(n)], dtype=object), np.array([f"r{i}" for i in range(n)], dtype=object),
                    np.ones(n, np.float32))


def window_examples(n_files: int = 6, per_file: int = 4) -> Examples:
    n = n_files * per_file
    files = np.repeat([f"soundscape:f{k}.ogg" for k in range(n_files)], per_file).astype(object)
    windows = np.array([f"f{k // per_file}_{5 * (k % per_file // 2 + 1)}" for k in range(n)], dtype=object)
    targets = np.zeros((n, 3), np.float32)
    targets[np.arange(n), np.arange(n) % 3] = 1
    return Examples(np.zeros((n, 1, 4), np.float32), targets, np.arange(n) % 3, files, files, np.ones(n, np.float32),
                    kind=np.full(n, SOUNDSCAPE, dtype=object), window=windows)


def test_folds_keep_soundscapes_whole_and_leave_the_focal_split_unchanged():
    focal = focal_examples()
    both = concat_examples([focal, window_examples()])
    assert set(both.kinds[: len(focal)]) == {FOCAL}
    held_out = []
    for fold in range(3):
        tr, va = split_folds(both, n_folds=3, fold=fold, seed=4)
        tr0, va0 = split_folds(focal, n_folds=3, fold=fold, seed=4)
        np.testing.assert_array_equal(np.sort(va[va < len(focal)]), np.sort(va0))
        np.testing.assert_array_equal(np.sort(tr[tr < len(focal)]), np.sort(tr0))
        assert not set(both.fold_groups[tr]) & set(both.fold_groups[va])
        held_out += sorted(set(both.fold_groups[va[va >= len(focal)]]))
    assert sorted(held_out) == sorted(set(both.fold_groups[len(focal):]))  # each soundscape validates exactly once
    assert all(held_out.count(g) == 1 for g in held_out)


def test_validation_pools_crops_into_windows_and_combines_by_class_counts():
    ex = concat_examples([focal_examples(2), window_examples(n_files=2, per_file=4)])
    va = np.arange(len(ex))
    val = validation_set(ex, va, 3)
    assert len(val.focal) == 6 and len(val.windows) == 8 and len(val.window_ids) == 4
    # a window's truth is the union of its crops' labels
    np.testing.assert_array_equal(val.y_windows.sum(axis=1), [2, 2, 2, 2])
    prob = np.zeros((len(val.examples), 3), np.float32)
    prob[np.arange(6), ex.primary[val.focal]] = 1.0  # focal: perfect
    rng = np.random.default_rng(1)
    prob[6:] = rng.random((8, 3))
    scores = validation_scores(val, prob, "mean")
    assert scores["focal"] == pytest.approx(1.0)
    windows = pool_windows(prob[6:], val.owner, 4, "mean")
    from birdclef.data.metric import macro_auc

    assert scores["soundscape"] == pytest.approx(macro_auc(val.y_windows, windows))
    k_s = int((val.y_windows.sum(0) > 0).sum())
    assert scores["combined"] == pytest.approx((3 * 1.0 + k_s * scores["soundscape"]) / (3 + k_s))
    np.testing.assert_allclose(pool_windows(np.array([[0.2], [0.6]]), np.array([0, 0]), 1, "max"), [[0.6]])
    np.testing.assert_allclose(pool_windows(np.array([[0.2], [0.6]]), np.array([0, 0]), 1, "mean"), [[0.4]])
    empty = Validation(val.focal, val.y_focal, np.zeros(0, int), np.zeros(0, int), np.zeros(0, object),
                       np.zeros((0, 3), np.float32))
    only_focal = validation_scores(empty, prob[:6], "mean")
    assert only_focal["combined"] == only_focal["focal"] and np.isnan(only_focal["soundscape"])


# --- end to end on a 2026-layout demo -------------------------------------------------------------

SMALL_2026 = dict(layout="2026", n_classes=6, recordings_per_class=3, recording_s=(4.0, 6.0), n_train_soundscapes=4,
                  n_test_soundscapes=2, soundscape_s=30.0, speech_fraction=0.0, n_soundscape_only=2, seed=3)


@pytest.fixture(scope="module")
def demo_2026(tmp_path_factory):
    from birdclef.data.demo import make_demo_dataset

    root = tmp_path_factory.mktemp("d2026")
    summary = make_demo_dataset(root, **SMALL_2026)
    labels_csv = root / "train_soundscapes_labels.csv"
    bad = pd.DataFrame([  # each a reason to skip, none a reason to crash
        {"filename": "BC2026_Train_0099_S01_20230101_000000.ogg", "start": "00:00:00", "end": "00:00:05",
         "primary_label": summary.soundscape_only_classes[0]},  # no such file
        {"filename": pd.read_csv(labels_csv)["filename"][0], "start": "00:00:10", "end": "00:00:05",
         "primary_label": summary.soundscape_only_classes[0]},  # reversed
        {"filename": pd.read_csv(labels_csv)["filename"][0], "start": "00:00:00", "end": "00:00:05",
         "primary_label": "notaclass"},
        {"filename": pd.read_csv(labels_csv)["filename"][0], "start": "0:xx", "end": "00:00:05",
         "primary_label": summary.soundscape_only_classes[0]},
    ])
    pd.concat([pd.read_csv(labels_csv, dtype=str), bad], ignore_index=True).to_csv(labels_csv, index=False)
    return root, summary


def _run(root, work, **params):
    from birdclef.features.preprocess import run_preprocess
    from birdclef.models.train import run_training

    # 2 mixed validation minutes, not 30 (they have their own tests in test_valsoundscapes.py): mixing and embedding
    # 30 was most of each training here; the labelled soundscape windows these tests are about are all kept
    config = build_config(data_dir=str(root), work_dir=str(work), backbone="birdnet", epochs=25, val_fraction=0.5,
                          **{"val_soundscapes": 2, **params})
    pre = run_preprocess(config=config)
    return config, pre, run_training(config=config, progress=False)


@pytest.fixture(scope="module")
def trained_2026(demo_2026, tmp_path_factory):
    root, _ = demo_2026
    return _run(root, tmp_path_factory.mktemp("w2026"))


@pytest.mark.slow
def test_preprocess_lists_labelled_windows_and_skips_bad_rows_with_reasons(trained_2026, demo_2026):
    root, _ = demo_2026
    config, pre, _ = trained_2026
    windows = pd.read_csv(pre.out_dir / "soundscape_windows.csv", dtype=str)
    released = pd.read_csv(root / "train_soundscapes_labels.csv", dtype=str).drop_duplicates()
    assert len(windows) == len(released) - 4 and windows["row_id"].is_unique
    assert windows["site"].str.fullmatch(r"S\d\d").all()
    skipped = pd.read_csv(pre.out_dir / "soundscape_skipped.csv")
    assert len(skipped) == 4
    text = " ".join(skipped["reason"])
    for reason in ("missing", "not before", "notaclass", "0:xx"):
        assert reason in text


@pytest.mark.slow
def test_training_validates_on_held_out_soundscape_windows(trained_2026):
    config, _, result = trained_2026
    m = result.metrics
    assert m["n_val_soundscape_windows"] > 0 and m["n_train_soundscape_windows"] > 0
    assert {"val_focal_auc", "val_soundscape_auc"} <= set(result.history.columns)
    assert 0 <= m["val_soundscape_auc"] <= 1 and 0 <= m["val_focal_auc"] <= 1
    best = result.history.loc[result.history["epoch"] == m["best_epoch"]].iloc[0]
    assert m["val_auc"] == pytest.approx(best["val_auc"]) and m["val_auc"] == pytest.approx(result.history["val_auc"].max())
    table = pd.read_csv(result.out_dir / "soundscape_per_class_auc.csv", dtype={"label": str})
    assert list(table.columns) == ["label", "positives", "auc"] and table["positives"].sum() > 0
    runs = pd.read_csv(config.work_dir + "/runs.csv")
    assert "val_soundscape_auc" in runs.columns


@pytest.mark.slow
def test_the_held_out_labelled_soundscapes_are_saved_whole_with_unlabelled_windows_unscored(trained_2026):
    from birdclef.features.embeddings import EmbeddingCache
    from birdclef.features.soundscapes import load_windows
    from birdclef.models import valsoundscapes

    config, _, result = trained_2026
    windows = load_windows(config)
    ex, _ = soundscape_examples(windows, EmbeddingCache(config.work_dir, config), list(result.meta.labels), config)
    _, va = split_folds(ex, n_folds=config.n_folds, fold=config.fold, seed=config.seed)
    held = sorted({g.removeprefix("soundscape:") for g in ex.groups[va]})
    with np.load(result.out_dir / valsoundscapes.LABELLED_FILE) as z:
        names, counts, truth, prob = list(z["names"]), z["counts"], z["truth"], z["prob"]
    assert names == held and len(held) >= 1  # the files the fold held out, and only those
    assert (counts == 6).all() and truth.shape == prob.shape == (counts.sum(), len(result.meta.labels))
    labelled = windows[windows["filename"].isin(held)]
    rows = {(f, int(s // 5)): set(lab.split(";")) for f, s, lab in zip(labelled["filename"], labelled["start_s"],
                                                                       labelled["labels"])}
    for i, name in enumerate(names):
        for w in range(6):
            y = truth[i * 6 + w]
            if (name, w) in rows:  # its labels 1, the rest 0
                assert {result.meta.labels[c] for c in np.flatnonzero(y == 1)} == rows[(name, w)]
                assert np.isin(y, (0, 1)).all()
            else:  # no label row: unknown, not scored
                assert np.isnan(y).all()
    assert np.isfinite(prob).all()
    assert result.metrics["n_val_soundscape_files"] == len(held)
    assert result.metrics["val_soundscape_files_auc_head"] == pytest.approx(valsoundscapes.score(truth, prob))
    assert 0 <= result.metrics["val_soundscape_files_auc_finished"] <= 1


def _no_audio_scores(result, config, summary):
    """Head probabilities of the soundscape-only classes on every labelled window, and their truth."""
    from birdclef.features.embeddings import EmbeddingCache
    from birdclef.features.soundscapes import load_windows
    from birdclef.models.head import predict

    windows = load_windows(config)
    ex, _ = soundscape_examples(windows, EmbeddingCache(config.work_dir, config), list(result.meta.labels), config)
    cols = [result.meta.labels.index(c) for c in summary.soundscape_only_classes]
    return predict(result.model, result.meta, ex.x)[:, cols], ex.targets[:, cols]


@pytest.mark.slow
def test_classes_without_train_audio_are_learned_from_soundscape_windows(trained_2026, demo_2026, tmp_path):
    from birdclef.data.metric import macro_auc

    root, summary = demo_2026
    config, _, result = trained_2026
    prob, truth = _no_audio_scores(result, config, summary)
    assert truth.sum() > 0 and macro_auc(truth, prob) > 0.8
    (tmp_path / "off").mkdir()
    (tmp_path / "off" / "embeddings").symlink_to(Path(config.work_dir) / "embeddings")  # the same embeddings
    off_config, _, off = _run(root, tmp_path / "off", soundscape_weight=0.0)  # windows only validate
    assert off.metrics["n_train_soundscape_windows"] == 0 and off.metrics["n_val_soundscape_windows"] > 0
    off_prob, _ = _no_audio_scores(off, off_config, summary)
    # never a positive in training: the head gives these classes almost nothing where they call
    assert prob[truth > 0].mean() > 3 * off_prob[truth > 0].mean()


@pytest.mark.slow
def test_2026_submission_has_every_taxonomy_column(trained_2026, demo_2026):
    from birdclef.data.competition import load_taxonomy
    from birdclef.submission.submit import run_submission

    root, _ = demo_2026
    config, _, _ = trained_2026
    result = run_submission(config=config)
    labels = load_taxonomy(root / "taxonomy.csv")["primary_label"].tolist()
    assert list(result.submission.columns) == ["row_id", *labels]
    assert result.submission["row_id"].str.fullmatch(r"BC2026_Test_\d{4}_S\d\d_\d{8}_\d{6}_\d+").all()
    assert result.score is not None and result.score > 0.6


@pytest.mark.slow
def test_site_prior_is_saved_from_the_windows_and_moves_the_submission_only_when_asked(trained_2026, demo_2026,
                                                                                        tmp_path, caplog):
    import dataclasses

    from birdclef.postprocess.priors import PRIOR_FILE
    from birdclef.submission.submit import run_submission

    config, _, result = trained_2026
    table = pd.read_csv(result.out_dir / PRIOR_FILE, index_col="key")
    assert table.index.str.startswith("site:S").any() and table.index.str.startswith("hour:").any()
    off = run_submission(config=config, out_path=tmp_path / "off.csv").submission
    on = run_submission(config=dataclasses.replace(config, site_prior_weight=1.0), out_path=tmp_path / "on.csv").submission
    values_off, values_on = off.drop(columns="row_id").to_numpy(), on.drop(columns="row_id").to_numpy()
    assert not np.allclose(values_off, values_on)
    # a run without labelled soundscapes has no prior: asked for one, it says so and submits unchanged
    (result.out_dir / PRIOR_FILE).rename(tmp_path / PRIOR_FILE)
    try:
        with caplog.at_level("WARNING"):
            same = run_submission(config=dataclasses.replace(config, site_prior_weight=1.0),
                                  out_path=tmp_path / "none.csv").submission
        assert "no site prior" in caplog.text
        np.testing.assert_allclose(same.drop(columns="row_id").to_numpy(), values_off)
    finally:
        (tmp_path / PRIOR_FILE).rename(result.out_dir / PRIOR_FILE)
