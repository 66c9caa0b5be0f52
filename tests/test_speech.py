"""Silero VAD on real (synthesized) speech: found where it is, not in noise, and the batched
pass agrees with Silero's own sequential one."""
import numpy as np
import pytest
import torch

from birdclef import speech
from birdclef.tts import synthesize

SENTENCE = "Recorded on the twentieth of April near the river, about seven in the morning, by Ana."


@pytest.fixture(scope="module")
def scene():
    rng = np.random.default_rng(3)
    sr = 16000
    x = (0.01 * rng.standard_normal(sr * 40)).astype(np.float32)
    words = synthesize(SENTENCE, sample_rate_hz=sr)
    start = 22 * sr  # not at a piece boundary of the batched pass
    x[start:start + len(words)] += 0.5 * words
    return x, sr, (22.0, 22.0 + len(words) / sr)


def _overlap(intervals, span):
    return sum(max(0.0, min(b, span[1]) - max(a, span[0])) for a, b in intervals)


def test_speech_is_found_where_it_is(scene):
    x, sr, span = scene
    found = speech.speech_intervals(x, sr)
    assert found
    assert _overlap(found, span) >= 0.8 * (span[1] - span[0])
    outside = sum(b - a for a, b in found) - _overlap(found, span)
    assert outside < 0.5


def test_noise_and_silence_have_no_speech():
    rng = np.random.default_rng(4)
    assert speech.speech_intervals((0.05 * rng.standard_normal(16000 * 20)).astype(np.float32), 16000) == []
    assert speech.speech_intervals(np.zeros(16000 * 10, np.float32), 16000) == []
    assert speech.speech_intervals(np.zeros(100, np.float32), 16000) == []


def test_resampled_input_gives_the_same_answer(scene):
    x, sr, span = scene
    from birdclef.audio import resample

    found48 = speech.speech_intervals(resample(x, sr, 48000), 48000)
    assert _overlap(found48, span) >= 0.8 * (span[1] - span[0])


def test_batched_pass_agrees_with_silero_sequential(scene):
    x, _, _ = scene
    from silero_vad import get_speech_timestamps

    model = speech._model()
    model.reset_states()
    ref = get_speech_timestamps(torch.from_numpy(x), model, sampling_rate=16000, return_seconds=True)
    model.reset_states()
    ref = [(r["start"], r["end"]) for r in ref]
    ours = speech.speech_intervals(x, 16000)
    union = sum(b - a for a, b in ref) + sum(b - a for a, b in ours)
    inter = sum(_overlap(ours, r) for r in ref)
    assert inter / (union - inter) > 0.8  # intersection over union of the speech found


def test_speech_fraction_per_frame():
    frac = speech.speech_fraction([(0.5, 1.5)], starts_s=np.array([0.0, 1.0, 2.0]), length_s=1.0)
    np.testing.assert_allclose(frac, [0.5, 0.5, 0.0])
