"""Synthetic calls: one bout of a species' call shape (tones, sweeps, trills, pulses, buzzes, croaks)."""
from __future__ import annotations

import numpy as np
from scipy.signal import butter, sosfilt

from birdclef.data.demo.common import MIN_CALL_S, SAMPLE_RATE_HZ
from birdclef.data.demo.species import FAMILIES, _Species


def _fade(n: int, fade_s: float = 0.01) -> np.ndarray:
    """(n,) envelope with raised-cosine ramps at both ends, so notes don't click."""
    env = np.ones(n, np.float32)
    k = min(int(fade_s * SAMPLE_RATE_HZ), n // 2)
    if k > 0:
        ramp = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, k, dtype=np.float32))
        env[:k] = ramp
        env[n - k:] = ramp[::-1]
    return env


def _harmonic(freq: np.ndarray, amps: list[float]) -> np.ndarray:
    """Sum of harmonics of an instantaneous-frequency track (Hz, per sample); above 14 kHz dropped."""
    phase = 2 * np.pi * np.cumsum(freq) / SAMPLE_RATE_HZ
    out = np.zeros(len(freq), np.float64)
    for k, a in enumerate(amps, start=1):
        if a > 0:
            out += a * np.sin(k * phase) * (k * freq < 14_000)
    return out


def _bandnoise(rng: np.random.Generator, n: int, lo_hz: float, hi_hz: float, order: int = 2) -> np.ndarray:
    nyq = SAMPLE_RATE_HZ / 2
    lo, hi = max(lo_hz, 20.0), min(hi_hz, nyq * 0.95)
    sos = butter(order, [lo, hi], btype="bandpass", fs=SAMPLE_RATE_HZ, output="sos")
    return sosfilt(sos, rng.standard_normal(n))


def _notes(note_fn, n_notes: int, note_s: float, gap_s: float) -> np.ndarray:
    gap = np.zeros(int(gap_s * SAMPLE_RATE_HZ))
    parts = []
    for i in range(n_notes):
        n = max(int(note_s * SAMPLE_RATE_HZ), 64)
        parts.append(note_fn(i, n) * _fade(n))
        if i < n_notes - 1:
            parts.append(gap)
    return np.concatenate(parts)


def _call(sp: _Species, rng: np.random.Generator, max_s: float) -> np.ndarray:
    """One call (a bout of notes) of species `sp`: (n_samples,) float32 at unit RMS, <= max_s long."""
    pitch = np.exp(rng.normal(0, 0.03))
    p = {}
    for key, value in sp.params.items():
        if key in ("f0_hz", "fc_hz", "formant_hz"):
            p[key] = value * pitch
        elif key.endswith("_s"):
            p[key] = value * np.exp(rng.normal(0, 0.12))
        elif key in ("rate_hz", "am_hz", "vib_hz", "chirp_hz"):
            p[key] = value * np.exp(rng.normal(0, 0.08))
        else:
            p[key] = value
    bout_s = min(max(p["bout_s"], MIN_CALL_S), max_s)
    sr = SAMPLE_RATE_HZ

    def n_notes(note_s: float, gap_s: float) -> tuple[int, float]:
        n = int(np.ceil((bout_s + gap_s) / (note_s + gap_s)))
        while n > 1 and n * note_s + (n - 1) * gap_s > max_s:
            n -= 1
        return n, min(note_s, max_s)

    fam = sp.family
    if fam == "sweep":
        count, note_s = n_notes(p["note_s"], p["gap_s"])

        def note(_i, n):
            t = np.arange(n) / n
            return _harmonic(p["f0_hz"] * p["ratio"] ** t, [1.0, p["h2"]])
        wave = _notes(note, count, note_s, p["gap_s"])
    elif fam == "tone":
        count, note_s = n_notes(p["note_s"], p["gap_s"])

        def note(i, n):
            t = np.arange(n) / sr
            f = p["f0_hz"] * (1 + p["step"]) ** i * (1 + p["vib_depth"] * np.sin(2 * np.pi * p["vib_hz"] * t))
            return _harmonic(f, [1.0, p["h2"], p["h3"]])
        wave = _notes(note, count, note_s, p["gap_s"])
    elif fam == "croak":
        count, note_s = n_notes(p["note_s"], p["gap_s"])
        harm = [(1 / k ** 0.7) * (0.3 + np.exp(-(((k * p["f0_hz"]) - p["formant_hz"]) / 600) ** 2))
                for k in range(1, 13)]

        def note(_i, n):
            t = np.arange(n) / sr
            pulses = (0.5 + 0.5 * np.sin(2 * np.pi * p["am_hz"] * t)) ** 2
            return _harmonic(np.full(n, p["f0_hz"]), harm) * pulses
        wave = _notes(note, count, note_s, p["gap_s"])
    else:
        n = int(bout_s * sr)
        t = np.arange(n) / sr
        if fam == "trill":
            f = p["f0_hz"] * (1 + p["glide"] * t / bout_s)
            env = np.abs(np.sin(np.pi * p["rate_hz"] * t)) ** (2 * p["sharp"])
            wave = _harmonic(f, [1.0, 0.15]) * env
        elif fam == "pulse":
            noise = _bandnoise(rng, n, p["fc_hz"] * (1 - p["bw"] / 2), p["fc_hz"] * (1 + p["bw"] / 2))
            width = max(int(p["pulse_s"] * sr), 8)
            gate = np.zeros(n)
            for start in np.arange(0, n - width, sr / p["rate_hz"]).astype(int):
                gate[start:start + width] = np.hanning(width)
            wave = noise * gate
        elif fam == "buzz":
            half_bw = p["fc_hz"] * p["bw"] / 2
            noise = _bandnoise(rng, n, p["fc_hz"] - half_bw, p["fc_hz"] + half_bw)
            noise /= np.std(noise) + 1e-12
            tone = np.sqrt(2) * np.sin(2 * np.pi * p["fc_hz"] * t)
            am = 1 - p["am_depth"] * (0.5 + 0.5 * np.sin(2 * np.pi * p["am_hz"] * t))
            chirp = np.clip(2 * np.sin(2 * np.pi * p["chirp_hz"] * t) + 1, 0, 1) if p["chirp_hz"] > 0 else 1.0
            wave = (noise + 0.4 * tone) * am * chirp
        else:
            raise ValueError(f"unknown call family {fam!r}; known: {FAMILIES}")
        wave = wave * _fade(n, 0.02)
    rms = np.sqrt(np.mean(wave ** 2)) + 1e-12
    return (wave / rms).astype(np.float32)
