"""Held-out tasks from labelled recordings: the real-audio benchmark's test soundscapes.

A folder of focal recordings in the BirdCLEF layout (``../shared/realdev``, or the competition's
own ``train_audio``) has no timed soundscapes. :func:`make_heldout_task` turns it into a
competition folder that the ordinary stages run on. Two choices, each named in :class:`TaskSettings`:

``holdout="session"`` (default): whole recording sessions (:mod:`birdclef.data.sessions`: recordist +
place [+ date], adjacent catalogue numbers) are held out, at least one per species that has two
sessions, so no held-out file shares a session with a training file. A fixed *lockbox* set of
sessions (:data:`LOCKBOX`, about ``lockbox_share`` of the species) is held out only by the lockbox
split and trains in every other split: no default is chosen on it.

``construction="sparse"`` (default): ``n_soundscapes`` minutes built like the competition's by
:func:`birdclef.data.mixing.compose`: a bed of the held-out recordings' own call-free stretches, calls
cut from them by an energy detector, a few species per file, many files with none; truth from the
event boundaries, with the cells that cannot be judged in ``solution_ignore.csv``.

The earlier construction stays as ``holdout="file", construction="dense"``:

- for every species with at least ``min_recordings`` recordings, one recording (a seeded choice
  per ``split``) is held out; the rest stay in ``train.csv`` (species with one recording are
  always trained on, never scored);
- each held-out recording becomes a one-minute *single* test soundscape (its first minute at a
  random offset, over background), and ``n_mixtures`` *mixture* soundscapes hold 2–4 held-out
  excerpts at −12…0 dB over background;
- the background is real: the quietest 0.5-s stretches of the *training* recordings, shuffled
  and cross-faded into a one-minute bed;
- ``solution.csv``: a 5-s window is positive for a species when one of its excerpts covers at
  least ``min_overlap_s`` of the window (primary labels only: a recording's secondary species
  are not timed).

``pool_share > 0`` also sets an *unlabelled pool* aside (the noisy student's soundscapes): that share of
the training side's sessions (never a held-out or a lockbox session, each taken only while every species
it holds keeps a training recording) leaves ``train.csv`` and becomes ``pool_soundscapes`` minutes built
like the test soundscapes, written as ``train_soundscapes/`` without labels (:mod:`birdclef.models.pseudo` finds
them there). The test soundscapes are the same as without the pool (their random stream comes first).
The pool keys the task's folder (:attr:`TaskSettings.tag`), so a baseline compared with a noisy student
trains on the same labelled recordings when both are built with the pool.

A finished task is reused only when its ``task.json`` holds the same settings; otherwise it is
rebuilt. ``train_audio`` is a symlink to the source's, so the embedding cache (keyed by the resolved path)
is shared by every split; the source audio is read in place, never copied.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from birdclef.data import audio, mixing
from birdclef.data.competition import competition_paths, load_taxonomy, load_train_metadata
from birdclef.data.metric import IGNORE_FILE
from birdclef.data.sessions import recording_sessions
from birdclef.errors import AudioError, BirdclefError
from birdclef.io import write_csv, write_json, write_ogg
from birdclef.submission.submit import row_ids
from birdclef_bench.density import default_occupancy, density_soundscapes, density_stats, load_occupancy

log = logging.getLogger(__name__)

SAMPLE_RATE_HZ = mixing.SAMPLE_RATE_HZ
QUIET_PIECE_S = 0.5
FADE_S = 0.05


LOCKBOX = -1  # the split that holds out the lockbox sessions; no default is chosen on it
HOLDOUTS = ("session", "file")
CONSTRUCTIONS = ("sparse", "dense", "density")
TASK_VERSION = 2  # bump when the construction changes: finished tasks are rebuilt
REGIME_VERSION = 2  # likewise for the few-recording regimes (2: k recordings per species, not whole sessions)


@dataclass(frozen=True)
class TaskSettings:
    """How a held-out task is built (saved as ``task.json``; a task built otherwise is rebuilt)."""

    holdout: str = "session"  # "session": whole recording sessions; "file": one recording per species (earlier)
    construction: str = "sparse"  # "sparse": like the competition's; "density": real presence patterns;
    # "dense": singles + mixtures (earlier)
    min_recordings: int = 2
    lockbox_share: float = 0.4  # share of the species whose lockbox session is set aside ("session" only)
    soundscape_s: float = 60.0
    min_overlap_s: float = 1.0
    # sparse
    n_soundscapes: int = 150
    empty_share: float = 0.3  # files with no target
    species_mean: float = 1.5  # species in a file that has any (zero-truncated Poisson mean)
    snr_db: tuple[float, float] = (-5.0, 15.0)  # band SNR of a call over the bed
    background_dbfs: float = -45.0
    # density: the occupancy table the presence patterns are drawn from ("": ../shared/reference's)
    occupancy: str = ""
    # dense
    n_mixtures: int = 20
    dense_background_dbfs: float = -40.0
    level_dbfs: float = -22.0
    # unlabelled pool (see the module docstring): share of the training side's sessions; 0: none
    pool_share: float = 0.0
    pool_soundscapes: int = 150  # minutes built from the pool's recordings
    version: int = field(default=TASK_VERSION)

    def __post_init__(self) -> None:
        if self.holdout not in HOLDOUTS:
            raise ValueError(f"unknown holdout {self.holdout!r}; known: {', '.join(map(repr, HOLDOUTS))}")
        if self.construction not in CONSTRUCTIONS:
            raise ValueError(f"unknown construction {self.construction!r}; known: {', '.join(map(repr, CONSTRUCTIONS))}")
        if not 0 <= self.pool_share < 1 or self.pool_soundscapes < 1:
            raise ValueError(f"pool_share must be in [0, 1) and pool_soundscapes >= 1, got {self.pool_share}, "
                             f"{self.pool_soundscapes}")
        if self.occupancy and self.construction != "density":
            raise ValueError(f"occupancy is read by construction='density' only, got {self.construction!r}")
        if self.pool_share and (self.holdout != "session" or self.construction != "sparse"):
            raise ValueError("pool_share needs holdout='session' and construction='sparse' (the pool is built like "
                             "their test soundscapes)")

    @property
    def tag(self) -> str:
        """Folder name of tasks built this way: ``<construction>-<holdout>``, ``-pool<share>`` with a pool."""
        return f"{self.construction}-{self.holdout}" + (f"-pool{self.pool_share:g}" if self.pool_share else "")

    def to_dict(self) -> dict:
        d = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        if not self.pool_share:  # tasks built before the pool existed keep matching
            d.pop("pool_share"), d.pop("pool_soundscapes")
        if self.construction != "density":  # likewise those built before the real-density construction
            d.pop("occupancy")
        else:
            d["occupancy"] = str(self.occupancy_path())
        return d

    def occupancy_path(self) -> Path:
        """The occupancy table the density construction reads: ``occupancy``, else the shared reference's."""
        path = Path(self.occupancy) if self.occupancy else default_occupancy()
        if path is None:
            raise BirdclefError("no occupancy table: pass occupancy= (or set BIRDCLEF_OCCUPANCY) to the "
                                "real-density construction's occupancy_1min.csv")
        return path

    def mixing_kwargs(self) -> dict:
        """The sparse construction's settings as :func:`birdclef.data.mixing.sparse_soundscapes` takes them."""
        return dict(soundscape_s=self.soundscape_s, background_dbfs=self.background_dbfs, snr_db=tuple(self.snr_db),
                    min_overlap_s=self.min_overlap_s, empty_share=self.empty_share, species_mean=self.species_mean)


