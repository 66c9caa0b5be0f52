"""Silero VAD on real (synthesized) speech: found where it is, not in noise, and the batched
pass agrees with Silero's own sequential one. The settings that keep bird song from being taken
for speech (threshold, minimum duration, only the recording's edges) on synthetic probabilities."""
import numpy as np
import pytest
import torch

from birdclef.data.tts import synthesize
from birdclef.features import speech

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
    from birdclef.data.audio import resample

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


STEP_S = speech.CHUNK / speech.VAD_SAMPLE_RATE_HZ  # one probability per 32 ms


def _probs(duration_s, runs):
    """(n_chunks,) probabilities: 0.02 everywhere, 0.99 during each (start_s, end_s) run."""
    prob = np.full(int(round(duration_s / STEP_S)), 0.02, np.float32)
    for a, b in runs:
        prob[int(round(a / STEP_S)):int(round(b / STEP_S))] = 0.99
    return prob


def test_min_speech_drops_short_blips():
    prob = _probs(20.0, [(2.0, 2.3), (10.0, 11.0)])  # a 0.3-s blip, 1 s of speech
    assert len(speech._intervals(prob, 0.5, min_speech_s=0.25)) == 2
    (found,) = speech._intervals(prob, 0.5, min_speech_s=0.5)
    assert found[0] == pytest.approx(10.0, abs=0.1) and found[1] == pytest.approx(11.0, abs=0.1)
    assert speech._intervals(prob, 0.5, min_speech_s=1.5) == []


def test_threshold_ignores_weaker_probabilities():
    prob = _probs(20.0, [(10.0, 11.0)])
    prob[int(2.0 / STEP_S):int(3.0 / STEP_S)] = 0.7
    assert len(speech._intervals(prob, 0.5)) == 2
    assert len(speech._intervals(prob, 0.9)) == 1


def test_speech_intervals_passes_its_settings_on(monkeypatch):
    prob = _probs(60.0, [(1.0, 1.3), (5.0, 8.0), (30.0, 32.0)])
    prob[int(5.0 / STEP_S):int(8.0 / STEP_S)] = 0.7
    monkeypatch.setattr(speech, "speech_probabilities", lambda x16: prob)
    x = np.zeros(16000 * 60, np.float32)
    assert [round(a) for a, _ in speech.speech_intervals(x, 16000)] == [1, 5, 30]
    assert [round(a) for a, _ in speech.speech_intervals(x, 16000, min_speech_s=0.5)] == [5, 30]
    assert [round(a) for a, _ in speech.speech_intervals(x, 16000, threshold=0.9)] == [1, 30]
    assert [round(a) for a, _ in speech.speech_intervals(x, 16000, edge_s=10.0)] == [1, 5]


def test_edge_spans():
    assert speech.edge_spans(60.0, 10.0) == [(0.0, 10.0), (50.0, 60.0)]
    assert speech.edge_spans(15.0, 10.0) == [(0.0, 15.0)]  # the edges meet: all of it
    assert speech.edge_spans(60.0, None) == [(0.0, 60.0)]
    with pytest.raises(ValueError, match="edge_s"):
        speech.edge_spans(60.0, -1.0)


def test_edge_restriction_ignores_speech_in_the_middle():
    prob = _probs(60.0, [(1.0, 3.0), (28.0, 30.0), (57.0, 59.0)])
    before = prob.copy()
    assert len(speech._intervals(prob, 0.5)) == 3
    found = speech._intervals(prob, 0.5, within=speech.edge_spans(60.0, 10.0))
    assert [round(a) for a, _ in found] == [1, 57]
    np.testing.assert_array_equal(prob, before)  # the caller's array is left alone


def test_speech_across_the_edge_is_cut_at_it():
    prob = _probs(60.0, [(8.0, 12.0)])
    ((a, b),) = speech._intervals(prob, 0.5, within=speech.edge_spans(60.0, 10.0))
    assert a == pytest.approx(8.0, abs=0.1) and b == 10.0


def test_edge_restriction_on_real_speech(scene):
    x, sr, span = scene  # speech 22 s into 40 s: in the middle
    assert speech.speech_intervals(x, sr, edge_s=10.0) == []
    y = np.roll(x, -int(21.5 * sr))  # the same speech, now 0.5 s from the start
    found = speech.speech_intervals(y, sr, edge_s=10.0)
    moved = (span[0] - 21.5, span[1] - 21.5)
    assert _overlap(found, moved) >= 0.8 * (moved[1] - moved[0])
    assert all(b <= 10.0 for _, b in found)


def test_edges_of_a_piece_are_the_recordings(scene, monkeypatch):
    """A 40-s piece of a longer recording: the edges are where the recording's fall in it."""
    x, sr, span = scene
    prob = speech.speech_probabilities(x)
    calls = []
    monkeypatch.setattr(speech, "speech_probabilities", lambda x16: calls.append(1) or prob)
    # the piece starts 55 s into a 95-s recording: its last 20 s are the piece's 20-40 s
    found = speech.speech_intervals(x, sr, edge_s=20.0, offset_s=55.0, recording_s=95.0)
    assert _overlap(found, span) >= 0.8 * (span[1] - span[0]) and all(a >= 20.0 for a, _ in found)
    # ... of a 200-s recording: the piece lies between the edges, so there is nothing to run
    assert speech.speech_intervals(x, sr, edge_s=20.0, offset_s=55.0, recording_s=200.0) == []
    assert len(calls) == 1


def test_recommended_setting_finds_speech(scene):
    x, sr, span = scene
    found = speech.speech_intervals(x, sr, threshold=speech.RECOMMENDED_THRESHOLD,
                                    min_speech_s=speech.RECOMMENDED_MIN_SPEECH_S, edge_s=speech.RECOMMENDED_EDGE_S)
    assert _overlap(found, span) >= 0.8 * (span[1] - span[0])
