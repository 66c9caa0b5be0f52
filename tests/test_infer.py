"""Window probabilities: segments, test-time shifts, ensembles, zero-shot blending, smoothing."""
import numpy as np
import pytest
import torch

from birdclef.config import build_config
from birdclef.features.embeddings import Embedded
from birdclef.models.head import HeadMeta, MLPHead, predict, predict_windows, soundscape_probabilities
from birdclef.postprocess import smooth_windows


def head(seed: int = 0, segment_frames: int = 1, dim: int = 4, n_classes: int = 3, loss: str = "bce"):
    torch.manual_seed(seed)
    model = MLPHead(dim, n_classes, (8,), 0.0).eval()
    meta = HeadMeta(dim, tuple("abc"[:n_classes]), (8,), 0.0, loss, segment_frames, "key")
    return model, meta


def soundscape(n_frames: int = 20, dim: int = 4) -> Embedded:
    emb = np.random.default_rng(1).standard_normal((n_frames, dim)).astype(np.float32)
    return Embedded(emb, np.arange(n_frames, dtype=np.float64), np.zeros(n_frames, np.float32), float(n_frames))


def test_without_shift_a_window_is_the_mean_of_its_segments():
    e = soundscape()
    model, meta = head()
    prob = predict_windows(e, model, meta)
    seg = predict(model, meta, e.embeddings[:, None, :])
    assert prob.shape == (4, 3)
    np.testing.assert_allclose(prob, seg.reshape(4, 5, 3).mean(1), rtol=1e-5)


def test_shifts_average_the_shifted_windows():
    e = soundscape()
    model, meta = head(segment_frames=5)
    both = predict_windows(e, model, meta, shifts_s=(-1.0, 0.0, 1.0))
    single = [predict_windows(e, model, meta, shifts_s=(s,)) for s in (-1.0, 0.0, 1.0)]
    np.testing.assert_allclose(both, np.mean(single, axis=0), rtol=1e-5)
    assert not np.allclose(single[0], single[1])


def test_soundscape_probabilities_ensemble_blend_and_smooth_in_that_order():
    e = soundscape()
    heads = [head(0), head(1)]
    chain = ("blend", "site_prior", "smoothing")  # the file boost (the default's last step) has its own tests
    plain = build_config(backbone="melstats", smoothing_kernel=(1.0,), postprocess=chain)
    each = [predict_windows(e, m, meta) for m, meta in heads]
    np.testing.assert_allclose(soundscape_probabilities([e, e], heads, plain), np.mean(each, 0), rtol=1e-5)
    config = build_config(backbone="melstats", smoothing_kernel=(0.25, 0.5, 0.25), postprocess=chain)
    logits = np.full((4, 3), 2.0, np.float32)
    weights = np.array([1.0, 0.0, 0.0])  # class 0: the backbone alone
    out = soundscape_probabilities([e, e], heads, config, zero_shot=(logits, weights))
    blended = np.mean(each, 0)
    blended[:, 0] = 1 / (1 + np.exp(-2.0))
    np.testing.assert_allclose(out, smooth_windows(blended, (0.25, 0.5, 0.25)), rtol=1e-5)


def test_zero_shot_weights_come_from_the_config_or_the_heads():
    from birdclef.postprocess import zero_shot_weights

    mapped = np.array([True, True, False])
    metas = [HeadMeta(4, ("a", "b", "c"), (), 0.0, "bce", 1, "k", zero_shot_weights=(0.2, 1.0, 0.0)),
             HeadMeta(4, ("a", "b", "c"), (), 0.0, "bce", 1, "k", zero_shot_weights=(0.6, 0.0, 0.0)),
             HeadMeta(4, ("a", "b", "c"), (), 0.0, "bce", 1, "k")]  # trained without scores: left out
    np.testing.assert_allclose(zero_shot_weights(build_config(backbone="melstats"), metas, mapped), [0.4, 0.5, 0.0])
    fixed = build_config(backbone="melstats", zero_shot_weight=0.3)
    np.testing.assert_allclose(zero_shot_weights(fixed, metas, mapped), [0.3, 0.3, 0.0])
    np.testing.assert_allclose(zero_shot_weights(build_config(backbone="melstats"), metas[2:], mapped), 0.0)


