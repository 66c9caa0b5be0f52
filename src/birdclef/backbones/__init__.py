"""Backbone registry: every embedding model behind one interface.

A backbone turns fixed-length windows of mono audio into embeddings::

    bb = get_backbone("yamnet", model_path="yamnet.tflite")
    emb = bb.embed(windows)  # windows: (n, bb.window_samples) float32 in [-1, 1]
                             # emb:     (n, bb.embedding_dim) float32

Backbones register themselves with :func:`register`; :data:`BACKBONES` is the one table
of keys, and the tests load every key.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

from birdclef.errors import BackboneUnavailable, BirdclefError


@dataclass(frozen=True)
class BackboneSpec:
    """What the pipeline needs to know to feed a backbone."""

    name: str
    sample_rate_hz: int
    window_s: float
    embedding_dim: int
    hop_s: float = 1.0  # the pipeline's default stride between windows
    # The backbone classifies species itself: it has ``labels`` ([(scientific_name, common_name)]
    # per logit column) and ``embed_and_logits(windows)`` → ((n, embedding_dim), (n, len(labels))),
    # both from one pass, so zero-shot scores are cached with the embeddings.
    has_scores: bool = False
    # Audio cleaning this backbone's inputs get when Config.denoise / Config.rms_normalise are None:
    # what the real-audio benchmark measured best for it (README, "Model quality").
    denoise: bool = True
    rms_normalise: bool = True

    @property
    def window_samples(self) -> int:
        return int(round(self.window_s * self.sample_rate_hz))

    def check(self, windows: np.ndarray) -> np.ndarray:
        """``windows`` as float32 (n, window_samples), or a ValueError naming the expected shape."""
        windows = np.asarray(windows, dtype=np.float32)
        if windows.ndim != 2 or windows.shape[1] != self.window_samples:
            raise ValueError(
                f"{self.name} expects (n, {self.window_samples}) windows "
                f"({self.window_s} s at {self.sample_rate_hz} Hz), got shape {windows.shape}"
            )
        return windows


class Backbone(Protocol):
    spec: BackboneSpec

    def embed(self, windows: np.ndarray) -> np.ndarray:
        """(n, spec.window_samples) float32 waveform → (n, spec.embedding_dim) float32."""
        ...


def run_backbone(backbone: Backbone, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """One pass over (n, window_samples) windows → ((n, embedding_dim) embeddings, (n, n_species)
    logits, or None when the spec declares no species scores)."""
    if backbone.spec.has_scores:
        emb, logits = backbone.embed_and_logits(windows)  # type: ignore[attr-defined]
        return np.asarray(emb, np.float32), np.asarray(logits, np.float32)
    return np.asarray(backbone.embed(windows), np.float32), None


_FACTORIES: dict[str, Callable[..., Backbone]] = {}
# key → module that registers it (imported lazily so heavy backends load only when asked for)
BACKBONES: dict[str, str] = {
    "birdnet": "birdclef.backbones.birdnet",
    "melstats": "birdclef.backbones.melstats",
    "perch": "birdclef.backbones.perch",
    "perch_v2": "birdclef.backbones.perch_v2",
    "yamnet": "birdclef.backbones.yamnet",
}


def open_tflite(path, *, num_threads: int | None = None):
    """An ai-edge-litert Interpreter that keeps intermediate tensors readable (not yet allocated).

    Embeddings are intermediate tensors, so ``experimental_preserve_all_tensors`` is needed; its
    memory cost grows with the batch size (each backbone chooses its batch accordingly).
    """
    import warnings

    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as exc:
        raise BackboneUnavailable(f"reading {path} needs ai-edge-litert (pip install ai-edge-litert): {exc}") from exc
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*experimental_preserve_all_tensors")
            return Interpreter(model_path=str(path), num_threads=num_threads, experimental_preserve_all_tensors=True)
    except (RuntimeError, ValueError) as exc:
        raise BackboneUnavailable(f"{path} is not a loadable TFLite model: {exc}") from exc


def open_onnx(path, *, num_threads: int, cuda: bool = False):
    """An onnxruntime InferenceSession of ``num_threads`` intra-op threads and one inter-op thread,
    logging errors only (converted models log shape-inference warnings by the hundred); CUDA first
    when ``cuda`` and onnxruntime has it. :class:`BackboneUnavailable` when onnxruntime is missing or
    ``path`` is not a loadable model."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise BackboneUnavailable(f"running {path} needs onnxruntime: pip install birdclef[onnx] ({exc})") from exc
    options = ort.SessionOptions()
    options.intra_op_num_threads = num_threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    wanted = ("CUDAExecutionProvider", "CPUExecutionProvider") if cuda else ("CPUExecutionProvider",)
    providers = [p for p in wanted if p in ort.get_available_providers()]
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own error types for unreadable models
        raise BackboneUnavailable(f"{path} is not a loadable ONNX model: {exc}") from exc


