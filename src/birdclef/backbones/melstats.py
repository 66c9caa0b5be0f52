"""`melstats`: a backbone that needs no downloaded weights.

Summary statistics of a log-mel spectrogram per window: for each of 64 mel bands, the mean,
standard deviation, maximum and mean absolute frame-to-frame change (a cue for trills and
sweeps). 256-d, deterministic, fast; the demo and tests always have it.
"""
from __future__ import annotations

import numpy as np
import torch
import torchaudio

from birdclef.backbones import BackboneSpec, register

SPEC = BackboneSpec(name="melstats", sample_rate_hz=32_000, window_s=1.0, embedding_dim=256)
N_MELS = 64


class MelStats:
    spec = SPEC

    def __init__(self) -> None:
        self._mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=SPEC.sample_rate_hz, n_fft=1024, hop_length=320, n_mels=N_MELS,
            f_min=150.0, f_max=15_000.0, power=2.0,
        )

    def embed(self, windows: np.ndarray) -> np.ndarray:
        """(n, 32000) float32 → (n, 256) float32."""
        windows = SPEC.check(windows)
        if len(windows) == 0:
            return np.zeros((0, SPEC.embedding_dim), np.float32)
        with torch.inference_mode():
            mel = self._mel(torch.from_numpy(windows))  # (n, mels, frames)
            logmel = torch.log10(mel + 1e-8)
            delta = (logmel[..., 1:] - logmel[..., :-1]).abs().mean(-1)
            feats = torch.cat([logmel.mean(-1), logmel.std(-1), logmel.amax(-1), delta], dim=1)
        return feats.numpy().astype(np.float32)


@register("melstats")
def make_melstats(**_: object) -> MelStats:
    return MelStats()
