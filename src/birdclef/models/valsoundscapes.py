"""Validation soundscapes: the validation fold's recordings mixed into minutes like the test's.

A focal validation recording scores a head on clear, loud, whole-file calls; the hidden test is
minutes of background with a few faint calls. Inside training, :func:`build` takes the
validation fold's recordings (never trained on by the fold's head) and composes
``val_soundscapes`` minutes from them with :func:`birdclef.data.mixing.sparse_soundscapes`, the
construction the real-audio benchmark's sparse test soundscapes use (``val_density="real"``:
:func:`birdclef.data.density.real_density_soundscapes`, as dense as real labelled minutes); they are embedded like test
soundscapes and scored window by window (ignored cells left out), so a validation score can be
measured the way the test is, after every post-processing step.

The set is written once per (validation recordings, settings) under
``<work_dir>/preprocess/val_soundscapes/<key>/`` and reused while those stay the same.

Where the data has labelled train soundscapes (2026 layout), the files whose windows the fold held
out are a second, real set: :func:`labelled` reads them whole from the embedding cache, their
labelled windows scored and every other window's truth unknown (NaN). The head's whole-file
window predictions on them go to :data:`LABELLED_FILE` beside :data:`FILE`.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from birdclef.config import Config
from birdclef.data import density, mixing
from birdclef.data.competition import n_windows
from birdclef.data.metric import masked_auc_columns
from birdclef.errors import BirdclefError
from birdclef.features.embeddings import Embedded, EmbeddingCache, extract, require_cached
from birdclef.features.soundscapes import window_labels
from birdclef.features.zeroshot import ZeroShot
from birdclef.io import write_json, write_npz, write_ogg
from birdclef.models.head import HeadMeta, MLPHead, predict_windows
from birdclef.postprocess import finish_windows, rank_reference, zero_shot_weights
from birdclef.workdir import RunLayout

log = logging.getLogger(__name__)
BUILD_VERSION = 1  # bump when the construction changes: sets are rebuilt
# validation-fold recordings decoded to mix the soundscapes from (all are held in memory at once: at 30k
# recordings the whole fold is ~6,000 files, ~20 GB). A few dozen species fill 30 minutes, so more only cost memory
MAX_SOURCES = 256


def source_sample(recordings: pd.DataFrame, seed: int, limit: int = MAX_SOURCES) -> pd.DataFrame:
    """At most ``limit`` of ``recordings`` (rows with ``primary_label``), dealt round-robin over the
    classes in a seeded order (one of each class first, then a second, ...), in their given order;
    all of them when there are no more."""
    if len(recordings) <= limit:
        return recordings
    shuffled = recordings.reset_index(drop=True).sample(frac=1.0, random_state=seed)
    turn = shuffled.groupby("primary_label", sort=False).cumcount().to_numpy()
    keep = np.sort(shuffled.index.to_numpy()[np.argsort(turn, kind="stable")[:limit]])
    return recordings.iloc[keep]
FILE = "val_soundscapes.npz"  # in the model folder: what the chosen head scored on them
LABELLED_FILE = "val_labelled_soundscapes.npz"  # in the model folder: the same for the held-out labelled soundscapes


@dataclass(frozen=True)
class ValSoundscapes:
    """Embedded validation soundscapes and their window truth, files in order."""

    embedded: list[Embedded]
    names: list[str]
    truth: np.ndarray  # (n_windows in all, n_classes) float32: 1 / 0, NaN where a cell is not scored
    zero_shot: np.ndarray | None  # (n_windows in all, n_classes) the backbone's window logits
    counts: np.ndarray  # (n_files,) windows per file

    def head_probabilities(self, model: MLPHead, meta: HeadMeta, config: Config) -> np.ndarray:
        """(n_windows in all, n_classes) the head's window probabilities, no post-processing."""
        return np.concatenate([predict_windows(e, model, meta, window_s=config.window_s, pool=config.window_pool)
                               for e in self.embedded])

    def finished_score(self, prob: np.ndarray, meta: HeadMeta, config: Config,
                       mapped: np.ndarray | None) -> tuple[float, np.ndarray | None]:
        """(the head's probabilities ``prob`` on these soundscapes scored after the submission's
        post-processing (:func:`finished`) with head ``meta``'s blend weights, those weights: None without a
        backbone, ``mapped`` None)."""
        weights = None if mapped is None else zero_shot_weights(config, [meta], mapped)
        return score(self.truth, finished(prob, self.counts, config, zero_shot=self.zero_shot, weights=weights,
                                          mapped=mapped)), weights


