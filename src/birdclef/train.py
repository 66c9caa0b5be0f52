"""Training stage: cached embeddings → MLP head, validated on held-out recordings (or authors).

Seed recipe: speech-free segments of ``segment_s`` (1 s), single-label cross-entropy with
balanced class weights, Adam 1e-3 with a OneCycle schedule. Multi-label losses (``"bce"``,
``"focal"``) train on primary 1 / secondary ``secondary_weight`` targets; ``crop_stride_s``
below ``segment_s`` gives overlapping crops (every 5-s crop on the 1-s frame grid, say);
``balanced_sampling`` draws each epoch with equal weight per class; ``pseudo_rounds`` adds
confidently predicted train-soundscape windows (:mod:`birdclef.pseudo`).
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.utils.class_weight import compute_class_weight
from tqdm.auto import tqdm

from birdclef.config import Config
from birdclef.data import competition_paths, load_taxonomy
from birdclef.embeddings import Embedded, EmbeddingCache, pool_segments
from birdclef.errors import BirdclefError
from birdclef.evaluate import macro_auc, per_class_auc
from birdclef.io import atomic_path, write_csv, write_json, write_npz
from birdclef.model import HeadMeta, MLPHead, predict, save_head

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Examples:
    x: np.ndarray  # (n, segment_frames, dim) float32
    targets: np.ndarray  # (n, n_classes) float32: primary 1, secondary secondary_weight (multi-label), or soft
    primary: np.ndarray  # (n,) int class index (the argmax of a pseudo-labelled target)
    groups: np.ndarray  # (n,) recording filename (or "pseudo:<soundscape stem>")
    fold_groups: np.ndarray  # (n,) what validation folds keep together: recording or author
    weights: np.ndarray  # (n,) float32 loss weight: 1 for labelled examples, pseudo_weight for pseudo ones

    def __len__(self) -> int:
        return len(self.x)


def concat_examples(parts: list[Examples]) -> Examples:
    return Examples(*(np.concatenate([getattr(p, f) for p in parts]) for f in
                      ("x", "targets", "primary", "groups", "fold_groups", "weights")))


@dataclass(frozen=True)
class TrainResult:
    model: MLPHead
    meta: HeadMeta
    history: pd.DataFrame  # epoch, train_loss, val_loss, val_auc, lr
    metrics: dict
    per_class: pd.DataFrame  # label, positives, auc on the validation segments
    out_dir: Path
    pseudo_rounds: pd.DataFrame | None = None  # one row per pseudo-labelling round (see birdclef.pseudo)


def crops(e: Embedded, idx: np.ndarray, config: Config) -> np.ndarray:
    """Training crops of ``segment_frames`` frames from the frame indices ``idx`` → (n, k, dim).

    With the stride equal to the segment (the seed), consecutive non-overlapping groups
    (:func:`birdclef.embeddings.pool_segments`). With a shorter stride, a crop starts every
    ``crop_stride_frames`` frames and one more ends on the last frame, so no frame is left out.
    """
    k, stride = config.segment_frames, config.crop_stride_frames
    if stride >= k or len(idx) <= k:
        return pool_segments(e, idx, k)
    starts = list(range(0, len(idx) - k + 1, stride))
    if starts[-1] != len(idx) - k:
        starts.append(len(idx) - k)
    return np.stack([e.embeddings[idx[s:s + k]] for s in starts])


def build_examples(
    manifest: pd.DataFrame, cache: EmbeddingCache, labels: list[str], config: Config,
) -> tuple[Examples, pd.DataFrame]:
    """Crops of each recording's speech-free frames (see :func:`crops`), with their targets.

    Returns the examples and the recordings that gave none (filename, reason).
    """
    index = {label: i for i, label in enumerate(labels)}
    parts, skipped = [], []
    for rec in manifest.itertuples(index=False):
        e = cache.load(rec.path, need_speech=True)
        if e is None:
            raise BirdclefError(f"{rec.path}: no cached embedding; run the preprocess stage with the same config first")
        keep = np.flatnonzero(e.speech <= config.max_speech_fraction)
        segs = crops(e, keep, config)
        if len(segs) == 0:
            skipped.append({"filename": rec.filename, "reason": "no speech-free frame"})
            continue
        target = np.zeros(len(labels), np.float32)
        if config.multi_label:
            for s in str(rec.secondary_labels or "").split("|"):
                if s in index:
                    target[index[s]] = config.secondary_weight
        target[index[rec.primary_label]] = 1.0
        author = str(getattr(rec, "author", "") or "").strip()
        fold_group = f"author:{author}" if config.group_by == "author" and author else rec.filename
        n = len(segs)
        parts.append(Examples(segs.astype(np.float32), np.repeat(target[None], n, 0),
                              np.full(n, index[rec.primary_label]), np.full(n, rec.filename, dtype=object),
                              np.full(n, fold_group, dtype=object), np.ones(n, np.float32)))
    if not parts:
        raise BirdclefError("no training examples: every recording was skipped or all speech")
    return concat_examples(parts), pd.DataFrame(skipped, columns=["filename", "reason"])


def split_folds(ex: Examples, *, n_folds: int, fold: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train/validation example indices of fold ``fold``: no group (recording or author) on both
    sides; stratified by primary label."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # classes with fewer groups than folds
        splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        folds = list(splitter.split(np.zeros(len(ex.primary)), ex.primary, ex.fold_groups))
    return folds[fold]


def _loss(config: Config, class_weights: torch.Tensor):
    """(logits (b, C), targets (b, C), primary (b,), sample weights (b,)) → scalar loss.

    With unit sample weights, "ce" is exactly ``CrossEntropyLoss(weight=class_weights)`` (its
    mean divides by the summed class weights) and "bce" the class-weighted element mean.
    """
    def ce(logits, targets, primary, sw):
        per = F.cross_entropy(logits, primary, weight=class_weights, reduction="none")
        return (per * sw).sum() / (class_weights[primary] * sw).sum().clamp_min(1e-12)

    def multi(logits, targets, primary, sw):
        per = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        if config.loss == "focal":  # down-weight easy elements: (1 - p_t) ** gamma
            p = torch.sigmoid(logits)
            p_t = p * targets + (1 - p) * (1 - targets)
            per = per * (1 - p_t).clamp(min=0) ** config.focal_gamma
        return ((per * class_weights).mean(dim=1) * sw).sum() / len(sw)

    return ce if config.loss == "ce" else multi


def _class_weights(ex: Examples, tr: np.ndarray, n_classes: int, config: Config) -> np.ndarray:
    weights = np.ones(n_classes, np.float32)
    if config.class_weight == "balanced":
        present = np.unique(ex.primary[tr])
        weights[present] = compute_class_weight("balanced", classes=present, y=ex.primary[tr])
    return weights


def _epoch_order(rng: np.random.Generator, ex: Examples, tr: np.ndarray, balanced: bool) -> np.ndarray:
    if not balanced:
        return rng.permutation(tr)
    counts = np.bincount(ex.primary[tr])
    p = 1.0 / counts[ex.primary[tr]]
    return rng.choice(tr, size=len(tr), replace=True, p=p / p.sum())


def train_head(
    ex: Examples, labels: list[str], config: Config, *, progress: bool = True, checkpoint: Path | None = None,
    extra: Examples | None = None,
) -> tuple[MLPHead, pd.DataFrame, dict]:
    """Fit the head; returns (model with the best-validation-AUC weights, history, metrics).

    ``extra`` examples (pseudo-labelled windows) join the training side only; validation stays
    the held-out fold of ``ex``. With ``checkpoint``, the full training state is saved
    atomically after every epoch; a rerun with the same config and examples continues after the
    last finished epoch (a killed run resumes, a finished one is reused). A checkpoint from
    another config is ignored.
    """
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    tr, va = split_folds(ex, n_folds=config.n_folds, fold=config.fold, seed=config.seed)
    if extra is not None and len(extra):
        tr = np.concatenate([tr, len(ex) + np.arange(len(extra))])
        ex = concat_examples([ex, extra])
    n_classes = len(labels)
    model = MLPHead(ex.x.shape[-1], n_classes, config.hidden_sizes, config.dropout, pool=config.head_pool)
    model.set_standardisation(ex.x[tr])
    w = torch.from_numpy(_class_weights(ex, tr, n_classes, config))
    criterion = _loss(config, w)
    targets, primary = torch.from_numpy(ex.targets), torch.from_numpy(ex.primary).long()
    sample_w = torch.from_numpy(ex.weights)
    steps = max(1, int(np.ceil(len(tr) / config.batch_size)))
    opt = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.learning_rate, total_steps=config.epochs * steps)
    x_all = torch.from_numpy(ex.x)
    meta = head_meta(ex, labels, config)
    va, y_val = validation_targets(ex, va, n_classes)
    history, best_auc, best_state, start = [], -np.inf, None, 1
    fingerprint = {"config": config.training_dict(), "n_examples": int(len(ex.x)),
                   "x_sum": float(ex.x.sum(dtype=np.float64)), "t_sum": float(ex.targets.sum(dtype=np.float64))}
    if checkpoint is not None and checkpoint.exists():
        state = _load_checkpoint(checkpoint, fingerprint)
        if state is not None:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["opt"])
            sched.load_state_dict(state["sched"])
            rng.bit_generator.state = state["rng"]
            torch.set_rng_state(state["torch_rng"])
            history, best_auc, best_state = state["history"], state["best_auc"], state["best_state"]
            start = len(history) + 1
            log.info("resuming training from %s after epoch %d", checkpoint, len(history))
    for epoch in tqdm(range(start, config.epochs + 1), desc="epochs", disable=not progress, mininterval=1.0):
        model.train()
        order = _epoch_order(rng, ex, tr, config.balanced_sampling)
        total = 0.0
        for i in range(steps):
            idx = order[i * config.batch_size:(i + 1) * config.batch_size]
            opt.zero_grad()
            loss = criterion(model(x_all[idx]), targets[idx], primary[idx], sample_w[idx])
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        model.eval()
        with torch.inference_mode():
            val_loss = (float(criterion(model(x_all[va]), targets[va], primary[va], sample_w[va]))
                        if len(va) else float("nan"))
        prob = predict(model, meta, ex.x[va])
        auc = macro_auc(y_val, prob) if len(va) else float("nan")
        history.append({"epoch": epoch, "train_loss": total / len(tr), "val_loss": val_loss,
                        "val_auc": auc, "lr": sched.get_last_lr()[0]})
        if np.isnan(auc) or auc > best_auc:
            best_auc, best_state = auc, {k: v.clone() for k, v in model.state_dict().items()}
        if checkpoint is not None:
            with atomic_path(checkpoint, ".pt") as tmp:
                torch.save({"fingerprint": fingerprint, "model": model.state_dict(), "opt": opt.state_dict(),
                            "sched": sched.state_dict(), "rng": rng.bit_generator.state,
                            "torch_rng": torch.get_rng_state(), "history": history, "best_auc": best_auc,
                            "best_state": best_state}, tmp)
    model.load_state_dict(best_state)
    model.eval()
    hist = pd.DataFrame(history)
    best = hist.loc[hist["val_auc"].idxmax()] if hist["val_auc"].notna().any() else hist.iloc[-1]
    metrics = {
        "n_train_examples": int(len(tr)), "n_val_examples": int(len(va)),
        "n_train_recordings": int(len(set(ex.groups[tr]))), "n_val_recordings": int(len(set(ex.groups[va]))),
        "n_pseudo_examples": int(len(extra)) if extra is not None else 0,
        "best_epoch": int(best["epoch"]), "val_auc": float(best["val_auc"]),
        "final_val_auc": float(hist["val_auc"].iloc[-1]),
    }
    return model, hist, metrics


def clean_segments(ex: Examples, model: MLPHead, meta: HeadMeta, config: Config
                   ) -> tuple[Examples, dict, pd.DataFrame]:
    """Weak-label cleaning: a focal recording's label is the whole file's, but its calls fill only
    part of it. Score every segment with a first ``model``; in each recording the
    ``segment_cleaning`` share with the lowest probability of the recording's primary label (at
    least one segment is kept) is dropped (weight 0) or, with ``cleaned_as="background"``, kept
    with all-zero targets (multi-label losses only). Validation recordings are cleaned the same
    way (the first model never trained on them), so the validation AUC that picks the best epoch
    measures what training now asks for.

    Returns the new examples, counts for the metrics, and one row per segment: filename, segment
    (its order in the recording), label, the first fit's probability of the label, cleaned."""
    own = predict(model, meta, ex.x)[np.arange(len(ex)), ex.primary]
    table = pd.DataFrame({"filename": ex.groups.astype(str), "label": np.asarray(meta.labels)[ex.primary],
                          "probability": own.astype(np.float64)})
    by_file = table.groupby("filename", sort=False)
    table.insert(1, "segment", by_file.cumcount())
    size = by_file["probability"].transform("size").to_numpy()
    n_clean = np.minimum(np.floor(config.segment_cleaning * size), size - 1)
    rank = by_file["probability"].rank(method="first").to_numpy()  # 1 = least like the label; ties by order
    noisy = rank <= n_clean
    table["cleaned"] = noisy
    weights, targets = ex.weights.copy(), ex.targets.copy()
    if config.cleaned_as == "background":
        targets[noisy] = 0.0
    else:
        weights[noisy] = 0.0
    cleaned = Examples(ex.x, targets, ex.primary, ex.groups, ex.fold_groups, weights)
    return cleaned, {"n_cleaned_segments": int(noisy.sum()), "cleaned_as": config.cleaned_as}, table


