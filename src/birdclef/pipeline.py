"""Run the notebooks headlessly, in order, with papermill."""
from __future__ import annotations

import ast
import os
import time
from pathlib import Path
from typing import Any

from birdclef.errors import BirdclefError, ParameterError
from birdclef.workdir import RunLayout

NOTEBOOKS = ("01_eda", "02_preprocess", "03_train", "04_submit", "05_report")
# the kernel's own log: a warning at every start that its local TCP sockets are unencrypted, and an error
# when jupyter_client interrupts it on shutdown (its way to stop a busy kernel); cell errors still show
KERNEL_ARGUMENTS = ("--IPKernelApp.log_level=CRITICAL",)
# 04_submit's parameters (and `birdclef submit -p`) that name files or folders but are no Config field
STAGE_PATHS = ("model_dir", "test_dir", "output_path")


class NotebookError(BirdclefError):
    """A notebook stopped on an error (the executed copy shows where)."""


def notebooks_dir() -> Path:
    """The repository's notebooks/ folder (src layout: two levels above this package)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "notebooks" / f"{NOTEBOOKS[0]}.ipynb").exists():
            return parent / "notebooks"
    raise FileNotFoundError("notebooks/ not found beside the birdclef package; pass notebooks_dir=")


def notebook_parameters(path: str | Path) -> tuple[str, ...]:
    """The names a notebook's ``parameters`` cell assigns, in order (empty without one)."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    cell = next((c for c in nb.cells if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])), None)
    if cell is None:
        return ()
    try:
        return _assigned(cell.source)
    except SyntaxError:  # IPython syntax in the cell: papermill's own (line by line) reading
        import papermill as pm

        return tuple(pm.inspect_notebook(str(path)))


# The first line of every notebook's parameters cell, and of the cell papermill injects after it
PARAMETERS_HEADER = "# parameters"
INJECTED_HEADER = "# Parameters"


class NotebookParameterError(ParameterError):
    """A parameter given to a notebook is unknown or its value is refused; shown as one line in the notebook."""

    def _render_traceback_(self) -> list[str]:  # IPython shows this instead of a traceback
        return [f"{type(self).__name__}: {self}"]


def _assigned(source: str) -> tuple[str, ...]:
    names = []
    for node in ast.parse(source).body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        names += [t.id for t in targets if isinstance(t, ast.Name)]
    return tuple(dict.fromkeys(names))


def notebook_params(namespace: dict[str, Any]) -> dict[str, Any]:
    """The values a notebook runs with → {name: value} for every name its parameters cell assigns,
    Config fields converted to their type (:mod:`birdclef.params`; None is kept: "inherit").

    Call it as ``notebook_params(globals())`` in the cell after the parameters cell. papermill puts
    the values it is given in a cell of its own after the parameters cell and only warns about a
    name the parameters cell lacks (``papermill 03_train.ipynb out.ipynb -p epoch 5``); here such a
    name, or a value its Config field refuses, raises :class:`NotebookParameterError`, one line
    naming it and the names the notebook takes. Both cells are read from the kernel's history
    (IPython's ``In``): the last one run that starts with :data:`PARAMETERS_HEADER`, and papermill's
    right after it (:data:`INJECTED_HEADER`).
    """
    from birdclef.config import FIELD_TYPES
    from birdclef.params import convert_params

    history = [str(source) for source in namespace.get("In") or []]
    at = next((i for i in range(len(history) - 1, -1, -1) if history[i].lstrip().startswith(PARAMETERS_HEADER)), None)
    if at is None:
        raise NotebookParameterError(f"no parameters cell has run in this kernel (a cell starting {PARAMETERS_HEADER!r}); "
                                     "run it first")
    declared = _assigned(history[at])
    injected = (_assigned(history[at + 1]) if at + 1 < len(history) and history[at + 1].lstrip().startswith(INJECTED_HEADER)
                else ())
    unknown = [name for name in injected if name not in declared]
    if unknown:
        raise NotebookParameterError(f"unknown parameter(s) {unknown}; this notebook takes: {', '.join(declared)}")
    values = {name: namespace[name] for name in declared if name in namespace}
    try:  # None stays None: "inherit" (the recipe's, the previous stage's)
        return {**values, **convert_params({k: v for k, v in values.items() if v is not None}, FIELD_TYPES)}
    except ParameterError as err:
        raise NotebookParameterError(str(err)) from None


def config_params(params: dict[str, Any]) -> dict[str, Any]:
    """The :class:`~birdclef.config.Config` fields among a notebook's parameters (others, like
    04_submit's ``test_dir``, name no field)."""
    from birdclef.config import FIELD_TYPES

    return {k: v for k, v in params.items() if k in FIELD_TYPES}


