"""Training pieces on synthetic embeddings: crops, targets, folds, losses, balanced sampling."""
import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from birdclef.config import build_config


def cfg(**params):
    """Configs for stub embeddings with one frame per second (the default backbone's hop differs)."""
    return build_config(**{"hop_s": 1.0, **params})
from birdclef.features.embeddings import Embedded, pool_segments
from birdclef.models.examples import Examples, build_examples, crop_frames
from birdclef.models.train import (_epoch_order, _loss, epoch_batches, mix_pseudo, split_folds, train_head,
                                   validation_targets)

LABELS = ["a", "b", "c"]


def embedded(n_frames: int, dim: int = 4, seed: int = 0, speech: np.ndarray | None = None) -> Embedded:
    emb = np.random.default_rng(seed).standard_normal((n_frames, dim)).astype(np.float32)
    return Embedded(emb, np.arange(n_frames, dtype=np.float64), np.zeros(n_frames, np.float32) if speech is None
                    else speech, float(n_frames))


class StubCache:
    def __init__(self, entries: dict[str, Embedded]):
        self.entries = entries

    def load(self, path, **_):
        return self.entries.get(str(path))


def manifest(rows):
    return pd.DataFrame(rows, columns=["filename", "primary_label", "secondary_labels", "author", "path"])


def test_crops_every_stride_and_always_the_last_frame():
    e = embedded(8)
    config = cfg(segment_s=5.0, crop_stride_s=2.0)
    x = e.embeddings[crop_frames(np.arange(8), config)]
    assert x.shape == (3, 5, 4)  # starts 0, 2 and the tail crop at 3
    np.testing.assert_array_equal(x[-1], e.embeddings[3:8])
    short = e.embeddings[crop_frames(np.arange(3), config)]  # shorter than a crop: one crop, frames repeated
    assert short.shape == (1, 5, 4)


def test_seed_segments_are_unchanged():
    e = embedded(7)
    config = cfg(recipe="seed")
    np.testing.assert_array_equal(e.embeddings[crop_frames(np.arange(7), config)], pool_segments(e, np.arange(7), 1))


def test_multi_label_targets_carry_secondary_labels_and_folds_follow_authors():
    cache = StubCache({f"p{i}": embedded(4, seed=i) for i in range(6)})
    rows = [(f"r{i}.ogg", LABELS[i % 3], "b" if i == 0 else "", f"author{i // 2}", f"p{i}") for i in range(6)]
    config = cfg(loss="bce", secondary_weight=0.3, group_by="author")
    ex, skipped = build_examples(manifest(rows), cache, LABELS, config)
    assert len(skipped) == 0 and len(ex) == 24
    np.testing.assert_allclose(ex.targets[0], [1.0, 0.3, 0.0])
    assert set(ex.fold_groups) == {f"author:author{k}" for k in range(3)}
    ce, _ = build_examples(manifest(rows), cache, LABELS, cfg(loss="ce", group_by="recording"))
    np.testing.assert_allclose(ce.targets[0], [1.0, 0.0, 0.0])
    assert set(ce.fold_groups) == {f"r{i}.ogg" for i in range(6)}


