import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from birdclef.data.competition import (TRAIN_COLUMNS, TRAIN_COLUMNS_2026, competition_paths, data_card, detect_layout,
                                       load_soundscape_labels, load_taxonomy, load_train_metadata, parse_label_list,
                                       parse_soundscape_name)
from birdclef.errors import SchemaError

FIXTURES = Path(__file__).parent / "fixtures"


def test_real_taxonomy_labels_are_strings():
    tax = load_taxonomy(FIXTURES / "taxonomy_2025.csv")
    assert len(tax) == 206
    assert "1139490" in set(tax["primary_label"]) and "amakin1" in set(tax["primary_label"])
    assert tax["primary_label"].map(type).eq(str).all()
    # the trailing space in species 1564122's names is kept (it is data, not our bug)
    assert tax.set_index("primary_label").loc["1564122", "common_name"].endswith(" ")


@pytest.mark.parametrize("text,expected", [
    ("[]", []), ("", []), ("['a', 'b']", ["a", "b"]), ("['1139490']", ["1139490"]), ("[' x ']", ["x"]),
])
def test_parse_label_list(text, expected):
    assert parse_label_list(text) == expected


def _train_csv(tmp_path, rows, columns=TRAIN_COLUMNS):
    df = pd.DataFrame([{c: r.get(c, "") for c in columns} for r in rows])
    df.to_csv(tmp_path / "train.csv", index=False)
    return tmp_path / "train.csv"


def test_train_rows_with_unknown_labels_or_duplicates_are_skipped_with_reasons(tmp_path):
    tax = load_taxonomy(FIXTURES / "taxonomy_2025.csv")
    path = _train_csv(tmp_path, [
        {"primary_label": "amakin1", "secondary_labels": "['1139490', 'nosuch']", "filename": "amakin1/a.ogg"},
        {"primary_label": "nosuch", "secondary_labels": "[]", "filename": "nosuch/b.ogg"},
        {"primary_label": "amakin1", "secondary_labels": "[]", "filename": "amakin1/a.ogg"},
        {"primary_label": "1139490", "secondary_labels": "[broken", "filename": "1139490/c.ogg"},
    ])
    used, skipped = load_train_metadata(path, tax)
    assert used["filename"].tolist() == ["amakin1/a.ogg"]
    assert used["secondary_list"].iloc[0] == ["1139490"]
    reasons = dict(zip(skipped["filename"], skipped["reason"]))
    assert "not in taxonomy" in reasons["nosuch/b.ogg"]
    assert "duplicated" in reasons["amakin1/a.ogg"]
    assert "list" in reasons["1139490/c.ogg"]


@pytest.mark.parametrize("name,why", [
    ("/etc/passwd", "absolute"), ("../outside.ogg", "climbs out"), ("amakin1/../../outside.ogg", "climbs out"),
    ("C:\\data\\a.ogg", "absolute"), ("..\\outside.ogg", "climbs out"), ("", "empty filename"),
])
def test_a_file_name_leaving_the_data_folder_is_refused_with_its_row(tmp_path, caplog, name, why):
    tax = load_taxonomy(FIXTURES / "taxonomy_2025.csv")
    (tmp_path / "outside.ogg").write_bytes(b"")  # what '../outside.ogg' would reach from train_audio/
    data = tmp_path / "data"
    data.mkdir()
    path = _train_csv(data, [{"primary_label": "amakin1", "secondary_labels": "[]", "filename": "amakin1/a.ogg"},
                             {"primary_label": "amakin1", "secondary_labels": "[]", "filename": name}])
    with caplog.at_level("WARNING", logger="birdclef.data.competition"):
        used, skipped = load_train_metadata(path, tax)
    assert used["filename"].tolist() == ["amakin1/a.ogg"]
    assert skipped["filename"].tolist() == [name]
    assert why in skipped["reason"].item() and "line 3 of train.csv" in skipped["reason"].item()
    assert any("line 3" in r.getMessage() and why in r.getMessage() for r in caplog.records)


