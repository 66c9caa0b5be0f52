"""Small file helpers: atomic writes and JSON artefacts."""
from __future__ import annotations

import json
import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd


@contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename.

    A crash or kill leaves either the old file or the new one, never half of one. The file gets
    the mode any new file gets here (0666 less the umask), not ``tempfile.mkstemp``'s 0600, so
    artefacts on a shared machine stay readable to those the umask allows.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp_path = path.parent / f".{path.name}.{secrets.token_hex(4)}{suffix or '.tmp'}"
        try:
            os.close(os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # the kernel applies the umask
            break
        except FileExistsError:
            continue
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_csv(df: pd.DataFrame, path: str | Path, **kwargs: Any) -> Path:
    with atomic_path(path, ".csv") as tmp:
        df.to_csv(tmp, index=False, **kwargs)
    return Path(path)


def write_json(obj: Any, path: str | Path) -> Path:
    with atomic_path(path, ".json") as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")
    return Path(path)


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def write_npz(path: str | Path, **arrays: np.ndarray) -> Path:
    with atomic_path(path, ".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    return Path(path)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


def write_ogg(path: str | Path, x: np.ndarray, sample_rate_hz: int) -> Path:
    """Mono audio ``x`` (n,) as Ogg Vorbis at ``path``, atomically."""
    import soundfile as sf

    with atomic_path(path, ".ogg") as tmp:
        sf.write(str(tmp), x, sample_rate_hz, format="OGG", subtype="VORBIS")
    return Path(path)
