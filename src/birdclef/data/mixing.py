"""Soundscapes built like the competition's from focal recordings: a background bed, sparse faint calls.

A BirdCLEF test soundscape is mostly background: a minute from a recorder in the field, in which
a few species call a few times, often faintly, and many minutes hold no target at all. This module
builds such minutes from focal recordings that never trained the model under test:

- :func:`detect_events`: calls found by band energy (1–10 kHz) over the recording's own noise
  floor, an energy detector that is not the model being measured;
- :func:`quiet_stretches`: the call-free stretches between them (a continuous bed, not 0.5-s pieces);
- :func:`compose`: per soundscape a number of species (none in ``empty_share`` of files, else a
  zero-truncated Poisson of mean ``species_mean``), each as 1–4 calls 2–20 s apart at −5…+15 dB
  band SNR over a bed of quiet stretches; the truth of every 5-s window from the event boundaries
  (positive when a call covers ``min_overlap_s`` of it, or half of a shorter call), with the cells
  that cannot be judged *ignored*: a call's species where it only touches the window, the call's
  recording's secondary species where the call lies, and a bed stretch's own species.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from scipy.signal import stft

from birdclef.data import audio as audio_io
from birdclef.errors import AudioError, BirdclefError

log = logging.getLogger(__name__)

SAMPLE_RATE_HZ = 32_000
FRAME_S = 0.01
FADE_S = 0.02


@dataclass(frozen=True)
class Source:
    """One focal recording available to a mix: its audio (mono, SAMPLE_RATE_HZ), labels and detections."""

    name: str  # filename in train.csv
    label: str  # primary label
    secondary: tuple[str, ...]
    audio: np.ndarray  # (n,) float32
    events: tuple[tuple[float, float], ...]  # detected calls, (start_s, end_s)
    quiet: tuple[tuple[float, float], ...]  # call-free stretches, (start_s, end_s)


@dataclass(frozen=True)
class Mix:
    audio: np.ndarray  # (soundscape_s * SAMPLE_RATE_HZ,) float32
    truth: np.ndarray  # (n_windows, n_labels) int8 0/1
    ignore: np.ndarray  # (n_windows, n_labels) bool: not scored
    parts: list[dict]  # one row per placed call or bed stretch: kind, filename, label, start_s, end_s, snr_db


def band_db(x: np.ndarray, sr: int = SAMPLE_RATE_HZ, *, lo_hz: float = 1000.0, hi_hz: float = 10000.0
            ) -> np.ndarray:
    """(frames,) energy in dB of the lo–hi band per FRAME_S frame."""
    hop = int(FRAME_S * sr)
    if len(x) < 4 * hop:
        return np.zeros(0, np.float32)
    f, _, z = stft(x, fs=sr, nperseg=4 * hop, noverlap=3 * hop, boundary=None, padded=False)
    band = (f >= lo_hz) & (f <= hi_hz)
    return (10 * np.log10(np.mean(np.abs(z[band]) ** 2, axis=0) + 1e-12)).astype(np.float32)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)))


def detect_events(x: np.ndarray, sr: int = SAMPLE_RATE_HZ, *, threshold_db: float = 10.0, min_s: float = 0.15,
                  max_s: float = 5.0, merge_s: float = 0.3) -> list[tuple[float, float]]:
    """Calls of a recording: runs of frames whose band energy is ``threshold_db`` over the noise floor
    (the 20th percentile), gaps under ``merge_s`` merged, runs under ``min_s`` dropped and runs over
    ``max_s`` cut into pieces of at most ``max_s`` → [(start_s, end_s)], in time order."""
    db = band_db(x, sr)
    if not len(db):
        return []
    loud = db > np.percentile(db, 20) + threshold_db
    gap = int(merge_s / FRAME_S)
    for a, b in _runs(~loud):
        if a > 0 and b < len(loud) and b - a <= gap:
            loud[a:b] = True
    events = []
    for a, b in _runs(loud):
        start, end = a * FRAME_S, b * FRAME_S
        while end - start >= min_s:
            events.append((round(start, 3), round(min(end, start + max_s), 3)))
            start += max_s
    return events


def quiet_stretches(x: np.ndarray, sr: int = SAMPLE_RATE_HZ, *, threshold_db: float = 6.0, guard_s: float = 0.5,
                    min_s: float = 2.0) -> list[tuple[float, float]]:
    """Call-free stretches: at least ``min_s`` long, ``guard_s`` away from any frame ``threshold_db`` over
    the noise floor (a lower bar than :func:`detect_events`, so faint calls stay out of the bed)."""
    db = band_db(x, sr)
    if not len(db):
        return []
    busy = db > np.percentile(db, 20) + threshold_db
    guard = int(guard_s / FRAME_S)
    near = np.convolve(busy.astype(np.float32), np.ones(2 * guard + 1, np.float32), mode="same") > 0
    return [(round(a * FRAME_S, 3), round(b * FRAME_S, 3)) for a, b in _runs(~near) if (b - a) * FRAME_S >= min_s]


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)) + 1e-20))


def _band_rms(x: np.ndarray) -> float:
    db = band_db(x)
    return float(10 ** (np.mean(db) / 20)) if len(db) else _rms(x)


def _faded(x: np.ndarray) -> np.ndarray:
    n = min(int(FADE_S * SAMPLE_RATE_HZ), len(x) // 2)
    if n < 1:
        return x.astype(np.float32)
    ramp = np.linspace(0.0, 1.0, n, dtype=np.float32)
    y = x.astype(np.float32).copy()
    y[:n] *= ramp
    y[-n:] *= ramp[::-1]
    return y


def _cut(src: Source, span: tuple[float, float]) -> np.ndarray:
    a, b = int(span[0] * SAMPLE_RATE_HZ), int(span[1] * SAMPLE_RATE_HZ)
    return src.audio[a:b]


def make_bed(sources: list[Source], rng: np.random.Generator, length: int, rms_dbfs: float
             ) -> tuple[np.ndarray, list[dict]]:
    """``length`` samples of background: quiet stretches of random ``sources`` end to end (each at equal
    loudness, cross-faded) at ``rms_dbfs`` → (audio, the stretches placed: filename, label, start_s, end_s)."""
    pool = [(s, q) for s in sources for q in s.quiet]
    if not pool:
        raise ValueError("no source has a call-free stretch to build a background from")
    out = np.zeros(length, np.float32)
    parts, pos = [], 0
    fade = int(FADE_S * SAMPLE_RATE_HZ)
    while pos < length:
        src, (a, b) = pool[int(rng.integers(len(pool)))]
        piece = _cut(src, (a, b))[: length - pos + fade]
        piece = _faded(piece / _rms(piece))
        out[pos:pos + len(piece)] += piece[: length - pos]
        parts.append({"kind": "bed", "filename": src.name, "label": src.label,
                      "start_s": round(pos / SAMPLE_RATE_HZ, 3), "end_s": round(min(length, pos + len(piece)) / SAMPLE_RATE_HZ, 3),
                      "snr_db": np.nan})
        pos += max(len(piece) - fade, 1)
    return out * np.float32(10 ** (rms_dbfs / 20) / _rms(out)), parts


def n_species(rng: np.random.Generator, *, empty_share: float, species_mean: float) -> int:
    """Species in one soundscape: 0 with probability ``empty_share``, else a zero-truncated Poisson whose
    mean is ``species_mean`` (≥ 1)."""
    if rng.random() < empty_share:
        return 0
    lam = _truncated_poisson_rate(species_mean)
    while True:
        k = int(rng.poisson(lam))
        if k >= 1:
            return k


def _truncated_poisson_rate(mean: float) -> float:
    """λ with λ / (1 − e^−λ) = mean (the mean of a Poisson conditioned on ≥ 1)."""
    if mean <= 1.0:
        return 1e-6
    lo, hi = 1e-6, mean
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if mid / (1 - np.exp(-mid)) < mean else (lo, mid)
    return (lo + hi) / 2


def compose(species: list[list[Source]], bed_sources: list[Source], labels: list[str], rng: np.random.Generator, *,
            soundscape_s: float = 60.0, window_s: float = 5.0, background_dbfs: float = -45.0,
            snr_db: tuple[float, float] = (-5.0, 15.0), calls: tuple[int, int] = (1, 4),
            gap_s: tuple[float, float] = (2.0, 20.0), min_overlap_s: float = 1.0) -> Mix:
    """One soundscape: the bed, then for each entry of ``species`` (the recordings one species may take
    its calls from; one is picked) 1–4 of that recording's detected calls, in their order, ``gap_s``
    apart, each at a band SNR drawn from ``snr_db`` over the bed. See the module docstring for the truth."""
    length = int(soundscape_s * SAMPLE_RATE_HZ)
    n_win = int(round(soundscape_s / window_s))
    index = {label: j for j, label in enumerate(labels)}
    audio, parts = make_bed(bed_sources, rng, length, background_dbfs)
    bed_level = _band_rms(audio)
    truth = np.zeros((n_win, len(labels)), np.int8)
    touched = np.zeros((n_win, len(labels)), bool)
    ignore = np.zeros((n_win, len(labels)), bool)

    def overlaps(a: float, b: float) -> np.ndarray:
        lo = np.arange(n_win) * window_s
        return np.clip(np.minimum(b, lo + window_s) - np.maximum(a, lo), 0, None)

    for p in parts:  # a bed stretch may hold faint calls of its own recording's species: not judged there
        if p["label"] in index:
            ignore[overlaps(p["start_s"], p["end_s"]) > 0, index[p["label"]]] = True
    for candidates in species:
        src = candidates[int(rng.integers(len(candidates)))]
        if not src.events:
            continue
        k = min(len(src.events), int(rng.integers(calls[0], calls[1] + 1)))
        first = int(rng.integers(0, len(src.events) - k + 1))
        chosen = src.events[first:first + k]
        gaps = rng.uniform(*gap_s, size=k - 1)
        total = sum(b - a for a, b in chosen) + float(gaps.sum())
        t = float(rng.uniform(0, max(0.0, soundscape_s - total)))
        for i, span in enumerate(chosen):
            clip = _faded(_cut(src, span))
            start = int(t * SAMPLE_RATE_HZ)
            clip = clip[: max(0, length - start)]
            if len(clip) < int(0.1 * SAMPLE_RATE_HZ):
                break
            snr = float(rng.uniform(*snr_db))
            clip = clip * np.float32(bed_level * 10 ** (snr / 20) / max(_band_rms(clip), 1e-12))
            audio[start:start + len(clip)] += clip
            a, b = start / SAMPLE_RATE_HZ, (start + len(clip)) / SAMPLE_RATE_HZ
            cover = overlaps(a, b)
            j = index[src.label]
            truth[cover >= min(min_overlap_s, 0.5 * (b - a)), j] = 1
            touched[cover > 0, j] = True
            for s in src.secondary:
                if s in index and s != src.label:
                    ignore[cover > 0, index[s]] = True
            parts.append({"kind": "call", "filename": src.name, "label": src.label, "start_s": round(a, 3),
                          "end_s": round(b, 3), "snr_db": round(snr, 2)})
            t = b + (float(gaps[i]) if i < len(gaps) else 0.0)
    ignore |= touched & (truth == 0)  # a call that only grazes a window: neither positive nor negative there
    ignore &= truth == 0
    peak = float(np.max(np.abs(audio))) if len(audio) else 0.0
    if peak > 0.99:
        audio = audio * np.float32(0.99 / peak)
    return Mix(audio, truth, ignore, parts)


def load_sources(recordings: Iterable[tuple[Path, str, str, tuple[str, ...]]], *, max_s: float = 120.0,
                 progress: bool = False) -> list[Source]:
    """(path, name, primary label, secondary labels) per recording → their :class:`Source` (the first
    ``max_s`` seconds at SAMPLE_RATE_HZ, calls and call-free stretches detected). An unreadable
    recording is left out with a logged warning. When no recording has a call-free stretch of 2 s
    (short, busy recordings), stretches of 0.5 s are taken instead. ``progress``: a bar over the recordings."""
    from birdclef.progress import tqdm

    sources = []
    for path, name, label, secondary in tqdm(recordings, desc="soundscape sources", unit="recording",
                                             mininterval=1.0, disable=not progress):
        try:
            x, sr = audio_io.read_audio(path, duration_s=max_s)
        except AudioError as err:
            log.warning("recording %s left out of the soundscapes: %s", name, err)
            continue
        x = audio_io.resample(x, sr, SAMPLE_RATE_HZ).astype(np.float32)
        sources.append(Source(name, label, tuple(secondary), x, tuple(detect_events(x)), tuple(quiet_stretches(x))))
    if sources and not any(src.quiet for src in sources):
        log.warning("no call-free stretch of 2 s in the recordings: the bed uses stretches of 0.5 s")
        sources = [replace(src, quiet=tuple(quiet_stretches(src.audio, guard_s=0.2, min_s=0.5))) for src in sources]
    return sources


def callers(sources: list[Source], *, where: str = "the recordings") -> dict[str, list[Source]]:
    """The sources with a detected call, by species label. Raises :class:`BirdclefError` when no
    source has a call-free stretch (nothing to build a bed from) or none has a detected call."""
    if not any(src.quiet for src in sources):
        raise BirdclefError(f"{where}: no call-free stretch in the recordings to build a bed from")
    by_species: dict[str, list[Source]] = {}
    for src in sources:
        if src.events:
            by_species.setdefault(src.label, []).append(src)
    if not by_species:
        raise BirdclefError(f"{where}: no call detected in any recording")
    return by_species


class SpeciesDeck:
    """Deals species from a shuffled deck of every species in ``species``, shuffled anew when it runs
    out, so each species' recordings spread over several files."""

    def __init__(self, species: Iterable[str], rng: np.random.Generator) -> None:
        self._species, self._rng, self._deck = sorted(species), rng, []

    def deal(self, k: int) -> list[str]:
        """``k`` distinct species (``k`` at most the number of species)."""
        picked: list[str] = []
        while len(picked) < k:
            if not self._deck:
                self._deck = list(self._rng.permutation(self._species))
            sp = self._deck.pop()
            if sp not in picked:
                picked.append(sp)
        return picked