@dataclass(frozen=True)
class HeldOutTask:
    data_dir: Path
    held_out: pd.DataFrame  # filename, primary_label: the recordings kept out of train.csv
    soundscapes: pd.DataFrame  # what was placed: soundscape, kind, filename, primary_label, start_s, end_s, ...
    stats: dict = field(default_factory=dict)  # positive_share, empty_file_share, median_run, n_soundscapes, ...


def _rms_db(x: np.ndarray) -> float:
    return 10 * np.log10(float(np.mean(np.square(x, dtype=np.float64))) + 1e-12)


def _quiet_pieces(files: list[Path], rng: np.random.Generator, *, share: float = 0.1) -> list[np.ndarray]:
    """The quietest ``share`` of each recording's 0.5-s pieces (at most a minute read per file)."""
    n = int(QUIET_PIECE_S * SAMPLE_RATE_HZ)
    pieces = []
    for f in files:
        try:
            x, sr = audio.read_audio(f, duration_s=60.0)
        except AudioError as err:
            log.warning("background: skipping %s (%s)", f, err)
            continue
        x = audio.resample(x, sr, SAMPLE_RATE_HZ)
        k = len(x) // n
        if k < 4:
            continue
        p = x[: k * n].reshape(k, n)
        level = np.mean(np.square(p, dtype=np.float64), axis=1)
        keep = np.argsort(level)[: max(1, int(share * k))]
        pieces.extend(p[keep])
    if not pieces:
        raise BirdclefError("no recording long enough to take background from")
    rng.shuffle(pieces)
    return pieces


