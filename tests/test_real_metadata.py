"""Real metadata never breaks a run: 02_preprocess and 03_train end to end on the metadata shapes real
data has (issue 32), each saying what it did. The splitting itself is tested shape by shape, drawn by
hypothesis, in tests/test_folds.py; these run the whole stages (melstats backbone, a few seconds each)."""
import json
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from birdclef.config import build_config
from birdclef.features.preprocess import run_preprocess
from birdclef.models.train import run_training

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def base_2026(tmp_path_factory):
    """2026 layout: 2 classes × 3 recordings (one a numeric iNat label), a third class heard only in the
    one labelled train soundscape, one test soundscape."""
    from birdclef.data.demo import make_demo_dataset

    root = tmp_path_factory.mktemp("meta") / "base"
    make_demo_dataset(root, n_classes=3, recordings_per_class=3, recording_s=(4.0, 6.0), n_train_soundscapes=1,
                      n_test_soundscapes=1, soundscape_s=20.0, speech_fraction=0.0, seed=1, layout="2026",
                      n_soundscape_only=1)
    return root


def _shape(base, tmp_path, edit, labels=True):
    root = tmp_path / "data"
    shutil.copytree(base, root)
    train = pd.read_csv(root / "train.csv", dtype=str, keep_default_na=False)
    edit(train).to_csv(root / "train.csv", index=False)
    if not labels:
        (root / "train_soundscapes_labels.csv").unlink()
    return build_config(data_dir=str(root), work_dir=str(tmp_path / "work"), backbone="melstats", epochs=2,
                        vad=False, denoise=False, val_soundscapes=0)


def _run(config, capsys):
    run_preprocess(config=config)
    result = run_training(config=config, progress=False)
    saved = json.loads((result.out_dir / "metrics.json").read_text())
    return result, saved, capsys.readouterr().out


def test_the_reported_shape_one_recordist_at_one_place_trains_on_two_folds(base_2026, tmp_path, capsys):
    # issue 32's crash: every clip one session (one named recordist, one place) beside one labelled soundscape
    config = _shape(base_2026, tmp_path, lambda t: t.assign(author="Ana Morales", latitude="4.5233",
                                                            longitude="-71.4075"))
    result, saved, out = _run(config, capsys)
    assert saved["n_folds"] == 2 and "only 2 groups" in saved["folds_note"] and "validation" not in saved
    assert "validation folds: only 2 groups" in out
    assert result.metrics["n_val_examples"] > 0 and result.metrics["n_train_examples"] > 0


def test_placeholder_recordists_at_one_place_keep_five_folds(base_2026, tmp_path, capsys):
    config = _shape(base_2026, tmp_path, lambda t: t.assign(author=["unknown", "Unknown ", "", "anonymous", "NaN",
                                                                    "UNKNOWN"][:len(t)], latitude="4.5",
                                                            longitude="-71.4"))
    result, saved, out = _run(config, capsys)
    manifest = pd.read_csv(tmp_path / "work" / "preprocess" / "manifest.csv")
    assert manifest["session"].is_unique  # a placeholder links nothing: each clip its own session
    assert saved["n_folds"] == 5 and "folds_note" not in saved and "validation folds" not in out


def test_one_recording_of_one_class_trains_without_validation_and_says_so(base_2026, tmp_path, capsys):
    config = _shape(base_2026, tmp_path, lambda t: t.iloc[:1], labels=False)
    result, saved, out = _run(config, capsys)
    assert saved["validation"] == "none" and saved["n_folds"] == 0 and "without validation" in saved["folds_note"]
    assert "no validation: the last epoch (2) is kept" in out
    assert result.metrics["n_val_examples"] == 0 and len(result.history) == 2


def test_labelled_soundscapes_only_train_a_head(base_2026, tmp_path, capsys):
    config = _shape(base_2026, tmp_path, lambda t: t.iloc[:0])
    result, saved, out = _run(config, capsys)
    assert saved["n_folds"] == 0 and saved["validation"] == "none"  # one soundscape: one site-day
    assert "0 recordings embedded" in out and result.metrics["n_train_examples"] > 0


def test_missing_coordinates_numeric_labels_and_a_soundscape_only_class(base_2026, tmp_path, capsys):
    config = _shape(base_2026, tmp_path, lambda t: t.assign(latitude="", longitude=""))
    result, saved, out = _run(config, capsys)
    labels = pd.read_csv(tmp_path / "data" / "taxonomy.csv", dtype=str)["primary_label"].tolist()
    assert any(x.isdigit() for x in labels) and list(result.meta.labels) == labels
    assert saved["n_folds"] >= 2 and result.metrics["n_val_examples"] > 0


def test_03_train_notebook_shows_a_run_without_validation(base_2026, tmp_path):
    from birdclef.pipeline import notebooks_dir

    config = _shape(base_2026, tmp_path, lambda t: t.iloc[:1], labels=False)
    run_preprocess(config=config)
    out = tmp_path / "03.ipynb"
    cmd = [sys.executable, "-m", "papermill", str(notebooks_dir() / "03_train.ipynb"), str(out), "--no-progress-bar",
           "-p", "data_dir", config.data_dir, "-p", "work_dir", config.work_dir, "-p", "epochs", "2"]
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=notebooks_dir(), timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    nb = json.loads(out.read_text())
    outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    shown = "".join("".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/plain", "")) for o in outputs)
    assert "no validation" in shown and "without validation" in shown
