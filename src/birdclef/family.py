"""Model families: the one seam between a kind of model and the stages that train, ensemble, submit and bundle it.

A family (the embedding head, SED CNNs, whatever comes next) is one :class:`ModelFamily` subclass
registered under its ``Config.model_family`` name with :func:`register_family`. It

- trains from a config into the run's model folder (:meth:`ModelFamily.train` → :class:`TrainResult`);
- says whether a model folder holds one of its runs (:meth:`~ModelFamily.holds`) and loads it as an
  ensemble :class:`Member` (:meth:`~ModelFamily.load`: its class list and training prior);
- predicts every test soundscape's window probabilities for its members (:meth:`~ModelFamily.predict`
  → one :class:`Output` per file, or the reason the file could not be read);
- names what a Kaggle bundle must carry for a run (:meth:`~ModelFamily.bundle` → :class:`BundleParts`);
- names the Config sections of its own settings (``config_sections``), which other families refuse.

Training (:func:`birdclef.models.train.run_training`), the submission's ensemble
(:func:`birdclef.inference.predict.predict_files`) and the bundle (:func:`birdclef.submission.kaggle.build_bundle`) speak
only to this protocol. The built-in families ("mlp": :mod:`birdclef.models.head_family`, "sed":
:mod:`birdclef.models.sed.family`) are imported when first asked for, so a core install never loads the
SED family's dependencies.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Sequence

import numpy as np

from birdclef.contracts import Settings, ZeroShotMapping
from birdclef.errors import BirdclefError
from birdclef.workdir import ModelFolder

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Output:
    """One member's prediction for one soundscape."""

    prob: np.ndarray  # (n_windows, n_classes) probabilities in taxonomy order
    zero_shot_logits: np.ndarray | None = None  # (n_windows, n_classes) its backbone's own logits, when asked and known


@dataclass(frozen=True)
class Member:
    """A trained run loaded for a submission. Families subclass it with what they predict from."""

    family: ClassVar[str] = ""
    folder: Path  # the model folder it came from
    labels: tuple[str, ...]  # its output classes, in order
    prior: np.ndarray  # (n_classes,) training class frequencies: the rows of a soundscape it cannot read

    # per class, the zero-shot blend weights chosen on validation ((): none)
    @property
    def zero_shot_weights(self) -> tuple[float, ...]:
        return ()

    @property
    def blends_zero_shot(self) -> bool:
        """Whether the chain's zero-shot blend applies to this member's probabilities."""
        return False

    def zero_shot(self, taxonomy: pd.DataFrame) -> ZeroShotMapping | None:
        """Its backbone's own species scores for ``taxonomy``'s classes, when it blends with them."""
        return None

    def prior_windows(self, count: int) -> np.ndarray:
        """(count, n_classes) rows of the training prior."""
        return np.repeat(np.asarray(self.prior, np.float32)[None], count, axis=0)


@dataclass(frozen=True)
class TrainResult:
    """What a family's training writes and 03_train shows."""

    model: Any  # the trained model (an MLPHead, a SedModel, …)
    meta: Any  # what rebuilds it (the head's HeadMeta), None where the run folder holds it
    history: pd.DataFrame  # epoch, train_loss, val_loss, val_auc, lr, …
    metrics: dict
    per_class: pd.DataFrame  # label, positives, auc on the validation data
    out_dir: Path  # the model folder
    pseudo_rounds: pd.DataFrame | None = None  # one row per pseudo-labelling round (birdclef.models.pseudo)
    soundscape_per_class: pd.DataFrame | None = None  # label, positives, auc on held-out labelled soundscape windows
    student_rounds: pd.DataFrame | None = None  # one row per noisy-student round (birdclef.models.sed.noisy_student)


@dataclass(frozen=True)
class BundleParts:
    """What a Kaggle bundle carries for one run."""

    files: tuple[str, ...]  # paths relative to the model folder, copied as they are
    read_labels: Callable[[], Sequence[str]]  # the classes it predicts (checked against the sample submission)
    uses_backbone: bool  # it embeds with Config.backbone at submission time (weights and wheels come along)
    packages: tuple[str, ...] = ()  # pip names of runtimes it needs beyond the bundle's usual wheels
    required: tuple[str, ...] = ()  # of ``files``, those without which it cannot submit