def sparse_soundscapes(sources: list[Source], labels: list[str], rng: np.random.Generator, *, n: int, prefix: str,
                       soundscape_s: float = 60.0, background_dbfs: float = -45.0,
                       snr_db: tuple[float, float] = (-5.0, 15.0), min_overlap_s: float = 1.0,
                       empty_share: float = 0.3, species_mean: float = 1.5, where: str = "the recordings"
                       ) -> Iterator[tuple[str, Mix]]:
    """``n`` soundscapes ``<prefix><i:03d>`` from ``sources`` (calls and bed alike): per file a number
    of species (:func:`n_species`), dealt from a shuffled deck of every species with a detected call
    so each recording spreads over several files, composed by :func:`compose`.

    Raises :class:`BirdclefError` when no source has a call-free stretch or a detected call."""
    by_species = callers(sources, where=where)
    deck = SpeciesDeck(by_species, rng)
    for i in range(n):
        picked = deck.deal(min(len(by_species), n_species(rng, empty_share=empty_share, species_mean=species_mean)))
        yield f"{prefix}{i:03d}", compose([by_species[sp] for sp in picked], sources, labels, rng,
                                          soundscape_s=soundscape_s, background_dbfs=background_dbfs,
                                          snr_db=tuple(snr_db), min_overlap_s=min_overlap_s)


def window_stats(truth: np.ndarray, *, per_file: int) -> dict[str, float]:
    """{positive_share, empty_file_share, median_run}: the share of windows with any positive label, of
    files with none, and the median length (windows) of a class's runs of consecutive positives.
    ``truth``: (n_files * per_file, n_labels) 0/1, files in order."""
    files = truth.reshape(-1, per_file, truth.shape[1])
    runs = [b - a for f in files for c in range(files.shape[2]) for a, b in _runs(f[:, c] > 0)]
    return {"positive_share": float((truth.sum(1) > 0).mean()),
            "empty_file_share": float((files.sum((1, 2)) == 0).mean()),
            "median_run": float(np.median(runs)) if runs else float("nan")}
