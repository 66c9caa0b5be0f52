import dataclasses
from pathlib import Path

import pytest

from birdclef.config import (EMBEDDING_FIELDS, FIELD_SECTIONS, FIELD_TYPES, PATH_FIELDS, SECTIONS, SHARED_SECTIONS,
                             STAGES, SUBMISSION_FIELDS, TRAINING_FIELDS, Config, build_config, config_diff, fields_of,
                             load_config, previous_config_path, resume_config, same_training, section_fields,
                             stage_config)
from birdclef.errors import ParameterError
from birdclef.family import family, family_names
from birdclef.io import write_json
from birdclef.params import accepted_form
from birdclef.postprocess import STEPS


def test_default_backbone_is_birdnet_with_the_seed_head_and_the_measured_steps():
    c = build_config()
    assert c.backbone == "birdnet"
    assert (c.segment_s, c.hidden_sizes, c.dropout, c.learning_rate) == (1.0, (512, 256), 0.3, 1e-3)
    assert (c.loss, c.segment_cleaning) == ("bce", 0.0)  # see tests/test_recipes.py
    assert Config().loss == "ce"  # the dataclass alone keeps the seed's training settings


def test_validation_folds_keep_sessions_and_site_days_together_by_default():
    c = build_config()
    assert (c.group_by, c.soundscape_group_by) == ("session", "site_day")
    assert (Config().group_by, Config().soundscape_group_by) == ("session", "site_day")
    for group_by in ("session", "recording", "author"):
        assert build_config(group_by=group_by).group_by == group_by
    for how in ("site_day", "file", "site"):
        assert build_config(soundscape_group_by=how).soundscape_group_by == how
    with pytest.raises(ParameterError, match="group_by='day' is not valid: expected one of 'session', 'recording', 'author'"):
        build_config(group_by="day")
    with pytest.raises(ParameterError, match="soundscape_group_by='day' is not valid: expected one of 'site_day', 'file'"):
        build_config(soundscape_group_by="day")


def test_seed_recipe_is_the_public_notebook():
    c = build_config(recipe="seed")
    assert (c.backbone, c.loss, c.segment_s, c.hidden_sizes, c.dropout, c.learning_rate, c.class_weight) == (
        "yamnet", "ce", 1.0, (512, 256), 0.3, 1e-3, "balanced")
    assert c.denoise and c.vad


def test_unknown_parameter_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown parameter.*backbne.*known:.*backbone"):
        build_config(backbne="yamnet")
    with pytest.raises(ValueError, match="unknown recipe"):
        build_config(recipe="magic")
    with pytest.raises(ValueError, match="loss=.hinge. is not valid: expected one of .ce., .bce., .focal."):
        build_config(loss="hinge")


def test_embedding_key_tracks_only_embedding_fields():
    base = build_config(backbone="melstats")
    assert base.embedding_key() == build_config(backbone="melstats", epochs=3, loss="bce").embedding_key()
    assert base.embedding_key() != build_config(backbone="melstats", denoise=False).embedding_key()
    assert base.embedding_key().startswith("melstats-")


def test_config_is_frozen():
    with pytest.raises(Exception):
        build_config().epochs = 3


def test_resume_config_inherits_and_overrides(tmp_path):
    prev = build_config(backbone="melstats", denoise=False, work_dir=str(tmp_path))
    write_json(prev.to_dict(), tmp_path / "config.json")
    c = resume_config(tmp_path / "config.json", backbone=None, epochs=2)
    assert (c.backbone, c.denoise, c.epochs) == ("melstats", False, 2)
    assert c.embedding_key() == prev.embedding_key()
    assert resume_config(tmp_path / "absent.json", backbone="melstats").denoise is True


