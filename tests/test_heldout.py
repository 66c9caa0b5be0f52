"""Held-out tasks (the real-audio benchmark's test soundscapes), built here from the tiny demo folder."""
import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from birdclef.data.competition import list_audio
from birdclef.data.metric import read_solution, score
from birdclef.data.mixing import FRAME_S, band_db
from birdclef.data.sessions import recording_sessions
from birdclef_bench.heldout import LOCKBOX, TaskSettings, make_heldout_task, session_holdout, window_truth
from birdclef_bench.realbench import subset_scores


def test_window_truth_needs_enough_overlap():
    y = window_truth([("a", 3.5, 11.0), ("b", 14.6, 14.9)], ["a", "b"], 4, min_overlap_s=1.0)
    # a covers 1.5 s of window 0, all of window 1 and 1 s of window 2; b (0.3 s) lies whole in window 2
    assert y[:, 0].tolist() == [1, 1, 1, 0]
    assert y[:, 1].tolist() == [0, 0, 1, 0]
    y2 = window_truth([("a", 4.5, 11.0)], ["a"], 3, min_overlap_s=1.0)
    assert y2[:, 0].tolist() == [0, 1, 1]  # 0.5 s in window 0 is not enough


@pytest.fixture(scope="module")
def task(tiny_demo, tmp_path_factory):
    out = tmp_path_factory.mktemp("heldout") / "s0"
    return make_heldout_task(tiny_demo, out, split=0, settings=DENSE)


DENSE = TaskSettings(holdout="file", construction="dense", n_mixtures=3, soundscape_s=20.0)


@pytest.mark.slow
def test_dense_file_task_holds_one_recording_per_species_is_held_out_and_kept_out_of_training(task, tiny_demo):
    source = pd.read_csv(tiny_demo / "train.csv", dtype=str, keep_default_na=False)
    train = pd.read_csv(task.data_dir / "train.csv", dtype=str, keep_default_na=False)
    held = task.held_out
    assert sorted(held["primary_label"]) == sorted(source["primary_label"].unique())  # every class has >= 2
    assert not set(held["filename"]) & set(train["filename"])
    assert len(train) + len(held) == len(source)
    assert (task.data_dir / "train_audio").resolve() == (tiny_demo / "train_audio").resolve()  # read in place


@pytest.mark.slow
def test_soundscapes_and_truth_match_the_events_placed(task):
    files = list_audio(task.data_dir / "test_soundscapes")
    assert len(files) == len(task.held_out) + 3
    for f in files:
        info = sf.info(str(f))
        assert info.samplerate == 32_000 and info.duration == pytest.approx(20.0, abs=0.01)
    solution = pd.read_csv(task.data_dir / "solution.csv", dtype={"row_id": str})
    assert len(solution) == 4 * len(files)
    labels = list(solution.columns[1:])
    for name, events in task.soundscapes.groupby("soundscape"):
        expected = window_truth(list(zip(events["primary_label"], events["start_s"], events["end_s"])), labels, 4)
        got = solution[solution["row_id"].str.rsplit("_", n=1).str[0] == name][labels].to_numpy()
        np.testing.assert_array_equal(got, expected)
        assert got.sum() > 0
    kinds = task.soundscapes.groupby("soundscape")["kind"].first().value_counts()
    assert kinds["single"] == len(task.held_out) and kinds["mixture"] == 3


@pytest.mark.slow
def test_a_finished_task_is_reused_not_rebuilt(task, tiny_demo):
    before = {f.name: f.stat().st_mtime_ns for f in list_audio(task.data_dir / "test_soundscapes")}
    again = make_heldout_task(tiny_demo, task.data_dir, split=0, settings=DENSE)
    assert {f.name: f.stat().st_mtime_ns for f in list_audio(again.data_dir / "test_soundscapes")} == before
    pd.testing.assert_frame_equal(again.held_out, task.held_out)


def test_subset_scores_split_mapped_and_unmapped_classes():
    solution = pd.DataFrame({"row_id": ["r1", "r2", "r3", "r4"], "a": [1, 0, 0, 0], "b": [0, 1, 0, 0],
                             "c": [0, 0, 0, 0]})
    sub = pd.DataFrame({"row_id": ["r1", "r2", "r3", "r4"], "a": [0.9, 0.1, 0.2, 0.3], "b": [0.5, 0.1, 0.6, 0.7],
                        "c": [0.1, 0.2, 0.3, 0.4]})
    s = subset_scores(solution, sub, {"a": True, "b": False, "c": True})
    assert s["mapped"] == 1.0 and s["unmapped"] == 0.0 and s["all"] == 0.5  # c has no positive: not scored
    assert np.isnan(subset_scores(solution, sub, {"c": True})["mapped"])


