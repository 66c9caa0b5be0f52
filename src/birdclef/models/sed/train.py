"""Training a SED model: clips → (mixup) → mel → (SpecAugment) → CNN → losses → AdamW.

One function, :func:`train_sed`: multi-label loss on clip logits (``bce`` / ``focal`` /
``soft_auc``, weighted per clip), optionally distillation losses toward a :class:`Teacher`
(:mod:`birdclef.models.sed.distill`); AdamW with a linear warm-up then cosine decay, per step; an
exponential moving average of the weights (evaluated and kept when ``ema_decay`` is set); mixed
precision only on CUDA; CUDA when present, else CPU. Seeds fix the initial weights, the order of
clips, their crops and every augmentation: two CPU runs with the same config give identical weights.

Validation (held-out recordings, :class:`SedClips` with ``train=False``) reports the loss and the
macro ROC-AUC of the clip probabilities against the primary labels (:func:`birdclef.data.metric.macro_auc`);
the epoch with the best AUC is kept (the lowest loss where AUC is undefined; the last without validation).
"""
from __future__ import annotations

import copy
import logging
import math
import random
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, RandomSampler, WeightedRandomSampler
from tqdm.auto import tqdm

from birdclef.data.metric import macro_auc
from birdclef.models.sed.augment import mixup, spec_augment
from birdclef.models.sed.config import SedConfig
from birdclef.models.sed.data import SedClips
from birdclef.models.sed.distill import Projection, embedding_loss, logit_loss
from birdclef.models.sed.losses import classification_loss
from birdclef.models.sed.model import SedModel, build_model

log = logging.getLogger(__name__)