def test_max_pool_counts_a_call_in_one_segment_fully():
    import torch

    from birdclef.features.embeddings import Embedded
    from birdclef.models.head import HeadMeta, MLPHead, predict_windows

    head = MLPHead(2, 2, (), 0.0)
    with torch.no_grad():
        head.mlp[0].weight.copy_(torch.tensor([[10.0, 0.0], [0.0, 10.0]]))
        head.mlp[0].bias.zero_()
    meta = HeadMeta(2, ("a", "b"), (), 0.0, "bce", 1, "k")
    emb = np.zeros((5, 2), np.float32)
    emb[:, 1] = -1.0
    emb[2] = [1.0, -1.0]  # class a sounds in one second of five
    e = Embedded(emb, np.arange(5.0), np.zeros(5, np.float32), 5.0)
    mean = predict_windows(e, head, meta, pool="mean")[0, 0]
    peak = predict_windows(e, head, meta, pool="max")[0, 0]
    assert peak == pytest.approx(1 / (1 + np.exp(-10)), rel=1e-5) and mean == pytest.approx((4 * 0.5 + peak) / 5, rel=1e-5)


def test_prior_rows_of_every_kind_of_ensemble_member():
    from pathlib import Path

    from birdclef.family import uniform_or
    from birdclef.inference.predict import prior_windows
    from birdclef.models.head_family import HeadMember
    from birdclef.models.sed.family import SedMember

    no_prior = HeadMeta(4, ("a", "b"), (), 0.0, "bce", 1, "k")
    np.testing.assert_allclose(prior_windows(no_prior, 3), np.full((3, 2), 0.5))  # none saved: uniform
    saved = HeadMeta(4, ("a", "b"), (), 0.0, "bce", 1, "k", prior=(0.25, 0.75))
    head = HeadMember(Path("run"), saved.labels, uniform_or(saved.prior, 2), None, saved, None)
    np.testing.assert_allclose(prior_windows(head, 2), [[0.25, 0.75]] * 2)
    sed = SedMember(Path("run"), ("a", "b"), np.array([0.1, 0.9]), lambda p: None)
    np.testing.assert_allclose(prior_windows(sed, 2), [[0.1, 0.9]] * 2)


def test_taxonomy_steps_read_the_taxonomy_given_or_the_data_folders(tmp_path):
    import pandas as pd

    from birdclef.config import build_config
    from birdclef.postprocess import finish_windows, genus_smoothing

    pd.DataFrame({"primary_label": ["a", "b", "c"], "inat_taxon_id": ["1", "2", "3"],
                  "scientific_name": ["Parus major", "Parus ater", "Rana temporaria"], "common_name": ["x", "y", "z"],
                  "class_name": ["Aves", "Aves", "Amphibia"]}).to_csv(tmp_path / "taxonomy.csv", index=False)
    config = build_config(data_dir=str(tmp_path), backbone="melstats", postprocess=("genus_smoothing",), genus_weight=0.5)
    prob = np.array([[0.9, 0.1, 0.3], [0.2, 0.6, 0.7]], np.float32)
    expected = genus_smoothing(prob, ["Parus", "Parus", "Rana"], 0.5)
    np.testing.assert_allclose(finish_windows(prob, config), expected, atol=1e-6)  # read from data_dir
    assert not np.allclose(expected, prob)
    other = pd.DataFrame({"primary_label": ["a", "b", "c"], "scientific_name": ["A x", "B y", "C z"],
                          "class_name": ["Aves"] * 3})
    np.testing.assert_allclose(finish_windows(prob, config, taxonomy=other), prob, atol=1e-6)  # the one given wins
