"""The embedded demo dataset: a small, seeded stand-in for the BirdCLEF 2025 competition data.

:func:`make_demo_dataset` writes the competition layout under a root folder::

    taxonomy.csv  train.csv  sample_submission.csv
    train_audio/<primary_label>/<stem>.ogg      focal recordings, 32 kHz mono Vorbis
    train_soundscapes/<site>_<date>_<time>.ogg  60-s soundscapes
    test_soundscapes/<site>_<date>_<time>.ogg
    solution.csv                     hidden-style truth for test_soundscapes (one row per 5-s window)
    train_soundscapes_solution.csv   the same for train_soundscapes (for pseudo-labelling)
    speech.csv                       where real spoken words (espeak-ng) were inserted

Each species has a call shape from one family (harmonic tones, FM sweeps, trills, pulse
trains, insect buzzes, frog croaks) with its own parameters, jittered per call. Species come in
confusable pairs (same family, pitch 8-15 % apart), so a classifier does well but not perfectly.
Same seed → byte-identical CSVs and identical decoded audio.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
from scipy.signal import butter, sosfilt

from birdclef.errors import BirdclefError
from birdclef.tts import synthesize_batch

SAMPLE_RATE_HZ = 32_000
WINDOW_S = 5
LABEL_OVERLAP_S = 0.5  # a call marks a window when it overlaps it by at least this much
SPEECH_GUARD_S = 1.0   # no call within this distance of inserted speech, so a VAD can be checked
MIN_CALL_S = 1.0       # a call (bout) this long always overlaps some 5-s window by >= 0.5 s

TAXONOMY_COLUMNS = ["primary_label", "inat_taxon_id", "scientific_name", "common_name", "class_name"]
TRAIN_COLUMNS = [
    "primary_label", "secondary_labels", "type", "filename", "collection", "rating", "url",
    "latitude", "longitude", "scientific_name", "common_name", "author", "license",
]
# Pairs of consecutive classes share a family; the order puts Amphibia (numeric labels) in the
# second pair so that three classes already mix eBird codes and iNat ids.
FAMILIES = ["sweep", "croak", "buzz", "tone", "trill", "pulse"]
CLASS_NAME = {"sweep": "Aves", "tone": "Aves", "trill": "Aves",
              "croak": "Amphibia", "buzz": "Insecta", "pulse": "Mammalia"}

_BIRD_ADJ = ["Sooty", "Rufous", "Pale", "Olive", "Crested", "Spotted", "Banded", "Lesser", "Greater",
             "Scaly", "Dusky", "Golden", "Ashy", "Striped", "Tawny", "Russet", "Slaty", "Buffy",
             "Velvet", "Plain", "Barred", "Speckled", "Cinereous", "Chestnut", "Bronzy"]
_BIRD_GROUP = ["Warbler", "Tanager", "Wren", "Antbird", "Flycatcher", "Tinamou", "Woodcreeper",
               "Thrush", "Parakeet", "Hummingbird", "Manakin", "Seedeater", "Tyrannulet", "Saltator",
               "Foliage-gleaner", "Puffbird", "Becard", "Euphonia"]
_OTHER_ADJ = ["Rosy", "Marbled", "Emerald", "Humming", "Dwarf", "Giant", "Painted", "Silent",
              "Copper", "Mossy", "Brindled", "Smoky", "Jade", "Ruddy", "Hooded", "Pygmy"]
_OTHER_GROUP = {"croak": ["Rain Frog", "Tree Frog", "Toad", "Chirping Frog", "Glass Frog"],
                "buzz": ["Katydid", "Cicada", "Cricket", "Cone-head"],
                "pulse": ["Titi Monkey", "Night Monkey", "Sac-winged Bat", "Tamarin"]}
_GENERA = {"Aves": ["Myiobius", "Basileuterus", "Thamnophilus", "Tangara", "Pheugopedius",
                    "Crypturellus", "Xiphorhynchus", "Euphonia", "Sporophila", "Pachyramphus"],
           "Amphibia": ["Pristimantis", "Boana", "Rhinella", "Dendropsophus", "Leptodactylus"],
           "Insecta": ["Copiphora", "Fidicina", "Gryllus", "Neoconocephalus", "Quesada"],
           "Mammalia": ["Plecturocebus", "Aotus", "Saccopteryx", "Saguinus"]}
_EPITHETS = ["aurivox", "sylvestris", "pallidus", "fuscicauda", "nigrifrons", "rufiventris",
             "olivaceus", "minor", "silentii", "striatus", "magdalenae", "cinereus", "vociferans",
             "montanus", "obscurus", "ornatus", "gracilis", "tenuirostris", "maculatus", "luteus"]
_AUTHORS = ["Ana Morales", "Juan Pablo Ríos", "Laura Gómez", "Carlos Quintero", "Sofía Herrera",
            "Diego Castaño", "Marta Ospina", "Andrés Vélez", "Isabel Cárdenas", "Tomás Restrepo"]
_LICENSES = ["cc-by-nc-sa 4.0", "cc-by-nc 4.0", "cc-by 4.0", "cc-by-nc-nd 4.0", "cc-by-sa 4.0"]
_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December"]
_PLACES = ["El Silencio reserve", "Puerto Triunfo", "the Magdalena valley", "Rio Claro",
           "the lower forest trail"]


@dataclass(frozen=True)
class DemoSummary:
    """What :func:`make_demo_dataset` wrote; `total_audio_s` sums every audio file, in seconds."""

    root: Path
    n_classes: int
    n_recordings: int
    n_train_soundscapes: int
    n_test_soundscapes: int
    total_audio_s: float


@dataclass(frozen=True)
class _Species:
    label: str
    inat_taxon_id: int
    scientific_name: str
    common_name: str
    class_name: str
    family: str
    params: dict = field(hash=False)


def _rng(seed: int, *stream: int) -> np.random.Generator:
    """An independent generator per (seed, stream), so files don't depend on generation order."""
    return np.random.default_rng([seed, *stream])


