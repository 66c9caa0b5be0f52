"""Pseudo-labelling: the head labels train_soundscapes, those windows join training.

Two kinds of targets (``pseudo_targets``):

- ``"confident"`` (the earlier rounds): predict every train soundscape's 5-s windows (with the
  config's post-processing) → keep the windows where some class reaches ``pseudo_threshold`` (at
  most ``pseudo_max_per_class`` per top class, the most confident first); soft targets for
  multi-label losses (the confident classes keep their probability), the top class for "ce".
- ``"soft"`` (noisy student, issue 20): every window, confident or not; the teacher is the kept
  head post-processed as the submission would (its zero-shot blend chosen on validation, the chain);
  target = probability ** ``pseudo_power``, each window's sum capped at ``pseudo_cap``
  (:func:`birdclef.models.softlabels.soft_targets`, shared with the SED noisy student).

Either way the head retrains from scratch on the labelled training fold plus those windows' crops
(loss weight ``pseudo_weight``; ``pseudo_share`` draws that share of each batch from them through a
sampler of their own, ``pseudo_mixup`` mixes one into each focal crop: :func:`birdclef.models.train.train_head`).
Validation never sees a pseudo label.

Against confirmation drift, a round is kept only if its guard score does not fall. The guard is the
validation score that best predicts the test: the validation soundscapes after the submission's
post-processing (``val_mix_auc_finished``, :mod:`birdclef.models.valsoundscapes`) when the run has them;
else the competition metric on the train soundscapes when their truth is known
(``train_soundscapes_solution.csv``, as in the demo; it scores the very windows it pseudo-labelled,
so it selects rounds but overstates the gain); else the validation AUC. The first round that lowers
it ends the loop and its head is discarded.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from birdclef.config import Config
from birdclef.data.metric import score_windows
from birdclef.features.embeddings import Embedded
from birdclef.features.soundscapes import load_soundscapes, soundscape_truth
from birdclef.features.zeroshot import ZeroShot
from birdclef.models.examples import PSEUDO, Examples, concat_examples, crop_examples, speech_free_frames
from birdclef.models.head import HeadMeta, MLPHead, save_head, soundscape_probabilities
from birdclef.models.softlabels import soft_targets
from birdclef.postprocess import zero_shot_weights

log = logging.getLogger(__name__)

# fit(examples, extra=..., checkpoint=...) → (model, history, metrics): birdclef.models.train.train_head with
# the labels, config and progress bound (passed in, so this module does not import the training stage)
Fit = Callable[..., tuple[MLPHead, pd.DataFrame, dict]]
# judge(model) → (its metadata with the zero-shot blend the submission would use, its score on the validation
# soundscapes after the submission's post-processing or None without them): birdclef.models.train's, passed in
Judge = Callable[[MLPHead], tuple[HeadMeta, "float | None"]]


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


def soft_examples(embedded: dict[str, Embedded], probs: dict[str, np.ndarray], config: Config
                  ) -> tuple[Examples | None, int, float]:
    """Training crops of every window of ``probs`` ({stem: (n_windows, n_classes) teacher probabilities})
    with soft targets (:func:`birdclef.models.softlabels.soft_targets`: ``pseudo_power``, ``pseudo_cap``) →
    (examples or None, windows that gave a crop, mean target sum over those windows)."""
    parts, sums = [], []
    for stem, prob in probs.items():
        e = embedded[stem]
        group = f"pseudo:{stem}"
        for w, t in enumerate(soft_targets(prob, power=config.pseudo_power, cap=config.pseudo_cap)):
            idx = speech_free_frames(e, w * config.window_s, (w + 1) * config.window_s, config)
            part = crop_examples(e, idx, t, int(t.argmax()), group, group, config.pseudo_weight, config, None, PSEUDO)
            if part is not None:
                parts.append(part)
                sums.append(float(t.sum()))
    if not parts:
        return None, 0, float("nan")
    return concat_examples(parts), len(sums), float(np.mean(sums))


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
    *, fit: Fit, meta: HeadMeta, progress: bool = True, out_dir: Path | None = None, judge: Judge | None = None,
    zero_shot: ZeroShot | None = None,
) -> tuple[MLPHead, pd.DataFrame, dict, pd.DataFrame, Examples | None]:
    """Up to ``config.pseudo_rounds`` rounds from the trained ``model`` → (kept model, its history,
    its metrics, one row per round: windows labelled, their crops, precision against the truth where
    known (confident targets), mean target sum per window, val AUC, guard score, gain over the previous
    kept round, kept; the pseudo-labelled examples the kept model trained on, None for round 0).

    ``fit(ex, extra=..., checkpoint=...)`` retrains a head (see :data:`Fit`); ``meta`` describes it.
    ``judge`` (see :data:`Judge`) gives the soft teacher its blend and the guard its validation
    soundscapes score; ``zero_shot``: the backbone's mapping, for the soft teacher's blend. The guard
    falls back to the train-soundscape truth, then to ``val_auc`` (with labelled soundscape windows: the
    combined focal + soundscape score, see :mod:`birdclef.models.train`)."""
    soft = config.pseudo_targets == "soft"
    blend = soft and zero_shot is not None and judge is not None
    embedded = load_soundscapes(config, progress=progress, score_columns=zero_shot.score_columns if blend else None)
    truth = soundscape_truth(config)

    if not embedded:  # every train soundscape is labelled (or none was readable): said, never a silent no-op
        log.warning("pseudo_rounds=%d: no unlabelled train soundscape to pseudo-label (those with labelled windows "
                    "train as labelled data; pseudo_max_soundscapes=%s): no round runs and the head is the one "
                    "trained without pseudo labels", config.pseudo_rounds, config.pseudo_max_soundscapes)
        return model, hist, metrics | {"pseudo_rounds_kept": 0, "pseudo_guard": "none", "pseudo_soundscapes": 0}, \
            pd.DataFrame([_first_round(metrics["val_auc"], np.nan)]), None
    guard_name = "val_auc" if truth is None else "soundscape_score"

    judged: list = []  # [head, its judgement]: the last head judged (held, so it is never mistaken for another)

    def judge_once(m: MLPHead) -> tuple[HeadMeta, float | None]:  # the guard and the teacher judge one head alike
        if not judged or judged[0] is not m:
            judged[:] = [m, judge(m)]
        return judged[1]

    def guard(m: MLPHead, val_auc: float) -> float:
        nonlocal guard_name
        if judge is not None:
            s = judge_once(m)[1]
            if s is not None and not np.isnan(s):
                guard_name = "val_mix_auc_finished"
                return float(s)
        if truth is None:
            return val_auc
        s = score_windows(predict_soundscapes(embedded, m, meta, config), labels, truth, config.window_s)
        return val_auc if s is None else s

    def teacher(m: MLPHead) -> dict[str, np.ndarray]:
        if blend:  # the kept head as the submission applies it: its blend, then the chain
            return predict_soundscapes(embedded, m, judge_once(m)[0], config, zero_shot=zero_shot)
        return predict_soundscapes(embedded, m, meta, config)

    best = guard(model, metrics["val_auc"])
    rows = [_first_round(metrics["val_auc"], best)]
    kept = (model, hist, metrics)
    kept_extra = None
    if out_dir is not None:
        for old in out_dir.glob("head_pseudo*.pt"):  # a previous run's rounds would be mistaken for these
            old.unlink()
        save_head(model, meta, out_dir / "head_pseudo0.pt")
    for r in range(1, config.pseudo_rounds + 1):
        probs = teacher(kept[0])
        if soft:
            extra, n_windows, mean_sum = soft_examples(embedded, probs, config)
            row = {"round": r, "n_windows": n_windows, "n_examples": 0 if extra is None else len(extra),
                   "precision": np.nan, "mean_target_sum": mean_sum}
        else:
            selected = select_windows(probs, threshold=config.pseudo_threshold, max_per_class=config.pseudo_max_per_class)
            extra = pseudo_examples(embedded, selected, config)
            row = {"round": r, "n_windows": len(selected), "n_examples": 0 if extra is None else len(extra),
                   "precision": _precision(selected, labels, truth, config),
                   "mean_target_sum": float(np.mean(extra.targets.sum(axis=1))) if extra is not None else np.nan}
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
        best, kept, kept_extra = g, (m, h, met), extra
    table = pd.DataFrame(rows)
    n_kept = int(table["kept"].sum()) - 1
    out_metrics = kept[2] | {"pseudo_rounds_kept": n_kept, "pseudo_guard": guard_name, "pseudo_soundscapes": len(embedded)}
    if guard_name == "soundscape_score":
        out_metrics["soundscape_score"] = float(best)
    return kept[0], kept[1], out_metrics, table, kept_extra


def _first_round(val_auc: float, guard: float) -> dict:
    """Round 0 of the rounds table: the head trained without pseudo labels, kept."""
    return {"round": 0, "n_windows": 0, "n_examples": 0, "precision": np.nan, "mean_target_sum": np.nan,
            "val_auc": val_auc, "guard": guard, "gain": 0.0, "kept": True}


def round_heads(model_dir: str | Path) -> dict[int, Path]:
    """{round: head} saved by a training run's pseudo-labelling (0: before any pseudo label)."""
    model_dir = Path(model_dir)
    return {int(p.stem.removeprefix("head_pseudo")): p for p in sorted(model_dir.glob("head_pseudo*.pt"))}


