"""The classification head: pool → MLP → one logit per taxonomy class; saved and loaded with its
:class:`HeadMeta`; and its window probabilities for a soundscape's cached embeddings (:func:`predict_windows`,
:func:`head_windows`; :func:`soundscape_probabilities` adds the post-processing chain)."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from birdclef.config import HEAD_POOLS, Config
from birdclef.data.competition import n_windows
from birdclef.features.embeddings import Embedded, frames_in, pool_segments
from birdclef.io import atomic_path
from birdclef.postprocess import average, finish_windows


@dataclass(frozen=True)
class HeadMeta:
    """Everything needed to rebuild and apply a saved head."""

    in_dim: int
    labels: tuple[str, ...]
    hidden_sizes: tuple[int, ...]
    dropout: float
    loss: str  # "ce" → softmax probabilities, "bce" → sigmoid
    segment_frames: int
    embedding_key: str
    prior: tuple[float, ...] = ()  # class frequencies in training; the fallback for unreadable soundscapes
    pool: str = "mean"  # how a segment's frames combine: "mean" (embeddings) or "attention" (frame logits)
    zero_shot_weights: tuple[float, ...] = ()  # per class, chosen on validation (birdclef.features.zeroshot); (): none


STANDARDISE_ROWS = 8192  # examples read at once when fitting the input standardisation


class MLPHead(nn.Module):
    """(batch, frames, dim) or (batch, dim) → (batch, n_classes) logits.

    ``pool="mean"`` (the seed recipe): frames are mean-pooled, standardised with the training
    set's statistics (buffers), then dim→h1→ReLU→dropout→h2→ReLU→dropout→classes
    (1024→512→256→classes). ``pool="attention"``: the same MLP scores every frame, and a
    per-class attention over the frames (softmax over time of a linear map of the last hidden
    layer, as in sound-event-detection heads) weights the frame logits into the segment's, so a
    call filling one second of a 5-s segment is not averaged away by four seconds of background.
    """

    def __init__(self, in_dim: int, n_classes: int, hidden_sizes: tuple[int, ...] = (512, 256), dropout: float = 0.3,
                 pool: str = "mean"):
        super().__init__()
        if pool not in HEAD_POOLS:
            raise ValueError(f"unknown head pool {pool!r}; known: {', '.join(map(repr, HEAD_POOLS))}")
        self.pool = pool
        layers: list[nn.Module] = []
        d = in_dim
        for h in hidden_sizes:
            layers += [nn.Linear(d, h), nn.ReLU(), nn.Dropout(dropout)]
            d = h
        layers.append(nn.Linear(d, n_classes))
        self.mlp = nn.Sequential(*layers)
        if pool == "attention":
            self.attention = nn.Linear(d, n_classes)
        self.register_buffer("mean", torch.zeros(in_dim))
        self.register_buffer("std", torch.ones(in_dim))

    def set_standardisation(self, x: np.ndarray, rows: np.ndarray | None = None) -> None:
        """Fit the input standardisation on training examples, (n, frames, dim) or (n, dim): on the
        pooled features for ``pool="mean"``, on the frames for ``pool="attention"``. ``rows``: the
        examples of ``x`` to fit on (None: all). Read in chunks of :data:`STANDARDISE_ROWS`, two passes
        (mean, then spread) in float64: no copy of ``x`` (at 30k recordings, ~1.4 GB each)."""
        x = np.asarray(x)
        rows = np.arange(len(x)) if rows is None else np.asarray(rows)

        def chunks():
            for i in range(0, len(rows), STANDARDISE_ROWS):
                c = np.asarray(x[rows[i:i + STANDARDISE_ROWS]], np.float64)
                if c.ndim == 3:
                    c = c.mean(axis=1) if self.pool == "mean" else c.reshape(-1, c.shape[-1])
                yield c

        total, count = 0.0, 0
        for c in chunks():
            total, count = total + c.sum(axis=0), count + len(c)
        mean = total / count
        var = sum(((c - mean) ** 2).sum(axis=0) for c in chunks()) / count
        self.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.std.copy_(torch.as_tensor(np.sqrt(var) + 1e-6, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool == "mean":
            if x.dim() == 3:
                x = x.mean(dim=1)
            return self.mlp((x - self.mean) / self.std)
        if x.dim() == 2:
            x = x[:, None]
        hidden = self.mlp[:-1]((x - self.mean) / self.std)  # (batch, frames, h)
        weights = torch.softmax(self.attention(hidden).clamp(-10, 10), dim=1)  # (batch, frames, classes)
        return (weights * self.mlp[-1](hidden)).sum(dim=1)


def probabilities(logits: torch.Tensor, loss: str) -> torch.Tensor:
    return torch.softmax(logits, dim=-1) if loss == "ce" else torch.sigmoid(logits)


def save_head(model: MLPHead, meta: HeadMeta, path: str | Path) -> Path:
    with atomic_path(path, ".pt") as tmp:
        torch.save({"state_dict": model.state_dict(), "meta": asdict(meta)}, tmp)
    return Path(path)


def load_head(path: str | Path) -> tuple[MLPHead, HeadMeta]:
    blob = torch.load(Path(path), map_location="cpu", weights_only=True)
    m = blob["meta"]
    meta = HeadMeta(**{**m, "labels": tuple(m["labels"]), "hidden_sizes": tuple(m["hidden_sizes"]),
                       "prior": tuple(m.get("prior", ())),
                       "zero_shot_weights": tuple(m.get("zero_shot_weights", ()))})
    model = MLPHead(meta.in_dim, len(meta.labels), meta.hidden_sizes, meta.dropout, pool=meta.pool)
    model.load_state_dict(blob["state_dict"])
    model.eval()
    return model, meta


@torch.inference_mode()
def predict(model: MLPHead, meta: HeadMeta, x: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    """(n, frames, dim) → (n, n_classes) probabilities, float32."""
    model.eval()
    out = [
        probabilities(model(torch.from_numpy(np.asarray(x[i:i + batch_size], np.float32))), meta.loss).numpy()
        for i in range(0, len(x), batch_size)
    ]
    return np.concatenate(out) if out else np.zeros((0, len(meta.labels)), np.float32)


def predict_windows(
    e: Embedded, model: MLPHead, meta: HeadMeta, *, window_s: float = 5.0, shifts_s: Sequence[float] = (0.0,),
    pool: str = "mean",
) -> np.ndarray:
    """(n_windows(duration), n_classes) probabilities.

    Each window's frames are cut into the head's segments (``meta.segment_frames`` frames,
    as in training); segment probabilities are averaged over the window (``pool="max"``: their
    maximum, so a call in one second of the window counts fully). Each test-time shift
    ``s`` scores the window moved by ``s`` seconds (frames starting in [start + s, end + s),
    clipped to the soundscape); the shifts' probabilities are averaged.
    """
    count = n_windows(e.duration_s, window_s)
    segments, owner = [], []
    for k, shift in enumerate(shifts_s):
        for w in range(count):
            idx = frames_in(e, w * window_s + shift, (w + 1) * window_s + shift)
            if len(idx) == 0:  # a window past the last frame start (or shifted off the start): the nearest frame
                idx = np.array([0 if (w + 1) * window_s + shift <= 0 else len(e.starts_s) - 1])
            segs = pool_segments(e, idx, meta.segment_frames)
            segments.append(segs)
            owner.extend([k * count + w] * len(segs))
    prob = predict(model, meta, np.concatenate(segments))
    owner_arr = np.asarray(owner)
    n = len(shifts_s) * count
    if pool == "max":
        pooled = np.zeros((n, prob.shape[1]), np.float64)
        np.maximum.at(pooled, owner_arr, prob)
    elif pool == "mean":
        pooled = np.zeros((n, prob.shape[1]), np.float64)
        np.add.at(pooled, owner_arr, prob)
        pooled /= np.bincount(owner_arr, minlength=n)[:, None]
    else:
        raise ValueError(f"unknown pool {pool!r}; known: 'mean', 'max'")
    # per (shift, window) pooled over its segments, then averaged over the shifts
    return pooled.reshape(len(shifts_s), count, -1).mean(axis=0).astype(np.float32)


def soundscape_probabilities(
    embedded: Sequence[Embedded], heads: Sequence[tuple[MLPHead, HeadMeta]], config: Config,
    *, zero_shot: tuple[np.ndarray, np.ndarray] | None = None, prior: np.ndarray | None = None,
) -> np.ndarray:
    """One soundscape → (n_windows, n_classes) after every post-processing step of ``config``.

    ``embedded[i]`` is the soundscape under head ``i``'s embedding settings (ensemble members
    may use different backbones). Steps: each head with the test-time shifts
    (``tta_shifts_s``) → mean over heads → blend with the backbone's zero-shot scores
    ``zero_shot = (logits (n_windows, n_classes), weights (n_classes,))``, see
    :func:`birdclef.postprocess.zero_shot_weights`) → the site / hour prior ``prior`` ((n_classes,) logit shift,
    :func:`birdclef.postprocess.priors.prior_shift`) × ``site_prior_weight`` → smoothing across neighbouring
    windows (``smoothing_kernel``).
    """
    if len(embedded) != len(heads) or not heads:
        raise ValueError(f"{len(embedded)} embeddings for {len(heads)} heads")
    prob = average([head_windows(e, m, meta, config) for e, (m, meta) in zip(embedded, heads)])
    return finish_windows(prob, config, zero_shot=zero_shot, prior=prior)


def head_windows(e: Embedded, model: MLPHead, meta: HeadMeta, config: Config) -> np.ndarray:
    """One MLP head's (n_windows, n_classes) probabilities of a soundscape, test-time shifts averaged."""
    return predict_windows(e, model, meta, window_s=config.window_s, shifts_s=config.tta_shifts_s,
                           pool=config.window_pool)
