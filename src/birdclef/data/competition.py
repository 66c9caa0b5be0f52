"""Competition data: taxonomy, train metadata, labelled train soundscapes and the folder layout.

One reader for every year: columns are read by name in any order (extra ones kept, optional ones
may be absent) and the taxonomy may hold any number of classes. :func:`detect_layout` tells the
2025 layout from the 2026 one (BirdCLEF+ 2026 adds ``train_soundscapes_labels.csv``, soundscape
ids like ``BC2026_Train_0039_S22_20211231_201500``); :func:`data_card` sums a folder up.
Extra training data (``extra_data_dirs``: earlier years' folders, or any in this layout) is mapped
onto the current taxonomy by scientific name: :func:`load_extra_recordings`, :func:`extra_data_summary`.
Labels are always strings: non-bird labels are numeric iNat ids ("1139490").
"""
from __future__ import annotations

import ast
import logging
import math
import re
from dataclasses import dataclass
from datetime import date, time
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np
import pandas as pd

from birdclef.data.sessions import catalogue_id
from birdclef.errors import SchemaError

log = logging.getLogger(__name__)

TAXONOMY_COLUMNS = ("primary_label", "inat_taxon_id", "scientific_name", "common_name", "class_name")
TRAIN_COLUMNS = (
    "primary_label", "secondary_labels", "type", "filename", "collection", "rating", "url",
    "latitude", "longitude", "scientific_name", "common_name", "author", "license",
)
# BirdCLEF+ 2026: the same fields plus class_name and inat_taxon_id, in another order.
TRAIN_COLUMNS_2026 = (
    "primary_label", "secondary_labels", "type", "latitude", "longitude", "scientific_name", "common_name",
    "class_name", "inat_taxon_id", "author", "license", "rating", "url", "filename", "collection",
)
TRAIN_REQUIRED = ("primary_label", "secondary_labels", "filename")
SOUNDSCAPE_LABEL_COLUMNS = ("filename", "start", "end", "primary_label")
WINDOW_S = 5
AUDIO_SUFFIXES = (".ogg", ".flac", ".wav", ".mp3")


@dataclass(frozen=True)
class CompetitionPaths:
    """Where a competition root keeps each part (2025 and 2026 layouts)."""

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
    def train_soundscapes_labels(self) -> Path:
        """Labelled 5-s windows of some train soundscapes (2026 layout on)."""
        return self.root / "train_soundscapes_labels.csv"

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
            f"Fix: the file must have the columns {list(required)} (in any order)."
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


def unsafe_filename(name: object) -> str | None:
    """Why a metadata file's ``filename`` cell may not be joined to its audio folder, or None when it may:
    an empty name, an absolute one (``/etc/passwd``, ``C:\\x``) or one climbing out with ``..`` would
    read a file outside the data folder."""
    text = str(name)
    if not text.strip():
        return "empty filename"
    if PurePosixPath(text).is_absolute() or PureWindowsPath(text).is_absolute() or PureWindowsPath(text).drive:
        return f"filename {text!r} is absolute: it must be relative to the data folder"
    if ".." in PurePosixPath(text.replace("\\", "/")).parts:
        return f"filename {text!r} climbs out of the data folder ('..')"
    return None


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
    for line, row in enumerate(df.itertuples(index=False), start=2):  # line 1 is the header
        reason = None
        sec: list[str] = []
        unsafe = unsafe_filename(row.filename)
        if unsafe is not None:
            reason = f"{unsafe} (line {line} of {path.name})"
            log.warning("%s, line %d: %s; row refused", path, line, unsafe)
        elif row.primary_label not in known:
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
    used = df[np.asarray(keep, bool)].reset_index(drop=True)  # a list would select columns when empty
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


# ---------------------------------------------------------------- soundscape names, layout, labels

_SOUNDSCAPE_NAME = re.compile(r"^(?:.*_)?([A-Z]{1,2}\d+)_(\d{8})_(\d{6})$")


