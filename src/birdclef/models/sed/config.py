"""The settings of one SED run: front end, backbone, head, data, training, distillation, noisy student.

One frozen dataclass, resolved once by :func:`build_sed_config` (every value converted to its
field's type by :mod:`birdclef.params`, unknown names refused) and saved beside the run it
produced (``config.json`` in the run folder, :mod:`birdclef.models.sed.run`).
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, Literal

from birdclef.errors import ParameterError
from birdclef.params import convert_params

SED_LOSSES = ("bce", "focal", "soft_auc")
CLIP_S = (5.0, 10.0, 20.0)  # training/inference chunk lengths the SED family supports


@dataclass(frozen=True)
class SedConfig:
    # ---- model: what rebuilds the network (saved with the run)
    backbone: str = "efficientnet_b0"  # any timm model name with forward_features → (b, c, h, w)
    pretrained_path: str | None = None  # local weights file for the backbone (timm's own format); None: random init
    sample_rate_hz: int = 32_000
    clip_s: float = 5.0  # length of one model input; 10 or 20: more context, windows pooled from the frames
    window_s: float = 5.0  # submission window: each clip's frames are pooled per window of this length
    n_mels: int = 128
    n_fft: int = 2048
    hop_length: int = 512  # samples between mel frames (16 ms at 32 kHz)
    f_min_hz: float = 40.0
    f_max_hz: float = 15_000.0
    top_db: float = 80.0  # dynamic range kept below each clip's loudest bin
    head_dropout: float = 0.25
    # ---- data
    secondary_weight: float = 0.5  # target of a recording's secondary labels
    balanced_sampling: bool = False  # draw each epoch with equal weight per primary class
    epoch_size: int | None = None  # training clips per epoch (drawn with replacement); None: one crop per item
    window_share: float | None = None  # share of each epoch drawn from soundscape windows; None: by their count
    val_clips: int = 3  # validation: at most this many consecutive clips from the start of each held-out recording
    cache_audio: bool = False  # keep every recording's decoded waveform in memory (small data on small machines)
    cache_max_s: float = 60.0  # seconds of each recording kept by the cache (later crops read from disk)
    num_workers: int = 0  # DataLoader processes decoding audio; 0: in the training process
    # ---- training
    loss: Literal["bce", "focal", "soft_auc"] = "bce"
    focal_gamma: float = 2.0
    epochs: int = 10
    batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 1e-2
    warmup_fraction: float = 0.1  # share of all steps with a linear warm-up, then cosine decay to 0
    mixup_alpha: float = 0.5  # waveform mixup, λ ~ Beta(α, α); 0: off
    mixup_prob: float = 0.5  # share of batches mixed
    time_masks: int = 2  # SpecAugment: masked stretches of mel frames per clip
    time_mask_frames: int = 20  # longest time mask, in mel frames
    freq_masks: int = 2  # masked bands of mel bins per clip
    freq_mask_bins: int = 16  # widest frequency mask, in mel bins
    ema_decay: float | None = 0.999  # exponential moving average of the weights (evaluated and saved); None: off
    amp: bool = True  # mixed precision; only ever on CUDA
    seed: int = 0
    val_fraction: float = 0.2  # recordings held out for validation (stratified by primary label)
    # ---- distillation from a bird backbone's cached outputs (birdclef.models.sed.distill)
    label_weight: float = 1.0  # weight of the labelled loss; 0: learn from the teacher alone
    distill_embedding_weight: float = 0.0  # cosine loss of a linear projection of the pooled CNN features
    distill_logit_weight: float = 0.0  # binary KL toward the backbone's zero-shot logits, mapped classes only
    distill_temperature: float = 1.0
    # ---- noisy student (birdclef.models.sed.noisy_student)
    student_rounds: int = 0
    student_power: float = 2.0  # soft pseudo label = probability ** power (quiets the teacher's low scores)
    student_weight: float = 0.5  # loss weight of a pseudo-labelled window
    student_share: float = 0.5  # share of each student epoch drawn from pseudo-labelled windows
    student_cap: float | None = None  # a pseudo-labelled window's targets scaled down to sum at most this (None: off)

    def __post_init__(self) -> None:
        if self.loss not in SED_LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; known: {', '.join(map(repr, SED_LOSSES))}")
        if float(self.clip_s) not in CLIP_S:
            raise ValueError(f"clip_s must be one of {CLIP_S}, got {self.clip_s}")
        if self.window_s <= 0 or self.clip_s % self.window_s:
            raise ValueError(f"clip_s={self.clip_s} must be a whole number of window_s={self.window_s}")
        if self.sample_rate_hz <= 0 or self.n_mels < 8 or self.hop_length < 1 or self.n_fft < self.hop_length:
            raise ValueError("need sample_rate_hz > 0, n_mels >= 8, 1 <= hop_length <= n_fft")
        if not 0 <= self.f_min_hz < self.f_max_hz <= self.sample_rate_hz / 2:
            raise ValueError(f"need 0 <= f_min_hz < f_max_hz <= {self.sample_rate_hz / 2}")
        if self.epochs < 1 or self.batch_size < 1 or self.val_clips < 1:
            raise ValueError("epochs, batch_size and val_clips must be >= 1")
        if not 0 <= self.secondary_weight <= 1 or not 0 <= self.mixup_prob <= 1 or self.mixup_alpha < 0:
            raise ValueError("secondary_weight and mixup_prob must be in [0, 1], mixup_alpha >= 0")
        if not 0 <= self.warmup_fraction < 1 or not 0 < self.val_fraction < 1:
            raise ValueError("warmup_fraction must be in [0, 1) and val_fraction in (0, 1)")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in (0, 1) or None, got {self.ema_decay}")
        for key in ("window_share", ):
            v = getattr(self, key)
            if v is not None and not 0 <= v < 1:
                raise ValueError(f"{key} must be in [0, 1) or None, got {v}")
        if not 0 < self.student_share < 1 or not 0 < self.student_weight <= 1 or self.student_power <= 0:
            raise ValueError("student_share must be in (0, 1), student_weight in (0, 1], student_power > 0")
        if min(self.label_weight, self.distill_embedding_weight, self.distill_logit_weight) < 0:
            raise ValueError("loss weights must be >= 0")
        if self.label_weight + self.distill_embedding_weight + self.distill_logit_weight <= 0:
            raise ValueError("label_weight, distill_embedding_weight and distill_logit_weight are all 0: nothing to learn")
        if self.student_cap is not None and not 0 < self.student_cap <= 1:
            raise ValueError(f"student_cap must be in (0, 1] or None, got {self.student_cap}")
        if self.student_rounds < 0 or self.num_workers < 0 or self.distill_temperature <= 0:
            raise ValueError("student_rounds and num_workers must be >= 0, distill_temperature > 0")

    @property
    def clip_samples(self) -> int:
        return int(round(self.clip_s * self.sample_rate_hz))

    @property
    def windows_per_clip(self) -> int:
        return int(round(self.clip_s / self.window_s))

    @property
    def init(self) -> str:
        """How the backbone's weights started: "pretrained" (from ``pretrained_path``) or "random"."""
        return "pretrained" if self.pretrained_path else "random"

    @property
    def distills(self) -> bool:
        return self.distill_embedding_weight > 0 or self.distill_logit_weight > 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **params: Any) -> "SedConfig":
        """A new config with ``params`` changed (converted and checked like :func:`build_sed_config`)."""
        return build_sed_config(**{**self.to_dict(), **params})