@pytest.mark.slow
def test_real_benchmark_runs_variants_through_the_stages_and_reuses_heads(tiny_demo, tmp_path):
    from birdclef_bench.realbench import RealBenchmark, real_table

    # 12 test minutes of 30 s (SPARSE), not the default 150 of 60 s: the stages, the reuse and the scoring are the
    # same, and the submission of 150 minutes was most of this test's time
    bench = RealBenchmark(tmp_path, tiny_demo, splits=[0], settings=SPARSE,
                          base=dict(backbone="melstats", epochs=2, n_workers=1, val_soundscapes=2))
    first = bench.run("default", {}, 0, 0)
    again = bench.run("no-smooth", {"smoothing_kernel": (1.0,)}, 0, 0)  # post-processing only: same head
    assert len(bench.trained) == 1
    assert 0.0 <= first["all"] <= 1.0 and np.isnan(first["mapped"])  # melstats knows no species
    assert first["unmapped"] == first["all"] and again["all"] != first["all"]
    table = real_table(pd.DataFrame([{"variant": "zero-shot", "split": 0, "seed": -1, "all": 0.5, "mapped": np.nan,
                                      "unmapped": 0.5}, first, again]))
    assert "| `default` |" in table and "| `no-smooth` |" in table


SPARSE = TaskSettings(n_soundscapes=12, soundscape_s=30.0, lockbox_share=0.5)


@pytest.fixture(scope="module")
def sparse(tiny_demo, tmp_path_factory):
    return make_heldout_task(tiny_demo, tmp_path_factory.mktemp("sparse") / "s0", split=0, settings=SPARSE)


def test_no_held_out_recording_shares_a_session_with_a_training_one(tmp_path):
    from birdclef.data.competition import load_taxonomy, load_train_metadata

    rows = []  # 3 species; "s1" recorded two of them in one session (one place, adjacent numbers)
    for i, (label, author, lat) in enumerate([("a", "s1", "1"), ("b", "s1", "1"), ("a", "x", "2"), ("b", "y", "3"),
                                               ("c", "z", "4"), ("c", "w", "5"), ("a", "v", "6")]):
        rows.append({"primary_label": label, "secondary_labels": "[]", "type": "[]", "filename": f"{label}/XC{100 + i}.ogg",
                     "collection": "XC", "rating": "5", "url": f"https://xeno-canto.org/{100 + i}", "latitude": lat,
                     "longitude": lat, "scientific_name": label, "common_name": label, "author": author, "license": ""})
    meta = pd.DataFrame(rows)
    session = dict(zip(meta["filename"], recording_sessions(meta)))
    lockbox = set(session_holdout(meta, LOCKBOX, lockbox_share=0.5))
    for split in (LOCKBOX, 0, 1, 2, 3):
        held = set(session_holdout(meta, split, lockbox_share=0.5))
        train = set(meta["filename"]) - held
        assert held and not {session[f] for f in held} & {session[f] for f in train}
        assert set(meta.loc[meta["filename"].isin(train), "primary_label"]) == {"a", "b", "c"}  # all still train
        if split != LOCKBOX:
            assert not held & lockbox  # the lockbox is only ever held out by its own split
    assert ("a/XC100.ogg" in lockbox | set(session_holdout(meta, 0, lockbox_share=0.5))) == \
        ("b/XC101.ogg" in lockbox | set(session_holdout(meta, 0, lockbox_share=0.5)))  # the session moves whole


@pytest.mark.slow
def test_sparse_task_looks_like_a_competition_test(sparse):
    st = sparse.stats
    assert st["n_soundscapes"] == 12 and st["positive_share"] <= 0.35 and st["empty_file_share"] > 0
    assert st["median_run"] <= 2
    files = list_audio(sparse.data_dir / "test_soundscapes")
    assert len(files) == 12 and all(sf.info(str(f)).duration == pytest.approx(30.0, abs=0.01) for f in files)


