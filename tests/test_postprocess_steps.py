"""The off-by-default post-processing steps: file_boost, taxon_smoothing, genus_smoothing."""
import dataclasses
import logging

import numpy as np
import pandas as pd
import pytest

from birdclef import postprocess
from birdclef.cli import _params
from birdclef.config import Config, build_config, load_config
from birdclef.errors import ParameterError
from birdclef.io import write_json
from birdclef.postprocess import Evidence, chain_table, run_chain, smooth_windows

NEW_STEPS = ("file_boost", "taxon_smoothing", "genus_smoothing")


def _prob(n: int = 8, c: int = 5, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.01, 0.99, (n, c)).astype(np.float32)


def _taxonomy(family: bool = False) -> pd.DataFrame:
    # two Rana frogs (one family with a Lithobates), a lone-genus bird, a lone-genus insect
    df = pd.DataFrame({
        "primary_label": ["ranfus", "ranpip", "litcat", "turmer", "apimel"],
        "scientific_name": ["Rana fusca", "Rana pipiens", "Lithobates catesbeianus", "Turdus merula", "Apis mellifera"],
        "common_name": ["a", "b", "c", "d", "e"],
        "class_name": ["Amphibia", "Amphibia", "Amphibia", "Aves", "Insecta"],
    })
    if family:
        df["family"] = ["Ranidae", "Ranidae", "Ranidae", "Turdidae", "Apidae"]
    return df


def _config(**params):
    return build_config(postprocess=NEW_STEPS, **{"file_boost_power": 0.0, **params})


def _boost(**params):
    return build_config(postprocess=("file_boost",), **{"file_boost_power": 0.0, **params})


def test_the_default_recipe_ends_with_the_file_boost_and_the_other_new_steps_are_off():
    c = build_config()
    assert c.postprocess == ("blend", "site_prior", "smoothing", "file_boost")
    assert Config().postprocess == build_config(recipe="seed").postprocess == ("blend", "site_prior", "smoothing")
    assert (c.file_boost_alpha, c.file_boost_power, c.taxon_smoothing_kernels, c.genus_weight, c.family_weight) == \
        (0.0, 1.0, (), 0.0, 0.0)
    for name in NEW_STEPS:
        assert name in postprocess.STEPS


def test_the_new_steps_with_neutral_settings_return_the_input_unchanged():
    prob = _prob()
    out = run_chain(prob, _config(), Evidence(taxonomy=_taxonomy(family=True)))
    np.testing.assert_array_equal(out, prob)
    assert out is not prob


# ---------------------------------------------------------------- file_boost

def test_file_boost_raises_each_window_toward_the_file_maximum_and_never_above_it():
    prob = _prob()
    m = prob.max(axis=0)
    out = run_chain(prob, _boost(file_boost_alpha=0.3), Evidence())
    np.testing.assert_allclose(out, prob * 0.7 + 0.3 * m, rtol=1e-6)
    assert (out >= prob - 1e-7).all() and (out <= m + 1e-7).all()
    below = prob < m - 1e-3
    assert (out[below] > prob[below]).all()  # strictly raised where the window is below the maximum
    np.testing.assert_allclose(out.max(axis=0), m, rtol=1e-6)  # the maximum itself stays
    assert out.shape == prob.shape and out.dtype == np.float32


def test_file_boost_alpha_one_gives_the_maximum_everywhere_and_zero_is_the_identity():
    prob = _prob()
    out = run_chain(prob, _boost(file_boost_alpha=1.0), Evidence())
    np.testing.assert_allclose(out, np.broadcast_to(prob.max(axis=0), prob.shape), rtol=1e-6)
    np.testing.assert_array_equal(run_chain(prob, _boost(file_boost_alpha=0.0), Evidence()), prob)


def test_file_boost_power_multiplies_by_the_file_maximum_and_beta_zero_is_the_identity():
    prob = _prob()
    prob[:, 1] *= 0.2  # a class the file is unsure of everywhere loses more than one it is sure of somewhere
    m = prob.max(axis=0)
    out = run_chain(prob, _boost(file_boost_power=2.0), Evidence())
    np.testing.assert_allclose(out, prob * m ** 2, rtol=1e-5)
    assert ((out >= 0) & (out <= 1)).all()
    np.testing.assert_array_equal(run_chain(prob, _boost(file_boost_power=0.0), Evidence()), prob)
    both = run_chain(prob, _boost(file_boost_alpha=0.5, file_boost_power=1.0), Evidence())
    np.testing.assert_allclose(both, (prob * 0.5 + 0.5 * m) * m, rtol=1e-5)


