"""Backgrounds: rain, wind and an insect hum over a sensor floor, mixed at random."""
from __future__ import annotations

import numpy as np
from scipy.signal import butter, sosfilt

from birdclef.data.demo.common import SAMPLE_RATE_HZ


def _rms(x: np.ndarray) -> float:
    """Root mean square, estimated on every 8th sample (backgrounds are long and stationary)."""
    sub = x[::8] if len(x) >= 8_000 else x
    return float(np.sqrt(np.mean(np.square(sub, dtype=np.float64)))) + 1e-12


def _background(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n,) float32 at unit RMS: a random mix of rain, wind and a constant insect hum over a floor."""
    sr = SAMPLE_RATE_HZ
    white = rng.standard_normal(n, dtype=np.float32)

    def filt(order: int, cutoff, btype: str) -> np.ndarray:
        sos = butter(order, cutoff, btype=btype, fs=sr, output="sos").astype(np.float32)
        out = sosfilt(sos, white)
        return out / _rms(out)

    def slow(n_parts: int, lo_hz: float, hi_hz: float) -> np.ndarray:
        """A smooth random modulation, computed at 100 Hz and interpolated (cheap)."""
        t = np.arange(n // 320 + 2) / 100.0
        f = rng.uniform(lo_hz, hi_hz, n_parts)
        phase = rng.uniform(0, 2 * np.pi, n_parts)
        curve = np.sin(2 * np.pi * f[:, None] * t + phase[:, None]).mean(axis=0)
        return np.interp(np.arange(n) / sr, t, curve).astype(np.float32)

    # Rain: broadband hiss plus droplet clicks (impulses ringing through a resonant band).
    drops = np.zeros(n, np.float32)
    n_drops = rng.poisson(rng.uniform(15, 80) * n / sr)
    drops[rng.integers(0, n, n_drops)] = rng.lognormal(0, 0.8, n_drops) * rng.choice([-1, 1], n_drops)
    drops = sosfilt(butter(2, [1_500, 7_000], btype="bandpass", fs=sr, output="sos").astype(np.float32), drops)
    rain = filt(1, [300, 9_000], "bandpass") + rng.uniform(0.5, 2.0) * drops / _rms(drops)
    # Wind: low-passed noise with slow gusts.
    wind = filt(4, rng.uniform(150, 600), "lowpass") * np.clip(0.6 + 0.8 * slow(3, 0.05, 0.5), 0.1, None)
    # A constant high-pitched insect chorus: a narrow noise band with a tonal core.
    f_hum = rng.uniform(5_000, 9_000)
    core = np.sin((2 * np.pi * f_hum / sr) * np.arange(n) % (2 * np.pi)).astype(np.float32)
    hum = (filt(2, [f_hum * 0.97, f_hum * 1.03], "bandpass") + core) * (1 + 0.3 * slow(2, 0.1, 1.0))
    weights = np.sqrt(rng.dirichlet([0.7, 0.7, 0.7])).astype(np.float32)
    mix = weights[0] * rain / _rms(rain) + weights[1] * wind / _rms(wind) + weights[2] * 0.5 * hum / _rms(hum)
    mix += 0.1 * white  # sensor floor
    return (mix / _rms(mix)).astype(np.float32)
