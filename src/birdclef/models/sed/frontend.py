"""Waveform → log-mel spectrogram, with torchaudio, on whatever device the module is on.

(b, n_samples) float32 at ``config.sample_rate_hz`` → (b, 1, n_mels, n_frames), in dB below each
clip's loudest bin (``top_db`` kept), then standardised per clip (zero mean, unit variance over
the clip's bins), so a recording's gain does not matter. ``n_frames = 1 + n_samples // hop_length``.

The front end is not part of the exported ONNX model (the ONNX exporter has no complex STFT);
the exported network takes this module's output, and inference computes it with the same module.
"""
from __future__ import annotations

import torch
from torch import nn

from birdclef.models.sed.config import SedConfig


class MelFrontEnd(nn.Module):
    def __init__(self, config: SedConfig):
        super().__init__()
        import torchaudio

        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=config.sample_rate_hz, n_fft=config.n_fft, hop_length=config.hop_length,
            n_mels=config.n_mels, f_min=config.f_min_hz, f_max=config.f_max_hz, power=2.0)
        self.to_db = torchaudio.transforms.AmplitudeToDB(stype="power", top_db=config.top_db)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """(b, n_samples) → (b, 1, n_mels, n_frames) float32."""
        # (b, 1, n) in, so the mel is (b, 1, mels, frames): AmplitudeToDB then takes top_db below each
        # clip's own maximum (on a 3-d input it would take one maximum over the whole batch)
        with torch.autocast(device_type=wave.device.type, enabled=False):
            x = self.to_db(self.mel(wave.float()[:, None]))
            mean = x.mean(dim=(2, 3), keepdim=True)
            std = x.std(dim=(2, 3), keepdim=True)
            return (x - mean) / (std + 1e-5)


def n_mel_frames(n_samples: int, hop_length: int) -> int:
    """Mel frames of a clip (torchaudio centres its frames): 1 + n_samples // hop_length."""
    return 1 + n_samples // hop_length
