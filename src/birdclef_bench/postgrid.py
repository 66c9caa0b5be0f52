"""Post-processing chosen on real density: smoothing × file boost, scored offline on saved window scores.

Every step after the blend acts on one file's (n_windows, n_classes) probabilities, so the grid below is
computed from one submission per run taken before smoothing (the variant ``pre-smooth``: blend → site
prior) and from the backbone's raw zero-shot scores, with no further inference. Each grid point is
scored on the held-out test minutes (all / mapped / unmapped classes) and on the run's saved validation
soundscapes (mixed from its validation fold), so a validation score can be ranked against the test
(Spearman's ρ) over the same points.

File boosts (``m``: the class's maximum over the file's windows):

- ``mult-β``: ``p · m^β`` (the default's step at β = 1);
- ``add-α``: ``p · (1 − α) + α · m``;
- ``evidence``: the additive lift with α = m: ``p · (1 − m) + m²``, strong where the file is sure of the
  class, nothing where it is not (a boost whose strength rises with the file's evidence);
- ``evidence-mult``: that lift, then × m.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from birdclef.data.metric import read_solution
from birdclef.postprocess import smooth_windows

SMOOTHING: dict[str, tuple[float, ...]] = {"none": (1.0,), "k3-soft": (0.1, 0.8, 0.1), "k3-mid": (0.15, 0.7, 0.15),
                                           "k3": (0.25, 0.5, 0.25), "k5": (0.1, 0.2, 0.4, 0.2, 0.1),
                                           "k3-sustained": (0.25, 0.5, 0.25)}  # the kernel ADAPTIVE's step mixes in


def _mult(beta: float) -> Callable[[np.ndarray], np.ndarray]:
    return lambda p: p * np.power(p.max(0, keepdims=True), beta)


def _add(alpha: float) -> Callable[[np.ndarray], np.ndarray]:
    return lambda p: p * (1 - alpha) + alpha * p.max(0, keepdims=True)


def _evidence(p: np.ndarray) -> np.ndarray:
    m = p.max(0, keepdims=True)
    return p * (1 - m) + m * m


BOOSTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "none": lambda p: p, "mult-0.5": _mult(0.5), "mult-1": _mult(1.0), "mult-2": _mult(2.0), "add-0.3": _add(0.3),
    "evidence": _evidence, "evidence-mult": lambda p: _evidence(p) * p.max(0, keepdims=True)}


def sustained(p: np.ndarray, kernel: tuple[float, ...] = (0.25, 0.5, 0.25)) -> np.ndarray:
    """Smoothing as strong as the file shows a class sustained: per class, ``s`` = the share of the file's
    windows scoring at least half its maximum; the smoothed and raw scores mixed with weight min(1, 2·s) (a
    lone call, 1 window of 12: 0.17; a class filling half the minute or more: 1, full smoothing)."""
    p = np.asarray(p, np.float64)
    share = (p >= 0.5 * p.max(0, keepdims=True)).mean(0, keepdims=True)
    a = np.minimum(1.0, 2 * share)
    return p + a * (smooth_windows(p, kernel).astype(np.float64) - p)


ADAPTIVE: dict[str, Callable[[np.ndarray], np.ndarray]] = {"k3-sustained": sustained}


def finish(prob: np.ndarray, smoothing: str, boost: str) -> np.ndarray:
    """One file's (n_windows, n_classes) probabilities → smoothed by ``SMOOTHING[smoothing]`` (a kernel) or
    ``ADAPTIVE[smoothing]`` (a function of the file), then boosted by ``BOOSTS[boost]``; the same shape."""
    if smoothing not in SMOOTHING or boost not in BOOSTS:
        raise ValueError(f"unknown grid point {smoothing!r}/{boost!r}; known: {list(SMOOTHING)} × {list(BOOSTS)}")
    p = np.asarray(prob, np.float64)
    smoothed = ADAPTIVE[smoothing](p) if smoothing in ADAPTIVE else smooth_windows(p, SMOOTHING[smoothing])
    return BOOSTS[boost](np.asarray(smoothed, np.float64))


def files_of(submission: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """A submission's rows per file (row ids ``<stem>_<end_s>``), windows in time order."""
    stem = submission["row_id"].str.rsplit("_", n=1).str[0]
    end = submission["row_id"].str.rsplit("_", n=1).str[1].astype(float)
    ordered = submission.assign(_stem=stem, _end=end).sort_values(["_stem", "_end"], kind="stable")
    return {s: g.drop(columns=["_stem", "_end"]) for s, g in ordered.groupby("_stem", sort=False)}


