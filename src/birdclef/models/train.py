"""Training stage: cached embeddings → MLP head, validated on held-out recordings (or authors).

Seed recipe: speech-free segments of ``segment_s`` (1 s), single-label cross-entropy with
balanced class weights, Adam 1e-3 with a OneCycle schedule. Multi-label losses (``"bce"``,
``"focal"``) train on primary 1 / secondary ``secondary_weight`` targets; ``crop_stride_s``
below ``segment_s`` gives overlapping crops (every 5-s crop on the 1-s frame grid, say);
``balanced_sampling`` draws each epoch with equal weight per class; ``pseudo_rounds`` adds
confidently predicted train-soundscape windows (:mod:`birdclef.models.pseudo`).
"""
from __future__ import annotations

import logging
import pickle
import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.utils.class_weight import compute_class_weight

from birdclef.config import Config, same_training
from birdclef.data.competition import competition_paths, load_taxonomy
from birdclef.data.metric import macro_auc, masked_auc_columns, per_class_auc
from birdclef.errors import BirdclefError
from birdclef.family import TrainResult, family
from birdclef.features.embeddings import EmbeddingCache
from birdclef.features.zeroshot import BlendPrior, ZeroShot, choose_weights, load_zero_shot
from birdclef.io import atomic_path, write_csv, write_json, write_npz
from birdclef.models import blendguard, valsoundscapes
from birdclef.models.examples import (FOCAL, SOUNDSCAPE, Examples, build_examples, concat_examples, load_manifest,
                                      soundscape_examples)
from birdclef.models.folds import FoldPlan, deal_groups, fold_plan, group_folds
from birdclef.models.head import HeadMeta, MLPHead, predict, save_head
from birdclef.models.valsoundscapes import ValSoundscapes
from birdclef.postprocess.priors import PRIOR_FILE, fit_site_prior
from birdclef.progress import tqdm
from birdclef.workdir import RunLayout

log = logging.getLogger(__name__)


def split_folds(ex: Examples, *, n_folds: int, fold: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train/validation example indices of fold ``fold``: no group on both sides (:func:`fold_split`)."""
    tr, va, _ = fold_split(ex, n_folds=n_folds, fold=fold, seed=seed)
    return tr, va


_GROUP_WORDS = {"session": "recording sessions", "author": "authors", "site_day": "soundscape site-days",
                "site": "soundscape sites", "soundscape": "soundscape files"}


def _group_words(groups: np.ndarray) -> str:
    """What the fold groups are, in words (from their ``<kind>:`` prefixes; plain names are recordings)."""
    kinds = {_GROUP_WORDS.get(str(g).split(":", 1)[0], "recordings") if ":" in str(g) else "recordings"
             for g in np.unique(np.asarray(groups).astype(str))}
    return " and ".join(sorted(kinds)) or "groups"


def fold_split(ex: Examples, *, n_folds: int, fold: int, seed: int) -> tuple[np.ndarray, np.ndarray, FoldPlan]:
    """(train indices, validation indices, the :class:`~birdclef.models.folds.FoldPlan` used) of fold ``fold``.

    Focal recordings: stratified by primary label, grouped by their fold group (a recording
    session, the recording itself or its author: ``group_by``). Labelled soundscape windows: their
    fold groups (site and day, soundscape file or site: ``soundscape_group_by``) dealt to the folds in
    a seeded random order, so the validation fold holds whole site-days (files, sites) next to whole
    sessions. With fewer groups than folds, as many folds as there are groups (fold ``fold`` modulo
    that many); with fewer focal groups than folds, focal and soundscape groups are dealt together;
    with fewer than two groups, no validation (:mod:`birdclef.models.folds`).
    """
    kinds = ex.kinds
    focal = np.flatnonzero(kinds != SOUNDSCAPE)
    windows = np.flatnonzero(kinds == SOUNDSCAPE)
    f_groups, w_groups = ex.fold_groups[focal].astype(str), ex.fold_groups[windows].astype(str)
    n_focal = len(np.unique(f_groups))
    plan = fold_plan(n_folds, n_focal + len(np.unique(w_groups)), what=_group_words(ex.fold_groups))
    if not plan.validates:
        return np.arange(len(ex)), np.zeros(0, np.int64), plan
    k, notes = plan.n_folds, [plan.note]
    if fold >= k:
        notes.append(f"fold {fold} is fold {fold % k} of {k}")
        fold %= k
    fold_of = np.zeros(len(ex), np.int64)
    if n_focal >= k:
        fold_of[focal], note = group_folds(ex.primary[focal], f_groups, k, seed)
        notes.append(note)
        if len(windows):
            fold_of[windows] = deal_groups(w_groups, k, seed)
    else:  # too few focal groups to give every fold one: deal them with the soundscapes' (every fold gets a group)
        both = np.concatenate([focal, windows])
        fold_of[both] = deal_groups(np.concatenate([f_groups, w_groups]), k, seed)
    tr = np.concatenate([focal[fold_of[focal] != fold], windows[fold_of[windows] != fold]])
    va = np.concatenate([focal[fold_of[focal] == fold], windows[fold_of[windows] == fold]])
    return tr, va, FoldPlan(k, "; ".join(n for n in notes if n))


@dataclass(frozen=True)
class Validation:
    """What a fold's validation side is scored on: focal examples one by one (their primary label;
    cleaned-away ones left out), held-out labelled soundscape crops pooled into their 5-s windows
    (every label of the window), as the submission pools a window's segments."""

    focal: np.ndarray  # (n_f,) example indices
    y_focal: np.ndarray  # (n_f, n_classes) 0/1
    windows: np.ndarray  # (n_w_examples,) example indices of held-out soundscape crops
    owner: np.ndarray  # (n_w_examples,) the window (row of y_windows) each crop belongs to
    window_ids: np.ndarray  # (n_windows,) row_id of each window
    y_windows: np.ndarray  # (n_windows, n_classes) 0/1

    @property
    def examples(self) -> np.ndarray:
        """Every validation example index: focal first, then soundscape crops."""
        return np.concatenate([self.focal, self.windows])