def test_file_boost_keeps_values_in_the_unit_interval_and_the_input_untouched():
    prob = _prob()
    prob[0, 0], prob[3, 2], prob[:, 4] = 1.0, 0.0, 0.0
    before = prob.copy()
    out = postprocess.file_boost(prob, alpha=0.9, power=3.0)
    assert ((out >= 0) & (out <= 1)).all()
    np.testing.assert_array_equal(out[:, 4], 0.0)  # a class absent from the file stays absent
    np.testing.assert_array_equal(prob, before)


# ---------------------------------------------------------------- taxon_smoothing

def test_taxon_smoothing_smooths_amphibia_with_its_kernel_and_leaves_birds_without_one_unchanged():
    prob = _prob()
    kernel = (0.1, 0.2, 0.4, 0.2, 0.1)
    out = run_chain(prob, _config(taxon_smoothing_kernels=("Amphibia:0.1/0.2/0.4/0.2/0.1",)),
                    Evidence(taxonomy=_taxonomy()))
    np.testing.assert_allclose(out[:, :3], smooth_windows(prob[:, :3], kernel), rtol=1e-6)
    assert np.abs(out[:, :3] - prob[:, :3]).max() > 1e-2
    np.testing.assert_array_equal(out[:, 3:], prob[:, 3:])  # Aves and Insecta have no kernel


def test_taxon_smoothing_gives_each_class_name_its_own_kernel_and_ignores_unknown_names():
    prob = _prob()
    out = run_chain(prob, _config(taxon_smoothing_kernels=("amphibia:0.1/0.2/0.4/0.2/0.1", "Aves:0.25/0.5/0.25",
                                                           "Reptilia:0.2/0.6/0.2")),
                    Evidence(taxonomy=_taxonomy()))
    np.testing.assert_allclose(out[:, :3], smooth_windows(prob[:, :3], (0.1, 0.2, 0.4, 0.2, 0.1)), rtol=1e-6)
    np.testing.assert_allclose(out[:, 3], smooth_windows(prob[:, 3:4], (0.25, 0.5, 0.25))[:, 0], rtol=1e-6)
    np.testing.assert_array_equal(out[:, 4], prob[:, 4])


# ---------------------------------------------------------------- genus_smoothing

def test_genus_smoothing_moves_a_class_toward_its_genus_mates_and_leaves_a_lone_genus_unchanged():
    prob = _prob()
    out = run_chain(prob, _config(genus_weight=0.4), Evidence(taxonomy=_taxonomy()))
    # Rana fusca (0) and Rana pipiens (1) share a genus: each takes 0.4 of the other
    np.testing.assert_allclose(out[:, 0], 0.6 * prob[:, 0] + 0.4 * prob[:, 1], rtol=1e-6)
    np.testing.assert_allclose(out[:, 1], 0.6 * prob[:, 1] + 0.4 * prob[:, 0], rtol=1e-6)
    assert (np.abs(out[:, 0] - prob[:, 1]) <= np.abs(prob[:, 0] - prob[:, 1]) + 1e-7).all()
    np.testing.assert_array_equal(out[:, 2:], prob[:, 2:])  # Lithobates, Turdus, Apis: alone in their genus


def test_genus_smoothing_takes_the_family_share_where_the_taxonomy_has_a_family_column():
    prob = _prob()
    out = run_chain(prob, _config(genus_weight=0.3, family_weight=0.2), Evidence(taxonomy=_taxonomy(family=True)))
    np.testing.assert_allclose(out[:, 0], 0.5 * prob[:, 0] + 0.3 * prob[:, 1] + 0.2 * (prob[:, 1] + prob[:, 2]) / 2,
                               rtol=1e-6)
    # Lithobates: alone in its genus (that share stays its own) but two Ranidae family-mates
    np.testing.assert_allclose(out[:, 2], 0.8 * prob[:, 2] + 0.2 * (prob[:, 0] + prob[:, 1]) / 2, rtol=1e-6)
    np.testing.assert_array_equal(out[:, 3:], prob[:, 3:])  # alone in genus and family
    assert ((out >= 0) & (out <= 1)).all()