def test_a_soundscape_label_row_leaving_the_data_folder_is_refused_with_its_line(tmp_path):
    tax = load_taxonomy(FIXTURES / "taxonomy_2025.csv")
    pd.DataFrame({"filename": ["BC2026_Train_0001_S22_20211231_201500.ogg", "../../etc/x.ogg", "/abs/y.ogg"],
                  "start": ["00:00:00"] * 3, "end": ["00:00:05"] * 3, "primary_label": ["amakin1"] * 3}
                 ).to_csv(tmp_path / "labels.csv", index=False)
    parsed = load_soundscape_labels(tmp_path / "labels.csv", tax)
    assert parsed.windows["filename"].tolist() == ["BC2026_Train_0001_S22_20211231_201500.ogg"]
    reasons = parsed.skipped.set_index("filename")["reason"]
    assert "climbs out" in reasons["../../etc/x.ogg"] and "line 3 of labels.csv" in reasons["../../etc/x.ogg"]
    assert "absolute" in reasons["/abs/y.ogg"] and "line 4 of labels.csv" in reasons["/abs/y.ogg"]


def test_missing_column_names_file_column_and_fix(tmp_path):
    tax = load_taxonomy(FIXTURES / "taxonomy_2025.csv")
    cols = [c if c != "filename" else "file_name" for c in TRAIN_COLUMNS]
    path = _train_csv(tmp_path, [{"primary_label": "amakin1"}], columns=cols)
    with pytest.raises(SchemaError, match=r"train\.csv.*missing column.*filename.*Fix"):
        load_train_metadata(path, tax)


def test_competition_paths_requires_taxonomy(tmp_path):
    with pytest.raises(FileNotFoundError, match="taxonomy.csv"):
        competition_paths(tmp_path)


def test_2026_train_csv_columns_in_their_order_with_extras_kept(tmp_path):
    tax = load_taxonomy(FIXTURES / "taxonomy_2025.csv")
    path = _train_csv(tmp_path, [
        {"primary_label": "amakin1", "secondary_labels": "[]", "filename": "amakin1/iNat1.ogg", "rating": "0.0",
         "class_name": "Aves", "inat_taxon_id": "5"},
        {"primary_label": "1139490", "secondary_labels": "['amakin1']", "filename": "1139490/XC2.ogg"},
    ], columns=[*TRAIN_COLUMNS_2026, "my_extra"])
    used, skipped = load_train_metadata(path, tax)
    assert skipped.empty and used["filename"].tolist() == ["amakin1/iNat1.ogg", "1139490/XC2.ogg"]
    assert {"class_name", "inat_taxon_id", "my_extra"} <= set(used.columns)
    assert used["secondary_list"].tolist() == [[], ["amakin1"]]
    # optional columns may be absent: only the required ones are needed
    path = _train_csv(tmp_path, [{"primary_label": "amakin1", "secondary_labels": "[]", "filename": "amakin1/a.ogg"}],
                      columns=["filename", "primary_label", "secondary_labels"])
    assert load_train_metadata(path, tax)[0]["filename"].tolist() == ["amakin1/a.ogg"]


def test_taxonomy_of_any_size(tmp_path):
    labels = [f"sp{i}" for i in range(234)] + [f"47158son{i}" for i in range(3)]
    pd.DataFrame({"primary_label": labels, "class_name": "Insecta"}).to_csv(tmp_path / "taxonomy.csv", index=False)
    assert load_taxonomy(tmp_path / "taxonomy.csv")["primary_label"].tolist() == labels


