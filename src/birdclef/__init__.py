"""birdclef: BirdCLEF competition data → embeddings → head → submission.csv, on a CPU, offline.

``birdclef.score`` is the competition metric; ``birdclef.build_config`` resolves parameters.
Both are imported lazily so ``import birdclef`` stays light (subprocesses import it often).
"""
from __future__ import annotations

import time as _time
from typing import Any

# when this process imported birdclef: a submission's speed file counts its whole command from here
# (process start to this line is ~0.1 s; imports and set-up after it are what a user waits for too)
IMPORTED_AT = _time.perf_counter()
__version__ = "0.1.0"
__all__ = ["Config", "build_config", "score", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("Config", "build_config"):
        from birdclef import config

        return getattr(config, name)
    if name == "score":
        from birdclef.data.metric import score

        return score
    raise AttributeError(f"module 'birdclef' has no attribute {name!r}")