def test_genus_smoothing_without_a_family_column_warns_once_and_uses_the_genus_share(monkeypatch, caplog):
    monkeypatch.setattr(postprocess.steps, "_WARNED", set())
    prob = _prob()
    config = _config(genus_weight=0.3, family_weight=0.2)
    with caplog.at_level(logging.WARNING, logger="birdclef.postprocess"):
        first = run_chain(prob, config, Evidence(taxonomy=_taxonomy()))
        run_chain(prob, config, Evidence(taxonomy=_taxonomy()))
    warnings = [r for r in caplog.records if "family" in r.getMessage()]
    assert len(warnings) == 1 and "no 'family' column" in warnings[0].getMessage()
    np.testing.assert_allclose(first, run_chain(prob, _config(genus_weight=0.3), Evidence(taxonomy=_taxonomy())),
                               rtol=1e-6)


# ---------------------------------------------------------------- the taxonomy as evidence

@pytest.mark.parametrize("name, settings", [("taxon_smoothing", {"taxon_smoothing_kernels": ("Amphibia:0.25/0.5/0.25",)}),
                                            ("genus_smoothing", {"genus_weight": 0.2})])
def test_a_taxonomy_step_without_the_taxonomy_is_refused_by_name(name, settings):
    config = build_config(postprocess=(name,), **settings)
    with pytest.raises(ValueError, match=rf"{name}.*needs the taxonomy"):
        run_chain(_prob(), config, Evidence())
    with pytest.raises(ValueError, match=rf"{name}.*5 rows but the probabilities 4 classes"):
        run_chain(_prob(c=4), config, Evidence(taxonomy=_taxonomy()))
    with pytest.raises(ValueError, match=rf"{name}.*column"):
        run_chain(_prob(), config, Evidence(taxonomy=_taxonomy()[["primary_label"]]))


def test_the_chain_table_shows_each_new_step_and_its_settings():
    config = _config(file_boost_alpha=0.2, taxon_smoothing_kernels="Amphibia:0.25/0.5/0.25", genus_weight=0.1)
    table = {r["step"]: r for r in chain_table(config)}
    assert [r["step"] for r in chain_table(config)] == list(NEW_STEPS)
    assert table["file_boost"]["settings"] == "file_boost_alpha=0.2, file_boost_power=0.0"
    assert table["taxon_smoothing"]["settings"] == "taxon_smoothing_kernels=('Amphibia:0.25/0.5/0.25',)"
    assert table["genus_smoothing"]["settings"] == "genus_weight=0.1, family_weight=0.0"
    assert all(r["does"] for r in table.values())


# ---------------------------------------------------------------- Config: validation, round trips

@pytest.mark.parametrize("params, message", [
    ({"file_boost_alpha": 1.5}, "file_boost_alpha must be in"),
    ({"file_boost_alpha": -0.1}, "file_boost_alpha must be in"),
    ({"file_boost_power": -1.0}, "file_boost_power must be"),
    ({"file_boost_power": float("inf")}, "file_boost_power must be"),
    ({"genus_weight": -0.1}, "genus_weight and family_weight"),
    ({"family_weight": -0.1}, "genus_weight and family_weight"),
    ({"genus_weight": 0.7, "family_weight": 0.4}, "genus_weight and family_weight"),
    ({"taxon_smoothing_kernels": ("Amphibia:0.5/0.5",)}, "taxon_smoothing_kernels.*odd"),
    ({"taxon_smoothing_kernels": ("Amphibia:0.2/-0.1/0.2",)}, "taxon_smoothing_kernels.*non-negative"),
    ({"taxon_smoothing_kernels": ("Amphibia:0/0/0",)}, "taxon_smoothing_kernels.*positive sum"),
    ({"taxon_smoothing_kernels": ("Amphibia:a/b/c",)}, "taxon_smoothing_kernels.*not numbers"),
    ({"taxon_smoothing_kernels": ("0.25/0.5/0.25",)}, "taxon_smoothing_kernels.*ClassName:w1/w2/w3"),
    ({"taxon_smoothing_kernels": ("Aves:1", "aves:0.2/0.6/0.2")}, "taxon_smoothing_kernels.*two kernels"),
    # the weights of one kernel split by commas on the command line: entries "Amphibia:0.25", "0.5", "0.25"
    ({"taxon_smoothing_kernels": "Amphibia:0.25,0.5,0.25"}, "taxon_smoothing_kernels.*'0.5'.*separate"),
])
def test_config_refuses_bad_settings_by_name(params, message):
    with pytest.raises(ValueError, match=message):
        _config(**params)


