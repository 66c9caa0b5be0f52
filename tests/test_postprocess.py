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


# the post-processing chain (birdclef.postprocess.STEPS, Config.postprocess)

def _evidence(n: int = 6, c: int = 3, seed: int = 0):
    from birdclef.postprocess import Evidence

    rng = np.random.default_rng(seed)
    prob = rng.uniform(0.01, 0.99, (n, c)).astype(np.float32)
    ev = Evidence(zero_shot_logits=rng.normal(0, 2, (n, c)).astype(np.float32),
                  zero_shot_weights=np.array([0.5, 0.0, 0.3]), prior_shift=np.array([1.0, -1.0, 0.0], np.float32))
    return prob, ev


def test_the_default_chain_is_blend_then_site_prior_then_smoothing_then_the_file_boost():
    from birdclef.config import build_config
    from birdclef.postprocess import file_boost, run_chain
    from birdclef.postprocess.priors import apply_shift

    config = build_config(site_prior_weight=0.7, smoothing_kernel=(0.25, 0.5, 0.25))
    assert config.postprocess == ("blend", "site_prior", "smoothing", "file_boost") and config.file_boost_power == 1.0
    prob, ev = _evidence()
    by_hand = file_boost(smooth_windows(apply_shift(blend_logits(prob, ev.zero_shot_logits, ev.zero_shot_weights),
                                                    ev.prior_shift, 0.7), (0.25, 0.5, 0.25)), power=1.0)
    np.testing.assert_allclose(run_chain(prob, config, ev), by_hand, rtol=1e-6)


def test_a_step_left_out_is_off_and_the_order_is_the_one_given():
    from birdclef.config import build_config
    from birdclef.postprocess import run_chain

    prob, ev = _evidence()
    kernel = (0.25, 0.5, 0.25)
    only_smoothing = run_chain(prob, build_config(postprocess=("smoothing",), smoothing_kernel=kernel), ev)
    np.testing.assert_allclose(only_smoothing, smooth_windows(prob, kernel), rtol=1e-6)
    first = run_chain(prob, build_config(postprocess=("blend", "smoothing"), smoothing_kernel=kernel), ev)
    last = run_chain(prob, build_config(postprocess=("smoothing", "blend"), smoothing_kernel=kernel), ev)
    np.testing.assert_allclose(last, blend_logits(smooth_windows(prob, kernel), ev.zero_shot_logits, ev.zero_shot_weights),
                               rtol=1e-6)
    assert np.abs(first - last).max() > 1e-3
    np.testing.assert_array_equal(run_chain(prob, build_config(postprocess=()), ev), prob)


def test_a_step_without_its_evidence_passes_the_probabilities_through():
    from birdclef.config import build_config
    from birdclef.postprocess import Evidence, run_chain

    prob, _ = _evidence()
    np.testing.assert_array_equal(run_chain(prob, build_config(postprocess=("blend", "site_prior"),
                                                               site_prior_weight=1.0), Evidence()), prob)


def test_an_unknown_or_repeated_step_is_refused_by_name_and_every_step_reads_config_fields():
    import dataclasses

    from birdclef.config import Config, build_config
    from birdclef.postprocess import STEPS

    with pytest.raises(ValueError, match=r"unknown post-processing step.*'sharpen'.*known: 'blend'"):
        build_config(postprocess=("blend", "sharpen"))
    with pytest.raises(ValueError, match="named twice"):
        build_config(postprocess=("smoothing", "smoothing"))
    names = {f.name for f in dataclasses.fields(Config)}
    for s in STEPS.values():
        assert s.fields and set(s.fields) <= names, s.name


def test_a_new_step_is_one_registered_function_and_the_chain_table_shows_its_settings(monkeypatch):
    from birdclef import postprocess
    from birdclef.config import build_config
    from birdclef.postprocess import registry

    monkeypatch.setattr(registry, "STEPS", dict(registry.STEPS))

    @postprocess.step("square", fields=("site_prior_weight",), summary="squares every probability")
    def _square(prob, config, evidence):
        return prob ** 2

    config = build_config(postprocess=("smoothing", "square"), smoothing_kernel=(1.0,))
    prob, ev = _evidence()
    np.testing.assert_allclose(postprocess.run_chain(prob, config, ev), prob ** 2, rtol=1e-6)
    table = postprocess.chain_table(config)
    assert [(r["order"], r["step"]) for r in table] == [("1", "smoothing"), ("2", "square")]
    assert table[1]["settings"] == "site_prior_weight=0.0" and table[0]["settings"] == "smoothing_kernel=(1.0,)"
    with pytest.raises(ValueError, match="registered twice"):
        postprocess.step("square", fields=(), summary="")(_square)