def predict_soundscapes(embedded: dict[str, Embedded], model: MLPHead, meta: HeadMeta, config: Config,
                        *, zero_shot: ZeroShot | None = None) -> dict[str, np.ndarray]:
    """{stem: (n_windows, n_classes)} the head's window probabilities after the config's post-processing;
    with ``zero_shot``, blended with the backbone's own logits at the weights the submission would use
    (:func:`birdclef.postprocess.zero_shot_weights`: ``zero_shot_weight`` or those chosen in ``meta``)."""
    if zero_shot is None:
        return {stem: soundscape_probabilities([e], [(model, meta)], config) for stem, e in embedded.items()}
    weights = zero_shot_weights(config, [meta], zero_shot.mapped)
    return {stem: soundscape_probabilities([e], [(model, meta)], config,
                                           zero_shot=(zero_shot.window_logits(e, config.window_s), weights))
            for stem, e in embedded.items()}


def soundscape_metrics(model: MLPHead, meta: HeadMeta, config: Config) -> dict:
    """{"soundscape_score": metric on the train soundscapes} when their truth exists, else {}."""
    truth = soundscape_truth(config)
    if truth is None:
        return {}
    embedded = load_soundscapes(config)
    if not embedded:  # every train soundscape is labelled: they are scored as validation windows instead
        return {}
    s = score_windows(predict_soundscapes(embedded, model, meta, config), list(meta.labels), truth, config.window_s)
    return {} if s is None else {"soundscape_score": s}
