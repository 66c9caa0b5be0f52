"""Human speech detection with Silero VAD (weights ship in the silero-vad wheel: offline).

Recordings from xeno-canto and iNaturalist often start or end with a spoken announcement; the
seed recipe trains only on segments free of speech. Silero also takes some bird song for
speech; benchmarks/vad.md measures how much per setting (``RECOMMENDED_*`` below).
"""
from __future__ import annotations

import threading

import numpy as np

from birdclef.data.audio import resample

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

# speech_intervals' defaults: Silero's own (what the seed recipe used)
THRESHOLD = 0.5
MIN_SPEECH_S = 0.25
# The setting benchmarks/vad.md chose for training recordings: it still finds >= 90 % of
# spoken announcements (real and synthetic) while taking ~9x less bird song for speech
# (0.55 % of 1-s frames of real recordings, from 5 %). Looking only at a recording's edges
# gained little more and missed an announcement 20-30 s before the end, hence None.
RECOMMENDED_THRESHOLD = 0.9
RECOMMENDED_MIN_SPEECH_S = 0.5
RECOMMENDED_EDGE_S: float | None = None


def speech_probabilities(x16: np.ndarray) -> np.ndarray:
    """Silero's speech probability per 32-ms chunk of a 16-kHz signal (n,) → (ceil(n / 512),).

    The signal is cut into up to 16 pieces of at least ~5 s that run side by side as one batch
    (the model is recurrent, so a sequential pass makes one call per chunk): ~4.5× faster, at
    the cost of re-warming the state at each cut (a few chunks).

    Torch runs these calls on one thread (the caller's count is restored after): each is far too
    small to share, and with every core busy elsewhere a second thread's spin-waiting made them
    ~6× slower (benchmarks/tests.md, issue 33).
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
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            model.reset_states()
            for i in range(per_piece):
                out[:, i] = model(batch[:, i * CHUNK:(i + 1) * CHUNK], VAD_SAMPLE_RATE_HZ).numpy()[:, 0]
            model.reset_states()
        finally:
            torch.set_num_threads(threads)
    return out.reshape(-1)[:n_chunks]


def edge_spans(duration_s: float, edge_s: float | None) -> list[tuple[float, float]]:
    """The parts of a recording ``duration_s`` long searched for speech: its first and last
    ``edge_s`` seconds (one span when they meet), or all of it when ``edge_s`` is None.

    Announcements usually sit at the start or end of a recording; looking only there takes less
    bird song for speech, but misses an announcement elsewhere (benchmarks/vad.md).
    """
    if edge_s is not None and edge_s < 0:
        raise ValueError(f"edge_s must be >= 0 or None, got {edge_s!r}")
    if edge_s is None or 2 * edge_s >= duration_s:
        return [(0.0, float(duration_s))]
    return [(0.0, float(edge_s)), (float(duration_s - edge_s), float(duration_s))]


def _intervals(prob: np.ndarray, threshold: float, *, min_speech_s: float = MIN_SPEECH_S, min_silence_s: float = 0.1,
               pad_s: float = 0.03, within: list[tuple[float, float]] | None = None) -> list[tuple[float, float]]:
    """Hysteresis over chunk probabilities (Silero's rule: on at ``threshold``, off below
    ``threshold - 0.15`` for ``min_silence_s``) → padded, merged (start_s, end_s) intervals.

    ``prob``: (n_chunks,), one per 32-ms chunk from time 0. Speech shorter than ``min_speech_s``
    is dropped. ``within``: (start_s, end_s) spans, in the same time frame, sorted; intervals are
    cut to them and what lies outside is dropped (None: keep everything).
    """
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
    if within is not None:
        merged = [(max(a, lo), min(b, hi)) for a, b in merged for lo, hi in within if min(b, hi) > max(a, lo)]
    return merged


def speech_intervals(x: np.ndarray, sr: int, *, threshold: float = THRESHOLD, min_speech_s: float = MIN_SPEECH_S,
                     edge_s: float | None = None, offset_s: float = 0.0,
                     recording_s: float | None = None) -> list[tuple[float, float]]:
    """Speech in a mono signal (n,) at ``sr`` → [(start_s, end_s), ...] sorted, seconds from
    the start of ``x``.

    The signal is resampled to 16 kHz with a band-limited filter first (Silero expects it).
    Speech is where Silero's probability reaches ``threshold`` for at least ``min_speech_s``.
    ``edge_s``: look only in the first and last ``edge_s`` seconds of the recording (None: all
    of it). When ``x`` is a piece of a longer recording, ``offset_s`` is where the piece starts
    in it and ``recording_s`` its duration, so the edges are the recording's, not the piece's
    (default: ``x`` is the whole recording).
    """
    x16 = resample(x, sr, VAD_SAMPLE_RATE_HZ)
    if len(x16) < CHUNK:
        return []
    within = None
    if edge_s is not None:
        total_s = len(x) / sr if recording_s is None else recording_s
        within = [(a - offset_s, b - offset_s) for a, b in edge_spans(total_s, edge_s)]
        if not any(b > 0 and a < len(x) / sr for a, b in within):
            return []  # the piece lies wholly between the edges: no VAD pass needed
    return _intervals(speech_probabilities(x16), threshold, min_speech_s=min_speech_s, within=within)


def speech_fraction(intervals: list[tuple[float, float]], *, starts_s: np.ndarray, length_s: float) -> np.ndarray:
    """Fraction of each frame [start, start + length_s) covered by speech → (n_frames,) float32."""
    starts_s = np.asarray(starts_s, dtype=np.float64)
    covered = np.zeros(len(starts_s))
    for a, b in intervals:
        overlap = np.clip(np.minimum(starts_s + length_s, b) - np.maximum(starts_s, a), 0, None)
        covered += overlap
    return np.clip(covered / length_s, 0, 1).astype(np.float32)
