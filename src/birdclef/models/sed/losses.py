"""Multi-label losses of clip logits (b, k) against soft targets (b, k) in [0, 1], per clip → (b,).

- ``bce``: binary cross-entropy, mean over classes;
- ``focal``: BCE times (1 - p_t) ** gamma, so easy elements count less;
- ``soft_auc``: a pairwise ranking surrogate of ROC-AUC, the competition metric: for every class,
  every (positive i, negative j) pair of the batch costs softplus(-(z_i - z_j)), weighted
  t_i · (1 - t_j) so soft targets count in proportion; a clip's loss is its share of the pairs.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from birdclef.models.sed.config import SED_LOSSES


def bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="none").mean(dim=1)


def focal(logits: torch.Tensor, targets: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    per = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p = torch.sigmoid(logits)
    p_t = p * targets + (1 - p) * (1 - targets)
    return (per * (1 - p_t).clamp(min=0) ** gamma).mean(dim=1)


def soft_auc(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    z, t = logits.float(), targets.float()
    diff = z[:, None, :] - z[None, :, :]  # (i, j, k): positive i over negative j
    w = t[:, None, :] * (1 - t[None, :, :])
    cost = F.softplus(-diff) * w
    total = w.sum().clamp_min(1e-12)
    # each pair's cost is split between its two clips, so per-clip losses add up to the batch loss
    per_clip = (cost.sum(dim=(1, 2)) + cost.sum(dim=(0, 2))) / (2 * total)
    return per_clip * len(z)


def classification_loss(name: str, focal_gamma: float = 2.0) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The per-clip loss called ``name`` (one of :data:`birdclef.models.sed.config.SED_LOSSES`)."""
    if name == "bce":
        return bce
    if name == "focal":
        return lambda z, t: focal(z, t, focal_gamma)
    if name == "soft_auc":
        return soft_auc
    raise ValueError(f"unknown loss {name!r}; known: {', '.join(map(repr, SED_LOSSES))}")
