"""Notebook smoke test: the four notebooks, in order, through papermill, on the tiny demo."""
import json

import pandas as pd
import pytest

from birdclef.pipeline import NOTEBOOKS, run_notebooks


@pytest.mark.slow
def test_four_notebooks_produce_a_scored_submission(tiny_demo, tmp_path):
    timings = run_notebooks(data_dir=tiny_demo, work_dir=tmp_path,
                            parameters={"backbone": "melstats", "epochs": 5, "vad_sample": 4})
    assert list(timings) == list(NOTEBOOKS)
    sub = pd.read_csv(tmp_path / "submission.csv", dtype={"row_id": str})
    labels = pd.read_csv(tiny_demo / "taxonomy.csv", dtype=str)["primary_label"].tolist()
    assert list(sub.columns) == ["row_id", *labels] and len(sub) == 2 * 4
    for name in NOTEBOOKS:
        nb = json.loads((tmp_path / "notebooks" / f"{name}.ipynb").read_text())
        outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
        assert not [o for o in outputs if o.get("output_type") == "error"], name
        images = [o for o in outputs if "image/png" in o.get("data", {})]
        assert images, f"{name} shows no plot"
    submit = json.loads((tmp_path / "notebooks" / "04_submit.ipynb").read_text())
    text = "".join("".join(o.get("text", "")) for c in submit["cells"] for o in c.get("outputs", []))
    assert "local score" in text
