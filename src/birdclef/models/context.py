"""The context model: a small sequence model over a soundscape's windows (the 8th place of BirdCLEF+ 2025).

A call of one window makes the same species likelier in its neighbours, and a file sure of a class
somewhere is likelier to hold it in a faint window. The post-processing chain's last step
``context`` runs :class:`ContextModel`: per class, a 1-layer bidirectional GRU (shared by every
class) reads the file's windows — each window's logit and the file's highest logit of the class —
and adds a correction to each window's logit. The output layer starts at zero, so an untrained
model returns its input.

It is trained by :func:`train_context` on the whole files the model folder saved with their truth,
after the chain before ``context`` (the input it will see at submission): the validation soundscapes
(:data:`birdclef.models.valsoundscapes.FILE`: the fold's head on minutes mixed from recordings it
never trained on) and, where the data has them, the labelled train soundscapes the fold held out
(:data:`birdclef.models.valsoundscapes.LABELLED_FILE`: real files, their unlabelled windows unscored
but read as context). A quarter of each set's files is held out first to measure the gain
(``context_val_gain``; ``context_labelled_gain`` on the labelled files alone), then the model is
fitted on all of them and written to :attr:`birdclef.workdir.ModelFolder.context` with a fingerprint
of its settings and data; a later call with the same fingerprint reuses it.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from birdclef.config import Config
from birdclef.errors import BirdclefError
from birdclef.io import atomic_path
from birdclef.postprocess import chain_table
from birdclef.workdir import ModelFolder

log = logging.getLogger(__name__)
VERSION = 1  # bump when the model or its inputs change: saved models are refitted
LOGIT_CLIP = 9.0  # probabilities are clipped to sigmoid(±9) before their logits are read
INPUT_SCALE = 4.0  # logits enter the GRU divided by this (its gates saturate on ±9)
HOLDOUT_SHARE = 0.25  # validation soundscapes held out to measure the gain before the final fit
BATCH = 1024  # sequences (file × class) per step
LEARNING_RATE = 3e-3


def _net(hidden: int):
    import torch
    from torch import nn

    class ContextNet(nn.Module):
        """(batch, n_windows) logits → (batch, n_windows) corrected logits: input + GRU correction."""

        def __init__(self) -> None:
            super().__init__()
            self.gru = nn.GRU(input_size=2, hidden_size=hidden, batch_first=True, bidirectional=True)
            self.out = nn.Linear(2 * hidden, 1)
            nn.init.zeros_(self.out.weight)  # identity at the start: an untrained model changes nothing
            nn.init.zeros_(self.out.bias)

        def forward(self, z: torch.Tensor) -> torch.Tensor:
            top = z.max(dim=1, keepdim=True).values.expand_as(z)
            h, _ = self.gru(torch.stack([z, top], dim=-1) / INPUT_SCALE)
            return z + self.out(h).squeeze(-1)

    return ContextNet()


def _logits(prob: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(prob, np.float64), 1 / (1 + np.exp(LOGIT_CLIP)), 1 / (1 + np.exp(-LOGIT_CLIP)))
    return np.log(p / (1 - p)).astype(np.float32)


@dataclass
class ContextModel:
    """A trained (or fresh) context net and what it was trained under."""

    net: Any  # the torch module (on the CPU)
    hidden: int
    fingerprint: dict
    metrics: dict

    @classmethod
    def fresh(cls, hidden: int, seed: int = 0) -> ContextModel:
        """An untrained model (zero output layer: the identity), seeded."""
        import torch

        torch.manual_seed(seed)
        return cls(_net(hidden).eval(), hidden, {}, {})

    def apply(self, prob: np.ndarray) -> np.ndarray:
        """(n_windows, n_classes) probabilities of one file → the same shape, corrected."""
        import torch

        prob = np.asarray(prob, np.float32)
        if len(prob) == 0:
            return prob.copy()
        with torch.no_grad():
            z = torch.from_numpy(np.ascontiguousarray(_logits(prob).T))  # (n_classes, n_windows)
            out = torch.sigmoid(self.net(z)).numpy().T
        return np.ascontiguousarray(out, dtype=np.float32)

    def save(self, folder: ModelFolder) -> None:
        import torch

        with atomic_path(folder.context, ".pt") as tmp:
            torch.save({"state_dict": self.net.state_dict(), "hidden": self.hidden, "fingerprint": self.fingerprint,
                        "metrics": self.metrics}, tmp)


def load_context(folder: ModelFolder, config: Config | None = None) -> ContextModel:
    """The context model of a model folder, or BirdclefError naming the fix when it has none."""
    import torch

    path = folder.context
    if not path.is_file():
        raise BirdclefError(f"the post-processing step 'context' needs a context model, but {folder.root} has no "
                            f"{path.name}: train the head with 'context' in postprocess (03_train), or call "
                            "birdclef.models.context.train_context(ModelFolder(...), config) on this folder, or take "
                            "'context' out of postprocess")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    model = ContextModel(_net(int(blob["hidden"])), int(blob["hidden"]), blob["fingerprint"], blob["metrics"])
    model.net.load_state_dict(blob["state_dict"])
    model.net.eval()
    if config is not None and blob["fingerprint"].get("hidden") not in (None, config.context_hidden):
        log.warning("%s was trained with context_hidden=%s, this config says %s: the saved model is used",
                    path, blob["fingerprint"]["hidden"], config.context_hidden)
    return model


def fit(sequences: list[np.ndarray], truth: list[np.ndarray], *, hidden: int, epochs: int, seed: int,
        device: str | None = None) -> ContextModel:
    """Train on files: ``sequences[i]`` (n_windows_i, n_classes) probabilities, ``truth[i]`` the same
    shape, 1 / 0 or NaN (not scored). Every (file, class) is one sequence; masked BCE on the corrected
    logits; Adam; seeded. CUDA when present (``device``: force one). The returned net is on the CPU."""
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = ContextModel.fresh(hidden, seed)
    net = model.net.to(device).train()
    opt = torch.optim.Adam(net.parameters(), lr=LEARNING_RATE, weight_decay=1e-4)
    by_length: dict[int, tuple[list, list]] = {}  # files of one length train together (no padding)
    for x, y in zip(sequences, truth):
        xs, ys = by_length.setdefault(len(x), ([], []))
        xs.append(_logits(x).T)
        ys.append(np.asarray(y, np.float32).T)
    groups = [(torch.from_numpy(np.concatenate(xs)).to(device), torch.from_numpy(np.concatenate(ys)).to(device))
              for xs, ys in by_length.values()]
    for _ in range(epochs):
        for x, y in groups:
            order = torch.from_numpy(rng.permutation(len(x))).to(device)
            for start in range(0, len(x), BATCH):
                idx = order[start:start + BATCH]
                target, out = y[idx], net(x[idx])
                keep = ~torch.isnan(target)
                if not keep.any():
                    continue
                loss = torch.nn.functional.binary_cross_entropy_with_logits(out[keep], target[keep])
                opt.zero_grad()
                loss.backward()
                opt.step()
    model.net = net.to("cpu").eval()
    return model


def _fingerprint(config: Config, data: bytes) -> dict:
    return {"version": VERSION, "epochs": config.context_epochs, "hidden": config.context_hidden, "seed": config.seed,
            "chain": [r for r in chain_table(config) if r["step"] != "context"],
            "data": hashlib.sha1(data).hexdigest()}


def train_context(folder: ModelFolder, config: Config, *, progress: bool = False) -> dict[str, float]:
    """Fit the context model on ``folder``'s saved soundscapes (validation and held-out labelled ones)
    and write it (reused when its fingerprint matches) → its metrics: held-out AUC before / after and
    the gain, files used."""
    import torch

    from birdclef.models import valsoundscapes

    paths = [p for p in (folder.root / valsoundscapes.FILE, folder.root / valsoundscapes.LABELLED_FILE) if p.is_file()]
    if not paths:
        raise BirdclefError(f"the context model trains on the validation soundscapes or held-out labelled soundscapes, "
                            f"but {folder.root} has no {valsoundscapes.FILE} and no {valsoundscapes.LABELLED_FILE}: "
                            "train with val_soundscapes > 0 (or on data with labelled train soundscapes)")
    fingerprint = _fingerprint(config, b"".join(p.name.encode() + p.read_bytes() for p in paths))
    if folder.context.is_file():
        blob = torch.load(folder.context, map_location="cpu", weights_only=True)
        if json.dumps(blob["fingerprint"], sort_keys=True, default=str) == json.dumps(fingerprint, sort_keys=True,
                                                                                       default=str):
            return dict(blob["metrics"])
    files, source = [], []  # (inputs, truth) per file after the chain before the context step; its set
    for path in paths:
        inputs, truth, counts = valsoundscapes.saved_finished(path, config)
        edges = np.cumsum([0, *np.asarray(counts, int)])
        files += [(inputs[a:b], truth[a:b]) for a, b in zip(edges[:-1], edges[1:])]
        source += [path.name] * len(counts)
    source = np.asarray(source)
    if len(files) < 4:
        raise BirdclefError(f"the context model needs at least 4 soundscapes, {folder.root} has {len(files)}: "
                            "raise val_soundscapes")
    rng = np.random.default_rng(config.seed)
    held = []  # a quarter of each set (one file at least), so the gain is measured on both
    for name in dict.fromkeys(source):
        own = rng.permutation(np.flatnonzero(source == name))
        if len(own) > 1:  # a set of one file trains only
            held += list(own[:max(1, int(round(HOLDOUT_SHARE * len(own))))])
    held = np.asarray(sorted(held), int)
    kept = np.setdiff1d(np.arange(len(files)), held)
    settings = dict(hidden=config.context_hidden, epochs=config.context_epochs, seed=config.seed)
    trial = fit([files[i][0] for i in kept], [files[i][1] for i in kept], **settings)

    def gain(rows: np.ndarray) -> tuple[float, float]:
        y = np.concatenate([files[i][1] for i in rows])
        return (valsoundscapes.score(y, np.concatenate([files[i][0] for i in rows])),
                valsoundscapes.score(y, np.concatenate([trial.apply(files[i][0]) for i in rows])))

    before, after = gain(held)
    metrics = {"context_val_auc_before": before, "context_val_auc_after": after, "context_val_gain": after - before,
               "n_context_files": len(files), "n_context_held_out": len(held),
               "n_context_labelled_files": int((source == valsoundscapes.LABELLED_FILE).sum())}
    labelled_held = held[source[held] == valsoundscapes.LABELLED_FILE]
    if len(labelled_held):
        lb, la = gain(labelled_held)
        metrics |= {"context_labelled_auc_before": lb, "context_labelled_auc_after": la,
                    "context_labelled_gain": la - lb}
    model = fit([x for x, _ in files], [y for _, y in files], **settings)
    model.fingerprint = fingerprint
    model.metrics = metrics
    model.save(folder)
    if progress:
        print(f"context model: held-out soundscapes {before:.3f} → {after:.3f} ({after - before:+.3f}), "
              f"{len(files)} files ({metrics['n_context_labelled_files']} labelled)")
    return dict(metrics)
