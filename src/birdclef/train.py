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
from dataclasses import dataclass, replace
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
from birdclef.embeddings import Embedded, EmbeddingCache
from birdclef.errors import BirdclefError
from birdclef.evaluate import auc_columns, macro_auc, per_class_auc
from birdclef.io import atomic_path, write_csv, write_json, write_npz
from birdclef.model import HeadMeta, MLPHead, predict, save_head
from birdclef.zeroshot import ZeroShot, choose_weights, load_zero_shot

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Examples:
    x: np.ndarray  # (n, segment_frames, dim) float32
    targets: np.ndarray  # (n, n_classes) float32: primary 1, secondary secondary_weight (multi-label), or soft
    primary: np.ndarray  # (n,) int class index (the argmax of a pseudo-labelled target)
    groups: np.ndarray  # (n,) recording filename (or "pseudo:<soundscape stem>")
    fold_groups: np.ndarray  # (n,) what validation folds keep together: recording or author
    weights: np.ndarray  # (n,) float32 loss weight: 1 for labelled examples, pseudo_weight for pseudo ones
    zero_shot: np.ndarray | None = None  # (n, n_classes) float32: the backbone's logits (max over the crop's frames)

    def __len__(self) -> int:
        return len(self.x)


_FIELDS = ("x", "targets", "primary", "groups", "fold_groups", "weights")


def concat_examples(parts: list[Examples]) -> Examples:
    zs = [p.zero_shot for p in parts]
    return Examples(*(np.concatenate([getattr(p, f) for p in parts]) for f in _FIELDS),
                    zero_shot=None if any(z is None for z in zs) else np.concatenate(zs))


@dataclass(frozen=True)
class TrainResult:
    model: MLPHead
    meta: HeadMeta
    history: pd.DataFrame  # epoch, train_loss, val_loss, val_auc, lr
    metrics: dict
    per_class: pd.DataFrame  # label, positives, auc on the validation segments
    out_dir: Path
    pseudo_rounds: pd.DataFrame | None = None  # one row per pseudo-labelling round (see birdclef.pseudo)


def crop_frames(idx: np.ndarray, config: Config) -> np.ndarray:
    """Frame indices of each training crop of ``segment_frames`` frames from ``idx`` → (n, k) int.

    With the stride equal to the segment (the seed), consecutive non-overlapping groups, a short
    tail filled by repeating its frames (as :func:`birdclef.embeddings.pool_segments`). With a
    shorter stride, a crop starts every ``crop_stride_frames`` frames and one more ends on the
    last frame, so no frame is left out.
    """
    k, stride = config.segment_frames, config.crop_stride_frames
    idx = np.asarray(idx, np.int64)
    if len(idx) == 0:
        return np.zeros((0, k), np.int64)
    if stride >= k or len(idx) <= k:
        return np.stack([np.resize(idx[i:i + k], k) for i in range(0, len(idx), k)])
    starts = list(range(0, len(idx) - k + 1, stride))
    if starts[-1] != len(idx) - k:
        starts.append(len(idx) - k)
    return np.stack([idx[s:s + k] for s in starts])


def crops(e: Embedded, idx: np.ndarray, config: Config) -> np.ndarray:
    """Training crops (see :func:`crop_frames`) of the frame indices ``idx`` → (n, k, dim)."""
    frames = crop_frames(idx, config)
    if len(frames) == 0:
        return np.zeros((0, config.segment_frames, e.embeddings.shape[1]), np.float32)
    return e.embeddings[frames]


