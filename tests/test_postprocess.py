"""Window post-processing: smoothing, zero-shot blending, ensemble averaging."""
import numpy as np
import pytest

from birdclef.postprocess import average, blend_logits, smooth_windows


def test_smoothing_keeps_a_constant_and_spreads_an_impulse_with_renormalised_edges():
    const = np.full((6, 3), 0.4, np.float32)
    np.testing.assert_allclose(smooth_windows(const, (0.1, 0.2, 0.4, 0.2, 0.1)), const, rtol=1e-6)
    impulse = np.zeros((5, 1), np.float32)
    impulse[2] = 1.0
    out = smooth_windows(impulse, (0.25, 0.5, 0.25))
    np.testing.assert_allclose(out[:, 0], [0, 0.25, 0.5, 0.25, 0], atol=1e-6)
    edge = np.zeros((4, 1), np.float32)
    edge[0] = 1.0  # at the start the left weight falls outside: 0.5 / 0.75 stays on the window
    np.testing.assert_allclose(smooth_windows(edge, (0.25, 0.5, 0.25))[:2, 0], [0.5 / 0.75, 0.25], atol=1e-6)


def test_smoothing_returns_a_new_array_and_rejects_bad_kernels():
    p = np.random.default_rng(0).random((4, 2)).astype(np.float32)
    before = p.copy()
    out = smooth_windows(p, (1.0,))
    np.testing.assert_array_equal(out, before)
    out[0, 0] = -1
    np.testing.assert_array_equal(p, before)
    for bad in [(0.5, 0.5), (-0.1, 1.0, -0.1), (0.0,)]:
        with pytest.raises(ValueError, match="kernel"):
            smooth_windows(p, bad)


def test_logit_blend_changes_only_weighted_classes_and_weight_one_is_the_backbone():
    prob = np.full((3, 4), 0.2, np.float32)
    logits = np.array([[2.0], [0.0], [-2.0]], np.float32).repeat(4, axis=1)
    weights = np.array([0.5, 0.0, 1.0, 0.0])
    out = blend_logits(prob, logits, weights)
    lp = np.log(0.2 / 0.8)
    np.testing.assert_allclose(out[:, 0], 1 / (1 + np.exp(-(0.5 * lp + 0.5 * logits[:, 0]))), rtol=1e-5)
    np.testing.assert_allclose(out[:, 2], 1 / (1 + np.exp(-logits[:, 2])), rtol=1e-5)  # the backbone alone
    np.testing.assert_array_equal(out[:, [1, 3]], prob[:, [1, 3]])
    np.testing.assert_array_equal(blend_logits(prob, logits, np.zeros(4)), prob)
    with pytest.raises(ValueError, match="shapes"):
        blend_logits(prob, logits[:2], weights)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        blend_logits(prob, logits, np.array([1.5, 0, 0, 0]))


def test_average_is_the_mean_and_refuses_mismatched_members():
    a, b = np.zeros((2, 3)), np.ones((2, 3))
    np.testing.assert_allclose(average([a, b]), 0.5)
    with pytest.raises(ValueError, match="disagree"):
        average([a, np.ones((3, 3))])
    with pytest.raises(ValueError):
        average([])