def test_folds_follow_the_manifests_recording_sessions_by_default(caplog):
    cache = StubCache({f"p{i}": embedded(4, seed=i) for i in range(12)})
    rows = [(f"r{i}.ogg", LABELS[i % 3], "", "someone", f"p{i}") for i in range(12)]
    sessions = manifest(rows).assign(session=[f"session:r{i - i % 4}.ogg" for i in range(12)])  # 3 sessions of 4
    assert cfg().group_by == "session"
    ex, _ = build_examples(sessions, cache, LABELS, cfg())
    assert set(ex.fold_groups) == {"session:r0.ogg", "session:r4.ogg", "session:r8.ogg"}
    for fold in range(3):
        tr, va = split_folds(ex, n_folds=3, fold=fold, seed=0)
        assert len(va) and not set(ex.fold_groups[tr]) & set(ex.fold_groups[va])
    # a manifest of an older preprocess run has no session column: one group per recording, one warning
    with caplog.at_level("WARNING", logger="birdclef.models.examples"):
        old, _ = build_examples(manifest(rows), cache, LABELS, cfg())
    assert set(old.fold_groups) == {f"r{i}.ogg" for i in range(12)}
    assert len([r for r in caplog.records if "no recording sessions" in r.getMessage()]) == 1
    caplog.clear()
    with caplog.at_level("WARNING", logger="birdclef.models.examples"):
        build_examples(sessions, cache, LABELS, cfg())
        build_examples(manifest(rows), cache, LABELS, cfg(group_by="recording"))
    assert not caplog.records  # sessions present, or not asked for: nothing to warn about


def test_a_manifest_is_read_back_as_text(tmp_path):
    from birdclef.models.examples import load_manifest

    config = cfg(work_dir=str(tmp_path))
    (tmp_path / "preprocess").mkdir()
    pd.DataFrame({"filename": ["1.ogg"], "primary_label": ["1139490"], "secondary_labels": [""], "author": ["NA"],
                  "session": ["session:1.ogg"], "path": ["/x/1.ogg"]}).to_csv(tmp_path / "preprocess" / "manifest.csv",
                                                                              index=False)
    row = load_manifest(config).iloc[0]
    assert (row["primary_label"], row["author"], row["session"], row["secondary_labels"]) == (
        "1139490", "NA", "session:1.ogg", "")


def test_speech_frames_are_left_out_and_an_all_speech_recording_is_reported():
    speech = np.array([1, 1, 0, 0], np.float32)
    cache = StubCache({"p0": embedded(4, speech=speech), "p1": embedded(4, speech=np.ones(4, np.float32))})
    ex, skipped = build_examples(manifest([("r0.ogg", "a", "", "", "p0"), ("r1.ogg", "b", "", "", "p1")]),
                                 cache, LABELS, cfg(recipe="seed"))
    assert len(ex) == 2 and list(skipped["filename"]) == ["r1.ogg"]


def _examples(n_per_class=(30, 10, 5), groups_per_class=5, dim=4) -> Examples:
    rng = np.random.default_rng(0)
    primary = np.concatenate([np.full(n, c) for c, n in enumerate(n_per_class)])
    groups = np.array([f"rec{c}-{i % groups_per_class}" for c, n in enumerate(n_per_class) for i in range(n)],
                      dtype=object)
    x = (rng.standard_normal((len(primary), 1, dim)) + primary[:, None, None]).astype(np.float32)
    return Examples(x, np.eye(3, dtype=np.float32)[primary], primary, groups, groups, np.ones(len(primary), np.float32))


def test_folds_never_split_a_group_and_differ_between_folds():
    ex = _examples()
    seen_val = []
    for fold in range(3):
        tr, va = split_folds(ex, n_folds=3, fold=fold, seed=0)
        assert not set(ex.fold_groups[tr]) & set(ex.fold_groups[va])
        seen_val.append(set(va))
    assert seen_val[0] != seen_val[1]


def test_ce_loss_is_torch_weighted_cross_entropy_and_sample_weights_count():
    torch.manual_seed(0)
    logits, primary = torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 1, 2])
    targets = torch.eye(3)[primary]
    w = torch.tensor([1.0, 2.0, 0.5])
    ce = _loss(cfg(loss="ce"), w)
    expected = nn.CrossEntropyLoss(weight=w)(logits, primary)
    torch.testing.assert_close(ce(logits, targets, primary, torch.ones(6)), expected)
    half = torch.tensor([1, 1, 1, 0.5, 0.5, 0.5])
    assert not torch.isclose(ce(logits, targets, primary, half), expected)