def _bed(pieces: list[np.ndarray], rng: np.random.Generator, length: int, rms_dbfs: float) -> np.ndarray:
    """``length`` samples of background: random quiet pieces cross-faded, at ``rms_dbfs``."""
    n = len(pieces[0])
    fade = int(FADE_S * SAMPLE_RATE_HZ)
    ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
    out = np.zeros(length + n, np.float32)
    pos = 0
    while pos < length:
        p = pieces[int(rng.integers(len(pieces)))].copy()
        p = p / (np.sqrt(np.mean(np.square(p))) + 1e-9)  # equal loudness per piece: no steps in the bed
        p[:fade] *= ramp
        p[-fade:] *= ramp[::-1]
        out[pos:pos + n] += p
        pos += n - fade
    out = out[:length]
    return out * np.float32(10 ** ((rms_dbfs - _rms_db(out)) / 20))


def _excerpt(path: Path, max_s: float, rng: np.random.Generator) -> np.ndarray:
    info = audio.audio_info(path)
    start = float(rng.uniform(0, max(0.0, info.duration_s - max_s)))
    x, sr = audio.read_audio(path, start_s=start, duration_s=max_s)
    return audio.resample(x, sr, SAMPLE_RATE_HZ)


def window_truth(events: list[tuple[str, float, float]], labels: list[str], n_windows: int, *,
                 window_s: float = 5.0, min_overlap_s: float = 1.0) -> np.ndarray:
    """(n_windows, n_labels) 0/1: a window is positive for a label when one of its events
    (label, start_s, end_s) covers at least ``min_overlap_s`` of it (or the whole event, if shorter)."""
    index = {label: j for j, label in enumerate(labels)}
    y = np.zeros((n_windows, len(labels)), np.int8)
    for label, a, b in events:
        for w in range(n_windows):
            lo, hi = w * window_s, (w + 1) * window_s
            overlap = min(b, hi) - max(a, lo)
            if overlap >= min(min_overlap_s, b - a) and overlap > 0:
                y[w, index[label]] = 1
    return y


def session_holdout(meta: pd.DataFrame, split: int, *, min_recordings: int = 2, lockbox_share: float = 0.4
                    ) -> list[str]:
    """Filenames held out by ``split`` (:data:`LOCKBOX` for the lockbox): whole sessions, greedily one
    per species in a seeded order, each accepted only while every species it holds keeps a training
    recording outside the held-out sessions. Dev splits never hold out a lockbox session."""
    meta = meta.reset_index(drop=True)
    session = pd.Series(recording_sessions(meta), index=meta.index)
    labels = meta["primary_label"].astype(str)
    eligible = sorted(labels.value_counts()[lambda c: c >= min_recordings].index)

    def choose(rng: np.random.Generator, species: list[str], barred: set[str]) -> set[str]:
        held: set[str] = set()
        for sp in species:
            if (labels[session.isin(held)] == sp).any():
                continue
            for s in rng.permutation(sorted(set(session[labels == sp]) - barred - held)):
                trial = held | {s}
                rest = labels[~session.isin(trial)]
                if set(labels[session == s]) <= set(rest):  # every species of the session still trains
                    held = trial
                    break
        return held

    lock_rng = np.random.default_rng(7_777)
    order = list(lock_rng.permutation(eligible))
    lockbox = choose(lock_rng, order[: int(round(lockbox_share * len(order)))], set())
    if split == LOCKBOX:
        held = lockbox
    else:
        rng = np.random.default_rng(1000 + split)
        held = choose(rng, list(rng.permutation(eligible)), lockbox)
    return sorted(meta["filename"][session.isin(held)])