@pytest.mark.parametrize("name,expected", [
    ("BC2026_Train_0039_S22_20211231_201500.ogg", ("S22", "2021-12-31", "20:15:00", 20)),
    ("BC2026_Test_0001_S05_20250227_010002", ("S05", "2025-02-27", "01:00:02", 1)),
    ("train_soundscapes/H02_20230420_074000.ogg", ("H02", "2023-04-20", "07:40:00", 7)),
    ("soundscape_12345.ogg", None),
    ("BC2026_Train_0039_S22_20211331_201500.ogg", None),  # month 13
    ("BC2026_Train_0039_S22_20211231_250000.ogg", None),  # hour 25
])
def test_soundscape_names_give_site_date_and_hour(name, expected):
    parsed = parse_soundscape_name(name)
    if expected is None:
        assert parsed is None
    else:
        assert (parsed.site, parsed.date.isoformat(), parsed.time.isoformat(), parsed.hour) == expected


def _folder_2026(tmp_path):
    tmp_path.mkdir(parents=True, exist_ok=True)
    tax = pd.DataFrame({"primary_label": ["amakin1", "22961", "47158son16"], "inat_taxon_id": ["1", "22961", "47158"],
                        "scientific_name": ["a", "b", "c"], "common_name": ["a", "b", "c"],
                        "class_name": ["Aves", "Amphibia", "Insecta"]})
    tax.to_csv(tmp_path / "taxonomy.csv", index=False)
    _train_csv(tmp_path, [{"primary_label": "amakin1", "secondary_labels": "[]", "filename": "amakin1/XC1.ogg"}],
               columns=TRAIN_COLUMNS_2026)
    (tmp_path / "train_soundscapes").mkdir()
    for stem in ("BC2026_Train_0001_S22_20211231_201500", "BC2026_Train_0002_S03_20220101_050000"):
        sf.write(tmp_path / "train_soundscapes" / f"{stem}.ogg", np.zeros(20 * 32_000, np.float32), 32_000)
    return tmp_path


LABEL_ROWS = [  # (filename, start, end, primary_label) as in the released file
    ("BC2026_Train_0001_S22_20211231_201500.ogg", "00:00:00", "00:00:05", "22961;47158son16"),
    ("BC2026_Train_0001_S22_20211231_201500.ogg", "00:00:05", "00:00:10", "22961"),
    ("BC2026_Train_0001_S22_20211231_201500.ogg", "00:00:05", "00:00:10", "amakin1"),  # same window, another row
    ("BC2026_Train_0002_S03_20220101_050000.ogg", "00:00:05", "00:00:15", "amakin1"),  # two windows
    ("BC2026_Train_0002_S03_20220101_050000.ogg", "00:00:10", "00:00:05", "amakin1"),  # reversed
    ("BC2026_Train_0002_S03_20220101_050000.ogg", "00:00:15", "00:00:25", "amakin1"),  # past the 20-s file
    ("BC2026_Train_0002_S03_20220101_050000.ogg", "0:0:xx", "00:00:05", "amakin1"),     # unparseable
    ("BC2026_Train_0002_S03_20220101_050000.ogg", "00:00:00", "00:00:05", "22961;nosuch"),  # unknown label
    ("BC2026_Train_0002_S03_20220101_050000.ogg", "00:00:02", "00:00:07", "amakin1"),  # off the 5-s grid
    ("BC2026_Train_0009_S01_20220101_050000.ogg", "00:00:00", "00:00:05", "amakin1"),  # no such audio
]


def _labels_csv(root, rows=LABEL_ROWS, repeat=2):
    pd.DataFrame([r for r in rows for _ in range(repeat)], columns=["filename", "start", "end", "primary_label"]) \
        .to_csv(root / "train_soundscapes_labels.csv", index=False)
    return root / "train_soundscapes_labels.csv"


