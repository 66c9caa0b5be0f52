"""Training clips for SED models: random crops of train_audio recordings, labelled soundscape windows.

Audio is decoded from the original files (soundfile, :mod:`birdclef.data.audio`) in the DataLoader's
workers and resampled to the model's rate; no spectrogram cache is needed. For small data on a
small machine, :class:`WaveCache` keeps the decoded waveforms in memory instead.

Two kinds of item, in one :class:`SedClips` dataset:

- a **recording** (``recordings`` table: ``path``, ``primary_label``, optional
  ``secondary_labels`` as ``"a|b"`` or a list, optional ``duration_s``): a weak label (primary 1,
  secondaries ``config.secondary_weight``). Training draws a random crop of ``clip_s`` each epoch
  (seeded by seed, epoch and item, so the worker count never changes a run); evaluation takes up
  to ``config.val_clips`` consecutive clips from the start.
- a **window** (``windows`` table: ``path``, ``start_s``, ``end_s`` and ``labels`` (list of str)
  or ``targets`` ((n_classes,) soft values), optional ``weight``): a labelled soundscape window
  (:func:`birdclef.data.competition.load_soundscape_labels`) or a pseudo-labelled one
  (:mod:`birdclef.models.sed.noisy_student`). Its clip (:func:`window_clip_start`) lies on the window
  grid: the window at position ``(n - 1) // 2`` of the clip's ``n = clip_s / window_s`` windows
  (the first of the two middle ones when ``n`` is even), moved later when that would start before
  0 s. The clip's target is the union of the labels of every window of the table, same file, that
  the clip covers for more than half of the window's length (:data:`MIN_WINDOW_COVER`,
  :func:`covered_windows`): soft targets combine by their element-wise maximum, each at its own
  strength, and the item's own window always counts; the loss weight stays the item's window's.
  A window not in the table (past its labelled part, or past the end of the file) contributes
  nothing. With ``clip_s == window_s`` and windows on the grid the clip is its window and the
  target that window's own, as before.

Unreadable recordings are left out when the dataset is built (``skipped``: path, reason); a
file that fails later gives silence with loss weight 0 (logged).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from birdclef.data import audio
from birdclef.errors import AudioError, BirdclefError
from birdclef.models.folds import FoldPlan, fold_plan, group_folds
from birdclef.models.sed.config import SedConfig

log = logging.getLogger(__name__)

RECORDING, WINDOW = 0, 1
# A window counts toward a clip's target when the clip holds more than this share of it: a label
# says "heard somewhere in these 5 s", so past half the call is more likely in the clip than not;
# exactly half (the neighbours of a clip on a 50 %-overlapping table) does not count.
MIN_WINDOW_COVER = 0.5


class WaveCache:
    """Decoded waveforms at one sample rate, at most ``max_s`` seconds each, kept as float16 in memory."""

    def __init__(self, sample_rate_hz: int, max_s: float):
        self.sample_rate_hz, self.max_s = int(sample_rate_hz), float(max_s)
        self.waves: dict[str, np.ndarray] = {}
        self.complete: dict[str, bool] = {}

    def add(self, path: str | Path) -> None:
        x, sr = audio.read_audio(path, duration_s=self.max_s)
        info = audio.audio_info(path)
        self.waves[str(path)] = audio.resample(x, sr, self.sample_rate_hz).astype(np.float16)
        self.complete[str(path)] = info.duration_s <= self.max_s

    def get(self, path: str | Path, start_s: float, duration_s: float) -> np.ndarray | None:
        """The samples of [start_s, start_s + duration_s) when the cache holds them, else None."""
        w = self.waves.get(str(path))
        if w is None:
            return None
        a = int(round(start_s * self.sample_rate_hz))
        b = a + int(round(duration_s * self.sample_rate_hz))
        if b > len(w) and not self.complete[str(path)]:
            return None
        return w[a:b].astype(np.float32)

    @property
    def nbytes(self) -> int:
        return sum(w.nbytes for w in self.waves.values())


def read_clip(path: str | Path, start_s: float, config: SedConfig, cache: WaveCache | None = None) -> np.ndarray:
    """(clip_samples,) float32 at ``config.sample_rate_hz`` from ``start_s``; zero-padded past the end."""
    x = cache.get(path, start_s, config.clip_s) if cache is not None else None
    if x is None:
        x, sr = audio.read_audio(path, start_s=start_s, duration_s=config.clip_s)
        x = audio.resample(x, sr, config.sample_rate_hz)
    out = np.zeros(config.clip_samples, np.float32)
    out[:min(len(x), len(out))] = x[:len(out)]
    return out


def label_vector(primary: str | None, secondary: Sequence[str], index: dict[str, int], secondary_weight: float
                 ) -> np.ndarray:
    """(n_classes,) float32: primary 1, secondary ``secondary_weight``; labels outside ``index`` ignored."""
    t = np.zeros(len(index), np.float32)
    for s in secondary:
        if s in index:
            t[index[s]] = max(t[index[s]], secondary_weight)
    if primary is not None and primary in index:
        t[index[primary]] = 1.0
    return t


def window_clip_start(start_s: float, config: SedConfig) -> float:
    """Start (s) of the clip for a window starting at ``start_s``: on the window grid, the window at
    position ``(n - 1) // 2`` of the clip's ``n`` windows, never before 0 s."""
    return max(0.0, float(start_s) - (config.windows_per_clip - 1) // 2 * config.window_s)


def covered_windows(start_s: np.ndarray, end_s: np.ndarray, clip_start_s: float, clip_end_s: float) -> np.ndarray:
    """(n,) bool: the windows [start_s, end_s) (each (n,), s) the clip [clip_start_s, clip_end_s)
    covers for more than :data:`MIN_WINDOW_COVER` of their length."""
    start_s, end_s = np.asarray(start_s, np.float64), np.asarray(end_s, np.float64)
    overlap = np.clip(np.minimum(end_s, clip_end_s) - np.maximum(start_s, clip_start_s), 0.0, None)
    return overlap > MIN_WINDOW_COVER * (end_s - start_s) + 1e-6  # 1e-6 s: exactly half stays out


def _weight(value: object) -> float:
    """A loss weight from a table cell; absent or NaN: 1."""
    try:
        w = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 1.0
    return 1.0 if w != w else w


def _secondary(value: object) -> list[str]:
    if isinstance(value, (list, tuple, np.ndarray)):
        return [str(v) for v in value]
    text = "" if value is None or (isinstance(value, float) and value != value) else str(value)
    return [s for s in text.split("|") if s]


class SedClips(Dataset):
    """Recordings and windows → dicts of ``wave`` (clip_samples,), ``target`` (k,), ``weight`` (),
    ``truth`` (k,) 0/1 (primary / window labels, for validation AUC), and the teacher's
    ``teacher_embedding`` (dim,), ``teacher_logits`` (k,), ``teacher_mask`` (k,), ``has_teacher`` ()
    (zeros without a teacher)."""

    def __init__(self, recordings: pd.DataFrame | None, labels: Sequence[str], config: SedConfig, *,
                 windows: pd.DataFrame | None = None, train: bool = True, teacher=None,
                 cache: WaveCache | None = None):
        self.labels = list(labels)
        self.index = {label: i for i, label in enumerate(self.labels)}
        self.config, self.train, self.teacher, self.cache = config, train, teacher, cache
        self.epoch = 0
        recordings = pd.DataFrame(columns=["path", "primary_label"]) if recordings is None else recordings
        self.recordings, self.skipped = _with_durations(recordings.reset_index(drop=True))
        unknown = sorted(set(self.recordings["primary_label"]) - set(self.index))
        if unknown:
            raise BirdclefError(f"primary label(s) {unknown[:5]} not among the {len(self.labels)} labels")
        self.windows = (windows if windows is not None else pd.DataFrame(columns=["path", "start_s", "end_s"])
                        ).reset_index(drop=True)
        # per file: the table's windows (start_s, end_s, row), so a clip finds every window it covers
        self._file_windows = {
            str(path): (g["start_s"].to_numpy(np.float64), g["end_s"].to_numpy(np.float64), g.index.to_numpy())
            for path, g in self.windows.astype({"path": str}).groupby("path", sort=False)}
        self.items: list[tuple[int, int, float | None]] = []
        for r, rec in enumerate(self.recordings.itertuples(index=False)):
            if train:
                self.items.append((RECORDING, r, None))
            else:
                n = max(1, min(config.val_clips, int(np.ceil(rec.duration_s / config.clip_s - 1e-9))))
                self.items.extend((RECORDING, r, k * config.clip_s) for k in range(n))
        self.items.extend((WINDOW, w, None) for w in range(len(self.windows)))
        if not self.items:
            raise BirdclefError("no training clip: every recording was skipped and no window was given")

    def __len__(self) -> int:
        return len(self.items)

    def set_epoch(self, epoch: int) -> None:
        """Random crops depend on (seed, epoch, item): call before each epoch's loader is iterated."""
        self.epoch = int(epoch)

    @property
    def n_recordings(self) -> int:
        return len(self.recordings)

    def item_primary(self) -> np.ndarray:
        """(len,) int class of each item (a window: the highest target of the window itself, not of
        its clip), for balanced sampling."""
        out = np.zeros(len(self.items), np.int64)
        prim = self.recordings["primary_label"].map(self.index).to_numpy() if len(self.recordings) else []
        for i, (kind, row, _) in enumerate(self.items):
            out[i] = prim[row] if kind == RECORDING else int(np.argmax(self._window_target(row)))
        return out

    def sample_weights(self, *, balanced: bool, window_share: float | None) -> np.ndarray:
        """(len,) sampling weights summing to 1: equal per primary class with ``balanced``; windows
        (all of them together) get ``window_share`` of the draws when given."""
        w = np.ones(len(self.items), np.float64)
        kinds = np.array([k for k, _, _ in self.items])
        if balanced:
            prim = self.item_primary()
            for kind in (RECORDING, WINDOW):
                sel = kinds == kind
                counts = np.bincount(prim[sel], minlength=len(self.labels))
                w[sel] = 1.0 / counts[prim[sel]]
        if window_share is not None and (kinds == WINDOW).any() and (kinds == RECORDING).any():
            for kind, share in ((WINDOW, window_share), (RECORDING, 1 - window_share)):
                sel = kinds == kind
                w[sel] *= share / w[sel].sum()
        return w / w.sum()

    def _window_target(self, row: int) -> np.ndarray:
        win = self.windows.iloc[row]
        t = win.get("targets")
        if isinstance(t, (np.ndarray, list, tuple)):  # soft targets (pseudo labels)
            return np.asarray(t, np.float32)
        return label_vector(None, list(win["labels"]), self.index, 1.0)

    def clip_target(self, row: int, start_s: float) -> np.ndarray:
        """(n_classes,) float32 target of window ``row``'s clip from ``start_s``: the element-wise
        maximum of the targets of every window of its file the clip covers (:func:`covered_windows`),
        the window itself always among them."""
        target = self._window_target(row)
        starts, ends, rows = self._file_windows[str(self.windows.iloc[row]["path"])]
        for other in rows[covered_windows(starts, ends, start_s, start_s + self.config.clip_s)]:
            if other != row:
                target = np.maximum(target, self._window_target(int(other)))
        return target

    def _start(self, i: int, kind: int, row: int, start: float | None) -> tuple[str, float]:
        cfg = self.config
        if kind == RECORDING:
            rec = self.recordings.iloc[row]
            if start is None:
                rng = np.random.default_rng([cfg.seed, self.epoch, i])
                start = float(rng.uniform(0, max(0.0, rec["duration_s"] - cfg.clip_s)))
            return str(rec["path"]), start
        win = self.windows.iloc[row]
        return str(win["path"]), window_clip_start(win["start_s"], cfg)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        kind, row, start = self.items[i]
        path, start_s = self._start(i, kind, row, start)
        weight = 1.0
        if kind == RECORDING:
            rec = self.recordings.iloc[row]
            secondary = _secondary(rec.get("secondary_labels", ""))
            target = label_vector(rec["primary_label"], secondary, self.index, self.config.secondary_weight)
            truth = label_vector(rec["primary_label"], [], self.index, 0.0)
            weight = _weight(rec.get("weight", 1.0))
        else:
            target = self.clip_target(row, start_s)
            truth = (target >= 0.5).astype(np.float32)
            weight = _weight(self.windows.iloc[row].get("weight", 1.0))
        try:
            wave = read_clip(path, start_s, self.config, self.cache)
        except (AudioError, OSError) as err:  # a clip that fails now still comes back, silent and unweighted
            log.warning("%s: %s; the clip is silent with weight 0", path, err)
            wave, weight = np.zeros(self.config.clip_samples, np.float32), 0.0
        dim = 0 if self.teacher is None else self.teacher.dim
        emb, logits = np.zeros(dim, np.float32), np.zeros(len(self.labels), np.float32)
        mask, has = np.zeros(len(self.labels), np.float32), 0.0
        got = None if self.teacher is None else self.teacher.targets(path, start_s, start_s + self.config.clip_s)
        if got is not None:
            emb, logits = got
            mask, has = self.teacher.mapped.astype(np.float32), 1.0
        return {"wave": torch.from_numpy(wave), "target": torch.from_numpy(target),
                "weight": torch.tensor(weight, dtype=torch.float32), "truth": torch.from_numpy(truth),
                "teacher_embedding": torch.from_numpy(emb), "teacher_logits": torch.from_numpy(logits),
                "teacher_mask": torch.from_numpy(mask), "has_teacher": torch.tensor(has, dtype=torch.float32)}


def _with_durations(recordings: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The table with ``duration_s`` filled from each file's header; unreadable files left out."""
    missing = [c for c in ("path", "primary_label") if c not in recordings.columns]
    if missing:
        raise BirdclefError(f"the recordings table lacks column(s) {missing}; it needs path and primary_label")
    keep, durations, skipped = [], [], []
    for i, rec in enumerate(recordings.itertuples(index=False)):
        d = getattr(rec, "duration_s", None)
        try:
            if d is None or not np.isfinite(float(d)) or float(d) <= 0:
                d = audio.audio_info(rec.path).duration_s
                if d <= 0:
                    raise AudioError(f"{rec.path}: no audio samples")
        except AudioError as err:
            skipped.append({"path": str(rec.path), "reason": str(err)})
            continue
        keep.append(i)
        durations.append(float(d))
    out = recordings.iloc[keep].copy()
    out["duration_s"] = durations
    if skipped:
        log.warning("%d recording(s) unreadable, left out", len(skipped))
    return out.reset_index(drop=True), pd.DataFrame(skipped, columns=["path", "reason"])


def build_wave_cache(paths: Sequence[str | Path], config: SedConfig, *, progress: bool = True) -> WaveCache:
    """Decode every file once (at most ``config.cache_max_s`` s each) into a :class:`WaveCache`."""
    cache = WaveCache(config.sample_rate_hz, config.cache_max_s)
    for p in tqdm(list(dict.fromkeys(map(str, paths))), desc="caching waveforms", disable=not progress,
                  mininterval=1.0):
        try:
            cache.add(p)
        except (AudioError, OSError) as err:
            log.warning("not cached: %s (%s)", p, err)
    return cache


def recordings_table(data_dir: str | Path, *, max_per_class: int | None = None, seed: int = 0
                     ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A competition folder's train.csv → (recordings: filename, path, primary_label,
    secondary_labels ("a|b"), author; rows skipped with a reason)."""
    from birdclef.data.competition import competition_paths, load_taxonomy, load_train_metadata, select_recordings

    paths = competition_paths(data_dir)
    meta, skipped = load_train_metadata(paths.train_csv, load_taxonomy(paths.taxonomy))
    meta = select_recordings(meta, max_per_class=max_per_class, seed=seed)
    table = pd.DataFrame({
        "filename": meta["filename"], "path": [str(paths.train_audio / f) for f in meta["filename"]],
        "primary_label": meta["primary_label"], "secondary_labels": ["|".join(s) for s in meta["secondary_list"]],
        "author": meta["author"] if "author" in meta else "",
    })
    return table.reset_index(drop=True), skipped


def soundscape_windows(windows: pd.DataFrame, audio_dir: str | Path) -> pd.DataFrame:
    """:func:`birdclef.data.competition.load_soundscape_labels`' windows (filename, start_s, end_s, labels, ...)
    with the ``path`` of each file in ``audio_dir``, ready for :class:`SedClips`."""
    out = windows.copy()
    out["path"] = [str(Path(audio_dir) / f) for f in out["filename"]]
    return out


def split_recordings(recordings: pd.DataFrame, *, val_fraction: float, seed: int,
                     groups: np.ndarray | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, validation) recordings of :func:`recording_split`."""
    train, val, _ = recording_split(recordings, val_fraction=val_fraction, seed=seed, groups=groups)
    return train, val


def recording_split(recordings: pd.DataFrame, *, val_fraction: float, seed: int, groups: np.ndarray | None = None
                    ) -> tuple[pd.DataFrame, pd.DataFrame, FoldPlan]:
    """(train, validation recordings, the :class:`~birdclef.models.folds.FoldPlan` used): about
    ``val_fraction`` of each primary label's recordings held out, whole ``groups`` (n,) at a time (a
    recording session: no session on both sides; default each recording its own group), stratified by
    primary label and seeded. A label left with no training recording gets its held-out groups back.
    Fewer groups than ``round(1 / val_fraction)`` folds, or classes too small to stratify, follow the
    head's rule (:mod:`birdclef.models.folds`, logged); with fewer than two groups the validation side
    is empty."""
    groups = recordings["filename"].astype(str).to_numpy() if groups is None else np.asarray(groups, str)
    if len(groups) != len(recordings):
        raise ValueError(f"{len(groups)} groups for {len(recordings)} recordings")
    is_val = np.zeros(len(recordings), bool)
    plan = fold_plan(max(2, int(round(1 / val_fraction))), len(np.unique(groups)), what="recording groups")
    label = recordings["primary_label"].astype(str).to_numpy()
    if plan.validates:
        fold_of, stratified = group_folds(label, groups, plan.n_folds, seed)
        is_val = fold_of == 0
        plan = FoldPlan(plan.n_folds, "; ".join(n for n in (plan.note, stratified) if n))
    if plan.note:
        log.warning("SED validation split: %s", plan.note)
    for name in np.unique(label[is_val]):
        if not (~is_val & (label == name)).any():  # every recording of the label held out: keep it in training
            is_val &= ~np.isin(groups, groups[is_val & (label == name)])
    return recordings[~is_val].reset_index(drop=True), recordings[is_val].reset_index(drop=True), plan