@dataclass(frozen=True)
class SoundscapeName:
    """What a name like ``BC2026_Train_0039_S22_20211231_201500`` encodes (local time)."""

    site: str
    date: date
    time: time

    @property
    def hour(self) -> int:
        return self.time.hour


def parse_soundscape_name(name: str | Path) -> SoundscapeName | None:
    """Site, date and local time from a soundscape file name or id; None when it does not follow
    the ``..._<site>_<YYYYMMDD>_<HHMMSS>`` pattern (site: ``S22`` in 2026, ``H02`` in 2025) or the
    date/time is impossible."""
    m = _SOUNDSCAPE_NAME.match(Path(str(name)).stem if str(name).endswith(AUDIO_SUFFIXES) else str(name))
    if not m:
        return None
    site, d, t = m.groups()
    try:
        return SoundscapeName(site, date(int(d[:4]), int(d[4:6]), int(d[6:])),
                              time(int(t[:2]), int(t[2:4]), int(t[4:])))
    except ValueError:
        return None


def detect_layout(data_dir: str | Path) -> str:
    """``"2026"`` when the folder holds ``train_soundscapes_labels.csv`` or BC2026-style soundscape
    names, else ``"2025"`` (the 2025 layout and this project's demo data)."""
    paths = competition_paths(data_dir)
    if paths.train_soundscapes_labels.is_file():
        return "2026"
    for folder in (paths.train_soundscapes, paths.test_soundscapes):
        if any(p.name.startswith("BC2026_") for p in list_audio(folder)[:50]):
            return "2026"
    return "2025"


def _seconds(value: object) -> float:
    """'HH:MM:SS' (or 'MM:SS', or plain seconds) → seconds; ValueError otherwise."""
    text = str(value).strip()
    parts = text.split(":")
    if not text or len(parts) > 3:
        raise ValueError(f"unparseable time {value!r}")
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"unparseable time {value!r}") from None
    if any(n < 0 or n != n for n in numbers) or any(n >= 60 for n in numbers[1:]):
        raise ValueError(f"unparseable time {value!r}")
    total = 0.0
    for n in numbers:
        total = total * 60 + n
    return total


@dataclass(frozen=True)
class SoundscapeLabels:
    """Parsed ``train_soundscapes_labels.csv``.

    ``windows``: one row per 5-s window, columns filename, start_s, end_s, row_id
    (``<stem>_<end_s>``, as in a submission), labels (list of str), site, hour (None when the
    name does not encode them). ``skipped``: filename, start, end, primary_label, reason.
    ``n_duplicates``: rows dropped as exact repeats (the released file holds every row twice).
    """

    windows: pd.DataFrame
    skipped: pd.DataFrame
    n_duplicates: int


