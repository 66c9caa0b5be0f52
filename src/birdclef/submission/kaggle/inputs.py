"""Finding the kernel's inputs on Kaggle: the competition, the bundle and model sources.

:func:`resolve_kaggle_inputs` searches ``/kaggle/input`` (bounded depth), because the mount layout
has changed over the years; the kernel's ``"auto"`` parameters resolve through
:func:`resolve_kernel_params`.
"""
from __future__ import annotations

import json
import os
import re
from collections import deque
from pathlib import Path
from typing import Any, Iterable

from birdclef.workdir import MODEL, RunLayout

INPUT_ENV = "BIRDCLEF_KAGGLE_INPUT"  # overrides /kaggle/input (tests lay out a fake tree)
WORKING_ENV = "BIRDCLEF_KAGGLE_WORKING"  # overrides /kaggle/working
DEFAULT_INPUT = "/kaggle/input"
DEFAULT_WORKING = "/kaggle/working"
DEFAULT_COMPETITION = "birdclef-2025"  # used, with a warning, when nothing names the competition
_SLUG = re.compile(r"birdclef-20\d\d")
BUNDLE_MARKER = "birdclef-bundle.json"
SEARCH_DEPTH = 6  # /kaggle/input/models/<owner>/<model>/<framework>/<variation>/<version> is 6 deep
_NOT_SEARCHED = {"train_audio", "train_soundscapes", "test_soundscapes", "wheels", "__pycache__", ".git"}


def competition_from_folder(data_dir: str | Path | None) -> str | None:
    """'birdclef-2026' for a data folder named like a competition slug (``.../birdclef-2026``,
    case-insensitive), else None."""
    if not data_dir:
        return None
    name = Path(str(data_dir)).expanduser().resolve().name.lower()
    return name if _SLUG.fullmatch(name) else None


def _is_competition(names: set[str]) -> bool:
    return "taxonomy.csv" in names and "sample_submission.csv" in names


def _is_bundle(path: Path, names: set[str]) -> bool:
    return BUNDLE_MARKER in names or ("wheels" in names and RunLayout(path).model.head.is_file())


def resolve_kaggle_inputs(
    root: str | Path | None = None, *, competition: str | None = None, model_sources: Iterable[str] = (),
    max_depth: int = SEARCH_DEPTH,
) -> dict[str, Any]:
    """Search the Kaggle input mount for what the kernel needs → dict.

    ``root`` defaults to ``$BIRDCLEF_KAGGLE_INPUT`` or ``/kaggle/input``. Folders are searched
    breadth first to ``max_depth`` levels; a folder that is recognised is not searched further.
    Keys: ``root``; ``competition`` (the folder holding taxonomy.csv and sample_submission.csv,
    preferring one named ``competition``, by default the bundle's) and ``competitions`` (all found); ``bundle`` (the folder
    holding :data:`BUNDLE_MARKER`, or ``wheels/`` and ``model/head.pt``), ``bundles`` and
    ``bundle_meta`` (the marker's contents); ``models`` ({handle: folder} for each of
    ``model_sources`` and those the bundle declares, matched on the handle's trailing
    model/framework/variation/version, case-insensitively). Paths not found are ``None``.
    """
    root = Path(root or os.environ.get(INPUT_ENV) or DEFAULT_INPUT)
    competitions: list[Path] = []
    bundles: list[Path] = []
    folders: list[tuple[Path, tuple[str, ...]]] = []  # every other folder seen, for model matching
    queue = deque([(root, 0)])
    while queue:
        folder, depth = queue.popleft()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            continue
        names = {e.name for e in entries}
        if depth and _is_competition(names):
            competitions.append(folder)
            continue
        if depth and _is_bundle(folder, names):
            bundles.append(folder)
            continue
        if depth:
            folders.append((folder, tuple(p.lower() for p in folder.relative_to(root).parts)))
        if depth < max_depth:
            queue.extend((Path(e.path), depth + 1) for e in entries if e.name not in _NOT_SEARCHED and e.is_dir())
    bundle_meta: dict[str, Any] = {}
    if bundles and (bundles[0] / BUNDLE_MARKER).is_file():
        bundle_meta = json.loads((bundles[0] / BUNDLE_MARKER).read_text())
    competition = competition or bundle_meta.get("competition")
    if competition and len(competitions) > 1:  # e.g. last year's data attached too
        competitions.sort(key=lambda p: competition.lower() not in [q.lower() for q in p.parts])
    if competition:  # where Kaggle mounts it: /kaggle/input/competitions/<slug> (now), /kaggle/input/<slug> (before)
        for folder in (root / "competitions" / competition, root / competition):
            if folder.is_dir() and _is_competition({e.name for e in os.scandir(folder)}):
                competitions = [folder, *[p for p in competitions if p != folder]]
                break
    models: dict[str, Path | None] = {}
    for handle in dict.fromkeys([*model_sources, *bundle_meta.get("model_sources", [])]):
        models[handle] = _match_model(handle, folders)
    return {
        "root": root, "competition": competitions[0] if competitions else None, "competitions": competitions,
        "bundle": bundles[0] if bundles else None, "bundles": bundles, "bundle_meta": bundle_meta, "models": models,
    }


