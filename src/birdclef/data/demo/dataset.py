"""The entry point: :func:`make_demo_dataset` plans, renders and writes the competition layout."""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from birdclef.data.demo.common import SAMPLE_RATE_HZ, WINDOW_S, Conditions, _rng, resolve_conditions
from birdclef.data.demo.plan import _plan_recordings, _plan_soundscapes, _Recording, _Soundscape
from birdclef.data.demo.render import _render_recording, _render_soundscape, _window_labels
from birdclef.data.demo.species import _make_taxonomy, _Species
from birdclef.data.tts import synthesize_batch
from birdclef.io import atomic_path, write_ogg

TAXONOMY_COLUMNS = ["primary_label", "inat_taxon_id", "scientific_name", "common_name", "class_name"]
TRAIN_COLUMNS = [
    "primary_label", "secondary_labels", "type", "filename", "collection", "rating", "url",
    "latitude", "longitude", "scientific_name", "common_name", "author", "license",
]
TRAIN_COLUMNS_2026 = [  # BirdCLEF+ 2026: two more fields, another order
    "primary_label", "secondary_labels", "type", "latitude", "longitude", "scientific_name", "common_name",
    "class_name", "inat_taxon_id", "author", "license", "rating", "url", "filename", "collection",
]
LAYOUTS = ("2025", "2026")