Prediction = dict[str, "Output | str"]  # str(file) → its output, or why it could not be read


class ModelFamily:
    """One kind of model. Subclass, set ``name``, implement the methods, decorate with :func:`register_family`."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    # the Config sections (birdclef.config.SECTIONS) holding this family's own settings: given explicitly
    # while another family is chosen, they are refused by name
    config_sections: ClassVar[tuple[str, ...]] = ()

    def train(self, *, config: Settings, progress: bool = True) -> TrainResult:
        """Train on the preprocess stage's artefacts and write ``RunLayout.of(config).model``."""
        raise NotImplementedError

    def holds(self, folder: ModelFolder) -> bool:
        """Whether ``folder`` holds a trained run of this family."""
        raise NotImplementedError

    def load(self, folder: ModelFolder, config: Settings, labels: Sequence[str], *, first: bool) -> Member:
        """The run in ``folder`` as a member of a submission under ``config`` (``first``: the run the
        submission was configured from, not an extra ``ensemble_model_dirs`` one). Refuses a run
        trained on other classes than ``labels``."""
        raise NotImplementedError

    def predict(self, members: Sequence[Member], files: Sequence[Path], config: Settings, *,
                zero_shot: Sequence[ZeroShotMapping | None]) -> list[Prediction]:
        """Every file for each of ``members`` (all of this family) → one {str(file): Output or reason}
        per member. ``zero_shot[i]``: the backbone scores member ``i`` should report with its
        probabilities (None: none)."""
        raise NotImplementedError

    def bundle(self, folder: ModelFolder) -> BundleParts:
        """What a Kaggle bundle must copy from ``folder`` for this run to submit there."""
        raise NotImplementedError


FAMILIES: dict[str, ModelFamily] = {}
# the built-in families and the module registering each, imported when first asked for
BUILTIN: dict[str, str] = {"mlp": "birdclef.models.head_family", "sed": "birdclef.models.sed.family"}


def register_family(cls: type[ModelFamily]) -> type[ModelFamily]:
    """Class decorator: register ``cls()`` under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    if cls.name in FAMILIES and type(FAMILIES[cls.name]) is not cls:
        raise ValueError(f"model family {cls.name!r} registered twice")
    FAMILIES[cls.name] = cls()
    return cls


def family_names() -> tuple[str, ...]:
    """Every family a config may name: the built-ins, then any registered since."""
    return tuple(dict.fromkeys([*BUILTIN, *FAMILIES]))


def family(name: str) -> ModelFamily:
    """The family registered under ``name`` (a built-in is imported on first use)."""
    if name not in FAMILIES and name in BUILTIN:
        importlib.import_module(BUILTIN[name])
    if name not in FAMILIES:
        raise ValueError(f"unknown model_family {name!r}; known: {', '.join(map(repr, family_names()))}")
    return FAMILIES[name]


def family_of(folder: str | Path | ModelFolder) -> ModelFamily:
    """The family whose run ``folder`` holds (asked in :func:`family_names` order)."""
    folder = folder if isinstance(folder, ModelFolder) else ModelFolder(Path(folder))
    for name in family_names():
        fam = family(name)
        if fam.holds(folder):
            return fam
    raise BirdclefError(f"{folder.root} holds no trained model (no run of {', '.join(family_names())}): "
                        "run the training stage first")


def load_members(config: Settings, model_dirs: Sequence[str | Path], labels: Sequence[str]) -> list[Member]:
    """Each model folder of ``model_dirs`` (the first: the one ``config`` came with) as a member."""
    members = []
    for i, d in enumerate(model_dirs):
        folder = ModelFolder(Path(d))
        members.append(family_of(folder).load(folder, config, labels, first=i == 0))
    return members


def check_labels(folder: Path, run_labels: Sequence[str], labels: Sequence[str]) -> None:
    """Refuse a run whose classes are not ``labels`` in order."""
    if list(run_labels) != list(labels):
        raise BirdclefError(f"{folder} was trained on another taxonomy ({len(run_labels)} classes, not {len(labels)})")


def uniform_or(prior: Sequence[float], n_classes: int) -> np.ndarray:
    """(n_classes,) ``prior`` as saved, or uniform when none (or a wrong-length one) was saved."""
    return (np.asarray(prior, np.float32) if len(prior) == n_classes
            else np.full(n_classes, 1.0 / n_classes, np.float32))
