"""Offline speech synthesis with the espeak-ng library shipped by the `espeakng-loader` wheel.

Used to put real spoken words into fixtures and the demo dataset (the narrated intros of
xeno-canto recordings), so the speech stage is tested on speech, not on noise.

    wave = synthesize("Recorded at El Silencio, April twentieth.", sample_rate_hz=32_000)
    # wave: (n_samples,) float32 in [-1, 1], mono, at 32 kHz

espeak-ng keeps waveform-generator state (glottal phase, pitch flutter) from one utterance to
the next, so two :func:`synthesize` calls on the same text give the same words with slightly
different samples. :func:`synthesize_batch` runs a list of texts in a fresh interpreter, so its
output depends only on its arguments; the demo dataset uses it to stay reproducible.
"""
from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import tempfile
import threading
from math import gcd
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy.signal import resample_poly

from birdclef.errors import BirdclefError

# From espeak-ng's speak_lib.h.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000  # return an error instead of calling exit() when data is missing
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_EE_OK = 0

_SYNTH_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class TTSUnavailable(BirdclefError):
    """The espeak-ng library or its data cannot be loaded here."""


class _Espeak:
    """The process-wide espeak-ng handle; every call goes through :data:`_LOCK`."""

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as exc:
            raise TTSUnavailable(
                "speech synthesis needs the 'espeakng-loader' package (pip install espeakng-loader)"
            ) from exc
        try:
            lib_path = espeakng_loader.get_library_path()
            data_path = espeakng_loader.get_data_path()
            lib = ctypes.CDLL(lib_path)
        except (OSError, RuntimeError) as exc:
            raise TTSUnavailable(f"cannot load the espeak-ng library shipped by espeakng-loader: {exc}") from exc

        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
            ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synchronize.argtypes = []
        lib.espeak_Synchronize.restype = ctypes.c_int

        rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path.encode(), _INITIALIZE_DONT_EXIT
        )
        if rate <= 0:
            raise TTSUnavailable(f"espeak-ng failed to initialise with data at {data_path!r} (code {rate})")
        self.lib = lib
        self.native_rate_hz = int(rate)
        self._chunks: list[np.ndarray] = []
        # Keep a reference: ctypes frees the trampoline when the Python object dies.
        self._callback = _SYNTH_CALLBACK(self._collect)
        lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav, n_samples, _events) -> int:
        if n_samples > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n_samples,)).copy())
        return 0  # 0 = keep synthesising

    def speak(self, text: str, voice: str) -> np.ndarray:
        """Native-rate int16 samples, shape (n_samples,)."""
        code = self.lib.espeak_SetVoiceByName(voice.encode())
        if code != _EE_OK:
            raise ValueError(
                f"unknown espeak-ng voice {voice!r}; use a language code such as 'en', 'en-us', "
                "'es' or 'pt', optionally with a variant ('en+f3')"
            )
        encoded = text.encode("utf-8")
        self._chunks = []
        code = self.lib.espeak_Synth(
            encoded, len(encoded) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None
        )
        self.lib.espeak_Synchronize()
        if code != _EE_OK:
            raise BirdclefError(f"espeak-ng failed to synthesise {text[:40]!r} (code {code})")
        chunks, self._chunks = self._chunks, []
        return np.concatenate(chunks) if chunks else np.zeros(0, np.int16)


_LOCK = threading.Lock()
_ENGINE: _Espeak | None = None


def _engine() -> _Espeak:
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = _Espeak()
    return _ENGINE


def _check_args(text: str, sample_rate_hz: int, voice: str) -> None:
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"text must be a non-empty string, got {text!r}")
    if isinstance(sample_rate_hz, bool) or not isinstance(sample_rate_hz, (int, np.integer)) \
            or not 1_000 <= sample_rate_hz <= 384_000:
        raise ValueError(f"sample_rate_hz must be an integer in [1000, 384000], got {sample_rate_hz!r}")
    if not isinstance(voice, str) or not voice.strip():
        raise ValueError(f"voice must be a non-empty espeak-ng voice name, got {voice!r}")


def synthesize(text: str, *, sample_rate_hz: int = 16_000, voice: str = "en") -> np.ndarray:
    """Speak `text` with espeak-ng.

    Returns mono float32 samples in [-1, 1], shape (n_samples,), at `sample_rate_hz`
    (resampled from espeak's native 22,050 Hz). A short sentence gives 2-4 s of audio, with a
    little silence at either end. Thread-safe; the library is initialised once per process.
    Raises :class:`TTSUnavailable` when the library cannot be loaded, ValueError on bad input.
    """
    _check_args(text, sample_rate_hz, voice)
    with _LOCK:
        engine = _engine()
        pcm = engine.speak(text, voice)
        native = engine.native_rate_hz
    wave = pcm.astype(np.float32) / 32768.0
    if sample_rate_hz != native:
        g = gcd(int(sample_rate_hz), native)
        wave = resample_poly(wave, int(sample_rate_hz) // g, native // g).astype(np.float32)
    return np.clip(wave, -1.0, 1.0)


def synthesize_batch(
    texts: Sequence[str], *, sample_rate_hz: int = 16_000, voice: str = "en"
) -> list[np.ndarray]:
    """Speak each text in a fresh interpreter, so the samples depend only on the arguments.

    Returns one (n_samples,) float32 array in [-1, 1] per text, at `sample_rate_hz`. Costs one
    interpreter start (about half a second) on top of the synthesis.
    """
    texts = list(texts)
    for text in texts:
        _check_args(text, sample_rate_hz, voice)
    if not texts:
        return []
    request = json.dumps({"texts": texts, "sample_rate_hz": int(sample_rate_hz), "voice": voice})
    src_dir = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src_dir, env.get("PYTHONPATH", "")) if p)
    with tempfile.TemporaryDirectory(prefix="birdclef-tts-") as tmp:
        out_path = Path(tmp) / "speech.npz"
        proc = subprocess.run(
            [sys.executable, "-m", "birdclef.data.tts", str(out_path)],
            input=request, capture_output=True, text=True, env=env, check=False,
        )
        if proc.returncode != 0:
            detail = proc.stderr.strip().splitlines()[-1:] or ["no error output"]
            if proc.returncode == 3:
                raise TTSUnavailable(f"speech synthesis unavailable: {detail[0]}")
            if proc.returncode == 2:
                raise ValueError(detail[0])
            raise BirdclefError(f"speech synthesis subprocess failed ({proc.returncode}): {detail[0]}")
        with np.load(out_path) as saved:
            return [saved[f"w{i}"].astype(np.float32) for i in range(len(texts))]


def _batch_main(argv: Sequence[str]) -> int:
    """`python -m birdclef.data.tts OUT.npz` with {"texts", "sample_rate_hz", "voice"} JSON on stdin."""
    request = json.loads(sys.stdin.read())
    try:
        waves = [
            synthesize(t, sample_rate_hz=request["sample_rate_hz"], voice=request["voice"])
            for t in request["texts"]
        ]
    except TTSUnavailable as exc:
        print(exc, file=sys.stderr)
        return 3
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    np.savez(argv[0], **{f"w{i}": w for i, w in enumerate(waves)})
    return 0


if __name__ == "__main__":
    raise SystemExit(_batch_main(sys.argv[1:]))
