"""Exploration helpers: what is in a competition folder, and where people speak."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from birdclef.data import audio
from birdclef.data.competition import CompetitionPaths, load_taxonomy, load_train_metadata
from birdclef.errors import AudioError
from birdclef.features.speech import speech_intervals
from birdclef.progress import tqdm


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


def species_counts(windows: pd.DataFrame, *, by: str, top: int = 20) -> pd.DataFrame:
    """Labelled 5-s soundscape windows per (``by`` value, species) → DataFrame (rows: the values of
    ``by``, e.g. site, sorted, or hour, 0–23; columns: the ``top`` species by window count over all windows).

    ``windows``: :attr:`birdclef.data.competition.SoundscapeLabels.windows` (a ``labels`` list per window).
    Windows whose ``by`` is unknown (a name without site and time) are left out. ``attrs``:
    n_species (species heard in any window) and n_windows (windows counted).
    """
    pairs = windows[[by, "labels"]].explode("labels").dropna(subset=["labels"])
    totals = pairs["labels"].value_counts()
    known = pairs[pairs[by].notna()]
    species = list(totals.index[:top])
    table = (pd.crosstab(known[by], known["labels"]).reindex(columns=species, fill_value=0)
             if len(known) else pd.DataFrame(0, index=pd.Index([], name=by), columns=species))
    if by == "hour":  # every hour of the day, so the gaps show
        table = table.set_axis(table.index.astype(int), axis=0).reindex(range(24), fill_value=0)
        table.index.name = by
    table = table.sort_index()
    table.columns.name = "species"
    table.attrs.update(n_species=len(totals), n_windows=int(windows[by].notna().sum()))
    return table


def window_labels(windows: pd.DataFrame, filename: str) -> dict[float, list[str]]:
    """{window end (s): labels} of one soundscape's labelled windows (``filename`` as in the labels file)."""
    rows = windows[windows["filename"] == filename]
    return {float(end): list(labels) for end, labels in zip(rows["end_s"], rows["labels"])}


def most_labelled(windows: pd.DataFrame | None) -> str | None:
    """The file name of the soundscape with the most (window, label) pairs in ``windows``; None without any."""
    if windows is None or windows.empty:
        return None
    return str(windows.assign(n=windows["labels"].str.len()).groupby("filename")["n"].sum().idxmax())
