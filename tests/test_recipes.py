"""The quality parameters of the config: recipes, validation, what keys a training checkpoint."""
import pytest

from birdclef.config import IMPROVEMENTS, RECIPES, build_config, load_config
from birdclef.io import write_json


def test_seed_recipe_keeps_every_improvement_off():
    c = build_config(recipe="seed")
    assert (c.loss, c.segment_s, c.crop_stride_frames, c.balanced_sampling) == ("ce", 1.0, 1, False)
    assert (c.smoothing_kernel, c.tta_shifts_s, c.zero_shot_weight, c.pseudo_rounds) == ((1.0,), (0.0,), 0.0, 0)
    assert c.ensemble_model_dirs == ()


def test_improved_recipe_is_the_seed_plus_the_measured_improvements():
    c = build_config(recipe="improved")
    assert c.backbone == "yamnet" and c.segment_s == 1.0
    for key, value in IMPROVEMENTS.items():
        assert getattr(c, key) == value, key
    assert c.multi_label and c.pseudo_rounds > 0
    assert set(RECIPES["improved"]) >= set(RECIPES["seed"])


def test_default_recipe_is_birdnet_with_the_steps_that_helped_it():
    c = build_config()
    assert c.recipe == "default" and c.backbone == "birdnet" and c.multi_label
    assert (c.segment_cleaning, c.cleaned_as, c.smoothing_kernel) == (0.0, "background", (0.1, 0.8, 0.1))
    assert c.postprocess == ("blend", "site_prior", "smoothing", "file_boost") and c.file_boost_power == 1.0
    assert (c.denoise, c.rms_normalise, c.zero_shot_weight, c.refit) == (False, False, None, True)
    assert (c.vad_threshold, c.vad_min_speech_s) == (0.9, 0.5)
    assert c.pseudo_rounds == 0 and c.tta_shifts_s == (0.0,) and c.window_pool == "mean"


@pytest.mark.parametrize("recipe", ["default", "improved"])
def test_asking_for_ce_switches_off_a_recipes_cleaning_to_background(recipe):
    c = build_config(recipe=recipe, loss="ce")
    assert (c.loss, c.segment_cleaning, c.cleaned_as) == ("ce", 0.0, "drop")
    c = build_config(recipe=recipe, loss="ce", segment_cleaning=0.3)
    assert (c.segment_cleaning, c.cleaned_as) == (0.3, "drop")


def test_explicit_parameters_override_the_recipe_and_lists_become_tuples():
    c = build_config(recipe="improved", loss="focal", smoothing_kernel=[0.2, 0.6, 0.2], tta_shifts_s=[-1, 0, 1],
                     ensemble_model_dirs="runs/b/model")
    assert c.loss == "focal" and c.smoothing_kernel == (0.2, 0.6, 0.2) and c.tta_shifts_s == (-1.0, 0.0, 1.0)
    assert c.ensemble_model_dirs == ("runs/b/model",)


@pytest.mark.parametrize("params, message", [
    (dict(smoothing_kernel=(0.5, 0.5)), "smoothing_kernel"),
    (dict(smoothing_kernel=(-1.0, 2.0, -1.0)), "smoothing_kernel"),
    (dict(tta_shifts_s=(0.5,)), "multiple of hop_s"),
    (dict(tta_shifts_s=(5.0,)), "multiple of hop_s"),
    (dict(tta_shifts_s=()), "tta_shifts_s"),
    (dict(fold=5), "fold"),
    (dict(group_by="site"), "group_by='site' is not valid"),
    (dict(zero_shot_weight=1.5), "zero_shot_weight"),
    (dict(pseudo_threshold=1.0), "pseudo_threshold"),
    (dict(pseudo_max_per_class=0), "pseudo_max_per_class"),
    (dict(crop_stride_s=0.0), "crop_stride_s"),
    (dict(segment_cleaning=1.0), "segment_cleaning"),
    (dict(cleaned_as="noise"), "cleaned_as"),
    (dict(loss="ce", cleaned_as="background"), "multi-label loss"),
    (dict(head_pool="sum"), "head_pool"),
])
def test_bad_quality_parameters_are_refused(params, message):
    with pytest.raises(ValueError, match=message):
        build_config(**params)


def test_submission_fields_do_not_key_training_but_training_fields_do():
    base = build_config(recipe="improved")
    assert base.training_dict() == build_config(recipe="improved", smoothing_kernel=(1.0,), zero_shot_weight=0.4,
                                                run_name="x").training_dict()
    assert base.training_dict() != build_config(recipe="improved", pseudo_threshold=0.3).training_dict()
    assert base.embedding_key() == build_config(recipe="improved", loss="ce", cleaned_as="drop",
                                                           pseudo_rounds=0).embedding_key()


def test_saved_config_round_trips(tmp_path):
    c = build_config(recipe="improved", tta_shifts_s=(-1.0, 0.0), ensemble_model_dirs=("a", "b"))
    write_json(c.to_dict(), tmp_path / "config.json")
    assert load_config(tmp_path / "config.json") == c
