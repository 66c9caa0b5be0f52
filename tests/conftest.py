"""Shared fixtures: a tiny demo competition folder, generated once per test session."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[1]
SHARED_MODELS = REPO.parent / "shared" / "models"


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory) -> Path:
    """4 classes × 5 recordings, 2 train + 2 test soundscapes of 20 s: the whole pipeline in seconds."""
    from birdclef.data.demo import make_demo_dataset

    root = tmp_path_factory.mktemp("tiny_demo")
    make_demo_dataset(root, n_classes=4, recordings_per_class=5, recording_s=(4.0, 8.0), n_train_soundscapes=2,
                      n_test_soundscapes=2, soundscape_s=20.0, speech_fraction=0.3, seed=1)
    return root


@pytest.fixture(scope="session")
def embedded_demo(tiny_demo, tmp_path_factory) -> Path:
    """The tiny demo preprocessed once under melstats (its embedding settings at their defaults): a work
    dir whose embedding cache and preprocess folder :func:`demo_run`'s runs link to, so the recordings are
    embedded, and each validation fold's soundscapes mixed and embedded, once per session."""
    from birdclef.config import build_config
    from birdclef.features.preprocess import run_preprocess

    config = build_config(data_dir=str(tiny_demo), work_dir=str(tmp_path_factory.mktemp("embedded_demo")),
                          backbone="melstats")
    run_preprocess(config=config)
    return Path(config.work_dir)


@pytest.fixture(scope="session")
def demo_run(tiny_demo, embedded_demo, tmp_path_factory):
    """``demo_run(**params)`` → the Config of a melstats run on the tiny demo trained with ``params`` (settings
    after the embedding stage only), trained once per distinct ``params`` per session and shared: read it only.
    ``demo_run(into=folder, **params)``: a copy of that run in ``folder`` (its caches still linked), to write in.
    ``val_soundscapes`` is 2 unless given: none of its users is about the mixed validation minutes (they have their
    own tests), and mixing and embedding the default 30 was most of the session's first training."""
    import shutil

    from birdclef.config import EMBEDDING_FIELDS, build_config
    from birdclef.models.train import run_training
    from birdclef.workdir import RunLayout

    runs = {}

    def get(*, into: Path | None = None, **params):
        embedding = sorted(set(params) & set(EMBEDDING_FIELDS))
        if embedding:
            raise ValueError(f"demo_run shares embedded_demo's embeddings: {embedding} would need their own")
        params = {"val_soundscapes": 2, **params}
        key = repr(sorted(params.items()))
        if key not in runs:
            work = tmp_path_factory.mktemp("demo_run")
            RunLayout(work).link_caches(RunLayout(embedded_demo))
            config = build_config(data_dir=str(tiny_demo), work_dir=str(work), backbone="melstats", **params)
            run_training(config=config, progress=False)
            runs[key] = config
        if into is None:
            return runs[key]
        shutil.copytree(runs[key].work_dir, into, symlinks=True)
        return runs[key].replace(work_dir=str(into))

    return get