def test_soundscape_labels_are_deduplicated_validated_and_one_row_per_window(tmp_path):
    root = _folder_2026(tmp_path)
    tax = load_taxonomy(root / "taxonomy.csv")
    parsed = load_soundscape_labels(_labels_csv(root), tax, root / "train_soundscapes")
    assert parsed.n_duplicates == len(LABEL_ROWS)
    w = parsed.windows
    assert w["row_id"].tolist() == ["BC2026_Train_0001_S22_20211231_201500_5", "BC2026_Train_0001_S22_20211231_201500_10",
                                    "BC2026_Train_0002_S03_20220101_050000_10", "BC2026_Train_0002_S03_20220101_050000_15"]
    assert w["labels"].tolist() == [["22961", "47158son16"], ["22961", "amakin1"], ["amakin1"], ["amakin1"]]
    assert w["start_s"].tolist() == [0, 5, 5, 10] and w["end_s"].tolist() == [5, 10, 10, 15]
    assert w["site"].tolist() == ["S22", "S22", "S03", "S03"] and w["hour"].tolist() == [20, 20, 5, 5]
    reasons = parsed.skipped["reason"].tolist()
    assert len(reasons) == 6
    for expected in ("not before", "past the file", "unparseable", "not in taxonomy", "grid", "missing"):
        assert sum(expected in r for r in reasons) == 1, (expected, reasons)
    assert "nosuch" in parsed.skipped.loc[parsed.skipped["reason"].str.contains("taxonomy"), "reason"].item()
    # without the audio folder nothing is checked against files
    no_audio = load_soundscape_labels(root / "train_soundscapes_labels.csv", tax)
    assert len(no_audio.windows) == 7 and len(no_audio.skipped) == 4


def test_soundscape_labels_need_their_columns(tmp_path):
    tax = load_taxonomy(FIXTURES / "taxonomy_2025.csv")
    pd.DataFrame({"filename": ["a.ogg"], "start": ["00:00:00"], "label": ["amakin1"]}).to_csv(tmp_path / "l.csv", index=False)
    with pytest.raises(SchemaError, match=r"missing column.*end.*primary_label"):
        load_soundscape_labels(tmp_path / "l.csv", tax)