def validation_targets(ex: Examples, va: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(focal validation indices that count, their (n, n_classes) 0/1 truth): the primary label, none
    for a background example (all-zero targets), weight-0 (dropped) and soundscape examples left out."""
    va = va[(ex.weights[va] > 0) & (ex.kinds[va] != SOUNDSCAPE)]
    y = np.eye(n_classes, dtype=np.float32)[ex.primary[va]]
    y[ex.targets[va].max(axis=1) <= 0] = 0.0
    return va, y


def validation_set(ex: Examples, va: np.ndarray, n_classes: int) -> Validation:
    focal, y_focal = validation_targets(ex, va, n_classes)
    windows = va[ex.kinds[va] == SOUNDSCAPE]
    ids, owner = np.unique(ex.windows[windows].astype(str), return_inverse=True)
    y_windows = np.zeros((len(ids), n_classes), np.float32)
    if len(windows):
        np.maximum.at(y_windows, owner, (ex.targets[windows] > 0).astype(np.float32))
    return Validation(focal, y_focal, windows, owner.reshape(-1), ids, y_windows)


def pool_windows(prob: np.ndarray, owner: np.ndarray, n_windows: int, pool: str) -> np.ndarray:
    """(n_examples, C) crop scores → (n_windows, C): mean (or max) over each window's crops."""
    out = np.full((n_windows, prob.shape[1]), -np.inf if pool == "max" else 0.0, np.float64)
    if pool == "max":
        np.maximum.at(out, owner, prob)
    else:
        np.add.at(out, owner, prob)
        out /= np.maximum(np.bincount(owner, minlength=n_windows), 1)[:, None]
    return out.astype(np.float32)


def validation_scores(val: Validation, prob: np.ndarray, pool: str) -> dict:
    """Macro ROC-AUC on the focal examples, on the soundscape windows, and combined: their mean
    weighted by how many classes each scores (classes with a positive) → {"focal", "soundscape",
    "combined"} (NaN where a side has nothing to score). ``prob``: scores of ``val.examples``."""
    n_f = len(val.focal)
    focal = macro_auc(val.y_focal, prob[:n_f]) if n_f else float("nan")
    windows = pool_windows(prob[n_f:], val.owner, len(val.window_ids), pool) if len(val.windows) else None
    sc = macro_auc(val.y_windows, windows) if windows is not None else float("nan")
    k_f = int((val.y_focal.sum(0) > 0).sum()) if not np.isnan(focal) else 0
    k_s = int((val.y_windows.sum(0) > 0).sum()) if not np.isnan(sc) else 0
    combined = (k_f * np.nan_to_num(focal) + k_s * np.nan_to_num(sc)) / (k_f + k_s) if k_f + k_s else float("nan")
    return {"focal": float(focal), "soundscape": float(sc), "combined": float(combined)}


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


def _shares(batch_size: int, share: float) -> tuple[int, int]:
    """(labelled, pseudo-labelled) rows of one batch when ``share`` of it comes from the pseudo pool
    (each side at least one row)."""
    n_pseudo = min(batch_size - 1, max(1, int(round(share * batch_size))))
    return batch_size - n_pseudo, n_pseudo


def epoch_batches(rng: np.random.Generator, ex: Examples, labelled: np.ndarray, pseudo: np.ndarray, *,
                  batch_size: int, share: float | None, balanced: bool) -> list[np.ndarray]:
    """One epoch's batches of example indices. Without ``share`` (or pseudo rows): one order over every
    row (:func:`_epoch_order`), cut into ``batch_size`` slices — the labelled-only path is exactly
    today's. With ``share``: two samplers that never meet — each batch takes its labelled rows from one
    pass over ``labelled`` (balanced by class when asked) and ``share`` of its rows from a shuffled
    ``pseudo`` pool (reshuffled when used up), so an epoch is one pass over the labelled rows."""
    if share is None or not len(pseudo):
        tr = np.concatenate([labelled, pseudo]) if len(pseudo) else labelled
        order = _epoch_order(rng, ex, tr, balanced)
        return [order[i * batch_size:(i + 1) * batch_size] for i in range(max(1, int(np.ceil(len(tr) / batch_size))))]
    n_lab, n_pseudo = _shares(batch_size, share)
    order = _epoch_order(rng, ex, labelled, balanced)
    deck = np.zeros(0, np.int64)
    batches = []
    for i in range(max(1, int(np.ceil(len(labelled) / n_lab)))):
        while len(deck) < n_pseudo:
            deck = np.concatenate([deck, rng.permutation(pseudo)])
        batches.append(np.concatenate([order[i * n_lab:(i + 1) * n_lab], deck[:n_pseudo]]))
        deck = deck[n_pseudo:]
    return batches


def mix_pseudo(rng: np.random.Generator, ex: Examples, idx: np.ndarray, pseudo: np.ndarray, lam: float
               ) -> tuple[np.ndarray, np.ndarray]:
    """MixUp of a pseudo-labelled window into each focal crop of batch ``idx`` → (x (b, frames, dim),
    targets (b, C)): ``x = (1 − lam)·focal + lam·pseudo`` in embedding space, target the element-wise
    max of the two (the union: a focal label stays 1, the window's soft labels join it); each focal
    crop's partner is drawn at random from ``pseudo``. Other rows are left as they are."""
    x, t = ex.x[idx].copy(), ex.targets[idx].copy()
    focal = np.flatnonzero(ex.kinds[idx] == FOCAL)
    if len(focal) and len(pseudo):
        partner = rng.choice(pseudo, size=len(focal))
        x[focal] = (1 - lam) * x[focal] + lam * ex.x[partner]
        t[focal] = np.maximum(t[focal], ex.targets[partner])
    return x, t


def train_head(
    ex: Examples, labels: list[str], config: Config, *, progress: bool = True, checkpoint: Path | None = None,
    extra: Examples | None = None, refit_epochs: int | None = None, val_mix: "ValSoundscapes | None" = None,
) -> tuple[MLPHead, pd.DataFrame, dict]:
    """Fit the head; returns (model with the best-validation-AUC weights, history, metrics).

    ``extra`` examples (pseudo-labelled windows) join the training side only; validation stays
    the held-out fold of ``ex``. ``val_mix``: validation soundscapes mixed from that fold
    (:mod:`birdclef.models.valsoundscapes`), scored every epoch (``val_mix_auc``); with
    ``config.val_select="soundscapes"`` their score picks the epoch. With ``refit_epochs``, every example of ``ex`` trains (no
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
    tr = tr[~((ex.kinds[tr] == SOUNDSCAPE) & (ex.weights[tr] == 0))]  # soundscape_weight=0: windows validate only
    labelled, pseudo = tr, np.zeros(0, np.int64)
    if extra is not None and len(extra):
        pseudo = len(ex) + np.arange(len(extra))
        tr = np.concatenate([tr, pseudo])
        ex = concat_examples([ex, extra])
    share = config.pseudo_share if len(pseudo) else None
    n_classes = len(labels)
    model = MLPHead(ex.x.shape[-1], n_classes, config.hidden_sizes, config.dropout, pool=config.head_pool)
    model.set_standardisation(ex.x, rows=tr)  # no copy of the training rows (memory at competition scale)
    # with separate samplers the class weights are the labelled rows' (a pseudo row's argmax is no count)
    w = torch.from_numpy(_class_weights(ex, tr if share is None else labelled, n_classes, config))
    criterion = _loss(config, w)
    targets, primary = torch.from_numpy(ex.targets), torch.from_numpy(ex.primary).long()
    sample_w = torch.from_numpy(ex.weights)
    steps = max(1, int(np.ceil((len(tr) if share is None else len(labelled))
                               / (config.batch_size if share is None else _shares(config.batch_size, share)[0]))))
    mixup = config.pseudo_mixup if len(pseudo) else 0.0
    opt = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.learning_rate, total_steps=epochs * steps)
    x_all = torch.from_numpy(ex.x)
    meta = head_meta(ex, labels, config)
    val = validation_set(ex, va, n_classes)
    va = val.examples
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
        batches = epoch_batches(rng, ex, labelled, pseudo, batch_size=config.batch_size, share=share,
                                balanced=config.balanced_sampling)
        total, n_rows = 0.0, 0
        for idx in batches:
            opt.zero_grad()
            if mixup:
                x_b, t_b = mix_pseudo(rng, ex, idx, pseudo, mixup)
                x_b, t_b = torch.from_numpy(x_b), torch.from_numpy(t_b)
            else:
                x_b, t_b = x_all[idx], targets[idx]
            loss = criterion(model(x_b), t_b, primary[idx], sample_w[idx])
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            n_rows += len(idx)
        model.eval()
        with torch.inference_mode():
            val_loss = (float(criterion(model(x_all[va]), targets[va], primary[va], sample_w[va]))
                        if len(va) else float("nan"))
        scores = validation_scores(val, predict(model, meta, ex.x[va]), config.window_pool)
        mix_auc = (valsoundscapes.score(val_mix.truth, val_mix.head_probabilities(model, meta, config))
                   if val_mix is not None and refit_epochs is None else float("nan"))
        auc = mix_auc if config.val_select == "soundscapes" and not np.isnan(mix_auc) else scores["combined"]
        history.append({"epoch": epoch, "train_loss": total / n_rows, "val_loss": val_loss, "val_auc": auc,
                        **({"val_focal_auc": scores["focal"], "val_soundscape_auc": scores["soundscape"]}
                           if len(val.windows) else {}),
                        **({"val_labelled_auc": scores["combined"], "val_mix_auc": mix_auc}
                           if val_mix is not None and refit_epochs is None else {}),
                        "lr": sched.get_last_lr()[0]})
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
    if not len(va) and refit_epochs is None:  # nothing held out: the last epoch, nothing measured
        metrics["validation"] = "none"
    if "val_mix_auc" in hist:  # val_auc is the score that chose the epoch; both at that epoch
        metrics |= {"val_labelled_auc": float(best["val_labelled_auc"]), "val_mix_auc": float(best["val_mix_auc"]),
                    "val_select": config.val_select}
    if len(val.windows):  # the labelled score is the combined one; each side's at the chosen epoch
        metrics |= {"val_focal_auc": float(best["val_focal_auc"]), "val_soundscape_auc": float(best["val_soundscape_auc"]),
                    "val_combined_auc": float(best.get("val_labelled_auc", best["val_auc"])),
                    "n_val_soundscape_windows": int(len(val.window_ids)),
                    "n_train_soundscape_windows": int(len(set(ex.windows[tr][ex.kinds[tr] == SOUNDSCAPE])))}
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
    noisy &= ex.kinds == FOCAL  # a labelled soundscape window's labels are its own, not a whole file's
    table["cleaned"] = noisy
    weights, targets = ex.weights.copy(), ex.targets.copy()
    if config.cleaned_as == "background":
        targets[noisy] = 0.0
    else:
        weights[noisy] = 0.0
    cleaned = replace(ex, targets=targets, weights=weights)
    return cleaned, {"n_cleaned_segments": int(noisy.sum()), "cleaned_as": config.cleaned_as}, table


def _load_checkpoint(path: Path, fingerprint: dict) -> dict | None:
    """The training state saved at ``path`` when it matches ``fingerprint``, else None (logged). Read with
    ``weights_only=True`` like every model file: tensors and plain data only, so a checkpoint holding any
    other pickled object (which unpickling would run) is refused, and training starts from the first epoch."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:  # an object weights_only does not allow: never unpickled
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        if found is None:  # not a refused object: a damaged file
            detail = re.search(r"WeightsUnpickler error:\s*(.+)", str(err))
            log.warning("ignoring unreadable checkpoint %s (%s)", path, detail.group(1) if detail else type(err).__name__)
            return None
        log.warning("ignoring checkpoint %s: it holds an object other than tensors and plain data (%s), which is "
                    "never unpickled; training from the start", path, found.group(1))
        return None
    except Exception as err:  # a damaged checkpoint is not trusted: train from the start
        log.warning("ignoring unreadable checkpoint %s (%s)", path, err)
        return None
    if not isinstance(state, dict):
        log.warning("ignoring checkpoint %s: it holds a %s, not a training state", path, type(state).__name__)
        return None
    saved = state.get("fingerprint")
    # an older version's fingerprint held two fields that change no result (config.RETIRED_TRAINING_FIELDS)
    if not (isinstance(saved, dict) and isinstance(saved.get("config"), dict)
            and {**saved, "config": fingerprint["config"]} == fingerprint
            and same_training(saved["config"], fingerprint["config"])):
        log.info("checkpoint %s belongs to another config or data; training from the start", path)
        return None
    return state


def head_meta(ex: Examples, labels: list[str], config: Config) -> HeadMeta:
    prior = np.bincount(ex.primary, minlength=len(labels)) / len(ex.primary)
    return HeadMeta(prior=tuple(float(p) for p in prior), in_dim=int(ex.x.shape[-1]), labels=tuple(labels),
                    hidden_sizes=tuple(config.hidden_sizes), dropout=config.dropout, loss=config.loss,
                    segment_frames=config.segment_frames, embedding_key=config.embedding_key(), pool=config.head_pool)


def blend_weights(prob: np.ndarray, zs: np.ndarray, y: np.ndarray, groups: np.ndarray, train_recordings: np.ndarray,
                  zero_shot: ZeroShot, labels: list[str], *, seed: int = 0, prior: BlendPrior = BlendPrior(),
                  head_recordings: np.ndarray | None = None) -> tuple[np.ndarray, pd.DataFrame]:
    """Zero-shot blend weight per class chosen on validation rows (focal examples, labelled or
    validation soundscape windows; see :func:`birdclef.features.zeroshot.choose_weights`, with ``prior``
    and ``head_recordings``) → (weights, one row per class: label, mapped, train/validation recordings,
    weight, whether its own curve counted (``measured``), validation AUC of the head, of the backbone, of
    the blend). The table's ``attrs`` hold the shared weight and the pairs behind it.

    The weights are chosen on every row; a mapped class with no training recording in the fold
    takes the prior (its curve measures a head that never saw it, not the refit head that
    will). The blend's AUC is cross-fitted: the rows are dealt by ``groups`` into two halves in a
    seeded order, each half blended with the weights chosen on the other, so no row scores the
    weights it chose.

    ``prob``/``zs``/``y``: (n, C) head probabilities, backbone logits, 0/1 truth (NaN: not scored);
    ``groups``: (n,) the recording (or soundscape) of each row, counted per class where it is positive."""
    from birdclef.postprocess import blend_logits

    y = np.asarray(y, np.float64)
    positive = np.nan_to_num(y) > 0.5
    val_rec = recordings_per_class(groups, positive, len(labels))
    kw = dict(train_recordings=train_recordings, head_recordings=head_recordings, prior=prior)
    chosen = choose_weights(prob, zs, y, zero_shot.mapped, val_rec, **kw)
    side = deal_groups(groups, 2, seed)  # the two cross-fitting halves, whole groups each
    crossed = np.zeros_like(np.asarray(prob, np.float64))
    for h in (0, 1):
        fit, out = side != h, side == h
        other = choose_weights(prob[fit], zs[fit], y[fit], zero_shot.mapped,
                               recordings_per_class(np.asarray(groups)[fit], positive[fit], len(labels)), **kw)
        crossed[out] = blend_logits(prob[out], zs[out], other.weights)
    sig = 1 / (1 + np.exp(-np.clip(zs, -30, 30)))
    table = pd.DataFrame({
        "label": labels, "mapped": zero_shot.mapped, "train_recordings": train_recordings, "val_recordings": val_rec,
        "weight": chosen.weights, "measured": chosen.measured, "val_auc_head": masked_auc_columns(y, prob),
        "val_auc_zero_shot": np.where(zero_shot.mapped, masked_auc_columns(y, sig), np.nan),
        "val_auc_blend": masked_auc_columns(y, crossed),
    })
    table.attrs |= {"shared_weight": chosen.shared, "pairs": chosen.pairs}
    return chosen.weights, table


def guard_blend(val_mix: ValSoundscapes, mix_prob: np.ndarray, weights: np.ndarray, table: pd.DataFrame,
                train_recordings: np.ndarray, zero_shot: ZeroShot, config: Config, blend_kw: dict
                ) -> tuple[np.ndarray, pd.DataFrame, dict]:
    """The chosen blend ``weights`` through :func:`birdclef.models.blendguard.check` on the validation
    soundscapes (cross-fitted when ``val_select="soundscapes"`` chose them there, with the same evidence
    settings ``blend_kw``) → (the weights that submit: the backbone's where the guard fell back, the blend
    table with ``weight_chosen`` beside them, the guard's metrics; empty where it did not run)."""
    table = table.assign(weight_chosen=weights)
    choose = None
    if config.val_select == "soundscapes":
        files = np.repeat(np.asarray(val_mix.names, dtype=object), val_mix.counts)
        positive = np.nan_to_num(val_mix.truth) > 0.5

        def choose(fit: np.ndarray) -> np.ndarray:
            return choose_weights(mix_prob[fit], val_mix.zero_shot[fit], val_mix.truth[fit], zero_shot.mapped,
                                  recordings_per_class(files[fit], positive[fit], len(weights)),
                                  train_recordings=train_recordings, head_recordings=blend_kw["head_recordings"],
                                  prior=blend_kw["prior"]).weights

    guard = blendguard.check(val_mix, mix_prob, weights, zero_shot.mapped, config, choose=choose, seed=config.seed)
    if guard is None:
        return weights, table, {}
    if guard.fallback:
        weights = blendguard.backbone_weights(zero_shot.mapped)
        table = table.assign(weight=weights)
    return weights, table, guard.metrics()


def recordings_per_class(groups: np.ndarray, positive: np.ndarray, n_classes: int) -> np.ndarray:
    """(n_classes,) distinct recordings (or soundscapes) among rows with a positive: ``groups`` (n,)
    each row's recording, ``positive`` (n, n_classes) bool."""
    row, c = np.nonzero(positive)
    pairs = pd.DataFrame({"g": np.asarray(groups)[row], "c": c}).drop_duplicates()
    return np.bincount(pairs["c"].to_numpy(np.int64), minlength=n_classes)


def validation_soundscapes(ex: Examples, manifest: pd.DataFrame, labels: list[str], config: Config,
                           zero_shot: ZeroShot | None, *, progress: bool = False) -> ValSoundscapes | None:
    """The validation fold's focal recordings (fold ``config.fold`` of :func:`split_folds`) mixed into
    ``config.val_soundscapes`` test-like minutes (:func:`birdclef.models.valsoundscapes.build`); None when off."""
    if config.val_soundscapes <= 0:
        return None
    _, va = split_folds(ex, n_folds=config.n_folds, fold=config.fold, seed=config.seed)
    if not len(va):  # no validation fold (fewer than two groups): nothing to mix
        return None
    held = set(ex.groups[va][ex.kinds[va] == FOCAL])
    return valsoundscapes.build(manifest[manifest["filename"].isin(held)], labels, config, zero_shot, progress=progress)


def held_out_labelled_soundscapes(model: MLPHead, meta: HeadMeta, val: Validation, windows: pd.DataFrame,
                                  cache: EmbeddingCache, labels: list[str], config: Config, zero_shot: ZeroShot | None,
                                  path: Path) -> dict:
    """The fold's head on the labelled train soundscapes whose windows it held out, whole files as at
    submission (:func:`birdclef.models.valsoundscapes.labelled`): saved to ``path`` (a stale one removed
    when there are none) for the context model and later scoring → metrics ``val_soundscape_files_auc_head``,
    ``val_soundscape_files_auc_finished`` (after the submission's post-processing), ``n_val_soundscape_files``."""
    held = set(windows.loc[windows["row_id"].isin(val.window_ids), "filename"])  # a held-out window's file
    sets = valsoundscapes.labelled(windows[windows["filename"].isin(held)], cache, labels, config,
                                   zero_shot) if held else None
    if sets is None:
        if path.exists():
            path.unlink()
        return {}
    prob = sets.head_probabilities(model, meta, config)
    mapped = None if zero_shot is None else zero_shot.mapped
    finished, weights = sets.finished_score(prob, meta, config, mapped)
    valsoundscapes.save(path, sets, prob, weights, mapped)
    return {"val_soundscape_files_auc_head": valsoundscapes.score(sets.truth, prob),
            "val_soundscape_files_auc_finished": finished, "n_val_soundscape_files": len(sets.names)}


def run_training(*, config: Config, progress: bool = True) -> TrainResult:
    """Train the model family ``config.model_family`` names (:func:`birdclef.family.family`) and
    write ``<work_dir>/model``: :func:`train_embedding_head` for "mlp", the SED stage
    (:func:`birdclef.models.sed.stage.run_sed_training`) for "sed"."""
    return family(config.model_family).train(config=config, progress=progress)


def train_embedding_head(*, config: Config, progress: bool = True) -> TrainResult:
    """The "mlp" family: train a head on the preprocess stage's manifest (and its labelled soundscape
    windows) and write ``<work_dir>/model``.

    Steps: (weak-label cleaning: a first fit scores every segment) → fit on the training fold,
    the epoch chosen by the validation score (focal recordings and, where the data has them,
    held-out labelled soundscape windows, combined) → (pseudo-label rounds) → zero-shot blend
    weights per class chosen on the validation fold → with ``refit``, the same number of epochs
    on every recording and window (the head that submits has seen each labelled one). Writes
    head, config, metrics, curves, validation predictions and the blend table, and a row to the
    runs table.
    """
    from birdclef import runs
    from birdclef.features.soundscapes import load_windows
    from birdclef.models import pseudo
    from birdclef.models.pseudo import soundscape_metrics

    paths = competition_paths(config.data_dir)
    taxonomy = load_taxonomy(paths.taxonomy)
    labels = taxonomy["primary_label"].tolist()
    n = len(labels)
    cache = EmbeddingCache(config.work_dir, config)
    zero_shot = load_zero_shot(config, taxonomy)
    manifest, windows = load_manifest(config), load_windows(config)
    parts, skipped = [], pd.DataFrame(columns=["filename", "reason"])
    if len(manifest) or not len(windows):  # labelled soundscape windows alone may train a head
        focal, skipped = build_examples(manifest, cache, labels, config, zero_shot, progress=progress)
        parts.append(focal)
    if len(windows):
        sc_ex, sc_skipped = soundscape_examples(windows, cache, labels, config, zero_shot)
        parts += [sc_ex] if sc_ex is not None else []
        skipped = pd.concat([skipped, sc_skipped.rename(columns={"row_id": "filename"})], ignore_index=True)
    if not parts:
        raise BirdclefError("no training examples: no train recording and no labelled soundscape window gave one "
                            f"(see {RunLayout.of(config).preprocess})")
    ex = concat_examples(parts)
    model_folder = RunLayout.of(config).model
    out = model_folder.root
    meta = head_meta(ex, labels, config)
    folds = fold_split(ex, n_folds=config.n_folds, fold=config.fold, seed=config.seed)[2]
    if folds.note:  # small or uniform metadata (one recordist, one session): fewer folds, or none
        log.warning("validation folds: %s", folds.note)
    val_mix = validation_soundscapes(ex, load_manifest(config), labels, config, zero_shot, progress=progress)

    def fit(examples: Examples, **kwargs) -> tuple[MLPHead, pd.DataFrame, dict]:
        return train_head(examples, labels, config, progress=progress, val_mix=val_mix, **kwargs)

    cleaning, cleaned_table = {}, None
    if config.segment_cleaning > 0:
        first, _, _ = fit(ex, checkpoint=out / "checkpoint_uncleaned.pt")
        ex, cleaning, cleaned_table = clean_segments(ex, first, meta, config)
    tr, va = split_folds(ex, n_folds=config.n_folds, fold=config.fold, seed=config.seed)
    val = validation_set(ex, va, n)
    train_rec = recordings_per_class(ex.groups[tr], ex.targets[tr] >= 1.0, n)
    # the blend's evidence (issue 31): how far a weight may move from the prior, and which head it leans for
    blend_kw = dict(seed=config.seed, prior=BlendPrior.of(config),
                    head_recordings=recordings_per_class(ex.groups, ex.targets >= 1.0, n) if config.refit else train_rec)

    def blend_for(m: MLPHead) -> tuple[np.ndarray | None, pd.DataFrame | None, np.ndarray | None]:
        """(zero-shot blend weights per class chosen for head ``m``, their table, its probabilities on the
        validation soundscapes); None where there is no backbone to blend or nothing to choose on."""
        mix_prob = val_mix.head_probabilities(m, meta, config) if val_mix is not None else None
        if zero_shot is not None and val_mix is not None and config.val_select == "soundscapes":
            window_files = np.repeat(np.asarray(val_mix.names, dtype=object), val_mix.counts)
            return (*blend_weights(mix_prob, val_mix.zero_shot, val_mix.truth, window_files, train_rec,
                                   zero_shot, labels, **blend_kw), mix_prob)
        if zero_shot is not None and ex.zero_shot is not None and len(val.examples):
            p_focal = predict(m, meta, ex.x[val.focal])
            p_windows = (pool_windows(predict(m, meta, ex.x[val.windows]), val.owner, len(val.window_ids),
                                      config.window_pool) if len(val.windows) else np.zeros((0, n), np.float32))
            # a window's backbone logit: the highest of its crops' (as zeroshot.window_logits takes its frames')
            window_zs = pool_windows(ex.zero_shot[val.windows], val.owner, len(val.window_ids), "max")
            window_groups = np.empty(len(val.window_ids), dtype=object)
            window_groups[val.owner] = ex.groups[val.windows]  # every crop of a window is of the same soundscape
            return (*blend_weights(
                np.concatenate([p_focal, p_windows]), np.concatenate([ex.zero_shot[val.focal], window_zs]),
                np.concatenate([val.y_focal, val.y_windows]), np.concatenate([ex.groups[val.focal], window_groups]),
                train_rec, zero_shot, labels, **blend_kw), mix_prob)
        return None, None, mix_prob

    def with_blend(weights: np.ndarray | None) -> HeadMeta:
        return meta if weights is None else replace(meta, zero_shot_weights=tuple(float(w) for w in weights))

    def finished_auc(mix_prob: np.ndarray, m_meta: HeadMeta) -> tuple[float, np.ndarray | None]:
        """(the validation soundscapes' score after the submission's post-processing, the blend weights used)."""
        return val_mix.finished_score(mix_prob, m_meta, config, None if zero_shot is None else zero_shot.mapped)

    def judge(m: MLPHead) -> tuple[HeadMeta, float | None]:
        """Head ``m``'s metadata with the blend the submission would use, and its ``val_mix_auc_finished``
        (None without validation soundscapes): the pseudo-label rounds' teacher and guard."""
        weights, _, mix_prob = blend_for(m)
        m_meta = with_blend(weights)
        return m_meta, (None if val_mix is None else finished_auc(mix_prob, m_meta)[0])

    model, hist, metrics = fit(ex, checkpoint=out / "checkpoint.pt")
    rounds, pseudo_extra = None, None
    if config.pseudo_rounds:
        model, hist, metrics, rounds, pseudo_extra = pseudo.pseudo_label(ex, labels, config, model, hist, metrics, fit=fit,
                                                           meta=meta, progress=progress, out_dir=out, judge=judge,
                                                           zero_shot=zero_shot)
    metrics |= cleaning | {"n_folds": folds.n_folds} | ({"folds_note": folds.note} if folds.note else {})
    prob_focal = predict(model, meta, ex.x[val.focal])
    per_class = per_class_auc(val.y_focal, prob_focal, labels)
    sc_per_class, prob_windows = None, np.zeros((0, n), np.float32)
    if len(val.windows):
        prob_windows = pool_windows(predict(model, meta, ex.x[val.windows]), val.owner, len(val.window_ids),
                                    config.window_pool)
        sc_per_class = per_class_auc(val.y_windows, prob_windows, labels)
    weights, blend_table, mix_prob = blend_for(model)
    if blend_table is not None and val_mix is not None:  # never knowingly below the backbone (issue 31)
        weights, blend_table, guard_metrics = guard_blend(val_mix, mix_prob, weights, blend_table, train_rec,
                                                          zero_shot, config, blend_kw)
        metrics |= guard_metrics
    if blend_table is not None:
        meta = with_blend(weights)
        mapped = blend_table[blend_table["mapped"]]
        metrics |= {"zero_shot_classes": int(zero_shot.mapped.sum()),
                    "mean_zero_shot_weight": float(mapped["weight"].mean()),
                    "blend_shared_weight": float(blend_table.attrs["shared_weight"]),
                    "blend_shared_pairs": int(blend_table.attrs["pairs"]),
                    "blend_measured_classes": int(mapped["measured"].sum()),
                    "val_auc_head_mapped": float(mapped["val_auc_head"].mean()),
                    "val_auc_zero_shot": float(mapped["val_auc_zero_shot"].mean()),
                    "val_auc_blend": float(mapped["val_auc_blend"].mean())}
    if val_mix is not None:  # the fold's head on the validation soundscapes, after the submission's post-processing
        finished, chosen_w = finished_auc(mix_prob, meta)
        metrics |= {"val_mix_auc_head": valsoundscapes.score(val_mix.truth, mix_prob),
                    "val_mix_auc_finished": finished, "n_val_mix_soundscapes": len(val_mix.names)}
        valsoundscapes.save(out / valsoundscapes.FILE, val_mix, mix_prob, chosen_w,
                            None if zero_shot is None else zero_shot.mapped)
    elif (out / valsoundscapes.FILE).exists():
        (out / valsoundscapes.FILE).unlink()
    metrics |= held_out_labelled_soundscapes(model, meta, val, windows, cache, labels, config, zero_shot,
                                             out / valsoundscapes.LABELLED_FILE)
    if "context" in config.postprocess:  # the context model, on what was just saved (birdclef.models.context)
        from birdclef.models.context import train_context

        metrics |= train_context(model_folder, config, progress=progress)
    kept_pseudo = bool(rounds is not None and rounds["kept"].sum() > 1)
    # soft (noisy-student) rounds refit with the kept round's pseudo-labelled windows; confident ones skip it
    refit_extra = pseudo_extra if kept_pseudo and config.pseudo_targets == "soft" else None
    if config.refit and kept_pseudo and refit_extra is None:
        log.warning("refit skipped: the kept head trained on pseudo-labelled windows, which a refit would drop")
    if config.refit and not folds.validates:
        log.info("refit skipped: without validation the head trained on every example already")
    elif config.refit and (not kept_pseudo or refit_extra is not None):
        model, _, _ = fit(ex, checkpoint=out / "checkpoint_refit.pt", refit_epochs=metrics["best_epoch"],
                          extra=refit_extra)
        metrics |= {"refit_epochs": metrics["best_epoch"], "n_refit_recordings": int(len(set(ex.groups)))}
    if "soundscape_score" not in metrics:
        metrics |= soundscape_metrics(model, meta, config)
    save_head(model, meta, model_folder.head)
    write_json(config.to_dict(), model_folder.config)
    write_json(metrics, model_folder.metrics)
    write_csv(hist, out / "history.csv")
    write_csv(per_class, out / "per_class_auc.csv")
    write_npz(out / "val_predictions.npz", y_true=val.y_focal, y_score=prob_focal,
              y_true_windows=val.y_windows, y_score_windows=prob_windows)
    write_csv(skipped, out / "skipped.csv")
    site_prior = fit_site_prior(windows, labels).reset_index() if len(windows) else None
    if site_prior is not None and site_prior.empty:
        site_prior = None
    for name, table in (("pseudo_rounds.csv", rounds), ("cleaning.csv", cleaned_table), ("zero_shot.csv", blend_table),
                        ("soundscape_per_class_auc.csv", sc_per_class), (PRIOR_FILE, site_prior)):
        if table is not None:
            write_csv(table, out / name)
        elif (out / name).exists():  # a previous run's table would describe other examples
            (out / name).unlink()
    runs.record_run(config, stage="train", metrics=metrics)
    if len(skipped):
        print(f"train: {len(skipped)} recording(s) or window(s) gave no example (see {out / 'skipped.csv'})")
    if folds.note:
        print(f"train: validation folds: {folds.note}")
    print(f"train: {metrics['n_train_examples']} train / {metrics['n_val_examples']} val segments, "
          + (f"best val macro AUC {metrics['val_auc']:.3f} at epoch {metrics['best_epoch']}" if folds.validates
             else f"no validation: the last epoch ({metrics['best_epoch']}) is kept")
          + (f" (focal recordings {metrics['val_focal_auc']:.3f}, {metrics['n_val_soundscape_windows']} soundscape "
             f"windows {metrics['val_soundscape_auc']:.3f})" if "val_soundscape_auc" in metrics else "")
          + (f"; on the {metrics['zero_shot_classes']} classes the backbone knows: head {metrics['val_auc_head_mapped']:.3f}, "
             f"backbone {metrics['val_auc_zero_shot']:.3f}, blend {metrics['val_auc_blend']:.3f}"
             if "val_auc_blend" in metrics else "")
          + (f"; blend guard: finished {metrics['guard_finished_auc']:.3f} vs backbone alone {metrics['guard_backbone_auc']:.3f}"
             f" and through the same post-processing {metrics['guard_backbone_finished_auc']:.3f}"
             + (" → FELL BACK to the backbone's weights" if metrics["guard_fallback"] else " (kept)") if "guard_fallback" in metrics else "")
          + (f"; {metrics['n_val_mix_soundscapes']} validation soundscapes {metrics['val_mix_auc_head']:.3f} "
             f"(post-processed {metrics['val_mix_auc_finished']:.3f})" if "val_mix_auc_head" in metrics else "")
          + (f"; {metrics['n_val_soundscape_files']} held-out labelled soundscapes, whole files "
             f"{metrics['val_soundscape_files_auc_head']:.3f} "
             f"(post-processed {metrics['val_soundscape_files_auc_finished']:.3f})"
             if "val_soundscape_files_auc_head" in metrics else "")
          + (f"; refit on all {metrics['n_refit_recordings']} recordings" if "refit_epochs" in metrics else "")
          + (f"; train-soundscape score {metrics['soundscape_score']:.3f}" if "soundscape_score" in metrics else ""))
    return TrainResult(model, meta, hist, metrics, per_class, out, rounds, sc_per_class)