def load_soundscape_labels(path: str | Path, taxonomy: pd.DataFrame, audio_dir: str | Path | None = None
                           ) -> SoundscapeLabels:
    """train_soundscapes_labels.csv → :class:`SoundscapeLabels`.

    Rows are de-duplicated, then validated: times parse, start < end, both on the 5-s grid,
    labels (``;``-separated) in the taxonomy; with ``audio_dir``, the file must exist there and
    the row lie inside its duration. A bad row goes to ``skipped`` with its reason, never raises;
    a missing column raises :class:`SchemaError`. A row spanning several windows gives one row per
    window; windows labelled by several rows get the union of their labels.
    """
    path = Path(path)
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    _require_columns(df, SOUNDSCAPE_LABEL_COLUMNS, path)
    df = df.apply(lambda col: col.str.strip())
    n_rows = len(df)
    df = df.drop_duplicates(subset=list(SOUNDSCAPE_LABEL_COLUMNS))
    lines = df.index.to_numpy() + 2  # each kept row's line in the file (line 1 is the header)
    df = df.reset_index(drop=True)
    n_duplicates = n_rows - len(df)
    known = set(taxonomy["primary_label"])
    durations: dict[str, float | None] = {}

    def duration(filename: str) -> float | None:
        if filename not in durations:
            from birdclef.data.audio import audio_info
            from birdclef.errors import AudioError

            file = Path(audio_dir) / filename
            try:
                durations[filename] = audio_info(file).duration_s if file.is_file() else None
            except AudioError:
                durations[filename] = None
        return durations[filename]

    windows: dict[tuple[str, int], list[str]] = {}
    skipped = []
    for line, row in zip(lines, df.itertuples(index=False)):
        labels = [x.strip() for x in row.primary_label.split(";") if x.strip()]
        reason = None
        try:
            start_s, end_s = _seconds(row.start), _seconds(row.end)
        except ValueError as err:
            reason = str(err)
        else:
            unknown = [x for x in labels if x not in known]
            if start_s >= end_s:
                reason = f"start {row.start} is not before end {row.end}"
            elif start_s % WINDOW_S or end_s % WINDOW_S:
                reason = f"{row.start}-{row.end} is not on the {WINDOW_S}-s window grid"
            elif not labels:
                reason = "no label"
            elif unknown:
                reason = f"label(s) {unknown} not in taxonomy"
            elif unsafe_filename(row.filename) is not None:
                reason = f"{unsafe_filename(row.filename)} (line {line} of {path.name})"
                log.warning("%s, line %d: %s; row refused", path, line, unsafe_filename(row.filename))
            elif audio_dir is not None and duration(row.filename) is None:
                reason = f"audio file missing or unreadable in {audio_dir}"
            elif audio_dir is not None and end_s > duration(row.filename) + 0.5:
                reason = f"end {row.end} is past the file's end ({duration(row.filename):.1f} s)"
        if reason is not None:
            skipped.append({**row._asdict(), "reason": reason})
            continue
        for end in range(int(start_s) + WINDOW_S, int(end_s) + 1, WINDOW_S):
            merged = windows.setdefault((row.filename, end), [])
            merged.extend(x for x in labels if x not in merged)
    if n_duplicates:
        log.info("%s: %d duplicated row(s) dropped", path, n_duplicates)
    if skipped:
        log.warning("%s: %d row(s) skipped (see the skipped table)", path, len(skipped))
    rows = []
    for (filename, end), labels in sorted(windows.items()):
        name = parse_soundscape_name(filename)
        rows.append({"filename": filename, "start_s": end - WINDOW_S, "end_s": end,
                     "row_id": f"{Path(filename).stem}_{end}", "labels": labels,
                     "site": name.site if name else None, "hour": name.hour if name else None})
    columns = ["filename", "start_s", "end_s", "row_id", "labels", "site", "hour"]
    return SoundscapeLabels(pd.DataFrame(rows, columns=columns),
                            pd.DataFrame(skipped, columns=[*SOUNDSCAPE_LABEL_COLUMNS, "reason"]), n_duplicates)


def data_card(data_dir: str | Path) -> dict:
    """A competition folder summed up (what 01_eda shows first) → dict.

    Keys: root, layout ("2025"/"2026"), n_classes, classes_per_class_name ({class_name: n}),
    n_train_recordings, classes_without_train_audio (labels), n_train_soundscapes,
    n_test_soundscapes, labelled_windows, labelled_files, label_rows_duplicated, label_rows_skipped,
    soundscape_only_classes (labels heard only in labelled windows), sites (sorted, from the
    soundscape names).
    """
    paths = competition_paths(data_dir)
    taxonomy = load_taxonomy(paths.taxonomy)
    train = (load_train_metadata(paths.train_csv, taxonomy)[0] if paths.train_csv.is_file()
             else pd.DataFrame(columns=["primary_label"]))
    with_audio = set(train["primary_label"])
    no_audio = [x for x in taxonomy["primary_label"] if x not in with_audio]
    train_sc, test_sc = list_audio(paths.train_soundscapes), list_audio(paths.test_soundscapes)
    card = {
        "root": str(paths.root), "layout": detect_layout(paths.root), "n_classes": len(taxonomy),
        "classes_per_class_name": (taxonomy["class_name"].value_counts().sort_index().to_dict()
                                   if "class_name" in taxonomy else {}),
        "n_train_recordings": len(train), "classes_without_train_audio": no_audio,
        "n_train_soundscapes": len(train_sc), "n_test_soundscapes": len(test_sc),
        "labelled_windows": 0, "labelled_files": 0, "label_rows_duplicated": 0, "label_rows_skipped": 0,
        "soundscape_only_classes": [],
    }
    if paths.train_soundscapes_labels.is_file():
        audio_dir = paths.train_soundscapes if paths.train_soundscapes.is_dir() else None
        labels = load_soundscape_labels(paths.train_soundscapes_labels, taxonomy, audio_dir)
        heard = {x for row in labels.windows["labels"] for x in row}
        card.update(labelled_windows=len(labels.windows), labelled_files=labels.windows["filename"].nunique(),
                    label_rows_duplicated=labels.n_duplicates, label_rows_skipped=len(labels.skipped),
                    soundscape_only_classes=[x for x in no_audio if x in heard])
    names = [parse_soundscape_name(p.name) for p in [*train_sc, *test_sc]]
    card["sites"] = sorted({n.site for n in names if n is not None})
    return card


