"""A seeded corpus of broken, odd and surprising inputs, written into a competition folder.

Each kind is one function of the folder; KINDS maps the kind's name to (function, expectation):
"skip" (training/EDA must skip it with a reason), "use" (odd but usable: must be embedded),
"schema" (the CSV problem must raise a clear error).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

RNG_SEED = 7


def _call(sr: int, seconds: float, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    tone = 0.3 * np.sin(2 * np.pi * 2500 * t) * (np.sin(2 * np.pi * 3 * t) > 0)
    return (tone + 0.02 * rng.standard_normal(len(t))).astype(np.float32)


def add_train_file(root: Path, label: str, name: str, write) -> str:
    """Write ``train_audio/<label>/<name>`` with ``write(path)`` and append a train.csv row."""
    rel = f"{label}/{name}"
    path = root / "train_audio" / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if write is not None:
        write(path)
    train = pd.read_csv(root / "train.csv", dtype=str, keep_default_na=False)
    row = train.iloc[0].copy()
    row["primary_label"], row["filename"], row["secondary_labels"] = label, rel, "[]"
    pd.concat([train, row.to_frame().T], ignore_index=True).to_csv(root / "train.csv", index=False)
    return rel


def build_train_corpus(root: Path) -> dict[str, tuple[str, str]]:
    """Add the bad train inputs to a competition folder → {kind: (filename, expectation)}."""
    rng = np.random.default_rng(RNG_SEED)
    label = pd.read_csv(root / "taxonomy.csv", dtype=str)["primary_label"].iloc[0]
    good = next((root / "train_audio").rglob("*.ogg"))
    kinds: dict[str, tuple[str, str]] = {}

    def add(kind, name, write, expect, lab=label):
        kinds[kind] = (add_train_file(root, lab, name, write), expect)

    add("zero_byte_ogg", "zero.ogg", lambda p: p.write_bytes(b""), "skip")
    add("truncated_ogg", "truncated.ogg", lambda p: p.write_bytes(good.read_bytes()[:700]), "skip")
    add("text_named_ogg", "text.ogg", lambda p: p.write_text("<html>403 Forbidden</html>"), "skip")
    add("directory_named_ogg", "folder.ogg", lambda p: p.mkdir(), "skip")
    add("missing_file", "not_there.ogg", None, "skip")
    add("label_not_in_taxonomy", "ghost.ogg", lambda p: sf.write(p, _call(32000, 3, rng), 32000), "skip", "nosuch1")
    add("stereo_44k_wav", "stereo.wav",
        lambda p: sf.write(p, np.stack([_call(44100, 4, rng), _call(44100, 4, rng)], 1), 44100), "use")
    add("8k_file", "eight k.ogg", lambda p: sf.write(p, _call(8000, 4, rng), 8000, format="OGG"), "use")
    add("48k_file", "fortyeight.flac", lambda p: sf.write(p, _call(48000, 4, rng), 48000), "use")
    add("0.1s_clip", "short.ogg", lambda p: sf.write(p, _call(32000, 0.1, rng), 32000, format="OGG"), "use")
    add("digital_silence", "silence.wav", lambda p: sf.write(p, np.zeros(32000 * 3, np.float32), 32000), "use")

    def nan_inf(p):
        x = _call(32000, 3, rng)
        x[::1000] = np.nan
        x[500::1000] = np.inf
        sf.write(p, x, 32000, subtype="FLOAT")

    add("nan_inf_float_wav", "naninf.wav", nan_inf, "use")
    add("clipping_noise", "clipping.wav",
        lambda p: sf.write(p, np.sign(rng.standard_normal(32000 * 3)).astype(np.float32), 32000), "use")
    add("non_ascii_name", "çanto del pájaro ñ.ogg", lambda p: sf.write(p, _call(32000, 3, rng), 32000, format="OGG"),
        "use")
    # duplicated row: the same file listed twice; the second row is skipped
    train = pd.read_csv(root / "train.csv", dtype=str, keep_default_na=False)
    pd.concat([train, train.iloc[[0]]], ignore_index=True).to_csv(root / "train.csv", index=False)
    kinds["duplicated_row"] = (train.iloc[0]["filename"], "duplicate")
    return kinds


def build_test_corpus(root: Path) -> dict[str, tuple[str, int]]:
    """Replace test_soundscapes with odd ones → {kind: (stem, expected rows)}."""
    rng = np.random.default_rng(RNG_SEED + 1)
    folder = root / "test_soundscapes"
    shutil.rmtree(folder)
    (root / "solution.csv").unlink(missing_ok=True)  # the truth was for the replaced soundscapes
    folder.mkdir()
    kinds = {}

    def add(kind, name, write, rows):
        write(folder / name)
        kinds[kind] = (Path(name).stem, rows)

    add("regular", "H01_20240101_000000.ogg", lambda p: sf.write(p, _call(32000, 60, rng), 32000, format="OGG"), 12)
    add("shorter_than_60s", "H02_short.ogg", lambda p: sf.write(p, _call(32000, 33, rng), 32000, format="OGG"), 7)
    add("longer_than_60s", "H03_long.ogg", lambda p: sf.write(p, _call(32000, 65, rng), 32000, format="OGG"), 13)
    add("zero_byte_soundscape", "H04_zero.ogg", lambda p: p.write_bytes(b""), 12)
    add("text_soundscape", "H05_text.ogg", lambda p: p.write_text("not audio"), 12)
    add("non_ascii_soundscape", "H06 señal.ogg", lambda p: sf.write(p, _call(32000, 60, rng), 32000, format="OGG"), 12)
    (folder / "H07_dir.ogg").mkdir()  # a folder named like audio: not a soundscape, warned and ignored
    return kinds


def write_long_file(path: Path, *, hours: float = 3.0, sr: int = 8000) -> Path:
    """A long low-rate WAV written in blocks (never held in memory whole)."""
    rng = np.random.default_rng(RNG_SEED + 2)
    block = sr * 600
    with sf.SoundFile(path, "w", samplerate=sr, channels=1, subtype="PCM_16") as fh:
        for _ in range(int(hours * 6)):
            fh.write((0.05 * rng.standard_normal(block)).astype(np.float32))
    return path
