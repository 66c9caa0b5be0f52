"""Rendering: a planned recording or soundscape → audio (calls and speech over a background), and
the per-window labels of a soundscape's calls."""
from __future__ import annotations

import numpy as np
from scipy.signal import butter, fftconvolve, sosfilt

from birdclef.data.demo.calls import _call
from birdclef.data.demo.common import (LABEL_OVERLAP_S, MIN_CALL_S, SAMPLE_RATE_HZ, SPEECH_GUARD_S, WINDOW_S,
                                       Conditions, _rng)
from birdclef.data.demo.noise import _background
from birdclef.data.demo.plan import _Recording, _Soundscape
from birdclef.data.demo.species import _Species
from birdclef.errors import BirdclefError


def _db(x: float) -> float:
    return float(10 ** (x / 20))


def _mix_in(out: np.ndarray, wave: np.ndarray, start: int) -> None:
    stop = min(len(out), start + len(wave))
    out[start:stop] += wave[:stop - start]


def _voiced_extent(wave: np.ndarray) -> tuple[int, int]:
    """First and last sample of 10-ms frames within 40 dB of the loudest frame."""
    hop = SAMPLE_RATE_HZ // 100
    frames = np.sqrt(np.mean(wave[: len(wave) // hop * hop].reshape(-1, hop) ** 2, axis=1))
    active = np.nonzero(frames > frames.max() * 0.01)[0]
    if frames.max() <= 0 or len(active) == 0:
        raise BirdclefError("speech synthesis returned silence")
    return int(active[0] * hop), int((active[-1] + 1) * hop)


def _finish(mix: np.ndarray) -> np.ndarray:
    """Scale down (never up) so the peak stays below 0.9; SNRs are unchanged."""
    peak = float(np.max(np.abs(mix)))
    return (mix * (0.9 / peak) if peak > 0.9 else mix).astype(np.float32)


def _place_speech(speech: np.ndarray, level: float) -> np.ndarray:
    a, b = _voiced_extent(speech)
    voiced = speech[a:b]
    return voiced / (np.sqrt(np.mean(voiced ** 2)) + 1e-12) * level


def _at_distance(call: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A unit-RMS call as a distant microphone hears it: high frequencies absorbed (first-order
    low-pass at 4-10 kHz, so high-pitched calls arrive weaker) and a reverberant tail (decaying
    noise, RT60 0.2-0.8 s, 30-100 % of the direct level). Longer than `call` by the tail."""
    sr = SAMPLE_RATE_HZ
    direct = sosfilt(butter(1, rng.uniform(4_000, 10_000), btype="lowpass", fs=sr, output="sos"), call)
    rt60_s = rng.uniform(0.2, 0.8)
    t = np.arange(int(rt60_s * sr)) / sr
    response = rng.standard_normal(len(t)) * 10 ** (-3 * t / rt60_s)
    tail = fftconvolve(direct, response)
    tail *= rng.uniform(0.3, 1.0) * np.sqrt(np.mean(direct ** 2)) / (np.sqrt(np.mean(tail ** 2)) + 1e-12)
    tail[: len(direct)] += direct
    return tail.astype(np.float32)


def _render_recording(rec: _Recording, speech: np.ndarray | None, seed: int, cond: Conditions = Conditions()
                      ) -> tuple[np.ndarray, tuple[float, float] | None]:
    """(n_samples,) float32 recording and the (start_s, end_s) of its inserted speech, if any."""
    sr = SAMPLE_RATE_HZ
    rng = _rng(seed, 4, rec.index)
    bg_rms = _db(rng.uniform(-45, -30))
    duration_s = rec.duration_s
    if speech is not None:
        voice = _place_speech(speech, bg_rms * _db(rng.uniform(12, 22)))
        offset_s = rng.uniform(0.2, 0.6)
        # Keep at least 2 s for calls beside the spoken intro.
        duration_s = max(duration_s, offset_s + len(voice) / sr + SPEECH_GUARD_S + 2.0)
    n = int(round(duration_s * sr))
    mix = _background(rng, n) * bg_rms
    lo_s, hi_s, span = 0.0, n / sr, None
    if speech is not None:
        start_s = offset_s if rec.speech_at_start else hi_s - offset_s - len(voice) / sr
        start = int(round(start_s * sr))
        _mix_in(mix, voice, start)
        span = (start / sr, (start + len(voice)) / sr)
        if rec.speech_at_start:
            lo_s = span[1] + SPEECH_GUARD_S
        else:
            hi_s = span[0] - SPEECH_GUARD_S
    snr_db = rng.uniform(-5, 20)
    t = lo_s + rng.uniform(0, 0.5)
    placed = 0
    while hi_s - t >= MIN_CALL_S or placed == 0:
        call = _call(rec.species, rng, max_s=max(hi_s - t, 0.3))
        _mix_in(mix, call * bg_rms * _db(snr_db + rng.normal(0, 1.5)), int(t * sr))
        t += len(call) / sr + rng.uniform(*cond.call_gap_s)
        placed += 1
    for other in rec.secondary:  # quieter calls of the secondary species
        for _ in range(int(rng.integers(1, 3))):
            call = _call(other, rng, max_s=hi_s - lo_s)
            start_s = rng.uniform(lo_s, max(hi_s - len(call) / sr, lo_s))
            level = _db(max(snr_db - rng.uniform(*cond.secondary_drop_db), -10.0))
            _mix_in(mix, call * bg_rms * level, int(start_s * sr))
    return _finish(mix), span


def _render_soundscape(sc: _Soundscape, taxonomy: list[_Species], speech: np.ndarray | None,
                       soundscape_s: float, seed: int, cond: Conditions = Conditions()
                       ) -> tuple[np.ndarray, list[tuple[int, float, float]], tuple[float, float] | None]:
    """(n_samples,) float32 soundscape, its calls as (class index, start_s, end_s), speech span.

    A call's span is its direct sound; with ``cond.distance`` its reverberant tail rings on past it."""
    sr = SAMPLE_RATE_HZ
    rng = _rng(seed, 5, sc.index)
    far = _rng(seed, 6, sc.index)  # its own stream: the "demo" conditions draw exactly what they always did
    n = int(round(soundscape_s * sr))
    bg_rms = _db(rng.uniform(-42, -30))
    mix = _background(rng, n) * bg_rms
    blocked: list[tuple[float, float]] = []
    span = None
    if speech is not None:
        voice = _place_speech(speech, bg_rms * _db(rng.uniform(8, 16)))
        start = int(rng.uniform(3.0, soundscape_s - len(voice) / sr - 3.0) * sr)
        _mix_in(mix, voice, start)
        span = (start / sr, (start + len(voice)) / sr)
        blocked.append((span[0] - SPEECH_GUARD_S, span[1] + SPEECH_GUARD_S))
    events = []
    lo, hi = (int(v) for v in cond.species_per_soundscape)
    n_species = int(rng.integers(min(lo, len(taxonomy)), min(hi, len(taxonomy)) + 1))
    chosen = rng.choice(len(taxonomy), n_species, replace=False).tolist()
    for c in sorted({*chosen, *sc.extra_species}):  # extra_species: classes this soundscape must hold (2026)
        center_s = rng.uniform(0, soundscape_s)
        for _ in range(int(rng.integers(1, 6))):
            call = _call(taxonomy[c], rng, max_s=3.0)
            length_s = len(call) / sr
            for _attempt in range(10):
                start_s = float(np.clip(center_s + rng.normal(0, 8.0), 0, soundscape_s - length_s))
                if all(start_s + length_s <= a or start_s >= b for a, b in blocked):
                    break
            else:
                continue
            start = int(round(start_s * sr))
            gain = _db(rng.uniform(*cond.soundscape_snr_db))
            _mix_in(mix, (_at_distance(call, far) if cond.distance else call) * bg_rms * gain, start)
            events.append((c, start / sr, (start + len(call)) / sr))
    return _finish(mix), events, span


def _window_labels(stem: str, events: list[tuple[int, float, float]], n_classes: int,
                   soundscape_s: float) -> tuple[list[str], np.ndarray]:
    """Row ids `<stem>_<end_s>` and an (n_windows, n_classes) 0/1 int matrix."""
    ends = np.arange(WINDOW_S, int(soundscape_s) + 1, WINDOW_S)
    labels = np.zeros((len(ends), n_classes), np.int64)
    for c, a, b in events:
        overlap = np.minimum(b, ends) - np.maximum(a, ends - WINDOW_S)
        labels[overlap >= LABEL_OVERLAP_S - 1e-9, c] = 1
    return [f"{stem}_{int(e)}" for e in ends], labels
