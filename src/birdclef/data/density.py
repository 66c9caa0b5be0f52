"""Soundscapes as dense as real ones: calls placed window by window by presence patterns.

The sparse construction (:func:`birdclef.data.mixing.sparse_soundscapes`: 1–4 calls per species, 30 %
of the files empty) is the sparse end of real data. Expert-labelled real minutes are denser: pooled over
eight labelled sets (BirdCLEF 2021 and 2026 train soundscapes, SSW, SNE, UHH, HSN, PER, NES, POW;
``../shared/reference/soundscape_density.md``), 21 % of the minutes hold no target, a present species
fills a median 5 of its minute's 12 windows (15 % fill all 12), in runs of a median 2 windows.

- :func:`patterned_soundscapes` builds minutes whose presence follows 12-window 0/1 patterns: each pattern
  is given a species (dealt from a shuffled deck) and one of its recordings, and in every window the
  pattern marks one of that recording's detected calls is placed wholly inside the window, at a level
  drawn per species with a small jitter per call (:func:`place_patterns`). The truth is computed from the
  placed calls; cells that cannot be judged (a bed stretch's species, a call's recording's secondary
  species under the call) are marked to ignore, as the sparse construction does.
- :func:`draw_real_density` draws a minute's patterns from :data:`REAL_DENSITY`, the pooled distributions
  of those sets (species per minute, windows per present species; runs of geometric length), so the
  construction needs no labelled data. The validation soundscapes use it with ``val_density="real"``;
  the real-audio benchmark draws patterns from the real labelled minutes themselves.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from birdclef.data import mixing
from birdclef.data.mixing import SAMPLE_RATE_HZ, Mix, Source
from birdclef.errors import BirdclefError

WINDOWS = 12  # a pattern covers one minute of 5-s windows
CALL_JITTER_DB = 3.0  # a call's level around its species' level in the file


@dataclass(frozen=True)
class Density:
    """How dense minutes are: the probability of each number of species in a minute (index 0: none) and of
    each number of windows a present species fills (index 0: one window … 11: all twelve), and the mean
    length (windows) of a run of consecutive windows."""

    species: tuple[float, ...]
    windows: tuple[float, ...]
    mean_run: float


# pooled over the eight real sets (soundscape_density.md, 2,066 one-minute chunks): species per minute
# 0: 21 %, 1: 20 %, 2: 17 %, 3: 10 %, 4–6: 19 % (spread evenly here), >= 7: 13 % (spread over 7–10 here);
# windows per present species 1…12: 16, 14, 9, 9, 7, 6, 5, 5, 4, 4, 5, 15 %; runs: median 2, mean ~3
REAL_DENSITY = Density(species=(0.21, 0.20, 0.17, 0.10, *(0.19 / 3,) * 3, *(0.13 / 4,) * 4),
                       windows=(0.16, 0.14, 0.09, 0.09, 0.07, 0.06, 0.05, 0.05, 0.04, 0.04, 0.05, 0.15),
                       mean_run=3.0)


def presence_pattern(k: int, rng: np.random.Generator, *, mean_run: float = 3.0, n: int = WINDOWS) -> np.ndarray:
    """(n,) bool with ``k`` windows set (1 <= k <= n), laid out as runs of geometric length (mean
    ``mean_run``) separated by at least one empty window, placed at random."""
    if not 1 <= k <= n:
        raise ValueError(f"a pattern of {n} windows holds 1 to {n} present windows, got {k}")
    runs: list[int] = []
    while sum(runs) < k:
        runs.append(int(rng.geometric(1.0 / mean_run)))
    runs[-1] -= sum(runs) - k
    while len(runs) > 1 and k + len(runs) - 1 > n:  # no room for the gaps between them: join two runs
        last = runs.pop()
        runs[int(rng.integers(len(runs)))] += last
    gaps = np.ones(len(runs) + 1, int)
    gaps[0] = gaps[-1] = 0
    gaps += rng.multinomial(n - k - (len(runs) - 1), np.full(len(runs) + 1, 1.0 / (len(runs) + 1)))
    out, at = np.zeros(n, bool), 0
    for gap, run in zip(gaps, runs):
        at += gap
        out[at:at + run] = True
        at += run
    return out


def draw_real_density(rng: np.random.Generator, density: Density = REAL_DENSITY) -> list[np.ndarray]:
    """One minute's presence: a number of species from ``density.species``, each with a number of windows
    from ``density.windows`` laid out by :func:`presence_pattern` → their (12,) bool patterns ([]: empty)."""
    n_species = int(rng.choice(len(density.species), p=np.asarray(density.species) / sum(density.species)))
    weights = np.asarray(density.windows) / sum(density.windows)
    return [presence_pattern(int(rng.choice(WINDOWS, p=weights)) + 1, rng, mean_run=density.mean_run)
            for _ in range(n_species)]


def place_patterns(patterns: list[tuple[list[Source], np.ndarray]], bed_sources: list[Source], labels: list[str],
                   rng: np.random.Generator, *, soundscape_s: float = 60.0, window_s: float = 5.0,
                   background_dbfs: float = -45.0, snr_db: tuple[float, float] = (-5.0, 15.0),
                   min_overlap_s: float = 1.0) -> Mix:
    """One soundscape: the bed (:func:`birdclef.data.mixing.make_bed`), then for each (recordings of one
    species, its (n_windows,) pattern) one recording's detected calls, in order from a random one, one
    wholly inside each window the pattern marks. The species' level is drawn from ``snr_db`` (band SNR over
    the bed), each call ±``CALL_JITTER_DB`` around it."""
    length = int(soundscape_s * SAMPLE_RATE_HZ)
    n_win = int(round(soundscape_s / window_s))
    index = {label: j for j, label in enumerate(labels)}
    audio, parts = mixing.make_bed(bed_sources, rng, length, background_dbfs)
    bed_level = mixing._band_rms(audio)
    truth = np.zeros((n_win, len(labels)), np.int8)
    ignore = np.zeros((n_win, len(labels)), bool)
    lo = np.arange(n_win) * window_s

    def cover(a: float, b: float) -> np.ndarray:
        return np.clip(np.minimum(b, lo + window_s) - np.maximum(a, lo), 0, None)

    for p in parts:  # a bed stretch may hold faint calls of its own recording's species: not judged there
        if p["label"] in index:
            ignore[cover(p["start_s"], p["end_s"]) > 0, index[p["label"]]] = True
    for candidates, pattern in patterns:
        src = candidates[int(rng.integers(len(candidates)))]
        if not src.events:
            continue
        level = float(rng.uniform(*snr_db))
        k = int(rng.integers(len(src.events)))
        j = index[src.label]
        for w in np.flatnonzero(pattern[:n_win]):
            a_s, b_s = src.events[k % len(src.events)]
            k += 1
            dur = min(b_s - a_s, window_s)
            start_s = lo[w] + float(rng.uniform(0, window_s - dur))
            start = int(round(start_s * SAMPLE_RATE_HZ))
            clip = mixing._faded(mixing._cut(src, (a_s, a_s + dur)))[: max(0, length - start)]
            if len(clip) < int(0.1 * SAMPLE_RATE_HZ):
                continue
            snr = level + float(rng.uniform(-CALL_JITTER_DB, CALL_JITTER_DB))
            clip = clip * np.float32(bed_level * 10 ** (snr / 20) / max(mixing._band_rms(clip), 1e-12))
            audio[start:start + len(clip)] += clip
            a, b = start / SAMPLE_RATE_HZ, (start + len(clip)) / SAMPLE_RATE_HZ
            c = cover(a, b)
            truth[c >= min(min_overlap_s, 0.5 * (b - a)), j] = 1
            for s in src.secondary:
                if s in index and s != src.label:
                    ignore[c > 0, index[s]] = True
            parts.append({"kind": "call", "filename": src.name, "label": src.label, "start_s": round(a, 3),
                          "end_s": round(b, 3), "snr_db": round(snr, 2)})
    ignore &= truth == 0
    peak = float(np.max(np.abs(audio))) if len(audio) else 0.0
    if peak > 0.99:
        audio = audio * np.float32(0.99 / peak)
    return Mix(audio, truth, ignore, parts)


def patterned_soundscapes(sources: list[Source], labels: list[str], rng: np.random.Generator, *, n: int, prefix: str,
                          draw: Callable[[np.random.Generator], tuple[list[np.ndarray], str]],
                          soundscape_s: float = 60.0, background_dbfs: float = -45.0,
                          snr_db: tuple[float, float] = (-5.0, 15.0), min_overlap_s: float = 1.0,
                          where: str = "the recordings") -> Iterator[tuple[str, Mix, str]]:
    """``n`` soundscapes ``<prefix><i:03d>`` from ``sources`` → (name, mix, what ``draw`` named its patterns).
    ``draw(rng)`` gives each minute's (12,) bool patterns and a name for them (e.g. the real chunk they
    come from); with more patterns than species that have a call, a random subset of them is kept.

    Raises :class:`BirdclefError` when no source has a call-free stretch or a detected call, or
    ``soundscape_s`` is not one pattern's minute."""
    if int(round(soundscape_s / 5.0)) != WINDOWS:
        raise BirdclefError(f"soundscapes placed by presence patterns are {WINDOWS * 5} s long (one pattern), "
                            f"got {soundscape_s} s")
    by_species = mixing.callers(sources, where=where)
    deck = mixing.SpeciesDeck(by_species, rng)
    for i in range(n):
        patterns, key = draw(rng)
        patterns = list(patterns)
        if len(patterns) > len(by_species):
            patterns = [patterns[j] for j in sorted(rng.choice(len(patterns), len(by_species), replace=False))]
        picked = deck.deal(len(patterns))
        mix = place_patterns([(by_species[sp], p) for sp, p in zip(picked, patterns)], sources, labels, rng,
                             soundscape_s=soundscape_s, background_dbfs=background_dbfs, snr_db=tuple(snr_db),
                             min_overlap_s=min_overlap_s)
        yield f"{prefix}{i:03d}", mix, key


def real_density_soundscapes(sources: list[Source], labels: list[str], rng: np.random.Generator, *, n: int,
                             prefix: str, density: Density = REAL_DENSITY, where: str = "the recordings",
                             **kw) -> Iterator[tuple[str, Mix]]:
    """``n`` one-minute soundscapes with presence drawn from ``density`` (:func:`draw_real_density`); the
    other settings as :func:`patterned_soundscapes`'s."""
    for name, mix, _ in patterned_soundscapes(sources, labels, rng, n=n, prefix=prefix, where=where,
                                              draw=lambda r: (draw_real_density(r, density), "drawn"), **kw):
        yield name, mix
