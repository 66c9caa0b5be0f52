"""Preprocessing stage: train recordings → cached embeddings + a manifest for training.

Writes ``<work_dir>/preprocess/manifest.csv`` (one row per usable recording) and
``<work_dir>/preprocess/skipped.csv`` (file, reason) for every recording that was not used.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from birdclef.config import Config
from birdclef.data.competition import (competition_paths, load_extra_data, load_taxonomy, load_train_metadata,
                                       select_recordings)
from birdclef.data.sessions import recording_sessions
from birdclef.features.distributed import cluster_client, cluster_embedder
from birdclef.features.embeddings import extract
from birdclef.features.soundscapes import SOLUTION_FILE, labelled_windows, soundscape_files
from birdclef.features.zeroshot import load_zero_shot
from birdclef.io import write_csv, write_json
from birdclef.workdir import WINDOWS_FILE, RunLayout

log = logging.getLogger(__name__)

WINDOWS_SKIPPED = "soundscape_skipped.csv"  # label rows and soundscape files that gave no labelled window


MANIFEST_COLUMNS = ("filename", "primary_label", "secondary_labels", "author", "session", "path", "source",
                    "duration_s", "n_frames", "speech_frames", "status")


@dataclass(frozen=True)
class PreprocessResult:
    manifest: pd.DataFrame  # filename, primary_label, secondary_labels, author, session, path, source, duration_s, n_frames, speech_frames, status
    skipped: pd.DataFrame  # filename, reason
    out_dir: Path


def run_preprocess(*, config: Config) -> PreprocessResult:
    """Embed the selected train recordings (cached) and write the manifest; on ``config.cluster``'s Dask
    workers when it names one (:mod:`birdclef.features.distributed`: the same cache and outputs)."""
    with cluster_client(config.cluster) as client:
        return _preprocess(config, client)


def _preprocess(config: Config, client) -> PreprocessResult:
    paths = competition_paths(config.data_dir)
    taxonomy = load_taxonomy(paths.taxonomy)
    meta, skipped_meta = load_train_metadata(paths.train_csv, taxonomy)
    meta = select_recordings(meta, max_per_class=config.max_recordings_per_class, seed=config.seed)
    meta = meta.assign(path=[str(paths.train_audio / f) for f in meta["filename"]], source="competition")
    if config.extra_data_dirs:  # other years / folders, mapped onto this taxonomy; the competition's come first
        extra, skipped_extra = load_extra_data(config.extra_data_dirs, taxonomy, exclude=meta["path"], metadata=meta)
        extra = select_recordings(extra, max_per_class=config.max_recordings_per_class, seed=config.seed, taken=meta)
        meta, skipped_meta = pd.concat([meta, extra], ignore_index=True), pd.concat([skipped_meta, skipped_extra])
    # recording sessions (recordist + place [+ date], adjacent catalogue numbers): what validation folds keep together
    meta = meta.reset_index(drop=True).assign(session=lambda m: recording_sessions(m))
    files = [Path(p) for p in meta["path"]]
    zero_shot = load_zero_shot(config, taxonomy)  # its logits are cached with the embeddings, for the blend weights
    embedded, report = extract(files, config=config, desc="train recordings",
                               remote=cluster_embedder(client, config),
                               score_columns=None if zero_shot is None else zero_shot.score_columns)
    rows, skipped = [], [skipped_meta]
    for rec, f, (_, rep) in zip(meta.itertuples(index=False), files, report.iterrows()):
        e = embedded.get(str(f))
        if e is None:
            skipped.append(pd.DataFrame([{"filename": rec.filename, "reason": rep["reason"]}]))
            continue
        rows.append({
            "filename": rec.filename, "primary_label": rec.primary_label,
            "secondary_labels": "|".join(rec.secondary_list), "author": _text(getattr(rec, "author", "")),
            "session": rec.session, "path": str(f), "source": rec.source,
            "duration_s": round(e.duration_s, 3), "n_frames": len(e.starts_s),
            "speech_frames": int((e.speech > config.max_speech_fraction).sum()), "status": rep["status"],
        })
    manifest = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)  # the columns even without a row (labelled soundscapes only)
    skipped_df = pd.concat(skipped, ignore_index=True)
    layout = RunLayout.of(config)
    out = layout.preprocess
    write_csv(manifest, layout.manifest)
    write_csv(skipped_df, out / "skipped.csv")
    write_json(config.to_dict(), layout.preprocess_config)
    windows, n_window_skips = _embed_labelled_windows(config, taxonomy, zero_shot, out, client)
    soundscapes, skipped_soundscapes = _embed_train_soundscapes(config, client)
    if len(skipped_soundscapes):  # a train soundscape that failed to embed (locally or on a worker) is listed too
        skipped_df = pd.concat([skipped_df, skipped_soundscapes], ignore_index=True)
        write_csv(skipped_df, out / "skipped.csv")
    n_cached = int((manifest["status"] == "cached").sum()) if len(manifest) else 0
    n_extra = int((manifest["source"] != "competition").sum()) if len(manifest) else 0
    print(f"preprocess: {len(manifest)} recordings embedded ({n_cached} from cache"
          + (f"; {n_extra} from extra_data_dirs" if config.extra_data_dirs else "") + "), "
          f"{len(skipped_df)} skipped (see {out / 'skipped.csv'})"
          + (f"; {len(windows)} labelled windows in {windows['filename'].nunique()} train soundscapes"
             f" ({n_window_skips} label rows or files skipped, see {out / WINDOWS_SKIPPED})" if len(windows) or n_window_skips else "")
          + (f"; {soundscapes} train soundscapes embedded for pseudo-labelling / scoring" if soundscapes else ""))
    return PreprocessResult(manifest, skipped_df, out)


def _embed_labelled_windows(config: Config, taxonomy: pd.DataFrame, zero_shot, out: Path,
                            client=None) -> tuple[pd.DataFrame, int]:
    """Embed the train soundscapes with labelled windows (2026 layout) with the backbone's scores,
    and write ``soundscape_windows.csv`` (the windows of the files that embedded) and
    ``soundscape_skipped.csv`` (label rows that failed validation, files that failed to embed:
    filename, reason). Returns the windows and the number skipped."""
    windows, skipped, n_duplicates = labelled_windows(config, taxonomy)
    if len(windows):
        files = sorted(set(windows["path"]))
        embedded, report = extract(files, config=config, desc="labelled train soundscapes",
                                   remote=cluster_embedder(client, config),
                                   score_columns=None if zero_shot is None else zero_shot.score_columns)
        lost = windows[~windows["path"].isin(set(embedded))]
        if len(lost):
            reasons = dict(zip(report["path"], report["reason"]))
            skipped = pd.concat([skipped, pd.DataFrame({
                "filename": lost["filename"],
                "reason": [f"window {r}: soundscape not embedded ({reasons.get(p, 'unreadable')})"
                           for r, p in zip(lost["row_id"], lost["path"])]})], ignore_index=True)
        windows = windows[windows["path"].isin(set(embedded))]
    if n_duplicates:
        log.info("train_soundscapes_labels.csv: %d duplicated row(s) dropped", n_duplicates)
    write_csv(windows, out / WINDOWS_FILE)
    write_csv(skipped, out / WINDOWS_SKIPPED)
    return windows, len(skipped)


def _text(value: object) -> str:
    """A metadata cell as text; a column that one source lacks reads NaN after joining, which is ''."""
    return "" if value is None or value != value else str(value)


def _embed_train_soundscapes(config: Config, client=None) -> tuple[int, pd.DataFrame]:
    """Embed the train soundscapes when training will read them: for pseudo-labelling, or to be
    scored when their truth is known (the demo). Returns how many were embedded (or cached), and
    those skipped (filename ``train_soundscapes/<name>``, reason)."""
    none = pd.DataFrame(columns=["filename", "reason"])
    if not config.pseudo_rounds and not (Path(config.data_dir) / SOLUTION_FILE).exists():
        return 0, none
    embedded, report = extract(soundscape_files(config), config=config, desc="train soundscapes",
                               remote=cluster_embedder(client, config))
    lost = report[report["status"] == "skipped"]
    return len(embedded), pd.DataFrame({"filename": [f"train_soundscapes/{Path(p).name}" for p in lost["path"]],
                                        "reason": lost["reason"].tolist()}) if len(lost) else none
