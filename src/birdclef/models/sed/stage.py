"""The SED family inside the pipeline: 03_train with ``model_family="sed"``, and SED members of the
04_submit ensemble.

Training reads what the preprocess stage wrote (the manifest of usable recordings, extra folders
included, and the labelled soundscape windows), holds out ``val_fraction`` of each class's
recordings to choose the epoch (whole recording sessions, as ``group_by`` says), and writes ``<work_dir>/model``: ``config.json`` (the pipeline's
Config, as after an MLP run, so 04_submit inherits it), ``metrics.json``, ``history.csv``,
``per_class_auc.csv``, ``val_predictions.npz``, and the SED run folder ``sed/``
(:mod:`birdclef.models.sed.run`: weights, its SedConfig, labels, and the ONNX export a submission runs).
"""
from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pandas as pd

from birdclef.config import Config
from birdclef.data.competition import competition_paths, load_taxonomy
from birdclef.data.metric import per_class_auc
from birdclef.family import TrainResult
from birdclef.io import write_csv, write_json, write_npz
from birdclef.workdir import HEAD_FILE, RunLayout

log = logging.getLogger(__name__)

# artefacts of an MLP run that would describe another model if left beside a SED run
MLP_ONLY = (HEAD_FILE, "zero_shot.csv", "cleaning.csv", "pseudo_rounds.csv", "soundscape_per_class_auc.csv",
            "site_prior.csv")


def sed_config(config: Config, *, distill_logits: bool = True):
    """The :class:`~birdclef.models.sed.config.SedConfig` of a pipeline config: every Config field declaring the
    SedConfig field it feeds (``metadata["sed"]``: the ``sed_*`` fields and the shared seed, val_fraction,
    secondary_weight, balanced_sampling, window_s), then ``sed_params`` over them. One explicit case:
    ``sed_distill_weight`` also weighs the KL toward the backbone's logits (``distill_logit_weight``), but
    only when they distill (``distill_logits``: the backbone knows some of the classes)."""
    from birdclef.models.sed.config import build_sed_config

    fed = {f.metadata["sed"]: getattr(config, f.name) for f in dataclasses.fields(Config) if f.metadata["sed"]}
    fed["distill_logit_weight"] = config.sed_distill_weight if distill_logits else 0.0
    return build_sed_config(**{**fed, **config.sed_params})


def run_sed_training(*, config: Config, progress: bool = True) -> TrainResult:
    """Train a SED model on the preprocess stage's recordings and windows. See the module docstring
    for what is written."""
    from birdclef import runs
    from birdclef.features.embeddings import EmbeddingCache
    from birdclef.features.soundscapes import load_windows, soundscape_files, soundscape_truth
    from birdclef.features.zeroshot import load_zero_shot
    from birdclef.models.examples import focal_fold_groups, load_manifest
    from birdclef.models.sed.data import SedClips, recording_split
    from birdclef.models.sed.distill import Teacher
    from birdclef.models.sed.noisy_student import noisy_student, soundscape_guard, val_auc_guard
    from birdclef.models.sed.run import SED_DIR, save_run
    from birdclef.models.sed.train import predict_clips, train_sed

    paths = competition_paths(config.data_dir)
    taxonomy = load_taxonomy(paths.taxonomy)
    labels = taxonomy["primary_label"].tolist()
    manifest = load_manifest(config)
    recordings = manifest[["filename", "path", "primary_label", "secondary_labels", "author"]].copy()
    windows = load_windows(config)
    windows = windows.assign(labels=[str(x).split(";") for x in windows["labels"]]) if len(windows) else None
    zero_shot = load_zero_shot(config, taxonomy) if config.sed_distill_weight > 0 else None
    cfg = sed_config(config, distill_logits=zero_shot is not None)
    teacher = None
    if cfg.distills:
        from birdclef.backbones import backbone_spec

        teacher = Teacher.from_cache(recordings["path"], EmbeddingCache(config.work_dir, config),
                                     frame_s=backbone_spec(config.backbone).window_s, n_classes=len(labels),
                                     zero_shot=zero_shot)
    train_rec, val_rec, folds = recording_split(recordings, val_fraction=cfg.val_fraction, seed=cfg.seed,
                                                groups=focal_fold_groups(manifest, config.group_by))
    train = SedClips(train_rec, labels, cfg, windows=windows, teacher=teacher)
    val = SedClips(val_rec, labels, cfg, train=False) if len(val_rec) else None
    result = train_sed(train, cfg, val=val, progress=progress, desc="SED epochs")
    rounds = None
    if cfg.student_rounds:
        files = soundscape_files(config)
        truth = soundscape_truth(config)
        if not files:
            log.warning("sed_student_rounds=%d but no unlabelled train soundscape: no noisy student", cfg.student_rounds)
        else:
            guard = soundscape_guard(files, truth, labels, cfg) if truth is not None else val_auc_guard
            result, rounds = noisy_student(result, train, cfg, files, val=val, guard=guard, progress=progress)
    model_folder = RunLayout.of(config).model
    out = model_folder.root
    prior = np.bincount([labels.index(x) for x in recordings["primary_label"]], minlength=len(labels)) / len(recordings)
    if val is not None:
        prob, _, truth_val, weight = predict_clips(result.model, val, cfg)
        keep = weight > 0
        y_val, prob = truth_val[keep], prob[keep]
    else:
        y_val, prob = np.zeros((0, len(labels)), np.float32), np.zeros((0, len(labels)), np.float32)
    per_class = per_class_auc(y_val, prob, labels)
    from birdclef.models.sed.export import openvino_available

    save_run(out / SED_DIR, result.model, cfg, labels, prior=prior, history=result.history, metrics=result.metrics,
             onnx=True, openvino=openvino_available(),
             tables={} if rounds is None else {"student_rounds.csv": rounds})
    metrics = {**result.metrics, "model_family": "sed", "sed_backbone": cfg.backbone,
               "n_val_recordings": int(len(val_rec)), "n_train_recordings": int(len(train_rec)),
               "n_folds": folds.n_folds, **({"folds_note": folds.note} if folds.note else {}),
               **({} if len(val_rec) else {"validation": "none"})}
    if len(y_val) and not np.isnan(result.metrics["val_auc"]):
        metrics["val_auc"] = float(result.metrics["val_auc"])
    for name in MLP_ONLY:
        if (out / name).exists():
            (out / name).unlink()
    write_json(config.to_dict(), model_folder.config)
    write_json(metrics, model_folder.metrics)
    write_csv(result.history, out / "history.csv")
    write_csv(per_class, out / "per_class_auc.csv")
    write_npz(out / "val_predictions.npz", y_true=y_val, y_score=prob)
    write_csv(pd.DataFrame(columns=["filename", "reason"]), out / "skipped.csv")
    runs.record_run(config, stage="train", metrics=metrics)
    if folds.note:
        print(f"train (SED): validation folds: {folds.note}")
    print(f"train (SED {cfg.backbone}, {cfg.init} init, {metrics['device']}): {len(train)} training items, "
          + (f"best val macro AUC {metrics['val_auc']:.3f} at epoch {metrics['best_epoch']}" if len(val_rec) else
             f"no validation (no recording could be held out without taking a label's last one out of training): "
             f"the last epoch ({metrics['best_epoch']}) is kept")
          + (f"; {int(rounds['kept'].sum()) - 1} noisy-student round(s) kept" if rounds is not None else ""))
    return TrainResult(result.model, None, result.history, metrics, per_class, out, student_rounds=rounds)