def test_layout_and_data_card(tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    (old / "taxonomy.csv").write_bytes((FIXTURES / "taxonomy_2025.csv").read_bytes())
    _train_csv(old, [{"primary_label": "amakin1", "secondary_labels": "[]", "filename": "amakin1/a.ogg"}])
    assert detect_layout(old) == "2025"
    card = data_card(old)
    assert card["layout"] == "2025" and card["n_classes"] == 206 and card["labelled_windows"] == 0
    assert len(card["classes_without_train_audio"]) == 205 and card["sites"] == []

    root = _folder_2026(tmp_path / "new")
    _labels_csv(root)
    assert detect_layout(root) == "2026"
    card = data_card(root)
    assert card["layout"] == "2026" and card["n_classes"] == 3
    assert card["classes_per_class_name"] == {"Amphibia": 1, "Aves": 1, "Insecta": 1}
    assert card["classes_without_train_audio"] == ["22961", "47158son16"]
    assert card["soundscape_only_classes"] == ["22961", "47158son16"]
    assert card["labelled_windows"] == 4 and card["labelled_files"] == 2
    assert card["label_rows_duplicated"] == len(LABEL_ROWS) and card["label_rows_skipped"] == 6
    assert card["sites"] == ["S03", "S22"] and card["n_train_soundscapes"] == 2


# ---------------------------------------------------------------- extra training data (other years, other folders)

EXTRA_CODES = ("oldaaa1", "oldbbb1", "oldccc1", "oldddd1")  # the 2023 folder's own labels (eBird-style codes)


def make_extra_2023(root: Path, current: pd.DataFrame, *, seed: int = 2) -> Path:
    """A folder in the BirdCLEF 2023/2024 layout (train_metadata.csv: the 2025 columns minus collection;
    eBird_Taxonomy_v2021.csv; train_audio/; unlabeled_soundscapes/) with the demo's synthetic audio.

    Its labels map onto ``current`` (a taxonomy) like this: oldaaa1 and oldbbb1 are current classes 1
    and 2 by scientific name (written in another case and spacing), oldccc1 and oldddd1 are species
    ``current`` lacks. The first recording has secondary labels secmap1 (current class 3), secgone1
    (an eBird species ``current`` lacks) and nosuch1 (in no taxonomy); one more row's label
    (nosuch9) is in no taxonomy at all.
    """
    from birdclef.data.demo import make_demo_dataset

    make_demo_dataset(root, n_classes=4, recordings_per_class=2, recording_s=(3.0, 4.0), n_train_soundscapes=1,
                      n_test_soundscapes=1, soundscape_s=15.0, speech_fraction=0.0, seed=seed)
    demo = pd.read_csv(root / "taxonomy.csv", dtype=str)["primary_label"].tolist()
    code = dict(zip(demo, EXTRA_CODES))
    for old, new in code.items():
        (root / "train_audio" / old).rename(root / "train_audio" / new)
    train = pd.read_csv(root / "train.csv", dtype=str, keep_default_na=False)
    train["primary_label"] = train["primary_label"].map(code)
    train["filename"] = [f"{code[f.split('/')[0]]}/{f.split('/')[1]}" for f in train["filename"]]
    train["secondary_labels"] = ["['secmap1', 'secgone1', 'nosuch1']"] + ["[]"] * (len(train) - 1)
    train = pd.concat([train, train.iloc[[0]].assign(primary_label="nosuch9", filename="nosuch9/XC1.ogg",
                                                     secondary_labels="[]")], ignore_index=True)
    train[[c for c in TRAIN_COLUMNS if c != "collection"]].to_csv(root / "train_metadata.csv", index=False)
    names = current["scientific_name"].tolist()
    ebird = pd.DataFrame({
        "TAXON_ORDER": range(1, 7), "CATEGORY": "species",
        "SPECIES_CODE": [*EXTRA_CODES, "secmap1", "secgone1"],
        "PRIMARY_COM_NAME": ["Old A", "Old B", "Old C", "Old D", "Secondary Map", "Secondary Gone"],
        "SCI_NAME": [names[1].upper(), f"  {names[2].replace(' ', '   ')} ", "Nomen nudum", "Nomen ignotum",
                     names[3], "Nomen secundum"],
        "ORDER1": "Passeriformes", "FAMILY": "Nullidae", "SPECIES_GROUP": "", "REPORT_AS": ""})
    ebird.to_csv(root / "eBird_Taxonomy_v2021.csv", index=False)
    (root / "train_soundscapes").rename(root / "unlabeled_soundscapes")
    for name in ("taxonomy.csv", "train.csv", "sample_submission.csv", "solution.csv", "speech.csv",
                 "train_soundscapes_solution.csv"):
        (root / name).unlink()
    shutil.rmtree(root / "test_soundscapes")
    return root


def make_extra_own(root: Path, competition: Path, *, n: int = 3) -> Path:
    """A folder in this project's layout holding copies of ``n`` of ``competition``'s recordings under
    the same file names, their labels renamed (``<label>x``): they map back by scientific name."""
    taxonomy = pd.read_csv(competition / "taxonomy.csv", dtype=str, keep_default_na=False)
    train = pd.read_csv(competition / "train.csv", dtype=str, keep_default_na=False).iloc[:n]
    for f in train["filename"]:
        (root / "train_audio" / f"{f.split('/')[0]}x").mkdir(parents=True, exist_ok=True)
        shutil.copy2(competition / "train_audio" / f, root / "train_audio" / f"{f.split('/')[0]}x" / f.split("/")[1])
    taxonomy.assign(primary_label=taxonomy["primary_label"] + "x").to_csv(root / "taxonomy.csv", index=False)
    train.assign(primary_label=train["primary_label"] + "x", secondary_labels="[]",
                 filename=[f"{f.split('/')[0]}x/{f.split('/')[1]}" for f in train["filename"]]
                 ).to_csv(root / "train.csv", index=False)
    return root


@pytest.fixture(scope="module")
def current_taxonomy() -> pd.DataFrame:
    """A current taxonomy of four classes (labels c0-c3) with real species names."""
    return pd.DataFrame({"primary_label": ["c0", "c1", "c2", "c3"], "inat_taxon_id": ["", "", "", ""],
                         "scientific_name": ["Parus major", "Boana minor", "Turdus migratorius", "Myiobius montanus"],
                         "common_name": ["a", "b", "c", "d"], "class_name": ["Aves", "Amphibia", "Aves", "Aves"]})


@pytest.fixture(scope="module")
def extra_2023(tmp_path_factory, current_taxonomy) -> Path:
    return make_extra_2023(tmp_path_factory.mktemp("extra") / "birdclef-2023", current_taxonomy)


def test_extra_2023_labels_map_by_scientific_name(extra_2023, current_taxonomy):
    from birdclef.data.competition import extra_layout, load_extra_recordings

    assert extra_layout(extra_2023) == "2023"
    extra = load_extra_recordings(extra_2023, current_taxonomy)
    rec = extra.recordings
    assert extra.layout == "2023" and extra.n_rows == 9
    assert sorted(rec["primary_label"]) == ["c1", "c1", "c2", "c2"]  # case and spacing ignored
    assert dict(zip(rec["source_label"], rec["primary_label"])) == {"oldaaa1": "c1", "oldbbb1": "c2"}
    assert set(rec["source"]) == {str(extra_2023.resolve())}
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in rec["path"])
    assert [Path(p).relative_to(extra_2023.resolve() / "train_audio").as_posix() for p in rec["path"]] == rec["filename"].tolist()
    # the columns of load_train_metadata, plus source_label, path and source
    assert {"primary_label", "secondary_labels", "filename", "secondary_list", "author", "source_label", "path",
            "source"} <= set(rec.columns) and "collection" not in rec.columns
    # unmatched species: dropped and counted by species
    assert extra.dropped_species.to_dict("records") == [
        {"source_label": "oldccc1", "scientific_name": "Nomen nudum", "recordings": 2},
        {"source_label": "oldddd1", "scientific_name": "Nomen ignotum", "recordings": 2}]
    reasons = dict(zip(extra.skipped["filename"], extra.skipped["reason"]))
    assert len(reasons) == 5 and "not in taxonomy" in reasons["nosuch9/XC1.ogg"]
    assert sum("'Nomen nudum' (oldccc1) not in the current taxonomy" in r for r in reasons.values()) == 2


