"""The command line: parameters as text, unknown names refused, expected errors as one line."""
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from birdclef.cli import _params, main
from birdclef.config import build_config
from birdclef.errors import ParameterError


def run(argv, capsys):
    """main(argv) → (exit status, stderr lines)."""
    status = main(argv)
    return status, capsys.readouterr().err.splitlines()


def one_error(argv, capsys, *fragments):
    status, err = run(argv, capsys)
    assert status == 1 and len(err) == 1 and err[0].startswith("birdclef: error: "), err
    for fragment in fragments:
        assert fragment in err[0], err[0]
    return err[0]


def test_p_values_are_text_that_build_config_types():
    params = _params(["denoise=false", "epochs= 3", "smoothing_kernel=0.25,0.5,0.25", "backbone_path=none",
                      "ensemble_model_dirs=runs/a/model", "run_name=2024", "vad_sample=4"])
    assert params["vad_sample"] == 4  # a notebook's own parameter: a Python literal
    params.pop("vad_sample")
    assert build_config(backbone="melstats", **params) == build_config(
        backbone="melstats", denoise=False, epochs=3, smoothing_kernel=(0.25, 0.5, 0.25), backbone_path=None,
        ensemble_model_dirs=("runs/a/model",), run_name="2024")


@pytest.mark.parametrize("param, fragments", [
    ("denoise=maybe", ["denoise='maybe' is not valid: expected true/false/yes/no/1/0, or none"]),
    ("epochs=abc", ["epochs='abc' is not valid: expected a whole number"]),
    ("epochs=2.5", ["epochs='2.5' is not valid"]),
    ("max_recordings_per_class=abc", ["max_recordings_per_class='abc'"]),
    ("smoothing_kernel=0.2;0.6", ["smoothing_kernel='0.2;0.6' is not valid: expected a list of numbers"]),
    ("epoch=5", ["unknown parameter(s) ['epoch']", "epochs"]),
    ("epochs", ["-p expects key=value, got 'epochs'"]),
    ("data_dir=elsewhere", ["data_dir is set with --data-dir"]),
])
@pytest.mark.parametrize("command", ["preprocess", "train", "submit", "notebooks"])
def test_a_bad_parameter_is_one_line_on_every_route(tmp_path, capsys, command, param, fragments):
    one_error([command, "--data-dir", str(tmp_path / "data"), "--work-dir", str(tmp_path / "run"), "-p", param],
              capsys, *fragments)
    assert not (tmp_path / "run").exists()  # refused before anything ran or was written


def test_a_setting_of_a_model_family_not_chosen_is_one_line_naming_it_and_the_fix(tmp_path, capsys):
    one_error(["train", "--data-dir", str(tmp_path / "data"), "--work-dir", str(tmp_path / "run"), "-p", "model_family=sed",
               "-p", "epochs=5"], capsys, "epochs=5 is a setting of model_family 'mlp' (section 'head'), which "
                                          "model_family='sed' does not read: use sed_epochs")
    assert not (tmp_path / "run").exists()


def test_the_notebooks_route_refuses_a_config_field_none_of_its_notebooks_sets(tmp_path, capsys):
    one_error(["notebooks", "--data-dir", str(tmp_path), "--work-dir", str(tmp_path / "run"), "--only", "01_eda",
               "02_preprocess", "-p", "dropout=0.5"], capsys,
              "unknown parameter(s) ['dropout'] for notebook(s) 01_eda, 02_preprocess", "birdclef train -p dropout=")
    one_error(["notebooks", "--data-dir", str(tmp_path), "--work-dir", str(tmp_path / "run"), "--only", "01_eda",
               "-p", "epochs=5"], capsys, "unknown parameter(s) ['epochs'] for notebook(s) 01_eda (epochs: Config field")
    one_error(["notebooks", "--data-dir", str(tmp_path), "--work-dir", str(tmp_path / "run"), "--only", "06_magic"],
              capsys, "unknown notebook(s) ['06_magic']")
    one_error(["demo", "--run-dir", str(tmp_path / "demo"), "-p", "epoch=5"], capsys, "unknown parameter(s) ['epoch']")
    assert not (tmp_path / "demo").exists()  # refused before the demo data is written


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(ParameterError, match="epochs='abc'"):
        main(["train", "--data-dir", str(tmp_path), "--work-dir", str(tmp_path), "-p", "epochs=abc", "--debug"])


