"""Competition data: taxonomy, train metadata and the folder layout (BirdCLEF 2025).

Labels are always strings: non-bird labels are numeric iNat ids ("1139490").
"""
from __future__ import annotations

import ast
import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from birdclef.errors import SchemaError

log = logging.getLogger(__name__)

TAXONOMY_COLUMNS = ("primary_label", "inat_taxon_id", "scientific_name", "common_name", "class_name")
TRAIN_COLUMNS = (
    "primary_label", "secondary_labels", "type", "filename", "collection", "rating", "url",
    "latitude", "longitude", "scientific_name", "common_name", "author", "license",
)
TRAIN_REQUIRED = ("primary_label", "secondary_labels", "filename")
AUDIO_SUFFIXES = (".ogg", ".flac", ".wav", ".mp3")


@dataclass(frozen=True)
class CompetitionPaths:
    """Where a competition root keeps each part (2025 layout)."""

    root: Path

    @property
    def taxonomy(self) -> Path:
        return self.root / "taxonomy.csv"

    @property
    def train_csv(self) -> Path:
        return self.root / "train.csv"

    @property
    def train_audio(self) -> Path:
        return self.root / "train_audio"

    @property
    def train_soundscapes(self) -> Path:
        return self.root / "train_soundscapes"

    @property
    def test_soundscapes(self) -> Path:
        return self.root / "test_soundscapes"

    @property
    def sample_submission(self) -> Path:
        return self.root / "sample_submission.csv"

    @property
    def solution(self) -> Path:
        """Hidden-style truth for test soundscapes (demo data only)."""
        return self.root / "solution.csv"


def competition_paths(data_dir: str | Path) -> CompetitionPaths:
    """Check that ``data_dir`` is a competition root (it holds taxonomy.csv)."""
    root = Path(data_dir).expanduser()
    if not (root / "taxonomy.csv").is_file():
        raise FileNotFoundError(
            f"{root} is not a BirdCLEF competition folder: no taxonomy.csv there "
            "(point data_dir at the folder holding taxonomy.csv, train.csv and train_audio/)"
        )
    return CompetitionPaths(root)


def _require_columns(df: pd.DataFrame, required: tuple[str, ...], path: Path) -> None:
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise SchemaError(
            f"{path}: missing column(s) {missing}; found {list(df.columns)}. "
            f"Fix: the file must have the columns {list(required)} (BirdCLEF 2025 layout)."
        )


def load_taxonomy(path: str | Path) -> pd.DataFrame:
    """taxonomy.csv → DataFrame in file order; every column read as string."""
    path = Path(path)
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    _require_columns(df, ("primary_label",), path)
    df["primary_label"] = df["primary_label"].str.strip()
    dup = df["primary_label"][df["primary_label"].duplicated()].tolist()
    if dup:
        raise SchemaError(f"{path}: duplicated primary_label(s) {dup[:5]}. Fix: one row per class.")
    if (df["primary_label"] == "").any():
        raise SchemaError(f"{path}: empty primary_label. Fix: every class needs a label.")
    return df.reset_index(drop=True)


def parse_label_list(value: object) -> list[str]:
    """"['a', 'b']" (or a real list, '', NaN) → ['a', 'b']; labels as stripped strings."""
    if isinstance(value, list):
        items = value
    elif value is None or (isinstance(value, float) and value != value) or str(value).strip() in ("", "[]", "['']"):
        return []
    else:
        try:
            items = ast.literal_eval(str(value))
        except (ValueError, SyntaxError) as err:
            raise ValueError(f"not a Python list string: {value!r}") from err
        if isinstance(items, (str, int)):
            items = [items]
    return [str(x).strip() for x in items if str(x).strip()]


def load_train_metadata(path: str | Path, taxonomy: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """train.csv → (rows to use, rows skipped with a ``reason``).

    Schema problems (missing required columns) raise :class:`SchemaError`. Row problems
    (label not in taxonomy, unparsable secondary labels, duplicates) skip the row and record
    why. Secondary labels that are not in the taxonomy are dropped from the list (logged).
    Adds ``secondary_list`` (list of str).
    """
    path = Path(path)
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    _require_columns(df, TRAIN_REQUIRED, path)
    known = set(taxonomy["primary_label"])
    df["primary_label"] = df["primary_label"].str.strip()
    skipped: list[dict[str, str]] = []
    keep = []
    seen: set[str] = set()
    secondary: list[list[str]] = []
    n_dropped_secondary = 0
    for row in df.itertuples(index=False):
        reason = None
        sec: list[str] = []
        if row.primary_label not in known:
            reason = f"primary_label {row.primary_label!r} not in taxonomy"
        elif row.filename in seen:
            reason = "duplicated filename in train.csv"
        else:
            try:
                parsed = parse_label_list(row.secondary_labels)
            except ValueError as err:
                reason = str(err)
            else:
                sec = [s for s in parsed if s in known and s != row.primary_label]
                n_dropped_secondary += len([s for s in parsed if s not in known])
        keep.append(reason is None)
        secondary.append(sec)
        if reason is None:
            seen.add(row.filename)
        else:
            skipped.append({"filename": row.filename, "reason": reason})
    if n_dropped_secondary:
        log.warning("%s: %d secondary label(s) not in the taxonomy were ignored", path, n_dropped_secondary)
    df["secondary_list"] = secondary
    used = df[keep].reset_index(drop=True)
    return used, pd.DataFrame(skipped, columns=["filename", "reason"])


def list_audio(folder: str | Path) -> list[Path]:
    """Audio files directly in ``folder`` (sorted); an absent folder gives []."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = sorted(p for p in folder.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)
    for p in found:
        if not p.is_file():
            log.warning("%s is named like audio but is not a file; ignored", p)
    return [p for p in found if p.is_file()]
