"""Held-out tasks from labelled recordings: the real-audio benchmark's test soundscapes.

A folder of focal recordings in the BirdCLEF layout (``../shared/realdev``, or the competition's
own ``train_audio``) has no timed soundscapes. :func:`make_heldout_task` turns it into a
competition folder that the ordinary stages run on:

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

``train_audio`` is a symlink to the source's, so the embedding cache (keyed by the resolved path)
is shared by every split; the source audio is read in place, never copied.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from birdclef import audio
from birdclef.data import competition_paths, load_taxonomy, load_train_metadata
from birdclef.errors import AudioError, BirdclefError
from birdclef.io import atomic_path, write_csv
from birdclef.submission import row_ids

log = logging.getLogger(__name__)

SAMPLE_RATE_HZ = 32_000
QUIET_PIECE_S = 0.5
FADE_S = 0.05


@dataclass(frozen=True)
class HeldOutTask:
    data_dir: Path
    held_out: pd.DataFrame  # filename, primary_label: the recordings kept out of train.csv
    soundscapes: pd.DataFrame  # soundscape, kind (single | mixture), filename, primary_label, start_s, end_s, gain_db


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


def _write_ogg(path: Path, x: np.ndarray) -> None:
    with atomic_path(path, ".ogg") as tmp:
        sf.write(str(tmp), np.clip(x, -1, 1), SAMPLE_RATE_HZ, format="OGG", subtype="VORBIS")


def make_heldout_task(
    source_dir: str | Path, out_dir: str | Path, *, split: int, min_recordings: int = 2, n_mixtures: int = 20,
    soundscape_s: float = 60.0, background_dbfs: float = -40.0, level_dbfs: float = -22.0,
    min_overlap_s: float = 1.0,
) -> HeldOutTask:
    """Write a competition folder at ``out_dir`` (see the module docstring); reuse it when present.

    Raises :class:`BirdclefError` when no species has ``min_recordings`` recordings.
    """
    source = competition_paths(source_dir)
    out = Path(out_dir)
    done = out / "heldout.csv"
    if done.exists():
        table = pd.read_csv(done, dtype={"primary_label": str}, keep_default_na=False)
        held = table.drop_duplicates("filename")[["filename", "primary_label"]].reset_index(drop=True)
        return HeldOutTask(out, held, table)
    rng = np.random.default_rng(1000 + split)
    taxonomy = load_taxonomy(source.taxonomy)
    labels = taxonomy["primary_label"].tolist()
    meta, _ = load_train_metadata(source.train_csv, taxonomy)
    raw = pd.read_csv(source.train_csv, dtype=str, keep_default_na=False)
    candidates = meta.groupby("primary_label")["filename"].agg(list)
    candidates = candidates[candidates.map(len) >= min_recordings]
    if candidates.empty:
        raise BirdclefError(f"{source.root}: no species has {min_recordings} recordings to hold one out")
    held = pd.DataFrame([(str(rng.choice(sorted(files))), label) for label, files in candidates.items()],
                        columns=["filename", "primary_label"])
    train_rows = raw[~raw["filename"].isin(set(held["filename"]))]
    out.mkdir(parents=True, exist_ok=True)
    write_csv(train_rows, out / "train.csv")
    write_csv(pd.read_csv(source.taxonomy, dtype=str, keep_default_na=False), out / "taxonomy.csv")
    link = out / "train_audio"
    if not link.exists():
        os.symlink(source.train_audio.resolve(), link, target_is_directory=True)
    pieces = _quiet_pieces([source.train_audio / f for f in train_rows["filename"]], rng)
    length = int(soundscape_s * SAMPLE_RATE_HZ)
    n_win = int(round(soundscape_s / 5.0))
    rows, solution = [], []
    plans: list[tuple[str, str, list[tuple[str, str, float]]]] = []  # (name, kind, [(file, label, gain_db)])
    for i, rec in enumerate(held.itertuples(index=False)):
        plans.append((f"heldout_s{split}_single_{i:03d}", "single", [(rec.filename, rec.primary_label, 0.0)]))
    for i in range(n_mixtures):
        pick = rng.choice(len(held), size=min(len(held), int(rng.integers(2, 5))), replace=False)
        plans.append((f"heldout_s{split}_mix_{i:03d}", "mixture",
                      [(held.filename[j], held.primary_label[j], float(rng.uniform(-12, 0))) for j in pick]))
    test_dir = out / "test_soundscapes"
    for name, kind, parts in plans:
        x = _bed(pieces, rng, length, background_dbfs)
        events = []
        for filename, label, gain_db in parts:
            max_s = soundscape_s if kind == "single" else float(rng.uniform(8, 25))
            try:
                clip = _excerpt(source.train_audio / filename, max_s, rng)
            except AudioError as err:
                log.warning("held-out %s skipped in %s: %s", filename, name, err)
                continue
            clip = clip * np.float32(10 ** ((level_dbfs + gain_db - _rms_db(clip)) / 20))
            start = int(rng.integers(0, max(1, length - len(clip) + 1)))
            clip = clip[: length - start]
            x[start:start + len(clip)] += clip
            a, b = start / SAMPLE_RATE_HZ, (start + len(clip)) / SAMPLE_RATE_HZ
            events.append((label, a, b))
            rows.append({"soundscape": name, "kind": kind, "filename": filename, "primary_label": label,
                         "start_s": round(a, 3), "end_s": round(b, 3), "gain_db": round(gain_db, 2)})
        _write_ogg(test_dir / f"{name}.ogg", x)
        y = window_truth(events, labels, n_win, min_overlap_s=min_overlap_s)
        df = pd.DataFrame(y, columns=labels)
        df.insert(0, "row_id", row_ids(name, n_win))
        solution.append(df)
    write_csv(pd.concat(solution, ignore_index=True), out / "solution.csv")
    table = pd.DataFrame(rows)
    write_csv(table, done)  # last: its presence marks a finished task
    return HeldOutTask(out, held, table)
