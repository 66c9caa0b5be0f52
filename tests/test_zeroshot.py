"""Zero-shot blending with a stand-in species classifier (BirdNET's species do not occur in the demo)."""
import numpy as np
import pandas as pd
import pytest

import birdclef.submission as submission
from birdclef.backbones import BackboneSpec
from birdclef.config import build_config
from birdclef.data import competition_paths, list_audio, load_taxonomy
from birdclef.preprocess import run_preprocess
from birdclef.submission import run_submission
from birdclef.train import run_training
from birdclef.zeroshot import load_zero_shot, map_taxonomy


class StandIn:
    """Scores two 'species': the first is named like a demo class, the second is unknown there.

    Score of species 0 per window: the window's peak amplitude (so it varies over time); species 1: 0.5.
    """

    spec = BackboneSpec("standin", 16_000, 1.0, 8, 1.0)

    def __init__(self, scientific: str):
        self.labels = [(scientific, "Stand-in"), ("Nullus ignotus", "Nobody")]

    def embed(self, windows):
        return np.zeros((len(windows), 8), np.float32)

    def scores(self, windows):
        peak = np.abs(np.asarray(windows)).max(axis=1)
        return np.stack([np.clip(peak, 0, 1), np.full(len(windows), 0.5)], axis=1).astype(np.float32)


class NoScores:
    spec = StandIn.spec

    def embed(self, windows):
        return np.zeros((len(windows), 8), np.float32)


def test_classes_map_by_scientific_name_ignoring_case_and_spaces():
    taxonomy = pd.DataFrame({"primary_label": ["a", "b", "c"],
                             "scientific_name": ["Parus major", "Boana minor ", "Nothing here"]})
    cols = map_taxonomy(taxonomy, [("Boana  MINOR", "x"), ("Parus major", "Great Tit"), ("Parus major", "dup")])
    assert cols.tolist() == [1, 0, -1]


def test_no_scores_or_no_mapped_class_turns_zero_shot_off(tiny_demo):
    taxonomy = load_taxonomy(tiny_demo / "taxonomy.csv")
    config = build_config(data_dir=str(tiny_demo), backbone="melstats")
    assert load_zero_shot(config, taxonomy, backbone=NoScores()) is None
    assert load_zero_shot(config, taxonomy, backbone=StandIn("Turdus nowhere")) is None


def test_window_scores_take_the_best_frame_of_each_window_for_mapped_classes(tiny_demo):
    taxonomy = load_taxonomy(tiny_demo / "taxonomy.csv")
    target = taxonomy["scientific_name"].iloc[1]
    zs = load_zero_shot(build_config(data_dir=str(tiny_demo), backbone="melstats", denoise=False), taxonomy,
                        backbone=StandIn(target))
    assert zs is not None and zs.mapped.tolist() == [False, True, False, False]
    f = list_audio(competition_paths(tiny_demo).test_soundscapes)[0]
    scores = zs.window_scores(f)
    assert scores.shape == (4, 4) and (scores[:, [0, 2, 3]] == 0).all()
    assert ((scores[:, 1] > 0) & (scores[:, 1] <= 1)).all() and len(set(scores[:, 1].round(4))) > 1


@pytest.fixture(scope="module")
def trained(tiny_demo, tmp_path_factory):
    config = build_config(data_dir=str(tiny_demo), work_dir=str(tmp_path_factory.mktemp("zs")), backbone="melstats",
                          epochs=3, denoise=False, smoothing_kernel=(1.0,))  # blended scores stay as they are
    run_preprocess(config=config)
    run_training(config=config, progress=False)
    return config


def test_submission_blends_mapped_classes_only(trained, tiny_demo, monkeypatch):
    taxonomy = load_taxonomy(tiny_demo / "taxonomy.csv")
    labels = taxonomy["primary_label"].tolist()
    standin = StandIn(taxonomy["scientific_name"].iloc[1])
    monkeypatch.setattr(submission, "load_zero_shot", lambda config, tax: load_zero_shot(config, tax, backbone=standin))
    plain = run_submission(config=trained, out_path=f"{trained.work_dir}/plain.csv").submission
    full = build_config(**{**trained.to_dict(), "zero_shot_weight": 1.0})
    blended = run_submission(config=full, out_path=f"{trained.work_dir}/blended.csv").submission
    zs = load_zero_shot(full, taxonomy, backbone=standin)
    expected = np.concatenate([zs.window_scores(f)[:, 1] for f in list_audio(competition_paths(tiny_demo).test_soundscapes)])
    np.testing.assert_allclose(blended[labels[1]].to_numpy(), expected, rtol=1e-5)
    others = [labels[i] for i in (0, 2, 3)]
    # (a first run embeds in float32, a rerun reads the float16 cache: equal to ~1e-3)
    np.testing.assert_allclose(blended[others].to_numpy(), plain[others].to_numpy(), atol=2e-3)
