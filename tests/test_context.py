"""The context model (birdclef.models.context): a GRU over a file's windows, the chain's optional last step."""
import numpy as np
import pytest

from birdclef.config import build_config
from birdclef.data.metric import masked_auc_columns
from birdclef.errors import BirdclefError
from birdclef.models import context, valsoundscapes
from birdclef.postprocess import Evidence, run_chain
from birdclef.workdir import ModelFolder

CHAIN = ("smoothing", "context")


def _toy(n_files: int, seed: int, n: int = 12, c: int = 6):
    """Files where a class calls in a bout of 4 windows; the head sees only some of the bout's windows
    (the others look like noise, as false alarms do): a window's neighbours tell a missed call."""
    rng = np.random.default_rng(seed)
    probs, truth = [], []
    for _ in range(n_files):
        y = np.zeros((n, c), np.float32)
        p = rng.uniform(0.02, 0.3, (n, c))
        for j in range(c):
            if rng.random() < 0.5:
                start = rng.integers(0, n - 4)
                y[start:start + 4, j] = 1
                seen = start + rng.choice(4, 2, replace=False)
                p[seen, j] = rng.uniform(0.6, 0.95, 2)
        probs.append(p.astype(np.float32))
        truth.append(y)
    return probs, truth


def _auc(truth, prob) -> float:
    return float(np.nanmean(masked_auc_columns(np.concatenate(truth), np.concatenate(prob).astype(np.float64))))


@pytest.mark.slow
def test_the_context_model_learns_that_a_calls_neighbours_hold_it_too():
    train_x, train_y = _toy(40, seed=0)
    test_x, test_y = _toy(20, seed=1)
    model = context.fit(train_x, train_y, hidden=8, epochs=40, seed=0, device="cpu")
    before, after = _auc(test_y, test_x), _auc(test_y, [model.apply(x) for x in test_x])
    assert after > before + 0.05, (before, after)


def test_a_fresh_model_is_the_identity_and_training_is_seeded():
    x, y = _toy(6, seed=2)
    fresh = context.ContextModel.fresh(8)
    for p in x:
        np.testing.assert_allclose(fresh.apply(p), np.clip(p, 1e-4, 1 - 1e-4), rtol=1e-5, atol=1e-6)
    a = context.fit(x, y, hidden=4, epochs=3, seed=5, device="cpu")
    b = context.fit(x, y, hidden=4, epochs=3, seed=5, device="cpu")
    np.testing.assert_array_equal(a.apply(x[0]), b.apply(x[0]))
    assert np.abs(a.apply(x[0]) - fresh.apply(x[0])).max() > 1e-3  # training changed it


def test_a_saved_model_loads_back_to_the_same_output_and_runs_as_the_last_step(tmp_path):
    x, y = _toy(8, seed=3)
    model = context.fit(x, y, hidden=4, epochs=5, seed=0, device="cpu")
    folder = ModelFolder(tmp_path)
    model.save(folder)
    back = context.load_context(folder)
    np.testing.assert_array_equal(back.apply(x[1]), model.apply(x[1]))
    config = build_config(postprocess=CHAIN)
    out = run_chain(x[1], config, Evidence(context=back))
    np.testing.assert_array_equal(out, model.apply(run_chain(x[1], config, names=("smoothing",))))


def test_a_missing_context_model_is_refused_naming_the_fix(tmp_path):
    with pytest.raises(BirdclefError, match=r"has no context.pt: train the head with 'context' in postprocess"):
        context.load_context(ModelFolder(tmp_path))
    with pytest.raises(BirdclefError, match="no val_soundscapes.npz and no val_labelled_soundscapes.npz: train with "
                                            "val_soundscapes > 0"):
        context.train_context(ModelFolder(tmp_path), build_config(postprocess=CHAIN))


@pytest.mark.slow
def test_train_context_fits_on_the_saved_validation_soundscapes_and_reuses_a_matching_model(tmp_path):
    x, y = _toy(16, seed=4)
    prob, truth = np.concatenate(x), np.concatenate(y)
    valsoundscapes.save(tmp_path / valsoundscapes.FILE,
                        valsoundscapes.ValSoundscapes([], [f"v{i}" for i in range(16)], truth, None, np.full(16, 12)),
                        prob, None, None)
    folder = ModelFolder(tmp_path)
    config = build_config(postprocess=CHAIN, context_epochs=30, smoothing_kernel=(1.0,))
    metrics = context.train_context(folder, config)
    assert folder.context.is_file() and metrics["n_context_files"] == 16 and metrics["n_context_held_out"] == 4
    assert metrics["context_val_gain"] > 0
    stamp = folder.context.stat().st_mtime_ns
    assert context.train_context(folder, config) == metrics and folder.context.stat().st_mtime_ns == stamp
    context.train_context(folder, build_config(postprocess=CHAIN, context_epochs=31, smoothing_kernel=(1.0,)))
    assert folder.context.stat().st_mtime_ns != stamp  # other settings: refitted


@pytest.mark.slow
def test_train_context_learns_from_held_out_labelled_soundscapes_alone_or_beside_the_mixed_ones(tmp_path):
    def save(name, x, y):
        valsoundscapes.save(tmp_path / name, valsoundscapes.ValSoundscapes(
            [], [f"{name}{i}" for i in range(len(x))], np.concatenate(y), None, np.full(len(x), 12)),
            np.concatenate(x), None, None)

    x, y = _toy(16, seed=6)
    for t in y:
        t[1::3] = np.nan  # windows without a label row: unscored, still read as context
    save(valsoundscapes.LABELLED_FILE, x, y)
    folder = ModelFolder(tmp_path)
    config = build_config(postprocess=CHAIN, context_epochs=30, smoothing_kernel=(1.0,))
    alone = context.train_context(folder, config)
    assert alone["n_context_files"] == alone["n_context_labelled_files"] == 16 and alone["n_context_held_out"] == 4
    assert alone["context_labelled_gain"] == alone["context_val_gain"] > 0
    mixed_x, mixed_y = _toy(8, seed=7)
    save(valsoundscapes.FILE, mixed_x, mixed_y)
    both = context.train_context(folder, config)  # new data: refitted, a quarter of each set held out
    assert both["n_context_files"] == 24 and both["n_context_labelled_files"] == 16
    assert both["n_context_held_out"] == 4 + 2 and "context_labelled_gain" in both
    (tmp_path / valsoundscapes.LABELLED_FILE).unlink()
    mixed_only = context.train_context(folder, config)
    assert mixed_only["n_context_labelled_files"] == 0 and "context_labelled_gain" not in mixed_only


def test_a_trained_context_model_travels_in_the_kaggle_bundle(tmp_path):
    from birdclef.models.head_family import HeadFamily
    from birdclef.workdir import ModelFolder

    folder = ModelFolder(tmp_path / "model")
    folder.root.mkdir()
    for path in (folder.head, folder.config):
        path.write_bytes(b"x")
    assert folder.context.name not in HeadFamily().bundle(folder).files  # none trained: nothing to carry
    folder.context.write_bytes(b"x")
    assert folder.context.name in HeadFamily().bundle(folder).files
