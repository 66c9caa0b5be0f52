"""The post-processing chain: the registry of named steps (:func:`step`, :data:`STEPS`), what a step may
draw on (:class:`birdclef.contracts.Evidence`, re-exported here), and running a config's chain on a soundscape's window probabilities
(:func:`run_chain`, :func:`finish_windows`; an ensemble's per-member half, :func:`split_chain`).
The steps themselves are in :mod:`birdclef.postprocess.steps`."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from birdclef.contracts import Evidence, RankReference, Settings
from birdclef.data.competition import competition_paths, load_taxonomy

if TYPE_CHECKING:
    import pandas as pd


StepFunction = Callable[[np.ndarray, Settings, Evidence], np.ndarray]


@dataclass(frozen=True)
class Step:
    """One post-processing step: ``apply(prob (n_windows, n_classes), config, evidence)`` → a new
    array of the same shape; ``fields``: the Config fields it reads (its settings)."""

    name: str
    apply: StepFunction
    fields: tuple[str, ...]
    summary: str
    evidence: tuple[str, ...] = ()  # the Evidence fields it cannot do without (e.g. "taxonomy")


STEPS: dict[str, Step] = {}


def step(name: str, *, fields: tuple[str, ...], summary: str, evidence: tuple[str, ...] = ()
         ) -> Callable[[StepFunction], StepFunction]:
    """Register a post-processing step under ``name`` (decorator); ``evidence``: the
    :class:`Evidence` fields it needs filled."""
    def register(fn: StepFunction) -> StepFunction:
        if name in STEPS:
            raise ValueError(f"post-processing step {name!r} registered twice")
        STEPS[name] = Step(name, fn, fields, summary, tuple(evidence))
        return fn
    return register


def chain(names: Sequence[str]) -> list[Step]:
    """The registered steps ``names``, in that order (an unknown or repeated name is refused)."""
    unknown = [n for n in names if n not in STEPS]
    if unknown:
        raise ValueError(f"unknown post-processing step(s) {unknown}; known: {', '.join(map(repr, STEPS))}")
    if len(set(names)) != len(names):
        raise ValueError(f"a post-processing step is named twice in {list(names)}")
    return [STEPS[n] for n in names]


def needs(config: Settings, name: str) -> bool:
    """Whether a step of ``config.postprocess`` needs the :class:`Evidence` field ``name``."""
    return any(name in s.evidence for s in chain(config.postprocess))


def run_chain(prob: np.ndarray, config: Settings, evidence: Evidence = Evidence(),
              names: Sequence[str] | None = None) -> np.ndarray:
    """One soundscape's (n_windows, n_classes) probabilities through ``config.postprocess`` in order
    (``names``: only those steps, in that order)."""
    out = np.asarray(prob, np.float32)
    for s in chain(config.postprocess if names is None else names):
        out = s.apply(out, config, evidence)
    return out


MEMBER_STEPS = ("blend", "rank_blend")  # the steps an ensemble member runs alone, with its own backbone's scores


def split_chain(config: Settings) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``config.postprocess`` → (the steps each ensemble member runs alone: up to and including the
    last zero-shot blend (``blend``, ``rank_blend``), so each blends with its own backbone's scores;
    the steps run on the ensemble mean). Without a blend step every step runs on the mean. Run one
    after the other on one member, the two halves are the whole chain."""
    names = tuple(config.postprocess)
    cut = max((names.index(m) + 1 for m in MEMBER_STEPS if m in names), default=0)
    return names[:cut], names[cut:]


def chain_table(config: Settings) -> list[dict[str, str]]:
    """One row per step of ``config.postprocess``: order, step, settings (``field=value``), what it does."""
    return [{"order": str(i + 1), "step": s.name, "settings": ", ".join(f"{f}={getattr(config, f)!r}" for f in s.fields),
             "does": s.summary} for i, s in enumerate(chain(config.postprocess))]


def finish_windows(prob: np.ndarray, config: Settings, *, zero_shot: tuple[np.ndarray, np.ndarray] | None = None,
                   prior: np.ndarray | None = None, taxonomy: pd.DataFrame | None = None,
                   steps: Sequence[str] | None = None, rank_reference: RankReference | None = None,
                   context: object = None) -> np.ndarray:
    """The post-processing after the ensemble: the chain ``config.postprocess`` (default zero-shot
    blend → site / hour prior → smoothing, :func:`birdclef.postprocess.run_chain`). ``taxonomy``
    (one row per class, in column order) for the steps that read it; when such a step is in the
    chain and none is given, the taxonomy of ``config.data_dir``. ``steps``: only those of the chain
    (:func:`birdclef.postprocess.split_chain`). ``rank_reference``: every window of the set, for
    ``rank_blend``; ``context``: the trained context model, for ``context``."""
    if taxonomy is None and needs(config, "taxonomy"):
        taxonomy = data_taxonomy(config.data_dir)
    evidence = Evidence(zero_shot_logits=None if zero_shot is None else zero_shot[0],
                        zero_shot_weights=None if zero_shot is None else zero_shot[1], prior_shift=prior,
                        taxonomy=taxonomy, rank_reference=rank_reference, context=context)
    return run_chain(prob, config, evidence, steps)


@functools.lru_cache(maxsize=4)
def _taxonomy(path: str, mtime_ns: int) -> pd.DataFrame:
    return load_taxonomy(path)


def data_taxonomy(data_dir: str) -> pd.DataFrame:
    """The taxonomy of a competition folder, read once per file version."""
    path = competition_paths(data_dir).taxonomy
    return _taxonomy(str(path), path.stat().st_mtime_ns)
