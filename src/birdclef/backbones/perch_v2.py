"""`perch_v2`: Google's Perch 2.0 bird-vocalization classifier as a backbone.

Perch 2.0 (an EfficientNet-B3, 2025) reads 5 s of 32 kHz mono audio, float32 ``[batch, 160000]``,
and gives a 1536-d embedding and logits over 14,795 classes (birds, amphibians, insects,
mammals by scientific name, and FSD50K sound events), plus a spatial embedding and a
spectrogram that this backbone ignores. Both are taken from one call, so zero-shot scores are
cached with the embeddings.

Two runtimes read the same model, chosen from ``model_path=`` (or the environment variable
:data:`ENV_VAR`):

- a ``.onnx`` file, or a folder holding exactly one, run with onnxruntime
  (``pip install birdclef[onnx]``): the community conversions the 2026 Kaggle teams used;
- a TensorFlow SavedModel folder (``saved_model.pb``), run with TensorFlow
  (``pip install birdclef[tf]``): Kaggle Models ``google/bird-vocalization-classifier``,
  TensorFlow2 variation ``perch_v2_cpu`` (the ``perch_v2`` variation is a GPU export that does
  not run on a CPU).

Each runtime is imported only when the backbone is built. Which output is which is found from
the model, never from its order: one zero batch is run at load, the 2-d output of width 1536 is
the embedding and the 2-d one wider than that the logits (names such as ``embedding`` and
``label`` only break ties); a model without both is refused. An input with a fixed batch size
gets batches of that size, the last one zero-padded.

The class names come from a label file: ``labels_path=``, else :data:`LABELS_ENV_VAR`, else the
first of :data:`LABEL_FILES` found beside the model or in its ``assets/`` folder (the SavedModel
ships ``assets/labels.csv``; an ONNX conversion ships none, so copy that file beside the
``.onnx``). See :func:`load_perch_v2_labels` for the formats read; :func:`labels_reader` reads the
class list without loading the model.
"""
from __future__ import annotations

import csv
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Callable

import numpy as np

from birdclef.backbones import (
    BackboneSpec,
    ModelIdentity,
    file_identity,
    folder_identity,
    open_onnx,
    register,
    register_identity,
    register_labels,
)
from birdclef.errors import BackboneUnavailable, SchemaError

SPEC = BackboneSpec(
    name="perch_v2", sample_rate_hz=32_000, window_s=5.0, embedding_dim=1536, hop_s=5.0, has_scores=True,
    # trained on raw audio, like BirdNET: no denoising or loudness normalisation before it
    denoise=False, rms_normalise=False, has_weights=True,
)
N_CLASSES = 14_795  # classes of Google's release (a stand-in or another export may have others)
ENV_VAR = "BIRDCLEF_PERCH_V2"
LABELS_ENV_VAR = "BIRDCLEF_PERCH_V2_LABELS"
LABEL_FILES = ("labels.csv", "label.csv")
BATCH_SIZE = 16
EMBEDDING_NAMES = ("embedding",)  # output names that break a tie between outputs of the same shape
LOGITS_NAMES = ("label", "logits")
# label-file columns read by name (lower case); any other column is ignored
_NAME_COLUMNS = ("scientific_name",)
_COMMON_COLUMNS = ("common_name", "display_name")
_TAXON_ID_COLUMNS = ("inat_taxon_id", "inat_id", "taxon_id")

_HOW_TO_PROVIDE = (
    "pass model_path= a Perch v2 .onnx file (or a folder holding one) or its TensorFlow SavedModel folder "
    f"(Kaggle model google/bird-vocalization-classifier, TensorFlow2, perch_v2_cpu), or set {ENV_VAR} to it"
)

# (b, 160000) float32 → ((b, 1536) embeddings, (b, K) logits), both float32.
_Runner = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
Label = tuple[str, str] | tuple[str, str, str]  # (scientific_name, common_name[, inat_taxon_id])