@pytest.mark.slow
def test_sparse_truth_matches_the_audio_it_wrote(sparse):
    solution, ignore = read_solution(sparse.data_dir / "solution.csv")
    labels = list(solution.columns[1:])
    calls = sparse.soundscapes[sparse.soundscapes["kind"] == "call"]
    assert len(calls) and set(calls["primary_label"]) <= set(sparse.held_out["primary_label"])
    for name, g in solution.groupby(solution["row_id"].str.rsplit("_", n=1).str[0]):
        y = g[labels].to_numpy()
        placed = calls[calls["soundscape"] == name]
        assert set(np.asarray(labels)[y.sum(0) > 0]) == set(placed["primary_label"])  # a positive needs a call
        for label, c in placed.groupby("primary_label"):
            expected = np.zeros(len(y), np.int8)
            for a, b in zip(c["start_s"], c["end_s"]):
                cover = np.clip(np.minimum(b, np.arange(1, len(y) + 1) * 5.0) - np.maximum(a, np.arange(len(y)) * 5.0), 0, None)
                expected |= (cover >= min(1.0, 0.5 * (b - a))).astype(np.int8)
            np.testing.assert_array_equal(y[:, labels.index(label)], expected)
        x, sr = sf.read(str(sparse.data_dir / "test_soundscapes" / f"{name}.ogg"), dtype="float32")
        db = band_db(x, sr)
        loud = placed[placed["snr_db"] >= 10]
        for a, b in zip(loud["start_s"], loud["end_s"]):  # loud calls stand out of the bed where they were placed
            if b - a > 0.3:
                assert db[int(a / FRAME_S) + 3:int(b / FRAME_S) - 3].max() > np.median(db) + 5
    assert ignore is not None and list(ignore["row_id"]) == list(solution["row_id"])
    assert not ((ignore[labels].to_numpy() > 0) & (solution[labels].to_numpy() > 0)).any()


@pytest.mark.slow
def test_no_background_from_a_training_recording(sparse):
    train = set(pd.read_csv(sparse.data_dir / "train.csv", dtype=str)["filename"])
    bed = sparse.soundscapes[sparse.soundscapes["kind"] == "bed"]
    assert len(bed) and set(bed["filename"]) <= set(sparse.held_out["filename"])
    assert not set(bed["filename"]) & train


@pytest.mark.slow
def test_a_task_is_rebuilt_when_its_settings_change(sparse, tiny_demo):
    again = make_heldout_task(tiny_demo, sparse.data_dir, split=0, settings=SPARSE)
    assert again.stats == sparse.stats  # same settings: reused
    other = make_heldout_task(tiny_demo, sparse.data_dir, split=0,
                              settings=TaskSettings(n_soundscapes=5, soundscape_s=30.0, lockbox_share=0.5))
    assert other.stats["n_soundscapes"] == 5 and len(list_audio(other.data_dir / "test_soundscapes")) == 5
    assert len(pd.read_csv(other.data_dir / "solution.csv")) == 5 * 6


def test_ignored_cells_are_left_out_of_the_score():
    solution = pd.DataFrame({"row_id": ["r1", "r2", "r3"], "a": [1, 0, 0]})
    sub = pd.DataFrame({"row_id": ["r1", "r2", "r3"], "a": [0.5, 0.9, 0.1]})
    assert score(solution, sub) == 0.5
    ignore = pd.DataFrame({"row_id": ["r1", "r2", "r3"], "a": [0, 1, 0]})
    assert score(solution, sub, ignore=ignore) == 1.0  # r2 (a secondary species, say) is not judged


def test_the_paired_table_gives_each_variants_gain_over_the_default_run_by_run():
    from birdclef_bench.realbench import paired_table

    rows = [{"variant": v, "split": s, "seed": seed, "all": a, "mapped": a + 0.1, "unmapped": a - 0.1}
            for (v, s, seed, a) in [("default", 0, 0, 0.80), ("default", 1, 0, 0.70), ("x", 0, 0, 0.82),
                                    ("x", 1, 0, 0.69), ("zero-shot", 0, -1, 0.5)]]
    table = paired_table(pd.DataFrame(rows))
    assert "| sparse" not in table and "| `x` | 2 | +0.0050 ± 0.0212 |" in table and "| 1/2 |" in table
    assert "`default`" not in table and "zero-shot" not in table
    # with training regimes a run is (regime, split, seed): each variant is paired within its own regime
    both = pd.DataFrame([{**r, "regime": k, "all": r["all"] + (0.1 if k == "1" and r["variant"] == "x" else 0)}
                         for r in rows for k in ("1", "all")])
    table = paired_table(both)
    assert "| `x` | 4 | +0.0550 ± 0.0603 |" in table and "| 3/4 |" in table


