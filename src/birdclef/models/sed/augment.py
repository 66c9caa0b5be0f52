"""Training augmentations: waveform mixup and SpecAugment. Both return new tensors and draw
from the ``torch.Generator`` they are given (same generator state → same augmentation)."""
from __future__ import annotations

from typing import Sequence

import torch


def mixup(wave: torch.Tensor, targets: torch.Tensor, *, alpha: float, generator: torch.Generator,
          others: Sequence[torch.Tensor] = (), union: bool = True
          ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """Mix each clip with another of the batch: ``λ·x + (1-λ)·x[perm]``, λ ~ Beta(α, α) per clip.

    ``wave`` (b, n); ``targets`` (b, k): with ``union`` the element-wise maximum of the two clips'
    targets (both sounds are heard in the mix), else mixed like the waves. ``others`` (each
    (b, ...), e.g. a teacher's targets) are mixed like the waves. Returns (waves, targets,
    others, λ (b,), perm (b,)).
    """
    b = wave.shape[0]
    perm = torch.randperm(b, generator=generator)
    beta = torch.distributions.Beta(torch.tensor(float(alpha)), torch.tensor(float(alpha)))
    # Beta's sampler takes no generator: draw λ by inverse transform of a uniform from ours instead
    u = torch.rand(b, generator=generator)
    lam = _beta_icdf(beta, u).to(wave.device, wave.dtype)
    perm_d = perm.to(wave.device)

    def mix(x: torch.Tensor) -> torch.Tensor:
        lam_x = lam.reshape(-1, *([1] * (x.dim() - 1))).to(x.dtype)
        return lam_x * x + (1 - lam_x) * x[perm_d]

    mixed_targets = torch.maximum(targets, targets[perm_d]) if union else mix(targets)
    return mix(wave), mixed_targets, [mix(o) for o in others], lam, perm


def _beta_icdf(beta: torch.distributions.Beta, u: torch.Tensor, steps: int = 40) -> torch.Tensor:
    """Beta quantiles of ``u`` by bisection on the CDF (torch's Beta has no icdf)."""
    a, b = float(beta.concentration1), float(beta.concentration0)
    grid = torch.linspace(1e-6, 1 - 1e-6, 2001, dtype=torch.float64)
    logpdf = (a - 1) * torch.log(grid) + (b - 1) * torch.log1p(-grid)
    pdf = torch.exp(logpdf - logpdf.max())
    cdf = torch.cumsum(pdf, 0)
    cdf = cdf / cdf[-1]
    idx = torch.searchsorted(cdf, u.to(torch.float64)).clamp(max=len(grid) - 1)
    return grid[idx].to(torch.float32)


def spec_augment(mel: torch.Tensor, *, time_masks: int, time_mask_frames: int, freq_masks: int, freq_mask_bins: int,
                 generator: torch.Generator) -> torch.Tensor:
    """(b, 1, n_mels, t) → the same shape with, per clip, ``time_masks`` stretches of 1..``time_mask_frames``
    frames and ``freq_masks`` bands of 1..``freq_mask_bins`` bins set to 0 (the standardised mean)."""
    b, _, n_mels, t = mel.shape
    keep = torch.ones(b, 1, n_mels, t, dtype=torch.bool)
    for count, widest, size, axis in ((time_masks, time_mask_frames, t, 3), (freq_masks, freq_mask_bins, n_mels, 2)):
        if count <= 0 or widest <= 0:
            continue
        pos = torch.arange(size)
        for _ in range(count):
            width = torch.randint(1, min(widest, size) + 1, (b,), generator=generator)
            start = (torch.rand(b, generator=generator) * (size - width + 1)).long()
            hit = (pos[None] >= start[:, None]) & (pos[None] < (start + width)[:, None])  # (b, size)
            shape = (b, 1, 1, size) if axis == 3 else (b, 1, size, 1)
            keep &= ~hit.reshape(shape)
    return mel * keep.to(mel.device, mel.dtype)
