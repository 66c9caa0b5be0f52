"""Kaggle's Python image, rebuilt for the kernel tests: the image's versions in a venv, built once, cached.

:data:`KAGGLE_IMAGE` is the one list of Kaggle's versions (:data:`KAGGLE_IMAGE_READ`: when they were
read). :func:`build_image` turns it into a venv under ``~/.cache/birdclef/kaggle-image/`` (or
``$BIRDCLEF_KAGGLE_IMAGE``), in a folder keyed by the list and the interpreter, so a changed list
builds a new one (and removes the old: each is ~10 GB). :func:`kernel_env` makes a fresh, empty venv
over the image's packages, the way a Kaggle session starts, for the bundle to be installed into.

``make env-kaggle`` (or ``python tests/kaggle_image.py``) builds it; the kernel tests in
tests/test_kaggle.py build it on first use and skip, saying why, where no Python 3.12 or no package
registry is found. Standard library only: it runs under any Python 3.
"""
from __future__ import annotations

import argparse
import fcntl
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KAGGLE_IMAGE_READ = "2026-11"
KAGGLE_PYTHON = "3.12"
# Kaggle's 2026 CPU image: the first seven are issue 21's list.
# Its torch is a CPU build (torch==2.10.0+cpu, from PyTorch's own index, which is not reachable here);
# PyPI's 2.10.0 is the CUDA 12.8 build, whose libtorch_cpu.so already links libcudart, libcudnn,
# libcusparseLt, ..., so it does not import without its nvidia-* wheels: they are installed with it
# (~3 GB of the ~4.5 GB download) and it runs on the CPU, torch.cuda.is_available() False, as on Kaggle.
# TensorFlow: 2.19–2.20 on Kaggle; 2.19.0 requires numpy<2.2, so 2.20.0 with numpy 2.2.
KAGGLE_IMAGE = {
    "torch": "2.10.0", "torchaudio": "2.10.0", "tensorflow": "2.20.0", "numpy": "2.2.6",
    "pandas": "2.3.3", "scikit-learn": "1.6.1", "scipy": "1.16.3",
    # The rest of the image the kernel touches (the notebook runner, the audio reader, what the bundled
    # wheels require; birdclef.submission.kaggle.KAGGLE_PREINSTALLED names them), at the versions Kaggle/docker-python's
    # installed_cpu_packages.txt lists (its commit of 2026-06-17; that file has numpy 2.4.6 and
    # tensorflow 2.19.0 where issue 21 has the ones above). Packages not named resolve to the newest that fit.
    "matplotlib": "3.10.0", "soundfile": "0.13.1", "tqdm": "4.67.3", "joblib": "1.5.3", "threadpoolctl": "3.6.0",
    "python-dateutil": "2.9.0.post0", "pytz": "2025.2", "tzdata": "2026.1", "pillow": "11.3.0",
    "papermill": "2.7.0", "nbclient": "0.5.13", "nbformat": "5.10.4", "ipykernel": "6.17.1", "ipython": "7.34.0",
    "jupyter-client": "7.4.9", "jupyter-core": "5.9.1", "traitlets": "5.15.0", "pyzmq": "26.2.1", "tornado": "6.5.1",
    "notebook": "6.5.7", "jupyterlab": "3.6.8", "jupyter-console": "6.6.3", "nbconvert": "6.4.5", "ipywidgets": "8.1.5",
    "flatbuffers": "25.12.19", "protobuf": "5.29.5", "ml-dtypes": "0.5.4", "typing-extensions": "4.15.0",
    "packaging": "26.0", "requests": "2.32.4", "pip": "24.1.2", "setuptools": "75.2.0",
}
IMAGE_ENV = "BIRDCLEF_KAGGLE_IMAGE"  # the cache folder
PYTHON_ENV = "BIRDCLEF_KAGGLE_PYTHON"  # a Python 3.12 interpreter to build it with
MIN_FREE_GB = 15  # the built image is ~10 GB, and pip unpacks beside it
_FORMAT = 1  # bump when the build itself changes
_COMPLETE = "kaggle-image.json"  # written last: a folder without it is a broken build


