"""Training stage: cached embeddings → MLP head, validated on held-out recordings.

Seed recipe: speech-free segments of ``segment_s`` (1 s), single-label cross-entropy with
balanced class weights, Adam 1e-3 with a OneCycle schedule. ``loss="bce"`` trains multi-label
targets (primary 1, secondary ``secondary_weight``).
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.utils.class_weight import compute_class_weight
from torch import nn
from tqdm.auto import tqdm

from birdclef.config import Config
from birdclef.data import competition_paths, load_taxonomy
from birdclef.embeddings import EmbeddingCache, pool_segments
from birdclef.errors import BirdclefError
from birdclef.evaluate import macro_auc, per_class_auc
from birdclef.io import atomic_path, write_csv, write_json, write_npz
from birdclef.model import HeadMeta, MLPHead, predict, save_head

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Examples:
    x: np.ndarray  # (n, segment_frames, dim) float32
    targets: np.ndarray  # (n, n_classes) float32: one-hot primary (+ secondary weights for bce)
    primary: np.ndarray  # (n,) int class index
    groups: np.ndarray  # (n,) recording filename


@dataclass(frozen=True)
class TrainResult:
    model: MLPHead
    meta: HeadMeta
    history: pd.DataFrame  # epoch, train_loss, val_loss, val_auc, lr
    metrics: dict
    per_class: pd.DataFrame  # label, positives, auc on the validation segments
    out_dir: Path


def build_examples(
    manifest: pd.DataFrame, cache: EmbeddingCache, labels: list[str], config: Config,
) -> tuple[Examples, pd.DataFrame]:
    """One example per group of ``segment_frames`` speech-free frames of each recording.

    Returns the examples and the recordings that gave none (filename, reason).
    """
    index = {label: i for i, label in enumerate(labels)}
    xs, ts, ps, gs, skipped = [], [], [], [], []
    for rec in manifest.itertuples(index=False):
        e = cache.load(rec.path)
        if e is None:
            raise BirdclefError(f"{rec.path}: no cached embedding; run the preprocess stage with the same config first")
        keep = np.flatnonzero(e.speech <= config.max_speech_fraction)
        segs = pool_segments(e, keep, config.segment_frames)
        if len(segs) == 0:
            skipped.append({"filename": rec.filename, "reason": "no speech-free frame"})
            continue
        target = np.zeros(len(labels), np.float32)
        if config.loss == "bce":
            for s in str(rec.secondary_labels or "").split("|"):
                if s in index:
                    target[index[s]] = config.secondary_weight
        target[index[rec.primary_label]] = 1.0
        xs.append(segs)
        ts.append(np.repeat(target[None], len(segs), 0))
        ps.append(np.full(len(segs), index[rec.primary_label]))
        gs.append(np.full(len(segs), rec.filename, dtype=object))
    if not xs:
        raise BirdclefError("no training examples: every recording was skipped or all speech")
    ex = Examples(np.concatenate(xs), np.concatenate(ts), np.concatenate(ps), np.concatenate(gs))
    return ex, pd.DataFrame(skipped, columns=["filename", "reason"])


def split_by_recording(ex: Examples, *, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train/validation example indices; no recording is on both sides; stratified by label."""
    n_splits = max(2, int(round(1 / val_fraction)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # classes with fewer recordings than folds
        splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        tr, va = next(splitter.split(np.zeros(len(ex.primary)), ex.primary, ex.groups))
    return tr, va


def train_head(
    ex: Examples, labels: list[str], config: Config, *, progress: bool = True, checkpoint: Path | None = None,
) -> tuple[MLPHead, pd.DataFrame, dict]:
    """Fit the head; returns (model with the best-validation-AUC weights, history, metrics).

    With ``checkpoint``, the full training state is saved atomically after every epoch; a rerun
    with the same config and examples continues after the last finished epoch (a killed run
    resumes, a finished one is reused). A checkpoint from another config is ignored.
    """
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    tr, va = split_by_recording(ex, val_fraction=config.val_fraction, seed=config.seed)
    n_classes = len(labels)
    model = MLPHead(ex.x.shape[-1], n_classes, config.hidden_sizes, config.dropout)
    model.set_standardisation(ex.x[tr].mean(axis=1))
    weights = np.ones(n_classes, np.float32)
    if config.class_weight == "balanced":
        present = np.unique(ex.primary[tr])
        weights[present] = compute_class_weight("balanced", classes=present, y=ex.primary[tr])
    w = torch.from_numpy(weights)
    if config.loss == "ce":
        criterion = nn.CrossEntropyLoss(weight=w)
        target_of = lambda idx: torch.from_numpy(ex.primary[idx]).long()  # noqa: E731
    else:
        bce = nn.BCEWithLogitsLoss(reduction="none")
        criterion = lambda logits, t: (bce(logits, t) * w).mean()  # noqa: E731
        target_of = lambda idx: torch.from_numpy(ex.targets[idx])  # noqa: E731
    steps = max(1, int(np.ceil(len(tr) / config.batch_size)))
    opt = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.learning_rate, total_steps=config.epochs * steps)
    x_all = torch.from_numpy(ex.x)
    meta = _meta(ex, labels, config)
    y_val = np.eye(n_classes, dtype=np.float32)[ex.primary[va]]
    history, best_auc, best_state, start = [], -np.inf, None, 1
    fingerprint = {"config": config.to_dict() | {"work_dir": "", "data_dir": ""}, "n_examples": int(len(ex.x)),
                   "x_sum": float(ex.x.sum(dtype=np.float64))}
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
        order = rng.permutation(tr)
        total = 0.0
        for i in range(steps):
            idx = order[i * config.batch_size:(i + 1) * config.batch_size]
            opt.zero_grad()
            loss = criterion(model(x_all[idx]), target_of(idx))
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        model.eval()
        with torch.inference_mode():
            val_loss = float(criterion(model(x_all[va]), target_of(va))) if len(va) else float("nan")
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
        "best_epoch": int(best["epoch"]), "val_auc": float(best["val_auc"]),
        "final_val_auc": float(hist["val_auc"].iloc[-1]),
    }
    return model, hist, metrics


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