def validation_targets(ex: Examples, va: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(validation indices that count, their (n, n_classes) 0/1 truth): the primary label, none
    for a background example (all-zero targets), and weight-0 (dropped) examples left out."""
    va = va[ex.weights[va] > 0]
    y = np.eye(n_classes, dtype=np.float32)[ex.primary[va]]
    y[ex.targets[va].max(axis=1) <= 0] = 0.0
    return va, y


def _load_checkpoint(path: Path, fingerprint: dict) -> dict | None:
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # a damaged checkpoint is not trusted: train from the start
        log.warning("ignoring unreadable checkpoint %s (%s)", path, err)
        return None
    if state.get("fingerprint") != fingerprint:
        log.info("checkpoint %s belongs to another config or data; training from the start", path)
        return None
    return state


def head_meta(ex: Examples, labels: list[str], config: Config) -> HeadMeta:
    prior = np.bincount(ex.primary, minlength=len(labels)) / len(ex.primary)
    return HeadMeta(prior=tuple(float(p) for p in prior), in_dim=int(ex.x.shape[-1]), labels=tuple(labels),
                    hidden_sizes=tuple(config.hidden_sizes), dropout=config.dropout, loss=config.loss,
                    segment_frames=config.segment_frames, embedding_key=config.embedding_key(), pool=config.head_pool)


def load_manifest(config: Config) -> pd.DataFrame:
    path = Path(config.work_dir) / "preprocess" / "manifest.csv"
    if not path.exists():
        raise BirdclefError(f"{path} not found: run the preprocess stage (02_preprocess) first")
    return pd.read_csv(path, dtype={"primary_label": str, "secondary_labels": str, "author": str},
                       keep_default_na=False)


def run_training(*, config: Config, progress: bool = True) -> TrainResult:
    """Train on the preprocess stage's manifest (then pseudo-label rounds, if asked for); write head,
    config, metrics, curves and validation predictions to ``<work_dir>/model`` and a row to the runs table."""
    from birdclef import pseudo, runs

    paths = competition_paths(config.data_dir)
    labels = load_taxonomy(paths.taxonomy)["primary_label"].tolist()
    cache = EmbeddingCache(config.work_dir, config)
    ex, skipped = build_examples(load_manifest(config), cache, labels, config)
    out = Path(config.work_dir) / "model"
    meta = head_meta(ex, labels, config)
    cleaning, cleaned_table = {}, None
    if config.segment_cleaning > 0:
        first, _, _ = train_head(ex, labels, config, progress=progress, checkpoint=out / "checkpoint_uncleaned.pt")
        ex, cleaning, cleaned_table = clean_segments(ex, first, meta, config)
    model, hist, metrics = train_head(ex, labels, config, progress=progress, checkpoint=out / "checkpoint.pt")
    rounds = None
    if config.pseudo_rounds:
        model, hist, metrics, rounds = pseudo.pseudo_label(ex, labels, config, model, hist, metrics,
                                                           progress=progress, out_dir=out)
    else:
        metrics |= pseudo.soundscape_metrics(model, meta, config)
    metrics |= cleaning
    _, va = split_folds(ex, n_folds=config.n_folds, fold=config.fold, seed=config.seed)
    va, y_val = validation_targets(ex, va, len(labels))
    prob = predict(model, meta, ex.x[va])
    per_class = per_class_auc(y_val, prob, labels)
    save_head(model, meta, out / "head.pt")
    write_json(config.to_dict(), out / "config.json")
    write_json(metrics, out / "metrics.json")
    write_csv(hist, out / "history.csv")
    write_csv(per_class, out / "per_class_auc.csv")
    write_npz(out / "val_predictions.npz", y_true=y_val, y_score=prob)
    write_csv(skipped, out / "skipped.csv")
    if rounds is not None:
        write_csv(rounds, out / "pseudo_rounds.csv")
    cleaning_csv = out / "cleaning.csv"
    if cleaned_table is not None:
        write_csv(cleaned_table, cleaning_csv)
    elif cleaning_csv.exists():  # a previous run's table would describe other examples
        cleaning_csv.unlink()
    runs.record_run(config, stage="train", metrics=metrics)
    if len(skipped):
        print(f"train: {len(skipped)} recording(s) gave no example (see {out / 'skipped.csv'})")
    print(f"train: {metrics['n_train_examples']} train / {metrics['n_val_examples']} val segments, "
          f"best val macro AUC {metrics['val_auc']:.3f} at epoch {metrics['best_epoch']}"
          + (f"; train-soundscape score {metrics['soundscape_score']:.3f}" if "soundscape_score" in metrics else ""))
    return TrainResult(model, meta, hist, metrics, per_class, out, rounds)