POOLED = TaskSettings(n_soundscapes=12, soundscape_s=30.0, lockbox_share=0.5, pool_share=0.8, pool_soundscapes=4)


@pytest.fixture(scope="module")
def pooled(tiny_demo, tmp_path_factory):
    return make_heldout_task(tiny_demo, tmp_path_factory.mktemp("pooled") / "s0", split=0, settings=POOLED)


@pytest.mark.slow
def test_the_pool_is_in_neither_training_nor_test_and_is_unlabelled(pooled, tiny_demo, tmp_path):
    from birdclef.data.competition import load_taxonomy, load_train_metadata

    sparse = make_heldout_task(tiny_demo, tmp_path / "plain", split=0, settings=SPARSE)  # the same task, no pool
    pool = pd.read_csv(pooled.data_dir / "pool_recordings.csv", dtype=str)
    train = set(pd.read_csv(pooled.data_dir / "train.csv", dtype=str)["filename"])
    assert len(pool) and not set(pool["filename"]) & train
    assert not set(pool["filename"]) & set(pooled.held_out["filename"])  # no test recording
    assert not set(pool["filename"]) & set(pooled.soundscapes["filename"])  # nothing of it in a test soundscape
    taxonomy = load_taxonomy(tiny_demo / "taxonomy.csv")
    meta, _ = load_train_metadata(tiny_demo / "train.csv", taxonomy)
    session = dict(zip(meta["filename"], recording_sessions(meta)))
    lockbox = set(session_holdout(meta, LOCKBOX, lockbox_share=0.5))
    assert not {session[f] for f in pool["filename"]} & {session[f] for f in train | lockbox}  # whole sessions
    assert set(meta.loc[meta["filename"].isin(train), "primary_label"]) == set(meta["primary_label"])  # all train
    files = list_audio(pooled.data_dir / "train_soundscapes")
    assert len(files) == 4 and all(f.name.startswith("pool_s0_") for f in files)
    assert not (pooled.data_dir / "train_soundscapes_labels.csv").exists()
    assert pooled.stats["n_pool_recordings"] == len(pool)
    # the test side is the task without a pool, and the pool keys the folder
    assert pooled.held_out.equals(sparse.held_out)
    pd.testing.assert_frame_equal(read_solution(pooled.data_dir / "solution.csv")[0],
                                  read_solution(sparse.data_dir / "solution.csv")[0])
    assert POOLED.tag == "sparse-session-pool0.8" and SPARSE.tag == "sparse-session"
    assert "pool_share" not in SPARSE.to_dict()  # tasks built before the pool still match their task.json
    with pytest.raises(ValueError, match="pool_share"):
        TaskSettings(holdout="file", construction="dense", pool_share=0.3)


@pytest.mark.slow
def test_real_benchmark_noisy_student_on_the_pool(tiny_demo, tmp_path):
    from birdclef_bench.realbench import REAL_VARIANTS, RealBenchmark

    bench = RealBenchmark(tmp_path, tiny_demo, splits=[0], settings=POOLED,
                          base=dict(backbone="melstats", epochs=2, n_workers=1, val_soundscapes=4))
    base = bench.run("default", {}, 0, 0)
    student = bench.run("noisy-student-share", REAL_VARIANTS["noisy-student-share"][1], 0, 0)
    rounds = pd.read_csv(next((tmp_path / "runs").glob("noisy-student-share-*")) / "model" / "pseudo_rounds.csv")
    assert rounds["n_windows"].iloc[1] > 0 and rounds["mean_target_sum"].iloc[1] <= 0.75 + 1e-6
    assert 0 <= student["all"] <= 1 and 0 <= base["all"] <= 1
    train_csv = pd.read_csv(bench.tasks[0] / "train.csv", dtype=str)
    assert len(train_csv) < len(pd.read_csv(tiny_demo / "train.csv", dtype=str)) - len(bench_held(bench))


def bench_held(bench):
    return pd.read_csv(bench.tasks[0] / "heldout_recordings.csv", dtype=str)


