"""The "sed" model family: spectrogram CNNs trained end to end (:mod:`birdclef.models.sed`).

A run folder holds ``config.json`` (the pipeline's config) and the SED run ``sed/``
(:mod:`birdclef.models.sed.run`: weights, its SedConfig, labels and the ONNX / OpenVINO export). At
submission time each file runs through every SED member, in worker processes when there are
enough files (:func:`sed_predictions`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ClassVar, Sequence

import numpy as np

from birdclef.errors import AudioError, BirdclefError
from birdclef.family import (BundleParts, Member, ModelFamily, Output, Prediction, TrainResult, check_labels,
                             register_family)
from birdclef.features.embeddings import init_worker_process
from birdclef.io import read_json
from birdclef.progress import tqdm
from birdclef.workdir import CONFIG_FILE, METRICS_FILE, SED_DIR, ModelFolder

SED_MIN_FILES_PER_WORKER = 4  # below this, starting interpreters costs more than it saves
# what a submission needs of a SED run folder (model.xml / .bin: the OpenVINO export, when made)
RUN_FILES = ("config.json", "labels.json", "metrics.json", "model.onnx", "model.xml", "model.bin")


@dataclass(frozen=True)
class SedMember(Member):
    """A SED run as an ensemble member: its exported model, run per file."""

    family: ClassVar[str] = "sed"
    predict: Callable[[Path], np.ndarray]  # a soundscape → (n_windows, n_classes) probabilities
    engine: str = "onnxruntime"  # what runs it (birdclef.models.sed.run): worker processes open their own
    run_dir: Path | None = None  # the SED run folder (``<folder>/sed``, or the folder itself); None: ``folder``

    @property
    def run(self) -> Path:
        return self.run_dir if self.run_dir is not None else self.folder


def sed_labels(sed_dir: Path) -> list[str]:
    """The class labels a SED run predicts, in its output order."""
    return [str(x) for x in read_json(Path(sed_dir) / "labels.json")["labels"]]


_SED_WORKER: dict = {}


def _sed_worker_init(runs: list[tuple[str, str]]) -> None:
    """Each worker opens every SED run once, one thread each (workers × threads never exceed the cores)."""
    from birdclef.models.sed.run import load_run, open_exported

    init_worker_process()
    _SED_WORKER["predict"] = [load_run(p).predictor("torch") if engine == "torch" else
                              open_exported(p, engine=engine, threads=1).predict for p, engine in runs]


def _sed_worker_predict(path: str) -> tuple[str, list[np.ndarray] | str]:
    try:
        return path, [predict(Path(path)) for predict in _SED_WORKER["predict"]]
    except (AudioError, BirdclefError, OSError, ValueError) as err:
        return path, str(err)


def sed_predictions(files: Sequence[Path], members: Sequence[SedMember], n_workers: int = 0
                    ) -> dict[str, list[np.ndarray] | str]:
    """{str(file): [(n_windows, n_classes) per SED member] or the reason it failed}. With more than
    one worker (``n_workers``, 0 = one per core) the files are spread over spawned processes, one
    thread each, every worker holding its own sessions; else they run here in turn."""
    import os

    workers = min(n_workers or os.cpu_count() or 1, len(files) // SED_MIN_FILES_PER_WORKER)
    out: dict[str, list[np.ndarray] | str] = {}
    bar = tqdm(total=len(files), desc=f"test soundscapes ({len(members)} SED model{'s' if len(members) > 1 else ''})",
               unit="file", mininterval=1.0, disable=len(files) < 2)
    if workers > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        runs = [(str(m.run), m.engine) for m in members]
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_sed_worker_init,
                                 initargs=(runs,)) as pool:
            for path, result in pool.map(_sed_worker_predict, [str(f) for f in files]):
                out[path] = result
                bar.update()
    else:
        for f in files:
            try:
                out[str(f)] = [m.predict(f) for m in members]
            except (AudioError, BirdclefError, OSError, ValueError) as err:
                out[str(f)] = str(err)
            bar.update()
    bar.close()
    return out


@register_family
class SedFamily(ModelFamily):
    name = "sed"
    summary = "a spectrogram CNN trained end to end"
    config_sections = ("sed",)

    def train(self, *, config, progress: bool = True) -> TrainResult:
        from birdclef.models.sed.stage import run_sed_training

        return run_sed_training(config=config, progress=progress)

    def holds(self, folder: ModelFolder) -> bool:
        from birdclef.models.sed.run import sed_run_dir

        return sed_run_dir(folder.root) is not None

    def load(self, folder: ModelFolder, config, labels: Sequence[str], *, first: bool) -> SedMember:
        """The SED run of ``folder``, run by ``config.sed_engine`` (one thread: the submission's
        parallelism is across processes, not inside a model)."""
        from birdclef.models.sed.run import load_run, open_exported, sed_run_dir

        run_dir = sed_run_dir(folder.root)
        if config.sed_engine == "torch":
            run = load_run(run_dir)
            predict, run_labels, prior = run.predictor("torch"), run.labels, run.prior
        else:
            exported = open_exported(run_dir, engine=config.sed_engine, threads=1)
            predict, run_labels, prior = exported.predict, exported.labels, exported.prior
        check_labels(run_dir, run_labels, labels)
        return SedMember(folder.root, tuple(run_labels), np.asarray(prior, np.float32), predict, config.sed_engine,
                         run_dir)

    def predict(self, members: Sequence[SedMember], files: Sequence[Path], config, *, zero_shot) -> list[Prediction]:
        got = sed_predictions(files, members, config.n_workers)
        out: list[Prediction] = [{} for _ in members]
        for f in map(str, files):
            for k, pred in enumerate(out):
                pred[f] = f"SED model: {got[f]}" if isinstance(got[f], str) else Output(got[f][k])
        return out

    def bundle(self, folder: ModelFolder) -> BundleParts:
        """The model folder's config and metrics, and the SED run's files a submission reads."""
        if not folder.sed.is_dir():
            raise BirdclefError(f"{folder.root} is a SED run folder itself: bundle the model folder holding it "
                                f"({SED_DIR}/ beside the pipeline's config.json)")
        inner = [f"{SED_DIR}/{n}" for n in RUN_FILES if (folder.sed / n).is_file()]
        outer = [n for n in (CONFIG_FILE, METRICS_FILE) if (folder.root / n).is_file()]
        return BundleParts(files=(*outer, *inner), read_labels=lambda: sed_labels(folder.sed), uses_backbone=False,
                           packages=("onnxruntime",), required=(CONFIG_FILE, f"{SED_DIR}/model.onnx"))


__all__ = ["SED_DIR", "SedFamily", "SedMember", "sed_labels", "sed_predictions"]
