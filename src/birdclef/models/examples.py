"""Training examples: cached embeddings cut into crops, with their targets.

Two sources, one :class:`Examples` type: focal train recordings (a weak label for the whole
file: primary 1, secondary ``secondary_weight``) and labelled train-soundscape windows (2026
layout: every label of a 5-s window is 1). Pseudo-labelled windows (:mod:`birdclef.models.pseudo`)
are built from the same crops.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from birdclef.config import GROUPS, SOUNDSCAPE_GROUPS, Config
from birdclef.data.competition import parse_soundscape_name
from birdclef.data.sessions import recordist
from birdclef.errors import BirdclefError
from birdclef.features.embeddings import Embedded, EmbeddingCache, frames_in, require_cached
from birdclef.features.soundscapes import window_labels
from birdclef.features.zeroshot import ZeroShot
from birdclef.progress import tqdm
from birdclef.workdir import RunLayout

log = logging.getLogger(__name__)

# what kind of example: validation scores each kind on its own (focal recordings by primary
# label, soundscape windows by all their labels) before combining them
FOCAL, SOUNDSCAPE, PSEUDO = "focal", "soundscape", "pseudo"


@dataclass(frozen=True)
class Examples:
    x: np.ndarray  # (n, segment_frames, dim) float32
    targets: np.ndarray  # (n, n_classes) float32: primary 1, secondary secondary_weight (multi-label), or soft
    primary: np.ndarray  # (n,) int class index (the argmax of a pseudo-labelled target)
    groups: np.ndarray  # (n,) recording filename (or "pseudo:<soundscape stem>")
    # (n,) what validation folds keep together: a focal recording's session, itself or its author; a
    # labelled window's site and day, soundscape file or site (focal_fold_group, soundscape_fold_group)
    fold_groups: np.ndarray
    weights: np.ndarray  # (n,) float32 loss weight: 1 for labelled examples, pseudo_weight for pseudo ones
    zero_shot: np.ndarray | None = None  # (n, n_classes) float32: the backbone's logits (max over the crop's frames)
    kind: np.ndarray | None = None  # (n,) FOCAL / SOUNDSCAPE / PSEUDO; None: all FOCAL
    window: np.ndarray | None = None  # (n,) row_id of the labelled soundscape window ("" for other kinds)

    def __len__(self) -> int:
        return len(self.x)

    @property
    def kinds(self) -> np.ndarray:
        """(n,) the kind of each example (FOCAL where none was given)."""
        return np.full(len(self), FOCAL, dtype=object) if self.kind is None else self.kind

    @property
    def windows(self) -> np.ndarray:
        return np.full(len(self), "", dtype=object) if self.window is None else self.window


_FIELDS = ("x", "targets", "primary", "groups", "fold_groups", "weights")


def concat_examples(parts: list[Examples]) -> Examples:
    zs = [p.zero_shot for p in parts]
    return Examples(*(np.concatenate([getattr(p, f) for p in parts]) for f in _FIELDS),
                    zero_shot=None if any(z is None for z in zs) else np.concatenate(zs),
                    kind=np.concatenate([p.kinds for p in parts]), window=np.concatenate([p.windows for p in parts]))


def crop_frames(idx: np.ndarray, config: Config) -> np.ndarray:
    """Frame indices of each training crop of ``segment_frames`` frames from ``idx`` → (n, k) int.

    With the stride equal to the segment (the seed), consecutive non-overlapping groups, a short
    tail filled by repeating its frames (as :func:`birdclef.features.embeddings.pool_segments`). With a
    shorter stride, a crop starts every ``crop_stride_frames`` frames and one more ends on the
    last frame, so no frame is left out.
    """
    k, stride = config.segment_frames, config.crop_stride_frames
    idx = np.asarray(idx, np.int64)
    if len(idx) == 0:
        return np.zeros((0, k), np.int64)
    if stride >= k or len(idx) <= k:
        return np.stack([np.resize(idx[i:i + k], k) for i in range(0, len(idx), k)])
    starts = list(range(0, len(idx) - k + 1, stride))
    if starts[-1] != len(idx) - k:
        starts.append(len(idx) - k)
    return np.stack([idx[s:s + k] for s in starts])


def speech_free_frames(e: Embedded, start_s: float, end_s: float, config: Config) -> np.ndarray:
    """Indices of the frames starting in [start_s, end_s) with at most ``max_speech_fraction`` speech."""
    idx = frames_in(e, start_s, end_s)
    return idx[e.speech[idx] <= config.max_speech_fraction]


def crop_examples(e: Embedded, idx: np.ndarray, target: np.ndarray, primary: int, group: str, fold_group: str,
                  weight: float, config: Config, zero_shot: ZeroShot | None, kind: str, window: str = ""
                  ) -> Examples | None:
    """The crops of frames ``idx`` (:func:`crop_frames`), each with ``target`` and the rest → Examples
    (None when ``idx`` is empty); with ``zero_shot``, each crop's backbone logits (max over its frames)."""
    frames = crop_frames(idx, config)
    if len(frames) == 0:
        return None
    n = len(frames)
    zs = None if zero_shot is None else zero_shot.frame_logits(e)[frames].max(axis=1)
    return Examples(e.embeddings[frames].astype(np.float32), np.repeat(target[None], n, 0), np.full(n, primary),
                    np.full(n, group, dtype=object), np.full(n, fold_group, dtype=object),
                    np.full(n, weight, np.float32), zs, np.full(n, kind, dtype=object), np.full(n, window, dtype=object))


