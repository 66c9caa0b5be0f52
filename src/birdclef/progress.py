"""Progress bars: tqdm's notebook widget where a person watches, text where nobody will.

A widget's state lives in the browser, so a notebook executed headlessly (papermill, `birdclef
notebooks`) keeps only its first frame ("0%"). :func:`birdclef.pipeline.run_notebooks` sets
``BIRDCLEF_PROGRESS=text`` for the kernels it starts; the bars then write text lines, whose final
state the executed notebook shows.
"""
from __future__ import annotations

import os

ENV = "BIRDCLEF_PROGRESS"


def tqdm(*args, **kwargs):
    """``tqdm.auto.tqdm`` (a widget in Jupyter), or ``tqdm.std.tqdm`` when ``$BIRDCLEF_PROGRESS`` is "text"."""
    if os.environ.get(ENV) == "text":
        from tqdm.std import tqdm as bar
    else:
        from tqdm.auto import tqdm as bar
    return bar(*args, **kwargs)