def _meta(ex: Examples, labels: list[str], config: Config) -> HeadMeta:
    prior = np.bincount(ex.primary, minlength=len(labels)) / len(ex.primary)
    return HeadMeta(prior=tuple(float(p) for p in prior), in_dim=int(ex.x.shape[-1]), labels=tuple(labels), hidden_sizes=tuple(config.hidden_sizes),
                    dropout=config.dropout, loss=config.loss, segment_frames=config.segment_frames,
                    embedding_key=config.embedding_key())


def run_training(*, config: Config, progress: bool = True) -> TrainResult:
    """Train on the preprocess stage's manifest; write head, config, metrics and curves to ``<work_dir>/model``."""
    paths = competition_paths(config.data_dir)
    labels = load_taxonomy(paths.taxonomy)["primary_label"].tolist()
    manifest_path = Path(config.work_dir) / "preprocess" / "manifest.csv"
    if not manifest_path.exists():
        raise BirdclefError(f"{manifest_path} not found: run the preprocess stage (02_preprocess) first")
    manifest = pd.read_csv(manifest_path, dtype={"primary_label": str, "secondary_labels": str}, keep_default_na=False)
    cache = EmbeddingCache(config.work_dir, config)
    ex, skipped = build_examples(manifest, cache, labels, config)
    out = Path(config.work_dir) / "model"
    model, hist, metrics = train_head(ex, labels, config, progress=progress, checkpoint=out / "checkpoint.pt")
    meta = _meta(ex, labels, config)
    _, va = split_by_recording(ex, val_fraction=config.val_fraction, seed=config.seed)
    prob = predict(model, meta, ex.x[va])
    y_val = np.eye(len(labels), dtype=np.float32)[ex.primary[va]]
    per_class = per_class_auc(y_val, prob, labels)
    save_head(model, meta, out / "head.pt")
    write_json(config.to_dict(), out / "config.json")
    write_json(metrics, out / "metrics.json")
    write_csv(hist, out / "history.csv")
    write_csv(per_class, out / "per_class_auc.csv")
    write_npz(out / "val_predictions.npz", y_true=y_val, y_score=prob)
    write_csv(skipped, out / "skipped.csv")
    if len(skipped):
        print(f"train: {len(skipped)} recording(s) gave no example (see {out / 'skipped.csv'})")
    print(f"train: {metrics['n_train_examples']} train / {metrics['n_val_examples']} val segments, "
          f"best val macro AUC {metrics['val_auc']:.3f} at epoch {metrics['best_epoch']}")
    return TrainResult(model, meta, hist, metrics, per_class, out)
