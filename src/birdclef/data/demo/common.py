"""What every part of the demo dataset shares: the sample rate, the 5-s window, the labelling
rules, and seeded random streams (one per file, so files don't depend on generation order)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SAMPLE_RATE_HZ = 32_000
WINDOW_S = 5
LABEL_OVERLAP_S = 0.5  # a call marks a window when it overlaps it by at least this much
SPEECH_GUARD_S = 1.0   # no call within this distance of inserted speech, so a VAD can be checked
MIN_CALL_S = 1.0       # a call (bout) this long always overlaps some 5-s window by >= 0.5 s


def _rng(seed: int, *stream: int) -> np.random.Generator:
    """An independent generator per (seed, stream), so files don't depend on generation order."""
    return np.random.default_rng([seed, *stream])


@dataclass(frozen=True)
class Conditions:
    """How hard the recordings are: the ranges the renderer draws from (uniform, inclusive).

    ``"demo"`` (the default) keeps `make demo` quick and its calls clear; ``"field"`` is closer to
    what separates the real train audio from the real soundscapes: focal recordings with long
    silences between bouts and louder background species, soundscapes with more species at
    lower SNR, their calls heard from a distance (high frequencies absorbed, a reverberant tail).
    """

    call_gap_s: tuple[float, float] = (0.3, 2.5)          # silence between bouts in a focal recording
    secondary_drop_db: tuple[float, float] = (6.0, 12.0)  # a secondary species this much below the primary
    soundscape_snr_db: tuple[float, float] = (-5.0, 20.0)  # a soundscape call over its background
    species_per_soundscape: tuple[int, int] = (2, 6)
    distance: bool = False  # soundscape calls low-passed (first order, 4-10 kHz) with a 0.2-0.8 s reverberant tail

    def validate(self) -> None:
        ranges = {"call_gap_s": (0.0, 30.0), "secondary_drop_db": (-10.0, 40.0),
                  "soundscape_snr_db": (-30.0, 40.0), "species_per_soundscape": (1, 300)}
        for name, (lo, hi) in ranges.items():
            value = getattr(self, name)
            try:
                a, b = (float(v) for v in value)
            except (TypeError, ValueError):
                raise ValueError(f"conditions.{name} must be a (min, max) pair, got {value!r}") from None
            if not lo <= a <= b <= hi:
                raise ValueError(f"conditions.{name} must satisfy {lo} <= min <= max <= {hi}, got {value!r}")
        if any(float(v) != int(v) for v in self.species_per_soundscape):
            raise ValueError(f"conditions.species_per_soundscape must be integers, got {self.species_per_soundscape!r}")
        if not isinstance(self.distance, bool):
            raise ValueError(f"conditions.distance must be True or False, got {self.distance!r}")


CONDITIONS = {
    "demo": Conditions(),
    "field": Conditions(call_gap_s=(1.0, 6.0), secondary_drop_db=(0.0, 8.0), soundscape_snr_db=(-10.0, 10.0),
                        species_per_soundscape=(3, 8), distance=True),
}


def resolve_conditions(conditions: str | Conditions) -> Conditions:
    """A preset name (``CONDITIONS``) or a :class:`Conditions` → validated :class:`Conditions`."""
    if isinstance(conditions, str):
        if conditions not in CONDITIONS:
            raise ValueError(f"unknown conditions {conditions!r}; known: {', '.join(CONDITIONS)}")
        conditions = CONDITIONS[conditions]
    if not isinstance(conditions, Conditions):
        raise ValueError(f"conditions must be a preset name or a Conditions, got {type(conditions).__name__}")
    conditions.validate()
    return conditions
