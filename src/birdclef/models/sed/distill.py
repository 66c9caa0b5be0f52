"""Distillation: a SED CNN learns from a bird backbone's cached outputs, with or without labels.

The embedding stage already cached, per recording, the backbone's frame embeddings and (for a
backbone with species scores, BirdNET or Perch v2) its logits for the taxonomy's mapped classes
(:class:`birdclef.features.embeddings.EmbeddingCache`, :class:`birdclef.features.zeroshot.ZeroShot`). For a training
clip [start, end) of a recording, :class:`Teacher` gives

- the mean embedding of the backbone frames whose centre lies in the clip (the nearest frame
  when none does) → :func:`embedding_loss`: 1 − cosine between it and a linear projection
  (:class:`Projection`) of the CNN's pooled features;
- the highest logit of those frames per class (as :meth:`ZeroShot.window_logits` scores a
  window) → :func:`logit_loss`: the binary KL divergence between the backbone's and the CNN's
  probabilities at a temperature, over the mapped classes only.

Both losses are 0 exactly when the student matches the teacher.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from birdclef.errors import BirdclefError


@dataclass(frozen=True)
class TeacherFrames:
    """One recording's cached backbone outputs."""

    starts_s: np.ndarray  # (n_frames,)
    embeddings: np.ndarray  # (n_frames, dim) float16
    logits: np.ndarray | None  # (n_frames, n_classes) float16, 0 for unmapped classes; None: no scores


class Teacher:
    """The backbone's targets for any clip of the recordings it holds (picklable: DataLoader workers get a copy)."""

    def __init__(self, frames: dict[str, TeacherFrames], *, frame_s: float, n_classes: int,
                 mapped: np.ndarray | None = None):
        if not frames:
            raise BirdclefError("a teacher needs at least one recording's cached backbone outputs")
        self.frames = frames
        self.frame_s = float(frame_s)  # the backbone's window length
        self.n_classes = int(n_classes)
        self.dim = int(next(iter(frames.values())).embeddings.shape[1])
        self.mapped = np.zeros(n_classes, bool) if mapped is None else np.asarray(mapped, bool)

    @property
    def has_logits(self) -> bool:
        return bool(self.mapped.any())

    @classmethod
    def from_cache(cls, paths: Iterable[str | Path], cache, *, frame_s: float, n_classes: int, zero_shot=None
                   ) -> "Teacher":
        """From an :class:`~birdclef.features.embeddings.EmbeddingCache` (recordings not cached are left out;
        with a :class:`~birdclef.features.zeroshot.ZeroShot`, the mapped classes' logits too)."""
        frames = {}
        columns = None if zero_shot is None else zero_shot.score_columns
        for p in paths:
            e = cache.load(p, score_columns=columns)
            if e is None:
                continue
            logits = None if zero_shot is None else zero_shot.frame_logits(e).astype(np.float16)
            frames[str(p)] = TeacherFrames(np.asarray(e.starts_s, np.float64), e.embeddings.astype(np.float16), logits)
        return cls(frames, frame_s=frame_s, n_classes=n_classes, mapped=None if zero_shot is None else zero_shot.mapped)

    def __contains__(self, path: object) -> bool:
        return str(path) in self.frames

    def targets(self, path: str | Path, start_s: float, end_s: float) -> tuple[np.ndarray, np.ndarray] | None:
        """(mean embedding (dim,), highest logit per class (n_classes,)) of the frames centred in
        [start_s, end_s); None when the recording is not held."""
        f = self.frames.get(str(path))
        if f is None:
            return None
        centres = f.starts_s + self.frame_s / 2
        idx = np.flatnonzero((centres >= start_s) & (centres < end_s))
        if len(idx) == 0:
            idx = np.array([int(np.argmin(np.abs(centres - (start_s + end_s) / 2)))])
        emb = f.embeddings[idx].astype(np.float32).mean(axis=0)
        logits = (f.logits[idx].astype(np.float32).max(axis=0) if f.logits is not None
                  else np.zeros(self.n_classes, np.float32))
        return emb, logits


class Projection(nn.Module):
    """Pooled CNN features (b, c) → the teacher's embedding space (b, dim). Trained with the student,
    not part of the saved model."""

    def __init__(self, in_features: int, dim: int):
        super().__init__()
        self.linear = nn.Linear(in_features, dim)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.linear(pooled)


def embedding_loss(projected: torch.Tensor, target: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Per clip 1 − cos(projected, target), (b,); 0 where ``present`` (b,) is 0 (no teacher output)."""
    cos = F.cosine_similarity(projected.float(), target.float(), dim=1, eps=1e-8)
    return (1 - cos) * present.float()


def logit_loss(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor, temperature: float = 1.0
               ) -> torch.Tensor:
    """Per clip binary KL(teacher ‖ student) at ``temperature``, averaged over the classes in ``mask``
    (b, k) (mapped classes of clips with a teacher), scaled by T² (b,); 0 where a clip has none."""
    t = float(temperature)
    zs, zt, m = student.float() / t, teacher.float() / t, mask.float()
    pt = torch.sigmoid(zt)
    kl = F.binary_cross_entropy_with_logits(zs, pt, reduction="none") - \
        F.binary_cross_entropy_with_logits(zt, pt, reduction="none")
    return (kl * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0) * t * t
