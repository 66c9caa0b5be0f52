"""Train soundscapes: the labelled windows (2026 layout), the unlabelled files to pseudo-label, and
scoring a head on them.

The labelled windows (``train_soundscapes_labels.csv``, parsed and validated by
:func:`birdclef.data.competition.load_soundscape_labels`) are embedded by the preprocess stage and listed in
``<work_dir>/preprocess/soundscape_windows.csv``; training turns them into examples
(:func:`birdclef.models.examples.soundscape_examples`). The demo also writes the truth of every train
soundscape window (``train_soundscapes_solution.csv``), which scores a head with the competition
metric (:func:`birdclef.models.pseudo.soundscape_metrics`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from birdclef.config import Config
from birdclef.data.competition import competition_paths, list_audio, load_soundscape_labels
from birdclef.features.embeddings import Embedded, extract
from birdclef.workdir import RunLayout

SOLUTION_FILE = "train_soundscapes_solution.csv"  # the demo's hidden truth for train_soundscapes
WINDOW_COLUMNS = ["filename", "path", "start_s", "end_s", "row_id", "labels", "site", "hour"]


def window_labels(text: object) -> list[str]:
    """A ``soundscape_windows.csv`` row's ``labels`` (``;``-joined, as :func:`labelled_windows` writes them) → the
    labels, empty ones left out."""
    return [x for x in str(text).split(";") if x]


def labelled_windows(config: Config, taxonomy: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """The labelled train-soundscape windows of ``config.data_dir`` → (windows with WINDOW_COLUMNS,
    labels ``;``-joined; the label rows skipped (filename, reason); duplicated rows dropped).

    Empty when the data has no ``train_soundscapes_labels.csv`` (the 2025 layout)."""
    paths = competition_paths(config.data_dir)
    if not paths.train_soundscapes_labels.is_file():
        return pd.DataFrame(columns=WINDOW_COLUMNS), pd.DataFrame(columns=["filename", "reason"]), 0
    parsed = load_soundscape_labels(paths.train_soundscapes_labels, taxonomy, paths.train_soundscapes)
    windows = parsed.windows.assign(
        path=[str(paths.train_soundscapes / f) for f in parsed.windows["filename"]],
        labels=[";".join(x) for x in parsed.windows["labels"]])[WINDOW_COLUMNS]
    sk = parsed.skipped
    skipped = pd.DataFrame({"filename": sk["filename"],
                            "reason": [f"label row {s}-{e} ({lab}): {r}" for s, e, lab, r in
                                       zip(sk["start"], sk["end"], sk["primary_label"], sk["reason"])]})
    return windows, skipped, parsed.n_duplicates


def load_windows(config: Config) -> pd.DataFrame:
    """The labelled windows the preprocess stage embedded (empty when there are none)."""
    path = RunLayout.of(config).windows
    if not path.exists():
        return pd.DataFrame(columns=WINDOW_COLUMNS)
    return pd.read_csv(path, dtype={"labels": str, "filename": str, "row_id": str, "site": str},
                       keep_default_na=False)


def soundscape_files(config: Config) -> list[Path]:
    """The train soundscapes to pseudo-label: those without labelled windows (their truth is known
    already); all, or a seeded sample of ``pseudo_max_soundscapes``."""
    files = list_audio(competition_paths(config.data_dir).train_soundscapes)
    labelled = set(load_windows(config)["filename"])
    files = [f for f in files if f.name not in labelled]
    if config.pseudo_max_soundscapes and len(files) > config.pseudo_max_soundscapes:
        pick = np.random.default_rng(config.seed).choice(len(files), config.pseudo_max_soundscapes, replace=False)
        files = [files[i] for i in sorted(pick)]
    return files


def load_soundscapes(config: Config, *, progress: bool = False, score_columns: np.ndarray | None = None
                     ) -> dict[str, Embedded]:
    """{stem: Embedded} of the train soundscapes (cached like every embedding; unreadable ones left out);
    ``score_columns``: the backbone's species columns to keep with them (for its zero-shot blend)."""
    files = soundscape_files(config)
    embedded, _ = extract(files, config=config, desc="train soundscapes", progress=progress,
                          score_columns=score_columns)
    return {Path(p).stem: e for p, e in embedded.items()}


def soundscape_truth(config: Config) -> pd.DataFrame | None:
    path = Path(config.data_dir) / SOLUTION_FILE
    return pd.read_csv(path, dtype={"row_id": str}) if path.exists() else None