def test_extra_secondary_labels_map_through_the_folders_own_taxonomy(extra_2023, current_taxonomy):
    from birdclef.data.competition import load_extra_recordings

    extra = load_extra_recordings(extra_2023, current_taxonomy)
    first = extra.recordings.iloc[0]
    assert first["source_label"] == "oldaaa1" and first["secondary_list"] == ["c3"]
    assert extra.recordings["secondary_list"].iloc[1:].map(len).sum() == 0
    assert sorted(extra.dropped_secondary.itertuples(index=False, name=None)) == [
        ("nosuch1", "", 1), ("secgone1", "Nomen secundum", 1)]


def test_extra_folders_get_collision_free_filenames_and_copies_are_used_once(extra_2023, current_taxonomy, tmp_path):
    from birdclef.data.competition import SAME_AUDIO_FILE, load_extra_data

    twin = tmp_path / "birdclef-2023"  # another folder of the same name: a copy of the same recordings
    shutil.copytree(extra_2023, twin)
    rec, skipped = load_extra_data([extra_2023, twin, extra_2023], current_taxonomy)
    assert len(rec) == 4 and rec["filename"].is_unique and rec["path"].is_unique
    assert {f.split("/")[0] for f in rec["filename"]} == {"birdclef-2023"}
    reasons = skipped.set_index("filename")["reason"]
    # the copy: other audio files of the same recordings (the same URLs)
    copy = reasons[reasons.index.str.startswith("birdclef-2023-2/") & reasons.str.contains("already used")]
    assert len(copy) == 4 and (copy == "the same URL as a recording already used").all()
    # the same folder listed twice: its recordings are used once
    again = reasons[reasons.index.str.startswith("birdclef-2023-3/")]
    assert (again == SAME_AUDIO_FILE).sum() == 4
    # the competition's own files are excluded the same way
    rec2, skipped2 = load_extra_data([extra_2023], current_taxonomy, exclude=rec["path"].iloc[:1])
    assert len(rec2) == 3 and (skipped2["reason"] == SAME_AUDIO_FILE).sum() == 1


