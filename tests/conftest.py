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
