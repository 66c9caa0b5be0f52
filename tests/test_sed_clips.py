"""SED clips cut from labelled soundscape windows (birdclef.models.sed.data): where a 5-, 10- or 20-s clip
lies and which windows' labels its target takes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from birdclef.models.sed.config import build_sed_config
from birdclef.models.sed.data import SedClips, covered_windows, window_clip_start

LABELS = ["a", "b", "c", "d"]
SR = 32_000


@pytest.fixture(scope="module")
def scapes(tmp_path_factory) -> tuple[Path, Path]:
    """A 40-s soundscape whose samples are their own time / 100 (a clip's first sample tells its
    start), and a 10-s second soundscape."""
    root = tmp_path_factory.mktemp("sed_clips")
    t = np.arange(40 * SR, dtype=np.float64) / SR
    sf.write(root / "scape.wav", (t / 100).astype(np.float32), SR, subtype="FLOAT")
    sf.write(root / "other.wav", np.zeros(10 * SR, np.float32), SR, subtype="FLOAT")
    return root / "scape.wav", root / "other.wav"


def _windows(scape: Path, other: Path) -> pd.DataFrame:
    """scape.wav: 0-5 {a}, 5-10 {b}, 10-15 {} (known empty), 15-20 {c}, 20-30 not in the table,
    30-35 {b}; other.wav: 0-5 {d} at the same times as scape.wav's first window."""
    rows = [(scape, 0, ["a"]), (scape, 5, ["b"]), (scape, 10, []), (scape, 15, ["c"]), (scape, 30, ["b"]),
            (other, 0, ["d"])]
    return pd.DataFrame({"path": [str(p) for p, _, _ in rows], "start_s": [float(s) for _, s, _ in rows],
                         "end_s": [s + 5.0 for _, s, _ in rows], "labels": [lab for _, _, lab in rows]})


def _clips(windows: pd.DataFrame, clip_s: float) -> SedClips:
    return SedClips(None, LABELS, build_sed_config(clip_s=clip_s), windows=windows)


def _labels_of(target) -> set[str]:
    return {LABELS[i] for i in np.flatnonzero(np.asarray(target) > 0)}


def test_a_20_s_clip_takes_the_labels_of_every_window_it_covers(scapes):
    data = _clips(_windows(*scapes), 20.0)
    # the window second of the clip's four; window 0 cannot start before 0 s
    assert [data._start(i, *data.items[i])[1] for i in range(6)] == [0.0, 0.0, 5.0, 10.0, 25.0, 0.0]
    first = data[1]  # 0-20 s: {a}, {b}, {}, {c}
    assert _labels_of(first["target"]) == {"a", "b", "c"}
    assert np.array_equal(first["target"].numpy(), [1, 1, 1, 0])
    assert np.array_equal(first["truth"].numpy(), [1, 1, 1, 0])
    assert np.array_equal(data[0]["target"].numpy(), first["target"].numpy())  # the same clip
    assert _labels_of(data[3]["target"]) == {"c"}  # 10-30 s: {}, {c}, then 10 s the table does not label
    last = data[4]  # 25-45 s: 25-30 unlabelled, 30-35 {b}, past the file's end at 40 s
    assert _labels_of(last["target"]) == {"b"}
    wave = last["wave"].numpy()
    assert np.isclose(wave[0], 0.25, atol=1e-4) and not wave[-5 * SR:].any()  # starts at 25 s, zero-padded
    assert _labels_of(data[5]["target"]) == {"d"}  # another file's windows at the same times stay out
    assert list(data.item_primary()) == [0, 1, 0, 2, 1, 3]  # sampling still by each item's own window


def test_a_10_s_clip_covers_its_window_and_the_next(scapes):
    data = _clips(_windows(*scapes), 10.0)
    assert [data._start(i, *data.items[i])[1] for i in range(6)] == [0.0, 5.0, 10.0, 15.0, 30.0, 0.0]
    assert [_labels_of(data[i]["target"]) for i in range(6)] == [{"a", "b"}, {"b"}, {"c"}, {"c"}, {"b"}, {"d"}]
    assert np.isclose(data[3]["wave"].numpy()[0], 0.15, atol=1e-4)


