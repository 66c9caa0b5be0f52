"""The head: mean pooling (the seed) and attention pooling over a segment's frames; save/load."""
import dataclasses

import numpy as np
import pytest
import torch

from birdclef.config import build_config
from birdclef.models.examples import Examples
from birdclef.models.head import HeadMeta, MLPHead, load_head, predict, save_head
from birdclef.models.train import train_head


def _meta(pool: str, dim: int = 6, n_classes: int = 3) -> HeadMeta:
    return HeadMeta(in_dim=dim, labels=tuple("abc"[:n_classes]), hidden_sizes=(8,), dropout=0.0, loss="bce",
                    segment_frames=5, embedding_key="stub", pool=pool)


def test_attention_of_one_frame_is_that_frames_logits_and_order_does_not_matter():
    torch.manual_seed(0)
    head = MLPHead(6, 3, (8,), 0.0, pool="attention").eval()
    x = torch.randn(4, 5, 6)
    with torch.no_grad():
        frame_logits = head.mlp((x - head.mean) / head.std)  # (4, 5, 3)
        torch.testing.assert_close(head(x[:, :1]), frame_logits[:, 0])
        torch.testing.assert_close(head(x[:, 0]), frame_logits[:, 0])  # (batch, dim) is one frame
        out = head(x)
        torch.testing.assert_close(head(x[:, [4, 2, 0, 1, 3]]), out)
        # a weighted mean of the frame logits: within their range, and not simply their mean
        assert torch.all(out <= frame_logits.max(dim=1).values + 1e-6)
        assert torch.all(out >= frame_logits.min(dim=1).values - 1e-6)
        assert not torch.allclose(out, frame_logits.mean(dim=1))


def test_mean_head_pools_embeddings_first():
    torch.manual_seed(0)
    head = MLPHead(6, 3, (8,), 0.0).eval()
    x = torch.randn(4, 5, 6)
    with torch.no_grad():
        torch.testing.assert_close(head(x), head(x.mean(dim=1)))
    assert not hasattr(head, "attention")


def test_standardisation_is_fitted_on_frames_for_attention_and_on_pooled_features_for_mean():
    x = np.random.default_rng(0).standard_normal((50, 5, 6)).astype(np.float32) * 3
    att, mean = MLPHead(6, 3, pool="attention"), MLPHead(6, 3)
    att.set_standardisation(x)
    mean.set_standardisation(x)
    np.testing.assert_allclose(att.std.numpy(), x.reshape(-1, 6).std(0) + 1e-6, rtol=1e-5)
    np.testing.assert_allclose(mean.std.numpy(), x.mean(axis=1).std(0) + 1e-6, rtol=1e-5)


@pytest.mark.parametrize("pool", ["mean", "attention"])
def test_standardisation_on_some_rows_reads_them_in_chunks_without_a_copy(pool, monkeypatch):
    from birdclef.models import head as head_module

    monkeypatch.setattr(head_module, "STANDARDISE_ROWS", 7)  # several chunks, the last one short
    x = np.random.default_rng(1).standard_normal((50, 5, 6)).astype(np.float32) * 3 + 2
    rows = np.random.default_rng(2).permutation(50)[:37]
    picked = x[rows].mean(axis=1) if pool == "mean" else x[rows].reshape(-1, 6)
    model = MLPHead(6, 3, pool=pool)
    model.set_standardisation(x, rows=rows)
    np.testing.assert_allclose(model.mean.numpy(), picked.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.std.numpy(), picked.std(0) + 1e-6, rtol=1e-5)


def test_unknown_pool_is_refused_by_head_and_config():
    with pytest.raises(ValueError, match="head pool"):
        MLPHead(6, 3, pool="max")
    with pytest.raises(ValueError, match="head_pool"):
        build_config(head_pool="max")


@pytest.mark.parametrize("pool", ["mean", "attention"])
def test_save_and_load_keep_the_pool_and_the_outputs(tmp_path, pool):
    torch.manual_seed(1)
    head = MLPHead(6, 3, (8,), 0.0, pool=pool).eval()
    meta = _meta(pool)
    x = np.random.default_rng(1).standard_normal((7, 5, 6)).astype(np.float32)
    loaded, loaded_meta = load_head(save_head(head, meta, tmp_path / "head.pt"))
    assert loaded.pool == pool and loaded_meta.pool == pool
    np.testing.assert_allclose(predict(loaded, loaded_meta, x), predict(head, meta, x), rtol=1e-6)


def test_a_head_saved_before_pools_existed_loads_as_mean(tmp_path):
    head = MLPHead(6, 3, (8,), 0.0).eval()
    meta = dataclasses.asdict(_meta("mean"))
    del meta["pool"]
    torch.save({"state_dict": head.state_dict(), "meta": meta}, tmp_path / "old.pt")
    loaded, loaded_meta = load_head(tmp_path / "old.pt")
    assert loaded_meta.pool == "mean" and loaded.pool == "mean"


def test_attention_finds_a_call_that_fills_one_frame_of_five():
    """Each example: 5 noise frames; a class's call adds a strong signal to one random frame.
    Averaging the frames first dilutes it five-fold; attention over frame logits does not."""
    rng = np.random.default_rng(0)
    n, dim = 600, 8
    primary = np.arange(n) % 3
    x = rng.standard_normal((n, 5, dim)).astype(np.float32)
    x[np.arange(n), rng.integers(0, 5, n), primary] += 2.5
    groups = np.array([f"rec{i % 60}" for i in range(n)], dtype=object)
    ex = Examples(x, np.eye(3, dtype=np.float32)[primary], primary, groups, groups, np.ones(n, np.float32))
    auc = {}
    for pool in ("mean", "attention"):
        config = build_config(hop_s=1.0, segment_s=5.0, loss="bce", head_pool=pool, epochs=80, batch_size=32,
                              hidden_sizes=(32,), dropout=0.0, val_fraction=0.25)
        _, _, metrics = train_head(ex, ["a", "b", "c"], config, progress=False)
        auc[pool] = metrics["val_auc"]
    assert auc["attention"] > auc["mean"] + 0.05, auc  # measured: 0.92 vs 0.81
