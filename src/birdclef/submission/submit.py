"""Submission stage: every test soundscape → 5-s windows → validated, atomically written CSV.

Rows: ``<soundscape stem>_<end second>`` for every window a file's length implies
(:func:`birdclef.data.competition.n_windows`: 60 s → 12 rows ending 5…60). Columns: ``row_id`` then
one probability per taxonomy label in taxonomy order. Nothing is ever dropped: an unreadable
soundscape gets the training prior (with a warning; ``strict=True`` raises instead).
"""
from __future__ import annotations

import logging
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from birdclef.config import Config
from birdclef.data.competition import build_submission, competition_paths, list_audio, load_taxonomy, row_ids  # noqa: F401  (re-exported)
from birdclef.data.metric import read_solution, score
from birdclef.errors import SchemaError, SubmissionError
from birdclef.family import load_members
from birdclef.inference.predict import predict_files, prior_windows
from birdclef.io import atomic_path, write_csv, write_json
from birdclef.postprocess import zero_shot_weights
from birdclef.postprocess.priors import PRIOR_FILE, load_site_prior
from birdclef.runs import record_run
from birdclef.workdir import ModelFolder, RunLayout

log = logging.getLogger(__name__)


def validate_submission(df: pd.DataFrame, labels: list[str], expected_row_ids: list[str]) -> None:
    """Raise :class:`SubmissionError` unless rows, columns, order and values are all valid."""
    want_cols = ["row_id", *labels]
    if list(df.columns) != want_cols:
        missing = [c for c in want_cols if c not in df.columns]
        extra = [c for c in df.columns if c not in want_cols]
        raise SubmissionError(f"columns wrong: missing {missing[:5]}, unexpected {extra[:5]}, or out of taxonomy order")
    if list(df["row_id"]) != list(expected_row_ids):
        missing = sorted(set(expected_row_ids) - set(df["row_id"]))
        raise SubmissionError(f"rows wrong: {len(df)} rows vs {len(expected_row_ids)} expected; missing e.g. {missing[:3]}")
    values = df[labels].to_numpy(dtype=np.float64)
    if not np.isfinite(values).all():
        raise SubmissionError("submission has NaN or infinite probabilities")
    if (values < 0).any() or (values > 1).any():
        raise SubmissionError("submission probabilities must lie in [0, 1]")


def write_submission(df: pd.DataFrame, path: str | Path) -> Path:
    """Atomic write (temp file + rename): a kill leaves the old file or the new one."""
    with atomic_path(path, ".csv") as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")
    return Path(path)


@dataclass(frozen=True)
class SubmissionResult:
    submission: pd.DataFrame
    path: Path
    score: float | None  # local score when the data folder has a solution.csv
    fallbacks: pd.DataFrame  # soundscapes that got the prior: path, reason


KAGGLE_FILES, KAGGLE_CORES, KAGGLE_LIMIT_MIN = 600, 4, 90  # hidden test soundscapes, cores, the time limit
# Kaggle's CPUs are not this machine's, and a run's speed varies: the estimate is this many times the
# measured one, plus the kernel's start (installing the bundle, imports) before it predicts
KAGGLE_SAFETY, KAGGLE_STARTUP_MIN = 1.5, 1.0


def command_overhead_minutes(speed: dict) -> float:
    """Minutes of a measured submission (``submission_speed.json``) outside its stage: the imports and
    set-up of the whole command, once per run, times the safety factor (0 for a file without them)."""
    extra = max(0.0, float(speed.get("command_seconds", speed["seconds"])) - float(speed["seconds"]))
    return extra * KAGGLE_SAFETY / 60


def kaggle_minutes(seconds_per_file: float, *, cores: int | None = None) -> float:
    """Minutes Kaggle's :data:`KAGGLE_FILES` hidden soundscapes take on its :data:`KAGGLE_CORES` cores at
    ``seconds_per_file`` of wall time here, on ``cores`` (default: this machine's), times the safety
    factor (the start-up not included)."""
    cores = cores or os.cpu_count() or 1
    return seconds_per_file * KAGGLE_FILES * cores / KAGGLE_CORES * KAGGLE_SAFETY / 60


def kaggle_estimate_minutes(seconds: float, n_files: int, *, cores: int | None = None) -> float | None:
    """Minutes the hidden test set would take at this run's speed (``seconds`` of wall time for
    ``n_files`` on ``cores``, default this machine's: the whole submission, as a user runs it), with
    the safety factor and the kernel's start; a warning when it passes the limit. None for fewer
    than 2 files (start-up would dominate)."""
    if n_files < 2:
        return None
    minutes = kaggle_minutes(seconds / n_files, cores=cores) + KAGGLE_STARTUP_MIN
    if minutes > KAGGLE_LIMIT_MIN:
        warnings.warn(f"at this speed ({seconds / n_files:.1f} s per file) the {KAGGLE_FILES} hidden test soundscapes "
                      f"would take ~{minutes:.0f} min on {KAGGLE_CORES} cores, over Kaggle's {KAGGLE_LIMIT_MIN}-min "
                      "limit: fewer or smaller ensemble members", stacklevel=3)
    return round(minutes, 1)


