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

import numpy as np
import pandas as pd

from birdclef.config import Config
from birdclef.data import competition_paths, list_audio
from birdclef.embeddings import Embedded, extract, frames_in
from birdclef.errors import SchemaError
from birdclef.evaluate import score
from birdclef.infer import soundscape_probabilities
from birdclef.model import HeadMeta, MLPHead, save_head
from birdclef.train import Examples, concat_examples, crops, head_meta, train_head

SOLUTION_FILE = "train_soundscapes_solution.csv"  # the demo's hidden truth for train_soundscapes


def soundscape_files(config: Config) -> list[Path]:
    """The train soundscapes to pseudo-label: all, or a seeded sample of ``pseudo_max_soundscapes``."""
    files = list_audio(competition_paths(config.data_dir).train_soundscapes)
    if config.pseudo_max_soundscapes and len(files) > config.pseudo_max_soundscapes:
        pick = np.random.default_rng(config.seed).choice(len(files), config.pseudo_max_soundscapes, replace=False)
        files = [files[i] for i in sorted(pick)]
    return files


def load_soundscapes(config: Config, *, progress: bool = False) -> dict[str, Embedded]:
    """{stem: Embedded} of the train soundscapes (cached like every embedding; unreadable ones left out)."""
    files = soundscape_files(config)
    embedded, _ = extract(files, config=config, desc="train soundscapes", progress=progress)
    return {Path(p).stem: e for p, e in embedded.items()}


def soundscape_truth(config: Config) -> pd.DataFrame | None:
    path = Path(config.data_dir) / SOLUTION_FILE
    return pd.read_csv(path, dtype={"row_id": str}) if path.exists() else None


def predict_soundscapes(embedded: dict[str, Embedded], model: MLPHead, meta: HeadMeta, config: Config
                        ) -> dict[str, np.ndarray]:
    return {stem: soundscape_probabilities([e], [(model, meta)], config) for stem, e in embedded.items()}


def score_windows(probs: dict[str, np.ndarray], labels: list[str], truth: pd.DataFrame, window_s: float = 5.0
                  ) -> float | None:
    """The competition metric of {stem: (n_windows, n_classes)} against the truth rows of those stems."""
    from birdclef.submission import build_submission

    sub = build_submission(probs, labels, window_s)
    sol = truth[truth["row_id"].isin(set(sub["row_id"]))]
    try:
        return score(sol, sub[sub["row_id"].isin(set(sol["row_id"]))], row_id_column_name="row_id")
    except SchemaError:  # no positive among these rows, or rows that do not match: no score
        return None


def soundscape_metrics(model: MLPHead, meta: HeadMeta, config: Config) -> dict:
    """{"soundscape_score": metric on the train soundscapes} when their truth exists, else {}."""
    truth = soundscape_truth(config)
    if truth is None:
        return {}
    s = score_windows(predict_soundscapes(load_soundscapes(config), model, meta, config), list(meta.labels),
                      truth, config.window_s)
    return {} if s is None else {"soundscape_score": s}


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
        idx = frames_in(e, w * config.window_s, (w + 1) * config.window_s)
        idx = idx[e.speech[idx] <= config.max_speech_fraction]
        if len(idx) == 0:
            continue
        segs = crops(e, idx, config)
        if config.multi_label:  # soft: the confident classes keep their probability, the rest 0
            target = np.where(p >= config.pseudo_threshold, p, 0.0).astype(np.float32)
        else:
            target = np.eye(len(p), dtype=np.float32)[int(p.argmax())]
        n, group = len(segs), f"pseudo:{stem}"
        parts.append(Examples(segs.astype(np.float32), np.repeat(target[None], n, 0), np.full(n, int(p.argmax())),
                              np.full(n, group, dtype=object), np.full(n, group, dtype=object),
                              np.full(n, config.pseudo_weight, np.float32)))
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
    *, progress: bool = True, out_dir: Path | None = None,
) -> tuple[MLPHead, pd.DataFrame, dict, pd.DataFrame]:
    """Up to ``config.pseudo_rounds`` rounds from the trained ``model`` → (kept model, its history,
    its metrics, one row per round: windows kept, their precision against the truth where known,
    val AUC, guard score, gain over the previous kept round, kept)."""
    embedded = load_soundscapes(config, progress=progress)
    truth = soundscape_truth(config)
    meta = head_meta(ex, labels, config)

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
        m, h, met = train_head(ex, labels, config, progress=progress, checkpoint=checkpoint, extra=extra)
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