# ---------------------------------------------------------------- extra training data (other folders, other years)

EXTRA_TRAIN_2023 = "train_metadata.csv"  # BirdCLEF 2022-2024: the 2025 train.csv columns minus collection
EXTRA_TAXONOMY_2023 = "eBird_Taxonomy_v2021.csv"  # SPECIES_CODE, PRIMARY_COM_NAME, SCI_NAME, ...
_EBIRD_COLUMNS = {"SPECIES_CODE": "primary_label", "SCI_NAME": "scientific_name", "PRIMARY_COM_NAME": "common_name"}


def species_key(name: object) -> str:
    """A scientific name compared across taxonomies: case and spacing ignored ('' for none)."""
    return " ".join(str(name or "").lower().split())


def extra_layout(folder: str | Path) -> str:
    """The layout of a folder of extra training data: ``"2023"`` (BirdCLEF 2023/2024:
    train_metadata.csv + eBird_Taxonomy_v2021.csv + train_audio/), else :func:`detect_layout`'s
    ``"2025"``/``"2026"`` for a folder in this project's layout (train.csv + taxonomy.csv + train_audio/)."""
    root = Path(folder).expanduser()
    if (root / EXTRA_TRAIN_2023).is_file() and (root / EXTRA_TAXONOMY_2023).is_file():
        return "2023"
    if (root / "train.csv").is_file() and (root / "taxonomy.csv").is_file():
        return detect_layout(root)
    raise FileNotFoundError(
        f"{root} is not a folder of extra training data: expected train.csv + taxonomy.csv + train_audio/ "
        f"(this project's layout) or {EXTRA_TRAIN_2023} + {EXTRA_TAXONOMY_2023} + train_audio/ (BirdCLEF 2023/2024)")


def load_extra_taxonomy(folder: str | Path) -> pd.DataFrame:
    """An extra folder's own taxonomy → DataFrame with (at least) primary_label and scientific_name;
    the eBird taxonomy of the 2023 layout is renamed to taxonomy.csv's columns."""
    root = Path(folder).expanduser()
    if extra_layout(root) != "2023":
        return load_taxonomy(root / "taxonomy.csv")
    path = root / EXTRA_TAXONOMY_2023
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    _require_columns(df, ("SPECIES_CODE", "SCI_NAME"), path)
    df = df.rename(columns=_EBIRD_COLUMNS)
    df["primary_label"] = df["primary_label"].str.strip()
    return df[df["primary_label"] != ""].drop_duplicates("primary_label").reset_index(drop=True)


