from pathlib import Path

import pandas as pd
import pytest

import numpy as np
import soundfile as sf

from birdclef.data import (
    TRAIN_COLUMNS, TRAIN_COLUMNS_2026, competition_paths, data_card, detect_layout, load_soundscape_labels,
    load_taxonomy, load_train_metadata, parse_label_list, parse_soundscape_name,
)
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
