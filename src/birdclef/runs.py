"""The runs table: one row per training or submission, with its resolved config and metrics.

Every :func:`birdclef.models.train.run_training` and :func:`birdclef.submission.submit.run_submission`
appends a row to ``config.runs_table`` (default ``<work_dir>/runs.csv``), so runs made under
different settings can be compared side by side (notebook 05_report, :func:`summarise`).
"""
from __future__ import annotations

import hashlib
import json
import time
import uuid
from pathlib import Path

import pandas as pd

from birdclef.config import Config
from birdclef.io import write_csv
from birdclef.workdir import RUNS_FILE, RunLayout


def runs_table_path(config: Config) -> Path:
    return Path(config.runs_table) if config.runs_table else RunLayout.of(config).runs


def _cell(value: object) -> object:
    return json.dumps(value) if isinstance(value, (list, tuple, dict)) else value


def record_run(config: Config, *, stage: str, metrics: dict) -> Path:
    """Append one row (run_id, time, stage, run_name, every config field, every metric) → the table's path.

    ``run_name`` falls back to the recipe name. The table is rewritten atomically, so a reader
    never sees half a row; columns a new row brings are added (empty in older rows).
    """
    cfg = config.to_dict()
    blob = json.dumps(cfg, sort_keys=True, default=str).encode()
    row = {"run_id": f"{stage}-{time.strftime('%Y%m%d-%H%M%S')}-{hashlib.sha1(blob).hexdigest()[:8]}-{uuid.uuid4().hex[:4]}",
           "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "stage": stage, **{k: _cell(v) for k, v in cfg.items()},
           **{k: _cell(v) for k, v in metrics.items()}}
    row["run_name"] = config.run_name or config.recipe
    path = runs_table_path(config)
    table = pd.concat([load_runs(path), pd.DataFrame([row])], ignore_index=True)
    write_csv(table, path)
    return path


def load_runs(path: str | Path) -> pd.DataFrame:
    """The runs table (a file, or a work_dir holding runs.csv); empty when there is none yet."""
    path = Path(path)
    if path.is_dir():
        path = path / RUNS_FILE
    if not path.exists():
        return pd.DataFrame(columns=["run_id", "time", "stage", "run_name"])
    return pd.read_csv(path, keep_default_na=True, dtype={"run_name": str})


def summarise(runs: pd.DataFrame, metrics: list[str], *, by: str = "run_name") -> pd.DataFrame:
    """Mean, standard deviation and count of each metric per ``by`` group (rows: groups, in first-seen order)."""
    present = [m for m in metrics if m in runs.columns]
    if not present or runs.empty:
        return pd.DataFrame()
    grouped = runs.groupby(by, sort=False)[present].agg(["mean", "std", "count"])
    return grouped
