"""Soundscapes built like the competition's: detector, bed, sparse calls, truth with ignored cells."""
import numpy as np
import pytest

from birdclef.data import mixing
from birdclef.data.mixing import SAMPLE_RATE_HZ as SR


def _recording(seed: int, calls: list[tuple[float, float]], length_s: float = 20.0, freq_hz: float = 3000.0):
    rng = np.random.default_rng(seed)
    x = (0.003 * rng.standard_normal(int(length_s * SR))).astype(np.float32)
    for a, b in calls:
        t = np.arange(int((b - a) * SR)) / SR
        x[int(a * SR):int(a * SR) + len(t)] += 0.3 * np.sin(2 * np.pi * freq_hz * t).astype(np.float32)
    return x


def _source(name, label, calls, seed, secondary=()):
    x = _recording(seed, calls)
    return mixing.Source(name, label, tuple(secondary), x, tuple(mixing.detect_events(x)),
                         tuple(mixing.quiet_stretches(x)))


def test_detector_finds_the_calls_and_the_bed_keeps_away_from_them():
    calls = [(2.0, 2.6), (7.0, 8.5), (15.0, 15.4)]
    x = _recording(0, calls)
    events = mixing.detect_events(x)
    assert len(events) == 3
    for (a, b), (ea, eb) in zip(calls, events):
        assert ea == pytest.approx(a, abs=0.06) and eb == pytest.approx(b, abs=0.06)
    for qa, qb in mixing.quiet_stretches(x):
        assert qb - qa >= 2.0
        assert all(qb <= a - 0.4 or qa >= b + 0.4 for a, b in calls)  # never within the guard of a call


def test_long_calls_are_cut_into_pieces():
    events = mixing.detect_events(_recording(1, [(1.0, 13.0)]), max_s=5.0)
    assert [round(b - a, 1) for a, b in events] == [5.0, 5.0, 2.0]


def test_species_counts_leave_empty_files_and_have_the_asked_mean():
    rng = np.random.default_rng(0)
    k = np.array([mixing.n_species(rng, empty_share=0.3, species_mean=1.5) for _ in range(20000)])
    assert (k == 0).mean() == pytest.approx(0.3, abs=0.015)
    assert k[k > 0].mean() == pytest.approx(1.5, abs=0.03)


def test_compose_places_calls_where_the_truth_says_and_ignores_what_cannot_be_judged():
    labels = ["a", "b", "c", "d"]
    a = _source("a/1.ogg", "a", [(1.0, 2.5), (6.0, 7.5), (12.0, 13.5)], 2, secondary=["c"])
    bed = _source("d/1.ogg", "d", [(9.0, 9.5)], 3)
    mix = mixing.compose([[a]], [bed], labels, np.random.default_rng(4), soundscape_s=60.0,
                         calls=(3, 3), gap_s=(2.0, 3.0), snr_db=(10.0, 10.0))
    calls = [p for p in mix.parts if p["kind"] == "call"]
    assert len(calls) == 3 and all(p["label"] == "a" for p in calls)
    expected = np.zeros(12, np.int8)
    for p in calls:
        for w in range(12):
            cover = min(p["end_s"], 5 * w + 5) - max(p["start_s"], 5 * w)
            expected[w] |= cover >= min(1.0, 0.5 * (p["end_s"] - p["start_s"]))
    np.testing.assert_array_equal(mix.truth[:, 0], expected)
    assert mix.truth[:, 1:].sum() == 0  # b never placed, c only a secondary, d only in the bed
    db = mixing.band_db(mix.audio)
    for p in calls:  # the audio holds the calls where the truth puts them: +10 dB over the bed
        inside = db[int(p["start_s"] / mixing.FRAME_S) + 5:int(p["end_s"] / mixing.FRAME_S) - 5]
        assert np.median(inside) > np.median(db) + 6
    touched = np.zeros(12, bool)
    for p in calls:
        touched |= np.array([min(p["end_s"], 5 * w + 5) > max(p["start_s"], 5 * w) for w in range(12)])
    np.testing.assert_array_equal(mix.ignore[:, 2], touched)  # the secondary species where the calls lie
    np.testing.assert_array_equal(mix.ignore[:, 0], touched & (expected == 0))  # a grazed window
    assert mix.ignore[:, 3].all()  # the bed is made of d's recording throughout
    assert not (mix.ignore & (mix.truth > 0)).any()


def test_an_empty_file_holds_only_the_bed():
    bed = _source("d/1.ogg", "d", [(9.0, 9.5)], 3)
    mix = mixing.compose([], [bed], ["d"], np.random.default_rng(0), soundscape_s=30.0)
    assert mix.truth.sum() == 0 and len(mix.audio) == 30 * SR
    assert {p["kind"] for p in mix.parts} == {"bed"}
    assert 10 * np.log10(np.mean(mix.audio.astype(np.float64) ** 2)) == pytest.approx(-45.0, abs=0.5)


def test_window_stats():
    y = np.zeros((24, 2), np.int8)
    y[[1, 2, 5], 0] = 1
    st = mixing.window_stats(y, per_file=12)
    assert st["positive_share"] == pytest.approx(3 / 24)
    assert st["empty_file_share"] == 0.5 and st["median_run"] == 1.5
