import os
import stat

import numpy as np
import pandas as pd
import pytest

from birdclef.io import atomic_path, read_json, write_csv, write_json, write_npz


@pytest.fixture
def umask():
    """Set a umask for one test, then restore the previous one."""
    previous = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(previous)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_artefacts_get_the_umasks_mode(tmp_path, umask, mask, mode):
    umask(mask)
    written = [write_json({"a": 1}, tmp_path / "a.json"), write_csv(pd.DataFrame({"x": [1]}), tmp_path / "a.csv"),
               write_npz(tmp_path / "a.npz", x=np.zeros(2))]
    with atomic_path(tmp_path / "a.pt", ".pt") as tmp:
        tmp.write_bytes(b"x")
    for path in [*written, tmp_path / "a.pt"]:
        assert stat.S_IMODE(path.stat().st_mode) == mode, path


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    write_json({"a": 1}, tmp_path / "a.json")
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "a.json") as tmp:
            tmp.write_text("half")
            raise RuntimeError
    assert read_json(tmp_path / "a.json") == {"a": 1} and [p.name for p in tmp_path.iterdir()] == ["a.json"]