# Named argument sets for make_demo_dataset. "demo" is what `make demo` writes (~30 min of audio,
# ~20 s to write); "field" is the model-quality benchmark: twice the classes, 16 test soundscapes
# (192 windows), under the "field" conditions (~95 min of audio); "2026" is the BirdCLEF+ 2026
# layout: labelled train soundscapes (train_soundscapes_labels.csv) holding 3 classes that have no
# train audio, BC2026-style soundscape names (~40 min of audio).
PRESETS: dict[str, dict] = {
    "demo": {},
    "field": dict(n_classes=24, recordings_per_class=10, n_train_soundscapes=12, n_test_soundscapes=16,
                  conditions="field"),
    "2026": dict(layout="2026", n_classes=16, recordings_per_class=8, n_train_soundscapes=8, n_test_soundscapes=8,
                 n_soundscape_only=3),
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
    layout: str = "2025"
    soundscape_only_classes: tuple[str, ...] = ()  # labels with no train audio (2026 layout)


def _write_csv(path: Path, frame: pd.DataFrame) -> None:
    with atomic_path(path, ".csv") as tmp:
        tmp.write_bytes(frame.to_csv(index=False, lineterminator="\n").encode("utf-8"))


def _validate(n_classes, recordings_per_class, recording_s, n_train_soundscapes, n_test_soundscapes,
              soundscape_s, speech_fraction, seed, layout="2025", n_soundscape_only=0) -> None:
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
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; known: {', '.join(LAYOUTS)}")
    if not is_int(n_soundscape_only) or not 0 <= n_soundscape_only <= n_classes - 2:
        raise ValueError(f"n_soundscape_only must be an integer in [0, n_classes - 2], got {n_soundscape_only!r}")
    if n_soundscape_only and (layout != "2026" or n_train_soundscapes < 1):
        raise ValueError("n_soundscape_only > 0 needs layout='2026' and n_train_soundscapes >= 1 "
                         "(those classes are heard only in the labelled train soundscapes)")


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
    layout: str = "2025",
    n_soundscape_only: int = 0,
) -> DemoSummary:
    """Write a seeded synthetic dataset in the BirdCLEF 2025 (or 2026) layout under `root`.

    `recording_s` is the (min, max) duration of train recordings in seconds; a recording with a
    spoken intro is lengthened when needed to keep 2 s of calls beside it. `speech_fraction` of
    the recordings (and, when it is > 0, one train and one test soundscape) contain speech
    synthesised by espeak-ng; `speech.csv` lists each as (filename relative to `root`, start_s,
    end_s). Labels sort as strings; from 3 classes on they mix eBird codes and numeric iNat ids.
    `conditions` sets how hard the audio is: ``"demo"`` (clear calls, quick), ``"field"`` (sparse
    focal recordings, louder background species, dense low-SNR soundscapes heard from a distance)
    or a :class:`birdclef.data.demo.Conditions`; the "demo" preset writes what it always wrote.
    `layout="2026"` writes the BirdCLEF+ 2026 layout: train.csv with its 15 columns in their order,
    soundscapes named ``BC2026_Train_0001_S03_20230415_051000``, insect labels like ``47158son1``,
    and ``train_soundscapes_labels.csv`` (filename, start, end as "HH:MM:SS", primary_label
    ``;``-separated; one row per labelled 5-s window of every train soundscape, every row twice as
    in the released file). `n_soundscape_only` classes get no train audio and are heard only in
    soundscapes (each in at least one train and one test soundscape).
    Rerunning with the same arguments rewrites the same files; raises ValueError on bad sizes,
    FileExistsError when `root` holds other audio, :class:`birdclef.data.tts.TTSUnavailable` when
    speech is asked for and espeak-ng cannot load.
    """
    _validate(n_classes, recordings_per_class, recording_s, n_train_soundscapes, n_test_soundscapes,
              soundscape_s, speech_fraction, seed, layout, n_soundscape_only)
    cond = resolve_conditions(conditions)
    root = Path(root)
    sr = SAMPLE_RATE_HZ
    taxonomy = _make_taxonomy(n_classes, seed)
    only: tuple[int, ...] = ()
    if layout == "2026":
        taxonomy = _sonotype_labels(taxonomy)
        only = tuple(sorted(_rng(seed, 7).choice(n_classes, n_soundscape_only, replace=False).tolist()))
    with_audio = [sp for k, sp in enumerate(taxonomy) if k not in only]
    recordings = _plan_recordings(with_audio, recordings_per_class, tuple(recording_s), speech_fraction, seed)
    soundscapes = _plan_soundscapes(n_train_soundscapes, n_test_soundscapes, speech_fraction, seed, layout, only)
    rec_path = {r.index: root / "train_audio" / r.filename for r in recordings}
    sc_path = {s.index: root / f"{s.split}_soundscapes" / f"{s.stem}.ogg" for s in soundscapes}
    _refuse_stale_audio(root, set(rec_path.values()) | set(sc_path.values()))
    for folder in ("train_audio", "train_soundscapes", "test_soundscapes"):
        (root / folder).mkdir(parents=True, exist_ok=True)

    texts = sorted({x.speech_text for x in [*recordings, *soundscapes] if x.speech_text})
    waves = dict(zip(texts, synthesize_batch(texts, sample_rate_hz=sr))) if texts else {}

    def make_recording(rec: _Recording) -> tuple[dict, dict | None, float]:
        wave, span = _render_recording(rec, waves.get(rec.speech_text), seed, cond)
        write_ogg(rec_path[rec.index], wave, SAMPLE_RATE_HZ)
        row = {"primary_label": rec.species.label, "filename": rec.filename,
               "scientific_name": rec.species.scientific_name, "common_name": rec.species.common_name,
               "class_name": rec.species.class_name, "inat_taxon_id": rec.species.inat_taxon_id, **rec.row}
        speech_row = None if span is None else {
            "filename": f"train_audio/{rec.filename}", "start_s": round(span[0], 3), "end_s": round(span[1], 3)}
        return row, speech_row, len(wave) / sr

    labels = [s.label for s in taxonomy]

    def make_soundscape(sc: _Soundscape) -> tuple[pd.DataFrame, dict | None, float]:
        wave, events, span = _render_soundscape(sc, taxonomy, waves.get(sc.speech_text), soundscape_s, seed, cond)
        write_ogg(sc_path[sc.index], wave, SAMPLE_RATE_HZ)
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
    _write_csv(root / "train.csv", train[TRAIN_COLUMNS_2026 if layout == "2026" else TRAIN_COLUMNS])
    if layout == "2026":
        _write_csv(root / "train_soundscapes_labels.csv", _soundscape_labels(truth["train"], labels))
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
                       total_audio_s=round(total_s, 3), layout=layout,
                       soundscape_only_classes=tuple(taxonomy[k].label for k in only))


def _sonotype_labels(taxonomy: list[_Species]) -> list[_Species]:
    """2026 names insect sonotypes ``<iNat id>son<k>``; the taxonomy, relabelled and re-sorted."""
    out, k = [], 0
    for sp in taxonomy:
        if sp.class_name == "Insecta":
            k += 1
            sp = replace(sp, label=f"{sp.inat_taxon_id}son{k}")
        out.append(sp)
    return sorted(out, key=lambda sp: sp.label)


def _clock(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _soundscape_labels(frames: list[pd.DataFrame], labels: list[str]) -> pd.DataFrame:
    """Window truth frames → train_soundscapes_labels.csv rows as released: labelled windows only,
    the whole table twice."""
    rows = []
    for frame in frames:
        values = frame[labels].to_numpy()
        for row_id, present in zip(frame["row_id"], values):
            if present.any():
                stem, end = row_id.rsplit("_", 1)
                rows.append({"filename": f"{stem}.ogg", "start": _clock(int(end) - WINDOW_S), "end": _clock(int(end)),
                             "primary_label": ";".join(np.asarray(labels)[present > 0])})
    table = pd.DataFrame(rows, columns=["filename", "start", "end", "primary_label"])
    return pd.concat([table, table], ignore_index=True)
