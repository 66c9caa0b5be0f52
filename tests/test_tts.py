import sys
import threading

import numpy as np
import pytest

from birdclef.data import tts
from birdclef.errors import BirdclefError

SENTENCE = "Recorded at El Silencio reserve, on the twentieth of April."


def band_fraction(wave: np.ndarray, sample_rate_hz: int, lo_hz: float, hi_hz: float) -> float:
    power = np.abs(np.fft.rfft(wave)) ** 2
    freqs = np.fft.rfftfreq(len(wave), 1 / sample_rate_hz)
    return float(power[(freqs >= lo_hz) & (freqs <= hi_hz)].sum() / power.sum())


def test_synthesize_returns_audible_speech_at_the_requested_rate():
    wave = tts.synthesize(SENTENCE, sample_rate_hz=32_000)
    assert wave.dtype == np.float32 and wave.ndim == 1
    duration_s = len(wave) / 32_000
    assert 1.5 < duration_s < 8.0  # ten words at espeak's default 175 words per minute
    assert np.abs(wave).max() <= 1.0
    assert np.sqrt(np.mean(wave ** 2)) > 0.02
    # Voiced speech sits in the telephone band.
    assert band_fraction(wave, 32_000, 100, 4_000) > 0.8


def test_length_scales_with_sample_rate():
    at_16k = tts.synthesize(SENTENCE, sample_rate_hz=16_000)
    at_32k = tts.synthesize(SENTENCE, sample_rate_hz=32_000)
    # Same words; espeak's carried-over state moves the length by a few ms only.
    assert abs(2 * len(at_16k) - len(at_32k)) < 0.03 * len(at_32k)


def test_default_rate_is_16k_and_other_languages_work():
    english = tts.synthesize("one two three")
    spanish = tts.synthesize("uno dos tres", voice="es")
    assert 0.5 < len(english) / 16_000 < 4.0
    assert 0.5 < len(spanish) / 16_000 < 4.0


def test_batch_is_reproducible_and_keeps_order():
    texts = ["Sooty warbler.", SENTENCE]
    first = tts.synthesize_batch(texts, sample_rate_hz=32_000)
    second = tts.synthesize_batch(texts, sample_rate_hz=32_000)
    assert len(first) == 2 and len(first[0]) < len(first[1])
    for a, b in zip(first, second):
        assert a.dtype == np.float32
        np.testing.assert_array_equal(a, b)
    assert tts.synthesize_batch([]) == []


def test_concurrent_calls_are_serialised():
    results: list[np.ndarray] = []

    def speak() -> None:
        results.append(tts.synthesize("one two three four", sample_rate_hz=16_000))

    threads = [threading.Thread(target=speak) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lengths = [len(w) for w in results]
    assert len(results) == 4
    assert max(lengths) - min(lengths) < 0.05 * max(lengths)
    assert all(np.abs(w).max() > 0.1 for w in results)


@pytest.mark.parametrize("kwargs", [
    {"text": ""},
    {"text": "   "},
    {"text": SENTENCE, "sample_rate_hz": 0},
    {"text": SENTENCE, "sample_rate_hz": -16_000},
    {"text": SENTENCE, "sample_rate_hz": 16_000.5},
    {"text": SENTENCE, "voice": ""},
    {"text": SENTENCE, "voice": "no-such-voice"},
])
def test_bad_arguments_raise_value_error(kwargs):
    text = kwargs.pop("text")
    with pytest.raises(ValueError):
        tts.synthesize(text, **kwargs)


def test_bad_arguments_in_batch_raise_value_error():
    with pytest.raises(ValueError):
        tts.synthesize_batch(["fine", ""])
    with pytest.raises(ValueError, match="voice"):
        tts.synthesize_batch(["fine"], voice="no-such-voice")


def test_missing_library_raises_project_error(monkeypatch):
    monkeypatch.setattr(tts, "_ENGINE", None)
    monkeypatch.setitem(sys.modules, "espeakng_loader", None)  # makes the import fail
    with pytest.raises(tts.TTSUnavailable, match="espeakng-loader") as info:
        tts.synthesize(SENTENCE)
    assert isinstance(info.value, BirdclefError)