class PerchV2:
    """Perch 2.0 embeddings and class logits for 5-s windows at 32 kHz, one call for both.

    Not thread-safe: one backbone holds one loaded model.
    """

    spec = SPEC

    def __init__(self, runner: _Runner, *, n_classes: int, source: str, runtime: str,
                 labels_path: Path | None, batch_size: int = BATCH_SIZE) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self._runner = runner
        self.n_classes = n_classes
        self.source = source  # where the weights came from, for logs and saved configs
        self.runtime = runtime  # "onnxruntime" or "tensorflow"
        self.batch_size = batch_size
        self._labels_path = labels_path
        self._labels: list[Label] | None = None

    def __repr__(self) -> str:
        return f"PerchV2(source={self.source!r}, runtime={self.runtime!r}, batch_size={self.batch_size})"

    @property
    def labels(self) -> list[Label]:
        """One entry per logit column: (scientific_name, common_name), plus the iNat taxon id
        where the label file gives one; read from the label file on first use."""
        if self._labels is None:
            if self._labels_path is None or not self._labels_path.is_file():
                raise _no_labels(self.source)
            self._labels = load_perch_v2_labels(self._labels_path, n_classes=self.n_classes)
        return list(self._labels)

    def embed(self, windows: np.ndarray) -> np.ndarray:
        """(n, 160000) waveform in [-1, 1] at 32 kHz → (n, 1536) float32 embeddings."""
        return self.embed_and_logits(windows)[0]

    def logits(self, windows: np.ndarray) -> np.ndarray:
        """(n, 160000) waveform in [-1, 1] at 32 kHz → (n, n_classes) float32 class logits."""
        return self.embed_and_logits(windows)[1]

    def embed_and_logits(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Both from one pass: (n, 160000) → ((n, 1536) embeddings, (n, n_classes) logits), float32."""
        windows = SPEC.check(windows)
        if len(windows) == 0:
            return np.zeros((0, SPEC.embedding_dim), np.float32), np.zeros((0, self.n_classes), np.float32)
        embeddings, logits = [], []
        for start in range(0, len(windows), self.batch_size):
            emb, lg = self._runner(windows[start : start + self.batch_size])
            embeddings.append(emb)
            logits.append(lg)
        return np.concatenate(embeddings), np.concatenate(logits)


def _no_labels(source: str) -> BackboneUnavailable:
    return BackboneUnavailable(
        f"no Perch v2 label file ({' or '.join(LABEL_FILES)}) beside {source} or in its assets/ "
        f"folder: pass labels_path= or set {LABELS_ENV_VAR} (the SavedModel ships assets/labels.csv)"
    )


def load_perch_v2_labels(path: str | os.PathLike[str], *, n_classes: int | None = None) -> list[Label]:
    """A Perch v2 label file → [(scientific_name, common_name[, inat_taxon_id])] in logit order.

    Perch's own ``labels.csv`` has one column: a header naming the class list's namespace
    (``inat2024_fsd50k``), then one class per line (``Turdus migratorius``, ``Breathing``); its
    common names are empty. A file whose header names a ``scientific_name`` column is read by
    column name instead, with ``common_name`` (or ``display_name``) and ``inat_taxon_id`` (or
    ``inat_id``, ``taxon_id``) where present. The first line is taken as a header, except in a
    one-column file with exactly ``n_classes`` lines whose first line is not a namespace (lower
    case, no spaces). With ``n_classes`` (the model's logit count), a file with another number of
    classes is a SchemaError.
    """
    with open(path, newline="", encoding="utf-8") as f:
        rows = [[cell.strip() for cell in row] for row in csv.reader(f)]
    rows = [row for row in rows if any(row)]
    if not rows:
        raise SchemaError(f"{path}: empty label file")
    header = [cell.lower() for cell in rows[0]]
    named = {c: header.index(c) for c in (*_NAME_COLUMNS, *_COMMON_COLUMNS, *_TAXON_ID_COLUMNS) if c in header}
    if "scientific_name" in named:
        def cell(row: list[str], names: tuple[str, ...]) -> str:
            i = next((named[c] for c in names if c in named), None)
            return row[i] if i is not None and i < len(row) else ""

        has_ids = any(c in named for c in _TAXON_ID_COLUMNS)
        labels: list[Label] = []
        for row in rows[1:]:
            entry = (cell(row, _NAME_COLUMNS), cell(row, _COMMON_COLUMNS))
            labels.append((*entry, cell(row, _TAXON_ID_COLUMNS)) if has_ids else entry)
    else:
        # a namespace line (lower case, no spaces: "inat2024_fsd50k", "ebird2021") is always a header
        namespace = re.fullmatch(r"[a-z][a-z0-9_]*", rows[0][0]) is not None
        headerless = not namespace and len(rows) == n_classes and all(len(r) == 1 for r in rows)
        labels = [(row[0], "") for row in (rows if headerless else rows[1:])]
    if n_classes is not None and len(labels) != n_classes:
        raise SchemaError(
            f"{path}: {len(labels)} classes after its header line, but the model gives {n_classes} logits; "
            "is it this model's label file?"
        )
    return labels


def _key(name: str) -> str:
    """An output name compared with EMBEDDING_NAMES / LOGITS_NAMES: lower case, no ':0' suffix."""
    return name.lower().split(":")[0]


def _prefer(candidates: list[str], names: tuple[str, ...]) -> list[str]:
    named = [c for c in candidates if _key(c) in names]
    return named if len(candidates) > 1 and len(named) == 1 else candidates


def find_outputs(shapes: Mapping[str, tuple[int, ...]], source: str) -> tuple[str, str]:
    """{output name: shape of a real output} → (embedding output, logits output).

    The embedding is the 2-d output of width 1536, the logits the 2-d output wider than that;
    names break ties. Anything else (none, or several of the same kind) is BackboneUnavailable.
    """
    dim = SPEC.embedding_dim
    two_d = {name: shape for name, shape in shapes.items() if len(shape) == 2}
    emb = _prefer([n for n, s in two_d.items() if s[1] == dim], EMBEDDING_NAMES)
    logits = _prefer([n for n, s in two_d.items() if s[1] > dim], LOGITS_NAMES)
    if len(emb) == 1 and len(logits) == 1:
        return emb[0], logits[0]
    seen = ", ".join(f"{n} {list(s)}" for n, s in shapes.items()) or "none"
    if not emb and any(len(s) == 2 and s[1] == 1280 for s in shapes.values()):
        hint = "; a 1280-d embedding is Perch v1: use backbone 'perch'"
    else:
        hint = ""
    problem = "several candidates" if len(emb) > 1 or len(logits) > 1 else "no such output"
    raise BackboneUnavailable(
        f"{source}: Perch v2 needs a [batch, {dim}] embedding output and a [batch, K > {dim}] logits output "
        f"({problem}); the model's outputs are {seen}{hint}"
    )


def _probe(run_all: Callable[[np.ndarray], dict[str, np.ndarray]], batch: int, source: str) -> tuple[str, str, int]:
    """Run one zero batch → (embedding output, logits output, K), or BackboneUnavailable."""
    try:
        outputs = run_all(np.zeros((batch, SPEC.window_samples), np.float32))
    except Exception as exc:  # each runtime raises its own error types for a model that cannot run here
        raise BackboneUnavailable(f"{source} does not run here on a [{batch}, {SPEC.window_samples}] input: {exc}") from exc
    emb, logits = find_outputs({name: tuple(np.shape(v)) for name, v in outputs.items()}, source)
    return emb, logits, int(np.shape(outputs[logits])[1])


def _checked(emb: object, logits: object, n: int, n_classes: int, source: str) -> tuple[np.ndarray, np.ndarray]:
    emb, logits = np.asarray(emb, np.float32), np.asarray(logits, np.float32)
    if emb.shape != (n, SPEC.embedding_dim) or logits.shape != (n, n_classes):
        raise BackboneUnavailable(
            f"{source}: outputs of shape {emb.shape} and {logits.shape}, expected ({n}, {SPEC.embedding_dim}) "
            f"and ({n}, {n_classes})"
        )
    return emb, logits


def _fixed_batch(run: _Runner, batch: int) -> _Runner:
    """A runner for a model whose input takes exactly ``batch`` windows: pads, then drops the padding."""

    def run_padded(windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        embs, logits = [], []
        for start in range(0, len(windows), batch):
            part = windows[start : start + batch]
            padded = np.zeros((batch, SPEC.window_samples), np.float32)
            padded[: len(part)] = part
            emb, lg = run(padded)
            embs.append(emb[: len(part)])
            logits.append(lg[: len(part)])
        return np.concatenate(embs), np.concatenate(logits)

    return run_padded


def _takes_windows(dtype: str, shape: list) -> bool:
    """An ONNX input of this type and shape takes (batch, 160000) float32 windows (symbolic dims: str/None)."""
    return dtype == "tensor(float)" and len(shape) == 2 and (
        shape[1] == SPEC.window_samples or not isinstance(shape[1], int))


def _onnx_runner(path: Path, *, num_threads: int) -> tuple[_Runner, int]:
    session = open_onnx(path, num_threads=num_threads, cuda=True)
    inputs = session.get_inputs()
    if len(inputs) != 1 or not _takes_windows(inputs[0].type, list(inputs[0].shape)):
        got = ", ".join(f"{i.name} {i.type} {list(i.shape)}" for i in inputs)
        raise BackboneUnavailable(f"{path} takes {got}; Perch v2 takes one float32 [batch, {SPEC.window_samples}]")
    name, first = inputs[0].name, inputs[0].shape[0]
    batch = first if isinstance(first, int) and first > 0 else None  # None: any batch size (a symbolic dim)
    output_names = [o.name for o in session.get_outputs()]

    def run_all(windows: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(output_names, session.run(None, {name: windows})))

    emb_name, logits_name, n_classes = _probe(run_all, batch or 1, str(path))

    def run(windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        emb, logits = session.run([emb_name, logits_name], {name: windows})
        return _checked(emb, logits, len(windows), n_classes, str(path))

    return (run if batch is None else _fixed_batch(run, batch)), n_classes


def _savedmodel_runner(path: Path) -> tuple[_Runner, int]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        import tensorflow as tf
    except ImportError as exc:
        raise BackboneUnavailable(f"loading Perch v2 from {path} needs TensorFlow: pip install birdclef[tf] ({exc})") from exc
    try:
        model = tf.saved_model.load(str(path))
    except Exception as exc:  # TF raises OSError, ValueError and its own error types here
        raise BackboneUnavailable(f"cannot load a SavedModel from {path}: {exc}; {_HOW_TO_PROVIDE}") from exc
    signatures = getattr(model, "signatures", {})
    if "serving_default" in signatures:
        fn = signatures["serving_default"]
        args, kwargs = fn.structured_input_signature
        if args or len(kwargs) != 1:
            raise BackboneUnavailable(f"{path}: serving_default takes {args} {kwargs}; Perch v2 takes one input")
        (input_name,) = kwargs

        def call(windows: np.ndarray) -> object:
            return fn(**{input_name: tf.constant(windows)})
    elif hasattr(model, "infer_tf"):
        def call(windows: np.ndarray) -> object:
            return model.infer_tf(tf.constant(windows))
    else:
        raise BackboneUnavailable(f"{path} has neither a serving_default signature nor infer_tf; is it Perch v2?")

    def run_all(windows: np.ndarray) -> dict[str, np.ndarray]:
        out = call(windows)
        if isinstance(out, Mapping):
            return {k: v.numpy() for k, v in out.items()}
        return {f"output_{i}": v.numpy() for i, v in enumerate(out)}

    # the probe also catches the GPU export (variation perch_v2), which fails on a CPU
    emb_name, logits_name, n_classes = _probe(run_all, 1, f"{path} (on a CPU use the variation perch_v2_cpu)")

    def run(windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = run_all(windows)
        return _checked(out[emb_name], out[logits_name], len(windows), n_classes, str(path))

    return run, n_classes


def _model_file(path: Path) -> tuple[Path, str]:
    """model_path → (what to load, runtime), or BackboneUnavailable saying what was found."""
    if path.is_file():
        if path.suffix.lower() != ".onnx":
            raise BackboneUnavailable(f"{path} is not a .onnx file: {_HOW_TO_PROVIDE}")
        return path, "onnxruntime"
    if not path.is_dir():
        raise BackboneUnavailable(f"no Perch v2 model at {path}: {_HOW_TO_PROVIDE}")
    if (path / "saved_model.pb").is_file():
        return path, "tensorflow"
    found = sorted(path.glob("*.onnx"))
    if len(found) == 1:
        return found[0], "onnxruntime"
    what = f"{len(found)} .onnx files ({', '.join(p.name for p in found)})" if found else "no saved_model.pb or .onnx file"
    raise BackboneUnavailable(f"{path} holds {what}: {_HOW_TO_PROVIDE}")


def find_labels_file(model: Path) -> Path | None:
    """The first of LABEL_FILES in the model's folder or its assets/ folder, or None."""
    folder = model if model.is_dir() else model.parent
    for where in (folder, folder / "assets"):
        for name in LABEL_FILES:
            if (where / name).is_file():
                return where / name
    return None


@register("perch_v2")
def make_perch_v2(
    *,
    model_path: str | None = None,
    labels_path: str | None = None,
    batch_size: int = BATCH_SIZE,
    num_threads: int | None = None,
    **_: object,
) -> PerchV2:
    """Build Perch v2 from a .onnx file, a folder holding one, or a SavedModel folder ($BIRDCLEF_PERCH_V2).

    ``batch_size`` windows go to the model per call. ``num_threads`` (ONNX Runtime's intra-op
    threads) defaults to torch's thread count, so the embedding workers, which set torch to one
    thread each, run one thread each here too.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    model_path = model_path or os.environ.get(ENV_VAR) or None
    if model_path is None:
        raise BackboneUnavailable(f"no Perch v2 model given: {_HOW_TO_PROVIDE}")
    path, runtime = _model_file(Path(os.fspath(model_path)).expanduser())
    if runtime == "onnxruntime":
        if num_threads is None:
            import torch

            num_threads = torch.get_num_threads()
        runner, n_classes = _onnx_runner(path, num_threads=num_threads)
    else:
        runner, n_classes = _savedmodel_runner(path)
    labels_path = labels_path or os.environ.get(LABELS_ENV_VAR) or None
    labels = Path(labels_path).expanduser() if labels_path else find_labels_file(path)
    return PerchV2(runner, n_classes=n_classes, source=str(path), runtime=runtime, labels_path=labels,
                   batch_size=batch_size)


@register_labels("perch_v2")
def labels_reader(*, model_path: str | None = None, labels_path: str | None = None,
                  **_: object) -> Callable[[], list[Label]]:
    """The class list of the model :func:`make_perch_v2` would load, without loading it when the
    label file alone settles it.

    The model and its label file are resolved now, as make_perch_v2 resolves them
    (BackboneUnavailable when there is no model). Calling the result reads the label file as
    :attr:`PerchV2.labels` does: a file of Google's :data:`N_CLASSES` classes is read as the
    model's; a file of any other length (a stand-in, another export, a file of another model)
    needs the model's own logit count, so the model is built to read it.
    """
    given = model_path or os.environ.get(ENV_VAR) or None
    if given is None:
        raise BackboneUnavailable(f"no Perch v2 model given: {_HOW_TO_PROVIDE}")
    path, _runtime = _model_file(Path(os.fspath(given)).expanduser())
    chosen = labels_path or os.environ.get(LABELS_ENV_VAR) or None
    labels = Path(chosen).expanduser() if chosen else find_labels_file(path)

    def read() -> list[Label]:
        if labels is None or not labels.is_file():
            raise _no_labels(str(path))
        try:
            return load_perch_v2_labels(labels, n_classes=N_CLASSES)
        except SchemaError:
            return make_perch_v2(model_path=str(given), labels_path=str(labels)).labels

    return read


@register_identity("perch_v2")
def model_identity(*, model_path: str | os.PathLike[str] | None = None, **_: object) -> ModelIdentity:
    """The identity of the model :func:`make_perch_v2` would load (``model_path``, else
    $BIRDCLEF_PERCH_V2; BackboneUnavailable as it would raise), without loading it: a .onnx file's
    :func:`file_identity`, or the :func:`folder_identity` of a folder given (a SavedModel, or a
    folder holding one .onnx: all its files count, label file included)."""
    given = model_path or os.environ.get(ENV_VAR) or None
    if given is None:
        raise BackboneUnavailable(f"no Perch v2 model given: {_HOW_TO_PROVIDE}")
    path = Path(os.fspath(given)).expanduser()
    _model_file(path)  # refuses what make_perch_v2 refuses
    return file_identity(path) if path.is_file() else folder_identity(path)


def model_runtime(model_path: str | os.PathLike[str]) -> str:
    """``"onnxruntime"`` or ``"tensorflow"``: what :func:`make_perch_v2` runs ``model_path`` with
    (BackboneUnavailable when it is neither a .onnx file, a folder holding one, nor a SavedModel)."""
    return _model_file(Path(os.fspath(model_path)).expanduser())[1]
