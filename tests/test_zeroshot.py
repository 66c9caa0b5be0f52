"""Zero-shot scores: stored with the embeddings in one pass, mapped onto the taxonomy, blended per class.

BirdNET's species do not occur in the demo, so a stand-in backbone with species logits is
registered here (``standin``): it names one demo class's scientific name and one unknown species.
"""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import birdclef.backbones as backbones
from birdclef.backbones import BackboneSpec, register
from birdclef.config import build_config
from birdclef.data.competition import competition_paths, list_audio, load_taxonomy
from birdclef.features.embeddings import EmbeddingCache, embed_recording
from birdclef.features.preprocess import run_preprocess
from birdclef.features.zeroshot import BlendPrior, choose_weights, load_zero_shot, map_taxonomy
from birdclef.models.head import load_head
from birdclef.models.train import run_training
from birdclef.submission.submit import run_submission

CHAIN = ("blend", "site_prior", "smoothing")  # no file boost: blended scores are compared as they are
TARGET = {"name": None}  # the demo class the stand-in knows (set by the fixture)
CALLS = {"n": 0}
BUILT = {"n": 0}  # stand-in backbones built (its model "loaded")


class StandIn:
    """Embeds like melstats; logit of species 0 = 20 · (peak amplitude − 0.1): varies over time.
    Species 1 (unknown to the taxonomy) has a constant logit."""

    spec = BackboneSpec("standin", 32_000, 1.0, 256, 1.0, has_scores=True, denoise=False, rms_normalise=False)

    def __init__(self):
        from birdclef.backbones.melstats import MelStats

        BUILT["n"] += 1
        self._mel = MelStats()
        self.labels = _standin_labels()

    def embed(self, windows):
        return self._mel.embed(windows)

    def embed_and_logits(self, windows):
        CALLS["n"] += 1
        peak = np.abs(np.asarray(windows)).max(axis=1)
        return self._mel.embed(windows), np.stack([20 * (peak - 0.1), np.zeros(len(peak))], axis=1).astype(np.float32)


SPEC = StandIn.spec  # backbone_spec("standin") reads it without building the stand-in


def _standin_labels():
    return [(TARGET["name"] or "Nullus nullus", "Stand-in"), ("Nullus ignotus", "Nobody")]


@backbones.register_labels("standin")
def labels_reader(**_):
    """The stand-in's labels-only path (what every has_scores backbone registers)."""
    return _standin_labels


register("standin")(lambda **_: StandIn())


@pytest.fixture
def standin(monkeypatch, tiny_demo):
    taxonomy = load_taxonomy(tiny_demo / "taxonomy.csv")
    TARGET["name"] = taxonomy["scientific_name"].iloc[1]
    monkeypatch.setitem(backbones.BACKBONES, "standin", __name__)
    return taxonomy


class NoScores:
    spec = BackboneSpec("noscores", 32_000, 1.0, 8, 1.0)

    def embed(self, windows):
        return np.zeros((len(windows), 8), np.float32)


def test_classes_map_by_scientific_name_ignoring_case_and_spaces():
    taxonomy = pd.DataFrame({"primary_label": ["a", "b", "c"],
                             "scientific_name": ["Parus major", "Boana minor ", "Nothing here"]})
    cols = map_taxonomy(taxonomy, [("Boana  MINOR", "x"), ("Parus major", "Great Tit"), ("Parus major", "dup")])
    assert cols.tolist() == [1, 0, -1]


def test_no_scores_or_no_mapped_class_turns_zero_shot_off(tiny_demo, standin):
    config = build_config(data_dir=str(tiny_demo), backbone="melstats")
    assert load_zero_shot(config, standin) is None  # melstats declares no species scores
    TARGET["name"] = "Turdus nowhere"
    assert load_zero_shot(build_config(data_dir=str(tiny_demo), backbone="standin"), standin) is None