def pool_holdout(meta: pd.DataFrame, held: list[str], split: int, *, share: float, min_recordings: int = 2,
                 lockbox_share: float = 0.4) -> list[str]:
    """Filenames of the unlabelled pool of ``split``: about ``share`` of the training side's sessions (those
    of no file in ``held`` and no lockbox session), in a seeded order, each accepted only while every
    species it holds keeps a training recording outside ``held`` and the pool."""
    meta = meta.reset_index(drop=True)
    session = pd.Series(recording_sessions(meta), index=meta.index)
    labels = meta["primary_label"].astype(str)
    lockbox = session_holdout(meta, LOCKBOX, min_recordings=min_recordings, lockbox_share=lockbox_share)
    barred = set(session[meta["filename"].isin(set(held) | set(lockbox))])
    candidates = sorted(set(session) - barred)
    rng = np.random.default_rng(3000 + split)
    want = int(round(share * len(candidates)))
    out_files = set(held)
    pool: set = set()
    for s in rng.permutation(candidates):
        if len(pool) >= want:
            break
        trial = pool | {s}
        rest = labels[~session.isin(trial) & ~meta["filename"].isin(out_files)]
        if set(labels[session == s]) <= set(rest):
            pool = trial
    return sorted(meta["filename"][session.isin(pool)])


def _settings_match(out: Path, settings: TaskSettings, split: int) -> bool:
    path = out / "task.json"
    if not (path.exists() and (out / "heldout.csv").exists()):
        return False
    saved = json.loads(path.read_text())
    return saved.get("settings") == settings.to_dict() and saved.get("split") == split


