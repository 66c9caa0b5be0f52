"""Validation folds on real metadata: one rule for the head and the SED family, never a crash.

The first two tests are the crashes reported in issue 32 (scikit-learn's "n_splits=5 greater than the
number of groups: 1" in the head, "n_splits=5 cannot be greater than the number of members in each
class" in the SED split); the property tests draw the metadata shapes real data has.
"""
import logging
import string

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from birdclef.data.sessions import recording_sessions
from birdclef.models.examples import FOCAL, SOUNDSCAPE, Examples, focal_fold_group
from birdclef.models.folds import deal_groups, fold_plan, group_folds
from birdclef.models.sed.data import recording_split, split_recordings
from birdclef.models.train import fold_split, split_folds

# deterministic (the same examples on every run and in CI), nothing written into the working tree
PROPERTY = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _examples(primary, fold_groups, kinds=None, crops=1) -> Examples:
    """``crops`` examples per (primary label, fold group, kind) row: what build_examples and
    soundscape_examples give the head."""
    primary = np.repeat(np.asarray(primary, np.int64), crops)
    groups = np.repeat(np.asarray(fold_groups, dtype=object), crops)
    kinds = np.repeat(np.asarray(kinds if kinds is not None else [FOCAL] * len(fold_groups), dtype=object), crops)
    n_classes = int(primary.max()) + 1 if len(primary) else 1
    return Examples(np.zeros((len(primary), 1, 2), np.float32), np.eye(n_classes, dtype=np.float32)[primary],
                    primary, groups, groups, np.ones(len(primary), np.float32), kind=kinds)


def test_one_session_for_every_clip_and_one_labelled_soundscape_trains_on_two_folds():
    # issue 32: nine clips of three species, one recordist at one place (one session), one labelled
    # soundscape; 03_train stopped in split_folds with "n_splits=5 greater than the number of groups: 1"
    ex = _examples([0, 0, 0, 1, 1, 1, 2, 2, 2, 0, 1, 2], ["session:a/XC1.ogg"] * 9 + ["site_day:S22:2021-12-31"] * 3,
                   [FOCAL] * 9 + [SOUNDSCAPE] * 3, crops=4)
    for fold in range(5):
        tr, va, plan = fold_split(ex, n_folds=5, fold=fold, seed=0)
        assert plan.n_folds == 2 and "only 2 groups" in plan.note and "using 2 folds" in plan.note
        assert len(tr) and len(va) and not set(ex.fold_groups[tr]) & set(ex.fold_groups[va])
        assert sorted(np.concatenate([tr, va])) == list(range(len(ex)))
    assert "fold 4 is fold 0 of 2" in fold_split(ex, n_folds=5, fold=4, seed=0)[2].note


def test_sed_split_of_one_to_three_recordings_per_species_holds_out_whole_groups(caplog):
    # issue 32: real 2025 files with one to three recordings per species; StratifiedGroupKFold raised
    # "n_splits=5 cannot be greater than the number of members in each class" (its guard counted groups only)
    counts = [1, 2, 3, 1, 2, 3, 1]
    recordings = pd.DataFrame({"filename": [f"c{c}/XC{c}{i}.ogg" for c, n in enumerate(counts) for i in range(n)],
                               "primary_label": [f"c{c}" for c, n in enumerate(counts) for _ in range(n)],
                               "path": "", "secondary_labels": "", "author": ""})
    with caplog.at_level(logging.WARNING, logger="birdclef.models.sed.data"):
        train, val, plan = recording_split(recordings, val_fraction=0.2, seed=0)
    assert plan.n_folds == 5 and "not stratified" in plan.note
    assert any("not stratified" in r.getMessage() for r in caplog.records)
    assert len(val) and len(train) + len(val) == len(recordings)
    assert set(val["primary_label"]) <= set(train["primary_label"])  # no label loses its last training recording


def test_fewer_than_two_groups_trains_without_validation_in_both_families(caplog):
    ex = _examples([0, 1, 2], ["session:x"] * 3, crops=3)
    tr, va, plan = fold_split(ex, n_folds=5, fold=0, seed=0)
    assert plan.n_folds == 0 and not plan.validates and "without validation" in plan.note
    assert list(tr) == list(range(len(ex))) and len(va) == 0
    recordings = pd.DataFrame({"filename": ["a.ogg", "b.ogg"], "primary_label": ["x", "y"]})
    with caplog.at_level(logging.WARNING, logger="birdclef.models.sed.data"):
        train, val, sed_plan = recording_split(recordings, val_fraction=0.2, seed=0, groups=np.array(["s", "s"]))
    assert len(train) == 2 and len(val) == 0 and sed_plan.n_folds == 0
    assert any("without validation" in r.getMessage() for r in caplog.records)


