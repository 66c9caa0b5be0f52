"""`perch`: Google's bird-vocalization-classifier (Perch v1) as a backbone.

Perch reads 5 s of 32 kHz mono audio (160,000 samples) and gives one 1280-d embedding and
logits over its ~10,932 eBird-coded classes. The model is the TensorFlow SavedModel folder
published on Kaggle Models (``google/bird-vocalization-classifier``, TensorFlow2 variation;
on Kaggle, attach it as a model input and point at its folder under ``/kaggle/input``),
given as ``model_path=`` or in the environment variable :data:`ENV_VAR`. Loading needs
TensorFlow (``pip install birdclef[tf]``), imported only when the backbone is built.

Windows run through ``model.infer_tf(batch)`` (float32 [B, 160000]) :data:`BATCH_SIZE` at a
time. Two output layouts are supported:

- a mapping with the keys ``"embedding"`` [B, 1280] and ``"label"`` [B, K] (later exports);
- a 2-tuple ``(logits [B, K], embedding [B, 1280])`` (the early Kaggle versions).

Perch v2 (1536-d embeddings) is a different model, refused by this key: use ``perch_v2``.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Callable

import numpy as np

from birdclef.backbones import BackboneSpec, ModelIdentity, folder_identity, register, register_identity
from birdclef.errors import BackboneUnavailable

SPEC = BackboneSpec(
    name="perch", sample_rate_hz=32_000, window_s=5.0, embedding_dim=1280, hop_s=5.0, has_weights=True,
)
ENV_VAR = "BIRDCLEF_PERCH"
BATCH_SIZE = 16

_HOW_TO_PROVIDE = (
    "pass model_path= the folder of Perch's TensorFlow SavedModel (the Kaggle model "
    f"google/bird-vocalization-classifier, TensorFlow2), or set the environment variable {ENV_VAR} "
    "to it; on Kaggle, attach the model as an input and point at its folder under /kaggle/input"
)

# (b, 160000) float32 → (logits (b, K), embeddings (b, 1280)), both float32.
_Runner = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


class Perch:
    """Perch embeddings and class logits for 5-s windows at 32 kHz.

    Batches run one after another through one loaded SavedModel.
    """

    spec = SPEC

    def __init__(self, runner: _Runner, *, source: str, batch_size: int = BATCH_SIZE) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self._runner = runner
        self.source = source  # where the weights came from, for logs and saved configs
        self.batch_size = batch_size

    def __repr__(self) -> str:
        return f"Perch(source={self.source!r}, batch_size={self.batch_size})"

    def embed(self, windows: np.ndarray) -> np.ndarray:
        """(n, 160000) waveform in [-1, 1] at 32 kHz → (n, 1280) float32 embeddings."""
        return self._run(windows)[1]

    def logits(self, windows: np.ndarray) -> np.ndarray:
        """(n, 160000) waveform in [-1, 1] at 32 kHz → (n, K) float32 class logits (K ≈ 10,932)."""
        return self._run(windows)[0]

    def embed_and_logits(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Both in one pass: (n, 160000) → ((n, 1280) embeddings, (n, K) logits), float32."""
        logits, embeddings = self._run(windows)
        return embeddings, logits

    def _run(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        windows = SPEC.check(windows)
        if len(windows) == 0:
            # K is only known from a model call; an empty input gets an empty logits block.
            return np.zeros((0, 0), np.float32), np.zeros((0, SPEC.embedding_dim), np.float32)
        logits, embeddings = [], []
        for start in range(0, len(windows), self.batch_size):
            batch_logits, batch_embeddings = self._runner(windows[start : start + self.batch_size])
            logits.append(batch_logits)
            embeddings.append(batch_embeddings)
        return np.concatenate(logits), np.concatenate(embeddings)


def _split_outputs(outputs: object, n: int, source: str) -> tuple[np.ndarray, np.ndarray]:
    """infer_tf's outputs (mapping or (logits, embedding) tuple) → float32 numpy arrays, checked."""
    if isinstance(outputs, Mapping):
        if "embedding" not in outputs or "label" not in outputs:
            raise BackboneUnavailable(
                f"{source}: infer_tf returned keys {sorted(outputs)}; expected 'embedding' and 'label'"
            )
        logits, embedding = outputs["label"], outputs["embedding"]
    elif isinstance(outputs, (tuple, list)) and len(outputs) == 2:
        logits, embedding = outputs
    else:
        raise BackboneUnavailable(
            f"{source}: infer_tf returned {type(outputs).__name__}; expected a mapping with "
            "'embedding' and 'label' or a (logits, embedding) tuple"
        )
    logits = np.asarray(logits, dtype=np.float32)
    embedding = np.asarray(embedding, dtype=np.float32)
    if embedding.shape != (n, SPEC.embedding_dim):
        raise BackboneUnavailable(
            f"{source}: embedding has shape {embedding.shape}, expected ({n}, {SPEC.embedding_dim}); "
            "is it Perch v1 (Perch v2 embeds to 1536: use backbone 'perch_v2')?"
        )
    if logits.ndim != 2 or logits.shape[0] != n:
        raise BackboneUnavailable(f"{source}: logits have shape {logits.shape}, expected ({n}, K)")
    return logits, embedding


def _savedmodel_runner(path: Path) -> _Runner:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        import tensorflow as tf
    except ImportError as exc:
        raise BackboneUnavailable(
            f"loading Perch from {path} needs TensorFlow: pip install birdclef[tf] ({exc})"
        ) from exc
    try:
        model = tf.saved_model.load(str(path))
    except Exception as exc:  # TF raises OSError, ValueError and its own error types here
        raise BackboneUnavailable(f"cannot load a SavedModel from {path}: {exc}; {_HOW_TO_PROVIDE}") from exc
    if not hasattr(model, "infer_tf"):
        raise BackboneUnavailable(
            f"{path} has no infer_tf function; is it Perch v1's SavedModel? (Perch v2's: use backbone 'perch_v2')"
        )

    def run(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        outputs = model.infer_tf(tf.constant(batch))
        if isinstance(outputs, Mapping):
            outputs = {k: v.numpy() for k, v in outputs.items()}
        else:
            outputs = tuple(v.numpy() for v in outputs)
        return _split_outputs(outputs, len(batch), str(path))

    return run


def _model_folder(model_path: str | os.PathLike[str] | None) -> Path:
    """model_path, else $BIRDCLEF_PERCH, as a SavedModel folder, or BackboneUnavailable."""
    if model_path is None:
        model_path = os.environ.get(ENV_VAR) or None
    if model_path is None:
        raise BackboneUnavailable(f"no Perch model given: {_HOW_TO_PROVIDE}")
    path = Path(os.fspath(model_path)).expanduser()
    if not path.is_dir():
        raise BackboneUnavailable(f"no SavedModel folder at {path}: {_HOW_TO_PROVIDE}")
    return path


@register_identity("perch")
def model_identity(*, model_path: str | os.PathLike[str] | None = None, **_: object) -> ModelIdentity:
    """The :func:`folder_identity` of the SavedModel :func:`make_perch` would load, without loading it."""
    return folder_identity(_model_folder(model_path))


@register("perch")
def make_perch(
    *, model_path: str | None = None, batch_size: int = BATCH_SIZE, **_: object
) -> Perch:
    """Build Perch from a SavedModel folder or $BIRDCLEF_PERCH; ``batch_size`` windows per call."""
    path = _model_folder(model_path)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return Perch(_savedmodel_runner(path), source=str(path), batch_size=batch_size)