def test_stage_config_layers_defaults_recipe_previous_stage_and_explicit_values(tmp_path):
    work = str(tmp_path)
    pre = stage_config("preprocess", work_dir=work, recipe="seed", backbone="melstats", epochs=None)
    assert (pre.backbone, pre.loss, pre.segment_s, pre.epochs) == ("melstats", "ce", 1.0, 30)  # recipe, then default
    write_json(pre.to_dict(), previous_config_path("train", work_dir=work))
    train = stage_config("train", work_dir=work, epochs="3", loss=None, seed=None)  # None: inherit
    assert train == dataclasses.replace(pre, epochs=3)
    assert stage_config("train", work_dir=work, recipe="default").loss == "ce"  # the saved config outranks a recipe
    write_json(train.to_dict(), tmp_path / "model" / "config.json")
    assert stage_config("submit", work_dir=work, strict=None, ensemble_model_dirs=None) == train
    other = tmp_path / "elsewhere"
    write_json(dataclasses.replace(train, backbone="melstats", epochs=7).to_dict(), other / "config.json")
    submit = stage_config("submit", work_dir=work, model_dir=other, tta_shifts_s=[0.0, 1.0])
    assert (submit.epochs, submit.tta_shifts_s) == (7, (0.0, 1.0))
    # no saved config (a stage run on its own): as build_config
    assert stage_config("train", work_dir=str(tmp_path / "new"), backbone="melstats") == build_config(
        work_dir=str(tmp_path / "new"), backbone="melstats")
    with pytest.raises(ParameterError, match="unknown stage 'eval'; known: 'preprocess', 'train', 'submit'"):
        stage_config("eval")


def test_path_fields_are_declared_on_the_fields():
    assert PATH_FIELDS == ("data_dir", "work_dir", "backbone_path", "extra_data_dirs", "sed_pretrained_path",
                           "ensemble_model_dirs", "runs_table")


# ---------------------------------------------------------------- typed values (every route ends in build_config)

@pytest.mark.parametrize("key, given, expected", [
    ("denoise", "false", False), ("denoise", "FALSE", False), ("denoise", "No", False), ("denoise", "0", False),
    ("denoise", "true", True), ("denoise", "Yes", True), ("denoise", "1", True), ("denoise", True, True),
    ("denoise", 0, False), ("denoise", "none", True),  # none: the backbone's own choice (melstats: on)
    ("vad", "no", False), ("strict", "yes", True),
    ("epochs", "5", 5), ("epochs", 5, 5), ("epochs", 5.0, 5), ("epochs", " 7 ", 7),
    ("learning_rate", "0.5", 0.5), ("learning_rate", "1e-4", 1e-4), ("learning_rate", 1, 1.0),
    ("max_recordings_per_class", "20", 20), ("max_recordings_per_class", "none", None),
    ("max_recordings_per_class", "NULL", None),
    ("zero_shot_weight", "0.4", 0.4), ("zero_shot_weight", "none", None),
    ("hidden_sizes", "[64, 32]", (64, 32)), ("hidden_sizes", "64,32", (64, 32)), ("hidden_sizes", 64, (64,)),
    ("hidden_sizes", [64], (64,)), ("hidden_sizes", "[]", ()),
    ("smoothing_kernel", "[0.25, 0.5, 0.25]", (0.25, 0.5, 0.25)), ("smoothing_kernel", "0.25,0.5,0.25", (0.25, 0.5, 0.25)),
    ("smoothing_kernel", "1", (1.0,)), ("smoothing_kernel", (1, 2, 1), (1.0, 2.0, 1.0)),
    ("ensemble_model_dirs", "runs/b/model", ("runs/b/model",)), ("ensemble_model_dirs", "runs/a,runs/b", ("runs/a", "runs/b")),
    ("ensemble_model_dirs", "[runs/a, runs/b]", ("runs/a", "runs/b")), ("ensemble_model_dirs", ["x"], ("x",)),
    ("backbone_path", "none", None), ("backbone_path", None, None), ("backbone_path", "m/yamnet.tflite", "m/yamnet.tflite"),
    ("work_dir", Path("runs/x"), "runs/x"), ("run_name", "2024", "2024"), ("run_name", 2024, "2024"),
    ("loss", "bce", "bce"),
])
def test_parameter_values_are_converted_to_their_field_type(key, given, expected):
    value = getattr(build_config(backbone="melstats", **{key: given}), key)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize("key, given, accepted", [
    ("denoise", "maybe", "true/false/yes/no/1/0, or none"),
    ("vad", "none", "true/false/yes/no/1/0"),  # not Optional: no none
    ("vad", 2, "true/false/yes/no/1/0"),
    ("epochs", "abc", "a whole number"), ("epochs", 2.5, "a whole number"), ("epochs", "2.5", "a whole number"),
    ("epochs", True, "a whole number"),
    ("max_recordings_per_class", "abc", "a whole number, e.g. 30, or none"),
    ("learning_rate", "fast", "a number"), ("learning_rate", False, "a number"),
    ("smoothing_kernel", "0.25,x,0.25", "a list of numbers"), ("smoothing_kernel", "0.25,,0.25", "a list of numbers"),
    ("hidden_sizes", "[64, 2.5]", "a list of whole numbers"), ("hidden_sizes", {"a": 1}, "a list of whole numbers"),
    ("loss", "hinge", "one of 'ce', 'bce', 'focal'"), ("run_name", True, "a string"), ("run_name", ["a"], "a string"),
    ("sed_params", "[1]", "a dict"),
])
def test_bad_parameter_values_are_refused_in_one_line(key, given, accepted):
    with pytest.raises(ParameterError) as err:
        build_config(backbone="melstats", **{key: given})
    message = str(err.value)
    assert "\n" not in message and isinstance(err.value, ValueError)
    assert message.startswith(f"{key}={given!r} is not valid: expected {accepted}"), message