class ImageUnavailable(RuntimeError):
    """Kaggle's image cannot be built here (no Python 3.12, no package registry): tests skip with this."""


def _clean_env() -> dict[str, str]:
    # the build must not see the calling venv (VIRTUAL_ENV, PYTHONPATH); pip's settings are kept: they reach the registry
    return {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "CONDA"))} | {"PYTHONNOUSERSITE": "1"}


def _version_of(python: str) -> str | None:
    try:
        run = subprocess.run([python, "-c", "import sys, venv, ensurepip; print('%d.%d.%d' % sys.version_info[:3])"],
                             capture_output=True, text=True, timeout=60, env=_clean_env())
    except (OSError, subprocess.TimeoutExpired):
        return None
    return run.stdout.strip() if run.returncode == 0 else None


def find_python(version: str = KAGGLE_PYTHON) -> tuple[Path, str]:
    """A Python ``version`` interpreter with venv and ensurepip → (its path, its full version).

    Looked for in ``$BIRDCLEF_KAGGLE_PYTHON``, ``python3.12`` on PATH, pyenv's versions, /usr/bin, /usr/local/bin.
    """
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates = [os.environ.get(PYTHON_ENV), shutil.which(f"python{version}"),
                  *sorted(glob.glob(str(pyenv / f"{version}.*" / "bin" / f"python{version}")), reverse=True),
                  f"/usr/bin/python{version}", f"/usr/local/bin/python{version}"]
    for python in filter(None, candidates):
        full = _version_of(python)
        if full and full.rsplit(".", 1)[0] == version:
            return Path(python), full
    raise ImageUnavailable(f"no Python {version} with venv found (set ${PYTHON_ENV}, or e.g. `pyenv install {version}`); "
                           f"Kaggle's image runs {version}")


def cache_root() -> Path:
    return Path(os.environ.get(IMAGE_ENV) or Path.home() / ".cache" / "birdclef" / "kaggle-image")


def image_key(python_version: str) -> str:
    """The cache folder's name: Python's version and a hash of :data:`KAGGLE_IMAGE`."""
    payload = json.dumps({"format": _FORMAT, "python": python_version, "image": KAGGLE_IMAGE}, sort_keys=True)
    return f"py{python_version}-{hashlib.sha256(payload.encode()).hexdigest()[:12]}"


def _site_packages(venv: Path) -> Path:
    return next(venv.glob("lib/python3*/site-packages"))


def _run(cmd: list[str], what: str, **kwargs) -> subprocess.CompletedProcess:
    run = subprocess.run(cmd, capture_output=True, text=True, env=_clean_env(), **kwargs)
    if run.returncode:
        raise RuntimeError(f"{what} failed ({' '.join(map(str, cmd[:6]))} …):\n{run.stdout[-2000:]}{run.stderr[-3000:]}")
    return run


CHECK = '''\
import json, sys
from importlib import metadata
import numpy, pandas, sklearn, scipy, torch, torchaudio, soundfile, papermill, ipykernel
x = torch.nn.Linear(8, 2)(torch.ones(3, 8)).softmax(-1)  # the CUDA build computes on the CPU
assert x.shape == (3, 2) and not torch.cuda.is_available()
print(json.dumps({"python": "%d.%d.%d" % sys.version_info[:3],
                  **{name: metadata.version(name) for name in json.loads(sys.argv[1])}}))
'''


