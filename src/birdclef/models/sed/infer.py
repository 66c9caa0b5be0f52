"""A soundscape → its clips → one probability row per submission window.

A file of duration d gets :func:`birdclef.data.competition.n_windows` (d, ``window_s``) rows (60 s → 12),
as every submission does. It is decoded once, resampled to the model's rate, zero-padded to a
whole number of ``clip_s`` clips and run as one batch: all 12 windows of a one-minute file at
once (12 clips of 5 s, or 3 of 20 s whose frames are pooled per 5-s window, see
:func:`birdclef.models.sed.model.window_logits`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from birdclef.data import audio
from birdclef.data.competition import n_windows
from birdclef.models.sed.config import SedConfig
from birdclef.models.sed.model import SedModel, sigmoid, window_logits


def file_clips(path: str | Path, config: SedConfig) -> tuple[np.ndarray, int]:
    """(clips (n_clips, clip_samples) float32, n_windows) of one soundscape."""
    x, sr = audio.read_audio(path)
    x = audio.resample(x, sr, config.sample_rate_hz)
    return waveform_clips(x, config)


def waveform_clips(x: np.ndarray, config: SedConfig) -> tuple[np.ndarray, int]:
    """A waveform at the model's rate → (clips (n_clips, clip_samples), n_windows of the submission)."""
    count = n_windows(len(x) / config.sample_rate_hz, config.window_s)
    n_clips = int(np.ceil(count / config.windows_per_clip))
    padded = np.zeros(n_clips * config.clip_samples, np.float32)
    padded[:min(len(x), len(padded))] = x[:len(padded)]
    return padded.reshape(n_clips, config.clip_samples), count


def outputs_to_windows(frame_logits: np.ndarray, attention: np.ndarray, config: SedConfig, count: int) -> np.ndarray:
    """Model outputs of a file's clips → (count, n_classes) probabilities."""
    return sigmoid(window_logits(frame_logits, attention, config.windows_per_clip)[:count])


@torch.inference_mode()
def torch_outputs(model: SedModel, clips: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n, clip_samples) → (clip logits (n, k), frame logits (n, t', k), attention (n, t', k)) with torch."""
    model.eval()
    device = next(model.parameters()).device
    clip, frame, att = model(torch.from_numpy(np.ascontiguousarray(clips, np.float32)).to(device))
    return clip.float().cpu().numpy(), frame.float().cpu().numpy(), att.float().cpu().numpy()


def predict_file(model: SedModel, config: SedConfig, path: str | Path) -> np.ndarray:
    """One soundscape → (n_windows, n_classes) probabilities, with torch."""
    clips, count = file_clips(path, config)
    _, frame, att = torch_outputs(model, clips)
    return outputs_to_windows(frame, att, config, count)


Predictor = Callable[[str | Path], np.ndarray]  # a soundscape's path → (n_windows, n_classes) probabilities