def score(truth: np.ndarray, prob: np.ndarray) -> float:
    """Macro ROC-AUC over the classes with a scored positive (``truth`` NaN cells left out); NaN when none."""
    auc = masked_auc_columns(truth, np.asarray(prob, np.float64))
    return float(np.nanmean(auc)) if np.isfinite(auc).any() else float("nan")


def finished(prob: np.ndarray, counts: np.ndarray, config: Config, *, zero_shot: np.ndarray | None = None,
             weights: np.ndarray | None = None, mapped: np.ndarray | None = None, context: object = None) -> np.ndarray:
    """The submission's post-processing (``config.postprocess``), file by file: (n_windows in all, C) →
    the same shape. ``mapped`` (C,): the classes the backbone knows, for ``rank_blend``, which ranks
    over every window of these soundscapes (as the submission ranks over every test window). The
    ``context`` step runs with ``context`` (a :class:`birdclef.models.context.ContextModel`); without one it
    is left out: the context model is trained on these very soundscapes, and its held-out gain is its
    own score (``context_val_gain``)."""
    counts = np.asarray(counts, int)
    edges = np.cumsum([0, *counts])
    names = tuple(n for n in config.postprocess if n != "context" or context is not None)
    per_file = [(prob[a:b], None if zero_shot is None or weights is None else (zero_shot[a:b], weights))
                for a, b in zip(edges[:-1], edges[1:])]
    reference = None
    if "rank_blend" in names and zero_shot is not None and mapped is not None and len(per_file):
        before = names[:names.index("rank_blend")]
        heads = [finish_windows(p, config, zero_shot=zs, steps=before) for p, zs in per_file]
        reference = rank_reference(heads, [zero_shot[a:b] for a, b in zip(edges[:-1], edges[1:])], mapped)
        if weights is None:  # the rank blend needs the logits even where the logit blend is off
            per_file = [(p, (zero_shot[a:b], np.zeros(prob.shape[1]))) for (p, _), a, b in
                        zip(per_file, edges[:-1], edges[1:])]
    out = [finish_windows(p, config, zero_shot=zs, steps=names, rank_reference=reference, context=context)
           for p, zs in per_file]
    return np.concatenate(out) if out else np.zeros((0, prob.shape[1]), np.float32)


def _key(recordings: pd.DataFrame, config: Config) -> str:
    spec = {"version": BUILD_VERSION, "n": config.val_soundscapes, "seed": config.seed,
            "recordings": sorted(map(str, recordings["path"]))}
    if config.val_density != "sparse":  # the sparse sets keep the keys they had before there was a choice
        spec["density"] = config.val_density
    return hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def build(recordings: pd.DataFrame, labels: list[str], config: Config, zero_shot: ZeroShot | None,
          *, progress: bool = False) -> ValSoundscapes | None:
    """``config.val_soundscapes`` minutes from ``recordings`` (path, filename, primary_label,
    secondary_labels ``|``-joined), embedded → :class:`ValSoundscapes`; None (logged) when they
    are off, or the recordings give no call or no call-free stretch."""
    if config.val_soundscapes <= 0 or recordings.empty:
        return None
    recordings = source_sample(recordings, config.seed)
    folder = RunLayout.of(config).val_soundscapes / _key(recordings, config)
    done = folder / "truth.npz"
    if not done.exists():
        sources = mixing.load_sources(
            [(Path(r.path), r.filename, r.primary_label, tuple(x for x in str(r.secondary_labels or "").split("|") if x))
             for r in recordings.itertuples(index=False)], progress=progress)
        rng = np.random.default_rng(10_000 + config.seed)
        names, truth, ignore = [], [], []
        try:
            construct = density.real_density_soundscapes if config.val_density == "real" else mixing.sparse_soundscapes
            for name, mix in construct(sources, labels, rng, n=config.val_soundscapes, prefix="val_",
                                       where="validation fold"):
                write_ogg(folder / f"{name}.ogg", np.clip(mix.audio, -1, 1), mixing.SAMPLE_RATE_HZ)
                names.append(name)
                truth.append(mix.truth)
                ignore.append(mix.ignore)
        except BirdclefError as err:
            log.warning("no validation soundscapes: %s", err)
            return None
        write_npz(done, names=np.asarray(names), truth=np.concatenate(truth), ignore=np.concatenate(ignore))
        write_json({"recordings": sorted(map(str, recordings["filename"])), "n": config.val_soundscapes,
                    "density": config.val_density, "seed": config.seed, "version": BUILD_VERSION}, folder / "build.json")
    with np.load(done) as z:
        names, truth, ignore = [str(n) for n in z["names"]], z["truth"].astype(np.float32), z["ignore"]
    truth[ignore] = np.nan
    files = [folder / f"{n}.ogg" for n in names]
    embedded, report = extract(files, config=config, progress=progress, need_speech=False, desc="validation soundscapes",
                               score_columns=None if zero_shot is None else zero_shot.score_columns)
    if len(embedded) != len(files):
        bad = report[report["status"] == "skipped"]
        raise BirdclefError(f"validation soundscapes in {folder} could not be embedded: {bad.to_dict('records')}")
    order = [embedded[str(f)] for f in files]
    counts = np.array([n_windows(e.duration_s, config.window_s) for e in order], int)
    if counts.sum() != len(truth):
        raise BirdclefError(f"validation soundscapes in {folder}: {counts.sum()} windows for {len(truth)} rows of "
                            "truth; delete the folder to rebuild it")
    zs = None if zero_shot is None else np.concatenate([zero_shot.window_logits(e, config.window_s) for e in order])
    return ValSoundscapes(order, names, truth, zs, counts)


