"""The blend's guard: the finished default against the backbone alone on the validation soundscapes."""
import numpy as np
import pytest

from birdclef.config import build_config
from birdclef.models import blendguard
from birdclef.models.valsoundscapes import ValSoundscapes

CHAIN = ("blend", "site_prior", "smoothing", "file_boost")  # the default recipe's, as submitted


def soundscapes(head_skill: float, seed: int = 0, n_files: int = 16, per_file: int = 12, c: int = 6,
                runs: bool = True):
    """Validation soundscapes of ``n_files`` × ``per_file`` windows and ``c`` classes (the last unmapped):
    the backbone's logits informative on every class; the head's as informative as ``head_skill`` says
    (0: noise). A species present in a file calls in a run of windows (``runs`` False: each window on its
    own, where smoothing and the file boost cost). Some cells are ignored (NaN). → (soundscapes, head
    probabilities, mapped)."""
    rng = np.random.default_rng(seed)
    n = n_files * per_file
    truth = np.zeros((n_files, per_file, c), np.float32)
    for f, k in zip(*np.nonzero(rng.random((n_files, c)) < 0.3)):  # a present species calls for 2–6 windows running
        start, length = rng.integers(0, per_file - 2), rng.integers(2, 7)
        truth[f, start:start + length, k] = 1
    truth = truth.reshape(n, c)
    if not runs:
        truth = rng.permutation(truth.reshape(-1)).reshape(n, c)
    truth[rng.random((n, c)) < 0.05] = np.nan
    y = np.nan_to_num(truth)
    zs = 2.0 * y + rng.standard_normal((n, c))
    head = head_skill * y + rng.standard_normal((n, c))
    val = ValSoundscapes([], [f"val_{i}" for i in range(n_files)], truth, zs, np.full(n_files, per_file))
    return val, 1 / (1 + np.exp(-head)), np.arange(c) < c - 1


def check(*args, **kw):
    return blendguard.check(*args, n_boot=60, **kw)  # fewer resamples than training's: the verdicts here are clear


def config(**kw):
    return build_config(**{"recipe": "default", "postprocess": CHAIN, **kw})


def test_the_guard_falls_back_where_the_finished_blend_is_below_the_backbone():
    val, prob, mapped = soundscapes(head_skill=0.0)  # the head is noise: leaning on it costs
    weights = np.where(mapped, 0.1, 0.0)  # one lucky class chose "mostly the head" for every mapped class
    result = check(val, prob, weights, mapped, config())
    assert result is not None and result.fallback and result.below
    assert result.backbone_auc - result.finished_auc > result.noise > 0
    assert result.backbone_finished_auc > result.finished_auc  # the backbone's weights recover what the blend lost
    m = result.metrics()
    assert m["guard_fallback"] is True and m["guard_finished_auc"] == result.finished_auc
    assert m["guard_classes"] == 5 and m["guard_files"] == 16
    assert blendguard.backbone_weights(mapped).tolist() == [1, 1, 1, 1, 1, 0]
    assert "fell back" in result.sentence()


def test_the_guard_keeps_a_blend_that_is_not_below_the_backbone():
    val, prob, mapped = soundscapes(head_skill=2.5)  # a head as good as the backbone: the blend gains
    result = check(val, prob, np.where(mapped, 0.5, 0.0), mapped, config())
    assert not result.fallback and not result.below
    assert result.finished_auc > max(result.backbone_auc, result.backbone_finished_auc)
    # a small loss inside the noise is no reason to fall back …
    val, prob, mapped = soundscapes(head_skill=0.0, seed=3)
    blend_only = config(postprocess=("blend",))
    near = check(val, prob, np.where(mapped, 0.9, 0.0), mapped, blend_only)
    assert 0 < near.backbone_auc - near.finished_auc < near.noise and not near.fallback
    # … unless the limit is 0 sd: then any loss is
    strict = check(val, prob, np.where(mapped, 0.9, 0.0), mapped, config(postprocess=("blend",),
                                                                                   blend_guard_sd=0.0))
    assert strict.fallback