def test_focal_loss_is_below_bce_and_both_are_zero_free():
    torch.manual_seed(0)
    logits, targets = torch.randn(8, 3), torch.rand(8, 3)
    ones, w, primary = torch.ones(8), torch.ones(3), torch.zeros(8, dtype=torch.long)
    bce = _loss(cfg(loss="bce"), w)(logits, targets, primary, ones)
    focal = _loss(cfg(loss="focal"), w)(logits, targets, primary, ones)
    assert 0 < focal < bce
    gamma0 = _loss(cfg(loss="focal", focal_gamma=0.0), w)(logits, targets, primary, ones)
    torch.testing.assert_close(gamma0, bce)


def test_balanced_sampling_draws_classes_about_equally():
    ex = _examples(n_per_class=(300, 30, 10))
    tr = np.arange(len(ex))
    order = _epoch_order(np.random.default_rng(0), ex, tr, balanced=True)
    share = np.bincount(ex.primary[order], minlength=3) / len(order)
    assert len(order) == len(tr) and np.all(np.abs(share - 1 / 3) < 0.1)  # unbalanced: 0.88, 0.09, 0.03
    assert sorted(_epoch_order(np.random.default_rng(0), ex, tr, balanced=False)) == list(tr)


@pytest.mark.parametrize("loss", ["ce", "bce", "focal"])
def test_every_loss_learns_separable_classes(loss):
    ex = _examples()
    model, hist, metrics = train_head(ex, ["a", "b", "c"], cfg(loss=loss, epochs=15, batch_size=16,
                                                                        val_fraction=0.34), progress=False)
    assert metrics["val_auc"] > 0.8 and len(hist) == 15


def test_extra_examples_train_but_never_validate():
    ex = _examples()
    extra = Examples(ex.x[:5] + 10, ex.targets[:5], ex.primary[:5], np.array(["pseudo:x"] * 5, dtype=object),
                     np.array(["pseudo:x"] * 5, dtype=object), np.full(5, 0.5, np.float32))
    _, _, metrics = train_head(ex, LABELS, cfg(epochs=2, val_fraction=0.34), progress=False, extra=extra)
    _, _, plain = train_head(ex, LABELS, cfg(epochs=2, val_fraction=0.34), progress=False)
    assert metrics["n_train_examples"] == plain["n_train_examples"] + 5
    assert metrics["n_val_examples"] == plain["n_val_examples"] and metrics["n_pseudo_examples"] == 5


