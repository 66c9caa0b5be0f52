"""The model-family seam: a new family is one module (this one) and one registration, and then
trains through 03_train's entry point, submits alone or in an ensemble through 04_submit's, and
bundles for Kaggle, with no other file touched."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

from birdclef.config import build_config
from birdclef.data import audio
from birdclef.data.competition import competition_paths, load_taxonomy, n_windows
from birdclef.errors import AudioError, BirdclefError
from birdclef.family import (FAMILIES, BundleParts, Member, ModelFamily, Output, TrainResult, family, family_names,
                             family_of, register_family)
from birdclef.io import read_json, write_json
from birdclef.workdir import ModelFolder, RunLayout

TOY_FILE = "toy.json"
CHAIN = ("blend", "site_prior", "smoothing")  # no file boost: the expected values here are the members' own


@dataclass(frozen=True)
class ToyMember(Member):
    family: ClassVar[str] = "toy"
    scale: float  # the probability it gives every class of every window, times the class's prior


@register_family
class ToyFamily(ModelFamily):
    """Predicts the training class frequencies in every window, scaled by a number it learnt."""

    name = "toy"
    summary = "class frequencies, everywhere"

    def train(self, *, config, progress=True):
        labels = load_taxonomy(competition_paths(config.data_dir).taxonomy)["primary_label"].tolist()
        train = pd.read_csv(competition_paths(config.data_dir).train_csv, dtype=str)
        prior = train["primary_label"].value_counts().reindex(labels, fill_value=0).to_numpy(np.float64)
        prior = prior / prior.sum()
        folder = RunLayout.of(config).model
        folder.root.mkdir(parents=True, exist_ok=True)
        write_json({"labels": labels, "prior": prior.tolist(), "scale": 0.5}, folder.root / TOY_FILE)
        write_json(config.to_dict(), folder.config)
        return TrainResult(None, None, pd.DataFrame(), {"val_auc": float("nan")}, pd.DataFrame(), folder.root)

    def holds(self, folder):
        return (folder.root / TOY_FILE).is_file()

    def load(self, folder, config, labels, *, first):
        saved = read_json(folder.root / TOY_FILE)
        if saved["labels"] != list(labels):
            raise BirdclefError(f"{folder.root} was trained on another taxonomy")
        return ToyMember(folder.root, tuple(saved["labels"]), np.asarray(saved["prior"], np.float32), saved["scale"])

    def predict(self, members, files, config, *, zero_shot):
        out = []
        for m in members:
            pred = {}
            for f in files:
                try:
                    count = n_windows(audio.audio_info(f).duration_s, config.window_s)
                except AudioError as err:
                    pred[str(f)] = f"toy: {err}"
                    continue
                pred[str(f)] = Output(np.repeat(m.prior[None] * m.scale, count, axis=0))
            out.append(pred)
        return out

    def bundle(self, folder):
        return BundleParts(files=(TOY_FILE, "config.json"), read_labels=lambda: read_json(folder.root / TOY_FILE)["labels"],
                           uses_backbone=False, required=(TOY_FILE,))


@pytest.fixture(scope="module")
def toy_run(tiny_demo, embedded_demo, tmp_path_factory):
    from birdclef.models.train import run_training

    work = tmp_path_factory.mktemp("toy")
    RunLayout(work).link_caches(RunLayout(embedded_demo))  # the session's preprocessed tiny demo
    config = build_config(data_dir=str(tiny_demo), work_dir=str(work), backbone="melstats",
                          model_family="toy", smoothing_kernel=(0.25, 0.5, 0.25), postprocess=CHAIN)
    result = run_training(config=config, progress=False)  # 03_train's entry point
    assert result.out_dir == RunLayout.of(config).model.root
    return config


def test_a_registered_family_is_a_config_choice_and_unknown_ones_are_refused():
    assert family_names()[:2] == ("mlp", "sed") and "toy" in family_names()
    assert family("toy") is FAMILIES["toy"]
    with pytest.raises(ValueError, match="unknown model_family 'cnn'; known: 'mlp', 'sed'.*'toy'"):
        build_config(model_family="cnn")
    with pytest.raises(ValueError, match="registered twice"):
        register_family(type("Other", (ToyFamily,), {}))


@pytest.mark.slow
def test_a_folder_is_claimed_by_the_family_that_holds_it(toy_run, tmp_path):
    assert family_of(RunLayout.of(toy_run).model) is FAMILIES["toy"]
    with pytest.raises(BirdclefError, match="holds no trained model"):
        family_of(ModelFolder(tmp_path))


@pytest.mark.slow
def test_the_toy_family_submits_through_04_submits_entry_point(toy_run, tiny_demo, tmp_path):
    from birdclef.submission.submit import run_submission

    labels = load_taxonomy(tiny_demo / "taxonomy.csv")["primary_label"].tolist()
    prior = np.asarray(read_json(RunLayout.of(toy_run).model.root / TOY_FILE)["prior"])
    test_dir = tmp_path / "test"
    test_dir.mkdir()
    for f in sorted(competition_paths(str(tiny_demo)).test_soundscapes.iterdir()):
        (test_dir / f.name).write_bytes(f.read_bytes())
    (test_dir / "broken.ogg").write_bytes(b"not audio")
    with pytest.warns(UserWarning, match="broken.ogg: unreadable"):
        result = run_submission(config=toy_run, test_dir=test_dir, out_path=tmp_path / "sub.csv")
    sub = result.submission.set_index("row_id")
    good = sub[~sub.index.str.startswith("broken")][labels].to_numpy()
    np.testing.assert_allclose(good, np.repeat(prior[None] * 0.5, len(good), 0), atol=1e-6)  # smoothing keeps a constant
    np.testing.assert_allclose(sub.loc["broken_5", labels].to_numpy(float), prior, atol=1e-6)  # its prior, not a crash
    assert result.fallbacks["reason"].str.startswith("toy:").all() and len(result.fallbacks) == 1


@pytest.mark.slow
def test_the_toy_family_joins_an_mlp_head_in_an_ensemble(toy_run, demo_run, tiny_demo, tmp_path):
    from birdclef.submission.submit import run_submission

    labels = load_taxonomy(tiny_demo / "taxonomy.csv")["primary_label"].tolist()
    mlp = demo_run(into=tmp_path / "mlp", epochs=2, smoothing_kernel=(1.0,), postprocess=CHAIN)
    alone = run_submission(config=mlp, out_path=tmp_path / "mlp.csv").submission[labels].to_numpy()
    toy_dir = str(RunLayout.of(toy_run).model.root)
    both = build_config(**{**mlp.to_dict(), "ensemble_model_dirs": [toy_dir], "ensemble_weights": [3.0, 1.0]})
    mixed = run_submission(config=both, out_path=tmp_path / "both.csv").submission[labels].to_numpy()
    prior = np.asarray(read_json(Path(toy_dir) / TOY_FILE)["prior"])
    np.testing.assert_allclose(mixed, 0.75 * alone + 0.25 * prior[None] * 0.5, atol=1e-5)


@pytest.mark.slow
def test_the_toy_family_bundles_for_kaggle(toy_run, tmp_path, monkeypatch):
    from test_kaggle import USER, offline_wheel_cache

    from birdclef.submission import kaggle

    cache = offline_wheel_cache(tmp_path, monkeypatch)
    built = kaggle.build_bundle(run_dir=toy_run.work_dir, out_dir=tmp_path / "build", user=USER, wheel_cache=cache,
                                python_versions=["3.12"], competition="birdclef-2025")
    model = built.dataset_dir / "model"
    assert sorted(p.name for p in model.iterdir()) == ["config.json", TOY_FILE]
    assert json.loads((model / TOY_FILE).read_text()) == read_json(RunLayout.of(toy_run).model.root / TOY_FILE)
    assert family_of(ModelFolder(model)) is FAMILIES["toy"]  # the kernel finds the member in the bundle
    (RunLayout.of(toy_run).model.root / TOY_FILE).rename(tmp_path / "moved.json")
    try:
        with pytest.raises(BirdclefError, match="holds no trained model"):
            kaggle.build_bundle(run_dir=toy_run.work_dir, out_dir=tmp_path / "again", user=USER, wheel_cache=cache,
                                competition="birdclef-2025")
    finally:
        (tmp_path / "moved.json").rename(RunLayout.of(toy_run).model.root / TOY_FILE)


@dataclass(frozen=True)
class SlowMember(ToyMember):
    family: ClassVar[str] = "slowtoy"


@register_family
class SlowToyFamily(ToyFamily):
    """The toy family, 0.1 s per file: an ensemble member too slow for a short time budget."""

    name = "slowtoy"

    def holds(self, folder):
        return (folder.root / "slow.json").is_file()

    def load(self, folder, config, labels, *, first):
        saved = read_json(folder.root / "slow.json")
        return SlowMember(folder.root, tuple(saved["labels"]), np.asarray(saved["prior"], np.float32), 0.9)

    def predict(self, members, files, config, *, zero_shot):
        import time

        time.sleep(0.1 * len(files) * len(members))
        return super().predict(members, files, config, zero_shot=zero_shot)


@pytest.mark.slow
def test_a_short_time_budget_leaves_the_last_files_to_the_fastest_member(toy_run, tiny_demo, tmp_path):
    """40 files, a slow member (0.1 s per file) and the fast toy, 3 s allowed: after the first chunk
    of 16 (~1.6 s) the rest would take ~2.4 s more, so they go to the fast member alone; with no time
    at all left after the first chunk, the rest get the prior."""
    from birdclef.submission.submit import run_submission

    labels = load_taxonomy(tiny_demo / "taxonomy.csv")["primary_label"].tolist()
    slow_dir = tmp_path / "slow_model"
    slow_dir.mkdir()
    (slow_dir / "slow.json").write_bytes((RunLayout.of(toy_run).model.root / TOY_FILE).read_bytes())
    test_dir = tmp_path / "test"
    test_dir.mkdir()
    sources = sorted(competition_paths(str(tiny_demo)).test_soundscapes.iterdir())
    for k in range(40):
        (test_dir / f"s{k:02d}.ogg").write_bytes(sources[k % len(sources)].read_bytes())
    prior = np.asarray(read_json(RunLayout.of(toy_run).model.root / TOY_FILE)["prior"])
    setup = build_config(**{**toy_run.to_dict(), "ensemble_model_dirs": [str(slow_dir)], "smoothing_kernel": (1.0,)})

    def submit(budget_min):
        config = build_config(**{**setup.to_dict(), "time_budget_min": budget_min})
        sub = run_submission(config=config, test_dir=test_dir, out_path=tmp_path / "sub.csv").submission
        stems = sub["row_id"].str.rsplit("_", n=1).str[0]
        return {s: sub.loc[stems == s, labels].to_numpy(float) for s in sorted(set(stems))}

    both, fast = (0.5 + 0.9) / 2 * prior, 0.5 * prior  # the mean of the two members; the fast toy alone
    with pytest.warns(UserWarning, match="24 files left would pass the time budget.*fastest member alone"):
        got = submit(3.0 / 60)
    for k, stem in enumerate(sorted(got)):
        np.testing.assert_allclose(got[stem], np.repeat((both if k < 16 else fast)[None], len(got[stem]), 0), atol=1e-6)
    with pytest.warns(UserWarning, match="time budget of 0 min spent after 16 of 40 files"):
        got = submit(0.5 / 60)  # the first chunk alone (1.6 s) spends it
    for k, stem in enumerate(sorted(got)):
        np.testing.assert_allclose(got[stem], np.repeat((both if k < 16 else prior)[None], len(got[stem]), 0), atol=1e-6)
    speed = json.loads(RunLayout.of(setup).submission_speed.read_text())
    quick, slow = (m["seconds_per_file"] for m in speed["members"])  # the toy run first, then the slow one
    assert slow > 0.09 > quick  # measured per member


def test_a_family_with_no_config_section_of_its_own_refuses_another_familys_settings():
    from birdclef.errors import ParameterError

    with pytest.raises(ParameterError, match=r"^epochs=5 is a setting of model_family 'mlp' \(section 'head'\), which "
                                             r"model_family='toy' does not read.*\('toy' reads: no settings of its own\)$"):
        build_config(model_family="toy", epochs=5)
    assert build_config(model_family="toy", seed=2, smoothing_kernel=(1.0,)).seed == 2  # shared settings are read