def test_the_guard_does_not_blame_the_blend_for_what_the_post_processing_costs():
    val, prob, mapped = soundscapes(head_skill=2.0, runs=False)  # calls scattered: smoothing and the file boost cost
    costly = config(smoothing_kernel=(0.25, 0.5, 0.25))  # a strong kernel spreads a lone call over empty neighbours
    result = check(val, prob, np.where(mapped, 0.5, 0.0), mapped, costly)
    assert result.below  # the finished default is below the backbone alone …
    assert result.backbone_finished_auc < result.finished_auc  # … but the backbone's weights would finish lower still
    assert not result.fallback and "post-processing costs" in result.sentence()


def test_weights_chosen_on_the_soundscapes_are_cross_fitted_by_file_halves():
    val, prob, mapped = soundscapes(head_skill=0.0, seed=1)
    masks = []

    def choose(fit):
        masks.append(fit.copy())
        return np.where(mapped, 1.0, 0.0)

    result = check(val, prob, np.where(mapped, 0.0, 0.0), mapped, config(), choose=choose)
    assert result.crossfit and len(masks) == 2
    assert (masks[0] ^ masks[1]).all()  # the two halves: every window chooses for the other half only
    per_file = masks[0].reshape(16, 12)
    assert (per_file == per_file[:, :1]).all()  # a file's windows stay together
    # finished with the weights the halves chose (the backbone's), not the ones given (the head's: far below)
    assert result.finished_auc == pytest.approx(result.backbone_finished_auc) and not result.fallback


def test_the_guard_says_when_it_cannot_measure():
    val, prob, mapped = soundscapes(head_skill=0.0)
    assert check(val, prob, np.zeros(6), mapped, config(blend_guard=False)) is None
    no_pos = ValSoundscapes([], val.names, np.zeros_like(val.truth), val.zero_shot, val.counts)
    assert check(no_pos, prob, np.zeros(6), mapped, config()) is None
    only_pos = np.where(np.isnan(val.truth) | (val.truth > 0.5), val.truth, np.nan)  # no scored negative: no AUC
    assert check(ValSoundscapes([], val.names, only_pos, val.zero_shot, val.counts), prob, np.zeros(6), mapped,
                 config()) is None
    one = ValSoundscapes([], val.names[:1], val.truth[:12], val.zero_shot[:12], val.counts[:1])
    single = check(one, prob[:12], np.where(mapped, 0.0, 0.0), mapped, config())
    assert single.finished_auc < single.backbone_auc and single.noise == float("inf")
    assert not single.fallback and single.metrics()["guard_noise"] is None  # one file: no noise estimate, no verdict
    with pytest.raises(ValueError, match="blend_guard_sd"):
        config(blend_guard_sd=-1.0)


@pytest.mark.parametrize("val_select", ["labelled", "soundscapes"])
def test_training_submits_the_backbones_weights_where_the_guard_falls_back(val_select, monkeypatch):
    import pandas as pd

    from birdclef.features.zeroshot import BlendPrior, ZeroShot
    from birdclef.models.train import guard_blend

    monkeypatch.setattr(blendguard, "BOOTSTRAP", 60)
    val, prob, mapped = soundscapes(head_skill=0.0, seed=2)
    zero_shot = ZeroShot(np.where(mapped, 0, -1))
    chosen = np.where(mapped, 0.1, 0.0)
    table = pd.DataFrame({"label": [f"c{j}" for j in range(6)], "mapped": mapped, "weight": chosen})
    # the weights the halves choose on the soundscapes' windows, with these settings: the head is noise, so the
    # backbone's side; the weights given (0.1) are what a labelled choice elsewhere would hand over
    kw = {"seed": 0, "prior": BlendPrior(), "head_recordings": np.full(6, 5)}
    cfg = config(val_select=val_select)
    weights, out, metrics = guard_blend(val, prob, chosen, table, np.full(6, 5), zero_shot, cfg, kw)
    assert metrics["guard_crossfit"] is (val_select == "soundscapes")
    assert out["weight_chosen"].tolist() == chosen.tolist()
    if val_select == "labelled":  # the chosen 0.1 finishes far below the backbone: the backbone's weights submit
        assert metrics["guard_fallback"] and weights.tolist() == [1, 1, 1, 1, 1, 0]
        assert out["weight"].tolist() == weights.tolist()
    else:  # cross-fitted, the halves choose backbone-leaning weights themselves: nothing to fall back from
        assert not metrics["guard_fallback"] and weights is chosen
    off = guard_blend(val, prob, chosen, table, np.full(6, 5), zero_shot, config(blend_guard=False), kw)
    assert off[0] is chosen and off[2] == {}