# ----------------------------------------------------------------------------------------- taxonomy

def _base_params(family: str, rng: np.random.Generator) -> dict:
    u = rng.uniform
    if family == "sweep":
        return {"f0_hz": u(1500, 4500), "ratio": u(1.5, 2.3) ** rng.choice([-1, 1]),
                "note_s": u(0.12, 0.35), "gap_s": u(0.08, 0.25), "bout_s": u(1.0, 2.5), "h2": u(0, 0.3)}
    if family == "tone":
        return {"f0_hz": u(2000, 6000), "note_s": u(0.15, 0.4), "gap_s": u(0.1, 0.3),
                "step": u(-0.08, 0.08), "vib_hz": u(0, 12), "vib_depth": u(0, 0.02),
                "h2": u(0, 0.5), "h3": u(0, 0.25), "bout_s": u(1.0, 2.5)}
    if family == "trill":
        return {"f0_hz": u(2500, 7000), "rate_hz": u(12, 30), "sharp": u(1, 3),
                "glide": u(-0.2, 0.1), "bout_s": u(1.0, 2.5)}
    if family == "pulse":
        return {"fc_hz": u(1000, 4000), "bw": u(0.3, 0.6), "rate_hz": u(3, 10),
                "pulse_s": u(0.01, 0.03), "bout_s": u(1.2, 3.0)}
    if family == "buzz":
        return {"fc_hz": u(4000, 9500), "bw": u(0.08, 0.25), "am_hz": u(30, 150),
                "am_depth": u(0.5, 1.0), "chirp_hz": rng.choice([0.0, u(2, 5)]), "bout_s": u(1.2, 3.0)}
    if family == "croak":
        return {"f0_hz": u(300, 800), "formant_hz": u(900, 2500), "am_hz": u(15, 50),
                "note_s": u(0.15, 0.45), "gap_s": u(0.1, 0.3), "bout_s": u(1.0, 2.5)}
    raise ValueError(f"unknown call family {family!r}; known: {FAMILIES}")


def _partner_params(params: dict, rng: np.random.Generator) -> dict:
    """A confusable sibling: same family, pitch 8-15 % away, timing within ±20 %."""
    shift = np.exp(rng.choice([-1, 1]) * rng.uniform(0.08, 0.15))
    out = {}
    for key, value in params.items():
        if key in ("f0_hz", "fc_hz", "formant_hz"):
            out[key] = float(np.clip(value * shift, 300.0, 10_000.0))
        elif key.endswith("_s") or key in ("rate_hz", "am_hz", "vib_hz", "chirp_hz"):
            out[key] = float(value * np.exp(rng.uniform(-0.2, 0.2)))
        else:
            out[key] = float(value)
    return out


