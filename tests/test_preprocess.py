"""The preprocess stage: which recordings it embeds (the competition's and extra folders'), the manifest, the skip log."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from test_data import make_extra_2023, make_extra_own

from birdclef.config import build_config
from birdclef.data.competition import load_taxonomy, select_recordings
from birdclef.features.embeddings import EmbeddingCache
from birdclef.features.preprocess import run_preprocess

SESSION = {"author": "One Recordist", "collection": "XC"}  # the first 3 recordings of the competition copy: one session
SESSION_ROWS = [dict(url="https://xeno-canto.org/500000", latitude="4.5", longitude="-71.5"),
                dict(url="https://xeno-canto.org/900000", latitude="4.5", longitude="-71.5"),  # the same place
                dict(url="https://xeno-canto.org/500001", latitude="", longitude="")]  # the next number, no place


@pytest.fixture(scope="module")
def with_extras(tiny_demo, tmp_path_factory):
    """A copy of tiny_demo whose first 3 recordings are one recording session, plus a 2023-layout
    folder and an own-layout one (copies of 3 of its recordings, under the same file names),
    preprocessed and trained with the placeholder backbone."""
    from birdclef.models.train import run_training

    root = tmp_path_factory.mktemp("extras")
    competition = root / "competition"
    shutil.copytree(tiny_demo, competition)
    train = pd.read_csv(competition / "train.csv", dtype=str, keep_default_na=False)
    for i, row in enumerate(SESSION_ROWS):
        for key, value in {**SESSION, **row}.items():
            train.loc[i, key] = value
    train.to_csv(competition / "train.csv", index=False)
    taxonomy = load_taxonomy(competition / "taxonomy.csv")
    old = make_extra_2023(root / "birdclef-2023", taxonomy)
    own = make_extra_own(root / "own", competition)
    config = build_config(data_dir=str(competition), work_dir=str(root / "work"), backbone="melstats", n_workers=1,
                          epochs=3, extra_data_dirs=[str(old), str(own)])
    result = run_preprocess(config=config)
    trained = run_training(config=config, progress=False)
    return config, result, trained, taxonomy, old, own


@pytest.mark.slow
def test_extra_recordings_join_the_manifest_with_their_source(with_extras):
    config, result, _, taxonomy, old, own = with_extras
    manifest = pd.read_csv(Path(config.work_dir) / "preprocess" / "manifest.csv", dtype=str, keep_default_na=False)
    n_competition = len(pd.read_csv(Path(config.data_dir) / "train.csv"))
    # the own-layout folder holds copies of competition recordings (same file names): skipped as duplicates
    assert manifest["source"].value_counts().to_dict() == {"competition": n_competition, str(old.resolve()): 4}
    skipped = pd.read_csv(Path(config.work_dir) / "preprocess" / "skipped.csv", dtype=str, keep_default_na=False)
    dup = skipped[skipped["filename"].str.startswith("own/")]
    assert len(dup) == 3 and dup["reason"].str.contains("as a recording already used").all()
    assert manifest["filename"].is_unique and manifest["path"].is_unique
    assert set(manifest["primary_label"]) <= set(taxonomy["primary_label"])
    from_old = manifest[manifest["source"] == str(old.resolve())]
    names = taxonomy.set_index("primary_label")["scientific_name"]
    assert sorted(from_old["primary_label"]) == sorted([taxonomy["primary_label"][1]] * 2 + [taxonomy["primary_label"][2]] * 2)
    assert (from_old["filename"].str.split("/").str[0] == "birdclef-2023").all()
    assert taxonomy["primary_label"][3] in from_old["secondary_labels"].str.split("|").sum()  # secmap1, mapped
    assert names[from_old["primary_label"]].notna().all()


@pytest.mark.slow
def test_the_manifest_names_each_recordings_session(with_extras):
    from birdclef.models.examples import load_manifest

    config, result, *_ = with_extras
    manifest = load_manifest(config)
    first = manifest["filename"].iloc[0]
    assert manifest["session"].iloc[:3].tolist() == [f"session:{first}"] * 3  # one place; the next number
    sizes = manifest["session"].value_counts()
    assert sizes.iloc[0] == 3 and (sizes.iloc[1:] == 1).all() and len(sizes) == len(manifest) - 2
    assert manifest["session"].tolist() == result.manifest["session"].tolist()


@pytest.mark.slow
def test_extra_recordings_have_their_own_cache_entries(with_extras):
    config, result, *_ = with_extras
    cache = EmbeddingCache(config.work_dir, config)
    entries = {cache.entry(p) for p in result.manifest["path"]}
    assert len(entries) == len(result.manifest)  # a copy under another path is its own entry
    assert all(cache.load(p, need_speech=True) is not None for p in result.manifest["path"])


@pytest.mark.slow
def test_skipped_extras_are_logged_with_reasons(with_extras):
    config, *_ = with_extras
    skipped = pd.read_csv(Path(config.work_dir) / "preprocess" / "skipped.csv", dtype=str, keep_default_na=False)
    reasons = dict(zip(skipped["filename"], skipped["reason"]))
    assert "not in taxonomy" in reasons["birdclef-2023/nosuch9/XC1.ogg"]
    dropped = {f: r for f, r in reasons.items() if "not in the current taxonomy" in r}
    assert len(dropped) == 4 and all(f.startswith("birdclef-2023/old") for f in dropped)


@pytest.mark.slow
def test_training_keeps_one_recording_per_group(with_extras):
    config, result, trained, *_ = with_extras
    metrics = json.loads((Path(config.work_dir) / "model" / "metrics.json").read_text())
    # refit trains on every recording: one group per manifest row, the extras included
    assert metrics["n_refit_recordings"] == len(result.manifest) == trained.metrics["n_refit_recordings"]
    assert metrics["n_train_recordings"] + metrics["n_val_recordings"] == len(result.manifest)


def test_a_missing_extra_folder_stops_before_any_work(tiny_demo, tmp_path):
    config = build_config(data_dir=str(tiny_demo), work_dir=str(tmp_path / "work"), backbone="melstats",
                          extra_data_dirs=[str(tmp_path / "nowhere")])
    with pytest.raises(FileNotFoundError, match="nowhere"):
        run_preprocess(config=config)
    assert not (tmp_path / "work" / "preprocess" / "manifest.csv").exists()


def test_extras_only_fill_the_room_max_recordings_per_class_leaves():
    competition = pd.DataFrame({"primary_label": ["a", "a", "b"], "filename": ["a/1", "a/2", "b/1"]})
    extra = pd.DataFrame({"primary_label": ["a", "b", "b", "b", "c"], "filename": ["x/a/9", "x/b/7", "x/b/8", "x/b/9", "x/c/1"]})
    got = select_recordings(extra, max_per_class=2, seed=0, taken=competition)
    assert got["primary_label"].value_counts().to_dict() == {"b": 1, "c": 1}
    assert select_recordings(extra, max_per_class=None, seed=0, taken=competition) is extra


def test_extra_data_dirs_is_a_training_field_of_paths_made_absolute(tmp_path):
    from birdclef.config import EMBEDDING_FIELDS, PATH_FIELDS, TRAINING_FIELDS
    from birdclef.pipeline import absolute_paths

    assert "extra_data_dirs" in TRAINING_FIELDS and "extra_data_dirs" in PATH_FIELDS
    assert "extra_data_dirs" not in EMBEDDING_FIELDS  # adding a folder re-embeds nothing already cached
    config = build_config(extra_data_dirs="data/birdclef-2023,/data/realdev")
    assert config.extra_data_dirs == ("data/birdclef-2023", "/data/realdev") and build_config().extra_data_dirs == ()
    assert config.embedding_key() == build_config().embedding_key()
    assert absolute_paths({"extra_data_dirs": config.extra_data_dirs}, cwd=tmp_path) == {
        "extra_data_dirs": (str(tmp_path / "data" / "birdclef-2023"), "/data/realdev")}