def test_every_bad_value_is_named_in_the_one_line():
    with pytest.raises(ParameterError, match=r"^epochs='abc' is not valid.*; dropout='x' is not valid") as err:
        build_config(epochs="abc", dropout="x")
    assert "\n" not in str(err.value)


def test_every_field_type_has_an_accepted_form():
    # a field of a type params.py does not know would be refused whatever its value
    for name, hint in FIELD_TYPES.items():
        assert not accepted_form(hint).startswith(("typing.", "<class")), (name, hint)


def test_none_still_means_the_recipe_and_the_string_none_sets_none():
    assert build_config(recipe="seed", zero_shot_weight=None).zero_shot_weight == 0.0
    assert build_config(recipe="seed", zero_shot_weight="none").zero_shot_weight is None


def test_load_config_reads_a_saved_config_back(tmp_path):
    c = build_config(backbone="melstats", smoothing_kernel="0.25,0.5,0.25", hidden_sizes="64", denoise="no",
                     ensemble_model_dirs="runs/a", work_dir=tmp_path)
    write_json(c.to_dict(), tmp_path / "config.json")
    assert load_config(tmp_path / "config.json") == c
    assert resume_config(tmp_path / "config.json", epochs="3") == dataclasses.replace(c, epochs=3)


# ---------------------------------------------------------------- stages declared on the fields

def test_every_field_declares_a_stage():
    for f in dataclasses.fields(Config):
        assert f.metadata.get("stage") in STAGES, f.name
    assert set(EMBEDDING_FIELDS) | set(TRAINING_FIELDS) | set(SUBMISSION_FIELDS) | set(fields_of("paths")) \
        | set(fields_of("resources")) == set(FIELD_TYPES)
    assert {"vad_threshold", "vad_min_speech_s", "hop_s", "denoise", "backbone"} <= set(EMBEDDING_FIELDS)


def _another_value(name, value):
    hint = FIELD_TYPES[name]
    if name == "backbone":
        return "yamnet" if value != "yamnet" else "melstats"
    if isinstance(value, bool):
        return not value
    if isinstance(value, float):
        return value * 0.5 + 0.01
    if value is None or isinstance(value, str):
        return "models/other.tflite"
    raise AssertionError(f"no other value known for {name}: {hint}")


@pytest.mark.parametrize("name", EMBEDDING_FIELDS)
def test_changing_any_embedding_field_changes_the_embedding_key(name):
    base = build_config(backbone="melstats")
    changed = dataclasses.replace(base, **{name: _another_value(name, getattr(base, name))})
    assert getattr(changed, name) != getattr(base, name)
    assert changed.embedding_key() != base.embedding_key()


