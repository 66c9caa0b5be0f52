"""Post-processing of one soundscape's window probabilities (rows: 5-s windows in time order).

Calls last longer than a window and species call in bouts, so a window's neighbours carry
evidence about it: :func:`smooth_windows` mixes them in. :func:`blend_logits` mixes in the
backbone's own species logits where a class maps to one; :func:`average` is the ensemble.
Every function returns a new array.

After the ensemble, a soundscape's probabilities go through the post-processing chain: the
ordered steps named by ``Config.postprocess`` (default ``("blend", "site_prior", "smoothing")``),
each a :class:`Step` in :data:`STEPS` — one function of (probabilities, config, :class:`Evidence`)
and the Config fields it reads. :func:`run_chain` runs them; :func:`chain_table` says what a
config's chain does. A new step is one function registered with :func:`step` (in :mod:`birdclef.postprocess.steps`,
the chain's machinery in :mod:`birdclef.postprocess.registry`).

Steps that are off unless named in ``Config.postprocess`` (the tricks of the BirdCLEF top
teams): ``file_boost`` (each window raised toward the file's maximum of its class),
``taxon_smoothing`` (temporal smoothing with a kernel per taxonomy ``class_name``: frogs and
insects call longer than birds) and ``genus_smoothing`` (each class takes a share of the
evidence of its genus- and family-mates). The last two read :attr:`Evidence.taxonomy`.
``rank_blend`` (the 1st place of 2026: per mapped class, the weighted mean of the head's and the
backbone's ranks over every window of the submission, :attr:`Evidence.rank_reference`) runs per
ensemble member beside ``blend``; ``context`` (a small sequence model over a file's windows,
:mod:`birdclef.models.context`, :attr:`Evidence.context`) is meant as the last step.
"""
from __future__ import annotations

from birdclef.postprocess.registry import (MEMBER_STEPS, STEPS, Evidence, RankReference, Step, StepFunction, chain,
                                           chain_table, data_taxonomy, finish_windows, needs, run_chain, split_chain,
                                           step)
from birdclef.postprocess.steps import (
                                        average,
                                        blend_logits,
                                        check_kernel,
                                        file_boost,
                                        genus_smoothing,
                                        parse_taxon_kernels,
                                        rank_average,
                                        rank_blend,
                                        rank_reference,
                                        smooth_windows,  # registers the steps
                                        taxon_smoothing,
                                        zero_shot_weights,
)

__all__ = ["Evidence", "MEMBER_STEPS", "RankReference", "STEPS", "Step", "StepFunction", "average",
           "blend_logits", "chain", "chain_table", "check_kernel", "data_taxonomy", "file_boost",
           "finish_windows", "genus_smoothing", "needs", "parse_taxon_kernels", "rank_average", "rank_blend",
           "rank_reference", "run_chain", "smooth_windows", "split_chain", "step", "taxon_smoothing",
           "zero_shot_weights"]
