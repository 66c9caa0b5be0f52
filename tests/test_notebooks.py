"""The notebooks: their parameters cells, and a smoke test of all of them, in order, through papermill."""
import ast
import json
import os
import re
import subprocess
import sys

import nbformat
import pandas as pd
import papermill as pm
import pytest

from birdclef.cli import main
from birdclef.config import EMBEDDING_FIELDS, FIELD_TYPES, previous_config_path
from birdclef.pipeline import (NOTEBOOKS, PARAMETERS_HEADER, NotebookParameterError, notebook_parameters,
                               notebook_params, notebooks_dir)
from birdclef.workdir import RunLayout


def _parameters_cell(name):
    nb = nbformat.read(str(notebooks_dir() / f"{name}.ipynb"), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", []), f"{name}: the parameters cell is not the first code cell"
    return nb, code


@pytest.mark.parametrize("name, stage", [("02_preprocess", "preprocess"), ("03_train", "train"), ("04_submit", "submit")])
def test_stage_notebooks_inherit_every_config_field_and_pass_it_to_stage_config(name, stage):
    _, code = _parameters_cell(name)
    values = {t.id: node.value for node in ast.parse(code[0].source).body for t in node.targets}
    fields = [k for k in notebook_parameters(notebooks_dir() / f"{name}.ipynb")
              if k in FIELD_TYPES and k not in ("data_dir", "work_dir")]
    hard_coded = [k for k in fields if not (isinstance(values[k], ast.Constant) and values[k].value is None)]
    assert not hard_coded, f"{name} sets {hard_coded} outright: None inherits the recipe / the previous stage"
    # the cell after the parameters cell reads them all (papermill's too) and hands them to stage_config
    setup = code[1].source
    assert "params = notebook_params(globals())" in setup
    call = re.search(rf'stage_config\("{stage}",(.*?)\)\n', setup, re.DOTALL)
    assert call and re.search(r"\*\*(params\b|config_params\(params\))", call.group(1)), \
        f"{name} does not resolve its config with stage_config({stage!r}, **params)"


# the fields issue 13 found no notebook could set, and the notebooks of their stage
FIELDS_BY_NOTEBOOK = {
    "dropout": ("03_train",), "hidden_sizes": ("03_train",), "n_workers": ("02_preprocess", "03_train", "04_submit"),
    "hop_s": ("02_preprocess",), "rms_target_dbfs": ("02_preprocess",), "window_s": ("03_train",),
    "max_speech_fraction": ("03_train",), "runs_table": ("03_train", "04_submit", "05_report"),
}


@pytest.mark.parametrize("field", sorted(FIELDS_BY_NOTEBOOK))
def test_every_field_is_a_parameter_of_its_stages_notebooks(field):
    for name in FIELDS_BY_NOTEBOOK[field]:
        assert field in notebook_parameters(notebooks_dir() / f"{name}.ipynb"), f"{name} does not take {field}"


def test_every_config_field_is_a_parameter_of_some_notebook():
    declared = {k for name in NOTEBOOKS for k in notebook_parameters(notebooks_dir() / f"{name}.ipynb")}
    missing = sorted(set(FIELD_TYPES) - declared)
    assert not missing, f"no notebook's parameters cell takes {missing}: add each to the notebook of its stage"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebooks_are_committed_without_outputs_and_papermill_reads_every_parameter(name):
    path = notebooks_dir() / f"{name}.ipynb"
    nb, code = _parameters_cell(name)
    assert not [c for c in code if c.get("outputs") or c.get("execution_count")], f"{name} carries outputs"
    assert path.stat().st_size < 30_000
    assert code[0].source.startswith(PARAMETERS_HEADER)  # how notebook_params finds it in the kernel's history
    assert "notebook_params(globals())" in code[1].source
    # papermill reads a parameters cell line by line: a line it cannot parse is a parameter it calls unknown
    assert [p for p in pm.inspect_notebook(str(path))] == list(notebook_parameters(path))


def _history(*cells):
    return {"In": ["", *cells, "params = notebook_params(globals())"]}


def test_notebook_params_take_the_parameters_cell_and_refuse_unknown_injected_names():
    cell = '# parameters\ndata_dir = "d"\nepochs = None  # inherit\ndropout = None\nexamples = 3'
    injected = '# Parameters\nepochs = "5"\ndropout = 0.5\n'
    namespace = {**_history(cell, injected), "data_dir": "d", "epochs": "5", "dropout": 0.5, "examples": 3,
                 "np": object(), "_": None}
    assert notebook_params(namespace) == {"data_dir": "d", "epochs": 5, "dropout": 0.5, "examples": 3}
    namespace = {**_history(cell, injected + "epoch = 5\n"), "data_dir": "d", "epochs": 5, "epoch": 5}
    with pytest.raises(NotebookParameterError, match=r"unknown parameter\(s\) \['epoch'\]; this notebook takes: "
                                                     r"data_dir, epochs, dropout, examples$"):
        notebook_params(namespace)
    with pytest.raises(NotebookParameterError, match=r"^epochs='abc' is not valid: expected a whole number"):
        notebook_params({**_history(cell, '# Parameters\nepochs = "abc"'), "data_dir": "d", "epochs": "abc"})
    # rerun by hand in Jupyter: the last parameters cell run counts; a cell run after it is not papermill's
    rerun = {"In": ["", cell, injected, "x = 1", '# parameters\ndata_dir = "e"', "epoch = 5", "notebook_params(globals())"],
             "data_dir": "e", "epoch": 5}
    assert notebook_params(rerun) == {"data_dir": "e"}
    with pytest.raises(NotebookParameterError, match="no parameters cell has run"):
        notebook_params({"In": ["", "x = 1"]})


def test_one_line_in_the_notebook():
    err = NotebookParameterError("unknown parameter(s) ['epoch']; this notebook takes: epochs")
    assert err._render_traceback_() == ["NotebookParameterError: unknown parameter(s) ['epoch']; this notebook takes: epochs"]


def _papermill(name, out, *params, cwd):
    cmd = [sys.executable, "-m", "papermill", str(notebooks_dir() / f"{name}.ipynb"), str(out), "--no-progress-bar"]
    for key, value in params:
        cmd += ["-p", key, value]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize("params, message", [
    ((("epoch", "5"),), "NotebookParameterError: unknown parameter(s) ['epoch']; this notebook takes: data_dir, "),
    ((("epochs", "abc"),), "NotebookParameterError: epochs='abc' is not valid: expected a whole number, e.g. 30"),
])
def test_papermill_refuses_an_unknown_name_or_a_bad_value_in_one_line(tmp_path, params, message):
    run = _papermill("03_train", tmp_path / "out.ipynb", ("work_dir", str(tmp_path)), *params, cwd=notebooks_dir())
    assert run.returncode != 0
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith(message)
    executed = json.loads((tmp_path / "out.ipynb").read_text())
    errors = [o for c in executed["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert len(errors) == 1 and len(errors[0]["traceback"]) == 1  # one line, no traceback
    assert not (tmp_path / "model").exists()  # stopped before anything ran


@pytest.mark.slow
def test_papermill_sets_the_fields_of_its_stage(tiny_demo, tmp_path):
    params = [("data_dir", str(tiny_demo)), ("work_dir", str(tmp_path)), ("backbone", "melstats"), ("hop_s", "0.5"),
              ("rms_target_dbfs", "-25"), ("n_workers", "1"), ("max_recordings_per_class", "2"), ("vad", "false")]
    run = _papermill("02_preprocess", tmp_path / "02.ipynb", *params, cwd=notebooks_dir())
    assert run.returncode == 0, run.stderr[-3000:]
    saved = json.loads((tmp_path / "preprocess" / "config.json").read_text())
    assert (saved["hop_s"], saved["rms_target_dbfs"], saved["n_workers"], saved["vad"]) == (0.5, -25.0, 1, False)
    assert "Passed unknown parameter" not in run.stderr


@pytest.mark.slow
def test_notebooks_from_another_folder_give_a_scored_submission_and_the_clis_config(tiny_demo, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = os.path.relpath(tiny_demo, tmp_path)  # relative paths, taken from here (the notebooks run in notebooks/)
    params = ["-p", "backbone=melstats", "-p", "epochs=5", "-p", "dropout=0.2", "-p", "hidden_sizes=64,32",
              "-p", "max_speech_fraction=0.1", "-p", "val_soundscapes=2"]  # 2 validation minutes mixed, not 30
    assert main(["notebooks", "--data-dir", data, "--work-dir", "nb", *params, "-p", "vad_sample=4"]) == 0
    work = tmp_path / "nb"
    sub = pd.read_csv(work / "submission.csv", dtype={"row_id": str})
    labels = pd.read_csv(tiny_demo / "taxonomy.csv", dtype=str)["primary_label"].tolist()
    assert list(sub.columns) == ["row_id", *labels] and len(sub) == 2 * 4
    for name in NOTEBOOKS:
        nb = json.loads((work / "notebooks" / f"{name}.ipynb").read_text())
        outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
        assert not [o for o in outputs if o.get("output_type") == "error"], name
        images = [o for o in outputs if "image/png" in o.get("data", {})]
        assert images, f"{name} shows no plot"
        shown = "".join("".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/plain", "")) for o in outputs)
        assert "Empty DataFrame" not in shown and "Config(" not in shown, f"{name} shows an empty table or the raw config"
        assert (work / "notebooks" / f"{name}.ipynb").stat().st_size < 2_000_000, f"{name}: its figures weigh too much"
    submit = json.loads((work / "notebooks" / "04_submit.ipynb").read_text())
    text = "".join("".join(o.get("text", "")) for c in submit["cells"] for o in c.get("outputs", []))
    assert "local score" in text
    # the CLI route, the same parameters: the same configs (each stage inherits the one before)
    where = ["--data-dir", data, "--work-dir", "cli"]
    # the notebooks' embedding cache (not their preprocess folder: the CLI writes its own stage configs, compared
    # below): the recordings are not embedded twice, and a CLI embedding setting that differed would be refused
    RunLayout(tmp_path / "cli").link_caches(RunLayout(work), preprocess=False)
    for command in ("preprocess", "train"):
        assert main([command, *where, *params]) == 0
    for stage, compared in (("train", EMBEDDING_FIELDS), ("submit", FIELD_TYPES)):  # preprocess's, the model's
        nb_config, cli_config = (json.loads(previous_config_path(stage, work_dir=tmp_path / w).read_text())
                                 for w in ("nb", "cli"))
        assert nb_config.pop("work_dir") == str(work) and cli_config.pop("work_dir") == str(tmp_path / "cli")
        assert {k: nb_config[k] for k in compared if k in nb_config} == {k: cli_config[k] for k in compared if k in cli_config}
    assert (nb_config["dropout"], nb_config["hidden_sizes"], nb_config["max_speech_fraction"]) == (0.2, [64, 32], 0.1)


@pytest.mark.slow
def test_a_2026_folder_runs_every_notebook_to_a_submission_with_its_soundscape_views(tmp_path):
    """The BirdCLEF+ 2026 layout: labelled train soundscapes train and validate, 01 shows species by
    site and hour, 03 the held-out windows' per-class AUC, the submission has every taxonomy column."""
    from birdclef.data.demo import make_demo_dataset

    data = tmp_path / "data"
    make_demo_dataset(data, layout="2026", n_classes=5, recordings_per_class=2, recording_s=(3.0, 5.0),
                      n_train_soundscapes=4, n_test_soundscapes=1, soundscape_s=20.0, speech_fraction=0.0,
                      n_soundscape_only=1, seed=2)
    work = tmp_path / "nb"
    # the chain given once reaches 03_train, which fits the context model it ends with, and 04_submit, which runs it
    assert main(["notebooks", "--data-dir", str(data), "--work-dir", str(work), "-p", "backbone=melstats",
                 "-p", "epochs=3", "-p", "val_fraction=0.5", "-p", "vad_sample=2", "-p", "val_soundscapes=2",
                 "-p", "postprocess=blend,site_prior,smoothing,file_boost,context", "-p", "context_epochs=2"]) == 0
    labels = pd.read_csv(data / "taxonomy.csv", dtype=str)["primary_label"].tolist()
    sub = pd.read_csv(work / "submission.csv", dtype={"row_id": str})
    assert list(sub.columns) == ["row_id", *labels] and len(sub) == 4
    assert sub["row_id"].str.startswith("BC2026_Test_0001_").all()
    metrics = json.loads((work / "model" / "metrics.json").read_text())
    assert metrics["n_val_soundscape_windows"] > 0 and "val_combined_auc" in metrics
    assert (work / "model" / "soundscape_per_class_auc.csv").exists()
    assert metrics["n_val_soundscape_files"] >= 1 and metrics["n_context_labelled_files"] >= 1
    assert (work / "model" / "context.pt").exists()

    def shown(name):
        nb = json.loads((work / "notebooks" / f"{name}.ipynb").read_text())
        outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
        assert not [o for o in outputs if o.get("output_type") == "error"], name
        return "".join("".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/plain", "")) for o in outputs)

    assert "labelled 5-s windows in 4 train soundscapes" in shown("01_eda")
    train_text = shown("03_train")
    assert "no labelled train soundscapes" not in train_text and "val_soundscape_auc" in train_text
    assert "held-out labelled soundscapes, whole files" in train_text
    assert "context" in shown("04_submit")  # the chain it ran
    for name in ("02_preprocess", "05_report"):
        shown(name)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_each_notebook_sets_up_with_one_shared_import(name):
    _, code = _parameters_cell(name)
    setup = code[1].source
    assert setup.splitlines()[0].startswith("from birdclef.notebook import ")
    for repeated in ("pd.set_option", "%matplotlib", "TF_CPP_MIN_LOG_LEVEL", "import pandas", "import matplotlib"):
        assert repeated not in setup, f"{name} repeats {repeated!r}: birdclef.notebook does it"


def test_the_shared_setup_quiets_tensorflow_and_shows_tables_wide(monkeypatch):
    import importlib
    import os

    import pandas as pd

    import birdclef.notebook as nb

    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    pd.reset_option("display.max_columns")
    importlib.reload(nb)
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3"
    assert pd.get_option("display.max_columns") == 30 and pd.get_option("display.max_colwidth") is None
    assert {"np", "pd", "plt", "display", "Path"} <= set(nb.__all__)
