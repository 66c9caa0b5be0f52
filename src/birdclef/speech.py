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


CHUNK = 512  # samples per Silero step at 16 kHz (32 ms)
MIN_SEGMENT_CHUNKS = 156  # ~5 s: the shortest piece a signal is cut into for batching


def speech_probabilities(x16: np.ndarray) -> np.ndarray:
    """Silero's speech probability per 32-ms chunk of a 16-kHz signal (n,) → (ceil(n / 512),).

    The signal is cut into up to 16 pieces of at least ~5 s that run side by side as one batch
    (the model is recurrent, so a sequential pass makes one call per chunk): ~4.5× faster, at
    the cost of re-warming the state at each cut (a few chunks).
    """
    import torch

    model = _model()
    n_chunks = -(-len(x16) // CHUNK)
    pieces = int(np.clip(n_chunks // MIN_SEGMENT_CHUNKS, 1, 16))
    per_piece = -(-n_chunks // pieces)
    padded = np.zeros(pieces * per_piece * CHUNK, np.float32)
    padded[: len(x16)] = x16
    batch = torch.from_numpy(padded.reshape(pieces, per_piece * CHUNK))
    out = np.empty((pieces, per_piece), np.float32)
    with _LOCK, torch.inference_mode():
        model.reset_states()
        for i in range(per_piece):
            out[:, i] = model(batch[:, i * CHUNK:(i + 1) * CHUNK], VAD_SAMPLE_RATE_HZ).numpy()[:, 0]
        model.reset_states()
    return out.reshape(-1)[:n_chunks]


def _intervals(prob: np.ndarray, threshold: float, *, min_speech_s: float = 0.25, min_silence_s: float = 0.1,
               pad_s: float = 0.03) -> list[tuple[float, float]]:
    """Hysteresis over chunk probabilities (Silero's rule: on at ``threshold``, off below
    ``threshold - 0.15`` for ``min_silence_s``) → padded, merged (start_s, end_s) intervals."""
    step = CHUNK / VAD_SAMPLE_RATE_HZ
    off = max(threshold - 0.15, 0.01)
    spans, start, quiet = [], None, 0
    for i, p in enumerate(prob):
        if start is None:
            if p >= threshold:
                start, quiet = i, 0
        elif p < off:
            quiet += 1
            if quiet * step >= min_silence_s:
                spans.append((start, i - quiet + 1))
                start = None
        else:
            quiet = 0
    if start is not None:
        spans.append((start, len(prob)))
    merged: list[tuple[float, float]] = []
    for a, b in spans:
        if (b - a) * step < min_speech_s:
            continue
        a_s, b_s = max(0.0, a * step - pad_s), min(len(prob) * step, b * step + pad_s)
        if merged and a_s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], b_s)
        else:
            merged.append((a_s, b_s))
    return merged


def speech_intervals(x: np.ndarray, sr: int, *, threshold: float = 0.5) -> list[tuple[float, float]]:
    """Speech in a mono signal (n,) at ``sr`` → [(start_s, end_s), ...] sorted.

    The signal is resampled to 16 kHz with a band-limited filter first (Silero expects it).
    """
    x16 = resample(x, sr, VAD_SAMPLE_RATE_HZ)
    if len(x16) < CHUNK:
        return []
    return _intervals(speech_probabilities(x16), threshold)


def speech_fraction(intervals: list[tuple[float, float]], *, starts_s: np.ndarray, length_s: float) -> np.ndarray:
    """Fraction of each frame [start, start + length_s) covered by speech → (n_frames,) float32."""
    starts_s = np.asarray(starts_s, dtype=np.float64)
    covered = np.zeros(len(starts_s))
    for a, b in intervals:
        overlap = np.clip(np.minimum(starts_s + length_s, b) - np.maximum(starts_s, a), 0, None)
        covered += overlap
    return np.clip(covered / length_s, 0, 1).astype(np.float32)