SED_FIELD_TYPES: dict[str, Any] = {f.name: typing.get_type_hints(SedConfig)[f.name] for f in dataclasses.fields(SedConfig)}
# what rebuilds the network; the rest only changed how it was trained
MODEL_FIELDS = ("backbone", "sample_rate_hz", "clip_s", "window_s", "n_mels", "n_fft", "hop_length", "f_min_hz",
                "f_max_hz", "top_db", "head_dropout")


def build_sed_config(**params: Any) -> SedConfig:
    """Flat parameters → :class:`SedConfig`; unknown names and values that do not fit their field's
    type raise a one-line :class:`ParameterError`. Keys a saved run adds (``init`` and the library
    versions) are ignored."""
    params = {k: v for k, v in params.items() if k not in SAVED_EXTRAS}
    unknown = sorted(set(params) - set(SED_FIELD_TYPES))
    if unknown:
        raise ParameterError(f"unknown SED parameter(s) {unknown}; known: {', '.join(sorted(SED_FIELD_TYPES))}")
    given = convert_params({k: v for k, v in params.items() if v is not None or k in _NONE_IS_VALUE},
                           SED_FIELD_TYPES)
    return SedConfig(**given)


_NONE_IS_VALUE = ("pretrained_path", "epoch_size", "window_share", "ema_decay")
SAVED_EXTRAS = ("init", "n_classes", "timm_version", "torch_version", "family")