@dataclass(frozen=True)
class ExtraRecordings:
    """One extra folder's recordings mapped onto the current taxonomy (:func:`load_extra_recordings`).

    ``recordings``: load_train_metadata's columns with ``primary_label`` and ``secondary_list`` in the
    current taxonomy's labels, plus ``source_label`` (the folder's own label), ``path`` (absolute) and
    ``source`` (the folder, absolute). ``skipped``: filename, reason (rows the folder's own train file
    refuses, and recordings of species the current taxonomy lacks). ``dropped_species``: source_label,
    scientific_name, recordings (one row per unmatched species). ``dropped_secondary``: source_label,
    scientific_name, mentions (secondary labels without a current class).
    """

    folder: Path
    layout: str
    n_rows: int  # rows of the folder's train file
    recordings: pd.DataFrame
    skipped: pd.DataFrame
    dropped_species: pd.DataFrame
    dropped_secondary: pd.DataFrame


def load_extra_recordings(folder: str | Path, taxonomy: pd.DataFrame) -> ExtraRecordings:
    """The train recordings of another folder (an earlier BirdCLEF year, or any folder in this
    project's layout, see :func:`extra_layout`) with labels mapped onto ``taxonomy`` by scientific name.

    A label's scientific name comes from the folder's own taxonomy (else the row's
    ``scientific_name``); it maps to the current class of the same name (case and spacing ignored).
    Recordings of unmatched species are dropped and counted by species; secondary labels map the
    same way, unmapped ones dropped and counted. Audio files are not opened here (the embedding
    stage skips unreadable or missing ones with a reason).
    """
    root = Path(folder).expanduser().resolve()
    layout = extra_layout(root)
    own = load_extra_taxonomy(root)
    train_file = root / (EXTRA_TRAIN_2023 if layout == "2023" else "train.csv")
    rows, skipped = load_train_metadata(train_file, own)
    n_rows = len(rows) + len(skipped)
    science = dict(zip(own["primary_label"], own["scientific_name"])) if "scientific_name" in own else {}
    current: dict[str, str] = {}
    if "scientific_name" in taxonomy:
        for label, name in zip(taxonomy["primary_label"], taxonomy["scientific_name"]):
            if species_key(name):
                current.setdefault(species_key(name), label)
    names = rows["scientific_name"] if "scientific_name" in rows else pd.Series([""] * len(rows))
    keep, primary, secondary, dropped, dropped_sec, skips = [], [], [], {}, {}, []
    for row, row_name in zip(rows.itertuples(index=False), names):
        name = science.get(row.primary_label) or row_name
        label = current.get(species_key(name))
        keep.append(label is not None)
        if label is None:
            dropped[(row.primary_label, name)] = dropped.get((row.primary_label, name), 0) + 1
            skips.append({"filename": row.filename,
                          "reason": f"species {name!r} ({row.primary_label}) not in the current taxonomy"})
            primary.append(None)
            secondary.append([])
            continue
        mapped: list[str] = []
        for s in parse_label_list(row.secondary_labels):  # load_train_metadata parsed it already
            target = current.get(species_key(science.get(s, "")))
            if target is None:
                dropped_sec[(s, science.get(s, ""))] = dropped_sec.get((s, science.get(s, "")), 0) + 1
            elif target != label and target not in mapped:
                mapped.append(target)
        primary.append(label)
        secondary.append(mapped)
    out = rows.assign(source_label=rows["primary_label"], primary_label=primary, secondary_list=secondary,
                      path=[str(root / "train_audio" / f) for f in rows["filename"]], source=str(root))
    out = out[keep].reset_index(drop=True)
    if dropped or dropped_sec:
        log.info("%s: %d recording(s) of %d species and %d secondary label(s) have no class in the current "
                 "taxonomy; dropped", root, sum(dropped.values()), len(dropped), sum(dropped_sec.values()))

    def counts(d: dict, column: str) -> pd.DataFrame:
        table = pd.DataFrame([(label, name, n) for (label, name), n in d.items()],
                             columns=["source_label", "scientific_name", column])
        return table.sort_values([column, "source_label"], ascending=[False, True], ignore_index=True)

    skipped = pd.concat([t for t in (skipped, pd.DataFrame(skips, columns=["filename", "reason"])) if len(t)]
                        or [skipped], ignore_index=True)
    return ExtraRecordings(root, layout, n_rows, out, skipped, counts(dropped, "recordings"),
                           counts(dropped_sec, "mentions"))