def test_logits_are_stored_with_the_embeddings_and_windows_take_the_best_frame(tiny_demo, standin, tmp_path):
    config = build_config(data_dir=str(tiny_demo), work_dir=str(tmp_path), backbone="standin", n_workers=1)
    zs = load_zero_shot(config, standin)
    assert zs is not None and zs.mapped.tolist() == [False, True, False, False]
    assert zs.score_columns.tolist() == [0]
    f = list_audio(competition_paths(tiny_demo).test_soundscapes)[0]
    e = embed_recording(f, backbone=StandIn(), config=config, need_speech=False, score_columns=zs.score_columns)
    assert e.logits.shape == (len(e.starts_s), 1) and e.score_columns.tolist() == [0]
    cache = EmbeddingCache(config.work_dir, config)
    cache.save(f, e)
    assert cache.load(f, score_columns=np.array([0])) is not None
    assert cache.load(f, score_columns=np.array([0, 1])) is None  # a column it lacks: recomputed, never guessed
    logits = zs.window_logits(cache.load(f), config.window_s)
    assert logits.shape == (4, 4) and (logits[:, [0, 2, 3]] == 0).all()
    frames = e.logits[:, 0]
    for w in range(4):  # frames start every 1 s: window w holds frames 5w … 5w+4
        assert logits[w, 1] == pytest.approx(frames[5 * w:5 * w + 5].max(), abs=1e-2)
    assert len(set(logits[:, 1].round(2))) > 1


def test_choose_weights_follows_the_validation_evidence():
    rng = np.random.default_rng(0)
    n = 400
    y = np.zeros((n, 3))
    y[:100, 0] = y[100:200, 1] = 1
    good = np.where(y > 0, 1.0, -1.0) + rng.normal(0, 1, (n, 3))
    bad = rng.normal(0, 5, (n, 3))  # loud noise: any weight on it costs AUC
    # class 0: the backbone is right, the head is noise → weight 1; class 1: the reverse → weight 0
    prob = 1 / (1 + np.exp(-np.column_stack([bad[:, 0], good[:, 1], bad[:, 2]])))
    logits = np.column_stack([good[:, 0], bad[:, 1], good[:, 2]])
    mapped = np.array([True, True, False])
    # no pull toward the prior or the shared weight: each class takes its own optimum
    w, table, *_ = choose_weights(prob, logits, y, mapped, np.array([20, 20, 0]),
                                  prior=BlendPrior(pairs=0.0, class_recordings=0.0))
    assert w[0] == 1.0 and w[1] == 0.0 and w[2] == 0.0
    assert set(table["class_index"]) == {0, 1}
    # a class without validation positives takes the prior, not the measured class's optimum
    y2 = y.copy()
    y2[:, 1] = 0
    chosen = choose_weights(prob, logits, y2, mapped, np.array([20, 0, 0]), prior=BlendPrior(weight=0.7))
    assert chosen.weights[1] == pytest.approx(0.7)
    # the shared weight: class 0's optimum (1) shrunk toward 0.7 by its 20 recordings against 10
    assert chosen.pairs == 20 and chosen.shared == pytest.approx((20 * 1.0 + 10 * 0.7) / 30)
    # class 0's own optimum (1) shrunk toward that by its 20 recordings against 2
    assert chosen.weights[0] == pytest.approx((20 * 1.0 + 2 * chosen.shared) / 22)
    assert chosen.measured.tolist() == [True, False, False]


