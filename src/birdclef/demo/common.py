"""What every part of the demo dataset shares: the sample rate, the 5-s window, the labelling
rules, and seeded random streams (one per file, so files don't depend on generation order)."""
from __future__ import annotations

import numpy as np

SAMPLE_RATE_HZ = 32_000
WINDOW_S = 5
LABEL_OVERLAP_S = 0.5  # a call marks a window when it overlaps it by at least this much
SPEECH_GUARD_S = 1.0   # no call within this distance of inserted speech, so a VAD can be checked
MIN_CALL_S = 1.0       # a call (bout) this long always overlaps some 5-s window by >= 0.5 s


def _rng(seed: int, *stream: int) -> np.random.Generator:
    """An independent generator per (seed, stream), so files don't depend on generation order."""
    return np.random.default_rng([seed, *stream])
