"""The classification head: pool → MLP → one logit per taxonomy class."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

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


class MLPHead(nn.Module):
    """(batch, frames, dim) or (batch, dim) → (batch, n_classes) logits.

    Frames are mean-pooled, standardised with the training set's statistics (buffers), then
    dim→h1→ReLU→dropout→h2→ReLU→dropout→classes (the seed recipe: 1024→512→256→classes).
    """

    def __init__(self, in_dim: int, n_classes: int, hidden_sizes: tuple[int, ...] = (512, 256), dropout: float = 0.3):
        super().__init__()
        layers: list[nn.Module] = []
        d = in_dim
        for h in hidden_sizes:
            layers += [nn.Linear(d, h), nn.ReLU(), nn.Dropout(dropout)]
            d = h
        layers.append(nn.Linear(d, n_classes))
        self.mlp = nn.Sequential(*layers)
        self.register_buffer("mean", torch.zeros(in_dim))
        self.register_buffer("std", torch.ones(in_dim))

    def set_standardisation(self, x: np.ndarray) -> None:
        """Fit the input standardisation on pooled training features (n, dim)."""
        self.mean.copy_(torch.as_tensor(x.mean(0), dtype=torch.float32))
        self.std.copy_(torch.as_tensor(x.std(0) + 1e-6, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:
            x = x.mean(dim=1)
        return self.mlp((x - self.mean) / self.std)


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
                       "prior": tuple(m.get("prior", ()))})
    model = MLPHead(meta.in_dim, len(meta.labels), meta.hidden_sizes, meta.dropout)
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