def test_a_5_s_clip_keeps_its_own_window_s_labels_only(scapes):
    windows = _windows(*scapes)
    data = _clips(windows, 5.0)
    for i in range(len(windows)):
        path, start_s = data._start(i, *data.items[i])
        assert (path, start_s) == (windows["path"][i], windows["start_s"][i])  # the clip is its window
        assert _labels_of(data[i]["target"]) == set(windows["labels"][i])
    assert not data[2]["target"].numpy().any()  # the window known to be empty: no label


def test_a_window_counts_when_the_clip_covers_more_than_half_of_it(scapes):
    scape, _ = scapes
    # off the 5-s grid: half-overlapping neighbours (2.5 s of 5 in the clip) and one 2.6 s in
    rows = [(0.0, "a"), (2.5, "b"), (5.0, "c"), (4.9, "d"), (7.4, "a")]
    windows = pd.DataFrame({"path": str(scape), "start_s": [s for s, _ in rows], "end_s": [s + 5 for s, _ in rows],
                            "labels": [[lab] for _, lab in rows]})
    data = _clips(windows, 5.0)
    assert _labels_of(data[1]["target"]) == {"b", "d"}  # clip 2.5-7.5 s: 0-5 and 5-10 exactly half, 4.9-9.9 2.6 s
    assert _labels_of(data[0]["target"]) == {"a"}  # clip 0-5 s: 2.5-7.5 exactly half, 4.9-9.9 0.1 s
    start, end = np.array([0.0, 0.0, 0.0, 0.0]), np.array([5.0, 5.0, 5.0, 5.0])
    assert list(covered_windows(start, end, 2.5, 7.5)) == [False] * 4
    assert list(covered_windows(start, end, 2.49, 7.49)) == [True] * 4
    assert list(covered_windows(np.array([0.0, 5.0, 20.0]), np.array([5.0, 10.0, 25.0]), 0.0, 20.0)) == [
        True, True, False]
    assert list(covered_windows(np.array([0.0]), np.array([10.0]), 0.0, 5.0)) == [False]  # half of a 10-s window
    long = pd.DataFrame({"path": str(scape), "start_s": [0.0], "end_s": [20.0], "labels": [["c"]]})
    assert _labels_of(_clips(long, 5.0)[0]["target"]) == {"c"}  # a window counts for its own clip, even 5 s of 20
    config = build_sed_config(clip_s=20.0)
    assert [window_clip_start(s, config) for s in (0.0, 5.0, 30.0)] == [0.0, 0.0, 25.0]


def test_soft_targets_unite_at_their_own_strength_and_the_weight_is_the_window_s(scapes):
    scape, other = scapes
    soft = pd.DataFrame({"path": str(scape), "start_s": [0.0, 5.0, 10.0], "end_s": [5.0, 10.0, 15.0],
                         "targets": [np.array([0.2, 0.9, 0.0, 0.0], np.float32),
                                     np.array([0.6, 0.1, 0.0, 0.3], np.float32),
                                     np.array([0.0, 0.0, 0.8, 0.0], np.float32)], "weight": [0.5, 0.25, 0.5]})
    labelled = pd.DataFrame({"path": [str(other)], "start_s": [0.0], "end_s": [5.0], "labels": [["d"]]})
    data = _clips(pd.concat([labelled, soft], ignore_index=True), 10.0)  # as the noisy student joins them
    assert np.array_equal(data[0]["target"].numpy(), [0, 0, 0, 1])
    first = data[1]  # 0-10 s: the first two soft windows
    assert np.allclose(first["target"].numpy(), [0.6, 0.9, 0.0, 0.3])
    assert np.array_equal(first["truth"].numpy(), [1, 1, 0, 0]) and float(first["weight"]) == 0.5
    assert np.allclose(data[2]["target"].numpy(), [0.6, 0.1, 0.8, 0.3]) and float(data[2]["weight"]) == 0.25
    five = _clips(pd.concat([labelled, soft], ignore_index=True), 5.0)
    assert np.allclose(five[1]["target"].numpy(), [0.2, 0.9, 0.0, 0.0])  # 5 s: its own soft target only
