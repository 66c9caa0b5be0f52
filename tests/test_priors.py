"""Site and time-of-day priors (birdclef.postprocess.priors)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from birdclef.postprocess.priors import apply_shift, fit_site_prior, hour_key, prior_shift

LABELS = ["a", "b", "c"]


def windows(rows):
    return pd.DataFrame(rows, columns=["site", "hour", "labels"])


def test_a_site_full_of_one_class_raises_it_there_and_few_windows_move_little():
    rows = [("S01", 5, "a")] * 40 + [("S02", 20, "b")] * 40 + [("S03", 20, "a")] * 2 + [(None, None, "c")] * 10
    table = fit_site_prior(windows(rows), LABELS)
    assert set(table.index) == {"site:S01", "site:S02", "site:S03", hour_key(5), hour_key(20)}
    assert table.loc["site:S01", "n_windows"] == 40 and hour_key(5) == "hour:03-06"
    assert table.loc["site:S01", "a"] > 1.0 and table.loc["site:S01", "b"] < -1.0
    assert table.loc["site:S02", "b"] > 1.0 and table.loc["site:S02", "a"] < -1.0
    # two windows are weak evidence: the same direction as S01, a fraction of its size
    assert 0 < table.loc["site:S03", "a"] < table.loc["site:S01", "a"] / 2
    # c is heard only where the site is unknown: no site raises it
    assert (table["c"] < 0).all()


def test_shift_of_a_soundscape_adds_its_site_and_hour_and_ignores_what_it_cannot_read():
    table = fit_site_prior(windows([("S01", 5, "a")] * 20 + [("S02", 20, "b")] * 20), LABELS)
    name = "BC2026_Test_0001_S01_20250227_050002.ogg"
    expected = table.loc["site:S01", LABELS].to_numpy() + table.loc[hour_key(5), LABELS].to_numpy()
    np.testing.assert_allclose(prior_shift(table, name, LABELS), expected, rtol=1e-5)
    only_hour = prior_shift(table, "BC2026_Test_0002_S99_20250227_050002.ogg", LABELS)  # unseen site
    np.testing.assert_allclose(only_hour, table.loc[hour_key(5), LABELS].to_numpy(), rtol=1e-5)
    assert not prior_shift(table, "XC12345.ogg", LABELS).any()  # no site or time in the name
    assert not prior_shift(fit_site_prior(windows([]), LABELS), name, LABELS).any()


def test_apply_shift_moves_probabilities_in_logit_space_and_weight_zero_is_identity():
    prob = np.array([[0.5, 0.2, 0.9]], np.float32)
    np.testing.assert_array_equal(apply_shift(prob, np.array([1.0, -1.0, 0.0]), 0.0), prob)
    out = apply_shift(prob, np.array([np.log(3.0), -np.log(3.0), 0.0]), 1.0)
    np.testing.assert_allclose(out, [[0.75, 0.2 / (0.2 + 0.8 * 3), 0.9]], rtol=1e-5)
    assert out is not prob


@pytest.mark.parametrize("weight", [-0.5])
def test_negative_weight_is_refused(weight):
    from birdclef.config import build_config

    with pytest.raises(ValueError, match="site_prior_weight"):
        build_config(backbone="melstats", site_prior_weight=weight)