def test_grid(submission: pd.DataFrame, solution: pd.DataFrame, ignore: pd.DataFrame | None,
              mapped: dict[str, bool]) -> list[dict]:
    """Every (smoothing, boost) of the grid applied file by file to ``submission`` → one row each with
    the held-out scores (:func:`birdclef_bench.realbench.subset_scores`)."""
    from birdclef_bench.realbench import subset_scores

    files = files_of(submission)
    labels = [c for c in submission.columns if c != "row_id"]
    rows = []
    for sm in SMOOTHING:
        for bo in BOOSTS:
            parts = []
            for g in files.values():
                out = g.copy()
                out[labels] = finish(g[labels].to_numpy(np.float64), sm, bo)
                parts.append(out)
            rows.append({"smoothing": sm, "boost": bo,
                         **subset_scores(solution, pd.concat(parts, ignore_index=True), mapped, ignore)})
    return rows


def val_grid(model_dir: str | Path, config, *, zero_shot: bool = False) -> dict[tuple[str, str], float]:
    """{(smoothing, boost): the saved validation soundscapes' score} of a model folder: the head blended
    with the backbone by its saved weights (``zero_shot``: the backbone's own scores, unmapped classes
    constant, as the raw zero-shot reference), then the grid point; NaN everywhere without saved ones."""
    from birdclef.models.valsoundscapes import FILE, finished, score

    path = Path(model_dir) / FILE
    if not path.exists():
        return {(sm, bo): float("nan") for sm in SMOOTHING for bo in BOOSTS}
    with np.load(path) as z:
        prob, truth, counts = z["prob"], z["truth"], np.asarray(z["counts"], int)
        zs = z["zero_shot"] if "zero_shot" in z.files else None
        weights, mapped = z["weights"], z["mapped"].astype(bool)
    if zero_shot:
        if zs is None or not len(mapped):
            return {(sm, bo): float("nan") for sm in SMOOTHING for bo in BOOSTS}
        blended = 1 / (1 + np.exp(-zs.astype(np.float64)))
        blended[:, ~mapped] = 0.5
    else:
        before = config.replace(postprocess=("blend",))
        blended = finished(prob, counts, before, zero_shot=zs, weights=weights if len(weights) else None,
                           mapped=mapped if len(mapped) else None)
    edges = np.cumsum([0, *counts])
    out = {}
    for sm in SMOOTHING:
        for bo in BOOSTS:
            p = np.concatenate([finish(blended[a:b], sm, bo) for a, b in zip(edges[:-1], edges[1:])])
            out[sm, bo] = score(truth, p)
    return out


