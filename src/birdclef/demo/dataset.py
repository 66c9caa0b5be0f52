"""The entry point: :func:`make_demo_dataset` plans, renders and writes the competition layout."""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from birdclef.demo.common import SAMPLE_RATE_HZ, WINDOW_S, Conditions, resolve_conditions
from birdclef.demo.plan import _plan_recordings, _plan_soundscapes, _Recording, _Soundscape
from birdclef.demo.render import _render_recording, _render_soundscape, _window_labels
from birdclef.demo.species import _make_taxonomy
from birdclef.io import atomic_path
from birdclef.tts import synthesize_batch

TAXONOMY_COLUMNS = ["primary_label", "inat_taxon_id", "scientific_name", "common_name", "class_name"]
TRAIN_COLUMNS = [
    "primary_label", "secondary_labels", "type", "filename", "collection", "rating", "url",
    "latitude", "longitude", "scientific_name", "common_name", "author", "license",
]


# Named argument sets for make_demo_dataset. "demo" is what `make demo` writes (~30 min of audio,
# ~20 s to write); "field" is the model-quality benchmark: twice the classes, 16 test soundscapes
# (192 windows), under the "field" conditions (~95 min of audio).
PRESETS: dict[str, dict] = {
    "demo": {},
    "field": dict(n_classes=24, recordings_per_class=10, n_train_soundscapes=12, n_test_soundscapes=16,
                  conditions="field"),
}


@dataclass(frozen=True)
class DemoSummary:
    """What :func:`make_demo_dataset` wrote; `total_audio_s` sums every audio file, in seconds."""

    root: Path
    n_classes: int
    n_recordings: int
    n_train_soundscapes: int
    n_test_soundscapes: int
    total_audio_s: float


def _write_audio(path: Path, wave: np.ndarray) -> None:
    with atomic_path(path, ".ogg") as tmp:
        sf.write(tmp, wave, SAMPLE_RATE_HZ, format="OGG", subtype="VORBIS")


def _write_csv(path: Path, frame: pd.DataFrame) -> None:
    with atomic_path(path, ".csv") as tmp:
        tmp.write_bytes(frame.to_csv(index=False, lineterminator="\n").encode("utf-8"))


def _validate(n_classes, recordings_per_class, recording_s, n_train_soundscapes, n_test_soundscapes,
              soundscape_s, speech_fraction, seed) -> None:
    def is_int(x) -> bool:
        return isinstance(x, (int, np.integer)) and not isinstance(x, bool)

    if not is_int(n_classes) or not 2 <= n_classes <= 300:
        raise ValueError(f"n_classes must be an integer in [2, 300], got {n_classes!r}")
    if not is_int(recordings_per_class) or not 1 <= recordings_per_class <= 1000:
        raise ValueError(f"recordings_per_class must be an integer in [1, 1000], got {recordings_per_class!r}")
    try:
        lo, hi = (float(v) for v in recording_s)
    except (TypeError, ValueError):
        raise ValueError(f"recording_s must be a (min_s, max_s) pair, got {recording_s!r}") from None
    if not 3.0 <= lo <= hi <= 600.0:
        raise ValueError(f"recording_s must satisfy 3 <= min_s <= max_s <= 600, got {recording_s!r}")
    if not is_int(n_train_soundscapes) or n_train_soundscapes < 0:
        raise ValueError(f"n_train_soundscapes must be an integer >= 0, got {n_train_soundscapes!r}")
    if not is_int(n_test_soundscapes) or n_test_soundscapes < 1:
        raise ValueError(f"n_test_soundscapes must be an integer >= 1 (sample_submission needs one), "
                         f"got {n_test_soundscapes!r}")
    if (not isinstance(soundscape_s, (int, float)) or isinstance(soundscape_s, bool)
            or not 15 <= soundscape_s <= 600 or soundscape_s % WINDOW_S != 0):
        raise ValueError(f"soundscape_s must be a multiple of {WINDOW_S} in [15, 600], got {soundscape_s!r}")
    if not isinstance(speech_fraction, (int, float)) or not 0.0 <= speech_fraction <= 1.0:
        raise ValueError(f"speech_fraction must be in [0, 1], got {speech_fraction!r}")
    if not is_int(seed) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")


def _n_workers() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


def _refuse_stale_audio(root: Path, expected: set[Path]) -> None:
    """Refuse a root holding audio this dataset would not write: the CSVs would not describe it."""
    stale = [p for folder in ("train_audio", "train_soundscapes", "test_soundscapes")
             for p in sorted((root / folder).rglob("*.ogg")) if p not in expected]
    if stale:
        shown = ", ".join(str(p.relative_to(root)) for p in stale[:3])
        raise FileExistsError(f"{root} already holds {len(stale)} audio file(s) this demo dataset would "
                              f"not write ({shown}, ...); use an empty folder or delete it first")


