import numpy as np
import pytest
import soundfile as sf

from birdclef.data import audio
from birdclef.errors import AudioError


def _tone(sr=32000, seconds=3.0, hz=1000.0):
    t = np.arange(int(sr * seconds)) / sr
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def test_read_partial_ogg(tmp_path):
    x = _tone()
    sf.write(tmp_path / "a.ogg", x, 32000, format="OGG", subtype="VORBIS")
    y, sr = audio.read_audio(tmp_path / "a.ogg", start_s=1.0, duration_s=0.5)
    assert sr == 32000 and y.dtype == np.float32 and len(y) == 16000
    assert audio.audio_info(tmp_path / "a.ogg").duration_s == pytest.approx(3.0, abs=0.01)


def test_stereo_is_averaged_to_mono(tmp_path):
    left, right = _tone(44100, 1.0), np.zeros(44100, np.float32)
    sf.write(tmp_path / "s.wav", np.stack([left, right], 1), 44100)
    y, sr = audio.read_audio(tmp_path / "s.wav")
    assert sr == 44100 and y.ndim == 1
    np.testing.assert_allclose(y, left / 2, atol=1e-4)


def test_non_finite_samples_become_zero(tmp_path):
    x = _tone(16000, 1.0)
    x[100] = np.nan
    x[200] = np.inf
    sf.write(tmp_path / "n.wav", x, 16000, subtype="FLOAT")
    y, _ = audio.read_audio(tmp_path / "n.wav")
    assert np.isfinite(y).all() and y[100] == 0 and y[200] == 0


@pytest.mark.parametrize("make", [
    lambda p: p.write_bytes(b""),
    lambda p: p.write_text("this is not audio"),
    lambda p: p.mkdir(),
])
def test_unreadable_files_raise_audio_error(tmp_path, make):
    p = tmp_path / "bad.ogg"
    make(p)
    with pytest.raises(AudioError, match="bad.ogg"):
        audio.read_audio(p)


def test_resample_keeps_a_tone_and_length():
    x = _tone(32000, 2.0, 1000.0)
    y = audio.resample(x, 32000, 16000)
    assert len(y) == 32000
    spectrum = np.abs(np.fft.rfft(y))
    assert np.argmax(spectrum) * 16000 / len(y) == pytest.approx(1000, abs=2)


def test_rms_normalise_hits_target_and_leaves_silence():
    y = audio.rms_normalise(_tone() * 0.01, -20.0)
    assert 20 * np.log10(np.sqrt(np.mean(y ** 2))) == pytest.approx(-20, abs=0.1)
    assert not audio.rms_normalise(np.zeros(100, np.float32)).any()


def test_denoise_removes_noise_and_keeps_short_calls():
    rng = np.random.default_rng(0)
    sr = 16000
    clean = np.zeros(sr * 4, np.float32)
    t = np.arange(int(0.15 * sr)) / sr
    chirp = 0.3 * np.sin(2 * np.pi * (2000 + 4000 * t) * t) * np.hanning(len(t))
    for start in (0.5, 1.5, 2.5):
        clean[int(start * sr):int(start * sr) + len(t)] = chirp
    noisy = clean + 0.05 * rng.standard_normal(len(clean)).astype(np.float32)
    out = audio.denoise(noisy, sr)
    call = np.abs(clean) > 0.01
    assert np.std(out[~call]) < 0.2 * np.std(noisy[~call])  # noise down by > 14 dB
    assert np.std(out[call]) > 0.4 * np.std(clean[call])  # calls kept


def test_frame_shapes_and_padding():
    x = np.arange(10, dtype=np.float32)
    f = audio.frame(x, window_samples=4, hop_samples=3)
    assert f.shape == (4, 4)
    np.testing.assert_array_equal(f[1], [3, 4, 5, 6])
    np.testing.assert_array_equal(f[-1], [9, 0, 0, 0])
