import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from birdclef import score
from birdclef.data.metric import macro_auc, per_class_auc
from birdclef.errors import SchemaError


def _frames(seed=0, n=40, labels=("a", "1139490", "c")):
    rng = np.random.default_rng(seed)
    truth = (rng.random((n, len(labels))) < 0.3).astype(int)
    truth[:, 2] = 0  # a class with no positive: not scored
    pred = np.clip(truth * 0.3 + rng.random(truth.shape) * 0.8, 0, 1)  # overlapping: each class's AUC its own
    ids = [f"s_{5 * (i + 1)}" for i in range(n)]
    sol = pd.DataFrame(truth, columns=list(labels)).assign(row_id=ids)
    sub = pd.DataFrame(pred, columns=list(labels)).assign(row_id=ids)
    return sol, sub, truth, pred


def test_score_is_macro_auc_over_classes_with_positives():
    sol, sub, truth, pred = _frames()
    expected = np.mean([roc_auc_score(truth[:, j], pred[:, j]) for j in (0, 1)])
    pooled = roc_auc_score(truth[:, :2].ravel(), pred[:, :2].ravel())
    assert expected < 1 and pooled != pytest.approx(expected)  # the data tell a macro mean from a pooled AUC
    assert score(sol, sub, row_id_column_name="row_id") == pytest.approx(expected)


def test_score_matches_rows_by_id_not_position():
    sol, sub, *_ = _frames()
    shuffled = sub.sample(frac=1, random_state=1)
    assert score(sol, shuffled) == pytest.approx(score(sol, sub))


def test_perfect_and_inverted_predictions():
    sol, sub, truth, _ = _frames()
    perfect = sub.copy()
    perfect[["a", "1139490", "c"]] = truth
    assert score(sol, perfect) == pytest.approx(1.0)
    perfect[["a", "1139490", "c"]] = 1 - truth
    assert score(sol, perfect) == pytest.approx(0.0)


@pytest.mark.parametrize("breakage,match", [
    (lambda s: s.iloc[1:], "missing"),
    (lambda s: s.drop(columns=["a"]), "lacks class column"),
    (lambda s: s.assign(a=np.nan), "NaN"),
    (lambda s: s.assign(a="x"), "non-numeric"),
    (lambda s: s.assign(a=np.inf), "infinite"),
    (lambda s: s.drop(columns=["row_id"]), "row_id"),
    (lambda s: s.assign(extra=0.5), r"class column\(s\) the solution lacks: \['extra'\]"),
])
def test_score_rejects_bad_submissions(breakage, match):
    sol, sub, *_ = _frames()
    with pytest.raises(SchemaError, match=match):
        score(sol, breakage(sub))


def test_score_refuses_a_solution_that_is_not_0_or_1():
    sol, sub, *_ = _frames()
    with pytest.raises(SchemaError, match="solution column 'a' has values other than 0 and 1.*swapped"):
        score(sub, sol)


def test_score_needs_a_positive():
    sol, sub, *_ = _frames()
    sol[["a", "1139490"]] = 0
    with pytest.raises(SchemaError, match="no positive"):
        score(sol, sub)


def test_per_class_auc_marks_undefined_classes_nan():
    _, _, truth, pred = _frames()
    table = per_class_auc(truth, pred, ["a", "b", "c"])
    assert list(table["label"]) == ["a", "b", "c"]
    assert np.isnan(table.loc[2, "auc"]) and table.loc[2, "positives"] == 0
    assert macro_auc(truth, pred) == pytest.approx(table["auc"].mean())


def test_auc_columns_equals_per_class_auc_ties_included():
    from birdclef.data.metric import auc_columns, per_class_auc

    rng = np.random.default_rng(0)
    y = rng.random((60, 4)) < 0.3
    y[:, 3] = False  # no positive: undefined
    s = np.round(rng.random((60, 4)), 1)  # ties
    expected = per_class_auc(y, s, list("abcd"))["auc"].to_numpy()
    np.testing.assert_allclose(auc_columns(y, s), expected, equal_nan=True)
