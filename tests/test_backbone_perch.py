"""Perch backbone: stand-in SavedModels with Perch's infer_tf signature, batching, and the errors."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from birdclef.backbones import backbone_spec, get_backbone
from birdclef.backbones.perch import ENV_VAR, SPEC, Perch
from birdclef.errors import BackboneUnavailable

N = SPEC.window_samples  # 160000 = 1280 × 125
K = 7  # the stand-in's number of classes (Perch v1 has ~10,932)


def _stand_in_reference(windows: np.ndarray, dim: int = SPEC.embedding_dim) -> tuple[np.ndarray, np.ndarray]:
    """What the stand-in computes, in numpy: embedding = means of `dim` blocks, logits = emb @ W."""
    emb = windows.reshape(len(windows), dim, -1).mean(axis=2)
    weights = np.cos(np.arange(dim * K, dtype=np.float32).reshape(dim, K))
    return emb @ weights, emb


def _save_stand_in(path, *, layout: str = "dict", dim: int = SPEC.embedding_dim) -> str:
    tf = pytest.importorskip("tensorflow")

    class StandIn(tf.Module):
        def __init__(self):
            super().__init__()
            self.weights = tf.constant(np.cos(np.arange(dim * K, dtype=np.float32).reshape(dim, K)))

        @tf.function(input_signature=[tf.TensorSpec([None, N], tf.float32)])
        def infer_tf(self, x):
            emb = tf.reduce_mean(tf.reshape(x, [-1, dim, N // dim]), axis=2)
            logits = tf.matmul(emb, self.weights)
            if layout == "dict":
                return {"embedding": emb, "label": logits, "frontend": tf.zeros([tf.shape(x)[0], 3])}
            return logits, emb

    tf.saved_model.save(StandIn(), str(path))
    return str(path)


@pytest.fixture(scope="module")
def dict_model(tmp_path_factory) -> str:
    return _save_stand_in(tmp_path_factory.mktemp("perch_dict") / "model")


@pytest.fixture(scope="module")
def tuple_model(tmp_path_factory) -> str:
    return _save_stand_in(tmp_path_factory.mktemp("perch_tuple") / "model", layout="tuple")


def _windows(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal((n, N))).astype(np.float32)


def test_spec_without_loading_weights():
    spec = backbone_spec("perch")
    assert spec is SPEC
    got = (spec.sample_rate_hz, spec.window_samples, spec.embedding_dim, spec.hop_s)
    assert got == (32_000, 160_000, 1280, 5.0)


@pytest.mark.parametrize("n, batch_size", [(37, 16), (5, 16), (16, 16), (3, 1)])
def test_dict_outputs_batched_equal_the_stand_in(dict_model, n, batch_size):
    bb = get_backbone("perch", model_path=dict_model, batch_size=batch_size)
    windows = _windows(n)
    emb, logits = bb.embed_and_logits(windows)
    want_logits, want_emb = _stand_in_reference(windows)
    assert emb.shape == (n, 1280) and emb.dtype == np.float32
    assert logits.shape == (n, K) and logits.dtype == np.float32
    np.testing.assert_allclose(emb, want_emb, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(logits, want_logits, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(bb.embed(windows), emb)
    np.testing.assert_array_equal(bb.logits(windows), logits)


def test_tuple_outputs_are_logits_then_embedding(tuple_model):
    bb = get_backbone("perch", model_path=tuple_model)
    windows = _windows(20, seed=1)
    want_logits, want_emb = _stand_in_reference(windows)
    np.testing.assert_allclose(bb.embed(windows), want_emb, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(bb.logits(windows), want_logits, rtol=1e-4, atol=1e-4)


def test_env_var_and_shape_errors(dict_model, monkeypatch):
    monkeypatch.setenv(ENV_VAR, dict_model)
    bb = get_backbone("perch")
    assert bb.source == dict_model
    assert bb.embed(np.zeros((0, N), np.float32)).shape == (0, 1280)
    for bad in (np.zeros(N, np.float32), np.zeros((2, N - 1), np.float32)):
        with pytest.raises(ValueError, match=r"\(n, 160000\)"):
            bb.embed(bad)


def test_perch_v2_sized_model_is_refused(tmp_path):
    # Perch v2 embeds to 1536; this key promises 1280, so the mismatch must be loud.
    path = _save_stand_in(tmp_path / "v2", dim=1600)
    bb = get_backbone("perch", model_path=path)
    with pytest.raises(BackboneUnavailable, match="1280"):
        bb.embed(_windows(1))


def test_batches_are_cut_in_order():
    seen = []

    def runner(batch):
        seen.append(len(batch))
        return batch[:, :2] * 2, batch[:, : SPEC.embedding_dim]

    windows = _windows(10)
    emb, logits = Perch(runner, source="fake", batch_size=4).embed_and_logits(windows)
    assert seen == [4, 4, 2]
    np.testing.assert_array_equal(emb, windows[:, :1280])
    np.testing.assert_array_equal(logits, windows[:, :2] * 2)


def test_missing_model_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.delenv(ENV_VAR, raising=False)
    with pytest.raises(BackboneUnavailable, match=ENV_VAR):
        get_backbone("perch")
    with pytest.raises(BackboneUnavailable, match="no SavedModel folder"):
        get_backbone("perch", model_path=str(tmp_path / "nowhere"))
    pytest.importorskip("tensorflow")
    with pytest.raises(BackboneUnavailable, match="cannot load a SavedModel"):
        get_backbone("perch", model_path=str(tmp_path))


def test_without_tensorflow_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # makes `import tensorflow` raise ImportError
    with pytest.raises(BackboneUnavailable, match=r"pip install birdclef\[tf\]"):
        get_backbone("perch", model_path=str(tmp_path))