@pytest.mark.parametrize("params, step", [({"file_boost_alpha": 0.5}, "file_boost"),
                                          ({"file_boost_power": 0.5}, "file_boost"),
                                          ({"taxon_smoothing_kernels": "Amphibia:0.25/0.5/0.25"}, "taxon_smoothing"),
                                          ({"family_weight": 0.1}, "genus_smoothing")])
def test_a_setting_of_a_step_left_out_of_the_chain_is_refused_not_ignored(params, step):
    field = next(iter(params))
    with pytest.raises(ValueError, match=rf"{field}=.*'{step}' is not in postprocess"):
        build_config(postprocess=("blend", "smoothing"), **params)
    assert getattr(build_config(postprocess=("smoothing", step), **params), field) is not None


def test_the_new_fields_round_trip_through_the_saved_config(tmp_path):
    c = _config(file_boost_alpha=0.25, file_boost_power=0.5,
                taxon_smoothing_kernels=("Amphibia:0.1/0.2/0.4/0.2/0.1", "Insecta:0.25/0.5/0.25"),
                genus_weight=0.2, family_weight=0.1, work_dir=tmp_path)
    d = c.to_dict()
    assert d["taxon_smoothing_kernels"] == ["Amphibia:0.1/0.2/0.4/0.2/0.1", "Insecta:0.25/0.5/0.25"]
    write_json(d, tmp_path / "config.json")
    back = load_config(tmp_path / "config.json")
    assert back == c
    assert back.taxon_smoothing_kernels == c.taxon_smoothing_kernels and isinstance(back.taxon_smoothing_kernels, tuple)
    hash(back.taxon_smoothing_kernels)  # the frozen config holds a hashable value
    assert dataclasses.replace(back, genus_weight=0.3).genus_weight == 0.3


def test_the_new_fields_convert_from_command_line_strings():
    pairs = ["postprocess=blend,file_boost,taxon_smoothing,genus_smoothing", "file_boost_alpha=0.3",
             "file_boost_power=1", "taxon_smoothing_kernels=Amphibia:0.1/0.2/0.4/0.2/0.1,Insecta:0.25/0.5/0.25",
             "genus_weight=0.2", "family_weight=0.05"]
    c = build_config(**_params(pairs))
    assert c.postprocess == ("blend", "file_boost", "taxon_smoothing", "genus_smoothing")
    assert (c.file_boost_alpha, c.file_boost_power, c.genus_weight, c.family_weight) == (0.3, 1.0, 0.2, 0.05)
    assert c.taxon_smoothing_kernels == ("Amphibia:0.1/0.2/0.4/0.2/0.1", "Insecta:0.25/0.5/0.25")
    # a list literal (papermill -p, a notebook cell) may split a kernel's weights with commas
    listed = build_config(**_params(["postprocess=taxon_smoothing",
                                     "taxon_smoothing_kernels=['Amphibia:0.25,0.5,0.25']"]))
    assert postprocess.parse_taxon_kernels(listed.taxon_smoothing_kernels) == {"amphibia": (0.25, 0.5, 0.25)}
    with pytest.raises(ParameterError, match=r"^file_boost_alpha='high' is not valid"):
        build_config(**_params(["postprocess=file_boost", "file_boost_alpha=high"]))


# ---------------------------------------------------------------- rank_blend

def _rank_set(n_files: int = 5, n: int = 12, c: int = 4, seed: int = 1):
    """Head probabilities and backbone logits of a set of files; class 3 is unmapped."""
    rng = np.random.default_rng(seed)
    heads = [rng.uniform(0.01, 0.99, (n, c)).astype(np.float32) for _ in range(n_files)]
    logits = [rng.normal(0, 3, (n, c)).astype(np.float32) for _ in range(n_files)]
    mapped = np.array([True, True, True, False])
    return heads, logits, mapped


