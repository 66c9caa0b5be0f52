import pytest

from birdclef.config import Config, build_config, resume_config
from birdclef.io import write_json


def test_default_backbone_is_birdnet_with_the_seed_head_and_the_measured_steps():
    c = build_config()
    assert c.backbone == "birdnet"
    assert (c.segment_s, c.hidden_sizes, c.dropout, c.learning_rate) == (1.0, (512, 256), 0.3, 1e-3)
    assert (c.loss, c.segment_cleaning) == ("bce", 0.5)  # see tests/test_recipes.py
    assert Config().loss == "ce"  # the dataclass alone keeps the seed's training settings


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
    with pytest.raises(ValueError, match="unknown loss"):
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
