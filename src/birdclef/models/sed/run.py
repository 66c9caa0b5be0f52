"""A SED run folder: everything a submission needs to load and apply a trained SED model.

::

    <run>/config.json     the SedConfig, plus family "sed", init ("pretrained" | "random"),
                          n_classes and the torch / timm versions it was trained with
    <run>/labels.json     {"labels": [...taxonomy order...], "prior": [...class frequencies in training...]}
    <run>/model.pt        {"state_dict": ...} (torch.load(weights_only=True) reads it)
    <run>/model.onnx      the network after the mel front end (birdclef.models.sed.export), dynamic batch
    <run>/model.xml/.bin  OpenVINO IR, when openvino was installed at save time and asked for
    <run>/history.csv     epoch, train_loss, val_loss, val_auc, lr, seconds
    <run>/metrics.json    what training reported (best epoch, val AUC, device, seconds, ...)
    <run>/student_rounds.csv  the noisy-student rounds, when there were any

Every file is written atomically; ``load_run`` rebuilds the model without the pretrained file
(its weights are in model.pt).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from birdclef.errors import BirdclefError
from birdclef.io import atomic_path, read_json, write_csv, write_json
from birdclef.models.sed.config import SedConfig, build_sed_config
from birdclef.models.sed.infer import Predictor, predict_file
from birdclef.models.sed.model import SedModel, build_model
from birdclef.workdir import SED_DIR

ENGINE_FILES = {"onnxruntime": "model.onnx", "openvino": "model.xml"}


@dataclass
class SedRun:
    path: Path
    config: SedConfig
    labels: list[str]
    prior: np.ndarray  # (n_classes,) training class frequencies: the fallback for an unreadable soundscape
    model: SedModel  # on the CPU, eval mode

    def predictor(self, engine: str = "onnxruntime", *, threads: int = 1) -> Predictor:
        """A soundscape path → (n_windows, n_classes) function: ``"torch"``, ``"onnxruntime"`` or ``"openvino"``
        (the exported files must be in the folder, see :func:`open_exported`)."""
        if engine == "torch":
            return lambda path: predict_file(self.model, self.config, path)
        return open_exported(self.path, engine=engine, threads=threads).predict


def run_config(config: SedConfig, n_classes: int) -> dict:
    """The config.json of a run: the settings plus how its weights started and the library versions."""
    try:
        import timm

        timm_version = timm.__version__
    except ImportError:  # pragma: no cover - a model exists, so timm is there
        timm_version = None
    return {**config.to_dict(), "family": "sed", "init": config.init, "n_classes": int(n_classes),
            "torch_version": torch.__version__, "timm_version": timm_version}


def save_run(out_dir: str | Path, model: SedModel, config: SedConfig, labels: Sequence[str], *,
             prior: np.ndarray | None = None, history: pd.DataFrame | None = None, metrics: dict | None = None,
             onnx: bool = True, openvino: bool = False, tables: dict[str, pd.DataFrame] | None = None) -> Path:
    """Write a run folder (see the module docstring) → its path. ``openvino`` converts only when
    openvino is installed (metrics then say whether it was)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    labels = list(labels)
    if len(labels) != model.n_classes:
        raise ValueError(f"{len(labels)} labels for a model of {model.n_classes} classes")
    prior = np.full(len(labels), 1.0 / len(labels)) if prior is None else np.asarray(prior, np.float64)
    with atomic_path(out / "model.pt", ".pt") as tmp:
        torch.save({"state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}, tmp)
    write_json(run_config(config, len(labels)), out / "config.json")
    write_json({"labels": labels, "prior": prior.tolist()}, out / "labels.json")
    if history is not None:
        write_csv(history, out / "history.csv")
    for name, table in (tables or {}).items():
        write_csv(table, out / name)
    exported = {}
    if onnx or openvino:
        from birdclef.models.sed.export import export_onnx, export_openvino

        onnx_path = export_onnx(model, config, out / "model.onnx")
        exported["onnx"] = onnx_path.name
        if openvino:
            xml = export_openvino(onnx_path, out / "model.xml")
            exported["openvino"] = xml.name if xml is not None else None
    write_json({**(metrics or {}), "exported": exported}, out / "metrics.json")
    return out


def load_run(run_dir: str | Path) -> SedRun:
    """Read a run folder written by :func:`save_run`."""
    run_dir = Path(run_dir)
    if not (run_dir / "model.pt").exists():
        raise BirdclefError(f"{run_dir} is not a SED run folder (no model.pt)")
    config, labels, prior = _read_meta(run_dir)
    model = build_model(config, len(labels), load_pretrained=False)
    blob = torch.load(run_dir / "model.pt", map_location="cpu", weights_only=True)
    model.load_state_dict(blob["state_dict"])
    model.eval()
    return SedRun(run_dir, config, labels, prior, model)


@dataclass
class ExportedRun:
    """A run folder's exported model, loaded without timm or the torch network (what a Kaggle kernel needs:
    torch/torchaudio for the mel front end and onnxruntime or openvino)."""

    path: Path
    config: SedConfig
    labels: list[str]
    prior: np.ndarray
    predict: Predictor  # a soundscape path → (n_windows, n_classes) probabilities


def _read_meta(run_dir: Path) -> tuple[SedConfig, list[str], np.ndarray]:
    if not (run_dir / "config.json").exists() or not (run_dir / "labels.json").exists():
        raise BirdclefError(f"{run_dir} is not a SED run folder (no config.json / labels.json)")
    saved = read_json(run_dir / "config.json")
    if saved.get("family") != "sed":
        raise BirdclefError(f"{run_dir}/config.json is not a SED run's (family {saved.get('family')!r})")
    meta = read_json(run_dir / "labels.json")
    labels = [str(x) for x in meta["labels"]]
    prior = np.asarray(meta.get("prior") or np.full(len(labels), 1 / len(labels)), np.float64)
    return build_sed_config(**saved), labels, prior


def open_exported(run_dir: str | Path, *, engine: str = "onnxruntime", threads: int = 1) -> ExportedRun:
    """The run's exported model (``model.onnx``, or ``model.xml`` for OpenVINO), one session of ``threads``."""
    from birdclef.models.sed.export import ENGINES, ExportedSed

    run_dir = Path(run_dir)
    config, labels, prior = _read_meta(run_dir)
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; known: {', '.join(map(repr, ENGINES))}")
    file = run_dir / ENGINE_FILES[engine]
    if not file.exists():
        raise BirdclefError(f"{file} not found: save the run with the {engine} export")
    return ExportedRun(run_dir, config, labels, prior, ExportedSed(file, config, engine=engine, threads=threads))


def is_sed_run(path: str | Path) -> bool:
    """True when ``path`` is a SED run folder (its config.json says family "sed")."""
    cfg = Path(path) / "config.json"
    try:
        return cfg.exists() and read_json(cfg).get("family") == "sed"
    except ValueError:
        return False


def sed_run_dir(model_dir: str | Path) -> Path | None:
    """The SED run folder of a model folder (``<model_dir>/sed``, or the folder itself), else None."""
    model_dir = Path(model_dir)
    for candidate in (model_dir / SED_DIR, model_dir):
        if is_sed_run(candidate):
            return candidate
    return None
