"""Kaggle: a trained run → an offline, internet-off submission kernel (a dataset + a notebook).

:func:`build_bundle` writes two folders that the ``kaggle`` CLI uploads as they are::

    <out>/dataset/   birdclef-bundle.json (the marker the kernel searches for), dataset-metadata.json,
                     model/ (head.pt, config.json, metrics.json), backbone/ (a local backbone file,
                     when the run used one), wheels/ (birdclef + what Kaggle's image lacks)
    <out>/kernel/    <kernel-slug>.ipynb (notebooks/04_submit with Kaggle parameters), kernel-metadata.json

The competition's Kaggle slug comes from ``--competition``, else the run's data folder name
(``birdclef-2026``), and is saved in the bundle marker; a run whose classes differ from the
competition's sample submission is refused. On Kaggle, :func:`resolve_kaggle_inputs` searches ``/kaggle/input`` (bounded depth) for the
competition folder, the bundle and model sources, because the mount layout has changed over the
years; the kernel's ``"auto"`` parameters resolve through :func:`resolve_kernel_params`.

The parts: :mod:`~birdclef.submission.kaggle.metadata` (dataset/kernel metadata checks),
:mod:`~birdclef.submission.kaggle.inputs` (the /kaggle/input search), :mod:`~birdclef.submission.kaggle.wheels` (the
bundled wheels), :mod:`~birdclef.submission.kaggle.notebook` (the kernel notebook),
:mod:`~birdclef.submission.kaggle.bundle` (:func:`build_bundle`) and :mod:`~birdclef.submission.kaggle.cli`
(``birdclef kaggle …``).
"""
from __future__ import annotations

from birdclef.submission.kaggle.bundle import Bundle, build_bundle, check_taxonomy, head_labels, resolve_competition
from birdclef.submission.kaggle.cli import add_cli, run_cli
from birdclef.submission.kaggle.inputs import (BUNDLE_MARKER, DEFAULT_COMPETITION, DEFAULT_INPUT, DEFAULT_WORKING,
                                               INPUT_ENV, SEARCH_DEPTH, WORKING_ENV, competition_from_folder,
                                               resolve_kaggle_inputs, resolve_kernel_params, working_dir)
from birdclef.submission.kaggle.metadata import (KNOWN_DATASET_LICENSES, KaggleMetadataError, slugify,
                                                 validate_dataset_metadata, validate_kernel_metadata)
from birdclef.submission.kaggle.notebook import (INSTALL_CELL, KERNEL_PARAMETERS, RESOLVE_CELL, kernel_notebook,
                                                 rewrite_parameters)
from birdclef.submission.kaggle.wheels import (BUNDLED_WHEELS, KAGGLE_PLATFORMS, KAGGLE_PREINSTALLED,
                                               KAGGLE_PYTHON_VERSIONS, ONNXRUNTIME, WHEEL_CACHE_ENV, BundledWheel,
                                               backbone_wheels, build_birdclef_wheel, fetch_wheels,
                                               missing_requirements, project_root)

__all__ = [
    "BUNDLED_WHEELS", "BUNDLE_MARKER", "DEFAULT_COMPETITION", "DEFAULT_INPUT", "DEFAULT_WORKING", "INPUT_ENV",
    "INSTALL_CELL", "KAGGLE_PLATFORMS", "KAGGLE_PREINSTALLED", "KAGGLE_PYTHON_VERSIONS", "KERNEL_PARAMETERS",
    "KNOWN_DATASET_LICENSES", "ONNXRUNTIME", "RESOLVE_CELL", "SEARCH_DEPTH", "WHEEL_CACHE_ENV", "WORKING_ENV",
    "Bundle", "BundledWheel", "KaggleMetadataError",
    "add_cli", "backbone_wheels", "build_birdclef_wheel", "build_bundle", "check_taxonomy", "competition_from_folder", "head_labels",
    "resolve_competition", "fetch_wheels", "kernel_notebook", "missing_requirements",
    "project_root", "resolve_kaggle_inputs", "resolve_kernel_params", "rewrite_parameters", "run_cli", "slugify",
    "validate_dataset_metadata", "validate_kernel_metadata", "working_dir",
]