def make_demo_dataset(
    root: str | Path,
    *,
    n_classes: int = 12,
    recordings_per_class: int = 8,
    recording_s: tuple[float, float] = (6.0, 20.0),
    n_train_soundscapes: int = 4,
    n_test_soundscapes: int = 6,
    soundscape_s: float = 60.0,
    speech_fraction: float = 0.25,
    seed: int = 0,
    conditions: str | Conditions = "demo",
) -> DemoSummary:
    """Write a seeded synthetic dataset in the BirdCLEF 2025 layout under `root`.

    `recording_s` is the (min, max) duration of train recordings in seconds; a recording with a
    spoken intro is lengthened when needed to keep 2 s of calls beside it. `speech_fraction` of
    the recordings (and, when it is > 0, one train and one test soundscape) contain speech
    synthesised by espeak-ng; `speech.csv` lists each as (filename relative to `root`, start_s,
    end_s). Labels sort as strings; from 3 classes on they mix eBird codes and numeric iNat ids.
    `conditions` sets how hard the audio is: ``"demo"`` (clear calls, quick), ``"field"`` (sparse
    focal recordings, louder background species, dense low-SNR soundscapes heard from a distance)
    or a :class:`birdclef.demo.Conditions`; the "demo" preset writes what it always wrote.
    Rerunning with the same arguments rewrites the same files; raises ValueError on bad sizes,
    FileExistsError when `root` holds other audio, :class:`birdclef.tts.TTSUnavailable` when
    speech is asked for and espeak-ng cannot load.
    """
    _validate(n_classes, recordings_per_class, recording_s, n_train_soundscapes, n_test_soundscapes,
              soundscape_s, speech_fraction, seed)
    cond = resolve_conditions(conditions)
    root = Path(root)
    sr = SAMPLE_RATE_HZ
    taxonomy = _make_taxonomy(n_classes, seed)
    recordings = _plan_recordings(taxonomy, recordings_per_class, tuple(recording_s), speech_fraction, seed)
    soundscapes = _plan_soundscapes(n_train_soundscapes, n_test_soundscapes, speech_fraction, seed)
    rec_path = {r.index: root / "train_audio" / r.filename for r in recordings}
    sc_path = {s.index: root / f"{s.split}_soundscapes" / f"{s.stem}.ogg" for s in soundscapes}
    _refuse_stale_audio(root, set(rec_path.values()) | set(sc_path.values()))
    for folder in ("train_audio", "train_soundscapes", "test_soundscapes"):
        (root / folder).mkdir(parents=True, exist_ok=True)

    texts = sorted({x.speech_text for x in [*recordings, *soundscapes] if x.speech_text})
    waves = dict(zip(texts, synthesize_batch(texts, sample_rate_hz=sr))) if texts else {}

    def make_recording(rec: _Recording) -> tuple[dict, dict | None, float]:
        wave, span = _render_recording(rec, waves.get(rec.speech_text), seed, cond)
        _write_audio(rec_path[rec.index], wave)
        row = {"primary_label": rec.species.label, "filename": rec.filename,
               "scientific_name": rec.species.scientific_name,
               "common_name": rec.species.common_name, **rec.row}
        speech_row = None if span is None else {
            "filename": f"train_audio/{rec.filename}", "start_s": round(span[0], 3), "end_s": round(span[1], 3)}
        return row, speech_row, len(wave) / sr

    labels = [s.label for s in taxonomy]

    def make_soundscape(sc: _Soundscape) -> tuple[pd.DataFrame, dict | None, float]:
        wave, events, span = _render_soundscape(sc, taxonomy, waves.get(sc.speech_text), soundscape_s, seed, cond)
        _write_audio(sc_path[sc.index], wave)
        row_ids, matrix = _window_labels(sc.stem, events, n_classes, soundscape_s)
        frame = pd.DataFrame(matrix, columns=labels)
        frame.insert(0, "row_id", row_ids)
        speech_row = None if span is None else {
            "filename": f"{sc.split}_soundscapes/{sc.stem}.ogg",
            "start_s": round(span[0], 3), "end_s": round(span[1], 3)}
        return frame, speech_row, len(wave) / sr

    # Every file has its own random stream, so threads change the speed, not the bytes. Vorbis
    # encoding and the numpy/scipy kernels release the GIL.
    with ThreadPoolExecutor(max_workers=_n_workers()) as pool:
        rec_out = list(pool.map(make_recording, recordings))
        sc_out = list(pool.map(make_soundscape, soundscapes))
    train_rows = [row for row, _, _ in rec_out]
    speech_rows = [sp for _, sp, _ in [*rec_out, *sc_out] if sp is not None]
    total_s = sum(d for _, _, d in [*rec_out, *sc_out])
    truth: dict[str, list[pd.DataFrame]] = {"train": [], "test": []}
    for sc, (frame, _, _) in zip(soundscapes, sc_out):
        truth[sc.split].append(frame)

    _write_csv(root / "taxonomy.csv", pd.DataFrame(
        [[s.label, s.inat_taxon_id, s.scientific_name, s.common_name, s.class_name] for s in taxonomy],
        columns=TAXONOMY_COLUMNS))
    train = pd.DataFrame(train_rows).sort_values(["primary_label", "filename"], kind="stable")
    _write_csv(root / "train.csv", train[TRAIN_COLUMNS])
    for split, name in (("test", "solution.csv"), ("train", "train_soundscapes_solution.csv")):
        frames = truth[split]
        _write_csv(root / name, pd.concat(frames, ignore_index=True) if frames
                   else pd.DataFrame(columns=["row_id", *labels]))
    first_test = truth["test"][0]["row_id"].head(3).tolist()
    sample = pd.DataFrame(np.full((len(first_test), n_classes), 1.0 / n_classes), columns=labels)
    sample.insert(0, "row_id", first_test)
    _write_csv(root / "sample_submission.csv", sample)
    _write_csv(root / "speech.csv", pd.DataFrame(speech_rows, columns=["filename", "start_s", "end_s"])
               .sort_values("filename", kind="stable"))

    return DemoSummary(root=root, n_classes=n_classes, n_recordings=len(recordings),
                       n_train_soundscapes=n_train_soundscapes, n_test_soundscapes=n_test_soundscapes,
                       total_audio_s=round(total_s, 3))