def _make_taxonomy(n_classes: int, seed: int) -> list[_Species]:
    rng = _rng(seed, 1)
    bird_names = [f"{a} {g}" for a in _BIRD_ADJ for g in _BIRD_GROUP]
    bird_order = rng.permutation(len(bird_names))
    used_names: set[str] = set()
    used_labels: set[str] = set()
    used_ids: set[int] = set()
    species: list[_Species] = []
    n_birds = 0
    for i in range(n_classes):
        family = FAMILIES[(i // 2) % len(FAMILIES)]
        if i % 2 == 1 and species[-1].family == family:
            params = _partner_params(species[-1].params, rng)
        else:
            params = {k: float(v) for k, v in _base_params(family, rng).items()}
        class_name = CLASS_NAME[family]
        while True:
            taxon_id = int(rng.integers(20_000, 1_500_000))
            if taxon_id not in used_ids and str(taxon_id) not in used_labels:
                used_ids.add(taxon_id)
                break
        if class_name == "Aves":
            common = bird_names[bird_order[n_birds % len(bird_names)]]
            n_birds += 1
            adj, group = common.lower().split(" ", 1)
            stem = adj[:3] + group.replace("-", "")[:3]
            label = next(f"{stem}{k}" for k in range(1, 100) if f"{stem}{k}" not in used_labels)
        else:
            while True:
                common = f"{rng.choice(_OTHER_ADJ)} {rng.choice(_OTHER_GROUP[family])}"
                if common not in used_names:
                    break
            label = str(taxon_id)
        while (scientific := f"{rng.choice(_GENERA[class_name])} {rng.choice(_EPITHETS)}") in used_names:
            pass
        used_names.update((common, scientific))
        used_labels.add(label)
        species.append(_Species(label, taxon_id, scientific, common, class_name, family, params))
    # The real taxonomy.csv has names with a trailing space; keep one so readers must cope.
    k = next((j for j, s in enumerate(species) if s.class_name != "Aves"), len(species) - 1)
    s = species[k]
    species[k] = _Species(s.label, s.inat_taxon_id, s.scientific_name + " ", s.common_name + " ",
                          s.class_name, s.family, s.params)
    return sorted(species, key=lambda sp: sp.label)


# -------------------------------------------------------------------------------------------- calls

def _fade(n: int, fade_s: float = 0.01) -> np.ndarray:
    """(n,) envelope with raised-cosine ramps at both ends, so notes don't click."""
    env = np.ones(n, np.float32)
    k = min(int(fade_s * SAMPLE_RATE_HZ), n // 2)
    if k > 0:
        ramp = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, k, dtype=np.float32))
        env[:k] = ramp
        env[n - k:] = ramp[::-1]
    return env


def _harmonic(freq: np.ndarray, amps: list[float]) -> np.ndarray:
    """Sum of harmonics of an instantaneous-frequency track (Hz, per sample); above 14 kHz dropped."""
    phase = 2 * np.pi * np.cumsum(freq) / SAMPLE_RATE_HZ
    out = np.zeros(len(freq), np.float64)
    for k, a in enumerate(amps, start=1):
        if a > 0:
            out += a * np.sin(k * phase) * (k * freq < 14_000)
    return out


def _bandnoise(rng: np.random.Generator, n: int, lo_hz: float, hi_hz: float, order: int = 2) -> np.ndarray:
    nyq = SAMPLE_RATE_HZ / 2
    lo, hi = max(lo_hz, 20.0), min(hi_hz, nyq * 0.95)
    sos = butter(order, [lo, hi], btype="bandpass", fs=SAMPLE_RATE_HZ, output="sos")
    return sosfilt(sos, rng.standard_normal(n))


def _notes(note_fn, n_notes: int, note_s: float, gap_s: float) -> np.ndarray:
    gap = np.zeros(int(gap_s * SAMPLE_RATE_HZ))
    parts = []
    for i in range(n_notes):
        n = max(int(note_s * SAMPLE_RATE_HZ), 64)
        parts.append(note_fn(i, n) * _fade(n))
        if i < n_notes - 1:
            parts.append(gap)
    return np.concatenate(parts)


def _call(sp: _Species, rng: np.random.Generator, max_s: float) -> np.ndarray:
    """One call (a bout of notes) of species `sp`: (n_samples,) float32 at unit RMS, <= max_s long."""
    pitch = np.exp(rng.normal(0, 0.03))
    p = {}
    for key, value in sp.params.items():
        if key in ("f0_hz", "fc_hz", "formant_hz"):
            p[key] = value * pitch
        elif key.endswith("_s"):
            p[key] = value * np.exp(rng.normal(0, 0.12))
        elif key in ("rate_hz", "am_hz", "vib_hz", "chirp_hz"):
            p[key] = value * np.exp(rng.normal(0, 0.08))
        else:
            p[key] = value
    bout_s = min(max(p["bout_s"], MIN_CALL_S), max_s)
    sr = SAMPLE_RATE_HZ

    def n_notes(note_s: float, gap_s: float) -> tuple[int, float]:
        n = int(np.ceil((bout_s + gap_s) / (note_s + gap_s)))
        while n > 1 and n * note_s + (n - 1) * gap_s > max_s:
            n -= 1
        return n, min(note_s, max_s)

    fam = sp.family
    if fam == "sweep":
        count, note_s = n_notes(p["note_s"], p["gap_s"])

        def note(_i, n):
            t = np.arange(n) / n
            return _harmonic(p["f0_hz"] * p["ratio"] ** t, [1.0, p["h2"]])
        wave = _notes(note, count, note_s, p["gap_s"])
    elif fam == "tone":
        count, note_s = n_notes(p["note_s"], p["gap_s"])

        def note(i, n):
            t = np.arange(n) / sr
            f = p["f0_hz"] * (1 + p["step"]) ** i * (1 + p["vib_depth"] * np.sin(2 * np.pi * p["vib_hz"] * t))
            return _harmonic(f, [1.0, p["h2"], p["h3"]])
        wave = _notes(note, count, note_s, p["gap_s"])
    elif fam == "croak":
        count, note_s = n_notes(p["note_s"], p["gap_s"])
        harm = [(1 / k ** 0.7) * (0.3 + np.exp(-(((k * p["f0_hz"]) - p["formant_hz"]) / 600) ** 2))
                for k in range(1, 13)]

        def note(_i, n):
            t = np.arange(n) / sr
            pulses = (0.5 + 0.5 * np.sin(2 * np.pi * p["am_hz"] * t)) ** 2
            return _harmonic(np.full(n, p["f0_hz"]), harm) * pulses
        wave = _notes(note, count, note_s, p["gap_s"])
    else:
        n = int(bout_s * sr)
        t = np.arange(n) / sr
        if fam == "trill":
            f = p["f0_hz"] * (1 + p["glide"] * t / bout_s)
            env = np.abs(np.sin(np.pi * p["rate_hz"] * t)) ** (2 * p["sharp"])
            wave = _harmonic(f, [1.0, 0.15]) * env
        elif fam == "pulse":
            noise = _bandnoise(rng, n, p["fc_hz"] * (1 - p["bw"] / 2), p["fc_hz"] * (1 + p["bw"] / 2))
            width = max(int(p["pulse_s"] * sr), 8)
            gate = np.zeros(n)
            for start in np.arange(0, n - width, sr / p["rate_hz"]).astype(int):
                gate[start:start + width] = np.hanning(width)
            wave = noise * gate
        elif fam == "buzz":
            half_bw = p["fc_hz"] * p["bw"] / 2
            noise = _bandnoise(rng, n, p["fc_hz"] - half_bw, p["fc_hz"] + half_bw)
            noise /= np.std(noise) + 1e-12
            tone = np.sqrt(2) * np.sin(2 * np.pi * p["fc_hz"] * t)
            am = 1 - p["am_depth"] * (0.5 + 0.5 * np.sin(2 * np.pi * p["am_hz"] * t))
            chirp = np.clip(2 * np.sin(2 * np.pi * p["chirp_hz"] * t) + 1, 0, 1) if p["chirp_hz"] > 0 else 1.0
            wave = (noise + 0.4 * tone) * am * chirp
        else:
            raise ValueError(f"unknown call family {fam!r}; known: {FAMILIES}")
        wave = wave * _fade(n, 0.02)
    rms = np.sqrt(np.mean(wave ** 2)) + 1e-12
    return (wave / rms).astype(np.float32)


# --------------------------------------------------------------------------------------- background

def _rms(x: np.ndarray) -> float:
    """Root mean square, estimated on every 8th sample (backgrounds are long and stationary)."""
    sub = x[::8] if len(x) >= 8_000 else x
    return float(np.sqrt(np.mean(np.square(sub, dtype=np.float64)))) + 1e-12


def _background(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n,) float32 at unit RMS: a random mix of rain, wind and a constant insect hum over a floor."""
    sr = SAMPLE_RATE_HZ
    white = rng.standard_normal(n, dtype=np.float32)

    def filt(order: int, cutoff, btype: str) -> np.ndarray:
        sos = butter(order, cutoff, btype=btype, fs=sr, output="sos").astype(np.float32)
        out = sosfilt(sos, white)
        return out / _rms(out)

    def slow(n_parts: int, lo_hz: float, hi_hz: float) -> np.ndarray:
        """A smooth random modulation, computed at 100 Hz and interpolated (cheap)."""
        t = np.arange(n // 320 + 2) / 100.0
        f = rng.uniform(lo_hz, hi_hz, n_parts)
        phase = rng.uniform(0, 2 * np.pi, n_parts)
        curve = np.sin(2 * np.pi * f[:, None] * t + phase[:, None]).mean(axis=0)
        return np.interp(np.arange(n) / sr, t, curve).astype(np.float32)

    # Rain: broadband hiss plus droplet clicks (impulses ringing through a resonant band).
    drops = np.zeros(n, np.float32)
    n_drops = rng.poisson(rng.uniform(15, 80) * n / sr)
    drops[rng.integers(0, n, n_drops)] = rng.lognormal(0, 0.8, n_drops) * rng.choice([-1, 1], n_drops)
    drops = sosfilt(butter(2, [1_500, 7_000], btype="bandpass", fs=sr, output="sos").astype(np.float32), drops)
    rain = filt(1, [300, 9_000], "bandpass") + rng.uniform(0.5, 2.0) * drops / _rms(drops)
    # Wind: low-passed noise with slow gusts.
    wind = filt(4, rng.uniform(150, 600), "lowpass") * np.clip(0.6 + 0.8 * slow(3, 0.05, 0.5), 0.1, None)
    # A constant high-pitched insect chorus: a narrow noise band with a tonal core.
    f_hum = rng.uniform(5_000, 9_000)
    core = np.sin((2 * np.pi * f_hum / sr) * np.arange(n) % (2 * np.pi)).astype(np.float32)
    hum = (filt(2, [f_hum * 0.97, f_hum * 1.03], "bandpass") + core) * (1 + 0.3 * slow(2, 0.1, 1.0))
    weights = np.sqrt(rng.dirichlet([0.7, 0.7, 0.7])).astype(np.float32)
    mix = weights[0] * rain / _rms(rain) + weights[1] * wind / _rms(wind) + weights[2] * 0.5 * hum / _rms(hum)
    mix += 0.1 * white  # sensor floor
    return (mix / _rms(mix)).astype(np.float32)


def _db(x: float) -> float:
    return float(10 ** (x / 20))


def _mix_in(out: np.ndarray, wave: np.ndarray, start: int) -> None:
    stop = min(len(out), start + len(wave))
    out[start:stop] += wave[:stop - start]


def _voiced_extent(wave: np.ndarray) -> tuple[int, int]:
    """First and last sample of 10-ms frames within 40 dB of the loudest frame."""
    hop = SAMPLE_RATE_HZ // 100
    frames = np.sqrt(np.mean(wave[: len(wave) // hop * hop].reshape(-1, hop) ** 2, axis=1))
    active = np.nonzero(frames > frames.max() * 0.01)[0]
    if frames.max() <= 0 or len(active) == 0:
        raise BirdclefError("speech synthesis returned silence")
    return int(active[0] * hop), int((active[-1] + 1) * hop)


def _finish(mix: np.ndarray) -> np.ndarray:
    """Scale down (never up) so the peak stays below 0.9; SNRs are unchanged."""
    peak = float(np.max(np.abs(mix)))
    return (mix * (0.9 / peak) if peak > 0.9 else mix).astype(np.float32)


def _write_audio(path: Path, wave: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        sf.write(tmp, wave, SAMPLE_RATE_HZ, format="OGG", subtype="VORBIS")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_csv(path: Path, frame: pd.DataFrame) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(frame.to_csv(index=False, lineterminator="\n").encode("utf-8"))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------ planning

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


def _plan_soundscapes(n_train: int, n_test: int, speech_fraction: float, seed: int) -> list[_Soundscape]:
    rng = _rng(seed, 3)
    stems: list[str] = []
    while len(stems) < n_train + n_test:
        site = f"H{int(rng.integers(1, 10)):02d}"
        date = np.datetime64("2023-01-01") + int(rng.integers(0, 730))
        time = f"{int(rng.integers(0, 24)):02d}{int(rng.integers(0, 6)) * 10:02d}00"
        stem = f"{site}_{str(date).replace('-', '')}_{time}"
        if stem not in stems:
            stems.append(stem)
    train, test = sorted(stems[:n_train]), sorted(stems[n_train:])
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
            out.append(_Soundscape(len(out), stem, split, text))
    return out


# ----------------------------------------------------------------------------------------- rendering

def _place_speech(speech: np.ndarray, level: float) -> np.ndarray:
    a, b = _voiced_extent(speech)
    voiced = speech[a:b]
    return voiced / (np.sqrt(np.mean(voiced ** 2)) + 1e-12) * level


def _render_recording(rec: _Recording, speech: np.ndarray | None, seed: int
                      ) -> tuple[np.ndarray, tuple[float, float] | None]:
    """(n_samples,) float32 recording and the (start_s, end_s) of its inserted speech, if any."""
    sr = SAMPLE_RATE_HZ
    rng = _rng(seed, 4, rec.index)
    bg_rms = _db(rng.uniform(-45, -30))
    duration_s = rec.duration_s
    if speech is not None:
        voice = _place_speech(speech, bg_rms * _db(rng.uniform(12, 22)))
        offset_s = rng.uniform(0.2, 0.6)
        # Keep at least 2 s for calls beside the spoken intro.
        duration_s = max(duration_s, offset_s + len(voice) / sr + SPEECH_GUARD_S + 2.0)
    n = int(round(duration_s * sr))
    mix = _background(rng, n) * bg_rms
    lo_s, hi_s, span = 0.0, n / sr, None
    if speech is not None:
        start_s = offset_s if rec.speech_at_start else hi_s - offset_s - len(voice) / sr
        start = int(round(start_s * sr))
        _mix_in(mix, voice, start)
        span = (start / sr, (start + len(voice)) / sr)
        if rec.speech_at_start:
            lo_s = span[1] + SPEECH_GUARD_S
        else:
            hi_s = span[0] - SPEECH_GUARD_S
    snr_db = rng.uniform(-5, 20)
    t = lo_s + rng.uniform(0, 0.5)
    placed = 0
    while hi_s - t >= MIN_CALL_S or placed == 0:
        call = _call(rec.species, rng, max_s=max(hi_s - t, 0.3))
        _mix_in(mix, call * bg_rms * _db(snr_db + rng.normal(0, 1.5)), int(t * sr))
        t += len(call) / sr + rng.uniform(0.3, 2.5)
        placed += 1
    for other in rec.secondary:  # quieter calls of the secondary species
        for _ in range(int(rng.integers(1, 3))):
            call = _call(other, rng, max_s=hi_s - lo_s)
            start_s = rng.uniform(lo_s, max(hi_s - len(call) / sr, lo_s))
            level = _db(max(snr_db - rng.uniform(6, 12), -10.0))
            _mix_in(mix, call * bg_rms * level, int(start_s * sr))
    return _finish(mix), span


def _render_soundscape(sc: _Soundscape, taxonomy: list[_Species], speech: np.ndarray | None,
                       soundscape_s: float, seed: int
                       ) -> tuple[np.ndarray, list[tuple[int, float, float]], tuple[float, float] | None]:
    """(n_samples,) float32 soundscape, its calls as (class index, start_s, end_s), speech span."""
    sr = SAMPLE_RATE_HZ
    rng = _rng(seed, 5, sc.index)
    n = int(round(soundscape_s * sr))
    bg_rms = _db(rng.uniform(-42, -30))
    mix = _background(rng, n) * bg_rms
    blocked: list[tuple[float, float]] = []
    span = None
    if speech is not None:
        voice = _place_speech(speech, bg_rms * _db(rng.uniform(8, 16)))
        start = int(rng.uniform(3.0, soundscape_s - len(voice) / sr - 3.0) * sr)
        _mix_in(mix, voice, start)
        span = (start / sr, (start + len(voice)) / sr)
        blocked.append((span[0] - SPEECH_GUARD_S, span[1] + SPEECH_GUARD_S))
    events = []
    n_species = int(rng.integers(2, min(6, len(taxonomy)) + 1))
    for c in sorted(rng.choice(len(taxonomy), n_species, replace=False).tolist()):
        center_s = rng.uniform(0, soundscape_s)
        for _ in range(int(rng.integers(1, 6))):
            call = _call(taxonomy[c], rng, max_s=3.0)
            length_s = len(call) / sr
            for _attempt in range(10):
                start_s = float(np.clip(center_s + rng.normal(0, 8.0), 0, soundscape_s - length_s))
                if all(start_s + length_s <= a or start_s >= b for a, b in blocked):
                    break
            else:
                continue
            start = int(round(start_s * sr))
            _mix_in(mix, call * bg_rms * _db(rng.uniform(-5, 20)), start)
            events.append((c, start / sr, (start + len(call)) / sr))
    return _finish(mix), events, span


def _window_labels(stem: str, events: list[tuple[int, float, float]], n_classes: int,
                   soundscape_s: float) -> tuple[list[str], np.ndarray]:
    """Row ids `<stem>_<end_s>` and an (n_windows, n_classes) 0/1 int matrix."""
    ends = np.arange(WINDOW_S, int(soundscape_s) + 1, WINDOW_S)
    labels = np.zeros((len(ends), n_classes), np.int64)
    for c, a, b in events:
        overlap = np.minimum(b, ends) - np.maximum(a, ends - WINDOW_S)
        labels[overlap >= LABEL_OVERLAP_S - 1e-9, c] = 1
    return [f"{stem}_{int(e)}" for e in ends], labels


# ----------------------------------------------------------------------------------------- the entry

def _validate(n_classes, recordings_per_class, recording_s, n_train_soundscapes, n_test_soundscapes,
              soundscape_s, speech_fraction, seed) -> None:
    def is_int(x) -> bool:
        return isinstance(x, (int, np.integer)) and not isinstance(x, bool)

    if not is_int(n_classes) or not 2 <= n_classes <= 300:
        raise ValueError(f"n_classes must be an integer in [2, 300], got {n_classes!r}")
    if not is_int(recordings_per_class) or not 1 <= recordings_per_class <= 1000:
        raise ValueError(f"recordings_per_class must be an integer in [1, 1000], got {recordings_per_class!r}")
    try:
        lo, hi = (float(v) for v in recording_s)
    except (TypeError, ValueError):
        raise ValueError(f"recording_s must be a (min_s, max_s) pair, got {recording_s!r}") from None
    if not 3.0 <= lo <= hi <= 600.0:
        raise ValueError(f"recording_s must satisfy 3 <= min_s <= max_s <= 600, got {recording_s!r}")
    if not is_int(n_train_soundscapes) or n_train_soundscapes < 0:
        raise ValueError(f"n_train_soundscapes must be an integer >= 0, got {n_train_soundscapes!r}")
    if not is_int(n_test_soundscapes) or n_test_soundscapes < 1:
        raise ValueError(f"n_test_soundscapes must be an integer >= 1 (sample_submission needs one), "
                         f"got {n_test_soundscapes!r}")
    if (not isinstance(soundscape_s, (int, float)) or isinstance(soundscape_s, bool)
            or not 15 <= soundscape_s <= 600 or soundscape_s % WINDOW_S != 0):
        raise ValueError(f"soundscape_s must be a multiple of {WINDOW_S} in [15, 600], got {soundscape_s!r}")
    if not isinstance(speech_fraction, (int, float)) or not 0.0 <= speech_fraction <= 1.0:
        raise ValueError(f"speech_fraction must be in [0, 1], got {speech_fraction!r}")
    if not is_int(seed) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")


def _n_workers() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


def _refuse_stale_audio(root: Path, expected: set[Path]) -> None:
    """Refuse a root holding audio this dataset would not write: the CSVs would not describe it."""
    stale = [p for folder in ("train_audio", "train_soundscapes", "test_soundscapes")
             for p in sorted((root / folder).rglob("*.ogg")) if p not in expected]
    if stale:
        shown = ", ".join(str(p.relative_to(root)) for p in stale[:3])
        raise FileExistsError(f"{root} already holds {len(stale)} audio file(s) this demo dataset would "
                              f"not write ({shown}, ...); use an empty folder or delete it first")


def make_demo_dataset(
    root: str | Path,
    *,
    n_classes: int = 12,
    recordings_per_class: int = 8,
    recording_s: tuple[float, float] = (6.0, 20.0),
    n_train_soundscapes: int = 4,
    n_test_soundscapes: int = 6,
    soundscape_s: float = 60.0,
    speech_fraction: float = 0.25,
    seed: int = 0,
) -> DemoSummary:
    """Write a seeded synthetic dataset in the BirdCLEF 2025 layout under `root`.

    `recording_s` is the (min, max) duration of train recordings in seconds; a recording with a
    spoken intro is lengthened when needed to keep 2 s of calls beside it. `speech_fraction` of
    the recordings (and, when it is > 0, one train and one test soundscape) contain speech
    synthesised by espeak-ng; `speech.csv` lists each as (filename relative to `root`, start_s,
    end_s). Labels sort as strings; from 3 classes on they mix eBird codes and numeric iNat ids.
    Rerunning with the same arguments rewrites the same files; raises ValueError on bad sizes,
    FileExistsError when `root` holds other audio, :class:`birdclef.tts.TTSUnavailable` when
    speech is asked for and espeak-ng cannot load.
    """
    _validate(n_classes, recordings_per_class, recording_s, n_train_soundscapes, n_test_soundscapes,
              soundscape_s, speech_fraction, seed)
    root = Path(root)
    sr = SAMPLE_RATE_HZ
    taxonomy = _make_taxonomy(n_classes, seed)
    recordings = _plan_recordings(taxonomy, recordings_per_class, tuple(recording_s), speech_fraction, seed)
    soundscapes = _plan_soundscapes(n_train_soundscapes, n_test_soundscapes, speech_fraction, seed)
    rec_path = {r.index: root / "train_audio" / r.filename for r in recordings}
    sc_path = {s.index: root / f"{s.split}_soundscapes" / f"{s.stem}.ogg" for s in soundscapes}
    _refuse_stale_audio(root, set(rec_path.values()) | set(sc_path.values()))
    for folder in ("train_audio", "train_soundscapes", "test_soundscapes"):
        (root / folder).mkdir(parents=True, exist_ok=True)

    texts = sorted({x.speech_text for x in [*recordings, *soundscapes] if x.speech_text})
    waves = dict(zip(texts, synthesize_batch(texts, sample_rate_hz=sr))) if texts else {}

    def make_recording(rec: _Recording) -> tuple[dict, dict | None, float]:
        wave, span = _render_recording(rec, waves.get(rec.speech_text), seed)
        _write_audio(rec_path[rec.index], wave)
        row = {"primary_label": rec.species.label, "filename": rec.filename,
               "scientific_name": rec.species.scientific_name,
               "common_name": rec.species.common_name, **rec.row}
        speech_row = None if span is None else {
            "filename": f"train_audio/{rec.filename}", "start_s": round(span[0], 3), "end_s": round(span[1], 3)}
        return row, speech_row, len(wave) / sr

    labels = [s.label for s in taxonomy]

    def make_soundscape(sc: _Soundscape) -> tuple[pd.DataFrame, dict | None, float]:
        wave, events, span = _render_soundscape(sc, taxonomy, waves.get(sc.speech_text), soundscape_s, seed)
        _write_audio(sc_path[sc.index], wave)
        row_ids, matrix = _window_labels(sc.stem, events, n_classes, soundscape_s)
        frame = pd.DataFrame(matrix, columns=labels)
        frame.insert(0, "row_id", row_ids)
        speech_row = None if span is None else {
            "filename": f"{sc.split}_soundscapes/{sc.stem}.ogg",
            "start_s": round(span[0], 3), "end_s": round(span[1], 3)}
        return frame, speech_row, len(wave) / sr

    # Every file has its own random stream, so threads change the speed, not the bytes. Vorbis
    # encoding and the numpy/scipy kernels release the GIL.
    with ThreadPoolExecutor(max_workers=_n_workers()) as pool:
        rec_out = list(pool.map(make_recording, recordings))
        sc_out = list(pool.map(make_soundscape, soundscapes))
    train_rows = [row for row, _, _ in rec_out]
    speech_rows = [sp for _, sp, _ in [*rec_out, *sc_out] if sp is not None]
    total_s = sum(d for _, _, d in [*rec_out, *sc_out])
    truth: dict[str, list[pd.DataFrame]] = {"train": [], "test": []}
    for sc, (frame, _, _) in zip(soundscapes, sc_out):
        truth[sc.split].append(frame)

    _write_csv(root / "taxonomy.csv", pd.DataFrame(
        [[s.label, s.inat_taxon_id, s.scientific_name, s.common_name, s.class_name] for s in taxonomy],
        columns=TAXONOMY_COLUMNS))
    train = pd.DataFrame(train_rows).sort_values(["primary_label", "filename"], kind="stable")
    _write_csv(root / "train.csv", train[TRAIN_COLUMNS])
    for split, name in (("test", "solution.csv"), ("train", "train_soundscapes_solution.csv")):
        frames = truth[split]
        _write_csv(root / name, pd.concat(frames, ignore_index=True) if frames
                   else pd.DataFrame(columns=["row_id", *labels]))
    first_test = truth["test"][0]["row_id"].head(3).tolist()
    sample = pd.DataFrame(np.full((len(first_test), n_classes), 1.0 / n_classes), columns=labels)
    sample.insert(0, "row_id", first_test)
    _write_csv(root / "sample_submission.csv", sample)
    _write_csv(root / "speech.csv", pd.DataFrame(speech_rows, columns=["filename", "start_s", "end_s"])
               .sort_values("filename", kind="stable"))

    return DemoSummary(root=root, n_classes=n_classes, n_recordings=len(recordings),
                       n_train_soundscapes=n_train_soundscapes, n_test_soundscapes=n_test_soundscapes,
                       total_audio_s=round(total_s, 3))