def test_blend_weights_lean_on_the_backbone_as_evidence_thins():
    rng = np.random.default_rng(3)
    n = 300
    y = np.zeros((n, 2))
    y[:60, 0] = y[60:120, 1] = 1
    prob = 1 / (1 + np.exp(-(3 * y + rng.standard_normal((n, 2)))))  # the head is right …
    logits = rng.standard_normal((n, 2))  # … the backbone is noise: every curve's optimum is weight 0
    mapped = np.ones(2, bool)
    prior = BlendPrior(weight=0.8, pairs=10.0, class_recordings=2.0, train_recordings=2.0)
    few = choose_weights(prob, logits, y, mapped, np.array([1, 1]), prior=prior)
    many = choose_weights(prob, logits, y, mapped, np.array([40, 40]), prior=prior)
    assert few.shared == pytest.approx(0.8 * 10 / 12)  # two pairs barely move the shared weight …
    assert many.shared == pytest.approx(0.8 * 10 / 90)  # … eighty move it most of the way
    assert (few.weights > many.weights).all()
    # the same evidence, a head trained on fewer recordings: its share shrinks by t / (t + 2)
    trained = choose_weights(prob, logits, y, mapped, np.array([1, 1]), prior=prior, train_recordings=np.array([1, 50]))
    base = 1 - (1 - few.shared) * np.array([1 / 3, 50 / 52])
    assert trained.weights == pytest.approx((1 * 0.0 + 2 * base) / 3)
    # a class the fold's head never trained on takes the prior, leaning by what the submitting head saw
    unseen = choose_weights(prob, logits, y, mapped, np.array([40, 40]), prior=prior,
                            train_recordings=np.array([0, 50]), head_recordings=np.array([6, 60]))
    assert not unseen.measured[0] and unseen.weights[0] == pytest.approx(1 - 0.2 * 6 / 8)
    with pytest.raises(ValueError, match="prior weight"):
        BlendPrior(weight=1.5)


@pytest.fixture(scope="module")
def trained(tiny_demo, tmp_path_factory):
    """One stand-in run for the module (read only: a test that writes into its folder copies it first)."""
    with pytest.MonkeyPatch.context() as mp:
        TARGET["name"] = load_taxonomy(tiny_demo / "taxonomy.csv")["scientific_name"].iloc[1]
        mp.setitem(backbones.BACKBONES, "standin", __name__)
        config = build_config(data_dir=str(tiny_demo), work_dir=str(tmp_path_factory.mktemp("zs_run")),
                              backbone="standin", n_workers=1, epochs=3, smoothing_kernel=(1.0,),
                              postprocess=CHAIN,  # blended scores stay as they are
                              val_soundscapes=4)  # 4 mixed validation minutes, not 30: the context model needs 4
        run_preprocess(config=config)
        run_training(config=config, progress=False)
    return config


@pytest.mark.slow
def test_training_chooses_blend_weights_for_mapped_classes_only(trained):
    _, meta = load_head(f"{trained.work_dir}/model/head.pt")
    assert len(meta.zero_shot_weights) == 4
    assert meta.zero_shot_weights[0] == meta.zero_shot_weights[2] == meta.zero_shot_weights[3] == 0.0
    assert 0.0 <= meta.zero_shot_weights[1] <= 1.0
    table = pd.read_csv(f"{trained.work_dir}/model/zero_shot.csv")
    assert table["mapped"].tolist() == [False, True, False, False]
    assert table["weight"].tolist() == pytest.approx(list(meta.zero_shot_weights))
    import json

    metrics = json.loads(open(f"{trained.work_dir}/model/metrics.json").read())
    assert 0 <= metrics["blend_shared_weight"] <= 1 and metrics["blend_measured_classes"] == int(table["measured"].sum())


@pytest.mark.slow
def test_the_head_that_submits_is_refit_on_every_recording(trained):
    import json

    metrics = json.loads(open(f"{trained.work_dir}/model/metrics.json").read())
    manifest = pd.read_csv(f"{trained.work_dir}/preprocess/manifest.csv")
    assert metrics["n_train_recordings"] < len(manifest)  # the validation fold chose the epoch …
    assert metrics["n_refit_recordings"] == len(manifest)  # … then every labelled recording trained the head
    assert metrics["refit_epochs"] == metrics["best_epoch"]


