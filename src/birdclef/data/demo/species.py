"""The demo taxonomy: species in confusable pairs, each with a call family and its parameters.

Pairs of consecutive classes share a family, their pitch 8-15 % apart; labels mix eBird-style
codes (birds) and numeric iNat ids (the other classes), as in the real taxonomy.csv.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from birdclef.data.demo.common import _rng

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


@dataclass(frozen=True)
class _Species:
    label: str
    inat_taxon_id: int
    scientific_name: str
    common_name: str
    class_name: str
    family: str
    params: dict = field(hash=False)


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