def notebook_inputs(parameters: dict[str, Any], notebooks: dict[str, tuple[str, ...]]) -> dict[str, dict[str, Any]]:
    """{notebook: the parameters it declares} from ``parameters``, each a Config field converted to its type.

    ``notebooks`` maps each notebook to the names its parameters cell declares
    (:func:`notebook_parameters`). A name no notebook declares would be ignored (papermill only
    warns), so it raises :class:`ParameterError`, as does a value its Config field refuses.
    """
    from birdclef.config import FIELD_TYPES
    from birdclef.params import convert_params

    declared = {name for names in notebooks.values() for name in names}
    unknown = sorted(set(parameters) - declared)
    if unknown:
        fields = [name for name in unknown if name in FIELD_TYPES]
        note = (f" ({', '.join(fields)}: Config field(s) that none of these notebooks' parameters cells sets; "
                f"the stage commands take every field, e.g. birdclef train -p {fields[0]}=...)" if fields else "")
        raise ParameterError(f"unknown parameter(s) {unknown} for notebook(s) {', '.join(notebooks)}{note}; "
                             f"they take: {', '.join(sorted(declared))}")
    converted = {k: list(v) if isinstance(v, tuple) else v for k, v in convert_params(parameters, FIELD_TYPES).items()}
    return {nb: {k: v for k, v in converted.items() if k in names} for nb, names in notebooks.items()}


def absolute_paths(params: dict[str, Any], *, cwd: str | Path | None = None) -> dict[str, Any]:
    """``params`` with each relative path made absolute from ``cwd`` (default: the current folder).

    Path-valued names: the Config fields declared ``path`` (data_dir, work_dir, backbone_path,
    extra_data_dirs, ensemble_model_dirs, runs_table) and :data:`STAGE_PATHS`; their values already
    converted to the field's type (a list or tuple of paths, each made absolute, for
    extra_data_dirs and ensemble_model_dirs). ``backbone_path`` may be a TF-Hub
    handle: it is made absolute only where it names something that exists. The notebooks run with
    notebooks/ as their working folder, so the caller's relative paths are fixed here.
    """
    from birdclef.config import PATH_FIELDS

    base = Path(cwd) if cwd is not None else Path.cwd()

    def absolute(value: Any, name: str) -> Any:
        if isinstance(value, (list, tuple)):
            return type(value)(absolute(v, name) for v in value)
        if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
            return value  # None, "" (a default) or a number
        path = Path(os.fspath(value)).expanduser()
        if path.is_absolute() or (name == "backbone_path" and not (base / path).exists()):
            return str(path) if isinstance(value, str) else path
        out = Path(os.path.normpath(base / path))
        return str(out) if isinstance(value, str) else out

    return {k: absolute(v, k) if k in (*PATH_FIELDS, *STAGE_PATHS) else v for k, v in params.items()}


def run_notebooks(
    *, data_dir: str | Path, work_dir: str | Path, parameters: dict[str, Any] | None = None,
    notebooks: tuple[str, ...] = NOTEBOOKS, source_dir: str | Path | None = None, kernel_name: str | None = None,
) -> dict[str, float]:
    """Execute the notebooks into ``<work_dir>/notebooks/`` → {name: seconds}.

    Every notebook gets ``data_dir``, ``work_dir`` and those of the extra ``parameters`` its
    parameters cell declares; relative paths among them are taken from the caller's working
    folder (:func:`absolute_paths`), not notebooks/, where the notebooks run. Before anything runs, a parameter that none of ``notebooks``
    declares, or a value its Config field refuses, raises :class:`ParameterError`; a notebook
    that fails raises :class:`NotebookError` naming its executed copy.
    """
    import papermill as pm

    src = Path(source_dir) if source_dir else notebooks_dir()
    missing = [name for name in notebooks if not (src / f"{name}.ipynb").is_file()]
    if missing:
        raise ParameterError(f"unknown notebook(s) {missing}: not in {src}; known: {', '.join(NOTEBOOKS)}")
    inputs = notebook_inputs(dict(parameters or {}), {name: notebook_parameters(src / f"{name}.ipynb")
                                                      for name in notebooks})
    inputs = {name: absolute_paths(given) for name, given in inputs.items()}
    dirs = absolute_paths({"data_dir": str(data_dir), "work_dir": str(work_dir)})
    data_dir, work_dir = dirs["data_dir"], dirs["work_dir"]
    out = RunLayout.of(work_dir).notebooks
    out.mkdir(parents=True, exist_ok=True)
    timings = {}
    # papermill logs four INFO lines per notebook (input, output, working directory, kernel): the line
    # printed below says what ran and how long; the executed notebooks are in `out`
    import logging

    logging.getLogger("papermill").setLevel(logging.WARNING)
    # progress bars as text: a widget's state is not saved in a headless run (birdclef.progress)
    from birdclef.progress import ENV

    previous = os.environ.get(ENV)
    os.environ[ENV] = "text"  # the kernels inherit this process's environment
    try:
        for name in notebooks:
            t0 = time.perf_counter()
            try:
                pm.execute_notebook(
                    str(src / f"{name}.ipynb"), str(out / f"{name}.ipynb"),
                    parameters={"data_dir": str(data_dir), "work_dir": str(work_dir), **inputs[name]},
                    kernel_name=kernel_name, progress_bar=False, cwd=str(src),
                    extra_arguments=list(KERNEL_ARGUMENTS),  # a copy: nbclient appends to it
                )
            except pm.PapermillExecutionError as err:
                raise NotebookError(f"{name} failed in cell [{err.exec_count}]: {err.ename}: {err.evalue} "
                                    f"(the executed notebook: {out / f'{name}.ipynb'})") from err
            timings[name] = time.perf_counter() - t0
            print(f"{name}: {timings[name]:.1f} s → {out / f'{name}.ipynb'}")
    finally:
        if previous is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = previous
    return timings