@pytest.mark.slow
def test_submission_blends_from_the_cache_without_a_second_pass(trained, tiny_demo, standin, tmp_path):
    labels = standin["primary_label"].tolist()
    plain = run_submission(config=build_config(**{**trained.to_dict(), "zero_shot_weight": 0.0}),
                           out_path=tmp_path / "plain.csv").submission
    full = build_config(**{**trained.to_dict(), "zero_shot_weight": 1.0})
    CALLS["n"] = 0
    blended = run_submission(config=full, out_path=tmp_path / "blended.csv").submission
    assert CALLS["n"] == 0  # the test soundscapes' logits came from the embedding cache
    zs = load_zero_shot(full, standin)
    cache = EmbeddingCache(full.work_dir, full)
    expected = np.concatenate([1 / (1 + np.exp(-zs.window_logits(cache.load(f), 5.0)[:, 1]))
                               for f in list_audio(competition_paths(tiny_demo).test_soundscapes)])
    np.testing.assert_allclose(blended[labels[1]].to_numpy(), expected, rtol=1e-4, atol=1e-6)
    others = [labels[i] for i in (0, 2, 3)]
    np.testing.assert_allclose(blended[others].to_numpy(), plain[others].to_numpy(), atol=1e-6)


def test_the_mapping_reads_labels_without_building_the_backbone(tiny_demo, standin):
    config = build_config(data_dir=str(tiny_demo), backbone="standin")
    BUILT["n"] = 0
    zs = load_zero_shot(config, standin)
    assert BUILT["n"] == 0 and zs.class_columns.tolist() == [-1, 0, -1, -1]
    # a built backbone passed in gives the same mapping from its own labels
    np.testing.assert_array_equal(load_zero_shot(config, standin, backbone=StandIn()).class_columns, zs.class_columns)


def test_a_scoring_backbone_without_a_labels_reader_is_named(monkeypatch, tiny_demo, standin):
    import types

    from birdclef.errors import BirdclefError

    module = types.ModuleType("scores_without_reader")
    module.SPEC = BackboneSpec("noreader", 32_000, 1.0, 8, 1.0, has_scores=True)
    monkeypatch.setitem(__import__("sys").modules, module.__name__, module)
    monkeypatch.setitem(backbones.BACKBONES, "noreader", module.__name__)
    with pytest.raises(BirdclefError, match="registers no species-list reader"):
        load_zero_shot(build_config(data_dir=str(tiny_demo), backbone="noreader"), standin)


def test_birdnet_without_a_model_fails_as_building_it_would_and_without_labels_blends_nothing(tmp_path, tiny_demo,
                                                                                              standin, caplog):
    from birdclef.errors import BackboneUnavailable

    with pytest.raises(BackboneUnavailable, match="BirdNET model not found"):
        load_zero_shot(build_config(backbone="birdnet", backbone_path=str(tmp_path / "none.tflite")), standin)
    lonely = tmp_path / "model.tflite"  # a model file with no labels file beside it
    lonely.write_bytes(b"not read: the labels-only path never opens the model")
    assert load_zero_shot(build_config(backbone="birdnet", backbone_path=str(lonely)), standin) is None
    assert "zero-shot blending is off" in caplog.text


def test_perch_v2_labels_only_match_the_loaded_models(tmp_path, tiny_demo):
    pytest.importorskip("onnxruntime")
    from test_backbone_perch_v2 import K, _perch_labels, _save_onnx

    from birdclef.backbones import labels_reader
    from birdclef.backbones.perch_v2 import N_CLASSES, make_perch_v2

    taxonomy = load_taxonomy(tiny_demo / "taxonomy.csv")
    folder = tmp_path / "standin"
    folder.mkdir()
    _save_onnx(folder / "perch_v2.onnx")
    _perch_labels(folder / "labels.csv", taxonomy)
    # a stand-in's label file (K classes, not Google's 14,795): read against the model's own logit count
    labels = labels_reader("perch_v2", model_path=str(folder))()
    assert len(labels) == K and labels == make_perch_v2(model_path=str(folder)).labels
    # a label file of Google's 14,795 classes is read as the model's without loading it
    real = tmp_path / "real"
    real.mkdir()
    (real / "perch_v2.onnx").write_bytes(b"never loaded")
    _perch_labels(real / "labels.csv", taxonomy, k=N_CLASSES)
    config = build_config(data_dir=str(tiny_demo), backbone="perch_v2", backbone_path=str(real))
    assert len(labels_reader("perch_v2", model_path=str(real))()) == N_CLASSES
    assert load_zero_shot(config, taxonomy).class_columns.tolist() == [-1, 5, 3, -1]


