"""Exploration helpers: what is in a competition folder, and where people speak."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from birdclef import audio
from birdclef.data import CompetitionPaths, load_taxonomy, load_train_metadata
from birdclef.errors import AudioError
from birdclef.speech import speech_intervals


def recording_table(paths: CompetitionPaths) -> tuple[pd.DataFrame, pd.DataFrame]:
    """train.csv joined with each file's header → (recordings, skipped).

    recordings: train.csv columns + class_name, duration_s, sample_rate_hz, channels.
    skipped: filename, reason (unknown label, missing or unreadable file).
    """
    taxonomy = load_taxonomy(paths.taxonomy)
    meta, skipped = load_train_metadata(paths.train_csv, taxonomy)
    meta = meta.merge(taxonomy[["primary_label", "class_name"]], on="primary_label", how="left",
                      suffixes=("", "_taxonomy"))
    info, bad = [], []
    for f in tqdm(meta["filename"], desc="reading headers", unit="file", mininterval=1.0):
        try:
            i = audio.audio_info(paths.train_audio / f)
            info.append((i.duration_s, i.sample_rate_hz, i.channels))
        except AudioError as err:
            info.append((np.nan, np.nan, np.nan))
            bad.append({"filename": f, "reason": str(err)})
    meta[["duration_s", "sample_rate_hz", "channels"]] = pd.DataFrame(info, index=meta.index)
    ok = meta["duration_s"].notna()
    return meta[ok].reset_index(drop=True), pd.concat([skipped, pd.DataFrame(bad, columns=["filename", "reason"])],
                                                      ignore_index=True)


def speech_survey(files: list[Path], *, threshold: float = 0.9, min_speech_s: float = 0.5, max_s: float = 60.0
                  ) -> pd.DataFrame:
    """Silero VAD over the first ``max_s`` seconds of each file → file, speech_s, intervals
    (the pipeline's settings by default: see :class:`birdclef.config.Config` ``vad_threshold``)."""
    rows = []
    for f in tqdm(files, desc="VAD", unit="file", mininterval=1.0):
        try:
            x, sr = audio.read_audio(f, duration_s=max_s)
        except AudioError as err:
            rows.append({"file": str(f), "speech_s": np.nan, "intervals": [], "error": str(err)})
            continue
        iv = speech_intervals(x, sr, threshold=threshold, min_speech_s=min_speech_s)
        rows.append({"file": str(f), "speech_s": round(sum(b - a for a, b in iv), 2), "intervals": iv, "error": ""})
    return pd.DataFrame(rows)
