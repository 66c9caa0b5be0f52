import ast
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from scipy.signal import butter, sosfiltfilt, stft

from birdclef.data import demo
from birdclef.data.demo import DemoSummary, make_demo_dataset

SMALL = dict(n_classes=6, recordings_per_class=2, recording_s=(4.0, 8.0), n_train_soundscapes=1,
             n_test_soundscapes=2, speech_fraction=0.5, seed=7)
TINY = dict(n_classes=3, recordings_per_class=1, recording_s=(3.0, 4.0), n_train_soundscapes=1,
            n_test_soundscapes=1, soundscape_s=15.0, speech_fraction=1.0, seed=3)
CSVS = ["taxonomy.csv", "train.csv", "sample_submission.csv", "solution.csv",
        "train_soundscapes_solution.csv", "speech.csv"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, DemoSummary]:
    root = tmp_path_factory.mktemp("demo")
    return root, make_demo_dataset(root, **SMALL)


def read(root: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(root / name, dtype=str, keep_default_na=False)


def audio_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.ogg"))


def test_layout_and_summary(dataset):
    root, summary = dataset
    for name in CSVS:
        assert (root / name).is_file(), name
    assert summary.root == root
    assert summary.n_classes == 6 and summary.n_recordings == 12
    assert summary.n_train_soundscapes == 1 and summary.n_test_soundscapes == 2
    assert len(list((root / "train_audio").rglob("*.ogg"))) == 12
    assert len(list((root / "train_soundscapes").glob("*.ogg"))) == 1
    assert len(list((root / "test_soundscapes").glob("*.ogg"))) == 2
    durations = sum(sf.info(p).frames / sf.info(p).samplerate for p in audio_files(root))
    assert summary.total_audio_s == pytest.approx(durations, abs=0.01)
    assert not [p for p in root.rglob("*") if p.name.endswith(".tmp")]


def test_taxonomy_matches_the_competition_file(dataset):
    root, _ = dataset
    tax = read(root, "taxonomy.csv")
    assert list(tax.columns) == demo.TAXONOMY_COLUMNS
    labels = tax.primary_label.tolist()
    assert labels == sorted(labels) and len(set(labels)) == 6
    assert any(label.isdigit() for label in labels)  # iNat ids for non-birds
    assert any(re.fullmatch(r"[a-z]{4,6}\d", label) for label in labels)  # eBird codes
    assert set(tax.class_name) <= {"Aves", "Amphibia", "Insecta", "Mammalia"}
    assert tax.common_name.str.endswith(" ").any()
    assert tax.scientific_name.str.endswith(" ").any()
    numeric = tax[tax.primary_label.str.isdigit()]
    assert (numeric.primary_label == numeric.inat_taxon_id).all()


def test_train_csv_rows_point_at_their_recordings(dataset):
    root, _ = dataset
    train = read(root, "train.csv")
    tax = read(root, "taxonomy.csv").set_index("primary_label")
    assert list(train.columns) == demo.TRAIN_COLUMNS
    assert len(train) == 12
    for row in train.itertuples():
        assert re.fullmatch(rf"{re.escape(row.primary_label)}/(XC|iNat|CSA)\d+\.ogg", row.filename)
        assert row.filename.split("/")[1].startswith(row.collection)
        assert (root / "train_audio" / row.filename).is_file()
        secondary = ast.literal_eval(row.secondary_labels)
        assert isinstance(secondary, list)
        assert set(secondary) <= set(tax.index) and row.primary_label not in secondary
        assert isinstance(ast.literal_eval(row.type), list)
        assert 0.0 <= float(row.rating) <= 5.0
        assert row.common_name == tax.loc[row.primary_label, "common_name"]
        assert row.scientific_name == tax.loc[row.primary_label, "scientific_name"]
    assert set(train.collection) <= {"XC", "iNat", "CSA"}
    assert (train.secondary_labels != "[]").any()
    assert set(tax.index) == set(train.primary_label)


def test_all_audio_is_32k_mono_vorbis(dataset):
    root, _ = dataset
    lo_s, _ = SMALL["recording_s"]
    for path in audio_files(root):
        info = sf.info(path)
        assert (info.samplerate, info.channels, info.format, info.subtype) == (32_000, 1, "OGG", "VORBIS")
        wave, sr = sf.read(path, dtype="float32")
        assert wave.ndim == 1 and np.isfinite(wave).all() and np.abs(wave).max() <= 1.0
        if "soundscapes" in path.parent.name:
            assert len(wave) == 60 * 32_000
            assert re.fullmatch(r"H\d\d_20\d{6}_\d{6}", path.stem)
        else:
            assert len(wave) >= lo_s * 32_000 - 1


def test_solution_has_one_row_per_window_in_taxonomy_order(dataset):
    root, _ = dataset
    labels = read(root, "taxonomy.csv").primary_label.tolist()
    for folder, name in (("test_soundscapes", "solution.csv"),
                         ("train_soundscapes", "train_soundscapes_solution.csv")):
        solution = pd.read_csv(root / name, dtype={"row_id": str})
        assert list(solution.columns) == ["row_id", *labels]
        stems = sorted(p.stem for p in (root / folder).glob("*.ogg"))
        assert solution.row_id.tolist() == [f"{s}_{end}" for s in stems for end in range(5, 61, 5)]
        values = solution[labels].to_numpy()
        assert values.dtype.kind == "i" and set(np.unique(values)) <= {0, 1}
        assert values.sum() > 0


def test_labelled_windows_hold_calls(dataset):
    """A window marked positive stands out of the soundscape's noise floor in some band."""
    root, _ = dataset
    solution = pd.read_csv(root / "solution.csv", dtype={"row_id": str})
    speech = pd.read_csv(root / "speech.csv")
    labels = solution.columns[1:]
    positive_scores, empty_scores = [], []
    for stem in dict.fromkeys(r.rsplit("_", 1)[0] for r in solution.row_id):
        wave, sr = sf.read(root / "test_soundscapes" / f"{stem}.ogg", dtype="float32")
        freqs, times, spec = stft(wave, sr, nperseg=1024)
        power = np.abs(spec[freqs >= 250]) ** 2
        floor = np.median(power, axis=1)
        talk = speech[speech.filename == f"test_soundscapes/{stem}.ogg"]
        rows = solution[solution.row_id.str.startswith(stem + "_")]
        for k, positive in enumerate(rows[labels].sum(axis=1) > 0):
            if ((talk.start_s < (k + 1) * 5) & (talk.end_s > k * 5)).any():
                continue  # speech is loud too, and unlabelled
            in_window = (times >= k * 5) & (times < (k + 1) * 5)
            score = np.max(power[:, in_window].mean(axis=1) / floor)
            (positive_scores if positive else empty_scores).append(score)
    assert positive_scores and empty_scores
    assert np.median(positive_scores) > 4 * np.median(empty_scores)


def test_sample_submission(dataset):
    root, _ = dataset
    labels = read(root, "taxonomy.csv").primary_label.tolist()
    sample = pd.read_csv(root / "sample_submission.csv", dtype={"row_id": str})
    first = sorted(p.stem for p in (root / "test_soundscapes").glob("*.ogg"))[0]
    assert list(sample.columns) == ["row_id", *labels]
    assert sample.row_id.tolist() == [f"{first}_5", f"{first}_10", f"{first}_15"]
    np.testing.assert_allclose(sample[labels].to_numpy(), 1 / len(labels))


def test_speech_segments_hold_voice_band_energy(dataset):
    root, _ = dataset
    speech = pd.read_csv(root / "speech.csv")
    assert list(speech.columns) == ["filename", "start_s", "end_s"]
    # Half the recordings plus one train and one test soundscape.
    assert len(speech) == 6 + 2
    assert speech.filename.str.startswith("train_soundscapes/").sum() == 1
    assert speech.filename.str.startswith("test_soundscapes/").sum() == 1
    band = butter(4, [100, 4_000], btype="bandpass", fs=32_000, output="sos")
    for row in speech.itertuples():
        wave, sr = sf.read(root / row.filename, dtype="float64")
        assert 0 <= row.start_s < row.end_s <= len(wave) / sr
        assert 1.0 < row.end_s - row.start_s < 8.0
        voiced = sosfiltfilt(band, wave)
        start, end = int(row.start_s * sr), int(row.end_s * sr)
        # Calls keep clear of speech, so the half second beside it is background only.
        if end + int(0.75 * sr) <= len(wave):
            nearby = voiced[end + sr // 4:end + 3 * sr // 4]
        else:
            nearby = voiced[start - 3 * sr // 4:start - sr // 4]
        ratio_db = 10 * np.log10(np.mean(voiced[start:end] ** 2) / np.mean(nearby ** 2))
        assert ratio_db > 6.0, (row.filename, ratio_db)


def test_same_seed_same_dataset_other_seed_differs(tmp_path):
    first = make_demo_dataset(tmp_path / "a", **TINY)
    make_demo_dataset(tmp_path / "b", **TINY)
    other = make_demo_dataset(tmp_path / "c", **{**TINY, "seed": 4, "speech_fraction": 0.0})
    assert first.total_audio_s > 0
    for name in CSVS:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    files_a = audio_files(tmp_path / "a")
    assert [p.relative_to(tmp_path / "a") for p in files_a] == \
        [p.relative_to(tmp_path / "b") for p in audio_files(tmp_path / "b")]
    for path in files_a:
        twin = tmp_path / "b" / path.relative_to(tmp_path / "a")
        np.testing.assert_array_equal(sf.read(path)[0], sf.read(twin)[0])
    assert (tmp_path / "a" / "train.csv").read_bytes() != (tmp_path / "c" / "train.csv").read_bytes()
    assert other.total_audio_s != first.total_audio_s
    # Regenerating into the same folder is allowed and changes nothing.
    before = (tmp_path / "a" / "solution.csv").read_bytes()
    make_demo_dataset(tmp_path / "a", **TINY)
    assert (tmp_path / "a" / "solution.csv").read_bytes() == before


def test_refuses_a_folder_holding_other_audio(tmp_path):
    stray = tmp_path / "train_audio" / "abc1" / "XC1.ogg"
    stray.parent.mkdir(parents=True)
    sf.write(stray, np.zeros(3_200, np.float32), 32_000, format="OGG", subtype="VORBIS")
    with pytest.raises(FileExistsError, match="XC1.ogg"):
        make_demo_dataset(tmp_path, **TINY)


def test_no_speech_needs_no_tts(tmp_path, monkeypatch):
    def unavailable(*_args, **_kwargs):
        raise AssertionError("tts must not be called when speech_fraction == 0")

    monkeypatch.setattr(demo.dataset, "synthesize_batch", unavailable)
    make_demo_dataset(tmp_path, **{**TINY, "speech_fraction": 0.0})
    speech = pd.read_csv(tmp_path / "speech.csv")
    assert list(speech.columns) == ["filename", "start_s", "end_s"] and speech.empty


@pytest.mark.parametrize("bad", [
    {"n_classes": 1},
    {"n_classes": 2.5},
    {"recordings_per_class": 0},
    {"recording_s": (10.0, 5.0)},
    {"recording_s": (1.0, 2.0)},
    {"recording_s": 8.0},
    {"n_train_soundscapes": -1},
    {"n_test_soundscapes": 0},
    {"soundscape_s": 62.0},
    {"soundscape_s": 0},
    {"speech_fraction": 1.5},
    {"seed": -1},
    {"conditions": "jungle"},
    {"conditions": {"call_gap_s": (1, 2)}},
    {"conditions": demo.Conditions(call_gap_s=(3.0, 1.0))},
    {"conditions": demo.Conditions(soundscape_snr_db=5.0)},
    {"conditions": demo.Conditions(species_per_soundscape=(1.5, 3))},
    {"conditions": demo.Conditions(distance="yes")},
])
def test_bad_arguments_raise_value_error(tmp_path, bad):
    with pytest.raises(ValueError):
        make_demo_dataset(tmp_path, **{**TINY, **bad})
    assert not any(tmp_path.iterdir())  # nothing written before the check


def test_presets_name_valid_arguments():
    assert demo.CONDITIONS["demo"] == demo.Conditions()  # the default writes what it always wrote
    assert set(demo.PRESETS) == {"demo", "field", "2026"} and demo.PRESETS["demo"] == {}
    defaults = dict(recording_s=(6.0, 20.0), soundscape_s=60.0, speech_fraction=0.25, seed=0,
                    n_classes=12, recordings_per_class=8, n_train_soundscapes=4, n_test_soundscapes=6)
    for preset in demo.PRESETS.values():
        demo.dataset._validate(**{**defaults, **{k: v for k, v in preset.items() if k != "conditions"}})
    for conditions in demo.CONDITIONS.values():
        conditions.validate()
    field = demo.CONDITIONS["field"]
    assert field.distance and field.soundscape_snr_db[1] < demo.Conditions().soundscape_snr_db[1]


def test_distance_absorbs_high_frequencies_and_adds_a_tail():
    from birdclef.data.demo.render import _at_distance

    sr = 32_000
    t = np.arange(sr) / sr
    kept = {}
    for freq in (1_000, 12_000):
        tone = np.sqrt(2) * np.sin(2 * np.pi * freq * t)
        far = _at_distance(tone, np.random.default_rng(1))
        assert len(far) > len(tone) + 0.15 * sr  # the reverberant tail
        assert np.sqrt(np.mean(far[len(tone) + sr // 20:] ** 2)) > 1e-3
        kept[freq] = np.sqrt(np.mean(far[: len(tone)] ** 2))
    assert kept[12_000] < 0.8 * kept[1_000]


def _active_fraction(wave: np.ndarray, floor_ratio: float = 4.0) -> float:
    """Share of 50-ms frames well above the recording's quietest decile."""
    frames = wave[: len(wave) // 1600 * 1600].reshape(-1, 1600)
    power = np.mean(frames ** 2, axis=1)
    return float(np.mean(power > floor_ratio * np.quantile(power, 0.1)))


def test_conditions_shape_recordings_and_soundscapes(tmp_path):
    args = dict(n_classes=6, recordings_per_class=2, recording_s=(12.0, 12.0), n_train_soundscapes=0,
                n_test_soundscapes=2, soundscape_s=30.0, speech_fraction=0.0, seed=5)
    dense = demo.Conditions(call_gap_s=(0.2, 0.2), species_per_soundscape=(6, 6), soundscape_snr_db=(20.0, 20.0))
    sparse = demo.Conditions(call_gap_s=(6.0, 6.0), species_per_soundscape=(1, 1), soundscape_snr_db=(20.0, 20.0),
                             distance=True)
    for name, cond in (("dense", dense), ("sparse", sparse)):
        make_demo_dataset(tmp_path / name, **args, conditions=cond)
    active = {name: np.mean([_active_fraction(sf.read(p, dtype="float64")[0])
                             for p in sorted((tmp_path / name / "train_audio").rglob("*.ogg"))])
              for name in ("dense", "sparse")}
    assert active["sparse"] < 0.7 * active["dense"], active
    for name, n_species in (("dense", 6), ("sparse", 1)):
        solution = pd.read_csv(tmp_path / name / "solution.csv", dtype={"row_id": str})
        stems = solution.row_id.str.rsplit("_", n=1).str[0]
        present = solution.drop(columns="row_id").groupby(stems).max().sum(axis=1)
        assert (present == n_species).all(), (name, present.tolist())


def test_cli_writes_a_preset_with_overrides(tmp_path):
    from birdclef.cli import main

    assert main(["demo-data", str(tmp_path), "--preset", "field", "--n-classes", "3", "--recordings-per-class", "1",
                 "--n-test-soundscapes", "1", "--n-train-soundscapes", "0"]) == 0
    assert len(read(tmp_path, "taxonomy.csv")) == 3 and len(read(tmp_path, "train.csv")) == 3
    solution = pd.read_csv(tmp_path / "solution.csv", dtype={"row_id": str})
    assert len(solution) == 12
    assert (solution.drop(columns="row_id").max() == 1).all()  # field: at least 3 species per soundscape


SMALL_2026 = dict(layout="2026", n_classes=8, recordings_per_class=1, recording_s=(3.0, 4.0), n_train_soundscapes=2,
                  n_test_soundscapes=2, soundscape_s=30.0, speech_fraction=0.0, n_soundscape_only=2, seed=1)


@pytest.fixture(scope="module")
def dataset_2026(tmp_path_factory) -> tuple[Path, DemoSummary]:
    root = tmp_path_factory.mktemp("demo2026")
    return root, make_demo_dataset(root, **SMALL_2026)


def test_2026_layout_parses_with_the_data_layer(dataset_2026):
    from birdclef.data.competition import (data_card, detect_layout, load_soundscape_labels, load_taxonomy,
                                           load_train_metadata, parse_soundscape_name)

    root, summary = dataset_2026
    assert summary.layout == "2026" and len(summary.soundscape_only_classes) == 2
    assert detect_layout(root) == "2026"
    assert list(read(root, "train.csv").columns) == demo.TRAIN_COLUMNS_2026
    tax = load_taxonomy(root / "taxonomy.csv")
    assert list(tax.columns) == demo.TAXONOMY_COLUMNS
    assert any(re.fullmatch(r"\d+son\d+", label) for label in tax.primary_label)  # insect sonotypes
    train, skipped = load_train_metadata(root / "train.csv", tax)
    assert skipped.empty and (train["class_name"] != "").all() and (train["inat_taxon_id"] != "").all()
    # the released format: "HH:MM:SS" times, ';'-separated labels, every row twice
    raw = read(root, "train_soundscapes_labels.csv")
    assert list(raw.columns) == ["filename", "start", "end", "primary_label"]
    assert raw.start.str.fullmatch(r"\d\d:\d\d:\d\d").all() and raw.primary_label.str.contains(";").any()
    assert raw.duplicated().sum() == len(raw) // 2 and len(raw) > 0
    labels = load_soundscape_labels(root / "train_soundscapes_labels.csv", tax, root / "train_soundscapes")
    assert labels.skipped.empty and labels.n_duplicates == len(raw) // 2 and len(labels.windows) == len(raw) // 2
    # the windows agree with the full truth of the train soundscapes
    truth = pd.read_csv(root / "train_soundscapes_solution.csv", dtype={"row_id": str}).set_index("row_id")
    for row in labels.windows.itertuples():
        assert set(truth.columns[truth.loc[row.row_id] == 1]) == set(row.labels)
    assert (truth.sum(axis=1) > 0).sum() == len(labels.windows)
    for folder in ("train_soundscapes", "test_soundscapes"):
        for path in (root / folder).glob("*.ogg"):
            assert path.name.startswith("BC2026_" + folder.split("_")[0].title() + "_")
            assert parse_soundscape_name(path.name).site.startswith("S")
    assert set(labels.windows.site) <= {f"S{k:02d}" for k in range(1, 10)}
    sample = pd.read_csv(root / "sample_submission.csv", dtype={"row_id": str})
    assert sample.row_id.str.fullmatch(r"BC2026_Test_0001_S\d\d_\d{8}_\d{6}_(5|10|15)").all()
    card = data_card(root)
    assert card["layout"] == "2026" and card["labelled_windows"] == len(labels.windows)
    assert card["label_rows_duplicated"] == labels.n_duplicates


def test_2026_soundscape_only_classes_have_no_train_audio(dataset_2026):
    from birdclef.data.competition import load_soundscape_labels, load_taxonomy

    root, summary = dataset_2026
    only = set(summary.soundscape_only_classes)
    train = read(root, "train.csv")
    assert not only & set(train.primary_label)
    assert not only & {x for s in train.secondary_labels for x in ast.literal_eval(s)}
    assert not [p for p in (root / "train_audio").iterdir() if p.name in only]
    tax = load_taxonomy(root / "taxonomy.csv")
    windows = load_soundscape_labels(root / "train_soundscapes_labels.csv", tax).windows
    assert only <= {x for row in windows["labels"] for x in row}
    solution = pd.read_csv(root / "solution.csv", dtype={"row_id": str})
    assert (solution[sorted(only)].max() == 1).all()  # and they are scored in the test soundscapes
    assert set(tax.primary_label) == set(train.primary_label) | only


def test_2025_layout_writes_no_soundscape_labels(dataset):
    root, summary = dataset
    assert summary.layout == "2025" and summary.soundscape_only_classes == ()
    assert not (root / "train_soundscapes_labels.csv").exists()


@pytest.mark.parametrize("bad", [{"layout": "2027"}, {"n_soundscape_only": 7}, {"n_soundscape_only": 1, "layout": "2025"},
                                 {"n_soundscape_only": 1, "n_train_soundscapes": 0}])
def test_bad_2026_arguments_raise_value_error(tmp_path, bad):
    with pytest.raises(ValueError):
        make_demo_dataset(tmp_path, **{**SMALL_2026, **bad})


def test_cli_writes_the_2026_preset(tmp_path):
    from birdclef.cli import main

    assert main(["demo-data", str(tmp_path), "--preset", "2026", "--n-classes", "5", "--recordings-per-class", "1",
                 "--n-test-soundscapes", "1", "--n-train-soundscapes", "1"]) == 0
    assert (tmp_path / "train_soundscapes_labels.csv").is_file()
    assert len(read(tmp_path, "taxonomy.csv")) == 5 and len(read(tmp_path, "train.csv")) == 5 - 3
