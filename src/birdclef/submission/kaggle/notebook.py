"""The kernel notebook: notebooks/04_submit with an install cell and Kaggle's ``"auto"`` parameters."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from birdclef.errors import BirdclefError
from birdclef.submission.kaggle.inputs import (BUNDLE_MARKER, DEFAULT_INPUT, DEFAULT_WORKING, INPUT_ENV, SEARCH_DEPTH,
                                               WORKING_ENV)

KERNEL_PARAMETERS = {
    "data_dir": ("auto", '"auto": the competition folder found under /kaggle/input'),
    "work_dir": ("auto", f'"auto": ${WORKING_ENV} or {DEFAULT_WORKING}'),
    "model_dir": ("auto", '"auto": model/ of the attached birdclef bundle dataset'),
    "ensemble_model_dirs": ("auto", '"auto": the bundle\'s other ensemble members (members/<i>), none for one model'),
    "backbone_path": ("auto", '"auto": the bundle\'s backbone file or model source; None: as in training'),
    "output_path": ("auto", '"auto": <work_dir>/submission.csv, what the competition reads'),
    "time_budget_min": (80, "minutes of prediction; then the rest go to the fastest member (Kaggle stops at 90)"),
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
from birdclef.submission.kaggle import resolve_kernel_params
_resolved = resolve_kernel_params(data_dir=data_dir, work_dir=work_dir, model_dir=model_dir,
                                  backbone_path=backbone_path, output_path=output_path,
                                  ensemble_model_dirs=ensemble_model_dirs)
data_dir, work_dir, model_dir, backbone_path, output_path, ensemble_model_dirs = (
    _resolved[k] for k in ("data_dir", "work_dir", "model_dir", "backbone_path", "output_path", "ensemble_model_dirs"))
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
