"""Test minutes with real density: calls placed by presence patterns of real labelled minutes.

The sparse construction (:func:`birdclef.data.mixing.sparse_soundscapes`: 1–4 calls per species, a third
of the files empty) is the sparse end of real data. Real expert-labelled minutes
(``../shared/reference/soundscape_density.md``) are denser: pooled over eight sets, 21 % of the minutes
hold no target and a present species fills a median 5 of 12 windows. :func:`density_soundscapes` draws
each test minute's presence from ``occupancy_1min.csv`` (one row per species present in a real
one-minute chunk, its 12-window occupancy; an empty chunk is one row with no species): a chunk is drawn
at random, each of its species is mapped onto a held-out species (dealt from a shuffled deck, so every
held-out species spreads over many files) and one of its recordings, and in every window the pattern
marks, one of that recording's detected calls is placed wholly inside the window, at a level drawn per
species (its distance) with a small jitter per call. Empty chunks stay empty (bed only). A chunk with
more species than there are held-out species keeps a random subset of its patterns.

The truth is computed from the placed calls as the sparse construction computes it (so it equals the
drawn pattern); the cells that cannot be judged (a bed stretch's species, a call's recording's
secondary species under the call) are left out of the score the same way.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from birdclef.data import mixing
from birdclef.data.density import WINDOWS, patterned_soundscapes
from birdclef.data.mixing import Mix, Source
from birdclef.errors import BirdclefError


def default_occupancy() -> Path | None:
    """$BIRDCLEF_OCCUPANCY, else ../shared/reference/occupancy_1min.csv beside this checkout, else None."""
    import os

    env = os.environ.get("BIRDCLEF_OCCUPANCY")
    if env:
        return Path(env)
    local = Path(__file__).resolve().parents[3] / "shared" / "reference" / "occupancy_1min.csv"
    return local if local.exists() else None


@dataclass(frozen=True)
class Chunk:
    """One real labelled minute: its chunk id and one 12-window 0/1 pattern per species present."""

    key: str  # "<set>/<chunk>"
    patterns: tuple[np.ndarray, ...]  # each (12,) bool


def load_occupancy(path: str | Path) -> list[Chunk]:
    """``occupancy_1min.csv`` → its chunks (an empty chunk has no pattern).

    Raises :class:`BirdclefError` on a missing file, missing columns or a pattern that is not 12 characters
    of 0/1."""
    path = Path(path)
    if not path.is_file():
        raise BirdclefError(f"{path}: no occupancy table (set, chunk, species, occupancy)")
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = {"set", "chunk", "species", "occupancy"} - set(table.columns)
    if missing:
        raise BirdclefError(f"{path}: missing column(s) {sorted(missing)}")
    chunks = []
    for (s, c), g in table.groupby(["set", "chunk"], sort=False):
        patterns = []
        for sp, occ in zip(g["species"], g["occupancy"]):
            if not sp and not occ:
                continue
            if len(occ) != WINDOWS or set(occ) - {"0", "1"}:
                raise BirdclefError(f"{path}: chunk {s}/{c} species {sp}: occupancy {occ!r} is not {WINDOWS} "
                                    "characters of 0/1")
            pattern = np.array([ch == "1" for ch in occ])
            if pattern.any():
                patterns.append(pattern)
        chunks.append(Chunk(f"{s}/{c}", tuple(patterns)))
    if not chunks:
        raise BirdclefError(f"{path}: no chunk")
    return chunks


def density_stats(truth: np.ndarray, *, per_file: int = WINDOWS) -> dict[str, float]:
    """{positive_share, empty_file_share, median_windows, median_run}: the share of windows with any
    positive, of files with none, the median number of positive windows of a (file, class) present in the
    file, and the median run of consecutive positives. ``truth``: (n_files * per_file, n_labels) 0/1."""
    files = np.asarray(truth).reshape(-1, per_file, np.asarray(truth).shape[1]) > 0
    per_present = files.sum(1)[files.any(1)]
    return {**mixing.window_stats(np.asarray(truth), per_file=per_file),
            "median_windows": float(np.median(per_present)) if per_present.size else float("nan")}


def occupancy_stats(chunks: list[Chunk]) -> dict[str, float]:
    """:func:`density_stats` of the real chunks themselves (one class per species row): the reference the
    construction is compared with."""
    width = max([len(c.patterns) for c in chunks] + [1])
    y = np.zeros((len(chunks) * WINDOWS, width), np.int8)
    for i, c in enumerate(chunks):
        for j, p in enumerate(c.patterns):
            y[i * WINDOWS:(i + 1) * WINDOWS, j] = p
    return density_stats(y)


def density_soundscapes(sources: list[Source], labels: list[str], chunks: list[Chunk], rng: np.random.Generator, *,
                        n: int, prefix: str, soundscape_s: float = 60.0, background_dbfs: float = -45.0,
                        snr_db: tuple[float, float] = (-5.0, 15.0), min_overlap_s: float = 1.0,
                        where: str = "the recordings") -> Iterator[tuple[str, Mix, str]]:
    """``n`` soundscapes ``<prefix><i:03d>``, each with the presence of a real chunk drawn at random from
    ``chunks`` (see the module docstring; :func:`birdclef.data.density.patterned_soundscapes` places the
    calls) → (name, mix, the chunk's key).

    Raises :class:`BirdclefError` when no source has a call-free stretch or a detected call, or
    ``soundscape_s`` is not one pattern's minute."""
    def draw(r: np.random.Generator) -> tuple[list[np.ndarray], str]:
        chunk = chunks[int(r.integers(len(chunks)))]
        return list(chunk.patterns), chunk.key

    yield from patterned_soundscapes(sources, labels, rng, n=n, prefix=prefix, draw=draw, soundscape_s=soundscape_s,
                                     background_dbfs=background_dbfs, snr_db=snr_db, min_overlap_s=min_overlap_s,
                                     where=where)