def _rank_chain(heads, logits, mapped, weight):
    config = build_config(postprocess=("rank_blend",), rank_blend_weight=weight)
    ref = postprocess.rank_reference(heads, logits, mapped)
    return np.concatenate([run_chain(h, config, Evidence(zero_shot_logits=z, zero_shot_weights=np.zeros(len(mapped)),
                                                         rank_reference=ref)) for h, z in zip(heads, logits)])


def test_rank_blend_weight_zero_keeps_the_head_and_weight_one_takes_the_backbones_order_over_all_files():
    from scipy.stats import rankdata

    heads, logits, mapped = _rank_set()
    head, logit = np.concatenate(heads), np.concatenate(logits)
    np.testing.assert_allclose(_rank_chain(heads, logits, mapped, 0.0), head, rtol=1e-6)
    one = _rank_chain(heads, logits, mapped, 1.0)
    for j in np.flatnonzero(mapped):  # the backbone's order over every window of every file, on the head's values
        np.testing.assert_array_equal(rankdata(one[:, j]), rankdata(logit[:, j]))
        np.testing.assert_allclose(np.sort(one[:, j]), np.sort(head[:, j]), rtol=1e-6)
    np.testing.assert_array_equal(one[:, 3], head[:, 3])  # unmapped: untouched


def test_rank_blend_is_the_weighted_mean_of_the_ranks_over_the_whole_set():
    from scipy.stats import rankdata

    heads, logits, mapped = _rank_set()
    head, logit = np.concatenate(heads), np.concatenate(logits)
    out = _rank_chain(heads, logits, mapped, 0.3)
    for j in np.flatnonzero(mapped):
        mixed = 0.7 * rankdata(head[:, j]) + 0.3 * rankdata(logit[:, j])
        order = np.argsort(mixed, kind="stable")
        step, rise = np.diff(mixed[order]), np.diff(out[order, j])
        assert (rise[step > 1e-9] > 0).all() and (np.abs(rise[step <= 1e-9]) < 1e-6).all()  # the mixed ranks' order
    assert not np.allclose(out[:, :3], head[:, :3])
    np.testing.assert_array_equal(out[:, 3], head[:, 3])


def test_rank_blend_without_a_reference_is_refused_and_a_member_without_logits_is_left_alone():
    config = build_config(postprocess=("blend", "rank_blend"))
    prob = _prob(c=4)
    with pytest.raises(ValueError, match="rank_blend.*rank_reference"):
        run_chain(prob, config, Evidence(zero_shot_logits=prob, zero_shot_weights=np.zeros(4)))
    np.testing.assert_array_equal(run_chain(prob, config, Evidence()), prob)
    with pytest.raises(ValueError, match="rank_blend_weight must be in"):
        build_config(postprocess=("rank_blend",), rank_blend_weight=1.5)
    with pytest.raises(ValueError, match=r"rank_blend_weight=.*'rank_blend' is not in postprocess"):
        build_config(postprocess=("blend",), rank_blend_weight=0.5)


def test_the_rank_blend_runs_per_member_beside_the_logit_blend():
    assert postprocess.split_chain(build_config(postprocess=("blend", "rank_blend", "smoothing"))) == \
        (("blend", "rank_blend"), ("smoothing",))
    assert postprocess.split_chain(build_config(postprocess=("rank_blend", "site_prior", "smoothing"))) == \
        (("rank_blend",), ("site_prior", "smoothing"))


def test_the_validation_soundscapes_rank_over_every_file():
    from scipy.stats import rankdata

    from birdclef.models import valsoundscapes

    heads, logits, mapped = _rank_set()
    config = build_config(postprocess=("blend", "rank_blend"), zero_shot_weight=0.0, rank_blend_weight=1.0)
    out = valsoundscapes.finished(np.concatenate(heads), [12] * 5, config, zero_shot=np.concatenate(logits),
                                  weights=np.zeros(4), mapped=mapped)
    for j in np.flatnonzero(mapped):
        np.testing.assert_array_equal(rankdata(out[:, j]), rankdata(np.concatenate(logits)[:, j]))


def test_the_context_step_must_end_the_chain_and_refuses_a_missing_model():
    with pytest.raises(ValueError, match="'context' must end postprocess"):
        build_config(postprocess=("context", "smoothing"))
    with pytest.raises(ValueError, match="context.*needs a trained context model.*03_train"):
        run_chain(_prob(), build_config(postprocess=("smoothing", "context")), Evidence())