def test_fold_plan_and_dealing():
    assert fold_plan(5, 9) == fold_plan(5, 5) and fold_plan(5, 9).note == "" and fold_plan(5, 9).n_folds == 5
    assert fold_plan(5, 3).n_folds == 3 and fold_plan(5, 1).n_folds == fold_plan(5, 0).n_folds == 0
    groups = np.array(list("aabbccddeef"))
    folds = deal_groups(groups, 3, seed=1)
    assert sorted(set(folds)) == [0, 1, 2]
    assert all(len(set(folds[groups == g])) == 1 for g in set(groups))  # a group is never cut
    np.testing.assert_array_equal(folds, deal_groups(groups, 3, seed=1))
    with pytest.raises(ValueError, match="cannot fill 3 folds"):
        group_folds(np.zeros(4), np.array(["a", "a", "b", "b"]), 3, seed=0)


def test_normal_data_splits_exactly_as_stratified_group_k_fold():
    from sklearn.model_selection import StratifiedGroupKFold

    rng = np.random.default_rng(3)
    labels, groups = rng.integers(0, 4, 200), rng.integers(0, 30, 200)
    folds, note = group_folds(labels, groups, 5, seed=7)
    expected = list(StratifiedGroupKFold(5, shuffle=True, random_state=7).split(np.zeros(200), labels.astype(str),
                                                                                groups.astype(str)))
    assert note == ""
    for k, (_, va) in enumerate(expected):
        np.testing.assert_array_equal(np.flatnonzero(folds == k), va)


# ---------------------------------------------------------------- metadata shapes, drawn

PLACEHOLDERS = ["unknown", "Unknown", " UNKNOWN ", "anonymous", "Anonymous ", "", " ", "nan", "N/A", "none",
                "(unknown)", "unknown  author", "?", None, float("nan")]
NAMES = ["Daniel Lane", "Ana Morales", "Marta Ospina"]


@st.composite
def metadata(draw) -> tuple[pd.DataFrame, str]:
    """(train.csv-like rows: filename, primary_label, author, latitude, longitude, url; the shape's name)."""
    shape = draw(st.sampled_from(["one author", "all placeholders", "one class", "one recording per class",
                                  "one place", "no coordinates", "numeric labels", "mixed"]))
    n_classes = 1 if shape == "one class" else draw(st.integers(1, 4))
    per_class = [1] * n_classes if shape == "one recording per class" else draw(
        st.lists(st.integers(1, 4), min_size=n_classes, max_size=n_classes))
    labels = ([str(draw(st.integers(1000, 2_000_000))) for _ in range(n_classes)] if shape == "numeric labels"
              else [draw(st.text(string.ascii_lowercase, min_size=4, max_size=7)) + str(c) for c in range(n_classes)])
    rows = []
    for c, k in enumerate(per_class):
        for i in range(k):
            number = draw(st.integers(1, 60))  # small catalogue numbers: adjacent ones are common
            if shape == "one author":
                author = "Daniel Lane"
            elif shape == "all placeholders":
                author = draw(st.sampled_from(PLACEHOLDERS))
            else:
                author = draw(st.sampled_from(PLACEHOLDERS + NAMES))
            if shape in ("one place", "one author"):
                lat, lon = "4.5233", "-71.4075"
            elif shape == "no coordinates":
                lat, lon = "", ""
            else:
                lat, lon = draw(st.sampled_from([("4.5233", "-71.4075"), ("", ""), ("11.37", "-70.95"), ("nan", "x")]))
            rows.append({"filename": f"{labels[c]}/XC{number}{c}{i}.ogg", "primary_label": labels[c], "author": author,
                         "latitude": lat, "longitude": lon, "url": f"https://xeno-canto.org/{number}"})
    return pd.DataFrame(rows), shape