def make_heldout_task(source_dir: str | Path, out_dir: str | Path, *, split: int,
                      settings: TaskSettings | None = None) -> HeldOutTask:
    """Write a competition folder at ``out_dir`` (see the module docstring); reuse it when it was built
    with the same ``settings`` and ``split``, rebuild it otherwise.

    Raises :class:`BirdclefError` when nothing can be held out.
    """
    settings = settings or TaskSettings()
    source = competition_paths(source_dir)
    out = Path(out_dir)
    if _settings_match(out, settings, split):
        table = pd.read_csv(out / "heldout.csv", dtype={"primary_label": str, "filename": str}, keep_default_na=False)
        held = pd.read_csv(out / "heldout_recordings.csv", dtype=str, keep_default_na=False)
        return HeldOutTask(out, held, table, json.loads((out / "task.json").read_text())["stats"])
    for stale in ("task.json", "heldout.csv", "solution.csv", IGNORE_FILE, "pool_recordings.csv"):
        (out / stale).unlink(missing_ok=True)
    shutil.rmtree(out / "test_soundscapes", ignore_errors=True)
    shutil.rmtree(out / "train_soundscapes", ignore_errors=True)
    rng = np.random.default_rng(1000 + split)
    taxonomy = load_taxonomy(source.taxonomy)
    labels = taxonomy["primary_label"].tolist()
    meta, _ = load_train_metadata(source.train_csv, taxonomy)
    raw = pd.read_csv(source.train_csv, dtype=str, keep_default_na=False)
    if settings.holdout == "file":  # the earlier choice and order: one recording per species, in label order
        candidates = meta.groupby("primary_label")["filename"].agg(list)
        candidates = candidates[candidates.map(len) >= settings.min_recordings]
        held = pd.DataFrame({"filename": [str(rng.choice(sorted(files))) for files in candidates],
                             "primary_label": list(candidates.index)})
    else:
        names = set(session_holdout(meta, split, min_recordings=settings.min_recordings,
                                    lockbox_share=settings.lockbox_share))
        held = meta[meta["filename"].isin(names)][["filename", "primary_label"]].reset_index(drop=True)
    if held.empty:
        raise BirdclefError(f"{source.root}: no species has {settings.min_recordings} recordings (or two sessions) "
                            "to hold one out")
    pool = pd.DataFrame(columns=["filename", "primary_label"])
    if settings.pool_share:
        names = set(pool_holdout(meta, list(held["filename"]), split, share=settings.pool_share,
                                 min_recordings=settings.min_recordings, lockbox_share=settings.lockbox_share))
        pool = meta[meta["filename"].isin(names)][["filename", "primary_label"]].reset_index(drop=True)
    train_rows = raw[~raw["filename"].isin(set(held["filename"]) | set(pool["filename"]))]
    out.mkdir(parents=True, exist_ok=True)
    write_csv(train_rows, out / "train.csv")
    write_csv(pd.read_csv(source.taxonomy, dtype=str, keep_default_na=False), out / "taxonomy.csv")
    write_csv(held, out / "heldout_recordings.csv")
    link = out / "train_audio"
    if not link.exists():
        os.symlink(source.train_audio.resolve(), link, target_is_directory=True)
    if settings.construction == "dense":
        table, solution, ignore = _dense(source, out, held, train_rows, labels, rng, split, settings)
    elif settings.construction == "density":
        secondary = dict(zip(meta["filename"], meta["secondary_list"]))
        table, solution, ignore = _density(source, out, held, secondary, labels, rng, split, settings)
    else:
        secondary = dict(zip(meta["filename"], meta["secondary_list"]))
        table, solution, ignore = _sparse(source, out, held, secondary, labels, rng, split, settings)
        if len(pool):  # its own random stream, after the test's: the test soundscapes are those without a pool
            _pool(source, out, pool, secondary, labels, np.random.default_rng(2000 + split), split, settings)
            write_csv(pool, out / "pool_recordings.csv")
    write_csv(solution, out / "solution.csv")
    if ignore is not None:
        write_csv(ignore, out / IGNORE_FILE)
    y = solution[labels].to_numpy()
    n_win = int(round(settings.soundscape_s / 5.0))
    stats = {**density_stats(y, per_file=n_win), "n_soundscapes": int(len(y) // n_win),
             "n_held_out": int(len(held)), "n_species": int(held["primary_label"].nunique()),
             **({"n_pool_recordings": int(len(pool)), "n_pool_soundscapes": settings.pool_soundscapes}
                if len(pool) else {}),
             "ignored_cells": int(ignore[labels].to_numpy().sum()) if ignore is not None else 0}
    write_csv(table, out / "heldout.csv")
    write_json({"split": split, "settings": settings.to_dict(), "stats": stats}, out / "task.json")  # last: marks it done
    return HeldOutTask(out, held, table, stats)


def _solution_frame(name: str, y: np.ndarray, labels: list[str]) -> pd.DataFrame:
    df = pd.DataFrame(y.astype(np.int8), columns=labels)
    df.insert(0, "row_id", row_ids(name, len(y)))
    return df


def _sparse(source, out: Path, held: pd.DataFrame, secondary: dict, labels: list[str], rng: np.random.Generator,
            split: int, s: TaskSettings) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    sources = mixing.load_sources([(source.train_audio / rec.filename, rec.filename, rec.primary_label,
                                    tuple(secondary.get(rec.filename, ()))) for rec in held.itertuples(index=False)])
    prefix = f"heldout_{'lockbox' if split == LOCKBOX else f's{split}'}_"
    rows, solution, ignore = [], [], []
    for name, mix in mixing.sparse_soundscapes(sources, labels, rng, n=s.n_soundscapes, prefix=prefix,
                                               **s.mixing_kwargs(), where=str(source.root)):
        write_ogg(out / "test_soundscapes" / f"{name}.ogg", np.clip(mix.audio, -1, 1), SAMPLE_RATE_HZ)
        rows += [{"soundscape": name, **p} for p in mix.parts]
        solution.append(_solution_frame(name, mix.truth, labels))
        ignore.append(_solution_frame(name, mix.ignore, labels))
    table = pd.DataFrame(rows).rename(columns={"label": "primary_label"})
    return table, pd.concat(solution, ignore_index=True), pd.concat(ignore, ignore_index=True)


def _density(source, out: Path, held: pd.DataFrame, secondary: dict, labels: list[str], rng: np.random.Generator,
             split: int, s: TaskSettings) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The real-density construction (:mod:`birdclef_bench.density`): the sparse one's bed and calls, the
    presence of each minute drawn from a real labelled minute."""
    chunks = load_occupancy(s.occupancy_path())
    sources = mixing.load_sources([(source.train_audio / rec.filename, rec.filename, rec.primary_label,
                                    tuple(secondary.get(rec.filename, ()))) for rec in held.itertuples(index=False)])
    prefix = f"heldout_{'lockbox' if split == LOCKBOX else f's{split}'}_"
    rows, solution, ignore = [], [], []
    kw = {k: v for k, v in s.mixing_kwargs().items() if k not in ("empty_share", "species_mean")}
    for name, mix, chunk in density_soundscapes(sources, labels, chunks, rng, n=s.n_soundscapes, prefix=prefix, **kw,
                                                where=str(source.root)):
        write_ogg(out / "test_soundscapes" / f"{name}.ogg", np.clip(mix.audio, -1, 1), SAMPLE_RATE_HZ)
        rows += [{"soundscape": name, "chunk": chunk, **p} for p in mix.parts] or [{"soundscape": name, "chunk": chunk}]
        solution.append(_solution_frame(name, mix.truth, labels))
        ignore.append(_solution_frame(name, mix.ignore, labels))
    table = pd.DataFrame(rows).rename(columns={"label": "primary_label"})
    return table, pd.concat(solution, ignore_index=True), pd.concat(ignore, ignore_index=True)


def _pool(source, out: Path, pool: pd.DataFrame, secondary: dict, labels: list[str], rng: np.random.Generator,
          split: int, s: TaskSettings) -> None:
    """``s.pool_soundscapes`` unlabelled minutes from the pool's recordings, built like the test ones,
    into ``train_soundscapes/`` (no truth is written: they are for pseudo-labelling)."""
    sources = mixing.load_sources([(source.train_audio / rec.filename, rec.filename, rec.primary_label,
                                    tuple(secondary.get(rec.filename, ()))) for rec in pool.itertuples(index=False)])
    prefix = f"pool_{'lockbox' if split == LOCKBOX else f's{split}'}_"
    for name, mix in mixing.sparse_soundscapes(sources, labels, rng, n=s.pool_soundscapes, prefix=prefix,
                                               **s.mixing_kwargs(), where=f"{source.root} (pool)"):
        write_ogg(out / "train_soundscapes" / f"{name}.ogg", np.clip(mix.audio, -1, 1), SAMPLE_RATE_HZ)


def _dense(source, out: Path, held: pd.DataFrame, train_rows: pd.DataFrame, labels: list[str], rng: np.random.Generator,
           split: int, s: TaskSettings) -> tuple[pd.DataFrame, pd.DataFrame, None]:
    """The earlier construction: a single soundscape per held-out recording and ``n_mixtures`` mixtures
    of 2–4 excerpts at −12…0 dB, over a bed of the training recordings' quietest 0.5-s pieces."""
    pieces = _quiet_pieces([source.train_audio / f for f in train_rows["filename"]], rng)
    length = int(s.soundscape_s * SAMPLE_RATE_HZ)
    n_win = int(round(s.soundscape_s / 5.0))
    rows, solution = [], []
    plans: list[tuple[str, str, list[tuple[str, str, float]]]] = []  # (name, kind, [(file, label, gain_db)])
    for i, rec in enumerate(held.itertuples(index=False)):
        plans.append((f"heldout_s{split}_single_{i:03d}", "single", [(rec.filename, rec.primary_label, 0.0)]))
    for i in range(s.n_mixtures):
        pick = rng.choice(len(held), size=min(len(held), int(rng.integers(2, 5))), replace=False)
        plans.append((f"heldout_s{split}_mix_{i:03d}", "mixture",
                      [(held.filename[j], held.primary_label[j], float(rng.uniform(-12, 0))) for j in pick]))
    for name, kind, parts in plans:
        x = _bed(pieces, rng, length, s.dense_background_dbfs)
        events = []
        for filename, label, gain_db in parts:
            max_s = s.soundscape_s if kind == "single" else float(rng.uniform(8, 25))
            try:
                clip = _excerpt(source.train_audio / filename, max_s, rng)
            except AudioError as err:
                log.warning("held-out %s skipped in %s: %s", filename, name, err)
                continue
            clip = clip * np.float32(10 ** ((s.level_dbfs + gain_db - _rms_db(clip)) / 20))
            start = int(rng.integers(0, max(1, length - len(clip) + 1)))
            clip = clip[: length - start]
            x[start:start + len(clip)] += clip
            a, b = start / SAMPLE_RATE_HZ, (start + len(clip)) / SAMPLE_RATE_HZ
            events.append((label, a, b))
            rows.append({"soundscape": name, "kind": kind, "filename": filename, "primary_label": label,
                         "start_s": round(a, 3), "end_s": round(b, 3), "gain_db": round(gain_db, 2)})
        write_ogg(out / "test_soundscapes" / f"{name}.ogg", np.clip(x, -1, 1), SAMPLE_RATE_HZ)
        solution.append(_solution_frame(name, window_truth(events, labels, n_win, min_overlap_s=s.min_overlap_s), labels))
    return pd.DataFrame(rows), pd.concat(solution, ignore_index=True), None


def training_subsample(meta: pd.DataFrame, per_class: int, split: int) -> list[str]:
    """Filenames of a few-recording regime of ``meta`` (a task's training side): ``per_class`` recordings of
    each species (all it has when fewer), spread over its recording sessions
    (:func:`birdclef.data.sessions.recording_sessions`): one recording from each session in a seeded order
    before a second from any, so k recordings come from k sessions where the species has them.

    Whole sessions are not kept: in realdev one session holds many species (a recordist's morning), so a
    session taken for one species would bring others' recordings along (1.9 recordings per species at
    ``per_class=1``)."""
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}")
    meta = meta.reset_index(drop=True)
    session = pd.Series(recording_sessions(meta), index=meta.index)
    labels = meta["primary_label"].astype(str)
    rng = np.random.default_rng(5000 + split)
    kept: list[str] = []
    for sp in sorted(labels.unique()):
        mine = meta.index[labels == sp]
        queues = {s: list(rng.permutation(sorted(meta.loc[mine[session[mine] == s], "filename"])))
                  for s in rng.permutation(sorted(set(session[mine])))}
        take: list[str] = []
        while len(take) < per_class and any(queues.values()):
            for q in queues.values():
                if q and len(take) < per_class:
                    take.append(q.pop(0))
        kept += take
    return sorted(kept)


