"""YAMNet backbone: the real TFLite file, a stand-in SavedModel, and the errors."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from birdclef.backbones import backbone_spec, get_backbone
from birdclef.backbones.yamnet import ENV_VAR, N_CLASSES, SPEC, YAMNet, yamnet_class_names
from birdclef.errors import BackboneUnavailable, SchemaError

# Model files live beside the repo (../shared/models), not in it; a user's clone skips.
MODELS = Path(__file__).resolve().parents[2] / "shared" / "models"
TFLITE = MODELS / "yamnet.tflite"
CLASS_MAP = MODELS / "yamnet_class_map.csv"

SR = SPEC.sample_rate_hz
N = SPEC.window_samples


def _sine(freq_hz: float, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(N) / SR
    return (amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def _noise(seed: int = 0, rms: float = 0.3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rms * rng.standard_normal(N), -1, 1).astype(np.float32)


@pytest.fixture(scope="module")
def tflite_yamnet():
    if not TFLITE.exists():
        pytest.skip(f"{TFLITE} not present")
    return get_backbone("yamnet", model_path=str(TFLITE))


@pytest.fixture(scope="module")
def class_names() -> list[str]:
    if not CLASS_MAP.exists():
        pytest.skip(f"{CLASS_MAP} not present")
    return yamnet_class_names(CLASS_MAP)


# --- spec and registry -------------------------------------------------------------------------

def test_spec_without_loading_weights():
    spec = backbone_spec("yamnet")
    assert spec is SPEC
    assert (spec.sample_rate_hz, spec.window_samples, spec.embedding_dim) == (16_000, 15_600, 1024)


# --- TFLite on the real model --------------------------------------------------------------------

def test_tflite_shapes_finite_deterministic(tflite_yamnet):
    windows = np.stack([_sine(1000), np.zeros(N, np.float32), _noise()])
    emb = tflite_yamnet.embed(windows)
    assert emb.shape == (3, 1024) and emb.dtype == np.float32
    assert np.isfinite(emb).all()
    assert (emb >= 0).all()  # a mean of ReLU outputs
    np.testing.assert_array_equal(emb, tflite_yamnet.embed(windows))
    # a window's embedding does not depend on its batch neighbours
    np.testing.assert_array_equal(emb[2:], tflite_yamnet.embed(windows[2:]))

    scores = tflite_yamnet.scores(windows)
    assert scores.shape == (3, N_CLASSES) and scores.dtype == np.float32
    assert np.isfinite(scores).all() and (scores >= 0).all() and (scores <= 1).all()

    emb2, scores2 = tflite_yamnet.embed_and_scores(windows)
    np.testing.assert_array_equal(emb2, emb)
    np.testing.assert_array_equal(scores2, scores)


def test_tflite_empty_batch(tflite_yamnet):
    assert tflite_yamnet.embed(np.zeros((0, N), np.float32)).shape == (0, 1024)
    assert tflite_yamnet.scores(np.zeros((0, N), np.float32)).shape == (0, N_CLASSES)


def test_tflite_different_sounds_differ(tflite_yamnet):
    emb = tflite_yamnet.embed(np.stack([_sine(1000), np.zeros(N, np.float32), _noise()]))
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    cosine = unit @ unit.T
    off_diagonal = cosine[~np.eye(3, dtype=bool)]
    assert off_diagonal.max() < 0.9, cosine


def test_tflite_audioset_classes_make_sense(tflite_yamnet, class_names):
    assert len(class_names) == N_CLASSES
    scores = tflite_yamnet.scores(np.stack([_sine(1000), np.zeros(N, np.float32), _noise()]))
    top5 = [{class_names[i] for i in np.argsort(-row)[:5]} for row in scores]
    tone, silence, noise = top5
    assert tone & {"Sine wave", "Beep, bleep", "Whistle", "Whistling", "Tuning fork"}, tone
    assert class_names[int(np.argmax(scores[1]))] == "Silence", silence
    assert noise & {"White noise", "Pink noise", "Noise", "Static", "Hiss"}, noise


def test_env_var_names_the_default_model(monkeypatch):
    if not TFLITE.exists():
        pytest.skip(f"{TFLITE} not present")
    monkeypatch.setenv(ENV_VAR, str(TFLITE))
    bb = get_backbone("yamnet")
    assert bb.embed(np.zeros((1, N), np.float32)).shape == (1, 1024)


# --- SavedModel / TF-Hub path, on a stand-in with YAMNet's signature -------------------------------

HOP = 7680  # the stand-in's frame and hop: 15600 samples give two frames, so the mean matters
BLOCKS = 64


def _standin_weights() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    to_embedding = rng.standard_normal((BLOCKS, 1024)).astype(np.float32)
    to_scores = (0.01 * rng.standard_normal((1024, N_CLASSES))).astype(np.float32)
    return to_embedding, to_scores


def _standin_numpy(waveform: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What the stand-in computes: per frame, block energies through fixed linear maps."""
    to_embedding, to_scores = _standin_weights()
    frames = waveform[: (len(waveform) // HOP) * HOP].reshape(-1, BLOCKS, HOP // BLOCKS)
    energy = (frames.astype(np.float64) ** 2).mean(-1)
    embeddings = energy @ to_embedding
    scores = 1 / (1 + np.exp(-(embeddings @ to_scores)))
    return scores, embeddings


@pytest.fixture(scope="module")
def standin_savedmodel(tmp_path_factory) -> Path:
    pytest.importorskip("tensorflow_hub")
    import tensorflow as tf

    to_embedding, to_scores = _standin_weights()

    class StandIn(tf.Module):
        def __init__(self):
            super().__init__()
            self.to_embedding = tf.Variable(to_embedding, trainable=False)
            self.to_scores = tf.Variable(to_scores, trainable=False)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
        def __call__(self, waveform):
            n_frames = tf.shape(waveform)[0] // HOP
            frames = tf.reshape(waveform[: n_frames * HOP], [n_frames, BLOCKS, HOP // BLOCKS])
            energy = tf.reduce_mean(tf.square(frames), axis=-1)
            embeddings = tf.matmul(energy, self.to_embedding)
            scores = tf.sigmoid(tf.matmul(embeddings, self.to_scores))
            log_mel = tf.math.log(energy + 1e-6)
            return scores, embeddings, log_mel

    folder = tmp_path_factory.mktemp("yamnet_standin")
    tf.saved_model.save(StandIn(), str(folder))
    return folder


def test_savedmodel_matches_standin(standin_savedmodel):
    bb = get_backbone("yamnet", model_path=str(standin_savedmodel))
    windows = np.stack([_sine(440), _noise(1), 0.1 * _noise(2)])
    emb, scores = bb.embed_and_scores(windows)
    assert emb.shape == (3, 1024) and emb.dtype == np.float32
    assert scores.shape == (3, N_CLASSES) and scores.dtype == np.float32
    for window, got_emb, got_scores in zip(windows, emb, scores):
        want_scores, want_emb = _standin_numpy(window)
        np.testing.assert_allclose(got_emb, want_emb.mean(0), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(got_scores, want_scores.mean(0), rtol=1e-4, atol=1e-6)


def test_savedmodel_without_tensorflow_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_hub", None)  # import now raises ImportError
    with pytest.raises(BackboneUnavailable, match=r"pip install birdclef\[tf\]"):
        get_backbone("yamnet", model_path=str(tmp_path))


# --- errors ----------------------------------------------------------------------------------------

def test_missing_file_names_the_path(tmp_path):
    missing = tmp_path / "nowhere" / "yamnet.tflite"
    with pytest.raises(BackboneUnavailable, match="nowhere"):
        get_backbone("yamnet", model_path=str(missing))


def test_file_of_unknown_kind(tmp_path):
    odd = tmp_path / "yamnet.bin"
    odd.write_bytes(b"\0" * 16)
    with pytest.raises(BackboneUnavailable, match="neither"):
        get_backbone("yamnet", model_path=str(odd))


def test_corrupt_tflite(tmp_path):
    bad = tmp_path / "yamnet.tflite"
    bad.write_bytes(b"not a flatbuffer" * 8)
    with pytest.raises(BackboneUnavailable, match="yamnet.tflite"):
        get_backbone("yamnet", model_path=str(bad))


def test_no_model_and_no_env_var(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    with pytest.raises(BackboneUnavailable, match=ENV_VAR):
        get_backbone("yamnet")


@pytest.mark.parametrize("shape", [(N,), (2, N - 1), (2, 32_000), (1, 1, N)])
def test_wrong_window_shape(shape):
    # the check comes before any model runs, so a dummy runner stands in for the weights
    bb = YAMNet(lambda w: (np.zeros(N_CLASSES), np.zeros(1024)), source="dummy")
    with pytest.raises(ValueError, match=r"\(n, 15600\)"):
        bb.embed(np.zeros(shape, np.float32))
    with pytest.raises(ValueError, match=r"\(n, 15600\)"):
        bb.scores(np.zeros(shape, np.float32))


def test_class_names_from_csv(tmp_path):
    path = tmp_path / "class_map.csv"
    path.write_text('index,mid,display_name\n1,/m/b,"Bird, song"\n0,/m/a,Speech\n')
    assert yamnet_class_names(path) == ["Speech", "Bird, song"]
    path.write_text("index,name\n0,Speech\n")
    with pytest.raises(SchemaError, match="display_name"):
        yamnet_class_names(path)
    path.write_text("index,mid,display_name\n0,/m/a,Speech\n2,/m/b,Bird\n")
    with pytest.raises(SchemaError, match="gaps"):
        yamnet_class_names(path)
