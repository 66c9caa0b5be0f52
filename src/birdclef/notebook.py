"""The notebooks' shared setup, as one import: ``from birdclef.notebook import Path, display, np, pd, plt``.

Importing it quiets TensorFlow's C++ log (before any backbone loads TensorFlow), shows tables wide
with paths in full, and, inside IPython (Jupyter, papermill, a Kaggle kernel), draws matplotlib
figures inline. It re-exports the names every notebook uses; each notebook then imports the
stage functions it calls.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

try:
    from IPython import get_ipython
    from IPython.display import display
except ImportError:  # plain Python (a test, a script): print what a notebook would display
    get_ipython = None  # type: ignore[assignment]

    def display(*objs: object, **_: object) -> None:
        for obj in objs:
            print(obj)

__all__ = ["Path", "display", "np", "pd", "plt", "warnings"]

TABLE_OPTIONS = {"display.max_columns": 30, "display.max_colwidth": None}  # paths in full


def setup() -> None:
    """Apply the display settings (run on import; again is harmless)."""
    for key, value in TABLE_OPTIONS.items():
        pd.set_option(key, value)
    shell = get_ipython() if get_ipython is not None else None
    if shell is not None:
        shell.run_line_magic("matplotlib", "inline")


setup()