def make_regime_task(task: HeldOutTask, out_dir: str | Path, *, per_class: int, split: int) -> HeldOutTask:
    """A few-recording regime of ``task``: ``out_dir`` holds its ``train.csv`` cut to ``per_class``
    recordings per species (:func:`training_subsample`) and links to the task's own test soundscapes,
    truth and audio (the same files: their cached embeddings are shared). Reused while the task and
    ``per_class`` are the same."""
    src = Path(task.data_dir)
    out = Path(out_dir)
    key = {"task": json.loads((src / "task.json").read_text()), "per_class": per_class, "split": split,
           "version": REGIME_VERSION}
    marker = out / "regime.json"
    if marker.exists() and json.loads(marker.read_text()).get("key") == key:
        return HeldOutTask(out, task.held_out, task.soundscapes, json.loads(marker.read_text())["stats"])
    marker.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    raw = pd.read_csv(src / "train.csv", dtype=str, keep_default_na=False)
    taxonomy = load_taxonomy(src / "taxonomy.csv")
    meta, _ = load_train_metadata(src / "train.csv", taxonomy)
    keep = set(training_subsample(meta, per_class, split))
    rows = raw[raw["filename"].isin(keep)]
    write_csv(rows, out / "train.csv")
    for name in ("taxonomy.csv", "heldout_recordings.csv", "heldout.csv", "solution.csv", IGNORE_FILE):
        if (src / name).exists():
            shutil.copyfile(src / name, out / name)
    for name in ("train_audio", "test_soundscapes"):
        link = out / name
        if link.is_symlink() or link.exists():
            link.unlink()
        os.symlink((src / name).resolve(), link, target_is_directory=True)
    counts = rows["primary_label"].value_counts()
    stats = {**task.stats, "per_class": per_class, "n_train_recordings": int(len(rows)),
             "train_recordings_per_class": float(counts.mean()), "train_recordings_per_class_max": int(counts.max())}
    write_json({"key": key, "stats": stats}, marker)  # last: marks it done
    return HeldOutTask(out, task.held_out, task.soundscapes, stats)
