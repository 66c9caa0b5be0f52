"""The classification head: pool → MLP → one logit per taxonomy class."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from birdclef.config import HEAD_POOLS
from birdclef.io import atomic_path


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
    zero_shot_weights: tuple[float, ...] = ()  # per class, chosen on validation (birdclef.zeroshot); (): none




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

    def set_standardisation(self, x: np.ndarray) -> None:
        """Fit the input standardisation on training examples, (n, frames, dim) or (n, dim): on the
        pooled features for ``pool="mean"``, on the frames for ``pool="attention"``."""
        x = np.asarray(x)
        if x.ndim == 3:
            x = x.mean(axis=1) if self.pool == "mean" else x.reshape(-1, x.shape[-1])
        self.mean.copy_(torch.as_tensor(x.mean(0), dtype=torch.float32))
        self.std.copy_(torch.as_tensor(x.std(0) + 1e-6, dtype=torch.float32))

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