EXTRA_ROWS = [("c1/XC100.ogg", "https://xeno-canto.org/100"), ("c1/Dawn_Chorus.wav", ""),
              ("c1/iNat300.ogg", "https://www.inaturalist.org/observations/300"), ("c1/keep.ogg", "")]


@pytest.fixture
def small_extra(tmp_path) -> Path:
    """A folder in this project's layout of 4 recordings of class c1 (train.csv rows only: no audio is
    opened): an XC one with its URL, one named without a catalogue number, an iNat one, one more."""
    root = tmp_path / "small"
    root.mkdir()
    pd.DataFrame({"primary_label": ["c1"], "scientific_name": ["Boana minor"]}).to_csv(root / "taxonomy.csv", index=False)
    pd.DataFrame({"primary_label": "c1", "secondary_labels": "[]", "filename": [f for f, _ in EXTRA_ROWS],
                  "url": [u for _, u in EXTRA_ROWS], "author": "x"}).to_csv(root / "train.csv", index=False)
    return root


@pytest.mark.parametrize("competition, duplicate, reason", [
    ([("c1/other.ogg", "http://www.Xeno-canto.org/100/")], "c1/XC100.ogg", "the same URL"),
    ([("c1/XC100_renamed.ogg", "")], "c1/XC100.ogg", "the same catalogue number"),
    ([("c1/x.ogg", "https://www.inaturalist.org/observations/300?tab=sounds")], "c1/iNat300.ogg",
     "the same catalogue number"),
    ([("c2/dawn_chorus.wav", "")], "c1/Dawn_Chorus.wav", "the same file name"),
])
def test_an_extra_recording_repeating_a_competition_one_is_skipped_with_its_rule(
        small_extra, current_taxonomy, caplog, competition, duplicate, reason):
    from birdclef.data.competition import load_extra_data

    metadata = pd.DataFrame(competition, columns=["filename", "url"])
    with caplog.at_level("WARNING", logger="birdclef.data.competition"):
        rec, skipped = load_extra_data([small_extra], current_taxonomy, metadata=metadata)
    assert sorted(rec["filename"]) == sorted(f"small/{f}" for f, _ in EXTRA_ROWS if f != duplicate)
    assert skipped.to_dict("records") == [{"filename": f"small/{duplicate}",
                                           "reason": f"{reason} as a recording already used"}]
    assert [r.getMessage() for r in caplog.records] == [
        f"extra data: 1 recording(s) skipped as duplicates: {reason} as a recording already used"]


def test_duplicates_are_counted_per_rule_and_look_alikes_are_kept(small_extra, current_taxonomy, caplog):
    from birdclef.data.competition import load_extra_data

    metadata = pd.DataFrame([("c1/a.ogg", "https://xeno-canto.org/100"),
                             ("c1/b.ogg", "https://inaturalist.org/observations/300"),  # www. left out
                             ("c2/keep.ogg", "")], columns=["filename", "url"])
    exclude = [small_extra / "train_audio" / "c1" / "Dawn_Chorus.wav"]  # the competition holds this very file
    with caplog.at_level("WARNING", logger="birdclef.data.competition"):
        rec, skipped = load_extra_data([small_extra], current_taxonomy, exclude=exclude, metadata=metadata)
    assert rec.empty and len(skipped) == 4
    assert sorted(r.getMessage() for r in caplog.records) == [
        "extra data: 1 recording(s) skipped as duplicates: the same audio file is already used",
        "extra data: 1 recording(s) skipped as duplicates: the same file name as a recording already used",
        "extra data: 2 recording(s) skipped as duplicates: the same URL as a recording already used"]
    # another collection's number 100 or 300, other names, no URL: other recordings
    others = pd.DataFrame([("c1/iNat100.ogg", ""), ("c1/XC300.ogg", "https://xeno-canto.org/300"),
                           ("c1/Dawn_Chorus_2.wav", ""), ("c1/kept.ogg", "nan")], columns=["filename", "url"])
    caplog.clear()
    with caplog.at_level("WARNING", logger="birdclef.data.competition"):
        rec, skipped = load_extra_data([small_extra], current_taxonomy, metadata=others)
    assert len(rec) == 4 and skipped.empty and not caplog.records