def test_a_missing_data_folder_is_one_line(tmp_path, capsys):
    one_error(["preprocess", "--data-dir", str(tmp_path / "nowhere"), "--work-dir", str(tmp_path / "run"),
               "-p", "backbone=melstats"], capsys, "is not a BirdCLEF competition folder")


@pytest.fixture
def scored(tmp_path):
    rng = np.random.default_rng(0)
    ids = [f"s_{5 * (i + 1)}" for i in range(12)]
    truth = pd.DataFrame((rng.random((12, 3)) < 0.4).astype(int), columns=["a", "b", "c"]).assign(a=[0, 1] * 6)
    truth.insert(0, "row_id", ids)
    pred = truth.copy()
    pred[["a", "b", "c"]] = rng.random((12, 3))
    paths = {}
    for name, df in (("solution", truth), ("submission", pred), ("extra", pred.assign(d=0.5)),
                     ("missing", pred.drop(columns="b"))):
        paths[name] = tmp_path / f"{name}.csv"
        df.to_csv(paths[name], index=False)
    return paths


def test_score_prints_the_metric(scored, capsys):
    assert main(["score", str(scored["solution"]), str(scored["submission"])]) == 0
    assert 0 <= float(capsys.readouterr().out) <= 1


@pytest.mark.parametrize("first, second, fragment", [
    ("submission", "solution", "solution column 'a' has values other than 0 and 1"),
    ("solution", "extra", "submission has class column(s) the solution lacks: ['d']"),
    ("solution", "missing", "submission lacks class column(s) ['b']"),
    ("solution", "absent", "No such file or directory"),
])
def test_score_errors_are_one_line(scored, tmp_path, capsys, first, second, fragment):
    one_error(["score", str(scored.get(first, tmp_path / "absent.csv")), str(scored.get(second, tmp_path / "absent.csv"))],
              capsys, fragment)


def test_kaggle_resolve_without_its_inputs_fails(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("BIRDCLEF_KAGGLE_INPUT", raising=False)
    one_error(["kaggle", "resolve", "--root", str(tmp_path / "absent")], capsys, "is not a folder", "--root")
    status, err = run(["kaggle", "resolve", "--root", str(tmp_path)], capsys)
    assert status == 1 and err == [f"birdclef: error: not found under {tmp_path}: the competition data "
                                   "(taxonomy.csv and sample_submission.csv)"]


def test_the_installed_command_prints_one_line_and_fails(scored):
    # a fresh process: no logging, warning or traceback lines beside the error
    proc = subprocess.run([sys.executable, "-m", "birdclef.cli", "score", str(scored["submission"]), str(scored["solution"])],
                          capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "default"})
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.splitlines() == [proc.stderr.strip()] and proc.stderr.startswith("birdclef: error: solution column")


@pytest.mark.slow
def test_stage_commands_inherit_the_previous_stage_and_take_paths_from_where_they_run(tiny_demo, tmp_path, monkeypatch):
    import json

    here = tmp_path / "caller"
    here.mkdir()
    monkeypatch.chdir(here)
    data = os.path.relpath(tiny_demo, here)
    where = ["--data-dir", data, "--work-dir", "runs/real"]
    assert main(["preprocess", *where, "-p", "backbone=melstats", "-p", "loss=ce"]) == 0
    # train and submit name neither: both inherit them from preprocess/config.json, then model/config.json
    assert main(["train", *where, "-p", "epochs=2", "-p", "val_soundscapes=2"]) == 0  # 2 validation minutes, not 30
    assert main(["submit", *where, "-p", "output_path=out/sub.csv", "-p", "smoothing_kernel=1.0"]) == 0
    work = here / "runs" / "real"
    model = json.loads((work / "model" / "config.json").read_text())
    assert (model["backbone"], model["loss"], model["epochs"]) == ("melstats", "ce", 2)
    assert (model["data_dir"], model["work_dir"]) == (str(tiny_demo), str(work))  # saved absolute
    sub = pd.read_csv(here / "out" / "sub.csv", dtype={"row_id": str})
    assert len(sub) == 2 * 4 and not (work / "submission.csv").exists()


def test_the_submit_command_adds_its_whole_time_to_the_speed_file(tmp_path):
    import json

    from birdclef.cli import record_command_seconds

    path = tmp_path / "submission_speed.json"
    path.write_text(json.dumps({"seconds": 0.5, "n_files": 2}))
    record_command_seconds(path)
    speed = json.loads(path.read_text())
    assert speed["command_seconds"] >= 0.5 and speed["n_files"] == 2
    record_command_seconds(tmp_path / "none.json")  # no submission written: nothing to add
    assert not (tmp_path / "none.json").exists()
