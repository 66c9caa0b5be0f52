"""Every path under a run's ``work_dir``, in one place.

    <work_dir>/
        preprocess/            the preprocess stage: config.json, manifest.csv, the labelled
                               soundscape windows, validation soundscapes (val_soundscapes/<key>/)
        embeddings/<key>/      the embedding cache, one folder per embedding configuration
        model/                 the training stage: config.json, head.pt (embedding head) or sed/
                               (a SED run), metrics, history, tables; context.pt (the context model)
        submission.csv         the submission stage's output
        submission_config.json the config it ran under (its ensemble: what `kaggle build` bundles)
        submission_speed.json  its measured speed, whole and per member (`kaggle build`'s time estimate)
        runs.csv               one row per training or submission run (birdclef.runs)
        notebooks/             executed notebooks (birdclef.pipeline)

Stages, the Kaggle bundle and the benchmarks take their paths from :class:`RunLayout` (and a model
folder's from :class:`ModelFolder`); no module spells these names itself.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CONFIG_FILE = "config.json"  # the resolved config a stage saved beside what it wrote
PREPROCESS = "preprocess"
EMBEDDINGS = "embeddings"
MODEL = "model"
SUBMISSION_FILE = "submission.csv"
SUBMISSION_CONFIG = "submission_config.json"
SUBMISSION_SPEED = "submission_speed.json"
RUNS_FILE = "runs.csv"
NOTEBOOKS = "notebooks"
MANIFEST_FILE = "manifest.csv"
WINDOWS_FILE = "soundscape_windows.csv"  # the labelled soundscape windows the preprocess stage listed
VAL_SOUNDSCAPES = "val_soundscapes"
HEAD_FILE = "head.pt"
METRICS_FILE = "metrics.json"  # a training run's validation scores and what it chose
SED_DIR = "sed"  # the SED run folder inside a model folder (birdclef.models.sed.run)
CONTEXT_FILE = "context.pt"  # the context model over a file's windows (birdclef.models.context), when trained


@dataclass(frozen=True)
class ModelFolder:
    """A training stage's output folder (``<work_dir>/model``, or one copied elsewhere: a bundle's)."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def metrics(self) -> Path:
        return self.root / METRICS_FILE

    @property
    def head(self) -> Path:
        return self.root / HEAD_FILE

    @property
    def sed(self) -> Path:
        return self.root / SED_DIR

    @property
    def context(self) -> Path:
        return self.root / CONTEXT_FILE


@dataclass(frozen=True)
class RunLayout:
    """The folders and files of one ``work_dir``. ``RunLayout.of(config)`` or ``RunLayout(Path(...))``."""

    root: Path

    @classmethod
    def of(cls, config_or_dir: object) -> RunLayout:
        """The layout of a Config's ``work_dir`` (anything with a ``work_dir``) or of a folder."""
        work_dir = getattr(config_or_dir, "work_dir", config_or_dir)
        return cls(Path(work_dir))

    @property
    def preprocess(self) -> Path:
        return self.root / PREPROCESS

    @property
    def preprocess_config(self) -> Path:
        return self.preprocess / CONFIG_FILE

    @property
    def manifest(self) -> Path:
        return self.preprocess / MANIFEST_FILE

    @property
    def windows(self) -> Path:
        return self.preprocess / WINDOWS_FILE

    @property
    def val_soundscapes(self) -> Path:
        return self.preprocess / VAL_SOUNDSCAPES

    @property
    def embeddings(self) -> Path:
        return self.root / EMBEDDINGS

    def embedding_cache(self, key: str) -> Path:
        return self.embeddings / key

    @property
    def model_dir(self) -> Path:
        return self.root / MODEL

    @property
    def model(self) -> ModelFolder:
        return ModelFolder(self.model_dir)

    @property
    def submission(self) -> Path:
        return self.root / SUBMISSION_FILE

    @property
    def submission_config(self) -> Path:
        return self.root / SUBMISSION_CONFIG

    @property
    def submission_speed(self) -> Path:
        return self.root / SUBMISSION_SPEED

    @property
    def runs(self) -> Path:
        return self.root / RUNS_FILE

    @property
    def notebooks(self) -> Path:
        return self.root / NOTEBOOKS

    def link_caches(self, source: RunLayout, *, preprocess: bool = True) -> None:
        """Point this layout's embedding cache (and preprocess folder) at ``source``'s by symbolic links
        (each made once): runs of one dataset that differ after preprocessing share what it wrote."""
        self.root.mkdir(parents=True, exist_ok=True)
        for mine, theirs in ((self.embeddings, source.embeddings), *((self.preprocess, source.preprocess),) * preprocess):
            if not mine.exists():
                theirs.mkdir(parents=True, exist_ok=True)
                mine.symlink_to(theirs.resolve(), target_is_directory=True)