def _occupancy(tmp_path, rows):
    path = tmp_path / "occupancy.csv"
    pd.DataFrame(rows, columns=["set", "chunk", "species", "occupancy"]).to_csv(path, index=False)
    return path


DENSITY_ROWS = [("A", "0", "", ""), ("A", "1", "7", "111100000000"), ("A", "1", "8", "000000000011"),
                ("B", "0", "3", "010101010101")]


@pytest.fixture(scope="module")
def density(tiny_demo, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("density")
    settings = TaskSettings(construction="density", occupancy=str(_occupancy(tmp, DENSITY_ROWS)), n_soundscapes=8,
                            lockbox_share=0.5)
    return make_heldout_task(tiny_demo, tmp / "s0", split=0, settings=settings)


def test_density_minutes_carry_the_real_presence_patterns_they_drew(density):
    from birdclef_bench.density import load_occupancy

    chunks = {c.key: c for c in load_occupancy(density.data_dir.parent / "occupancy.csv")}
    solution, ignore = read_solution(density.data_dir / "solution.csv")
    labels = list(solution.columns[1:])
    drawn = density.soundscapes.groupby("soundscape")["chunk"].first()
    assert len(drawn) == 8 and set(drawn) <= set(chunks)
    assert len(set(drawn)) > 1  # several real chunks drawn
    for name, g in solution.groupby(solution["row_id"].str.rsplit("_", n=1).str[0]):
        y = g[labels].to_numpy().T  # (classes, 12)
        got = sorted(map(tuple, y[y.any(1)].astype(bool)))
        want = sorted(tuple(p) for p in chunks[drawn[name]].patterns)
        assert got == want  # each drawn species' pattern, on some held-out species, exactly
        present = set(np.asarray(labels)[y.any(1)])
        calls = density.soundscapes[(density.soundscapes["soundscape"] == name) & (density.soundscapes["kind"] == "call")]
        assert present == set(calls["primary_label"]) and present <= set(density.held_out["primary_label"])
    assert not ((ignore[labels].to_numpy() > 0) & (solution[labels].to_numpy() > 0)).any()
    st = density.stats
    assert st["n_soundscapes"] == 8 and 0 < st["positive_share"] < 1 and st["median_windows"] >= 2
    assert st["empty_file_share"] == pytest.approx((drawn == "A/0").mean())


def test_density_needs_one_minute_minutes_and_a_valid_table(tiny_demo, tmp_path):
    from birdclef.errors import BirdclefError
    from birdclef_bench.density import load_occupancy

    bad = _occupancy(tmp_path, [("A", "0", "1", "1101")])
    with pytest.raises(BirdclefError, match="12 characters"):
        load_occupancy(bad)
    with pytest.raises(BirdclefError, match="no occupancy table"):
        load_occupancy(tmp_path / "missing.csv")
    good = _occupancy(tmp_path, DENSITY_ROWS)
    with pytest.raises(BirdclefError, match="are 60 s long"):
        make_heldout_task(tiny_demo, tmp_path / "t", split=0, settings=TaskSettings(
            construction="density", occupancy=str(good), n_soundscapes=2, soundscape_s=30.0, lockbox_share=0.5))
    with pytest.raises(ValueError, match="occupancy"):
        TaskSettings(occupancy=str(good))  # the sparse construction reads no table


def test_density_and_occupancy_stats_count_windows_per_present_species():
    from birdclef_bench.density import Chunk, density_stats, occupancy_stats

    y = np.zeros((24, 3), np.int8)  # file 0: class 0 in windows 0-3, class 1 in window 11; file 1 empty
    y[0:4, 0] = 1
    y[11, 1] = 1
    st = density_stats(y)
    assert st["positive_share"] == 5 / 24 and st["empty_file_share"] == 0.5 and st["median_windows"] == 2.5
    ref = occupancy_stats([Chunk("a/0", (np.arange(12) < 4, np.arange(12) == 11)), Chunk("a/1", ())])
    assert ref == st


def test_few_recording_regimes_keep_k_recordings_per_species_from_as_many_sessions():
    from birdclef_bench.heldout import training_subsample

    rows = []  # species a: 5 sessions of one recording; b: one session of 3 (adjacent numbers) + 2 single ones
    for i, (label, author, lat) in enumerate([("a", "p", "1"), ("a", "q", "2"), ("a", "r", "3"), ("a", "s", "4"),
                                              ("a", "t", "5"), ("b", "u", "6"), ("b", "u", "6"), ("b", "u", "6"),
                                              ("b", "v", "7"), ("b", "w", "8"), ("c", "x", "9")]):
        rows.append({"primary_label": label, "filename": f"{label}/XC{100 + i}.ogg", "url": "", "latitude": lat,
                     "longitude": lat, "author": author, "date": ""})
    meta = pd.DataFrame(rows)
    session = dict(zip(meta["filename"], recording_sessions(meta)))
    for k in (1, 2, 3, 4):
        kept = training_subsample(meta, k, split=0)
        counts = meta[meta["filename"].isin(kept)]["primary_label"].value_counts()
        assert counts["a"] == k and counts["b"] == k and counts["c"] == 1  # c has only one
        b_sessions = [session[f] for f in kept if f.startswith("b/")]
        assert len(set(b_sessions)) == min(k, 3)  # a second recording of a session only once all three gave one
    assert len(training_subsample(meta, 10, split=0)) == len(meta)
    assert training_subsample(meta, 1, split=0) == training_subsample(meta, 1, split=0)  # seeded
    with pytest.raises(ValueError, match="per_class"):
        training_subsample(meta, 0, split=0)


def test_a_regime_task_trains_on_fewer_recordings_and_tests_on_the_same_files(sparse, tmp_path):
    from birdclef_bench.heldout import make_regime_task

    regime = make_regime_task(sparse, tmp_path / "s0-r1", per_class=1, split=0)
    full = pd.read_csv(sparse.data_dir / "train.csv", dtype=str)
    few = pd.read_csv(regime.data_dir / "train.csv", dtype=str)
    assert set(few["filename"]) < set(full["filename"]) and set(few["primary_label"]) == set(full["primary_label"])
    assert (regime.data_dir / "test_soundscapes").resolve() == (sparse.data_dir / "test_soundscapes").resolve()
    assert [f.name for f in list_audio(regime.data_dir / "test_soundscapes")] == \
        [f.name for f in list_audio(sparse.data_dir / "test_soundscapes")]
    pd.testing.assert_frame_equal(read_solution(regime.data_dir / "solution.csv")[0],
                                  read_solution(sparse.data_dir / "solution.csv")[0])
    assert regime.stats["n_train_recordings"] == len(few) and regime.stats["per_class"] == 1
    mtime = (regime.data_dir / "train.csv").stat().st_mtime_ns
    again = make_regime_task(sparse, tmp_path / "s0-r1", per_class=1, split=0)
    assert (again.data_dir / "train.csv").stat().st_mtime_ns == mtime and again.stats == regime.stats


def test_the_regime_table_says_where_the_default_falls_below_zero_shot():
    from birdclef_bench.realbench import regime_table

    rows = [{"variant": "zero-shot", "construction": "density-session", "regime": "–", "split": s, "seed": -1,
             "all": 0.7, "mapped": 0.9, "unmapped": 0.5} for s in (0, 1)]
    rows += [{"variant": "zero-shot-smoothed", "construction": "density-session", "regime": "–", "split": s,
              "seed": -1, "all": 0.7, "mapped": 0.91, "unmapped": 0.5} for s in (0, 1)]
    for regime, m in (("1", 0.80), ("all", 0.92)):
        rows += [{"variant": "default", "construction": "density-session", "regime": regime, "split": s, "seed": seed,
                  "all": m - 0.05, "mapped": m + 0.001 * seed, "unmapped": 0.6} for s in (0, 1) for seed in (0, 1)]
    table = regime_table(pd.DataFrame(rows))
    lines = table.splitlines()
    assert lines[2].startswith("| density-session | 1 | 2 splits × 2 seeds |") and "| -0.099 ± 0.001 | **no** (-0.099) |" in lines[2]
    assert lines[3].startswith("| density-session | all |") and lines[3].endswith("| yes |")


def test_grid_boosts_match_the_products_file_boost_and_the_evidence_boost_rises_with_the_file():
    from birdclef.postprocess.steps import file_boost, smooth_windows
    from birdclef_bench.postgrid import finish

    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, (12, 3)) * np.array([1.0, 0.5, 0.05])  # a sure class, a middling one, a faint one
    np.testing.assert_allclose(finish(p, "none", "mult-1"), file_boost(p, power=1.0), rtol=1e-5)
    np.testing.assert_allclose(finish(p, "k3", "add-0.3"), file_boost(smooth_windows(p, (0.25, 0.5, 0.25)), alpha=0.3),
                               rtol=1e-5)
    np.testing.assert_allclose(finish(p, "none", "none"), p)
    lift = finish(p, "none", "evidence") - p
    assert (lift >= -1e-6).all() and (finish(p, "none", "evidence") <= p.max(0) + 1e-6).all()
    assert lift[:, 0].mean() > lift[:, 1].mean() > lift[:, 2].mean()  # the surer the file, the stronger the lift
    with pytest.raises(ValueError, match="unknown grid point"):
        finish(p, "k7", "none")