def run_grid(out: Path, results: pd.DataFrame) -> pd.DataFrame:
    """The grid over every ``pre-smooth`` run of ``results`` (rows of :func:`birdclef_bench.realbench.run_real`,
    with their ``submission`` and ``model_dir``) and over the raw zero-shot scores each construction × split
    saved (``zero_shot/<construction>-<split>.csv``) → one row per run × grid point, written to
    ``<out>/postprocess_grid.csv``."""
    from birdclef.config import build_config
    from birdclef_bench.realbench import mapped_classes, split_name

    rows = []
    done: set[tuple[str, int]] = set()
    pre = results[results["variant"] == "pre-smooth"]
    for r in pre.itertuples(index=False):
        sub = pd.read_csv(r.submission, dtype={"row_id": str})
        task = Path(r.data_dir)
        solution, ignore = read_solution(task / "solution.csv")
        mapped = mapped_classes(task)
        config = build_config(data_dir=str(task))
        val = val_grid(r.model_dir, config)
        for row in test_grid(sub, solution, ignore, mapped):
            rows.append({"source": "trained", "construction": r.construction, "regime": r.regime, "split": r.split,
                         "seed": r.seed, **row, "val": val[row["smoothing"], row["boost"]]})
        key = (r.construction, r.split)
        zpath = out / "zero_shot" / f"{r.construction}-{split_name(int(r.split))}.csv"
        if key not in done and zpath.exists():
            done.add(key)
            zval = val_grid(r.model_dir, config, zero_shot=True)
            for row in test_grid(pd.read_csv(zpath, dtype={"row_id": str}), solution, ignore, mapped):
                rows.append({"source": "zero-shot", "construction": r.construction, "regime": "–", "split": r.split,
                             "seed": -1, **row, "val": zval[row["smoothing"], row["boost"]]})
    grid = pd.DataFrame(rows)
    grid.to_csv(out / "postprocess_grid.csv", index=False)
    return grid


def grid_table(grid: pd.DataFrame, *, reference: tuple[str, str] = ("k3", "mult-1"), key: str = "mapped") -> str:
    """Markdown: per construction, source (the trained default's blend, or raw zero-shot) and grid point, the
    ``key`` score (mean ± sd over runs) and its gain over no post-processing and over ``reference`` (the
    default's smoothing and boost), both paired run by run, with how many runs gained over ``reference``."""
    from birdclef_bench.realbench import mean_sd

    lines = [f"| construction | scores | smoothing | file boost | runs | {key} | vs none: {key} | "
             f"vs {'/'.join(reference)}: {key} | better than {'/'.join(reference)} |", "|---|---|---|---|---|---|---|---|---|"]
    ids = ["regime", "split", "seed"]
    for (construction, source), g in grid.groupby(["construction", "source"], sort=False):
        base = g[(g["smoothing"] == "none") & (g["boost"] == "none")].set_index(ids)[key]
        ref = g[(g["smoothing"] == reference[0]) & (g["boost"] == reference[1])].set_index(ids)[key]
        for (sm, bo), h in g.groupby(["smoothing", "boost"], sort=False):
            h = h.set_index(ids)[key]
            d0 = (h - base.loc[h.index]).reset_index(drop=True)
            d1 = (h - ref.loc[h.index]).reset_index(drop=True)
            lines.append(f"| {construction} | {source} | {sm} | {bo} | {len(h)} | {mean_sd(h.reset_index(drop=True))} | "
                         f"{mean_sd(d0, signed=True)} | {mean_sd(d1, signed=True)} | {int((d1 > 0).sum())}/{len(d1)} |")
    return "\n".join(lines)


def grid_spearman(grid: pd.DataFrame, key: str = "all") -> str:
    """Markdown: per construction and source, Spearman's ρ between the validation soundscapes' score and the
    held-out ``key`` score over the grid points: of the points' means, and within each run (mean ± sd)."""
    from scipy.stats import spearmanr

    from birdclef_bench.realbench import mean_sd

    lines = ["| construction | scores | grid points | ρ of the means | ρ within a run | runs |", "|---|---|---|---|---|---|"]
    for (construction, source), g in grid.dropna(subset=["val", key]).groupby(["construction", "source"], sort=False):
        means = g.groupby(["smoothing", "boost"])[["val", key]].mean()
        rho = spearmanr(means["val"], means[key]).statistic if len(means) >= 3 else float("nan")
        within = [spearmanr(h["val"], h[key]).statistic for _, h in g.groupby(["regime", "split", "seed"])
                  if len(h) >= 3 and h["val"].nunique() > 1]
        lines.append(f"| {construction} | {source} | {len(means)} | {rho:.2f} | {mean_sd(pd.Series(within), 2)} | "
                     f"{len(within)} |")
    return "\n".join(lines)
