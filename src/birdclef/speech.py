"""Human speech detection with Silero VAD (weights ship in the silero-vad wheel: offline).

Recordings from xeno-canto and iNaturalist often start with a spoken announcement; the
seed recipe trains only on segments free of speech.
"""
from __future__ import annotations

import threading

import numpy as np

from birdclef.audio import resample

VAD_SAMPLE_RATE_HZ = 16_000
_LOCK = threading.Lock()
_MODEL = None


def _model():
    """Load the Silero JIT model once per process.

    ``import silero_vad`` calls ``torch.set_num_threads(1)`` for the whole process; the
    caller's thread count is restored so the rest of the pipeline keeps its cores.
    """
    global _MODEL
    with _LOCK:
        if _MODEL is None:
            import torch

            threads = torch.get_num_threads()
            from silero_vad import load_silero_vad

            torch.set_num_threads(threads)
            _MODEL = load_silero_vad(onnx=False)
    return _MODEL


def speech_intervals(x: np.ndarray, sr: int, *, threshold: float = 0.5) -> list[tuple[float, float]]:
    """Speech in a mono signal (n,) at ``sr`` → [(start_s, end_s), ...] sorted.

    The signal is resampled to 16 kHz with a band-limited filter first (Silero expects it).
    """
    import torch
    from silero_vad import get_speech_timestamps

    model = _model()
    x16 = resample(x, sr, VAD_SAMPLE_RATE_HZ)
    if len(x16) < 512:
        return []
    with torch.inference_mode():
        stamps = get_speech_timestamps(
            torch.from_numpy(np.ascontiguousarray(x16)), model, threshold=threshold,
            sampling_rate=VAD_SAMPLE_RATE_HZ,
        )
    model.reset_states()
    return [(s["start"] / VAD_SAMPLE_RATE_HZ, s["end"] / VAD_SAMPLE_RATE_HZ) for s in stamps]


def speech_fraction(intervals: list[tuple[float, float]], *, starts_s: np.ndarray, length_s: float) -> np.ndarray:
    """Fraction of each frame [start, start + length_s) covered by speech → (n_frames,) float32."""
    starts_s = np.asarray(starts_s, dtype=np.float64)
    covered = np.zeros(len(starts_s))
    for a, b in intervals:
        overlap = np.clip(np.minimum(starts_s + length_s, b) - np.maximum(starts_s, a), 0, None)
        covered += overlap
    return np.clip(covered / length_s, 0, 1).astype(np.float32)