def write_speed(path: Path, members, timing, *, seconds: float, n_files: int) -> None:
    """``<work_dir>/submission_speed.json``: this submission's measured speed, whole and per member
    (what ``kaggle build`` estimates the kernel's time from): ``seconds`` the stage (``birdclef submit``
    adds ``command_seconds``, the whole command: :func:`birdclef.cli.record_command_seconds`)."""
    per_file = timing.seconds_per_file()
    write_json({"n_files": n_files, "cores": os.cpu_count() or 1, "seconds": round(seconds, 3),
                "seconds_per_file": round(seconds / n_files, 4),
                "members": [{"folder": str(Path(m.folder).resolve()), "family": m.family,
                             "seconds_per_file": None if x is None else round(x, 4)} for m, x in zip(members, per_file)],
                "measured_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, path)


def ensemble_dirs(config: Config, model_dir: Path) -> list[Path]:
    """The model folders a submission blends: ``model_dir``, then every ``config.ensemble_model_dirs`` one."""
    return [Path(model_dir), *map(Path, config.ensemble_model_dirs)]


def run_submission(
    *, config: Config, model_dir: str | Path | None = None, test_dir: str | Path | None = None,
    out_path: str | Path | None = None,
) -> SubmissionResult:
    """Predict every test soundscape and write ``<work_dir>/submission.csv``.

    Window probabilities are post-processed as ``config`` says (:func:`birdclef.models.head.soundscape_probabilities`:
    test-time shifts, ensemble mean over ``model_dir`` and ``ensemble_model_dirs``, zero-shot
    blend, smoothing). A row is appended to the runs table.
    """
    started = time.perf_counter()  # the whole stage, as a user times it
    paths = competition_paths(config.data_dir)
    taxonomy = load_taxonomy(paths.taxonomy)
    labels = taxonomy["primary_label"].tolist()
    model_dir = Path(model_dir) if model_dir else RunLayout.of(config).model_dir
    members = load_members(config, ensemble_dirs(config, model_dir), labels)
    files = list_audio(test_dir if test_dir is not None else paths.test_soundscapes)
    if not files:
        log.warning("no test soundscapes in %s (hidden while editing on Kaggle?): writing prior rows "
                    "for the sample submission's row ids", test_dir or paths.test_soundscapes)
    # each member's own backbone scores (stored with its embeddings, one pass) and blend weights:
    # the weights it chose on validation, or zero_shot_weight
    zero_shot = [m.zero_shot(taxonomy) if files else None for m in members]
    weights = [None if zs is None else zero_shot_weights(config, [m], zs.mapped) for m, zs in zip(members, zero_shot)]
    site_prior = load_site_prior(model_dir) if config.site_prior_weight > 0 else None
    if config.site_prior_weight > 0 and site_prior is None:
        log.warning("site_prior_weight=%s but %s has no %s (no labelled train soundscapes): no site prior",
                    config.site_prior_weight, model_dir, PRIOR_FILE)
    context = None
    if "context" in config.postprocess:  # the first model folder's (the ensemble's own head run)
        from birdclef.models.context import load_context

        context = load_context(ModelFolder(model_dir), config)
    probs, fallbacks, timing = predict_files(files, members, config, labels, zero_shot=zero_shot,
                                             weights=weights, site_prior=site_prior, taxonomy=taxonomy, context=context)
    sub = build_submission(probs, labels, config.window_s)
    expected = [r for f in files for r in row_ids(f.stem, len(probs[f.stem]), config.window_s)]
    if not files and paths.sample_submission.exists():
        sample_ids = pd.read_csv(paths.sample_submission, usecols=["row_id"], dtype=str)["row_id"].tolist()
        sub = pd.DataFrame(prior_windows(members[0], len(sample_ids)).astype(np.float64), columns=labels)
        sub.insert(0, "row_id", sample_ids)
        expected = sample_ids
    validate_submission(sub, labels, expected)
    out = Path(out_path) if out_path else RunLayout.of(config).submission
    write_submission(sub, out)
    write_json(config.to_dict(), RunLayout.of(config).submission_config)  # what `kaggle build` bundles
    seconds = time.perf_counter() - started
    estimate = kaggle_estimate_minutes(seconds, len(files))
    if len(files) >= 2:
        write_speed(RunLayout.of(config).submission_speed, members, timing, seconds=seconds, n_files=len(files))
    fb = pd.DataFrame(fallbacks, columns=["path", "reason"])
    if len(fb):
        write_csv(fb, out.with_name("submission_fallbacks.csv"))
    local = None
    if paths.solution.exists() and files:
        solution, ignore = read_solution(paths.solution)
        try:
            local = score(solution, sub, row_id_column_name="row_id", ignore=ignore)
        except SchemaError as err:  # the file is written and valid; only the local score is unavailable
            warnings.warn(f"{paths.solution} does not fit these soundscapes, not scored: {err}", stacklevel=2)
    record_run(config, stage="submit", metrics={"local_score": local, "n_rows": len(sub), "n_soundscapes": len(files),
                                                "n_fallbacks": len(fb), "n_models": len(members),
                                                "zero_shot_classes": 0 if weights[0] is None else int((weights[0] > 0).sum()),
                                                "kaggle_minutes_estimate": estimate,
                                                "n_fastest_only": len(timing.fastest_only), "n_unscored": len(timing.unscored)})
    print(f"submission: {len(sub)} rows × {len(labels)} classes from {len(files)} soundscapes "
          f"({len(fb)} fell back to the prior) → {out}"
          + (f"; local score (macro ROC-AUC) {local:.4f}" if local is not None else ""))
    return SubmissionResult(sub, out, local, fb)
