"""Held-out tasks (the real-audio benchmark's test soundscapes), built here from the tiny demo folder."""
import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from birdclef.data import list_audio
from birdclef.heldout import make_heldout_task, window_truth
from birdclef.realbench import subset_scores


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
    return make_heldout_task(tiny_demo, out, split=0, n_mixtures=3, soundscape_s=20.0)


def test_one_recording_per_species_is_held_out_and_kept_out_of_training(task, tiny_demo):
    source = pd.read_csv(tiny_demo / "train.csv", dtype=str, keep_default_na=False)
    train = pd.read_csv(task.data_dir / "train.csv", dtype=str, keep_default_na=False)
    held = task.held_out
    assert sorted(held["primary_label"]) == sorted(source["primary_label"].unique())  # every class has >= 2
    assert not set(held["filename"]) & set(train["filename"])
    assert len(train) + len(held) == len(source)
    assert (task.data_dir / "train_audio").resolve() == (tiny_demo / "train_audio").resolve()  # read in place


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


def test_a_finished_task_is_reused_not_rebuilt(task, tiny_demo):
    before = {f.name: f.stat().st_mtime_ns for f in list_audio(task.data_dir / "test_soundscapes")}
    again = make_heldout_task(tiny_demo, task.data_dir, split=0, n_mixtures=3, soundscape_s=20.0)
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


def test_real_benchmark_runs_variants_through_the_stages_and_reuses_heads(tiny_demo, tmp_path):
    from birdclef.realbench import RealBenchmark, real_table

    bench = RealBenchmark(tmp_path, tiny_demo, splits=[0], base=dict(backbone="melstats", epochs=2, n_workers=1))
    first = bench.run("default", {}, 0, 0)
    again = bench.run("no-smooth", {"smoothing_kernel": (1.0,)}, 0, 0)  # post-processing only: same head
    assert len(bench.trained) == 1
    assert 0.0 <= first["all"] <= 1.0 and np.isnan(first["mapped"])  # melstats knows no species
    assert first["unmapped"] == first["all"] and again["all"] != first["all"]
    table = real_table(pd.DataFrame([{"variant": "zero-shot", "split": 0, "seed": -1, "all": 0.5, "mapped": np.nan,
                                      "unmapped": 0.5}, first, again]))
    assert "| `default` |" in table and "| `no-smooth` |" in table