def test_extra_data_summary_counts_per_folder(extra_2023, current_taxonomy):
    from birdclef.data.competition import extra_data_summary

    table = extra_data_summary([extra_2023], current_taxonomy)
    assert table.to_dict("records") == [{
        "folder": str(extra_2023.resolve()), "layout": "2023", "recordings": 9, "mapped": 4, "dropped": 4,
        "skipped": 1, "species_mapped": 2, "species_dropped": 2, "secondary_dropped": 2, "soundscapes": 1}]
    assert extra_data_summary([], current_taxonomy).empty


def test_an_own_layout_folder_maps_by_scientific_name(tiny_demo, tmp_path):
    from birdclef.data.competition import extra_layout, load_extra_recordings

    own = make_extra_own(tmp_path / "own", tiny_demo)
    taxonomy = load_taxonomy(tiny_demo / "taxonomy.csv")
    assert extra_layout(own) == "2025"
    extra = load_extra_recordings(own, taxonomy)
    train = pd.read_csv(tiny_demo / "train.csv", dtype=str).iloc[:3]
    assert extra.recordings["primary_label"].tolist() == train["primary_label"].tolist()
    assert extra.recordings["source_label"].tolist() == [x + "x" for x in train["primary_label"]]
    assert extra.dropped_species.empty and extra.skipped.empty


def test_a_folder_of_neither_layout_is_refused(tmp_path, current_taxonomy):
    from birdclef.data.competition import load_extra_recordings

    with pytest.raises(FileNotFoundError, match=r"train_metadata\.csv \+ eBird_Taxonomy_v2021\.csv"):
        load_extra_recordings(tmp_path, current_taxonomy)


REALDEV = Path(os.environ.get("BIRDCLEF_REALDEV") or Path(__file__).resolve().parents[2] / "shared" / "realdev")


def test_realdev_as_an_extra_folder():
    from birdclef.data.competition import extra_data_summary, load_extra_recordings

    if not (REALDEV / "train.csv").is_file():
        pytest.skip(f"{REALDEV} not here (set BIRDCLEF_REALDEV to a folder in the BirdCLEF layout)")
    own = load_taxonomy(REALDEV / "taxonomy.csv")
    extra = load_extra_recordings(REALDEV, own)  # onto its own taxonomy: every recording maps to its own label
    assert len(extra.recordings) == extra.n_rows and extra.dropped_species.empty
    assert (extra.recordings["primary_label"] == extra.recordings["source_label"]).all()
    assert extra.recordings["path"].map(lambda p: Path(p).is_file()).all()
    # onto BirdCLEF 2025's taxonomy: only the species both share map, the rest are dropped and counted
    tax_2025 = load_taxonomy(FIXTURES / "taxonomy_2025.csv")
    summary = extra_data_summary([REALDEV], tax_2025).iloc[0]
    assert summary["mapped"] + summary["dropped"] + summary["skipped"] == summary["recordings"] == extra.n_rows
    assert 0 < summary["mapped"] < summary["recordings"] and summary["species_dropped"] > 0
    names_2025 = {" ".join(n.lower().split()) for n in tax_2025["scientific_name"]}
    mapped = load_extra_recordings(REALDEV, tax_2025).recordings
    assert set(mapped["primary_label"]) <= set(tax_2025["primary_label"])
    assert {" ".join(n.lower().split()) for n in mapped["scientific_name"]} <= names_2025
