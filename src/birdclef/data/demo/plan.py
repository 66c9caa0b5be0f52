"""Planning: which recordings and soundscapes the dataset holds, their train.csv fields and speech texts.

Nothing here renders audio; every choice comes from a seeded stream, so the plan (and the CSVs)
depend only on the arguments.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from birdclef.data.demo.common import _rng
from birdclef.data.demo.species import _Species

_AUTHORS = ["Ana Morales", "Juan Pablo Ríos", "Laura Gómez", "Carlos Quintero", "Sofía Herrera",
            "Diego Castaño", "Marta Ospina", "Andrés Vélez", "Isabel Cárdenas", "Tomás Restrepo"]
_LICENSES = ["cc-by-nc-sa 4.0", "cc-by-nc 4.0", "cc-by 4.0", "cc-by-nc-nd 4.0", "cc-by-sa 4.0"]
_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December"]
_PLACES = ["El Silencio reserve", "Puerto Triunfo", "the Magdalena valley", "Rio Claro",
           "the lower forest trail"]


@dataclass(frozen=True)
class _Recording:
    index: int
    species: _Species
    stem: str
    duration_s: float
    secondary: tuple[_Species, ...]
    speech_text: str | None
    speech_at_start: bool
    row: dict = field(hash=False)  # the train.csv fields that don't depend on the audio

    @property
    def filename(self) -> str:
        return f"{self.species.label}/{self.stem}.ogg"


@dataclass(frozen=True)
class _Soundscape:
    index: int
    stem: str
    split: str  # "train" or "test"
    speech_text: str | None
    extra_species: tuple[int, ...] = ()  # taxonomy indices always rendered here (soundscape-only classes)


def _speech_text(rng: np.random.Generator, common_name: str) -> str:
    place = rng.choice(_PLACES)
    month, day, year = rng.choice(_MONTHS), int(rng.integers(1, 29)), int(rng.integers(2019, 2025))
    name = common_name.strip()
    templates = [
        f"{name}. Recorded at {place}, {month} {day}, {year}.",
        f"Recording of {name}, near {place}. {month} {day}.",
        f"{place}. {month} {day}, {year}. This is the {name}.",
    ]
    return templates[int(rng.integers(len(templates)))]


def _plan_recordings(taxonomy: list[_Species], per_class: int, recording_s: tuple[float, float],
                     speech_fraction: float, seed: int) -> list[_Recording]:
    rng = _rng(seed, 2)
    n_total = len(taxonomy) * per_class
    with_speech = set(rng.choice(n_total, int(round(speech_fraction * n_total)), replace=False).tolist())
    used_ids: set[int] = set()
    recordings = []
    for index in range(n_total):
        sp = taxonomy[index // per_class]
        collection = str(rng.choice(["XC", "iNat", "CSA"], p=[0.6, 0.3, 0.1]))
        while (number := int(rng.integers(100_000, 1_000_000))) in used_ids:
            pass
        used_ids.add(number)
        others = [o for o in taxonomy if o.label != sp.label]
        n_secondary = int(rng.choice([0, 1, 2], p=[0.7, 0.2, 0.1]))
        secondary = tuple(others[j] for j in sorted(rng.choice(len(others), min(n_secondary, len(others)),
                                                               replace=False)))
        if collection == "XC":
            rating = float(rng.choice([0.0, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0],
                                      p=[0.05, 0.05, 0.05, 0.1, 0.15, 0.2, 0.2, 0.2]))
            url = f"https://xeno-canto.org/{number}"
            kind = str(rng.choice(["['song']", "['call']", "['call', 'song']", "['flight call']"]))
        else:
            rating = 0.0
            url = (f"https://static.inaturalist.org/sounds/{number}.wav" if collection == "iNat"
                   else f"https://colecoes.humboldt.org.co/rec/sonidos/IAvH-CSA-{number}")
            kind = "['']"
        no_site = rng.random() < 0.05  # some real rows have no coordinates
        row = {
            "secondary_labels": str([o.label for o in secondary]),
            "type": kind,
            "collection": collection,
            "rating": rating,
            "url": url,
            "latitude": np.nan if no_site else round(float(rng.uniform(1.0, 11.5)), 4),
            "longitude": np.nan if no_site else round(float(rng.uniform(-78.5, -70.0)), 4),
            "author": str(rng.choice(_AUTHORS)),
            "license": str(rng.choice(_LICENSES)),
        }
        speech_text = _speech_text(rng, sp.common_name) if index in with_speech else None
        recordings.append(_Recording(
            index=index, species=sp, stem=f"{collection}{number}",
            duration_s=round(float(rng.uniform(*recording_s)), 2), secondary=secondary,
            speech_text=speech_text, speech_at_start=bool(rng.random() < 0.7), row=row,
        ))
    return recordings


def _plan_soundscapes(n_train: int, n_test: int, speech_fraction: float, seed: int, layout: str = "2025",
                      extra_species: tuple[int, ...] = ()) -> list[_Soundscape]:
    """Soundscapes named ``<site>_<YYYYMMDD>_<HHMMSS>`` (2025: sites H01-H09) or
    ``BC2026_{Train,Test}_<NNNN>_<site>_<YYYYMMDD>_<HHMMSS>`` (2026: sites S01-S09); each class of
    ``extra_species`` is put in one train and one test soundscape (round robin)."""
    rng = _rng(seed, 3)
    stems: list[str] = []
    while len(stems) < n_train + n_test:
        site = f"{'S' if layout == '2026' else 'H'}{int(rng.integers(1, 10)):02d}"
        date = np.datetime64("2023-01-01") + int(rng.integers(0, 730))
        time = f"{int(rng.integers(0, 24)):02d}{int(rng.integers(0, 6)) * 10:02d}00"
        stem = f"{site}_{str(date).replace('-', '')}_{time}"
        if stem not in stems:
            stems.append(stem)
    train, test = sorted(stems[:n_train]), sorted(stems[n_train:])
    if layout == "2026":
        train = [f"BC2026_Train_{k + 1:04d}_{stem}" for k, stem in enumerate(train)]
        test = [f"BC2026_Test_{k + 1:04d}_{stem}" for k, stem in enumerate(test)]
    # A couple of soundscapes hold a few seconds of a recordist talking.
    talkers = set()
    if speech_fraction > 0:
        if train:
            talkers.add(("train", int(rng.integers(len(train)))))
        talkers.add(("test", int(rng.integers(len(test)))))
    lines = ["Point four. Starting the morning count.", "Recorder three, checking the battery now.",
             "Dawn survey, site two. Light rain."]
    out = []
    for split, names in (("train", train), ("test", test)):
        for i, stem in enumerate(names):
            text = str(rng.choice(lines)) if (split, i) in talkers else None
            extra = tuple(c for k, c in enumerate(extra_species) if k % len(names) == i)
            out.append(_Soundscape(len(out), stem, split, text, extra))
    return out