def test_training_dict_leaves_out_paths_submission_and_resources_fields():
    base = build_config(backbone="melstats")
    for name in (*SUBMISSION_FIELDS, *fields_of("paths"), *fields_of("resources")):
        assert name not in base.training_dict()
    assert set(base.training_dict()) == {*EMBEDDING_FIELDS, *TRAINING_FIELDS}
    assert fields_of("resources") == ("n_workers", "cluster") and "extra" not in FIELD_TYPES
    assert build_config(backbone="melstats", n_workers=3).training_dict() == base.training_dict()  # changes no result


def test_an_old_checkpoint_fingerprint_with_extra_and_n_workers_still_matches():
    current = build_config(backbone="melstats").training_dict()
    old = {**current, "n_workers": 4, "extra": {}}  # what training_dict() held before both left it
    assert same_training(old, current) and same_training(current, current)
    assert not same_training({**old, "epochs": 3}, current)  # a real training setting still tells them apart
    assert not same_training({k: v for k, v in current.items() if k != "epochs"}, current)


def test_an_old_saved_config_with_an_empty_extra_loads_and_a_non_empty_one_is_refused_by_name(tmp_path):
    c = build_config(backbone="melstats", work_dir=str(tmp_path))
    write_json({**c.to_dict(), "extra": {}}, tmp_path / "old.json")
    assert load_config(tmp_path / "old.json") == c
    assert resume_config(tmp_path / "old.json", epochs=3) == dataclasses.replace(c, epochs=3)
    write_json({**c.to_dict(), "extra": {"note": "x"}}, tmp_path / "noted.json")
    with pytest.raises(ParameterError, match=r"noted.json holds extra=\{'note': 'x'\}: Config no longer has the field"):
        load_config(tmp_path / "noted.json")
    with pytest.raises(ParameterError, match="unknown parameter.*'extra'"):
        build_config(extra={})


# ---------------------------------------------------------------- sections declared on the fields

def test_every_field_has_a_known_section_and_each_steps_fields_are_postprocess():
    assert set(FIELD_SECTIONS) == set(FIELD_TYPES) and set(FIELD_SECTIONS.values()) <= set(SECTIONS)
    assert [k for k in FIELD_SECTIONS if FIELD_SECTIONS[k] == "postprocess"] == list(section_fields("postprocess"))
    for step in STEPS.values():  # from the step registry, not restated on the fields
        assert all(FIELD_SECTIONS[f] == "postprocess" for f in step.fields), step.name
    assert FIELD_SECTIONS["postprocess"] == "postprocess"
    assert {"epochs", "loss", "fold", "class_weight", "soundscape_weight", "soundscape_group_by"} <= set(section_fields("head"))
    assert {"seed", "val_fraction", "window_s", "model_family", "recipe"} <= set(section_fields("training"))
    assert section_fields("sed")[0] == "sed_backbone" and FIELD_SECTIONS["n_workers"] == "resources"
    with pytest.raises(ValueError, match="unknown section 'mlp'; known: 'data', 'embedding'"):
        section_fields("mlp")


def test_a_field_declared_without_a_section_takes_its_stages():
    from birdclef.config import _field_section, _stage

    for stage, section in (("training", "training"), ("submission", "submission"), ("paths", "data"),
                           ("embedding", "embedding"), ("resources", "resources")):
        f = dataclasses.field(default=0, metadata=_stage(stage, 0).metadata)  # a field added with no section
        f.name = "new_setting"
        assert _field_section(f) == section
    f = dataclasses.field(default=0, metadata=_stage("submission", 0, section="head").metadata)
    f.name = "file_boost_alpha"  # a step's field declared in another section: refused at import
    with pytest.raises(ValueError, match="setting of the post-processing step.*'file_boost'.*declares section 'head'"):
        _field_section(f)
    with pytest.raises(ValueError, match="unknown section 'heads'; known:"):
        _stage("training", 0, section="heads")


def test_every_section_that_is_not_shared_belongs_to_a_model_family():
    owned = {s for name in family_names() for s in family(name).config_sections}
    assert set(SECTIONS) - set(SHARED_SECTIONS) == owned
    assert family("mlp").config_sections == ("head", "pseudo") and family("sed").config_sections == ("sed",)