def build_image(*, cache: Path | None = None, log=print) -> Path:
    """Kaggle's image as a venv (built here once, then found) → its folder.

    Raises :class:`ImageUnavailable` when no Python 3.12 or no package registry is found here,
    RuntimeError when the build itself fails (a list pip cannot resolve is a finding, not a skip).
    """
    python, full_version = find_python()
    root = cache or cache_root()
    venv = root / image_key(full_version)
    if (venv / _COMPLETE).is_file():
        return venv
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time; a second caller waits, then finds it
        if (venv / _COMPLETE).is_file():
            return venv
        for old in root.glob("py*-*"):  # a broken build of this list, or the image of an older list
            log(f"removing {old}")
            shutil.rmtree(old, ignore_errors=True)
        free_gb = shutil.disk_usage(root).free / 1e9
        if free_gb < MIN_FREE_GB:  # a machine that cannot hold it; not a finding about the package
            raise ImageUnavailable(f"{root} has {free_gb:.0f} GB free, Kaggle's image needs ~{MIN_FREE_GB} GB")
        t0 = time.perf_counter()
        log(f"building Kaggle's image ({len(KAGGLE_IMAGE)} pins, read {KAGGLE_IMAGE_READ}) with Python {full_version} "
            f"({python}) into {venv}; several minutes, ~4.5 GB of downloads")
        _run([str(python), "-m", "venv", str(venv)], "python -m venv")
        pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
        with tempfile.TemporaryDirectory() as tmp:  # one small pinned wheel: is the registry there?
            probe = subprocess.run([*pip, "download", "-q", "--no-deps", "--no-cache-dir", "--retries", "1", "--timeout", "30",
                                    "-d", tmp, f"tqdm=={KAGGLE_IMAGE['tqdm']}"],
                                   capture_output=True, text=True, env=_clean_env(), timeout=300)
        if probe.returncode:
            shutil.rmtree(venv, ignore_errors=True)
            raise ImageUnavailable(f"no package registry reachable to build Kaggle's image: {probe.stderr.strip()[-500:]}")
        # --no-cache-dir: the wheels are not kept a second time in pip's cache (the image is the cache)
        _run([*pip, "install", "-q", "--no-cache-dir", "--only-binary=:all:",
              *(f"{name}=={version}" for name, version in KAGGLE_IMAGE.items())], "installing Kaggle's image", timeout=3600)
        got = json.loads(_run([str(venv / "bin" / "python"), "-c", CHECK, json.dumps(list(KAGGLE_IMAGE))],
                              "checking Kaggle's image").stdout)
        wrong = {name: (version, got[name]) for name, version in KAGGLE_IMAGE.items() if got[name] != version}
        if wrong:
            raise RuntimeError(f"Kaggle's image got other versions than listed (listed, got): {wrong}")
        freeze = _run([*pip, "list", "--format=freeze"], "pip list").stdout.split()
        seconds = time.perf_counter() - t0
        (venv / _COMPLETE).write_text(json.dumps({"read": KAGGLE_IMAGE_READ, "python": got["python"], "image": KAGGLE_IMAGE,
                                                  "installed": freeze, "build_s": round(seconds, 1)}, indent=1))
        log(f"built in {seconds:.0f} s: {len(freeze)} distributions")
    return venv


def image_versions(image: Path) -> dict:
    """What the build recorded: ``python``, ``image`` (the list), ``installed`` (pip freeze), ``build_s``."""
    return json.loads((image / _COMPLETE).read_text())


def kernel_env(image: Path, venv: Path, *, sitecustomize: str = "") -> Path:
    """A fresh venv whose packages are the image's (a .pth makes its site-packages a site dir), none of its
    own, and ``sitecustomize`` (e.g. a socket guard) → its python. pip is the image's, as on Kaggle;
    what it installs lands in this venv, so the image stays as built."""
    _run([str(image / "bin" / "python"), "-m", "venv", "--without-pip", str(venv)], "python -m venv")
    site = _site_packages(venv)
    (site / "kaggle_image.pth").write_text(f"import site; site.addsitedir({str(_site_packages(image))!r})\n")
    if sitecustomize:
        (site / "sitecustomize.py").write_text(sitecustomize)
    return venv / "bin" / "python"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, help=f"cache folder (default ${IMAGE_ENV} or ~/.cache/birdclef/kaggle-image)")
    args = parser.parse_args(argv)
    try:
        image = build_image(cache=args.cache)
    except ImageUnavailable as err:
        print(f"Kaggle's image not built: {err}", file=sys.stderr)
        return 1
    built = image_versions(image)
    size = sum(f.stat().st_size for f in image.rglob("*") if f.is_file() and not f.is_symlink())
    print(f"{image}  (Python {built['python']}, {len(built['installed'])} distributions, {size / 2**30:.1f} GiB, "
          f"built in {built['build_s']:.0f} s; versions read {built['read']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