def build_examples(
    manifest: pd.DataFrame, cache: EmbeddingCache, labels: list[str], config: Config,
    zero_shot: ZeroShot | None = None,
) -> tuple[Examples, pd.DataFrame]:
    """Crops of each recording's speech-free frames (see :func:`crops`), with their targets
    (and, with ``zero_shot``, the backbone's logits of each crop: max over its frames).

    Returns the examples and the recordings that gave none (filename, reason).
    """
    index = {label: i for i, label in enumerate(labels)}
    columns = None if zero_shot is None else zero_shot.score_columns
    parts, skipped = [], []
    for rec in manifest.itertuples(index=False):
        e = cache.load(rec.path, need_speech=True, score_columns=columns)
        if e is None:
            raise BirdclefError(f"{rec.path}: no cached embedding; run the preprocess stage with the same config first")
        keep = np.flatnonzero(e.speech <= config.max_speech_fraction)
        frames = crop_frames(keep, config)
        segs = e.embeddings[frames] if len(frames) else np.zeros((0, config.segment_frames, e.embeddings.shape[1]))
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
        zs = None if zero_shot is None else zero_shot.frame_logits(e)[frames].max(axis=1)
        parts.append(Examples(segs.astype(np.float32), np.repeat(target[None], n, 0),
                              np.full(n, index[rec.primary_label]), np.full(n, rec.filename, dtype=object),
                              np.full(n, fold_group, dtype=object), np.ones(n, np.float32), zs))
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
    extra: Examples | None = None, refit_epochs: int | None = None,
) -> tuple[MLPHead, pd.DataFrame, dict]:
    """Fit the head; returns (model with the best-validation-AUC weights, history, metrics).

    ``extra`` examples (pseudo-labelled windows) join the training side only; validation stays
    the held-out fold of ``ex``. With ``refit_epochs``, every example of ``ex`` trains (no
    validation) for that many epochs, and the last epoch's weights are returned. With ``checkpoint``, the full training state is saved
    atomically after every epoch; a rerun with the same config and examples continues after the
    last finished epoch (a killed run resumes, a finished one is reused). A checkpoint from
    another config is ignored.
    """
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    tr, va = split_folds(ex, n_folds=config.n_folds, fold=config.fold, seed=config.seed)
    epochs = config.epochs
    if refit_epochs is not None:
        tr, va, epochs = np.arange(len(ex)), np.zeros(0, np.int64), int(refit_epochs)
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
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.learning_rate, total_steps=epochs * steps)
    x_all = torch.from_numpy(ex.x)
    meta = head_meta(ex, labels, config)
    va, y_val = validation_targets(ex, va, n_classes)
    history, best_auc, best_state, start = [], -np.inf, None, 1
    fingerprint = {"config": config.training_dict(), "n_examples": int(len(ex.x)), "epochs": epochs,
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
    for epoch in tqdm(range(start, epochs + 1), desc="refit epochs" if refit_epochs else "epochs", disable=not progress, mininterval=1.0):
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
        # the best AUC; where AUC is undefined (a validation fold of one recording): the lowest validation
        # loss; without validation (a refit): the last epoch. Ties → the later epoch (a refit then trains as long)
        chosen = auc if not np.isnan(auc) else -val_loss
        if np.isnan(chosen) or chosen >= best_auc:
            best_auc, best_state = chosen, {k: v.clone() for k, v in model.state_dict().items()}
        if checkpoint is not None:
            with atomic_path(checkpoint, ".pt") as tmp:
                torch.save({"fingerprint": fingerprint, "model": model.state_dict(), "opt": opt.state_dict(),
                            "sched": sched.state_dict(), "rng": rng.bit_generator.state,
                            "torch_rng": torch.get_rng_state(), "history": history, "best_auc": best_auc,
                            "best_state": best_state}, tmp)
    model.load_state_dict(best_state)
    model.eval()
    hist = pd.DataFrame(history)
    chosen = hist["val_auc"] if hist["val_auc"].notna().any() else -hist["val_loss"]  # as the epoch was chosen above
    best = hist.loc[chosen[chosen == chosen.max()].index[-1]] if chosen.notna().any() else hist.iloc[-1]
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
    ``segment_cleaning`` share with the lowest probability of the recording's primary label (or,
    with ``cleaning_mode="relative"``, those below ``segment_cleaning`` × the recording's highest; at
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
    rank = by_file["probability"].rank(method="first").to_numpy()  # 1 = least like the label; ties by order
    if config.cleaning_mode == "relative":  # below a fraction of the recording's own best segment
        noisy = (own < config.segment_cleaning * by_file["probability"].transform("max").to_numpy()) & (rank < size)
    else:
        noisy = rank <= np.minimum(np.floor(config.segment_cleaning * size), size - 1)
    table["cleaned"] = noisy
    weights, targets = ex.weights.copy(), ex.targets.copy()
    if config.cleaned_as == "background":
        targets[noisy] = 0.0
    else:
        weights[noisy] = 0.0
    cleaned = replace(ex, targets=targets, weights=weights)
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


def blend_weights(ex: Examples, va: np.ndarray, prob: np.ndarray, y_val: np.ndarray, zero_shot: ZeroShot,
                  labels: list[str]) -> tuple[np.ndarray, pd.DataFrame]:
    """Zero-shot blend weight per class chosen on the validation examples ``va`` (see
    :func:`birdclef.zeroshot.choose_weights`) → (weights, one row per class: label, mapped,
    train/validation recordings, weight, validation AUC of the head, of the backbone, of the blend)."""
    from birdclef.postprocess import blend_logits

    n = len(labels)
    is_val = np.zeros(len(ex), bool)
    is_val[va] = True
    per_class = pd.DataFrame({"c": ex.primary, "g": ex.groups, "val": is_val}).drop_duplicates(["c", "g"])
    val_rec = np.bincount(per_class.loc[per_class["val"], "c"], minlength=n)
    train_rec = np.bincount(per_class.loc[~per_class["val"], "c"], minlength=n)
    zs = ex.zero_shot[va]
    weights, _ = choose_weights(prob, zs, y_val, zero_shot.mapped, val_rec)
    blended = blend_logits(prob, zs, weights)
    sig = 1 / (1 + np.exp(-np.clip(zs, -30, 30)))
    table = pd.DataFrame({
        "label": labels, "mapped": zero_shot.mapped, "train_recordings": train_rec, "val_recordings": val_rec,
        "weight": weights, "val_auc_head": auc_columns(y_val > 0.5, prob),
        "val_auc_zero_shot": np.where(zero_shot.mapped, auc_columns(y_val > 0.5, sig), np.nan),
        "val_auc_blend": auc_columns(y_val > 0.5, blended),
    })
    return weights, table


def run_training(*, config: Config, progress: bool = True) -> TrainResult:
    """Train on the preprocess stage's manifest and write ``<work_dir>/model``.

    Steps: (weak-label cleaning: a first fit scores every segment) → fit on the training fold,
    the epoch chosen by validation AUC → (pseudo-label rounds) → zero-shot blend weights per
    class chosen on the validation fold → with ``refit``, the same number of epochs on every
    recording (the head that submits has seen each labelled recording). Writes head, config,
    metrics, curves, validation predictions and the blend table, and a row to the runs table.
    """
    from birdclef import pseudo, runs

    paths = competition_paths(config.data_dir)
    taxonomy = load_taxonomy(paths.taxonomy)
    labels = taxonomy["primary_label"].tolist()
    cache = EmbeddingCache(config.work_dir, config)
    zero_shot = load_zero_shot(config, taxonomy)
    ex, skipped = build_examples(load_manifest(config), cache, labels, config, zero_shot)
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
    metrics |= cleaning
    _, va = split_folds(ex, n_folds=config.n_folds, fold=config.fold, seed=config.seed)
    va, y_val = validation_targets(ex, va, len(labels))
    prob = predict(model, meta, ex.x[va])
    per_class = per_class_auc(y_val, prob, labels)
    blend_table = None
    if zero_shot is not None and ex.zero_shot is not None and len(va):
        weights, blend_table = blend_weights(ex, va, prob, y_val, zero_shot, labels)
        meta = replace(meta, zero_shot_weights=tuple(float(w) for w in weights))
        mapped = blend_table[blend_table["mapped"]]
        metrics |= {"zero_shot_classes": int(zero_shot.mapped.sum()),
                    "mean_zero_shot_weight": float(mapped["weight"].mean()),
                    "val_auc_head_mapped": float(mapped["val_auc_head"].mean()),
                    "val_auc_zero_shot": float(mapped["val_auc_zero_shot"].mean()),
                    "val_auc_blend": float(mapped["val_auc_blend"].mean())}
    kept_pseudo = bool(rounds is not None and rounds["kept"].sum() > 1)
    if config.refit and kept_pseudo:
        log.warning("refit skipped: the kept head trained on pseudo-labelled windows, which a refit would drop")
    if config.refit and not kept_pseudo:
        model, _, _ = train_head(ex, labels, config, progress=progress, checkpoint=out / "checkpoint_refit.pt",
                                 refit_epochs=metrics["best_epoch"])
        metrics |= {"refit_epochs": metrics["best_epoch"], "n_refit_recordings": int(len(set(ex.groups)))}
    if "soundscape_score" not in metrics:
        metrics |= pseudo.soundscape_metrics(model, meta, config)
    save_head(model, meta, out / "head.pt")
    write_json(config.to_dict(), out / "config.json")
    write_json(metrics, out / "metrics.json")
    write_csv(hist, out / "history.csv")
    write_csv(per_class, out / "per_class_auc.csv")
    write_npz(out / "val_predictions.npz", y_true=y_val, y_score=prob)
    write_csv(skipped, out / "skipped.csv")
    for name, table in (("pseudo_rounds.csv", rounds), ("cleaning.csv", cleaned_table), ("zero_shot.csv", blend_table)):
        if table is not None:
            write_csv(table, out / name)
        elif (out / name).exists():  # a previous run's table would describe other examples
            (out / name).unlink()
    runs.record_run(config, stage="train", metrics=metrics)
    if len(skipped):
        print(f"train: {len(skipped)} recording(s) gave no example (see {out / 'skipped.csv'})")
    print(f"train: {metrics['n_train_examples']} train / {metrics['n_val_examples']} val segments, "
          f"best val macro AUC {metrics['val_auc']:.3f} at epoch {metrics['best_epoch']}"
          + (f"; on the {metrics['zero_shot_classes']} classes the backbone knows: head {metrics['val_auc_head_mapped']:.3f}, "
             f"backbone {metrics['val_auc_zero_shot']:.3f}, blend {metrics['val_auc_blend']:.3f}"
             if "val_auc_blend" in metrics else "")
          + (f"; refit on all {metrics['n_refit_recordings']} recordings" if "refit_epochs" in metrics else "")
          + (f"; train-soundscape score {metrics['soundscape_score']:.3f}" if "soundscape_score" in metrics else ""))
    return TrainResult(model, meta, hist, metrics, per_class, out, rounds)