def _match_model(handle: str, folders: list[tuple[Path, tuple[str, ...]]]) -> Path | None:
    """The mounted folder of a model handle 'owner/model/framework/variation/version'."""
    tail = tuple(p.lower() for p in handle.split("/")[1:])
    for size in (len(tail), min(2, len(tail))):  # the whole handle, then variation/version alone
        hits = [path for path, parts in folders if size and parts[-size:] == tail[-size:]]
        if hits:
            return min(hits, key=lambda p: len(p.parts))
    return None


def working_dir() -> Path:
    """Where the kernel writes: ``$BIRDCLEF_KAGGLE_WORKING`` or ``/kaggle/working``."""
    return Path(os.environ.get(WORKING_ENV) or DEFAULT_WORKING)


def resolve_kernel_params(
    *, data_dir: str | None = "auto", work_dir: str | None = "auto", model_dir: str | None = "auto",
    backbone_path: str | None = "auto", output_path: str | None = "auto", inputs: dict | None = None,
    ensemble_model_dirs: Any = "auto",
) -> dict[str, Any]:
    """The kernel's ``"auto"`` parameters → real paths (other values pass through unchanged).

    data_dir → the competition folder; work_dir → the working folder; model_dir → the bundle's
    model/; backbone_path → the bundle's backbone file, else the mounted model source, else None
    (the training config's value); output_path → <working>/submission.csv; ensemble_model_dirs →
    the bundle's other members (its marker's ``members``; [] for one model).
    """
    inputs = inputs or resolve_kaggle_inputs()
    meta = inputs["bundle_meta"]
    out: dict[str, str | None] = {}
    if data_dir == "auto":
        if inputs["competition"] is None:
            raise FileNotFoundError(f"no competition folder (taxonomy.csv + sample_submission.csv) under "
                                    f"{inputs['root']}: add the competition as an input")
        data_dir = str(inputs["competition"])
    bundle = inputs["bundle"]
    if bundle is None and ("auto" in (model_dir, backbone_path) or ensemble_model_dirs == "auto"):
        raise FileNotFoundError(f"no birdclef bundle ({BUNDLE_MARKER}) under {inputs['root']}: "
                                "attach the dataset made by `birdclef kaggle build`")
    if model_dir == "auto":
        model_dir = str(bundle / meta.get("model_dir", MODEL))
    if backbone_path == "auto":
        backbone_path = None
        if meta.get("backbone_file"):
            backbone_path = str(bundle / meta["backbone_file"])
        elif inputs["models"]:
            missing = [h for h, p in inputs["models"].items() if p is None]
            if missing:
                raise FileNotFoundError(f"model source(s) {missing} not found under {inputs['root']}: add them as inputs")
            backbone_path = str(_model_path(next(iter(inputs["models"].values())), meta.get("backbone_name")))
    if ensemble_model_dirs == "auto":
        ensemble_model_dirs = [str(bundle / m) for m in meta.get("members", [])]
    work = working_dir()
    out.update(data_dir=data_dir, work_dir=str(work) if work_dir == "auto" else work_dir, model_dir=model_dir,
               backbone_path=backbone_path,
               output_path=str(RunLayout(work).submission) if output_path == "auto" else output_path,
               ensemble_model_dirs=ensemble_model_dirs)
    return out


def _model_path(mount: Path, name: str | None) -> Path:
    """The backbone inside a mounted model source, under the file name training used.

    The embedding cache key holds the backbone_path's last name, so a mount named otherwise
    (``.../perch_v2_cpu/1`` for a run trained on ``.../perch``) is linked under that name.
    """
    if not name or mount.name == name:
        return mount
    found = sorted(mount.rglob(name))
    if found:
        return found[0]
    link = working_dir() / "backbone" / name
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(mount, target_is_directory=mount.is_dir())
    return link