def allocate_tensors(interpreter) -> None:
    """``interpreter.allocate_tensors()`` without the line "INFO: Created TensorFlow Lite XNNPACK
    delegate for CPU." that TFLite's C++ code writes to stderr there (once per interpreter, so once
    per extraction worker); anything else written to stderr meanwhile is passed on."""
    import os
    import sys
    import tempfile

    sys.stderr.flush()
    with tempfile.TemporaryFile() as caught:
        saved = os.dup(2)
        os.dup2(caught.fileno(), 2)
        try:
            interpreter.allocate_tensors()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            kept = [line for line in caught.read().splitlines(keepends=True) if b"XNNPACK delegate" not in line]
            if kept:
                os.write(2, b"".join(kept))


def register(name: str) -> Callable[[Callable[..., Backbone]], Callable[..., Backbone]]:
    """Class/function decorator: ``@register("yamnet")`` on a factory returning a Backbone."""

    def deco(factory: Callable[..., Backbone]) -> Callable[..., Backbone]:
        _FACTORIES[name] = factory
        return factory

    return deco


def register_labels(name: str) -> Callable[[Callable[..., Callable[[], list[tuple]]]], Callable]:
    """Function decorator: ``@register_labels("birdnet")`` on ``labels_reader(*, model_path=None)``,
    which resolves the model file (raising as building the backbone would) and returns a function
    reading the species list [(scientific_name, common_name[, inat_id])] without loading the model.
    Every backbone whose spec declares ``has_scores`` registers one (a test checks it)."""

    def deco(reader):
        _LABEL_READERS[name] = reader
        return reader

    return deco


_LABEL_READERS: dict[str, Callable[..., Callable[[], list[tuple]]]] = {}


def labels_reader(name: str, *, model_path: str | None = None) -> Callable[[], list[tuple]]:
    """The species-list reader of backbone ``name`` (see :func:`register_labels`)."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; known: {', '.join(sorted(BACKBONES))}")
    importlib.import_module(BACKBONES[name])
    if name not in _LABEL_READERS:
        raise BirdclefError(f"backbone {name!r} registers no species-list reader (@register_labels) in "
                            f"{BACKBONES[name]}")
    return _LABEL_READERS[name](model_path=model_path)


def get_backbone(name: str, **kwargs) -> Backbone:
    """Build the backbone registered as ``name`` (kwargs go to its factory, e.g. model_path)."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; known: {', '.join(sorted(BACKBONES))}")
    if name not in _FACTORIES:
        importlib.import_module(BACKBONES[name])
    if name not in _FACTORIES:
        raise BirdclefError(f"module {BACKBONES[name]} did not register backbone {name!r}")
    return _FACTORIES[name](**kwargs)


def backbone_spec(name: str, **kwargs) -> BackboneSpec:
    """The spec of a backbone without loading heavy weights where the backbone allows it."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; known: {', '.join(sorted(BACKBONES))}")
    module = importlib.import_module(BACKBONES[name])
    spec = getattr(module, "SPEC", None)
    if isinstance(spec, BackboneSpec):
        return spec
    return get_backbone(name, **kwargs).spec