@dataclass
class SedTrainResult:
    model: SedModel  # the kept weights (the EMA's when ema_decay is set), on the CPU, in eval mode
    history: pd.DataFrame  # epoch, train_loss, val_loss, val_auc, lr, seconds
    metrics: dict
    projection: Projection | None = None  # the distillation projection, when one was trained


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``device``, else CUDA when present, else the CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def lr_factor(step: int, total: int, warmup_fraction: float) -> float:
    """Linear warm-up over ``warmup_fraction`` of ``total`` steps, then cosine decay to 0."""
    warm = int(round(total * warmup_fraction))
    if step < warm:
        return (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # workers × threads must not oversubscribe the cores


def _loader(data: SedClips, config: SedConfig, *, train: bool, generator: torch.Generator | None = None
            ) -> DataLoader:
    sampler, drop_last = None, False
    if train:
        weighted = config.balanced_sampling or config.window_share is not None or config.epoch_size is not None
        if weighted:
            w = data.sample_weights(balanced=config.balanced_sampling, window_share=config.window_share)
            sampler = WeightedRandomSampler(torch.from_numpy(w), config.epoch_size or len(data), replacement=True,
                                            generator=generator)
        else:
            sampler = RandomSampler(data, generator=generator)
        drop_last = (config.epoch_size or len(data)) > config.batch_size  # no batch of 1 for batch norm
    return DataLoader(data, batch_size=config.batch_size, sampler=sampler, shuffle=False, drop_last=drop_last,
                      num_workers=config.num_workers, worker_init_fn=_worker_init if config.num_workers else None,
                      persistent_workers=False)


def _update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        for (_, e), (_, p) in zip(ema.state_dict().items(), model.state_dict().items()):
            if e.dtype.is_floating_point:
                e.mul_(decay).add_(p.detach(), alpha=1 - decay)
            else:
                e.copy_(p)


@torch.no_grad()
def predict_clips(model: SedModel, data: SedClips, config: SedConfig, device: torch.device | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every item of ``data`` in order → (clip probabilities (n, k), targets (n, k), truth (n, k), weights (n,))."""
    device = device or next(model.parameters()).device
    model.eval()
    probs, targets, truth, weights = [], [], [], []
    for batch in _loader(data, config, train=False):
        clip, _, _ = model(batch["wave"].to(device))
        probs.append(torch.sigmoid(clip.float()).cpu().numpy())
        targets.append(batch["target"].numpy())
        truth.append(batch["truth"].numpy())
        weights.append(batch["weight"].numpy())
    return tuple(np.concatenate(x) for x in (probs, targets, truth, weights))  # type: ignore[return-value]


def evaluate(model: SedModel, data: SedClips, config: SedConfig, device: torch.device | None = None
             ) -> tuple[float, float]:
    """(weighted loss of ``config.loss`` on the clips, macro AUC of their probabilities against ``truth``)."""
    prob, target, truth, weight = predict_clips(model, data, config, device)
    loss_fn = classification_loss(config.loss, config.focal_gamma)
    logits = torch.logit(torch.from_numpy(prob).double().clamp(1e-7, 1 - 1e-7))
    per = loss_fn(logits, torch.from_numpy(target).double()).numpy()
    loss = float((per * weight).sum() / max(weight.sum(), 1e-12))
    keep = weight > 0
    return loss, macro_auc(truth[keep], prob[keep]) if keep.any() else float("nan")


def train_sed(train: SedClips, config: SedConfig, *, val: SedClips | None = None, model: SedModel | None = None,
              device: str | torch.device | None = None, progress: bool = True, desc: str = "SED epochs"
              ) -> SedTrainResult:
    """Fit a SED model on ``train`` (validated on ``val`` when given) → :class:`SedTrainResult`.

    ``model``: start from these weights (a copy is trained), else :func:`build_model` from ``config``.
    Distillation runs when ``config`` gives it a weight and ``train`` has a teacher.
    """
    t_start = time.perf_counter()
    device = pick_device(device)
    seed_everything(config.seed)
    n_classes = len(train.labels)
    model = copy.deepcopy(model) if model is not None else build_model(config, n_classes)
    model.to(device)
    teacher = train.teacher
    projection = None
    if config.distill_embedding_weight > 0 and teacher is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed + 1)
            projection = Projection(model.num_features, teacher.dim).to(device)
    params = list(model.parameters()) + ([] if projection is None else list(projection.parameters()))
    opt = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    gen = torch.Generator().manual_seed(config.seed)
    aug = torch.Generator().manual_seed(config.seed + 1)
    loader = _loader(train, config, train=True, generator=gen)
    steps_per_epoch = max(1, len(loader))
    total = steps_per_epoch * config.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total, config.warmup_fraction))
    use_amp = bool(config.amp and device.type == "cuda")
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    ema = copy.deepcopy(model).eval() if config.ema_decay is not None else None
    loss_fn = classification_loss(config.loss, config.focal_gamma)
    history, best, best_state, step = [], -np.inf, None, 0
    for epoch in tqdm(range(1, config.epochs + 1), desc=desc, disable=not progress, mininterval=1.0):
        t0 = time.perf_counter()
        train.set_epoch(epoch)
        model.train()
        if projection is not None:
            projection.train()
        total_loss, seen = 0.0, 0
        for batch in loader:
            wave = batch["wave"].to(device)
            target, weight = batch["target"].to(device), batch["weight"].to(device)
            t_emb, t_logits = batch["teacher_embedding"].to(device), batch["teacher_logits"].to(device)
            t_mask, has = batch["teacher_mask"].to(device), batch["has_teacher"].to(device)
            if config.mixup_alpha > 0 and float(torch.rand(1, generator=aug)) < config.mixup_prob:
                wave, target, (t_emb, t_logits), _, perm = mixup(wave, target, alpha=config.mixup_alpha, generator=aug,
                                                                  others=(t_emb, t_logits))
                perm = perm.to(device)
                has, t_mask, weight = has * has[perm], t_mask * t_mask[perm], torch.minimum(weight, weight[perm])
            with torch.no_grad():
                mel = model.frontend(wave)
            mel = spec_augment(mel, time_masks=config.time_masks, time_mask_frames=config.time_mask_frames,
                               freq_masks=config.freq_masks, freq_mask_bins=config.freq_mask_bins, generator=aug)
            with torch.autocast(device_type=device.type, dtype=amp_dtype, enabled=use_amp):
                clip, _, _, pooled = model.forward_mel(mel, pooled=True)
                per = config.label_weight * loss_fn(clip.float(), target) * weight
                if projection is not None:
                    per = per + config.distill_embedding_weight * embedding_loss(projection(pooled.float()), t_emb, has)
                if config.distill_logit_weight > 0 and teacher is not None and teacher.has_logits:
                    per = per + config.distill_logit_weight * logit_loss(
                        clip.float(), t_logits, t_mask * has[:, None], config.distill_temperature)
                loss = per.mean()
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sched.step()
            step += 1
            if ema is not None:
                _update_ema(ema, model, min(config.ema_decay, (1 + step) / (10 + step)))
            total_loss += float(loss.detach()) * len(wave)
            seen += len(wave)
        judged = ema if ema is not None else model
        val_loss, val_auc = evaluate(judged, val, config, device) if val is not None else (float("nan"), float("nan"))
        history.append({"epoch": epoch, "train_loss": total_loss / max(seen, 1), "val_loss": val_loss,
                        "val_auc": val_auc, "lr": sched.get_last_lr()[0], "seconds": time.perf_counter() - t0})
        chosen = val_auc if not np.isnan(val_auc) else -val_loss
        if np.isnan(chosen) or chosen >= best:
            best = chosen
            best_state = {k: v.detach().cpu().clone() for k, v in judged.state_dict().items()}
    final = build_model(config, n_classes, load_pretrained=False)
    final.load_state_dict(best_state)
    final.eval()
    hist = pd.DataFrame(history)
    scored = hist["val_auc"] if hist["val_auc"].notna().any() else -hist["val_loss"]
    best_row = hist.loc[scored[scored == scored.max()].index[-1]] if scored.notna().any() else hist.iloc[-1]
    metrics = {
        "n_train_items": len(train), "n_train_recordings": train.n_recordings, "n_train_windows": len(train.windows),
        "n_val_clips": 0 if val is None else len(val), "best_epoch": int(best_row["epoch"]),
        "val_auc": float(best_row["val_auc"]), "final_val_auc": float(hist["val_auc"].iloc[-1]),
        "device": device.type, "amp": use_amp, "init": config.init, "seconds": time.perf_counter() - t_start,
        "steps": step, "distilled": projection is not None or bool(config.distill_logit_weight > 0 and teacher is not None
                                                                   and teacher.has_logits),
    }
    if projection is not None:
        projection.cpu().eval()
    return SedTrainResult(final, hist, metrics, projection)
