"""The "mlp" model family: a small head on the cached backbone embeddings (:mod:`birdclef.models.head`,
trained by :func:`birdclef.models.train.train_embedding_head`, applied by :func:`birdclef.models.head.head_windows`).

A run folder holds ``head.pt`` (weights and :class:`~birdclef.models.head.HeadMeta`) and ``config.json``
(the backbone and cleaning settings it embeds under). At submission time every member of this
family that shares an embedding setting shares one extraction pass (cached).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Sequence

import pandas as pd

from birdclef.config import EMBEDDING_FIELDS, Config
from birdclef.errors import BirdclefError
from birdclef.family import (BundleParts, Member, ModelFamily, Output, Prediction, TrainResult, check_labels,
                             register_family, uniform_or)
from birdclef.features.embeddings import extract
from birdclef.features.zeroshot import ZeroShot, load_zero_shot
from birdclef.io import read_json
from birdclef.models.head import HeadMeta, MLPHead, head_windows, load_head
from birdclef.workdir import CONFIG_FILE, CONTEXT_FILE, HEAD_FILE, METRICS_FILE, ModelFolder


@dataclass(frozen=True)
class HeadMember(Member):
    """A trained head, its metadata, and the config it embeds test soundscapes under."""

    family: ClassVar[str] = "mlp"
    model: MLPHead
    meta: HeadMeta
    config: Config

    @property
    def zero_shot_weights(self) -> tuple[float, ...]:
        return tuple(self.meta.zero_shot_weights)

    @property
    def blends_zero_shot(self) -> bool:
        return True

    def zero_shot(self, taxonomy: pd.DataFrame) -> ZeroShot | None:
        return load_zero_shot(self.config, taxonomy)


def head_labels(head_path: Path) -> list[str]:
    """The class labels a trained head predicts, in its output order (without building the head)."""
    import torch

    try:
        blob = torch.load(head_path, map_location="cpu", weights_only=True)
        return [str(x) for x in blob["meta"]["labels"]]
    except Exception as err:  # a truncated or foreign file: say which
        raise BirdclefError(f"cannot read the class labels from {head_path}: {err}") from err


@register_family
class HeadFamily(ModelFamily):
    name = "mlp"
    summary = "a head on the cached backbone embeddings"
    config_sections = ("head", "pseudo")

    def train(self, *, config: Config, progress: bool = True) -> TrainResult:
        from birdclef.models.train import train_embedding_head

        return train_embedding_head(config=config, progress=progress)

    def holds(self, folder: ModelFolder) -> bool:
        return folder.head.is_file()

    def load(self, folder: ModelFolder, config: Config, labels: Sequence[str], *, first: bool) -> HeadMember:
        """The head of ``folder``, applied to the embeddings it was trained on: ``config``'s for the
        first member, else the backbone and cleaning settings saved beside it."""
        model, meta = load_head(folder.head)
        check_labels(folder.root, meta.labels, labels)
        if first:
            member = config
        elif folder.config.exists():
            saved = {k: v for k, v in read_json(folder.config).items() if k in EMBEDDING_FIELDS}
            bundled = folder.root / str(saved.get("backbone_path") or "")
            if saved.get("backbone_path") and not Path(saved["backbone_path"]).is_absolute() and bundled.exists():
                saved["backbone_path"] = str(bundled)  # a Kaggle bundle's member: its backbone beside it
            member = dataclasses.replace(config, **saved)
        else:
            raise BirdclefError(f"ensemble member {folder.root} has no config.json beside head.pt: cannot embed for it")
        if meta.embedding_key != member.embedding_key():
            raise BirdclefError(
                f"{folder.root} was trained on embeddings {meta.embedding_key}, but this config gives "
                f"{member.embedding_key()}: use the training run's backbone/denoise/vad settings")
        return HeadMember(folder.root, tuple(meta.labels), uniform_or(meta.prior, len(meta.labels)), model, meta, member)

    def predict(self, members: Sequence[HeadMember], files: Sequence[Path], config: Config, *,
                zero_shot: Sequence[ZeroShot | None]) -> list[Prediction]:
        """Files are embedded once per embedding setting of ``members`` (cached; no VAD pass: every
        window is predicted); a member given zero-shot scores has its backbone store them with the
        embeddings (whatever the blend weight, so a later run with another weight reads them from the
        cache) and reports its windows' logits."""
        by_key: dict[str, tuple[dict, object]] = {}
        for m, zs in zip(members, zero_shot):
            if m.meta.embedding_key not in by_key:
                by_key[m.meta.embedding_key] = extract(
                    files, config=m.config, desc=f"test soundscapes ({m.config.backbone})", need_speech=False,
                    score_columns=zs.score_columns if zs is not None else None)
        out: list[Prediction] = []
        for m, zs in zip(members, zero_shot):
            embedded, report = by_key[m.meta.embedding_key]
            pred: Prediction = {}
            for f in map(str, files):
                e = embedded.get(f)
                if e is None:
                    pred[f] = report.loc[report["path"] == f, "reason"].iloc[0]
                    continue
                pred[f] = Output(head_windows(e, m.model, m.meta, config),
                                 None if zs is None else zs.window_logits(e, config.window_s))
            out.append(pred)
        return out

    def bundle(self, folder: ModelFolder) -> BundleParts:
        # the context model travels when trained (a chain ending with "context" loads it from the bundle)
        present = [name for name in (HEAD_FILE, CONFIG_FILE, METRICS_FILE, CONTEXT_FILE)
                   if (folder.root / name).is_file()]
        return BundleParts(files=tuple(present), read_labels=lambda: head_labels(folder.head), uses_backbone=True,
                           required=(HEAD_FILE, CONFIG_FILE))