@st.composite
def soundscapes(draw, n_classes: int) -> list[tuple[int, str]]:
    """Labelled soundscape windows as (class index, fold group): none, one file or a few site-days; their
    classes may include one no recording has (a class heard only in soundscapes)."""
    n_files = draw(st.integers(0, 3))
    out = []
    for f in range(n_files):
        for _ in range(draw(st.integers(1, 3))):
            out.append((draw(st.integers(0, n_classes)), f"site_day:S0{f}:2024-01-0{f + 1}"))
    return out


@PROPERTY
@given(st.lists(st.sampled_from(PLACEHOLDERS), min_size=1, max_size=8), st.booleans())
def test_placeholder_recordists_link_no_recordings(authors, one_place):
    n = len(authors)
    meta = pd.DataFrame({"filename": [f"a/XC{100 + i}.ogg" for i in range(n)], "author": authors,  # adjacent numbers
                         "latitude": ["4.5"] * n if one_place else [""] * n,
                         "longitude": ["-71.4"] * n if one_place else [""] * n,
                         "url": [f"https://xeno-canto.org/{100 + i}" for i in range(n)]})
    sessions = recording_sessions(meta)
    assert list(sessions) == [f"session:a/XC{100 + i}.ogg" for i in range(n)]  # each its own session
    assert {focal_fold_group(r, "author") for r in meta.itertuples(index=False)} == set(meta["filename"])


@PROPERTY
@given(st.data())
def test_any_metadata_shape_splits_for_the_head_without_a_crash_and_says_what_it_did(data):
    meta, shape = data.draw(metadata())
    labels = sorted(set(meta["primary_label"]))
    windows = data.draw(soundscapes(len(labels)))
    meta = meta.assign(session=recording_sessions(meta))
    group_by = data.draw(st.sampled_from(["session", "author", "recording"]))
    focal_groups = [focal_fold_group(r, group_by) for r in meta.itertuples(index=False)]
    primary = [labels.index(x) for x in meta["primary_label"]] + [c for c, _ in windows]
    ex = _examples(primary, focal_groups + [g for _, g in windows],
                   [FOCAL] * len(meta) + [SOUNDSCAPE] * len(windows), crops=data.draw(st.integers(1, 3)))
    n_folds = data.draw(st.integers(2, 5))
    fold = data.draw(st.integers(0, n_folds - 1))
    tr, va, plan = fold_split(ex, n_folds=n_folds, fold=fold, seed=data.draw(st.integers(0, 3)))
    n_groups = len(set(ex.fold_groups))
    assert sorted(np.concatenate([tr, va])) == list(range(len(ex))), shape
    if n_groups < 2:
        assert not plan.validates and len(va) == 0 and "without validation" in plan.note
    else:
        assert plan.n_folds == min(n_folds, n_groups) and len(tr) and len(va), shape
        assert not set(ex.fold_groups[tr]) & set(ex.fold_groups[va]), shape
        assert (plan.n_folds == n_folds) or f"only {n_groups} groups" in plan.note
    assert tuple(split_folds(ex, n_folds=n_folds, fold=fold, seed=0)[1]) == tuple(
        fold_split(ex, n_folds=n_folds, fold=fold, seed=0)[1])


@PROPERTY
@given(st.data())
def test_any_metadata_shape_splits_for_sed_without_a_crash_and_says_what_it_did(data):
    meta, shape = data.draw(metadata())
    meta = meta.assign(session=recording_sessions(meta))
    groups = np.array([focal_fold_group(r, "session") for r in meta.itertuples(index=False)])
    val_fraction = data.draw(st.sampled_from([0.2, 0.34, 0.5]))
    train, val, plan = recording_split(meta, val_fraction=val_fraction, seed=data.draw(st.integers(0, 3)),
                                       groups=groups)
    assert len(train) + len(val) == len(meta) and len(train), shape
    assert set(val["primary_label"]) <= set(train["primary_label"]), shape  # no label loses all its training
    group_of = dict(zip(meta["filename"], groups))
    assert not {group_of[f] for f in train["filename"]} & {group_of[f] for f in val["filename"]}
    if len(set(groups)) < 2:
        assert len(val) == 0 and not plan.validates and plan.note
    else:
        assert plan.n_folds == min(max(2, round(1 / val_fraction)), len(set(groups)))
    assert split_recordings(meta, val_fraction=val_fraction, seed=0, groups=groups)[1].equals(
        recording_split(meta, val_fraction=val_fraction, seed=0, groups=groups)[1])