def focal_fold_group(rec, group_by: str) -> str:
    """What a focal recording's validation fold keeps it with (``rec``: a manifest row): its session
    (``session:<name>``, the manifest's ``session`` column), its author (``author:<name>``), or itself
    (its filename: also where the row has no session or author, as in a manifest of an older run, or its
    author is a placeholder such as ``unknown``: :func:`birdclef.data.sessions.recordist`)."""
    if group_by not in GROUPS:
        raise ValueError(f"unknown group_by {group_by!r}; known: {', '.join(map(repr, GROUPS))}")
    key = group_by if group_by in ("session", "author") else None  # the manifest column it reads
    value = str(getattr(rec, key, "") or "").strip() if key else ""
    if key == "author":  # one recordist however the rows spell them; a placeholder ("unknown") names nobody
        value = recordist(value)
    if not value:
        return str(rec.filename)
    return value if value.startswith(f"{key}:") else f"{key}:{value}"


def focal_fold_groups(manifest: pd.DataFrame, group_by: str) -> np.ndarray:
    """(n,) :func:`focal_fold_group` of every manifest row, with one warning when ``group_by`` asks
    for sessions the manifest does not have (an older preprocess run): recordings are kept apart instead."""
    if group_by == "session" and "session" not in manifest.columns:
        log.warning("the manifest has no recording sessions (written by an older preprocess stage): validation "
                    "folds keep recordings apart, not sessions; rerun the preprocess stage (02_preprocess)")
    return np.array([focal_fold_group(rec, group_by) for rec in manifest.itertuples(index=False)], dtype=object)


def soundscape_fold_group(filename: str, site: object, how: str) -> str:
    """What a labelled soundscape window's validation fold keeps it with: ``site_day`` its site and
    recording day (``site_day:H02:2023-04-20``: neighbouring files of one recorder and day are never
    on both sides), ``site`` its site (the ``site`` column, else the one in the name), ``file`` its
    soundscape (``soundscape:<filename>``, also where the name gives no site or date)."""
    if how not in SOUNDSCAPE_GROUPS:
        raise ValueError(f"unknown soundscape_group_by {how!r}; known: {', '.join(map(repr, SOUNDSCAPE_GROUPS))}")
    parsed = parse_soundscape_name(filename)
    site = "" if site is None or str(site).strip() in ("", "nan", "None") else str(site).strip()
    if how == "site_day" and parsed is not None:
        return f"site_day:{parsed.site}:{parsed.date.isoformat()}"
    if how == "site" and (site or parsed is not None):
        return f"site:{site or parsed.site}"
    return f"soundscape:{filename}"