SAME_AUDIO_FILE = "the same audio file is already used"


def recording_keys(row: pd.Series) -> list[tuple[str, str]]:
    """What names a recording besides its audio file, as (rule, key) pairs in the order
    :func:`load_extra_data` tries them: its URL (scheme and ``www.`` dropped, lower case), its
    catalogue number (:func:`birdclef.data.sessions.catalogue_id`, e.g. ``xc:12345``) and its file name
    (the last part of ``filename``, lower case). Empty ones are left out."""
    url = str(row.get("url", "") or "").strip().lower()
    url = re.sub(r"^https?://", "", url).removeprefix("www.").rstrip("/")
    name = Path(str(row.get("filename", "") or "")).name.lower()
    pairs = (("the same URL", url), ("the same catalogue number", catalogue_id(row)), ("the same file name", name))
    return [(rule, key) for rule, key in pairs if key and key not in ("nan", "none")]


def load_extra_data(dirs: list[str | Path] | tuple[str | Path, ...], taxonomy: pd.DataFrame, *,
                    exclude: list[str | Path] | tuple = (), metadata: pd.DataFrame | None = None
                    ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every folder of ``dirs`` through :func:`load_extra_recordings`, ready to join the competition's
    recordings → (recordings, skipped: filename, reason).

    ``filename`` becomes ``<folder name>/<filename>`` (a folder name met twice gets ``-2``, ``-3``, ...):
    unique across folders and beside the competition's own ``<label>/<file>``, so the training
    stage, which groups examples by filename, keeps one recording per group. A recording already
    used — the competition's own (audio files in ``exclude``, rows of ``metadata``: filename and,
    where present, url) or an earlier folder's — is skipped: another year's copy of a recording would
    sit on both sides of a validation fold. The first rule that matches is its reason: the same
    audio file, then :func:`recording_keys` (the same URL, catalogue number or file name); one
    warning per reason gives the count.
    """
    parts, skipped, tags = [], [], set()
    seen = {str(Path(p).expanduser().resolve()) for p in exclude}
    known: set[tuple[str, str]] = set()
    if metadata is not None:
        for _, row in metadata.iterrows():
            known.update(recording_keys(row))
    counts: dict[str, int] = {}
    for folder in dirs:
        extra = load_extra_recordings(folder, taxonomy)
        tag, n = extra.folder.name, 1
        while tag in tags:
            n += 1
            tag = f"{extra.folder.name}-{n}"
        tags.add(tag)
        rec = extra.recordings.reset_index(drop=True)
        reasons = []
        for _, row in rec.iterrows():
            keys = recording_keys(row)
            reason = SAME_AUDIO_FILE if row["path"] in seen else next(
                (f"{rule} as a recording already used" for rule, key in keys if (rule, key) in known), "")
            reasons.append(reason)
            if reason:
                counts[reason] = counts.get(reason, 0) + 1
            else:
                seen.add(row["path"])
                known.update(keys)
        twice = np.array([bool(r) for r in reasons], bool)
        rec = rec.assign(filename=[f"{tag}/{f}" for f in rec["filename"]])
        skipped += [extra.skipped.assign(filename=[f"{tag}/{f}" for f in extra.skipped["filename"]]),
                    pd.DataFrame({"filename": rec["filename"][twice], "reason": np.asarray(reasons, object)[twice]})]
        parts.append(rec[~twice])
    for reason, k in counts.items():
        log.warning("extra data: %d recording(s) skipped as duplicates: %s", k, reason)
    columns = [*TRAIN_REQUIRED, "secondary_list", "source_label", "path", "source"]
    recordings = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
    skipped = [t for t in skipped if len(t)]
    return recordings, pd.concat(skipped, ignore_index=True) if skipped else pd.DataFrame(columns=["filename", "reason"])


def extra_data_summary(dirs: list[str | Path] | tuple[str | Path, ...], taxonomy: pd.DataFrame) -> pd.DataFrame:
    """One row per extra folder (what 01_eda shows of ``extra_data_dirs``): folder, layout, recordings
    (rows of its train file), mapped (recordings kept), dropped (of species the current taxonomy
    lacks), skipped (rows refused for other reasons), species_mapped (current classes they add
    recordings to), species_dropped, secondary_dropped (secondary labels without a current class),
    soundscapes (files in unlabeled_soundscapes/ or train_soundscapes/; not used for training)."""
    rows = []
    for folder in dirs:
        extra = load_extra_recordings(folder, taxonomy)
        n_dropped = int(extra.dropped_species["recordings"].sum())
        rows.append({
            "folder": str(extra.folder), "layout": extra.layout, "recordings": extra.n_rows,
            "mapped": len(extra.recordings), "dropped": n_dropped,
            "skipped": extra.n_rows - len(extra.recordings) - n_dropped,
            "species_mapped": extra.recordings["primary_label"].nunique(),
            "species_dropped": len(extra.dropped_species),
            "secondary_dropped": int(extra.dropped_secondary["mentions"].sum()),
            "soundscapes": sum(len(list_audio(extra.folder / d)) for d in ("unlabeled_soundscapes", "train_soundscapes")),
        })
    columns = ["folder", "layout", "recordings", "mapped", "dropped", "skipped", "species_mapped", "species_dropped",
               "secondary_dropped", "soundscapes"]
    return pd.DataFrame(rows, columns=columns)


def select_recordings(meta: pd.DataFrame, *, max_per_class: int | None, seed: int,
                      taken: pd.DataFrame | None = None) -> pd.DataFrame:
    """At most ``max_per_class`` recordings of each primary label (seeded sample), in file order;
    ``taken``: recordings already chosen, counted against each label's limit."""
    if not max_per_class:
        return meta
    rng = np.random.default_rng(seed)
    used = {} if taken is None else taken["primary_label"].value_counts().to_dict()
    keep = []
    for label, group in meta.groupby("primary_label", sort=True):
        idx = group.index.to_numpy()
        keep.extend(rng.choice(idx, size=max(0, min(max_per_class - used.get(label, 0), len(idx))), replace=False))
    return meta.loc[sorted(keep)]


