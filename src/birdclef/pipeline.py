"""Run the notebooks headlessly, in order, with papermill."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

NOTEBOOKS = ("01_eda", "02_preprocess", "03_train", "04_submit", "05_report")


def notebooks_dir() -> Path:
    """The repository's notebooks/ folder (src layout: two levels above this package)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "notebooks" / f"{NOTEBOOKS[0]}.ipynb").exists():
            return parent / "notebooks"
    raise FileNotFoundError("notebooks/ not found beside the birdclef package; pass notebooks_dir=")


def run_notebooks(
    *, data_dir: str | Path, work_dir: str | Path, parameters: dict[str, Any] | None = None,
    notebooks: tuple[str, ...] = NOTEBOOKS, source_dir: str | Path | None = None, kernel_name: str | None = None,
) -> dict[str, float]:
    """Execute the notebooks into ``<work_dir>/notebooks/`` → {name: seconds}.

    Every notebook gets ``data_dir``, ``work_dir`` and the same extra ``parameters``
    (papermill warns about, and ignores, parameters a notebook does not declare).
    """
    import papermill as pm

    src = Path(source_dir) if source_dir else notebooks_dir()
    out = Path(work_dir) / "notebooks"
    out.mkdir(parents=True, exist_ok=True)
    params = {"data_dir": str(data_dir), "work_dir": str(work_dir), **(parameters or {})}
    timings = {}
    for name in notebooks:
        t0 = time.perf_counter()
        pm.execute_notebook(
            str(src / f"{name}.ipynb"), str(out / f"{name}.ipynb"), parameters=params,
            kernel_name=kernel_name, progress_bar=False, cwd=str(src),
        )
        timings[name] = time.perf_counter() - t0
        print(f"{name}: {timings[name]:.1f} s")
    return timings
