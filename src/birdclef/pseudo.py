"""Pseudo-labelling: the head labels train_soundscapes, its confident windows join training.

Each round: predict every train soundscape's 5-s windows (with the config's post-processing)
→ keep the windows where some class reaches ``pseudo_threshold`` (at most
``pseudo_max_per_class`` per top class, the most confident first) → retrain the head from
scratch on the labelled training fold plus those windows (loss weight ``pseudo_weight``; soft
targets for multi-label losses, the top class for "ce"). Validation never sees a pseudo label.

Against confirmation drift, a round is kept only if its guard score does not fall: the
competition metric on the train soundscapes when their truth is known
(``train_soundscapes_solution.csv``, as in the demo; note that this scores the very windows it
pseudo-labelled, so it selects rounds but overstates the gain), else the validation AUC. The
first round that lowers it ends the loop and its head is discarded.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from birdclef.config import Config
from birdclef.embeddings import Embedded
from birdclef.examples import PSEUDO, Examples, concat_examples, crop_examples, speech_free_frames
from birdclef.model import HeadMeta, MLPHead, save_head
from birdclef.soundscapes import load_soundscapes, predict_soundscapes, score_windows, soundscape_truth

# fit(examples, extra=..., checkpoint=...) → (model, history, metrics): birdclef.train.train_head with
# the labels, config and progress bound (passed in, so this module does not import the training stage)
Fit = Callable[..., tuple[MLPHead, pd.DataFrame, dict]]


def select_windows(probs: dict[str, np.ndarray], *, threshold: float, max_per_class: int | None
                   ) -> list[tuple[str, int, np.ndarray]]:
    """[(stem, window, probabilities)] of the windows whose top class reaches ``threshold``;
    at most ``max_per_class`` per top class, the most confident first."""
    rows = [(stem, w, p) for stem, prob in probs.items() for w, p in enumerate(prob) if p.max() >= threshold]
    rows.sort(key=lambda r: -float(r[2].max()))
    if max_per_class:
        taken: dict[int, int] = {}
        kept = []
        for r in rows:
            c = int(r[2].argmax())
            if taken.get(c, 0) < max_per_class:
                taken[c] = taken.get(c, 0) + 1
                kept.append(r)
        rows = kept
    return sorted(rows, key=lambda r: (r[0], r[1]))


def pseudo_examples(embedded: dict[str, Embedded], selected: list[tuple[str, int, np.ndarray]], config: Config
                    ) -> Examples | None:
    """Training crops of the selected windows' speech-free frames, with pseudo targets."""
    parts = []
    for stem, w, p in selected:
        e = embedded[stem]
        idx = speech_free_frames(e, w * config.window_s, (w + 1) * config.window_s, config)
        if config.multi_label:  # soft: the confident classes keep their probability, the rest 0
            target = np.where(p >= config.pseudo_threshold, p, 0.0).astype(np.float32)
        else:
            target = np.eye(len(p), dtype=np.float32)[int(p.argmax())]
        group = f"pseudo:{stem}"
        part = crop_examples(e, idx, target, int(p.argmax()), group, group, config.pseudo_weight, config, None, PSEUDO)
        if part is not None:
            parts.append(part)
    return concat_examples(parts) if parts else None


def _precision(selected, labels: list[str], truth: pd.DataFrame | None, config: Config) -> float:
    """Share of the pseudo-positive (window, class) pairs that the hidden truth confirms."""
    if truth is None or not selected:
        return float("nan")
    t = truth.set_index("row_id")
    hits = total = 0
    for stem, w, p in selected:
        row_id = f"{stem}_{int(round((w + 1) * config.window_s))}"
        if row_id not in t.index:
            continue
        for c in np.flatnonzero(p >= config.pseudo_threshold):
            total += 1
            hits += int(t.at[row_id, labels[c]] > 0)
    return hits / total if total else float("nan")


def pseudo_label(
    ex: Examples, labels: list[str], config: Config, model: MLPHead, hist: pd.DataFrame, metrics: dict,
    *, fit: Fit, meta: HeadMeta, progress: bool = True, out_dir: Path | None = None,
) -> tuple[MLPHead, pd.DataFrame, dict, pd.DataFrame]:
    """Up to ``config.pseudo_rounds`` rounds from the trained ``model`` → (kept model, its history,
    its metrics, one row per round: windows kept, their precision against the truth where known,
    val AUC, guard score, gain over the previous kept round, kept).

    ``fit(ex, extra=..., checkpoint=...)`` retrains a head (see :data:`Fit`); ``meta`` describes it.
    The guard without soundscape truth is the validation score ``val_auc`` (with labelled
    soundscape windows: the combined focal + soundscape score, see :mod:`birdclef.train`)."""
    embedded = load_soundscapes(config, progress=progress)
    truth = soundscape_truth(config)

    if not embedded:  # every train soundscape is labelled (or none was readable): nothing to pseudo-label
        truth = None

    def guard(m: MLPHead, val_auc: float) -> float:
        if truth is None:
            return val_auc
        s = score_windows(predict_soundscapes(embedded, m, meta, config), labels, truth, config.window_s)
        return val_auc if s is None else s

    best = guard(model, metrics["val_auc"])
    rows = [{"round": 0, "n_windows": 0, "n_examples": 0, "precision": np.nan, "val_auc": metrics["val_auc"],
             "guard": best, "gain": 0.0, "kept": True}]
    kept = (model, hist, metrics)
    if out_dir is not None:
        for old in out_dir.glob("head_pseudo*.pt"):  # a previous run's rounds would be mistaken for these
            old.unlink()
        save_head(model, meta, out_dir / "head_pseudo0.pt")
    for r in range(1, config.pseudo_rounds + 1):
        selected = select_windows(predict_soundscapes(embedded, kept[0], meta, config),
                                  threshold=config.pseudo_threshold, max_per_class=config.pseudo_max_per_class)
        extra = pseudo_examples(embedded, selected, config)
        row = {"round": r, "n_windows": len(selected), "n_examples": 0 if extra is None else len(extra),
               "precision": _precision(selected, labels, truth, config)}
        if extra is None:
            rows.append(row | {"val_auc": np.nan, "guard": np.nan, "gain": np.nan, "kept": False})
            break
        checkpoint = out_dir / f"checkpoint_pseudo{r}.pt" if out_dir is not None else None
        m, h, met = fit(ex, checkpoint=checkpoint, extra=extra)
        g = guard(m, met["val_auc"])
        if out_dir is not None:
            save_head(m, meta, out_dir / f"head_pseudo{r}.pt")
        ok = bool(g >= best)
        rows.append(row | {"val_auc": met["val_auc"], "guard": g, "gain": g - best, "kept": ok})
        if not ok:
            break
        best, kept = g, (m, h, met)
    table = pd.DataFrame(rows)
    n_kept = int(table["kept"].sum()) - 1
    out_metrics = kept[2] | {"pseudo_rounds_kept": n_kept, "pseudo_guard": "soundscape_score" if truth is not None
                             else "val_auc"}
    if truth is not None:
        out_metrics["soundscape_score"] = float(best)
    return kept[0], kept[1], out_metrics, table


def round_heads(model_dir: str | Path) -> dict[int, Path]:
    """{round: head} saved by a training run's pseudo-labelling (0: before any pseudo label)."""
    model_dir = Path(model_dir)
    return {int(p.stem.removeprefix("head_pseudo")): p for p in sorted(model_dir.glob("head_pseudo*.pt"))}