# A soundscape at most this much longer than a whole number of windows gets no extra, nearly
# empty window: the sample submission gives a one-minute file 12 rows, and a file decoded a few
# samples over 60 s must not get a 13th (`_65`) row that Kaggle's solution does not have.
WINDOW_TOLERANCE_S = 0.5


def n_windows(duration_s: float, window_s: float) -> int:
    """Submission rows a soundscape gets: ceil((duration - WINDOW_TOLERANCE_S) / window), at least 1.

    A 60-s file gets 12 rows of 5 s, and so do 59.9 s, 60.001 s and 60.4 s (at most
    :data:`WINDOW_TOLERANCE_S` over a multiple of the window rounds down); 62 s gets 13 (the last
    window partial); 3 s gets 1.
    """
    return max(1, math.ceil((duration_s - WINDOW_TOLERANCE_S) / window_s - 1e-9))


def row_ids(stem: str, count: int, window_s: float = 5.0) -> list[str]:
    """['<stem>_5', '<stem>_10', …] for ``count`` windows of ``window_s`` seconds."""
    return [f"{stem}_{int(round((i + 1) * window_s))}" for i in range(count)]


def build_submission(window_probs: dict[str, np.ndarray], labels: list[str], window_s: float = 5.0) -> pd.DataFrame:
    """{stem: (n_windows, n_classes)} → submission DataFrame (row_id + labels)."""
    frames = []
    for stem, prob in window_probs.items():
        df = pd.DataFrame(np.asarray(prob, np.float64), columns=labels)
        df.insert(0, "row_id", row_ids(stem, len(prob), window_s))
        frames.append(df)
    if not frames:
        return pd.DataFrame(columns=["row_id", *labels])
    return pd.concat(frames, ignore_index=True)
