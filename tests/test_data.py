from pathlib import Path

import pandas as pd
import pytest

from birdclef.data import TRAIN_COLUMNS, competition_paths, load_taxonomy, load_train_metadata, parse_label_list
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