def _weak_examples(n_rec=12, per_rec=10, dim=4, seed=0):
    """Recordings whose label holds only for their first half of segments (the calls); the second
    half is background noise under the same weak label."""
    rng = np.random.default_rng(seed)
    rows = []
    for r in range(n_rec):
        c = r % 3
        for s in range(per_rec):
            x = rng.standard_normal(dim).astype(np.float32)
            if s < per_rec // 2:
                x[c] += 4.0
            rows.append((x, c, f"rec{r}", s < per_rec // 2))
    x = np.stack([r[0] for r in rows])[:, None]
    primary = np.array([r[1] for r in rows])
    groups = np.array([r[2] for r in rows], dtype=object)
    ex = Examples(x, np.eye(3, dtype=np.float32)[primary], primary, groups, groups, np.ones(len(rows), np.float32))
    return ex, np.array([r[3] for r in rows])


@pytest.mark.parametrize("cleaned_as", ["drop", "background"])
def test_cleaning_finds_the_background_segments_of_every_recording(cleaned_as):
    from birdclef.models.train import clean_segments, head_meta

    ex, is_call = _weak_examples()
    config = cfg(loss="bce", epochs=20, batch_size=16, val_fraction=0.34, segment_cleaning=0.5, cleaned_as=cleaned_as)
    model, _, _ = train_head(ex, LABELS, config, progress=False)
    cleaned, counts, table = clean_segments(ex, model, head_meta(ex, LABELS, config), config)
    tr, va = split_folds(ex, n_folds=config.n_folds, fold=config.fold, seed=config.seed)
    if cleaned_as == "drop":
        hit = cleaned.weights == 0
        np.testing.assert_array_equal(cleaned.targets, ex.targets)
    else:
        hit = cleaned.targets.sum(axis=1) == 0
        np.testing.assert_array_equal(cleaned.weights, ex.weights)
    assert counts == {"n_cleaned_segments": int(hit.sum()), "cleaned_as": cleaned_as}
    assert hit[tr].sum() == len(tr) // 2 and hit[va].sum() == len(va) // 2  # half of each recording (10 segments)
    assert (~is_call[hit]).mean() > 0.9  # and it is the background half
    kept, y = validation_targets(cleaned, va, 3)  # what the validation AUC is computed on
    if cleaned_as == "drop":
        assert set(kept) == set(va[~hit[va]]) and (y.sum(axis=1) == 1).all()
    else:
        np.testing.assert_array_equal(kept, va)
        np.testing.assert_array_equal(y.sum(axis=1) == 0, hit[va])
    np.testing.assert_array_equal(cleaned.x, ex.x)
    np.testing.assert_array_equal(table["cleaned"].to_numpy(), hit)


def test_cleaning_keeps_one_segment_of_a_short_recording():
    from birdclef.models.train import clean_segments, head_meta

    ex, _ = _weak_examples(per_rec=1)
    config = cfg(loss="bce", epochs=1, val_fraction=0.34, segment_cleaning=0.9)
    model, _, _ = train_head(ex, LABELS, config, progress=False)
    _, counts, _ = clean_segments(ex, model, head_meta(ex, LABELS, config), config)
    assert counts["n_cleaned_segments"] == 0


def test_training_with_cleaning_beats_weak_labels_on_calls_vs_background():
    """Held-out recordings with the same structure: after cleaning, background segments score
    lower for the recording's class (they were taught as negatives), calls still high."""
    from birdclef.models.head import predict
    from birdclef.models.train import clean_segments, head_meta

    ex, _ = _weak_examples(n_rec=30)
    test, is_call = _weak_examples(n_rec=12, seed=1)
    gaps = {}
    for cleaning in (0.0, 0.5):
        config = cfg(loss="bce", epochs=20, batch_size=16, val_fraction=0.34, segment_cleaning=cleaning,
                     cleaned_as="background")
        meta = head_meta(ex, LABELS, config)
        model, _, _ = train_head(ex, LABELS, config, progress=False)
        train_ex = clean_segments(ex, model, meta, config)[0] if cleaning else ex
        model, _, _ = train_head(train_ex, LABELS, config, progress=False)
        own = predict(model, meta, test.x)[np.arange(len(test.x)), test.primary]
        gaps[cleaning] = (float(own[is_call].mean() - own[~is_call].mean()), float(own[~is_call].mean()))
    # measured: gap 0.64 → 0.83, background 0.30 → 0.04
    assert gaps[0.5][0] > gaps[0.0][0] + 0.1 and gaps[0.5][1] < 0.5 * gaps[0.0][1], gaps


def test_refit_learns_a_class_whose_only_recording_was_in_validation():
    """With 1–2 recordings per class, a fold split leaves some classes out of training; the head that
    submits (refit on every recording for the chosen number of epochs) must learn them."""
    from birdclef.models.head import HeadMeta, predict

    rng = np.random.default_rng(0)
    centres = np.eye(3, 4, dtype=np.float32) * 4
    primary = np.array([0] * 40 + [1] * 40 + [2] * 8)
    groups = np.array([f"a{i % 8}" for i in range(40)] + [f"b{i % 8}" for i in range(40)] + ["c0"] * 8, dtype=object)
    x = (centres[primary] + rng.normal(0, 0.5, (len(primary), 4)).astype(np.float32))[:, None]
    ex = Examples(x, np.eye(3, dtype=np.float32)[primary], primary, groups, groups, np.ones(len(primary), np.float32))
    c_rows = np.flatnonzero(primary == 2)
    fold = next(f for f in range(2) if set(c_rows) <= set(split_folds(ex, n_folds=2, fold=f, seed=0)[1]))
    config = cfg(loss="bce", epochs=15, val_fraction=0.5, fold=fold, hidden_sizes=(16,), learning_rate=1e-2, batch_size=16)
    meta = HeadMeta(4, tuple(LABELS), (16,), 0.3, "bce", 1, "k")
    fold_model, _, metrics = train_head(ex, LABELS, config, progress=False)
    refit, history, _ = train_head(ex, LABELS, config, progress=False, refit_epochs=metrics["best_epoch"])
    assert len(history) == metrics["best_epoch"]
    others = np.flatnonzero(primary != 2)
    before, after = predict(fold_model, meta, ex.x)[:, 2], predict(refit, meta, ex.x)[:, 2]
    assert before[c_rows].mean() < 0.2 and after[c_rows].mean() > 2 * before[c_rows].mean()
    assert after[c_rows].min() > after[others].max()  # class c is now told apart from every other example


def test_relative_cleaning_cuts_below_a_fraction_of_each_recordings_best_segment():
    from birdclef.models.head import predict
    from birdclef.models.train import clean_segments, head_meta

    ex, is_call = _weak_examples()
    config = cfg(loss="bce", epochs=20, batch_size=16, val_fraction=0.34, segment_cleaning=0.5,
                 cleaned_as="background", cleaning_mode="relative")
    model, _, _ = train_head(ex, LABELS, config, progress=False)
    meta = head_meta(ex, LABELS, config)
    _, _, table = clean_segments(ex, model, meta, config)
    own = predict(model, meta, ex.x)[np.arange(len(ex)), ex.primary]
    best = table.groupby("filename")["probability"].transform("max").to_numpy()
    np.testing.assert_array_equal(table["cleaned"].to_numpy(), own < 0.5 * best)
    assert (~is_call[table["cleaned"].to_numpy()]).mean() > 0.9  # what it cuts is background
    assert table.groupby("filename")["cleaned"].sum().min() < table.groupby("filename").size().min()  # one stays


def test_a_validation_fold_of_one_recording_picks_the_epoch_of_lowest_loss(monkeypatch):
    # one validation recording has one label: macro AUC is undefined (NaN) at every epoch, so the
    # validation loss chooses; training on shuffled labels overfits, so the last epoch is not the best
    ex = _examples()
    noisy = Examples(ex.x, ex.targets[np.random.default_rng(1).permutation(len(ex))], ex.primary, ex.groups,
                     ex.fold_groups, ex.weights)
    one = np.flatnonzero(ex.groups == "rec0-0")
    monkeypatch.setattr("birdclef.models.train.split_folds",
                        lambda *_, **__: (np.setdiff1d(np.arange(len(ex)), one), one))
    _, hist, metrics = train_head(noisy, LABELS, cfg(loss="bce", epochs=12, batch_size=8, learning_rate=1e-2,
                                                     refit=False), progress=False)
    assert hist["val_auc"].isna().all() and np.isnan(metrics["val_auc"]) and metrics["n_val_recordings"] == 1
    assert metrics["best_epoch"] == int(hist.loc[hist["val_loss"].idxmin(), "epoch"]) < len(hist)


def test_a_checkpoint_fingerprinted_before_extra_and_n_workers_left_training_dict_still_resumes(tmp_path):
    from birdclef.models.train import _load_checkpoint

    config = build_config(backbone="melstats")
    fingerprint = {"config": config.training_dict(), "n_examples": 10, "epochs": 3, "x_sum": 1.5, "t_sum": 2.0}
    old = {**fingerprint, "config": {**config.training_dict(), "n_workers": 0, "extra": {}}}  # as saved before
    path = tmp_path / "checkpoint.pt"
    torch.save({"fingerprint": old, "history": [{"epoch": 1}]}, path)
    assert _load_checkpoint(path, fingerprint)["history"] == [{"epoch": 1}]
    for stale in ({**old, "epochs": 4}, {**old, "config": {**old["config"], "dropout": 0.1}}):
        torch.save({"fingerprint": stale, "history": []}, path)
        assert _load_checkpoint(path, fingerprint) is None  # another config or data: trained from the start


def _with_pseudo(ex: Examples, n: int = 40, seed: int = 1) -> tuple[Examples, np.ndarray, np.ndarray]:
    """``ex`` plus ``n`` pseudo-labelled rows (soft targets) → (examples, labelled indices, pseudo indices)."""
    from birdclef.models.examples import PSEUDO, concat_examples

    rng = np.random.default_rng(seed)
    soft = rng.uniform(0, 0.3, (n, 3)).astype(np.float32)
    groups = np.array([f"pseudo:s{i % 4}" for i in range(n)], dtype=object)
    extra = Examples(rng.standard_normal((n, 1, ex.x.shape[-1])).astype(np.float32), soft, soft.argmax(1), groups,
                     groups, np.full(n, 0.5, np.float32), kind=np.full(n, PSEUDO, dtype=object))
    both = concat_examples([dataclasses.replace(ex, kind=np.full(len(ex), "focal", dtype=object)), extra])
    return both, np.arange(len(ex)), len(ex) + np.arange(n)


@pytest.mark.parametrize("balanced", [False, True])
def test_without_a_share_the_batches_are_the_one_pooled_order_of_before(balanced):
    ex, labelled, pseudo = _with_pseudo(_examples())
    for pool in (np.zeros(0, np.int64), pseudo):
        tr = np.concatenate([labelled, pool])
        order = _epoch_order(np.random.default_rng(3), ex, tr, balanced)  # the earlier loop's slices
        old = [order[i * 16:(i + 1) * 16] for i in range(max(1, int(np.ceil(len(tr) / 16))))]
        new = epoch_batches(np.random.default_rng(3), ex, labelled, pool, batch_size=16, share=None, balanced=balanced)
        assert len(new) == len(old) and all(np.array_equal(a, b) for a, b in zip(new, old))


def test_separate_samplers_give_each_batch_its_share_of_pseudo_rows():
    ex, labelled, pseudo = _with_pseudo(_examples(), n=25)
    batches = epoch_batches(np.random.default_rng(0), ex, labelled, pseudo, batch_size=16, share=0.5, balanced=False)
    lab = set(labelled)
    for b in batches:
        n_pseudo = int(np.isin(b, pseudo).sum())
        assert n_pseudo == 8 and len(b) - n_pseudo <= 8  # half of every batch (the last one's labelled side may be short)
        assert not set(b) & lab & set(pseudo)
    seen = np.concatenate([b[~np.isin(b, pseudo)] for b in batches])
    assert sorted(seen) == sorted(labelled)  # one pass over the labelled rows per epoch, each once
    drawn = np.concatenate([b[np.isin(b, pseudo)] for b in batches])
    assert set(drawn) == set(pseudo)  # the pool is cycled through, not one row drawn over and over
    one_share = epoch_batches(np.random.default_rng(0), ex, labelled, pseudo, batch_size=20, share=0.25, balanced=False)
    assert {int(np.isin(b, pseudo).sum()) for b in one_share} == {5}


def test_a_pseudo_share_trains_through_its_own_sampler():
    ex, labelled, pseudo = _with_pseudo(_examples())
    base, extra = (Examples(*[getattr(ex, f)[i] for f in ("x", "targets", "primary", "groups", "fold_groups",
                                                          "weights")], kind=ex.kind[i]) for i in (labelled, pseudo))
    common = dict(loss="bce", epochs=2, batch_size=16, val_fraction=0.34)
    _, shared, metrics = train_head(base, LABELS, cfg(**common, pseudo_rounds=1, pseudo_share=0.5), progress=False,
                                    extra=extra)
    _, pooled, plain = train_head(base, LABELS, cfg(**common), progress=False, extra=extra)
    assert metrics["n_train_examples"] == plain["n_train_examples"] == len(labelled) - metrics["n_val_examples"] + len(pseudo)
    assert not np.allclose(shared["train_loss"], pooled["train_loss"])  # other batches, not the pooled order


def test_pseudo_mixup_mixes_a_window_into_focal_crops_and_unions_their_targets():
    ex, labelled, pseudo = _with_pseudo(_examples())
    idx = np.concatenate([labelled[:6], pseudo[:2]])
    x, t = mix_pseudo(np.random.default_rng(0), ex, idx, pseudo, 0.3)
    partner = np.random.default_rng(0).choice(pseudo, size=6)
    np.testing.assert_allclose(x[:6], 0.7 * ex.x[idx[:6]] + 0.3 * ex.x[partner], rtol=1e-6)
    np.testing.assert_array_equal(t[:6], np.maximum(ex.targets[idx[:6]], ex.targets[partner]))
    assert (t[:6].max(axis=1) == 1.0).all()  # the focal label stays whole
    np.testing.assert_array_equal(x[6:], ex.x[idx[6:]])  # pseudo rows are not mixed
    np.testing.assert_array_equal(t[6:], ex.targets[idx[6:]])
    orig = ex.x[idx].copy()
    mix_pseudo(np.random.default_rng(0), ex, idx, pseudo, 0.3)
    np.testing.assert_array_equal(ex.x[idx], orig)


def test_the_labelled_only_path_is_unchanged_by_the_pseudo_options():
    ex = _examples()
    plain = train_head(ex, LABELS, cfg(loss="bce", epochs=3, batch_size=16, val_fraction=0.34), progress=False)
    optioned = train_head(ex, LABELS, cfg(loss="bce", epochs=3, batch_size=16, val_fraction=0.34, pseudo_rounds=1,
                                          pseudo_share=0.5, pseudo_mixup=0.3), progress=False)  # no extra: no effect
    pd.testing.assert_frame_equal(plain[1], optioned[1])
    for a, b in zip(plain[0].state_dict().values(), optioned[0].state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


class _Payload:
    """Unpickling this runs ``open(marker, "w")``: what an arbitrary pickled object in a checkpoint could do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def test_a_training_checkpoint_is_plain_data_and_one_holding_another_object_is_never_unpickled(tmp_path, caplog):
    from birdclef.models.train import _load_checkpoint

    ex = _examples()
    config = cfg(epochs=2, batch_size=16, refit=False)
    ckpt = tmp_path / "checkpoint.pt"
    _, hist, _ = train_head(ex, LABELS, config, progress=False, checkpoint=ckpt)
    state = torch.load(ckpt, map_location="cpu", weights_only=True)  # what training saves loads as plain data
    assert [h["epoch"] for h in state["history"]] == [1, 2]
    fingerprint = state["fingerprint"]
    assert _load_checkpoint(ckpt, fingerprint)["history"] == state["history"]
    marker = tmp_path / "unpickled"
    torch.save({**state, "history": [_Payload(marker)]}, ckpt)
    with caplog.at_level("WARNING", logger="birdclef.models.train"):
        assert _load_checkpoint(ckpt, fingerprint) is None
        _, again, _ = train_head(ex, LABELS, config, progress=False, checkpoint=ckpt)  # trains from the start
    assert not marker.exists()
    assert any("object other than tensors and plain data" in r.getMessage() and "open" in r.getMessage()
               for r in caplog.records)
    pd.testing.assert_frame_equal(again, hist)
    ckpt.write_bytes(b"not a checkpoint")
    with caplog.at_level("WARNING", logger="birdclef.models.train"):
        assert _load_checkpoint(ckpt, fingerprint) is None
    assert any("unreadable checkpoint" in r.getMessage() for r in caplog.records)
