"""The SED network: mel front end → timm CNN → frame-wise logits + attention pooling.

::

    wave (b, n_samples) ─ MelFrontEnd ─> mel (b, 1, n_mels, t) ─ backbone.forward_features ─>
    (b, c, f', t') ─ mean over frequency, max+avg smoothing over 3 frames, Linear+ReLU ─>
    frame logits (b, t', k) and attention (b, t', k) ─ softmax over time ─> clip logits (b, k)

The backbone is any timm model by name, created with ``in_chans=1`` and no classifier; its
weights come from ``config.pretrained_path`` (a local file in timm's format: the first
convolution is adapted to one channel by timm) or are random (``config.init`` says which).
Everything but the front end is exported to ONNX (:mod:`birdclef.models.sed.export`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from birdclef.errors import BackboneUnavailable, BirdclefError
from birdclef.models.sed.config import SedConfig
from birdclef.models.sed.frontend import MelFrontEnd


def create_backbone(name: str, pretrained_path: str | None = None) -> nn.Module:
    """A timm model by name, one input channel, no classifier; weights from ``pretrained_path`` or random.

    Raises :class:`BackboneUnavailable` when timm is not installed, ``ValueError`` naming the
    choice when timm has no such model, :class:`BirdclefError` when the weights file is missing.
    """
    try:
        import timm
    except ImportError as err:
        raise BackboneUnavailable(f"SED models need timm: pip install -e '.[sed]' ({err})") from err
    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('.')[0][:6]}*")[:8]
        raise ValueError(f"unknown timm backbone {name!r}; similar: {', '.join(close) or 'none'} "
                         "(timm.list_models() lists all)")
    kwargs = dict(in_chans=1, num_classes=0, global_pool="")
    if pretrained_path:
        path = Path(pretrained_path).expanduser()
        if not path.is_file():
            raise BirdclefError(f"pretrained_path {path} is not a file (give timm-format weights, or None for random init)")
        # timm reads the local file (no download), drops its classifier and sums the first conv over RGB
        return timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": str(path)}, **kwargs)
    return timm.create_model(name, pretrained=False, **kwargs)


class SedHead(nn.Module):
    """(b, c, f', t') features → (clip logits (b, k), frame logits (b, t', k), attention (b, t', k),
    pooled features (b, c)). Attention is tanh-bounded; its softmax over time weights the frame
    logits into the clip's."""

    def __init__(self, in_features: int, n_classes: int, dropout: float = 0.25):
        super().__init__()
        self.dropout = dropout
        self.fc = nn.Linear(in_features, in_features)
        self.attention = nn.Conv1d(in_features, n_classes, 1)
        self.classifier = nn.Conv1d(in_features, n_classes, 1)

    def forward(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        pooled = feats.mean(dim=(2, 3))
        x = feats.mean(dim=2)  # (b, c, t')
        x = F.max_pool1d(x, 3, stride=1, padding=1) + F.avg_pool1d(x, 3, stride=1, padding=1)
        x = F.dropout(x, self.dropout, self.training)
        x = F.relu(self.fc(x.transpose(1, 2))).transpose(1, 2)
        x = F.dropout(x, self.dropout, self.training)
        att = torch.tanh(self.attention(x))  # (b, k, t')
        frame = self.classifier(x)
        clip = (torch.softmax(att, dim=-1) * frame).sum(dim=-1)
        return clip, frame.transpose(1, 2), att.transpose(1, 2), pooled


class SedModel(nn.Module):
    """``forward(wave)`` → (clip logits (b, k), frame logits (b, t', k), attention (b, t', k)).

    ``forward_mel(mel)`` is the same from the front end's output (what ONNX exports);
    ``forward_mel(mel, pooled=True)`` adds the pooled backbone features (b, c) for distillation.
    """

    def __init__(self, config: SedConfig, n_classes: int, *, load_pretrained: bool = True):
        super().__init__()
        self.n_classes = n_classes
        self.frontend = MelFrontEnd(config)
        self.backbone = create_backbone(config.backbone, config.pretrained_path if load_pretrained else None)
        self.num_features = int(self.backbone.num_features)
        self.head = SedHead(self.num_features, n_classes, config.head_dropout)

    def forward_mel(self, mel: torch.Tensor, pooled: bool = False):
        clip, frame, att, feats = self.head(self.backbone.forward_features(mel))
        return (clip, frame, att, feats) if pooled else (clip, frame, att)

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.forward_mel(self.frontend(wave))


def build_model(config: SedConfig, n_classes: int, *, load_pretrained: bool = True) -> SedModel:
    """A new :class:`SedModel`, its random parts initialised from ``config.seed`` (same seed → same weights).
    ``load_pretrained=False`` skips reading the weights file (a saved run's weights replace them anyway)."""
    if n_classes < 1:
        raise ValueError(f"n_classes must be >= 1, got {n_classes}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return SedModel(config, n_classes, load_pretrained=load_pretrained)


def attention_weights(attention: torch.Tensor) -> torch.Tensor:
    """(b, t', k) attention → (b, t', k) pooling weights, summing to 1 over time for each clip and class."""
    return torch.softmax(attention, dim=1)


def window_logits(frame_logits: np.ndarray, attention: np.ndarray, windows_per_clip: int) -> np.ndarray:
    """Per submission window, the frames in it pooled with their attention renormalised inside it.

    (b, t', k) frame logits and attention → (b * windows_per_clip, k) logits, windows in time
    order. Frame i belongs to window ``floor((i + 0.5) * windows_per_clip / t')``. With one window
    per clip this is the clip logit exactly.
    """
    frame_logits, attention = np.asarray(frame_logits, np.float64), np.asarray(attention, np.float64)
    b, t, k = frame_logits.shape
    owner = np.minimum(((np.arange(t) + 0.5) * windows_per_clip / t).astype(int), windows_per_clip - 1)
    out = np.zeros((b, windows_per_clip, k), np.float64)
    for w in range(windows_per_clip):
        sel = owner == w
        if not sel.any():  # fewer frames than windows: the nearest frame
            sel = np.zeros(t, bool)
            sel[min(t - 1, int(w * t / windows_per_clip))] = True
        a = attention[:, sel]
        e = np.exp(a - a.max(axis=1, keepdims=True))
        out[:, w] = (e / e.sum(axis=1, keepdims=True) * frame_logits[:, sel]).sum(axis=1)
    return out.reshape(b * windows_per_clip, k).astype(np.float32)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-np.clip(np.asarray(x, np.float64), -60, 60)))).astype(np.float32)
