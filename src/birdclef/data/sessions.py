"""Recording sessions: which recordings must stay on one side of a train / held-out split.

Two recordings of one recordist made at one place on one day share the bird, the microphone, the
background and often the very individual (Xeno-canto uploads such a session as consecutive
catalogue numbers, e.g. XC33702 / XC33703). A model validated or tested on one of them after
training on the other is measured on a near-copy. A *session* is the connected group of
recordings linked by either rule:

- same recordist, same place (coordinates in one ``place_deg`` grid cell; a missing place never
  links) and, where the metadata has a ``date`` column, the same date;
- same recordist and catalogue numbers of one collection at most ``adjacent`` apart, unless both
  places are known and differ (the place of such uploads is often left empty; a trip's uploads
  run on through many places).

A recording without a recordist is a session of its own, and so is one whose recordist is a
placeholder (``unknown``, ``anonymous``, empty, NaN, ``n/a``, in any case and spacing:
:func:`recordist`): a placeholder names nobody, so it links nothing.
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

# what metadata writes where it does not know the recordist (compared after :func:`_name_key`)
PLACEHOLDER_RECORDISTS = frozenset({
    "", "unknown", "unknow", "unkown", "anonymous", "anon", "anonym", "nan", "none", "null", "nil", "na", "n a",
    "not available", "not known", "not specified", "unspecified", "undefined", "missing", "no name", "no author",
    "unknown author", "author unknown", "unknown recordist", "recordist unknown", "unknown user", "anonymous user",
})


def _name_key(value: object) -> str:
    """A name compared across rows: case, spacing and punctuation ignored ('' for None or NaN)."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    return " ".join(re.sub(r"[^\w]+", " ", str(value).casefold()).split())


def recordist(value: object) -> str:
    """The recordist an ``author`` cell names, as compared between rows (case, spacing and punctuation
    ignored), or '' where it names nobody: empty, NaN or a placeholder (:data:`PLACEHOLDER_RECORDISTS`)."""
    key = _name_key(value)
    return "" if key in PLACEHOLDER_RECORDISTS else key


_CATALOGUE = re.compile(r"(?:xeno-canto\.org/|\bXC|inaturalist\.org/observations/|iNat|CSA)(\d+)", re.IGNORECASE)


def _catalogue_match(row: pd.Series) -> re.Match | None:
    """The first catalogue reference in the recording's URL, else its file name."""
    for key in ("url", "filename"):
        m = _CATALOGUE.search(str(row.get(key, "") or ""))
        if m:
            return m
    return None


def catalogue_number(row: pd.Series) -> int | None:
    """The recording's number in its collection (Xeno-canto, iNaturalist, CSA) from its URL or file name."""
    m = _catalogue_match(row)
    return None if m is None else int(m.group(1))


def catalogue_id(row: pd.Series) -> str | None:
    """``<collection>:<number>`` (``xc``, ``inat`` or ``csa``) from the recording's URL or file name, or
    None: the same recording under two names (another year's folder, a renamed file) has one id."""
    m = _catalogue_match(row)
    if m is None:
        return None
    prefix = m.group(0)[: -len(m.group(1))].lower()
    kind = "xc" if "xeno" in prefix or prefix.endswith("xc") else "inat" if "inat" in prefix else "csa"
    return f"{kind}:{int(m.group(1))}"


class _Union:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def join(self, i: int, j: int) -> None:
        a, b = self.find(i), self.find(j)
        if a != b:
            self.parent[max(a, b)] = min(a, b)


def _place(lat: object, lon: object, place_deg: float) -> tuple[int, int] | None:
    try:
        la, lo = float(lat), float(lon)
    except (TypeError, ValueError):
        return None
    if not (np.isfinite(la) and np.isfinite(lo)):
        return None
    return int(np.floor(la / place_deg)), int(np.floor(lo / place_deg))


def recording_sessions(meta: pd.DataFrame, *, place_deg: float = 0.01, adjacent: int = 3) -> np.ndarray:
    """(n,) session name of each row of ``meta`` (train.csv rows: filename, author, and where present
    url, latitude, longitude, collection, date), named after the session's first row's filename."""
    meta = meta.reset_index(drop=True)
    n = len(meta)
    union = _Union(n)
    author = [recordist(a) for a in meta.get("author", pd.Series([""] * n))]
    date = meta["date"].fillna("").astype(str).str.strip() if "date" in meta else pd.Series([""] * n)
    collection = meta.get("collection", pd.Series([""] * n)).fillna("").astype(str)
    lat = meta.get("latitude", pd.Series([None] * n))
    lon = meta.get("longitude", pd.Series([None] * n))
    first: dict[tuple, int] = {}
    numbered: dict[tuple[str, str], list[tuple[int, int]]] = {}
    places = [_place(lat[i], lon[i], place_deg) for i in range(n)]
    for i in range(n):
        if not author[i]:
            continue
        place = places[i]
        if place is not None:
            key = (author[i], place, date[i])
            if key in first:
                union.join(first[key], i)
            else:
                first[key] = i
        number = catalogue_number(meta.iloc[i])
        if number is not None:
            numbered.setdefault((author[i], collection[i]), []).append((number, i))
    for rows in numbered.values():
        rows.sort()
        for (a, i), (b, j) in zip(rows, rows[1:]):
            # a trip uploads many places in a row: neighbours link only where their places agree (or one is unknown)
            if b - a <= adjacent and (places[i] is None or places[j] is None or places[i] == places[j]):
                union.join(i, j)
    names = meta["filename"].astype(str).to_numpy()
    return np.array([f"session:{names[union.find(i)]}" for i in range(n)], dtype=object)
