"""Spectrogram SED models: a timm CNN trained end to end on mel spectrograms, beside the MLP head.

The stages, one module each, in the order data flows:

- :mod:`~birdclef.models.sed.config`: :class:`SedConfig`, :func:`build_sed_config` (every setting, saved with the run);
- :mod:`~birdclef.models.sed.data`: :class:`SedClips` (random crops of train_audio, labelled or
  pseudo-labelled soundscape windows), :func:`recordings_table`, :func:`split_recordings`, :class:`WaveCache`;
- :mod:`~birdclef.models.sed.frontend` and :mod:`~birdclef.models.sed.model`: mel front end → timm backbone →
  frame logits + attention pooling (:class:`SedModel`, :func:`build_model`);
- :mod:`~birdclef.models.sed.augment`, :mod:`~birdclef.models.sed.losses`: mixup, SpecAugment; BCE / focal / soft-AUC;
- :mod:`~birdclef.models.sed.train`: :func:`train_sed`;
- :mod:`~birdclef.models.sed.distill`: :class:`Teacher` (a bird backbone's cached embeddings and logits) and its losses;
- :mod:`~birdclef.models.sed.noisy_student`: :func:`noisy_student` rounds over train_soundscapes;
- :mod:`~birdclef.models.sed.export`: ONNX / OpenVINO export, :class:`ExportedSed` (one thread, a file per batch);
- :mod:`~birdclef.models.sed.run`: :func:`save_run` / :func:`load_run` (the folder a submission loads);
  :func:`open_exported` reads only its exported model (no timm: what a Kaggle kernel needs);
- :mod:`~birdclef.models.sed.infer`: a soundscape → (n_windows, n_classes) probabilities.

timm is needed to build a model (``pip install -e ".[sed]"``); onnx / onnxruntime / openvino only
to export and run exported models. All are imported inside the functions that use them.
"""
from __future__ import annotations

from birdclef.models.sed.config import SedConfig, build_sed_config
from birdclef.models.sed.data import (SedClips, WaveCache, build_wave_cache, recordings_table, soundscape_windows,
                                      split_recordings)
from birdclef.models.sed.distill import Projection, Teacher, embedding_loss, logit_loss
from birdclef.models.sed.infer import file_clips, predict_file
from birdclef.models.sed.model import SedModel, build_model, window_logits
from birdclef.models.sed.noisy_student import noisy_student, pseudo_windows, soundscape_guard
from birdclef.models.sed.run import ExportedRun, SedRun, is_sed_run, load_run, open_exported, save_run
from birdclef.models.sed.train import SedTrainResult, train_sed

__all__ = [
    "ExportedRun", "Projection", "SedClips", "SedConfig", "SedModel", "SedRun", "SedTrainResult", "Teacher",
    "WaveCache", "build_model", "build_sed_config", "build_wave_cache", "embedding_loss", "file_clips", "is_sed_run",
    "load_run", "logit_loss", "noisy_student", "open_exported", "predict_file", "pseudo_windows", "recordings_table",
    "save_run", "soundscape_guard", "soundscape_windows", "split_recordings", "train_sed", "window_logits",
]
