"""Recording sessions: the groups no train / held-out or train / validation split may cut."""
import pandas as pd

from birdclef.data.sessions import catalogue_id, catalogue_number, recording_sessions


def _meta(rows):
    return pd.DataFrame(rows, columns=["filename", "author", "latitude", "longitude", "url"])


def test_same_recordist_and_place_is_one_session_other_places_are_not():
    s = recording_sessions(_meta([
        ("a/XC100.ogg", "Daniel Lane", "17.9737", "-67.0498", "https://xeno-canto.org/100"),
        ("b/XC900.ogg", "Daniel Lane", "17.9738", "-67.0497", "https://xeno-canto.org/900"),  # same place, far number
        ("c/XC101.ogg", "Daniel Lane", "18.4520", "-66.5976", "https://xeno-canto.org/101"),  # next number, other place
        ("d/XC102.ogg", "Other Person", "17.9737", "-67.0498", "https://xeno-canto.org/102"),  # same place, other recordist
    ]))
    assert s[0] == s[1]
    assert len({s[0], s[2], s[3]}) == 3


def test_adjacent_catalogue_numbers_link_recordings_without_a_place():
    s = recording_sessions(_meta([
        ("a/XC793966.ogg", "Barry Edmonston", "", "", "https://xeno-canto.org/793966"),
        ("b/XC793967.ogg", "Barry Edmonston", "", "", "https://xeno-canto.org/793967"),
        ("c/XC793969.ogg", "Barry Edmonston", "18.33", "-66.72", "https://xeno-canto.org/793969"),
        ("d/XC793990.ogg", "Barry Edmonston", "", "", "https://xeno-canto.org/793990"),  # 21 further on
        ("e/XC793968.ogg", "", "", "", "https://xeno-canto.org/793968"),  # no recordist: alone
    ]))
    assert s[0] == s[1] == s[2]
    assert s[3] != s[0] and s[4] not in (s[0], s[3])


def test_a_date_column_splits_one_place_into_days():
    meta = _meta([("a/XC1.ogg", "A", "1.0", "1.0", ""), ("b/XC50.ogg", "A", "1.0", "1.0", ""),
                  ("c/XC99.ogg", "A", "1.0", "1.0", "")]).assign(date=["2020-01-01", "2020-01-01", "2020-01-02"])
    s = recording_sessions(meta)
    assert s[0] == s[1] != s[2]


def test_catalogue_numbers_from_url_or_file_name():
    assert catalogue_number(pd.Series({"url": "https://xeno-canto.org/33703", "filename": "x.ogg"})) == 33703
    assert catalogue_number(pd.Series({"url": "", "filename": "612806/iNat799227.ogg"})) == 799227
    assert catalogue_number(pd.Series({"url": "", "filename": "612806/CSA36385.ogg"})) == 36385
    assert catalogue_number(pd.Series({"url": "", "filename": "a/recording.ogg"})) is None


def test_missing_columns_leave_fewer_links_never_an_error():
    full = _meta([("a/XC100.ogg", "A", "1.0", "1.0", "https://xeno-canto.org/100"),
                  ("b/XC500.ogg", "A", "1.0", "1.0", "https://xeno-canto.org/500"),  # same place
                  ("c/XC101.ogg", "A", "", "", "https://xeno-canto.org/101")])  # next number, no place
    assert len(set(recording_sessions(full))) == 1
    # no author: every recording its own session
    s = recording_sessions(full.drop(columns="author"))
    assert list(s) == ["session:a/XC100.ogg", "session:b/XC500.ogg", "session:c/XC101.ogg"]
    # no coordinates: only adjacent catalogue numbers (here from the file names) link
    s = recording_sessions(full.drop(columns=["latitude", "longitude", "url"]))
    assert s[0] == s[2] != s[1]
    # no URL and names without numbers: only the place links
    s = recording_sessions(full.drop(columns="url").assign(filename=["a/1.ogg", "b/2.ogg", "c/3.ogg"]))
    assert s[0] == s[1] != s[2]


def test_catalogue_ids_tell_collections_apart():
    assert catalogue_id(pd.Series({"url": "https://xeno-canto.org/33703", "filename": "x.ogg"})) == "xc:33703"
    assert catalogue_id(pd.Series({"url": "", "filename": "a/XC033703.ogg"})) == "xc:33703"
    assert catalogue_id(pd.Series({"url": "", "filename": "612806/iNat33703.ogg"})) == "inat:33703"
    assert catalogue_id(pd.Series({"url": "https://www.inaturalist.org/observations/33703"})) == "inat:33703"
    assert catalogue_id(pd.Series({"url": "", "filename": "612806/CSA33703.ogg"})) == "csa:33703"
    assert catalogue_id(pd.Series({"url": "", "filename": "a/recording.ogg"})) is None


def test_placeholder_recordists_link_nothing_and_names_compare_without_case_or_spacing():
    from birdclef.data.sessions import recordist

    for placeholder in ("unknown", " Unknown ", "UNKNOWN", "anonymous", "Anonymous", "", "nan", "N/A", "(unknown)",
                        "unknown  recordist", None, float("nan")):
        assert recordist(placeholder) == "", placeholder
    assert recordist(" Daniel   Lane ") == recordist("daniel lane") == "daniel lane"
    s = recording_sessions(_meta([
        ("a/XC100.ogg", "unknown", "17.97", "-67.05", "https://xeno-canto.org/100"),
        ("b/XC101.ogg", "Unknown ", "17.97", "-67.05", "https://xeno-canto.org/101"),  # same place, next number
        ("c/XC102.ogg", "anonymous", "17.97", "-67.05", "https://xeno-canto.org/102"),
        ("d/XC200.ogg", "Daniel Lane", "17.97", "-67.05", ""),
        ("e/XC300.ogg", "daniel  LANE", "17.97", "-67.05", ""),  # the same recordist, spelled otherwise
    ]))
    assert len({s[0], s[1], s[2], s[3]}) == 4 and s[3] == s[4]