def build_examples(
    manifest: pd.DataFrame, cache: EmbeddingCache, labels: list[str], config: Config,
    zero_shot: ZeroShot | None = None, *, progress: bool = False,
) -> tuple[Examples, pd.DataFrame]:
    """Crops of each recording's speech-free frames (see :func:`crop_frames`), with their targets
    (and, with ``zero_shot``, the backbone's logits of each crop: max over its frames); ``progress``: a
    bar over the recordings (reading 30k cache entries takes minutes).

    Returns the examples and the recordings that gave none (filename, reason).
    """
    index = {label: i for i, label in enumerate(labels)}
    columns = None if zero_shot is None else zero_shot.score_columns
    parts, skipped = [], []
    rows = zip(manifest.itertuples(index=False), focal_fold_groups(manifest, config.group_by))
    for rec, fold_group in tqdm(rows, total=len(manifest), desc="training examples", unit="recording",
                                mininterval=1.0, disable=not progress):
        e = require_cached(cache, rec.path, need_speech=True, score_columns=columns)
        target = np.zeros(len(labels), np.float32)
        if config.multi_label:
            for s in str(rec.secondary_labels or "").split("|"):
                if s in index:
                    target[index[s]] = config.secondary_weight
        target[index[rec.primary_label]] = 1.0
        keep = np.flatnonzero(e.speech <= config.max_speech_fraction)
        part = crop_examples(e, keep, target, index[rec.primary_label], rec.filename, fold_group, 1.0, config,
                              zero_shot, FOCAL)
        if part is None:
            skipped.append({"filename": rec.filename, "reason": "no speech-free frame"})
            continue
        parts.append(part)
    if not parts:
        raise BirdclefError("no training examples: every recording was skipped or all speech")
    return concat_examples(parts), pd.DataFrame(skipped, columns=["filename", "reason"])


def soundscape_examples(
    windows: pd.DataFrame, cache: EmbeddingCache, labels: list[str], config: Config,
    zero_shot: ZeroShot | None = None,
) -> tuple[Examples | None, pd.DataFrame]:
    """Crops of each labelled soundscape window's speech-free frames, every label of the window a
    target of 1 (its first label the ``primary``, for the single-label loss).

    ``windows``: the preprocess stage's ``soundscape_windows.csv`` (filename, path, start_s,
    end_s, row_id, labels ``;``-joined, site). Examples are grouped by soundscape file; validation
    folds keep a site and day (``soundscape_group_by="site_day"``), a file or a site together
    (:func:`soundscape_fold_group`). Loss weight
    ``soundscape_weight``. Returns the examples (None when no window gave one) and the windows that
    gave none (row_id, reason).
    """
    index = {label: i for i, label in enumerate(labels)}
    columns = None if zero_shot is None else zero_shot.score_columns
    parts, skipped, loaded = [], [], {}
    for w in windows.itertuples(index=False):
        if w.path not in loaded:
            loaded[w.path] = require_cached(cache, w.path, need_speech=True, score_columns=columns)
        e = loaded[w.path]
        names = window_labels(w.labels)
        unknown = [x for x in names if x not in index]
        if unknown or not names:
            skipped.append({"row_id": w.row_id, "reason": f"label(s) {unknown} not in the taxonomy" if unknown else "no label"})
            continue
        target = np.zeros(len(labels), np.float32)
        target[[index[x] for x in names]] = 1.0
        idx = speech_free_frames(e, float(w.start_s), float(w.end_s), config)
        fold_group = soundscape_fold_group(w.filename, getattr(w, "site", ""), config.soundscape_group_by)
        part = crop_examples(e, idx, target, index[names[0]], f"soundscape:{w.filename}", fold_group,
                              config.soundscape_weight, config, zero_shot, SOUNDSCAPE, str(w.row_id))
        if part is None:
            skipped.append({"row_id": w.row_id, "reason": "no speech-free frame in the window"})
            continue
        parts.append(part)
    return (concat_examples(parts) if parts else None), pd.DataFrame(skipped, columns=["row_id", "reason"])


def load_manifest(config: Config) -> pd.DataFrame:
    path = RunLayout.of(config).manifest
    if not path.exists():
        raise BirdclefError(f"{path} not found: run the preprocess stage (02_preprocess) first")
    text = ("filename", "primary_label", "secondary_labels", "author", "session", "path", "source")
    return pd.read_csv(path, dtype={c: str for c in text}, keep_default_na=False)
