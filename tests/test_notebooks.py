"""The notebooks: their parameters cells, and a smoke test of all of them, in order, through papermill."""
import ast
import json
import os
import re

import nbformat
import pandas as pd
import pytest

from birdclef.cli import main
from birdclef.config import EMBEDDING_FIELDS, FIELD_TYPES, previous_config_path
from birdclef.pipeline import NOTEBOOKS, notebook_parameters, notebooks_dir


@pytest.mark.parametrize("name, stage", [("02_preprocess", "preprocess"), ("03_train", "train"), ("04_submit", "submit")])
def test_stage_notebooks_inherit_every_config_field_and_pass_it_to_stage_config(name, stage):
    nb = nbformat.read(str(notebooks_dir() / f"{name}.ipynb"), as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    values = {t.id: node.value for node in ast.parse(cell.source).body for t in node.targets}
    fields = [k for k in notebook_parameters(notebooks_dir() / f"{name}.ipynb")
              if k in FIELD_TYPES and k not in ("data_dir", "work_dir")]
    hard_coded = [k for k in fields if not (isinstance(values[k], ast.Constant) and values[k].value is None)]
    assert not hard_coded, f"{name} sets {hard_coded} outright: None inherits the recipe / the previous stage"
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    call = re.search(rf'stage_config\("{stage}",(.*?)\)\n', code, re.DOTALL)
    assert call, f"{name} does not resolve its config with stage_config({stage!r}, ...)"
    passed = set(re.findall(r"\b(\w+)=\1\b", call.group(1)))
    assert set(fields) <= passed, f"{name} declares but does not pass {sorted(set(fields) - passed)}"


@pytest.mark.slow
def test_notebooks_from_another_folder_give_a_scored_submission_and_the_clis_config(tiny_demo, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = os.path.relpath(tiny_demo, tmp_path)  # relative paths, taken from here (the notebooks run in notebooks/)
    params = ["-p", "backbone=melstats", "-p", "epochs=5"]
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
    submit = json.loads((work / "notebooks" / "04_submit.ipynb").read_text())
    text = "".join("".join(o.get("text", "")) for c in submit["cells"] for o in c.get("outputs", []))
    assert "local score" in text
    # the CLI route, the same parameters: the same configs (each stage inherits the one before)
    where = ["--data-dir", data, "--work-dir", "cli"]
    for command in ("preprocess", "train"):
        assert main([command, *where, *params]) == 0
    for stage, compared in (("train", EMBEDDING_FIELDS), ("submit", FIELD_TYPES)):  # preprocess's, the model's
        nb_config, cli_config = (json.loads(previous_config_path(stage, work_dir=tmp_path / w).read_text())
                                 for w in ("nb", "cli"))
        assert nb_config.pop("work_dir") == str(work) and cli_config.pop("work_dir") == str(tmp_path / "cli")
        assert {k: nb_config[k] for k in compared if k in nb_config} == {k: cli_config[k] for k in compared if k in cli_config}