def test_the_grid_scores_every_point_from_one_submission():
    from birdclef_bench.postgrid import BOOSTS, SMOOTHING, files_of, test_grid
    from birdclef_bench.realbench import subset_scores

    rng = np.random.default_rng(1)
    ids = [f"f{i}_{5 * (w + 1)}" for i in range(4) for w in range(12)]
    y = np.zeros((48, 2), int)
    y[0:12:2, 0] = 1  # class a in every other window of file 0 only
    y[24:30, 1] = 1
    solution = pd.DataFrame({"row_id": ids, "a": y[:, 0], "b": y[:, 1]})
    noisy = np.clip(y * 0.3 + rng.uniform(0, 0.6, y.shape), 0, 1)
    sub = pd.DataFrame({"row_id": ids[::-1], "a": noisy[::-1, 0], "b": noisy[::-1, 1]})  # any row order
    assert list(files_of(sub)["f0"]["row_id"]) == ids[:12]
    rows = pd.DataFrame(test_grid(sub, solution, None, {"a": True, "b": False}))
    assert len(rows) == len(SMOOTHING) * len(BOOSTS)
    raw = rows[(rows["smoothing"] == "none") & (rows["boost"] == "none")].iloc[0]
    assert raw["all"] == pytest.approx(subset_scores(solution, sub, {"a": True, "b": False})["all"])
    boosted = rows[(rows["smoothing"] == "none") & (rows["boost"] == "mult-1")].iloc[0]
    assert boosted["all"] > raw["all"]  # the files without a class are pushed down in every window


