"""The SED family inside the pipeline: 03_train with model_family="sed", SED members in 04_submit's
ensemble (mean / rank blending, weights, engines), and a Kaggle bundle carrying the ONNX model."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import rankdata

pytest.importorskip("timm")
pytest.importorskip("onnxruntime")

from birdclef.config import build_config, load_config  # noqa: E402
from birdclef.data.competition import load_taxonomy  # noqa: E402
from birdclef.models.train import run_training  # noqa: E402
from birdclef.submission.submit import run_submission  # noqa: E402
from birdclef.workdir import RunLayout  # noqa: E402

SED = dict(model_family="sed", sed_backbone="test_efficientnet", sed_epochs=2, sed_batch_size=4,
           sed_params={"n_mels": 64, "ema_decay": None, "learning_rate": 3e-3})


@pytest.fixture(scope="module")
def runs(demo_run, tmp_path_factory):
    """An MLP run and a SED run on the same preprocessed data (the session's melstats embeddings, shared)."""
    root = tmp_path_factory.mktemp("sedstage")
    mlp = demo_run(into=root / "mlp", epochs=5, loss="ce", smoothing_kernel=(1.0,),
                   postprocess=("blend", "site_prior", "smoothing"))  # no file boost
    RunLayout(root / "sed").link_caches(RunLayout.of(mlp))  # the MLP run's embeddings and preprocess folder
    sed = mlp.replace(work_dir=str(root / "sed"), **SED)  # the MLP's values inherited, its head settings unread
    result = run_training(config=sed, progress=False)
    return mlp, sed, result


@pytest.mark.slow
def test_the_training_stage_trains_a_sed_model_and_leaves_a_pipeline_model_folder(runs):
    _, sed, result = runs
    out = Path(sed.work_dir) / "model"
    assert result.out_dir == out and len(result.history) == 2
    assert (out / "sed" / "model.onnx").is_file() and (out / "sed" / "model.pt").is_file()
    assert not (out / "head.pt").exists()
    saved = load_config(out / "config.json")  # the pipeline's config: 04_submit inherits it
    assert saved.model_family == "sed" and saved.sed_backbone == "test_efficientnet"
    sed_saved = json.loads((out / "sed" / "config.json").read_text())
    assert sed_saved["family"] == "sed" and sed_saved["init"] == "random" and sed_saved["n_mels"] == 64
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model_family"] == "sed" and metrics["n_val_recordings"] > 0 and 0 <= metrics["val_auc"] <= 1
    per_class = pd.read_csv(out / "per_class_auc.csv")
    assert len(per_class) == len(result.per_class) == 4


@pytest.mark.slow
def test_a_sed_run_submits_on_its_own_with_onnx_as_torch_does(runs, tiny_demo, tmp_path):
    _, sed, _ = runs
    labels = load_taxonomy(tiny_demo / "taxonomy.csv")["primary_label"].tolist()
    onnx = run_submission(config=sed, out_path=tmp_path / "onnx.csv").submission
    assert list(onnx.columns) == ["row_id", *labels] and len(onnx) == 2 * 4
    values = onnx[labels].to_numpy()
    assert np.isfinite(values).all() and values.min() >= 0 and values.max() <= 1 and values.std() > 0
    torch_sub = run_submission(config=sed.replace(sed_engine="torch"),
                               out_path=tmp_path / "torch.csv").submission
    np.testing.assert_allclose(torch_sub[labels].to_numpy(), values, atol=1e-4)


@pytest.mark.slow
def test_an_ensemble_mixes_mlp_and_sed_runs_with_weights_and_rank_blending(runs, tiny_demo, tmp_path):
    mlp, sed, _ = runs
    labels = load_taxonomy(tiny_demo / "taxonomy.csv")["primary_label"].tolist()
    alone = run_submission(config=mlp, out_path=tmp_path / "mlp.csv").submission[labels].to_numpy()
    sed_dir = str(Path(sed.work_dir) / "model")

    def submit(name, **params):
        config = build_config(**{**mlp.to_dict(), "ensemble_model_dirs": [sed_dir], **params})
        return run_submission(config=config, out_path=tmp_path / f"{name}.csv").submission[labels].to_numpy()

    np.testing.assert_allclose(submit("w10", ensemble_weights=[1.0, 0.0]), alone, atol=1e-6)  # weight 0: SED unused
    equal = submit("w11")
    assert not np.allclose(equal, alone)
    only_sed = run_submission(config=sed, out_path=tmp_path / "sed.csv").submission[labels].to_numpy()
    np.testing.assert_allclose(equal, (alone + only_sed) / 2, atol=1e-5)  # no post-processing here: a plain mean
    ranked = submit("rank", ensemble_blend="rank", ensemble_weights=[1.0, 0.0])
    assert ranked.min() > 0 and ranked.max() <= 1
    for c in range(len(labels)):  # ranks over every test window, per class: the MLP's ordering kept
        np.testing.assert_allclose(rankdata(ranked[:, c]), rankdata(alone[:, c]))
    mixed = submit("rank11", ensemble_blend="rank")
    expected = (rankdata(alone, axis=0) + rankdata(only_sed, axis=0)) / (2 * len(alone))
    np.testing.assert_allclose(mixed, expected, atol=1e-6)
    with pytest.raises(ValueError, match="one non-negative weight per model"):
        build_config(**{**mlp.to_dict(), "ensemble_model_dirs": [sed_dir], "ensemble_weights": [1.0]})


@pytest.mark.slow
def test_a_kaggle_bundle_carries_the_onnx_model_and_onnxruntime(runs, tmp_path, monkeypatch):
    from test_kaggle import USER, offline_wheel_cache

    from birdclef.submission import kaggle

    _, sed, _ = runs
    cache = offline_wheel_cache(tmp_path, monkeypatch)
    built = kaggle.build_bundle(run_dir=sed.work_dir, out_dir=tmp_path / "build", user=USER, wheel_cache=cache,
                                python_versions=["3.12"], competition="birdclef-2025")
    carried = built.dataset_dir / "model" / "sed"
    assert (carried / "model.onnx").is_file() and (carried / "labels.json").is_file()
    assert not (carried / "model.pt").exists()  # the kernel runs the export; the torch weights stay home
    assert any(p.name.startswith("onnxruntime-") for p in (built.dataset_dir / "wheels").iterdir())
    assert "onnxruntime" in built.marker["install_no_deps"]
    # what the kernel loads: the bundled folder alone scores like the run
    from birdclef.models.sed.run import open_exported

    exported = open_exported(carried)
    assert exported.labels == json.loads((Path(sed.work_dir) / "model" / "sed" / "labels.json").read_text())["labels"]


@pytest.mark.slow
def test_sed_members_run_in_worker_processes_as_they_run_here(runs, tiny_demo):
    from birdclef.data.competition import list_audio
    from birdclef.family import load_members
    from birdclef.models.sed.family import sed_predictions

    _, sed, _ = runs
    labels = load_taxonomy(tiny_demo / "taxonomy.csv")["primary_label"].tolist()
    members = load_members(sed, [Path(sed.work_dir) / "model"], labels)
    files = list_audio(tiny_demo / "test_soundscapes") * 4  # 8 files: enough for 2 workers of 4
    broken = Path(sed.work_dir) / "broken.ogg"
    broken.write_bytes(b"not audio")
    here = sed_predictions([*files, broken], members, n_workers=1)
    pooled = sed_predictions([*files, broken], members, n_workers=2)
    assert set(here) == set(pooled) == {str(f) for f in [*files, broken]}
    assert isinstance(here[str(broken)], str) and isinstance(pooled[str(broken)], str)  # a reason, not a crash
    for f in files:
        np.testing.assert_allclose(pooled[str(f)][0], here[str(f)][0], atol=1e-6)


def _old_sed_config(config, *, distill_logits=True):
    """sed_config as it was written by hand before the Config fields declared what they feed: the expectation."""
    from birdclef.models.sed.config import build_sed_config

    return build_sed_config(**{
        "backbone": config.sed_backbone, "pretrained_path": config.sed_pretrained_path, "clip_s": config.sed_clip_s,
        "window_s": config.window_s, "epochs": config.sed_epochs, "batch_size": config.sed_batch_size,
        "seed": config.seed, "val_fraction": config.val_fraction, "secondary_weight": config.secondary_weight,
        "balanced_sampling": config.balanced_sampling, "student_rounds": config.sed_student_rounds,
        "distill_embedding_weight": config.sed_distill_weight,
        "distill_logit_weight": config.sed_distill_weight if distill_logits else 0.0,
        **config.sed_params})


@pytest.mark.parametrize("params", [
    {},
    dict(model_family="sed", **{k: v for k, v in SED.items() if k != "model_family"}),
    dict(model_family="sed", sed_backbone="hgnetv2_b0", sed_pretrained_path="/w/hgnet.pth", sed_clip_s=10.0,
         sed_epochs=3, sed_batch_size=8, sed_distill_weight=0.7, sed_student_rounds=2, seed=5, val_fraction=0.25,
         secondary_weight=0.3, balanced_sampling=True),
    dict(model_family="sed", sed_epochs=3, sed_params={"epochs": 4, "seed": 9, "loss": "focal", "clip_s": 20.0}),
])
def test_the_sed_config_is_what_the_hand_written_mapping_built(params):
    from birdclef.models.sed.stage import sed_config

    config = build_config(**params)
    for distill_logits in (True, False):
        built = sed_config(config, distill_logits=distill_logits)
        assert built == _old_sed_config(config, distill_logits=distill_logits)
    assert sed_config(config).distill_logit_weight == config.sed_distill_weight
    assert sed_config(config, distill_logits=False).distill_logit_weight == 0.0
