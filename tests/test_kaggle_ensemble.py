"""A whole submission setup in one Kaggle bundle: every ensemble member (any family, any backbone)
copied with what it needs, the submission's settings carried, and the kernel reproducing the local
04_submit. Here the kernel's steps run in this process over a fake /kaggle/input; the kernel tests
in test_kaggle.py run the same bundles through papermill in Kaggle's own image."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from birdclef.config import build_config, load_config, stage_config
from birdclef.data.competition import load_taxonomy
from birdclef.errors import BirdclefError
from birdclef.features.preprocess import run_preprocess
from birdclef.models.train import run_training
from birdclef.submission import kaggle
from birdclef.submission.submit import run_submission
from birdclef.workdir import RunLayout

pytest.importorskip("onnxruntime")
COMPETITION = "birdclef-2025"


@pytest.fixture(scope="module")
def members(tiny_demo, demo_run, tmp_path_factory):
    """Three trained runs on the tiny demo: a melstats head (the session's), a SED model, a Perch v2 (stand-in
    ONNX) head."""
    pytest.importorskip("timm")
    from test_backbone_perch_v2 import _perch_labels, _save_onnx
    from test_sed_stage import SED

    root = tmp_path_factory.mktemp("ensembles")
    mlp = demo_run(epochs=3, into=root / "mlp")  # a copy: its local submissions write into the run folder
    RunLayout(root / "sed").link_caches(RunLayout.of(mlp))  # the MLP run's embeddings and preprocess folder
    sed = mlp.replace(work_dir=str(root / "sed"), **SED)  # the MLP's values inherited, its head settings unread
    run_training(config=sed, progress=False)
    conversion = root / "perch_v2_onnx"
    conversion.mkdir()
    _save_onnx(conversion / "perch_v2.onnx")
    _perch_labels(conversion / "labels.csv", load_taxonomy(tiny_demo / "taxonomy.csv"))
    perch = build_config(data_dir=str(tiny_demo), work_dir=str(root / "perch2"), backbone="perch_v2",
                         backbone_path=str(conversion), epochs=3, val_soundscapes=2)  # 2 validation minutes, not 30
    run_preprocess(config=perch)
    run_training(config=perch, progress=False)
    return {"mlp": mlp, "sed": sed, "perch": perch}


def _build(run: Path, out: Path, monkeypatch, **kwargs):
    from test_kaggle import USER, offline_wheel_cache

    cache = offline_wheel_cache(out.parent / f"{out.name}-wheels", monkeypatch)
    return kaggle.build_bundle(run_dir=run, out_dir=out, user=USER, wheel_cache=cache, python_versions=["3.12"],
                               competition=COMPETITION, **kwargs)


def kernel_here(built, competition: Path, root: Path, monkeypatch) -> pd.DataFrame:
    """The kernel's own steps (resolve the "auto" parameters, 04_submit's config and submission) in
    this process, over the bundle and the competition mounted as Kaggle mounts them → submission."""
    from test_kaggle import _mirror

    input_dir, working = root / "input", root / "working"
    _mirror(competition, input_dir / "competitions" / COMPETITION, skip=("solution.csv", "*_solution.csv"))
    _mirror(built.dataset_dir, input_dir / "datasets" / built.dataset_metadata["id"])
    working.mkdir(parents=True)
    monkeypatch.setenv(kaggle.INPUT_ENV, str(input_dir))
    monkeypatch.setenv(kaggle.WORKING_ENV, str(working))
    resolved = kaggle.resolve_kernel_params(data_dir="auto", work_dir="auto", model_dir="auto", backbone_path="auto",
                                            output_path="auto", ensemble_model_dirs="auto")
    params = {k: resolved[k] for k in ("data_dir", "work_dir", "backbone_path", "ensemble_model_dirs")}
    config = stage_config("submit", model_dir=resolved["model_dir"], **params)
    return run_submission(config=config, model_dir=resolved["model_dir"], out_path=resolved["output_path"]).submission


def _local(config, out: Path, **params) -> pd.DataFrame:
    return run_submission(config=config.replace(**params), out_path=out).submission


def _same(kernel: pd.DataFrame, local: pd.DataFrame) -> None:
    assert list(kernel.columns) == list(local.columns) and kernel["row_id"].tolist() == local["row_id"].tolist()
    labels = list(local.columns[1:])
    np.testing.assert_allclose(kernel[labels].to_numpy(float), local[labels].to_numpy(float), atol=1e-4)


@pytest.mark.slow
def test_an_mlp_and_sed_rank_ensemble_from_p_values_bundles_and_reproduces_locally(members, tiny_demo, tmp_path,
                                                                                 monkeypatch):
    mlp, sed = members["mlp"], members["sed"]
    sed_model = str(RunLayout.of(sed).model_dir)
    setup = {"ensemble_model_dirs": sed_model, "ensemble_blend": "rank", "ensemble_weights": "2,1"}
    built = _build(Path(mlp.work_dir), tmp_path / "build", monkeypatch, params=setup)
    assert built.marker["members"] == ["members/1"] and built.marker["families"] == ["mlp", "sed"]
    member = built.dataset_dir / "members" / "1"
    assert (member / "sed" / "model.onnx").is_file() and not (member / "sed" / "model.pt").exists()
    carried = load_config(built.dataset_dir / "model" / "config.json")
    assert carried.ensemble_blend == "rank" and carried.ensemble_weights == (2.0, 1.0)
    assert carried.ensemble_model_dirs == ("members/1",)  # no local path: the kernel finds its members in the bundle
    assert "onnxruntime" in built.marker["install_no_deps"]  # the SED member's runtime
    local = _local(mlp, tmp_path / "local.csv", ensemble_model_dirs=[sed_model], ensemble_blend="rank",
                   ensemble_weights=[2.0, 1.0])
    _same(kernel_here(built, tiny_demo, tmp_path / "kaggle", monkeypatch), local)


@pytest.mark.slow
def test_a_two_backbone_mean_ensemble_carries_each_members_backbone(members, tiny_demo, tmp_path, monkeypatch):
    mlp, perch = members["mlp"], members["perch"]
    perch_model = str(RunLayout.of(perch).model_dir)
    # the setup comes from the run's last 04_submit (its saved submission config), no -p needed
    local = _local(mlp, tmp_path / "local.csv", ensemble_model_dirs=[perch_model], ensemble_weights=[1.0, 3.0])
    assert json.loads(RunLayout.of(mlp).submission_config.read_text())["ensemble_model_dirs"] == [perch_model]
    built = _build(Path(mlp.work_dir), tmp_path / "build", monkeypatch)
    member = built.dataset_dir / "members" / "1"
    assert (member / "backbone" / "perch_v2_onnx" / "perch_v2.onnx").is_file()
    assert json.loads((member / "config.json").read_text())["backbone_path"] == "backbone/perch_v2_onnx"
    assert "onnxruntime" in built.marker["install_no_deps"]  # Perch v2 from a .onnx file
    _same(kernel_here(built, tiny_demo, tmp_path / "kaggle", monkeypatch), local)
    alone = _local(mlp, tmp_path / "alone.csv", ensemble_model_dirs=[])
    assert not np.allclose(alone.iloc[:, 1:].to_numpy(float), local.iloc[:, 1:].to_numpy(float), atol=1e-3)


@pytest.mark.slow
def test_kaggle_build_takes_submission_settings_only_and_every_member_must_be_trained(members, tmp_path, monkeypatch):
    mlp = members["mlp"]
    with pytest.raises(BirdclefError, match=r"submission settings only; \['epochs'\]"):
        _build(Path(mlp.work_dir), tmp_path / "a", monkeypatch, params={"epochs": "3"})
    (tmp_path / "empty").mkdir()
    with pytest.raises(BirdclefError, match="holds no trained model"):
        _build(Path(mlp.work_dir), tmp_path / "b", monkeypatch, params={"ensemble_model_dirs": str(tmp_path / "empty")})
    with pytest.raises(FileNotFoundError, match="ensemble member .* not found"):
        _build(Path(mlp.work_dir), tmp_path / "c", monkeypatch, params={"ensemble_model_dirs": str(tmp_path / "gone")})


def test_a_data_folder_not_named_after_a_competition_needs_competition(tmp_path):
    warnings: list[str] = []
    with pytest.raises(BirdclefError, match="pass --competition"):
        kaggle.resolve_competition(str(tmp_path / "my_data"), None, None, warnings)
    assert kaggle.resolve_competition(str(tmp_path / "my_data"), "birdclef-2026", None, warnings)[0] == "birdclef-2026"
    assert kaggle.resolve_competition(str(tmp_path / "birdclef-2026"), None, None, warnings)[0] == "birdclef-2026"


# ------------------------------------------------- the same bundles through papermill in Kaggle's image
from test_kaggle import IMAGE_TIMEOUT_S, kaggle_image, kernel_python  # noqa: E402,F401,F811  (fixtures)


@pytest.mark.slow
@pytest.mark.timeout(IMAGE_TIMEOUT_S)
@pytest.mark.parametrize("setup", ["mlp+sed rank", "two backbones mean"])
def test_an_ensemble_kernel_matches_the_local_submission_in_kaggles_image(setup, members, kernel_python, tiny_demo,
                                                                          tmp_path, monkeypatch):
    from test_kaggle import _submit_on_fake_kaggle

    mlp = members["mlp"]
    if setup == "mlp+sed rank":
        params = {"ensemble_model_dirs": [str(RunLayout.of(members["sed"]).model_dir)], "ensemble_blend": "rank"}
    else:
        params = {"ensemble_model_dirs": [str(RunLayout.of(members["perch"]).model_dir)], "ensemble_weights": [1.0, 3.0]}
    local = _local(mlp, tmp_path / "local.csv", **params)
    from test_kaggle import USER

    # from the run's saved submission config; the real wheels (the kernel installs them)
    built = kaggle.build_bundle(run_dir=Path(mlp.work_dir), out_dir=tmp_path / "build", user=USER,
                                competition=COMPETITION)
    assert len(built.marker["members"]) == 1
    kernel, _ = _submit_on_fake_kaggle(built, kernel_python, tiny_demo, tmp_path)
    _same(kernel, local)


@pytest.mark.slow
def test_kaggle_build_estimates_the_kernels_time_and_refuses_past_the_limit(members, tmp_path, monkeypatch):
    mlp = members["mlp"]
    _local(mlp, tmp_path / "local.csv", ensemble_model_dirs=[])  # measures this setup's speed
    speed_file = RunLayout.of(mlp).submission_speed
    speed = json.loads(speed_file.read_text())
    assert speed["n_files"] == 2 and speed["members"][0]["folder"] == str(RunLayout.of(mlp).model_dir.resolve())
    built = _build(Path(mlp.work_dir), tmp_path / "ok", monkeypatch)
    assert built.budget[-1]["kaggle_min"] == built.marker["kaggle_minutes_estimate"] > 0
    assert "command_seconds" not in speed  # measured in-process: the stage alone (the CLI adds its own)
    # ten minutes of set-up outside the stage: once per run, ×1.5 safety
    speed_file.write_text(json.dumps({**speed, "command_seconds": speed["seconds"] + 600}))
    try:
        slow_start = _build(Path(mlp.work_dir), tmp_path / "slow_start", monkeypatch)
    finally:
        speed_file.write_text(json.dumps(speed))
    assert slow_start.budget[-1]["kaggle_min"] == pytest.approx(built.budget[-1]["kaggle_min"] + 15, abs=0.11)
    slow = {**speed, "seconds_per_file": 40.0, "members": [{**speed["members"][0], "seconds_per_file": 40.0}]}
    speed_file.write_text(json.dumps(slow))  # 40 s per file here: ~600 min on Kaggle
    try:
        with pytest.raises(BirdclefError, match=r"estimated \d+ min .* over the 90-min limit.*--force"):
            _build(Path(mlp.work_dir), tmp_path / "slow", monkeypatch)
        assert not (tmp_path / "slow").exists()  # refused before any work
        forced = _build(Path(mlp.work_dir), tmp_path / "forced", monkeypatch, force=True)
        assert forced.marker["kaggle_minutes_estimate"] > 90 and any("over the 90-min" in w for w in forced.warnings)
        speed_file.write_text(json.dumps({**speed, "members": [{**speed["members"][0], "folder": "/elsewhere"}]}))
        unmeasured = _build(Path(mlp.work_dir), tmp_path / "other", monkeypatch)
        assert unmeasured.budget == () and any("no measured speed" in w for w in unmeasured.warnings)
    finally:
        speed_file.write_text(json.dumps(speed))