@pytest.mark.slow  # two trainings and three task builds: ~1 min on a shared machine
def test_constructions_of_one_split_share_a_head_and_the_grid_scores_its_saved_submission(tiny_demo, tmp_path):
    from birdclef_bench.postgrid import BOOSTS, SMOOTHING, run_grid
    from birdclef_bench.realbench import REAL_VARIANTS, RealBenchmark

    occupancy = _occupancy(tmp_path, DENSITY_ROWS)
    base = dict(backbone="melstats", epochs=2, n_workers=1, val_soundscapes=2)
    trained: dict = {}
    few = RealBenchmark(tmp_path, tiny_demo, splits=[0], base=base, settings=SPARSE, per_class=2, trained=trained)
    dense = RealBenchmark(tmp_path, tiny_demo, splits=[0], base=base, per_class=2, trained=trained,
                          settings=TaskSettings(construction="density", occupancy=str(occupancy), n_soundscapes=3,
                                                lockbox_share=0.5))
    rows = [b.run("pre-smooth", REAL_VARIANTS["pre-smooth"][1], 0, 0) for b in (few, dense)]
    assert len(trained) == 1  # the same training recordings: one head, scored on both constructions' minutes
    assert [r["regime"] for r in rows] == ["2", "2"] and rows[0]["construction"] == "sparse-session"
    full = RealBenchmark(tmp_path, tiny_demo, splits=[0], base=base, settings=SPARSE, trained=trained)
    assert full.training_key(0) != few.training_key(0)  # every recording: another head
    grid = run_grid(tmp_path, pd.DataFrame(rows))
    assert len(grid) == 2 * len(SMOOTHING) * len(BOOSTS) and set(grid["source"]) == {"trained"}
    assert grid["all"].between(0, 1).all() and (tmp_path / "postprocess_grid.csv").exists()
    raw = grid[(grid["construction"] == "sparse-session") & (grid["smoothing"] == "none") & (grid["boost"] == "none")]
    assert raw["all"].iloc[0] == pytest.approx(rows[0]["all"])  # the grid's origin is the run's own submission
