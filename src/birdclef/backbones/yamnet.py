"""`yamnet`: Google's YAMNet (an AudioSet classifier) as a backbone.

YAMNet reads 0.975 s of 16 kHz mono audio (15,600 samples) and gives one 1024-d embedding
(the global average pool before its classifier) and 521 AudioSet class scores.

The model comes from one of three places, chosen by ``model_path``:

- a ``.tflite`` file, run with ai-edge-litert; the embedding is read from the intermediate
  tensor :data:`EMBEDDING_TENSOR`;
- a TensorFlow SavedModel folder or a TF-Hub handle (``https://tfhub.dev/google/yamnet/1``),
  loaded with ``tensorflow_hub`` (needs ``pip install birdclef[tf]``);
- nothing: the path in the environment variable :data:`ENV_VAR`, read when the backbone is built.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Callable

import numpy as np

from birdclef.backbones import (
    BackboneSpec,
    ModelIdentity,
    allocate_tensors,
    file_identity,
    folder_identity,
    open_tflite,
    register,
    register_identity,
)
from birdclef.errors import BackboneUnavailable, SchemaError

SPEC = BackboneSpec(
    name="yamnet", sample_rate_hz=16_000, window_s=0.975, embedding_dim=1024, hop_s=1.0, has_weights=True,
)
N_CLASSES = 521  # AudioSet classes scored by YAMNet
ENV_VAR = "BIRDCLEF_YAMNET"
EMBEDDING_TENSOR = "yamnet_frames/global_average_pooling2d/Mean"

_HOW_TO_PROVIDE = (
    "pass model_path= a YAMNet .tflite file, a TensorFlow SavedModel folder or a TF-Hub handle "
    f"(e.g. https://tfhub.dev/google/yamnet/1), or set the environment variable {ENV_VAR} to one; "
    "on Kaggle, attach the YAMNet model as an input and point at its folder under /kaggle/input"
)

# One window (15600,) float32 → (class scores (521,), embedding (1024,)), both float32.
_Runner = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


class YAMNet:
    """YAMNet embeddings and AudioSet scores for 0.975-s windows at 16 kHz.

    Not thread-safe: one backbone holds one interpreter (or one loaded SavedModel), and windows
    run one at a time because the TFLite export has a fixed batch of 1.
    """

    spec = SPEC

    def __init__(self, runner: _Runner, *, source: str) -> None:
        self._runner = runner
        self.source = source  # where the weights came from, for logs and saved configs

    def __repr__(self) -> str:
        return f"YAMNet(source={self.source!r})"

    def embed(self, windows: np.ndarray) -> np.ndarray:
        """(n, 15600) waveform in [-1, 1] at 16 kHz → (n, 1024) float32 embeddings."""
        return self._run(windows)[1]

    def scores(self, windows: np.ndarray) -> np.ndarray:
        """(n, 15600) waveform in [-1, 1] at 16 kHz → (n, 521) float32 AudioSet scores in [0, 1].

        Column ``k`` is the class in row ``k`` of the class map (see :func:`yamnet_class_names`).
        """
        return self._run(windows)[0]

    def embed_and_scores(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Both in one pass: (n, 15600) → ((n, 1024) embeddings, (n, 521) scores), float32."""
        scores, embeddings = self._run(windows)
        return embeddings, scores

    def _run(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        windows = SPEC.check(windows)
        scores = np.empty((len(windows), N_CLASSES), np.float32)
        embeddings = np.empty((len(windows), SPEC.embedding_dim), np.float32)
        for i, window in enumerate(windows):
            scores[i], embeddings[i] = self._runner(window)
        return scores, embeddings


def _tflite_runner(path: Path) -> _Runner:
    interpreter = open_tflite(path)  # the embedding is an intermediate tensor; 4-MB model, batch 1
    try:
        allocate_tensors(interpreter)  # quietly
    except (RuntimeError, ValueError) as exc:
        raise BackboneUnavailable(f"{path} is not a loadable TFLite model: {exc}") from exc

    (inp,) = interpreter.get_input_details()
    if list(inp["shape"]) != [1, SPEC.window_samples] or inp["dtype"] != np.float32:
        raise BackboneUnavailable(
            f"{path} takes {inp['dtype'].__name__} {list(inp['shape'])}; "
            f"YAMNet's TFLite export takes float32 [1, {SPEC.window_samples}]"
        )
    scores_index = interpreter.get_output_details()[0]["index"]
    by_name = {t["name"]: t for t in interpreter.get_tensor_details()}
    if EMBEDDING_TENSOR not in by_name:
        raise BackboneUnavailable(
            f"{path} has no tensor named {EMBEDDING_TENSOR!r}; is it YAMNet's TFLite export?"
        )
    embedding_index = by_name[EMBEDDING_TENSOR]["index"]

    def run(window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        interpreter.set_tensor(inp["index"], np.ascontiguousarray(window[None, :]))
        interpreter.invoke()
        scores = interpreter.get_tensor(scores_index).reshape(N_CLASSES)
        embedding = interpreter.get_tensor(embedding_index).reshape(SPEC.embedding_dim)
        return scores, embedding

    return run


def _savedmodel_runner(handle: str) -> _Runner:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        import tensorflow as tf
        import tensorflow_hub as hub
    except ImportError as exc:
        raise BackboneUnavailable(
            f"loading YAMNet from {handle} needs TensorFlow: pip install birdclef[tf] ({exc})"
        ) from exc
    try:
        model = hub.load(handle)
    except Exception as exc:  # hub raises many types (OSError, ValueError, URL errors)
        raise BackboneUnavailable(f"cannot load YAMNet from {handle}: {exc}; {_HOW_TO_PROVIDE}") from exc

    def run(window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # YAMNet frames any waveform into 0.96-s patches at a 0.48-s hop; 15600 samples give
        # exactly one frame, and the mean keeps one vector per window if an export differs.
        scores, embeddings, _log_mel = model(tf.constant(window))
        return scores.numpy().mean(axis=0), embeddings.numpy().mean(axis=0)

    return run


def _is_hub_url(handle: str) -> bool:
    return "://" in handle


def _model_source(model_path: str | os.PathLike[str] | None) -> tuple[str, str]:
    """model_path, else $BIRDCLEF_YAMNET → (what to load, "hub" | "savedmodel" | "tflite"), or
    BackboneUnavailable saying what was found."""
    if model_path is None:
        model_path = os.environ.get(ENV_VAR) or None
        if model_path is None:
            raise BackboneUnavailable(f"no YAMNet model given: {_HOW_TO_PROVIDE}")
    model_path = os.fspath(model_path)
    if _is_hub_url(model_path):
        return model_path, "hub"
    path = Path(model_path).expanduser()
    if not path.exists():
        raise BackboneUnavailable(f"YAMNet model not found at {path}: {_HOW_TO_PROVIDE}")
    if path.is_dir():
        return str(path), "savedmodel"
    if path.suffix.lower() == ".tflite":
        return str(path), "tflite"
    raise BackboneUnavailable(
        f"{path} is neither a .tflite file nor a SavedModel folder: {_HOW_TO_PROVIDE}"
    )


@register_identity("yamnet")
def model_identity(*, model_path: str | os.PathLike[str] | None = None, **_: object) -> ModelIdentity:
    """The identity of the model :func:`make_yamnet` would load, without loading it: a TF-Hub
    handle is its own identity (a handle names one published version), a folder its
    :func:`folder_identity`, a .tflite file its :func:`file_identity`."""
    source, kind = _model_source(model_path)
    if kind == "hub":
        return ModelIdentity(f"tfhub {source}", source)
    return folder_identity(source) if kind == "savedmodel" else file_identity(source)


@register("yamnet")
def make_yamnet(*, model_path: str | None = None, **_: object) -> YAMNet:
    """Build YAMNet from a .tflite file, a SavedModel folder, a TF-Hub handle, or $BIRDCLEF_YAMNET."""
    source, kind = _model_source(model_path)
    if kind == "tflite":
        return YAMNet(_tflite_runner(Path(source)), source=source)
    return YAMNet(_savedmodel_runner(source), source=source)


def yamnet_class_names(csv_path: str | os.PathLike[str]) -> list[str]:
    """AudioSet display names in score-column order, from YAMNet's class map.

    The CSV has the columns ``index, mid, display_name`` (``yamnet_class_map.csv``, shipped
    beside the model); entry ``k`` names column ``k`` of :meth:`YAMNet.scores`.
    """
    with open(csv_path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"index", "mid", "display_name"} - set(reader.fieldnames or ())
        if missing:
            raise SchemaError(f"{csv_path}: class map lacks columns {sorted(missing)}")
        rows = [(int(row["index"]), row["display_name"]) for row in reader]
    rows.sort()
    if [i for i, _ in rows] != list(range(len(rows))):
        raise SchemaError(f"{csv_path}: class indices are not 0..{len(rows) - 1} without gaps")
    return [name for _, name in rows]