@pytest.mark.slow
def test_each_ensemble_member_blends_with_its_own_backbone(trained, demo_run, standin, tmp_path):
    """A stand-in head behind a melstats head (no species scores) still blends with the stand-in's
    logits, and the melstats head is never blended with them."""
    labels = standin["primary_label"].tolist()
    mel = demo_run(into=tmp_path / "mel", epochs=2, smoothing_kernel=(1.0,), postprocess=CHAIN).replace(zero_shot_weight=1.0)
    mel_alone = run_submission(config=mel, out_path=tmp_path / "mel.csv").submission[labels].to_numpy()
    full = build_config(**{**trained.to_dict(), "zero_shot_weight": 1.0})
    standin_alone = run_submission(config=full, out_path=tmp_path / "standin.csv").submission[labels].to_numpy()
    standin_dir = f"{trained.work_dir}/model"

    def ensemble(name, weights, blend="mean"):
        config = build_config(**{**mel.to_dict(), "ensemble_model_dirs": [standin_dir], "ensemble_weights": weights,
                                 "ensemble_blend": blend})
        return run_submission(config=config, out_path=tmp_path / f"{name}.csv").submission[labels].to_numpy()

    np.testing.assert_allclose(ensemble("second", [0.0, 1.0]), standin_alone, atol=1e-6)  # blended with its own logits
    np.testing.assert_allclose(ensemble("first", [1.0, 0.0]), mel_alone, atol=1e-6)  # nothing blended into melstats
    np.testing.assert_allclose(ensemble("both", [1.0, 1.0]), (mel_alone + standin_alone) / 2, atol=1e-5)


@pytest.mark.slow
def test_the_rank_blend_of_a_submission_ranks_over_every_test_window(trained, standin, tmp_path):
    """rank_blend at weight 1: the mapped class in the backbone's order over all files (as the logit blend at
    weight 1 keeps it), on the head's own values; unmapped classes as the head alone gives them."""
    from scipy.stats import rankdata

    labels = standin["primary_label"].tolist()

    def submit(name, **params):
        config = build_config(**{**trained.to_dict(), **params})
        return run_submission(config=config, out_path=tmp_path / f"{name}.csv").submission[labels].to_numpy()

    head = submit("head", zero_shot_weight=0.0)
    backbone = submit("backbone", zero_shot_weight=1.0)
    ranked = submit("ranked", zero_shot_weight=0.0, postprocess=("blend", "rank_blend", "site_prior", "smoothing"),
                    rank_blend_weight=1.0)
    np.testing.assert_array_equal(rankdata(ranked[:, 1]), rankdata(backbone[:, 1]))
    np.testing.assert_allclose(np.sort(ranked[:, 1]), np.sort(head[:, 1]), rtol=1e-5)
    np.testing.assert_allclose(ranked[:, [0, 2, 3]], head[:, [0, 2, 3]], rtol=1e-6)


