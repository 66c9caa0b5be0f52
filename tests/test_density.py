"""Minutes as dense as real ones: presence patterns, their published figures, calls placed by pattern."""
import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from birdclef.data import density, mixing
from birdclef.data.mixing import SAMPLE_RATE_HZ as SR
from birdclef.errors import BirdclefError


def _source(name, label, seed, length_s=20.0):
    rng = np.random.default_rng(seed)
    x = (0.003 * rng.standard_normal(int(length_s * SR))).astype(np.float32)
    t = np.arange(int(0.6 * SR)) / SR
    for a in (2.0, 7.0, 12.0, 16.0):
        x[int(a * SR):int(a * SR) + len(t)] += 0.3 * np.sin(2 * np.pi * (2500 + 300 * seed) * t).astype(np.float32)
    return mixing.Source(name, label, (), x, tuple(mixing.detect_events(x)), tuple(mixing.quiet_stretches(x)))


def _runs(p):
    return [b - a for a, b in mixing._runs(np.asarray(p, bool))]


@pytest.mark.parametrize("k", range(1, 13))
def test_a_pattern_holds_k_windows_in_runs_with_gaps_between(k):
    rng = np.random.default_rng(k)
    for _ in range(200):
        p = density.presence_pattern(k, rng)
        assert p.shape == (12,) and p.sum() == k and sum(_runs(p)) == k  # runs are separated by empty windows


def test_a_pattern_refuses_an_impossible_count():
    for k in (0, 13):
        with pytest.raises(ValueError, match="1 to 12"):
            density.presence_pattern(k, np.random.default_rng(0))


def test_drawn_minutes_are_as_dense_as_the_real_labelled_sets():
    """The pooled figures of the eight real sets: 21 % of minutes empty, a present species in a median 5 of 12
    windows, runs of a median 2 windows, 61 % of windows with a target (soundscape_density.md)."""
    rng = np.random.default_rng(0)
    minutes = [density.draw_real_density(rng) for _ in range(4000)]
    empty = np.mean([len(m) == 0 for m in minutes])
    per_species = np.array([p.sum() for m in minutes for p in m])
    runs = [r for m in minutes for p in m for r in _runs(p)]
    positive = np.mean([np.any(m, axis=0).mean() if m else 0.0 for m in minutes])
    assert empty == pytest.approx(0.21, abs=0.02)
    assert np.median(per_species) == 5 and (per_species == 12).mean() == pytest.approx(0.15, abs=0.02)
    assert np.median(runs) == 2
    assert positive == pytest.approx(0.61, abs=0.08)


def test_real_density_minutes_place_a_call_in_every_window_the_pattern_marks():
    labels = ["a", "b", "c"]
    sources = [_source(f"{x}/1.ogg", x, i) for i, x in enumerate(labels)]
    patterns = {"a": np.array([1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1], bool), "b": np.eye(12, dtype=bool)[5]}

    def draw(rng):
        return list(patterns.values()), "two"

    out = list(density.patterned_soundscapes(sources, labels, np.random.default_rng(3), n=4, prefix="v", draw=draw))
    assert [name for name, _, _ in out] == ["v000", "v001", "v002", "v003"] and {k for *_, k in out} == {"two"}
    for _, mix, _ in out:
        assert mix.audio.shape == (60 * SR,) and mix.truth.shape == (12, 3)
        present = sorted(mix.truth.sum(0))  # the two patterns, on two of the three species
        assert present == [0, 1, 5]
        calls = [p for p in mix.parts if p["kind"] == "call"]
        assert len(calls) == 6 and all(5 * int(p["start_s"] // 5) + 5 >= p["end_s"] for p in calls)  # inside a window
    drawn = list(density.real_density_soundscapes(sources, labels, np.random.default_rng(1), n=30, prefix="r"))
    truth = np.concatenate([m.truth for _, m in drawn])
    assert 0.2 < (truth.sum(1) > 0).mean() < 0.95 and (truth.reshape(30, 12, 3).sum((1, 2)) == 0).any()


def test_patterned_minutes_are_one_minute_long():
    sources = [_source("a/1.ogg", "a", 0)]
    with pytest.raises(BirdclefError, match="60 s long"):
        list(density.patterned_soundscapes(sources, ["a"], np.random.default_rng(0), n=1, prefix="v",
                                           draw=lambda r: ([], ""), soundscape_s=30.0))


def test_real_density_validation_minutes_have_their_own_key_and_sparse_ones_keep_theirs():
    from birdclef.config import build_config
    from birdclef.models.valsoundscapes import BUILD_VERSION, _key

    recordings = pd.DataFrame({"path": ["/d/a/1.ogg", "/d/b/2.ogg"]})
    sparse = build_config(backbone="melstats", val_soundscapes=4)
    spec = {"version": BUILD_VERSION, "n": 4, "seed": sparse.seed, "recordings": ["/d/a/1.ogg", "/d/b/2.ogg"]}
    assert _key(recordings, sparse) == hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
    assert _key(recordings, sparse.replace(val_density="real")) != _key(recordings, sparse)
    with pytest.raises(ValueError, match="val_density='dense' is not valid"):
        build_config(backbone="melstats", val_density="dense")


@pytest.mark.slow  # mixes and embeds minutes of audio
def test_training_builds_real_density_validation_minutes_from_the_fold(tiny_demo, tmp_path):
    """valsoundscapes.build with ``val_density="real"``: one-minute minutes mixed from the given recordings,
    embedded, their truth denser than the sparse set's from the same recordings, kept under their own key."""
    from birdclef.config import build_config
    from birdclef.data.competition import competition_paths, load_taxonomy, load_train_metadata
    from birdclef.models import valsoundscapes
    from birdclef.workdir import RunLayout

    paths = competition_paths(tiny_demo)
    meta, _ = load_train_metadata(paths.train_csv, load_taxonomy(paths.taxonomy))
    recordings = meta.assign(path=[str(paths.train_audio / f) for f in meta["filename"]])
    labels = sorted(meta["primary_label"].unique())
    built = {}
    for kind in ("sparse", "real"):
        config = build_config(data_dir=str(tiny_demo), work_dir=str(tmp_path), backbone="melstats",
                              val_soundscapes=4, val_density=kind)
        built[kind] = valsoundscapes.build(recordings, labels, config, None)
        assert built[kind] is not None and built[kind].counts.tolist() == [12] * 4
    dense = {k: float((np.nan_to_num(v.truth) > 0).any(axis=1).mean()) for k, v in built.items()}
    assert dense["real"] > dense["sparse"]
    folders = sorted(p.name for p in RunLayout(tmp_path).val_soundscapes.iterdir())
    assert len(folders) == 2
