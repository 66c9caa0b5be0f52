from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from birdclef.data.competition import load_taxonomy, n_windows
from birdclef.errors import SubmissionError
from birdclef.submission.submit import build_submission, row_ids, validate_submission, write_submission

FIXTURES = Path(__file__).parent / "fixtures"


def real_labels():
    return load_taxonomy(FIXTURES / "taxonomy_2025.csv")["primary_label"].tolist()


def test_row_ids_end_seconds():
    assert row_ids("H02_20230420_074000", 12)[:2] == ["H02_20230420_074000_5", "H02_20230420_074000_10"]
    assert row_ids("x", 12)[-1] == "x_60"


@pytest.mark.parametrize("duration,rows", [(60.0, 12), (59.9999, 12), (62.0, 13), (3.0, 1), (0.1, 1), (120.0, 24)])
def test_rows_a_duration_implies(duration, rows):
    assert n_windows(duration, 5.0) == rows


def test_real_taxonomy_gives_the_sample_submission_header():
    labels = real_labels()
    assert len(labels) == 206
    rng = np.random.default_rng(0)
    sub = build_submission({"soundscape_1": rng.random((12, 206)), "soundscape_2": rng.random((12, 206))}, labels)
    header = pd.read_csv(FIXTURES / "sample_submission_header_2025.csv", dtype=str).columns.tolist()
    assert list(sub.columns) == header and len(header) == 207
    validate_submission(sub, labels, row_ids("soundscape_1", 12) + row_ids("soundscape_2", 12))


def _valid(labels=("a", "b")):
    sub = build_submission({"s": np.full((12, len(labels)), 0.5)}, list(labels))
    return sub, list(labels), row_ids("s", 12)


@pytest.mark.parametrize("breakage", [
    lambda s: s.iloc[:-1],  # a lost row
    lambda s: s.iloc[::-1],  # rows out of order
    lambda s: s[["row_id", "b", "a"]],  # columns out of taxonomy order
    lambda s: s.drop(columns=["b"]),
    lambda s: s.assign(a=np.nan),
    lambda s: s.assign(a=1.5),
    lambda s: s.assign(a=-0.1),
])
def test_validate_rejects(breakage):
    sub, labels, expected = _valid()
    validate_submission(sub, labels, expected)
    with pytest.raises(SubmissionError):
        validate_submission(breakage(sub), labels, expected)


def test_the_written_csv_reads_back_as_the_submission_to_six_significant_digits(tmp_path):
    rng = np.random.default_rng(0)
    sub = build_submission({"s": rng.random((12, 2)) / 7}, ["a", "b"])
    back = pd.read_csv(write_submission(sub, tmp_path / "submission.csv"), dtype={"row_id": str})
    assert list(back.columns) == ["row_id", "a", "b"] and back["row_id"].tolist() == row_ids("s", 12)
    np.testing.assert_allclose(back[["a", "b"]].to_numpy(), sub[["a", "b"]].to_numpy(), rtol=1e-5)


def test_atomic_write_keeps_old_file_when_writing_fails(tmp_path, monkeypatch):
    sub, *_ = _valid()
    out = write_submission(sub, tmp_path / "submission.csv")
    before = out.read_text()

    def boom(self, *a, **k):
        Path(a[0]).write_text("row_id,a\nhalf")
        raise KeyboardInterrupt

    monkeypatch.setattr(pd.DataFrame, "to_csv", boom)
    with pytest.raises(KeyboardInterrupt):
        write_submission(sub.assign(a=0.1), out)
    assert out.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["submission.csv"]


def test_the_kaggle_time_estimate_warns_past_the_limit():
    import warnings

    from birdclef.submission.submit import kaggle_estimate_minutes

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # 1 s per file on 4 cores like Kaggle's: 600 files × 1 s / 60 × 1.5 safety + 1 min start = 16 min
        assert kaggle_estimate_minutes(10.0, 10, cores=4) == pytest.approx(16.0)
        assert kaggle_estimate_minutes(10.0, 10, cores=2) == pytest.approx(8.5)  # two cores here: Kaggle's four do twice
        assert kaggle_estimate_minutes(5.0, 1) is None
    with pytest.warns(UserWarning, match="over Kaggle's 90-min limit"):
        assert kaggle_estimate_minutes(20.0, 2, cores=4) == pytest.approx(151.0)  # 10 s per file


def test_the_whole_commands_set_up_counts_once_with_the_safety_factor():
    from birdclef.submission.submit import KAGGLE_SAFETY, command_overhead_minutes

    assert command_overhead_minutes({"seconds": 30.0, "command_seconds": 90.0}) == pytest.approx(KAGGLE_SAFETY)
    assert command_overhead_minutes({"seconds": 30.0}) == 0.0  # a speed file written before command_seconds