def labelled(windows: pd.DataFrame, cache: EmbeddingCache, labels: list[str], config: Config,
             zero_shot: ZeroShot | None) -> ValSoundscapes | None:
    """Labelled train soundscapes as whole files → :class:`ValSoundscapes` (None when ``windows`` is
    empty). ``windows``: their labelled windows (the preprocess stage's ``soundscape_windows.csv``
    rows: filename, path, start_s, labels ``;``-joined). Every window of a file is predicted, as at
    submission; a labelled window's truth is 1 for its labels and 0 for the rest, a window without a
    label row (or with a label outside ``labels``) is NaN: not scored, but still context for its
    neighbours. A file missing from the cache is a BirdclefError naming the fix."""
    if windows.empty:
        return None
    index = {label: i for i, label in enumerate(labels)}
    columns = None if zero_shot is None else zero_shot.score_columns
    order, names, truth = [], [], []
    for (filename, path), rows in windows.groupby(["filename", "path"], sort=True):
        e = require_cached(cache, path, score_columns=columns)
        y = np.full((n_windows(e.duration_s, config.window_s), len(labels)), np.nan, np.float32)
        for w in rows.itertuples(index=False):
            row = int(round(float(w.start_s) / config.window_s))
            names_w = window_labels(w.labels)
            if not 0 <= row < len(y) or not names_w or any(x not in index for x in names_w):
                continue  # left unscored: soundscape_examples logged why (skipped.csv)
            y[row] = 0.0
            y[row, [index[x] for x in names_w]] = 1.0
        order.append(e)
        names.append(str(filename))
        truth.append(y)
    counts = np.array([len(y) for y in truth], int)
    zs = None if zero_shot is None else np.concatenate([zero_shot.window_logits(e, config.window_s) for e in order])
    return ValSoundscapes(order, names, np.concatenate(truth), zs, counts)


def save(path: Path, val: ValSoundscapes, prob: np.ndarray, weights: np.ndarray | None, mapped: np.ndarray | None) -> None:
    """What the chosen head scored on the validation soundscapes (``FILE`` in the model folder), so any
    post-processing can be scored on them later without the head (:func:`saved_score`)."""
    extra = {} if val.zero_shot is None else {"zero_shot": val.zero_shot}
    write_npz(path, prob=prob, truth=val.truth, counts=val.counts, names=np.asarray(val.names),
              weights=np.zeros(0) if weights is None else weights,
              mapped=np.zeros(0, bool) if mapped is None else np.asarray(mapped, bool), **extra)


def saved_finished(path: str | Path, config: Config) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A saved validation-soundscape file (:func:`save`) after ``config``'s post-processing (its
    ``zero_shot_weight`` when a number, else the head's chosen weights; the context step left out, see
    :func:`finished`) → (probabilities (n_windows, n_classes), truth (n_windows, n_classes), windows per file)."""
    with np.load(path) as z:
        prob, truth, counts = z["prob"], z["truth"], z["counts"]
        zs = z["zero_shot"] if "zero_shot" in z.files else None
        weights, mapped = z["weights"], z["mapped"]
    if zs is not None and config.zero_shot_weight is not None and len(mapped):
        weights = np.where(mapped, float(config.zero_shot_weight), 0.0)
    return (finished(prob, counts, config, zero_shot=zs, weights=weights if len(weights) else None,
                     mapped=mapped if len(mapped) else None), truth, counts)


def saved_score(model_dir: str | Path, config: Config) -> float:
    """The saved validation soundscapes of a model folder scored after ``config``'s post-processing
    (:func:`saved_finished`); NaN when the folder has none."""
    path = Path(model_dir) / FILE
    if not path.exists():
        return float("nan")
    prob, truth, _ = saved_finished(path, config)
    return score(truth, prob)