def test_a_section_reads_as_a_dict_and_config_diff_names_it():
    c = build_config(model_family="sed", sed_epochs=3, sed_params="{'n_mels': 64}")
    assert c.section("sed") == {**{k: getattr(Config(), k) for k in section_fields("sed")}, "sed_epochs": 3,
                                "sed_params": {"n_mels": 64}}
    assert list(c.section("resources")) == ["n_workers", "cluster"]
    table = config_diff(c)
    assert table.loc["sed_epochs", "section"] == "sed" and table.loc["model_family", "section"] == "training"
    assert table.loc["smoothing_kernel", "section"] == "postprocess"  # the default recipe's


# ---------------------------------------------------------------- a setting of a family not chosen

def test_an_explicit_setting_of_a_family_not_chosen_is_refused_by_name_with_the_fix():
    with pytest.raises(ParameterError, match=r"^epochs=5 is a setting of model_family 'mlp' \(section 'head'\), "
                                             r"which model_family='sed' does not read: use sed_epochs$"):
        build_config(model_family="sed", epochs=5)
    with pytest.raises(ParameterError, match=r"^sed_batch_size=8 is a setting of model_family 'sed'.*use batch_size$"):
        build_config(sed_batch_size=8)  # the default family is mlp
    with pytest.raises(ParameterError) as err:
        build_config(model_family="sed", loss="focal", pseudo_rounds=1, sed_epochs=3)
    message = str(err.value)
    assert "\n" not in message and message.startswith("loss='focal' is a setting of model_family 'mlp' (section 'head')")
    assert "pseudo_rounds=1 is a setting of model_family 'mlp' (section 'pseudo')" in message
    assert message.endswith("('sed' reads: sed_backbone, sed_pretrained_path, sed_clip_s, sed_epochs, sed_batch_size, "
                            "sed_distill_weight, sed_student_rounds, sed_params)")
    # stage_config's explicit values are refused the same way, on every route
    with pytest.raises(ParameterError, match="^fold=1 is a setting of model_family 'mlp'"):
        stage_config("train", work_dir="/nonexistent/run", model_family="sed", fold=1)


def test_shared_settings_recipe_values_and_unchanged_values_are_not_refused():
    sed = build_config(model_family="sed", seed=3, val_fraction=0.25, secondary_weight=0.3, balanced_sampling=True,
                       smoothing_kernel=(1.0,), n_workers=1, epochs=30)  # epochs: the value it has anyway
    assert (sed.seed, sed.loss, sed.epochs) == (3, "bce", 30)  # loss: the default recipe's
    seed = build_config(recipe="seed", model_family="sed", sed_epochs=2)
    assert (seed.loss, seed.backbone) == ("ce", "yamnet")  # the recipe's head settings are not the user's
    assert build_config(**sed.to_dict()) == sed  # a round trip of its own values


def test_inherited_settings_are_never_refused_and_a_saved_config_reloads_as_it_was(tmp_path):
    work = str(tmp_path)
    pre = stage_config("preprocess", work_dir=work, backbone="melstats", epochs=5, loss="ce", pseudo_rounds=1)
    write_json(pre.to_dict(), previous_config_path("train", work_dir=work))
    sed = stage_config("train", work_dir=work, model_family="sed", sed_epochs=2)  # an MLP preprocess config resumed
    assert (sed.model_family, sed.epochs, sed.loss, sed.pseudo_rounds, sed.sed_epochs) == ("sed", 5, "ce", 1, 2)
    write_json(sed.to_dict(), tmp_path / "model" / "config.json")
    assert load_config(tmp_path / "model" / "config.json") == sed
    assert stage_config("submit", work_dir=work, smoothing_kernel=(0.25, 0.5, 0.25)).epochs == 5  # 04_submit
    with pytest.raises(ParameterError, match="^epochs=7 is a setting of model_family 'mlp'.*use sed_epochs"):
        stage_config("submit", work_dir=work, epochs=7)
    assert stage_config("submit", work_dir=work, epochs=5) == sed  # the inherited value again: changes nothing
    # Config.replace: derived configs inherit as a saved one does
    assert pre.replace(model_family="sed", sed_epochs=2, work_dir=work) == sed
    with pytest.raises(ParameterError, match="^dropout=0.1 is a setting of model_family 'mlp'"):
        sed.replace(dropout=0.1)
