"""Noisy student: the current models label train_soundscapes, a student retrains with those soft labels.

Each round: predict every train soundscape's 5-s windows with the ensemble (the given teachers,
any mix of SED runs and MLP heads as path → (n_windows, k) functions, plus the student kept so
far) → soft targets ``probability ** student_power`` (every window, confident or not: a low
probability is a soft negative; each window's sum capped at ``student_cap``, through the same
:func:`birdclef.models.softlabels.soft_targets` as the embedding head's noisy student) → train a new
student on the labelled clips plus these windows
(each epoch draws ``student_share`` of its clips from them, loss weight ``student_weight``;
augmented as any clip: mixup, SpecAugment — the noise in "noisy student") → guard.

A round is kept only if its guard score does not fall: by default the validation AUC on
held-out recordings; :func:`soundscape_guard` scores the competition metric on train
soundscapes whose truth is known (the demo), like :mod:`birdclef.models.pseudo` does for the MLP —
that scores the very windows it pseudo-labelled, so it selects rounds but overstates the gain.
The first round that lowers it ends the loop. :func:`noisy_student` returns the kept student
and one row per round.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from birdclef.models.sed.config import SedConfig
from birdclef.models.sed.data import SedClips
from birdclef.models.sed.infer import Predictor, predict_file
from birdclef.models.sed.model import SedModel
from birdclef.models.sed.train import SedTrainResult, train_sed
from birdclef.models.softlabels import soft_targets

Guard = Callable[[SedModel, SedTrainResult], float]


def ensemble_probabilities(predictors: Sequence[Predictor], files: Sequence[str | Path]) -> dict[str, np.ndarray]:
    """{str(path): (n_windows, k)} the mean of every predictor's window probabilities."""
    if not predictors:
        raise ValueError("no model to predict the soundscapes with")
    out = {}
    for f in files:
        out[str(f)] = np.mean([np.asarray(p(f), np.float64) for p in predictors], axis=0).astype(np.float32)
    return out


def pseudo_windows(probs: dict[str, np.ndarray], *, power: float, weight: float, window_s: float = 5.0,
                   cap: float | None = None) -> pd.DataFrame:
    """Soft-labelled windows: path, start_s, end_s, targets ((k,): :func:`birdclef.models.softlabels.soft_targets`,
    probability ** power, each window's sum capped at ``cap``), weight."""
    rows = []
    for path, prob in probs.items():
        for w, t in enumerate(soft_targets(prob, power=power, cap=cap)):
            rows.append({"path": str(path), "start_s": w * window_s, "end_s": (w + 1) * window_s,
                         "targets": t, "weight": float(weight)})
    return pd.DataFrame(rows, columns=["path", "start_s", "end_s", "targets", "weight"])


def soundscape_guard(files: Sequence[str | Path], truth: pd.DataFrame, labels: Sequence[str], config: SedConfig
                     ) -> Guard:
    """A guard scoring the competition metric of a student on ``files`` against ``truth`` (row_id + labels)."""
    from birdclef.data.metric import score_windows

    def guard(model: SedModel, result: SedTrainResult) -> float:
        probs = {Path(f).stem: predict_file(model, config, f) for f in files}
        s = score_windows(probs, list(labels), truth, config.window_s)
        return result.metrics["val_auc"] if s is None else float(s)

    return guard


def val_auc_guard(model: SedModel, result: SedTrainResult) -> float:
    return float(result.metrics["val_auc"])


def noisy_student(initial: SedTrainResult, train: SedClips, config: SedConfig, soundscapes: Sequence[str | Path], *,
                  teachers: Sequence[Predictor] = (), val: SedClips | None = None, guard: Guard = val_auc_guard,
                  rounds: int | None = None, device=None, progress: bool = True
                  ) -> tuple[SedTrainResult, pd.DataFrame]:
    """Up to ``rounds`` (default ``config.student_rounds``) rounds from ``initial`` → (kept result, one
    row per round: round, n_windows, mean_top_target, val_auc, guard, gain, kept). Round 0 is ``initial``.
    Without ``teachers`` the kept student alone labels the soundscapes."""
    rounds = config.student_rounds if rounds is None else rounds
    kept = initial
    best = guard(initial.model, initial)
    table = [{"round": 0, "n_windows": 0, "mean_top_target": np.nan, "val_auc": initial.metrics["val_auc"],
              "guard": best, "gain": 0.0, "kept": True}]
    student_config = config.replace(window_share=config.student_share)
    for r in range(1, rounds + 1):
        predictors = [*teachers, (lambda m: (lambda f: predict_file(m, config, f)))(kept.model)]
        windows = pseudo_windows(ensemble_probabilities(predictors, soundscapes), power=config.student_power,
                                 weight=config.student_weight, window_s=config.window_s, cap=config.student_cap)
        data = SedClips(train.recordings, train.labels, student_config,
                        windows=pd.concat([train.windows, windows], ignore_index=True),
                        teacher=train.teacher, cache=train.cache)
        result = train_sed(data, student_config, val=val, device=device, progress=progress,
                           desc=f"student round {r}")
        g = guard(result.model, result)
        ok = bool(g >= best)
        table.append({"round": r, "n_windows": len(windows),
                      "mean_top_target": float(np.mean([t.max() for t in windows["targets"]])) if len(windows) else np.nan,
                      "val_auc": result.metrics["val_auc"], "guard": g, "gain": g - best, "kept": ok})
        if not ok:
            break
        best, kept = g, result
    out = pd.DataFrame(table)
    metrics = {**kept.metrics, "student_rounds_kept": int(out["kept"].sum()) - 1, "student_guard": float(best)}
    return dataclasses.replace(kept, metrics=metrics), out
