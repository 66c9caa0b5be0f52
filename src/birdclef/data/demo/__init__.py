"""The embedded demo dataset: a small, seeded stand-in for the BirdCLEF 2025 competition data.

:func:`make_demo_dataset` writes the competition layout under a root folder::

    taxonomy.csv  train.csv  sample_submission.csv
    train_audio/<primary_label>/<stem>.ogg      focal recordings, 32 kHz mono Vorbis
    train_soundscapes/<site>_<date>_<time>.ogg  60-s soundscapes
    test_soundscapes/<site>_<date>_<time>.ogg
    train_soundscapes_labels.csv     (layout "2026") labelled train windows in the released format
    solution.csv                     hidden-style truth for test_soundscapes (one row per 5-s window)
    train_soundscapes_solution.csv   the same for train_soundscapes (for pseudo-labelling)
    speech.csv                       where real spoken words (espeak-ng) were inserted

Each species has a call shape from one family (harmonic tones, FM sweeps, trills, pulse
trains, insect buzzes, frog croaks) with its own parameters, jittered per call. Species come in
confusable pairs (same family, pitch 8-15 % apart), so a classifier does well but not perfectly.
Same seed → byte-identical CSVs and identical decoded audio.

The parts, in the order the data flows: :mod:`~birdclef.data.demo.species` (the taxonomy),
:mod:`~birdclef.data.demo.calls` (call shapes), :mod:`~birdclef.data.demo.noise` (backgrounds),
:mod:`~birdclef.data.demo.plan` (which files hold what), :mod:`~birdclef.data.demo.render` (mixing the
audio, window labels) and :mod:`~birdclef.data.demo.dataset` (:func:`make_demo_dataset`, the CSVs);
:mod:`~birdclef.data.demo.common` holds the shared constants.
"""
from __future__ import annotations

from birdclef.data.demo.common import (CONDITIONS, LABEL_OVERLAP_S, MIN_CALL_S, SAMPLE_RATE_HZ, SPEECH_GUARD_S,
                                       WINDOW_S, Conditions)
from birdclef.data.demo.dataset import (LAYOUTS, PRESETS, TAXONOMY_COLUMNS, TRAIN_COLUMNS, TRAIN_COLUMNS_2026,
                                        DemoSummary, make_demo_dataset)
from birdclef.data.demo.species import CLASS_NAME, FAMILIES

__all__ = [
    "CLASS_NAME", "CONDITIONS", "FAMILIES", "LABEL_OVERLAP_S", "LAYOUTS", "MIN_CALL_S", "PRESETS", "SAMPLE_RATE_HZ",
    "SPEECH_GUARD_S", "TAXONOMY_COLUMNS", "TRAIN_COLUMNS", "TRAIN_COLUMNS_2026", "WINDOW_S", "Conditions", "DemoSummary",
    "make_demo_dataset",
]
