"""Preprocessing stage: train recordings → cached embeddings + a manifest for training.

Writes ``<work_dir>/preprocess/manifest.csv`` (one row per usable recording) and
``<work_dir>/preprocess/skipped.csv`` (file, reason) for every recording that was not used.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from birdclef.config import Config
from birdclef.data import competition_paths, load_taxonomy, load_train_metadata
from birdclef.embeddings import extract
from birdclef.io import write_csv, write_json
from birdclef.zeroshot import load_zero_shot

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreprocessResult:
    manifest: pd.DataFrame  # filename, primary_label, secondary_labels, author, path, duration_s, n_frames, speech_frames, status
    skipped: pd.DataFrame  # filename, reason
    out_dir: Path


def select_recordings(meta: pd.DataFrame, *, max_per_class: int | None, seed: int) -> pd.DataFrame:
    """At most ``max_per_class`` recordings of each primary label (seeded sample), in file order."""
    if not max_per_class:
        return meta
    rng = np.random.default_rng(seed)
    keep = []
    for _, group in meta.groupby("primary_label", sort=True):
        idx = group.index.to_numpy()
        keep.extend(rng.choice(idx, size=min(max_per_class, len(idx)), replace=False))
    return meta.loc[sorted(keep)]


def run_preprocess(*, config: Config) -> PreprocessResult:
    """Embed the selected train recordings (cached) and write the manifest."""
    paths = competition_paths(config.data_dir)
    taxonomy = load_taxonomy(paths.taxonomy)
    meta, skipped_meta = load_train_metadata(paths.train_csv, taxonomy)
    meta = select_recordings(meta, max_per_class=config.max_recordings_per_class, seed=config.seed)
    files = [paths.train_audio / f for f in meta["filename"]]
    zero_shot = load_zero_shot(config, taxonomy)  # its logits are cached with the embeddings, for the blend weights
    embedded, report = extract(files, config=config, desc="train recordings",
                               score_columns=None if zero_shot is None else zero_shot.score_columns)
    rows, skipped = [], [skipped_meta]
    for rec, f, (_, rep) in zip(meta.itertuples(index=False), files, report.iterrows()):
        e = embedded.get(str(f))
        if e is None:
            skipped.append(pd.DataFrame([{"filename": rec.filename, "reason": rep["reason"]}]))
            continue
        rows.append({
            "filename": rec.filename, "primary_label": rec.primary_label,
            "secondary_labels": "|".join(rec.secondary_list), "author": str(getattr(rec, "author", "") or ""),
            "path": str(f),
            "duration_s": round(e.duration_s, 3), "n_frames": len(e.starts_s),
            "speech_frames": int((e.speech > config.max_speech_fraction).sum()), "status": rep["status"],
        })
    manifest = pd.DataFrame(rows)
    skipped_df = pd.concat(skipped, ignore_index=True)
    out = Path(config.work_dir) / "preprocess"
    write_csv(manifest, out / "manifest.csv")
    write_csv(skipped_df, out / "skipped.csv")
    write_json(config.to_dict(), out / "config.json")
    soundscapes = _embed_train_soundscapes(config)
    n_cached = int((manifest["status"] == "cached").sum()) if len(manifest) else 0
    print(f"preprocess: {len(manifest)} recordings embedded ({n_cached} from cache), "
          f"{len(skipped_df)} skipped (see {out / 'skipped.csv'})"
          + (f"; {soundscapes} train soundscapes embedded for pseudo-labelling / scoring" if soundscapes else ""))
    return PreprocessResult(manifest, skipped_df, out)


def _embed_train_soundscapes(config: Config) -> int:
    """Embed the train soundscapes when training will read them: for pseudo-labelling, or to be
    scored when their truth is known (the demo). Returns how many were embedded (or cached)."""
    from birdclef.pseudo import SOLUTION_FILE, soundscape_files

    if not config.pseudo_rounds and not (Path(config.data_dir) / SOLUTION_FILE).exists():
        return 0
    embedded, _ = extract(soundscape_files(config), config=config, desc="train soundscapes")
    return len(embedded)