@pytest.mark.slow
def test_a_submission_with_the_context_step_needs_the_folders_context_model(trained, standin, tmp_path):
    import shutil

    from birdclef.errors import BirdclefError
    from birdclef.models.context import train_context
    from birdclef.workdir import ModelFolder

    # the context model is written into the run's model folder: a copy, so the module's run stays as trained
    trained = build_config(**{**trained.to_dict(), "work_dir": str(shutil.copytree(trained.work_dir, tmp_path / "run"))})
    config = build_config(**{**trained.to_dict(), "postprocess": (*CHAIN, "context"), "context_epochs": 2})
    with pytest.raises(BirdclefError, match="no context.pt: train the head with 'context' in postprocess"):
        run_submission(config=config, out_path=tmp_path / "no.csv")
    train_context(ModelFolder(Path(trained.work_dir) / "model"), config)
    labels = standin["primary_label"].tolist()
    plain = run_submission(config=trained, out_path=tmp_path / "plain.csv").submission[labels].to_numpy()
    with_context = run_submission(config=config, out_path=tmp_path / "ctx.csv").submission[labels].to_numpy()
    assert with_context.shape == plain.shape and np.abs(with_context - plain).max() > 1e-4


def reported_case(seed: int = 0):
    """Issue 31's failure rebuilt: 145 mapped classes (and 5 unmapped); one (class 0) with one validation
    recording, on which the head beats the backbone; five more with validation positives that the fold's
    head never trained on, where the backbone is far better; the other 139 with no validation positive,
    each trained on 1–3 recordings. → (prob, zs, y, groups, train_recordings, zero_shot, labels)."""
    from birdclef.features.zeroshot import ZeroShot

    rng = np.random.default_rng(seed)
    n_groups, per_group, c = 12, 30, 150
    groups = np.repeat([f"rec{g}" for g in range(n_groups)], per_group).astype(object)
    y = np.zeros((n_groups * per_group, c))
    y[rng.choice(per_group, 10, replace=False), 0] = 1  # class 0: calls in recording 0 only
    for k in range(1, 6):  # classes 1–5: calls in two recordings each
        for g in (2 * k, 2 * k + 1):
            y[g * per_group + rng.choice(per_group, 8, replace=False), k] = 1
    noise = rng.standard_normal(y.shape)
    head = rng.standard_normal(y.shape)  # a head that knows nothing of a class …
    head[:, 0] = 3.0 * y[:, 0] + noise[:, 0]  # … except class 0, which it knows better than the backbone
    zs = 2.0 * y + rng.standard_normal(y.shape)
    zs[:, 0] = 0.8 * y[:, 0] + 1.5 * rng.standard_normal(len(y))
    train = rng.integers(1, 4, c)
    train[1:6] = 0  # the fold's head never trained on classes 1–5
    zero_shot = ZeroShot(np.where(np.arange(c) < 145, 0, -1))
    return 1 / (1 + np.exp(-head)), zs, y, groups, train, zero_shot, [f"c{j}" for j in range(c)]


def test_one_measured_class_does_not_set_the_weight_of_every_mapped_class():
    """Issue 31: one class with one validation recording, where the head happened to win, set the blend
    weight of all 145 mapped classes to 0.1 while the backbone was far better over the six classes with
    validation positives, and the finished blend fell below the backbone on the rows that chose it."""
    from birdclef.models.train import blend_weights

    prob, zs, y, groups, train, zero_shot, labels = reported_case()
    weights, table = blend_weights(prob, zs, y, groups, train, zero_shot, labels)
    scored = table[table["mapped"] & table["val_auc_zero_shot"].notna()]
    assert len(scored) == 6 and scored["val_recordings"].tolist() == [1, 2, 2, 2, 2, 2]
    # the case as reported: the backbone far ahead of the head over the six, the head ahead on class 0
    assert scored["val_auc_zero_shot"].mean() > scored["val_auc_head"].mean() + 0.2
    assert scored.loc[0, "val_auc_head"] > scored.loc[0, "val_auc_zero_shot"]
    unmeasured = table["mapped"] & table["val_auc_zero_shot"].isna()
    assert unmeasured.sum() == 139
    assert (weights[unmeasured.to_numpy()] >= 0.5).all()  # backbone-leaning, not class 0's optimum
    assert (weights[~zero_shot.mapped] == 0).all()
    # the blend (cross-fitted) is not below the backbone on the rows the weights were chosen on
    assert scored["val_auc_blend"].mean() >= scored["val_auc_zero_shot"].mean() - 0.005
