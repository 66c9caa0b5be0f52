"""Site and time-of-day priors from the labelled train soundscapes (2026 layout).

Which species call differs between recorder sites and over the day. Soundscape names of the
2026 layout carry both (``BC2026_Train_0039_S22_20211231_201500``: site S22, 20:15 local time,
:func:`birdclef.data.competition.parse_soundscape_name`). From the labelled windows, every site and every
``HOUR_BIN_H``-hour bin gets a per-class shift in logit space,

    logit(q_kc) - logit(p_c),   q_kc = (n_kc + STRENGTH · p_c) / (N_k + STRENGTH),

where ``n_kc`` counts the windows of site (or hour bin) k labelled with class c, ``N_k`` the
windows of k, and ``p_c`` the class's share of all labelled windows (Laplace-smoothed): a site
seen in few windows stays near the global rate. A test soundscape adds ``site_prior_weight`` ×
(its site's shift + its hour bin's shift) to each window's logits; a site or hour not seen in
training, or a name that does not follow the pattern, adds nothing. Off by default
(``site_prior_weight=0``): it did not measure better on the data at hand (README).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from birdclef.data.competition import parse_soundscape_name

HOUR_BIN_H = 3  # hours per time-of-day bin
STRENGTH = 10.0  # windows of evidence at which a site's own rate weighs as much as the global one
PRIOR_FILE = "site_prior.csv"


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def hour_key(hour: int) -> str:
    start = int(hour) // HOUR_BIN_H * HOUR_BIN_H
    return f"hour:{start:02d}-{start + HOUR_BIN_H:02d}"


def fit_site_prior(windows: pd.DataFrame, labels: list[str], *, strength: float = STRENGTH) -> pd.DataFrame:
    """Labelled windows (columns site, hour, labels ``;``-joined) → the shift table: one row per
    key (``site:<site>``, ``hour:<HH>-<HH>``), one column per class of ``labels``, plus
    ``n_windows``. Windows without a site (or hour) count toward the global rate only. Empty
    (no rows) when no window has a site or hour."""
    index = {label: i for i, label in enumerate(labels)}
    y = np.zeros((len(windows), len(labels)), np.float64)
    for r, text in enumerate(windows["labels"].astype(str)):
        for x in text.split(";"):
            if x in index:
                y[r, index[x]] = 1.0
    p = (y.sum(0) + 0.5) / (len(y) + 1.0)
    keys = {}
    for r, (site, hour) in enumerate(zip(windows["site"], windows["hour"])):
        if isinstance(site, str) and site and site != "nan":
            keys.setdefault(f"site:{site}", []).append(r)
        if pd.notna(hour) and str(hour) != "":
            keys.setdefault(hour_key(int(float(hour))), []).append(r)
    rows = []
    for key in sorted(keys):
        rows_k = keys[key]
        q = (y[rows_k].sum(0) + strength * p) / (len(rows_k) + strength)
        rows.append([key, len(rows_k), *(_logit(q) - _logit(p))])
    return pd.DataFrame(rows, columns=["key", "n_windows", *labels]).set_index("key")


def prior_shift(table: pd.DataFrame, soundscape: str | Path, labels: list[str]) -> np.ndarray:
    """(n_classes,) logit shift for one soundscape: its site's row plus its hour bin's (zeros for
    what the table lacks or a name without site and time)."""
    shift = np.zeros(len(labels), np.float32)
    name = parse_soundscape_name(soundscape)
    if name is None or table is None or table.empty:
        return shift
    for key in (f"site:{name.site}", hour_key(name.hour)):
        if key in table.index:
            shift += table.loc[key, labels].to_numpy(np.float32)
    return shift


def apply_shift(prob: np.ndarray, shift: np.ndarray, weight: float) -> np.ndarray:
    """(n_windows, n_classes) probabilities moved by ``weight`` × ``shift`` in logit space (a new array)."""
    if weight == 0 or not np.any(shift):
        return np.asarray(prob, np.float32).copy()
    z = _logit(np.asarray(prob, np.float64)) + weight * np.asarray(shift, np.float64)[None]
    return (1 / (1 + np.exp(-np.clip(z, -60, 60)))).astype(np.float32)


def load_site_prior(model_dir: str | Path) -> pd.DataFrame | None:
    path = Path(model_dir) / PRIOR_FILE
    if not path.exists():
        return None
    return pd.read_csv(path, index_col="key")
