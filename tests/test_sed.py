"""SED models (birdclef.models.sed): a tiny timm CNN on a tiny synthetic dataset, each test seconds."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

pytest.importorskip("timm")

from birdclef.errors import BirdclefError, ParameterError  # noqa: E402
from birdclef.models import sed  # noqa: E402
from birdclef.models.sed.augment import mixup, spec_augment  # noqa: E402
from birdclef.models.sed.infer import torch_outputs  # noqa: E402
from birdclef.models.sed.losses import bce, focal, soft_auc  # noqa: E402
from birdclef.models.sed.model import attention_weights  # noqa: E402
from birdclef.models.sed.train import _loader, evaluate, pick_device  # noqa: E402

TINY = "test_efficientnet"  # timm's own 0.1M-parameter test model


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: on a shared 2-core machine more threads only contend (and results stay comparable)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """3 classes × 2 recordings of 4-6 s, one 15-s train and one 15-s test soundscape."""
    from birdclef.data.demo import make_demo_dataset

    root = tmp_path_factory.mktemp("sed_demo")
    make_demo_dataset(root, n_classes=3, recordings_per_class=2, recording_s=(4.0, 6.0), n_train_soundscapes=1,
                      n_test_soundscapes=1, soundscape_s=15.0, speech_fraction=0.0, seed=0)
    return root


@pytest.fixture(scope="module")
def table(demo) -> tuple[pd.DataFrame, list[str]]:
    rec, skipped = sed.recordings_table(demo)
    assert skipped.empty
    labels = pd.read_csv(demo / "taxonomy.csv", dtype=str)["primary_label"].tolist()
    return rec, labels


def tiny_config(**kw) -> sed.SedConfig:
    base = dict(backbone=TINY, n_mels=64, epochs=1, batch_size=4, learning_rate=3e-3, ema_decay=None)
    return sed.build_sed_config(**{**base, **kw})


def _wave(path: Path, seconds: float, seed: int = 0, sr: int = 32_000) -> Path:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = 0.05 * rng.standard_normal(len(t)) + 0.3 * np.sin(2 * np.pi * 2500 * t) * (np.sin(2 * np.pi * 0.5 * t) > 0)
    sf.write(path, x.astype(np.float32), sr)
    return path


# ---------------------------------------------------------------- config


def test_config_refuses_unknown_and_bad_values():
    with pytest.raises(ParameterError, match="unknown SED parameter"):
        sed.build_sed_config(no_such_field=1)
    with pytest.raises(ParameterError, match="epochs"):
        sed.build_sed_config(epochs="two")
    with pytest.raises(ValueError, match="clip_s"):
        sed.build_sed_config(clip_s=7.0)
    with pytest.raises(ValueError, match="loss=.hinge. is not valid"):
        sed.build_sed_config(loss="hinge")
    cfg = sed.build_sed_config(epochs="3", clip_s="20", pretrained_path="none")
    assert (cfg.epochs, cfg.clip_s, cfg.windows_per_clip, cfg.pretrained_path, cfg.init) == (3, 20.0, 4, None, "random")
    assert cfg.replace(loss="soft_auc").loss == "soft_auc"


def test_import_needs_no_timm_or_onnx_and_exported_runs_need_no_timm(tmp_path):
    pytest.importorskip("onnxruntime")
    cfg = tiny_config()
    run = sed.save_run(tmp_path / "run", sed.build_model(cfg, 3), cfg, ["a", "b", "c"])
    wav = _wave(tmp_path / "minute.wav", 60.0)
    code = ("import sys, birdclef, birdclef.models.sed; import birdclef.models.sed.export\n"
            "bad = [m for m in ('timm', 'onnx', 'onnxruntime', 'openvino') if m in sys.modules]\n"
            "assert not bad, bad\n"
            f"exported = birdclef.models.sed.open_exported({str(run)!r})\n"
            f"assert exported.predict({str(wav)!r}).shape == (12, 3) and exported.labels == ['a', 'b', 'c']\n"
            "assert 'timm' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# ---------------------------------------------------------------- model


def test_shapes_and_attention_pooling():
    cfg = tiny_config()
    model = sed.build_model(cfg, 5).eval()
    with torch.no_grad():
        mel = model.frontend(torch.randn(2, cfg.clip_samples) * 0.1)
        clip, frame, att = model.forward_mel(mel)
    assert mel.shape == (2, 1, 64, 1 + cfg.clip_samples // cfg.hop_length)
    assert clip.shape == (2, 5) and frame.shape[0] == 2 and frame.shape[2] == 5 and att.shape == frame.shape
    assert frame.shape[1] == 10  # 313 mel frames, stride 32
    w = attention_weights(att)
    assert torch.allclose(w.sum(dim=1), torch.ones(2, 5), atol=1e-6)
    assert torch.allclose((w * frame).sum(dim=1), clip, atol=1e-5)
    # one window per clip: the window logit is the clip logit; four windows each pool their own frames
    assert np.allclose(sed.window_logits(frame.numpy(), att.numpy(), 1), clip.numpy(), atol=1e-5)
    four = sed.window_logits(frame.numpy(), att.numpy(), 4)
    assert four.shape == (8, 5)
    f, a = frame.numpy()[0], att.numpy()[0]
    first = np.exp(a[:2]) / np.exp(a[:2]).sum(0) * f[:2]  # frames 0-1 have centres in the first quarter
    assert np.allclose(four[0], first.sum(0), atol=1e-5)


def test_mel_front_end_is_per_clip():
    cfg = tiny_config()
    fe = sed.build_model(cfg, 2).frontend
    x = torch.randn(3, cfg.clip_samples) * torch.tensor([[0.001], [0.1], [1.0]])
    together = fe(x)
    alone = torch.cat([fe(x[i:i + 1]) for i in range(3)])
    assert torch.allclose(together, alone, atol=1e-4)  # no batch-wide top_db or statistics
    assert torch.allclose(together.mean(dim=(1, 2, 3)), torch.zeros(3), atol=1e-4)


def test_unknown_backbone_and_pretrained_file(tmp_path):
    import timm

    with pytest.raises(ValueError, match="unknown timm backbone"):
        sed.build_model(tiny_config(backbone="no_such_net"), 3)
    with pytest.raises(BirdclefError, match="not a file"):
        sed.build_model(tiny_config(pretrained_path=str(tmp_path / "missing.pth")), 3)
    rgb = timm.create_model(TINY, pretrained=False)  # 3 channels and a classifier, as published weights are
    torch.save(rgb.state_dict(), tmp_path / "weights.pth")
    cfg = tiny_config(pretrained_path=str(tmp_path / "weights.pth"))
    model = sed.build_model(cfg, 3)
    stem = rgb.state_dict()["conv_stem.weight"].sum(dim=1, keepdim=True)  # timm sums the first conv over RGB
    assert torch.allclose(model.backbone.state_dict()["conv_stem.weight"], stem, atol=1e-6)
    assert cfg.init == "pretrained" and tiny_config().init == "random"


# ---------------------------------------------------------------- augmentation and losses


def test_mixup_mixes_waves_and_unites_targets():
    wave = torch.randn(4, 100)
    targets = torch.eye(4)
    extra = torch.randn(4, 7)
    x, t, (e,), lam, perm = mixup(wave, targets, alpha=0.5, generator=torch.Generator().manual_seed(0), others=(extra,))
    assert x.shape == wave.shape and t.shape == targets.shape and e.shape == extra.shape
    assert torch.allclose(x, lam[:, None] * wave + (1 - lam[:, None]) * wave[perm])
    assert torch.allclose(e, lam[:, None] * extra + (1 - lam[:, None]) * extra[perm])
    assert torch.equal(t, torch.maximum(targets, targets[perm]))
    assert ((lam > 0) & (lam < 1)).all()
    again = mixup(wave, targets, alpha=0.5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again[0], x)
    assert not torch.equal(mixup(wave, targets, alpha=0.5, generator=torch.Generator().manual_seed(1))[0], x)


def test_spec_augment_masks_as_specified():
    mel = torch.randn(3, 1, 32, 100) + 5.0  # no element is 0 before masking
    out = spec_augment(mel, time_masks=2, time_mask_frames=10, freq_masks=1, freq_mask_bins=4,
                       generator=torch.Generator().manual_seed(0))
    assert out.shape == mel.shape and out is not mel
    assert (mel != 0).all()  # the input is untouched
    zero = out == 0
    for b in range(3):
        cols = zero[b, 0].all(dim=0)  # whole frames masked
        rows = zero[b, 0].all(dim=1)  # whole mel bins masked
        assert 1 <= int(cols.sum()) <= 20 and 1 <= int(rows.sum()) <= 4
        keep = ~zero[b, 0]
        assert torch.equal(out[b, 0][keep], mel[b, 0][keep])
        assert (zero[b, 0] == (cols[None, :] | rows[:, None])).all()  # only whole frames or bins
    assert torch.equal(spec_augment(mel, time_masks=0, time_mask_frames=10, freq_masks=0, freq_mask_bins=4,
                                    generator=torch.Generator()), mel)


def test_losses():
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    good, bad = 4 * (2 * t - 1), -4 * (2 * t - 1)
    assert soft_auc(good, t).sum() < soft_auc(bad, t).sum()
    assert (focal(good, t) <= bce(good, t)).all()
    assert soft_auc(good, t).shape == (3,)


# ---------------------------------------------------------------- data


def test_clips_labels_and_sampling(table, tmp_path):
    rec, labels = table
    rec = rec.copy()
    rec.loc[0, "secondary_labels"] = labels[2]
    cfg = tiny_config(secondary_weight=0.5, val_clips=3)
    data = sed.SedClips(rec, labels, cfg)
    item = data[0]
    assert item["wave"].shape == (cfg.clip_samples,) and item["wave"].dtype == torch.float32
    expected = np.zeros(3, np.float32)
    expected[labels.index(rec.loc[0, "primary_label"])] = 1.0
    expected[2] = max(expected[2], 0.5)
    assert np.allclose(item["target"].numpy(), expected)
    data.set_epoch(1)
    first = data[0]["wave"]
    assert torch.equal(first, data[0]["wave"])  # the same crop within an epoch
    evaluation = sed.SedClips(rec, labels, cfg, train=False)
    n_expected = sum(min(3, int(np.ceil(d / 5.0 - 1e-9))) for d in evaluation.recordings["duration_s"])
    assert len(evaluation) == n_expected
    windows = pd.DataFrame({"path": [str(rec.loc[0, "path"])] * 2, "start_s": [0.0, 5.0], "end_s": [5.0, 10.0],
                            "labels": [[labels[1]], [labels[1], labels[2]]]})
    both = sed.SedClips(rec, labels, cfg, windows=windows)
    assert len(both) == len(rec) + 2
    assert np.allclose(both[len(rec) + 1]["target"].numpy(), [0, 1, 1])
    w = both.sample_weights(balanced=True, window_share=0.25)
    assert np.isclose(w.sum(), 1.0) and np.isclose(w[len(rec):].sum(), 0.25)
    prim = both.item_primary()[:len(rec)]
    per_class = [w[:len(rec)][prim == c].sum() for c in range(3)]
    assert np.allclose(per_class, per_class[0])


def test_bad_recording_is_skipped_and_cache_matches(table, tmp_path):
    rec, labels = table
    bad = tmp_path / "broken.ogg"
    bad.write_bytes(b"not audio")
    with_bad = pd.concat([rec, pd.DataFrame([{"path": str(bad), "primary_label": labels[0]}])], ignore_index=True)
    cfg = tiny_config()
    data = sed.SedClips(with_bad, labels, cfg, train=False)
    assert list(data.skipped["path"]) == [str(bad)] and data.n_recordings == len(rec)
    cache = sed.build_wave_cache(rec["path"], cfg, progress=False)
    cached = sed.SedClips(rec, labels, cfg, train=False, cache=cache)
    assert cache.nbytes > 0
    for i in range(len(cached)):
        assert torch.allclose(cached[i]["wave"], data[i]["wave"], atol=1e-3)  # float16 in memory


def test_loader_workers_do_not_change_batches(table):
    rec, labels = table
    data = sed.SedClips(rec, labels, tiny_config())
    data.set_epoch(3)
    batches = []
    for workers in (0, 2):
        cfg = tiny_config(num_workers=workers, balanced_sampling=True)
        loader = _loader(data, cfg, train=True, generator=torch.Generator().manual_seed(0))
        batches.append(torch.cat([b["wave"] for b in loader]))
    assert torch.equal(batches[0], batches[1])


# ---------------------------------------------------------------- training


@pytest.mark.slow
def test_training_reduces_loss(table):
    rec, labels = table
    cfg = tiny_config(epochs=8, batch_size=3, mixup_alpha=0.0, time_masks=0, freq_masks=0, learning_rate=5e-3)
    train = sed.SedClips(rec, labels, cfg)
    fixed = sed.SedClips(rec, labels, cfg, train=False)
    before, _ = evaluate(sed.build_model(cfg, len(labels)), fixed, cfg)
    result = sed.train_sed(train, cfg, val=fixed, progress=False)
    after, _ = evaluate(result.model, fixed, cfg)
    assert after < before
    assert list(result.history.columns) == ["epoch", "train_loss", "val_loss", "val_auc", "lr", "seconds"]
    assert len(result.history) == 8 and result.history["train_loss"].iloc[-3:].mean() < result.history["train_loss"].iloc[0]
    assert result.metrics["device"] == pick_device().type and result.metrics["init"] == "random"
    assert not result.model.training


@pytest.mark.slow
def test_same_seed_same_weights(table):
    rec, labels = table
    cfg = tiny_config(epochs=1, mixup_prob=1.0, ema_decay=0.9)  # mixup, SpecAugment and EMA all on
    runs = [sed.train_sed(sed.SedClips(rec, labels, c), c, progress=False).model.state_dict()
            for c in (cfg, cfg, cfg.replace(seed=1))]
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert not all(torch.equal(runs[0][k], runs[2][k]) for k in runs[0])


# ---------------------------------------------------------------- distillation


def test_distillation_losses_are_zero_when_matched():
    torch.manual_seed(0)
    pooled = torch.randn(4, 8)
    proj = sed.Projection(8, 6)
    target = proj(pooled).detach()
    assert torch.allclose(sed.embedding_loss(proj(pooled), target, torch.ones(4)), torch.zeros(4), atol=1e-6)
    assert (sed.embedding_loss(proj(pooled), -target, torch.ones(4)) > 1.9).all()
    assert torch.equal(sed.embedding_loss(proj(pooled), -target, torch.zeros(4)), torch.zeros(4))
    z = torch.randn(4, 5)
    mask = torch.tensor([1.0, 1.0, 0.0, 1.0, 0.0]).expand(4, 5)
    assert torch.allclose(sed.logit_loss(z, z, mask, 2.0), torch.zeros(4), atol=1e-6)
    assert (sed.logit_loss(z, -z, mask) > 0).all()
    unmapped = torch.where(mask > 0, z, -z)  # differs only where the mask is 0
    assert torch.allclose(sed.logit_loss(z, unmapped, mask), torch.zeros(4), atol=1e-6)


@pytest.mark.slow
def test_teacher_targets_and_distilled_training(table):
    rec, labels = table
    starts = np.arange(0.0, 6.0, 2.5)  # BirdNET-like: 3-s frames every 2.5 s
    rng = np.random.default_rng(0)
    frames = {p: sed.distill.TeacherFrames(starts, rng.standard_normal((len(starts), 6)).astype(np.float16),
                                           rng.standard_normal((len(starts), 3)).astype(np.float16))
              for p in rec["path"]}
    teacher = sed.Teacher(frames, frame_s=3.0, n_classes=3, mapped=np.array([True, False, True]))
    f = frames[rec["path"][0]]
    emb, logits = teacher.targets(rec["path"][0], 0.0, 5.0)  # frames centred at 1.5 and 4.0
    assert np.allclose(emb, f.embeddings[:2].astype(np.float32).mean(0))
    assert np.allclose(logits, f.logits[:2].astype(np.float32).max(0))
    assert teacher.targets("elsewhere.ogg", 0, 5) is None
    cfg = tiny_config(epochs=2, label_weight=0.0, distill_embedding_weight=1.0, distill_logit_weight=1.0)
    data = sed.SedClips(rec, labels, cfg, teacher=teacher)
    item = data[0]
    assert item["teacher_embedding"].shape == (6,) and float(item["has_teacher"]) == 1.0
    assert np.array_equal(item["teacher_mask"].numpy(), [1, 0, 1])
    result = sed.train_sed(data, cfg, progress=False)
    assert result.projection is not None and result.metrics["distilled"]
    assert np.isfinite(result.history["train_loss"]).all()


# ---------------------------------------------------------------- noisy student


@pytest.mark.slow
def test_noisy_student_round_table(demo, table):
    rec, labels = table
    cfg = tiny_config(epochs=1, student_rounds=2)
    train = sed.SedClips(rec, labels, cfg)
    val = sed.SedClips(rec, labels, cfg, train=False)
    initial = sed.train_sed(train, cfg, val=val, progress=False)
    soundscapes = sorted((demo / "train_soundscapes").glob("*.ogg"))
    truth = pd.read_csv(demo / "train_soundscapes_solution.csv", dtype={"row_id": str})
    guard = sed.soundscape_guard(soundscapes, truth, labels, cfg)
    scores = iter([0.5, 0.6, 0.55])  # round 1 gains, round 2 falls: kept, then stop
    kept, rounds = sed.noisy_student(initial, train, cfg, soundscapes, val=val, guard=lambda m, r: next(scores),
                                     progress=False)
    assert list(rounds.columns) == ["round", "n_windows", "mean_top_target", "val_auc", "guard", "gain", "kept"]
    assert list(rounds["round"]) == [0, 1, 2] and list(rounds["kept"]) == [True, True, False]
    assert list(rounds["n_windows"]) == [0, 3, 3]  # one 15-s soundscape: 3 windows
    assert np.isclose(rounds["gain"].iloc[1], 0.1) and kept.metrics["student_rounds_kept"] == 1
    assert 0.0 <= guard(initial.model, initial) <= 1.0
    windows = sed.pseudo_windows({"a.ogg": np.array([[0.5, 1.0]])}, power=2.0, weight=0.5)
    assert np.allclose(windows["targets"][0], [0.25, 1.0]) and windows["weight"][0] == 0.5



def test_pseudo_windows_share_the_heads_soft_targets_and_cap_each_window():
    from birdclef.models.softlabels import soft_targets

    prob = np.random.default_rng(0).uniform(0, 1, (4, 6)).astype(np.float32)
    plain = sed.pseudo_windows({"a.ogg": prob}, power=2.0, weight=0.5)
    np.testing.assert_array_equal(np.stack(plain["targets"]),  # cap off: the earlier probability ** power, exactly
                                  (np.clip(prob.astype(np.float64), 0, 1) ** 2.0).astype(np.float32))
    capped = sed.pseudo_windows({"a.ogg": prob}, power=2.0, weight=0.5, cap=0.75)
    t = np.stack(capped["targets"])
    assert (t.sum(axis=1) <= 0.75 + 1e-6).all()
    np.testing.assert_array_equal(t, soft_targets(prob, power=2.0, cap=0.75))  # one function for both families
    with pytest.raises(ValueError, match="student_cap"):
        sed.SedConfig(student_cap=1.5)


# ---------------------------------------------------------------- export, run folder


def test_onnx_matches_torch_on_real_length_input(tmp_path):
    pytest.importorskip("onnxruntime")
    from birdclef.models.sed.export import ExportedSed, export_onnx

    cfg = sed.build_sed_config(backbone="efficientnet_b0")  # a real size, 128 mels, 5 s at 32 kHz
    model = sed.build_model(cfg, 7).eval()
    onnx_path = export_onnx(model, cfg, tmp_path / "model.onnx")
    exported = ExportedSed(onnx_path, cfg)
    minute = _wave(tmp_path / "minute.wav", 60.0)
    clips, count = sed.file_clips(minute, cfg)
    assert clips.shape == (12, 160_000) and count == 12
    ref = torch_outputs(model, clips)
    got = exported.outputs(clips)
    for r, g in zip(ref, got):
        assert r.shape == g.shape
        assert np.abs(r - g).max() <= 1e-4
    prob = exported.predict_file(minute)
    assert prob.shape == (12, 7)
    assert np.abs(prob - sed.predict_file(model, cfg, minute)).max() <= 1e-4
    one = exported.outputs(clips[:1])[0]  # the batch axis is dynamic
    assert np.abs(one - ref[0][:1]).max() <= 1e-4


def test_save_load_roundtrip_and_long_clips(tmp_path, table):
    pytest.importorskip("onnxruntime")
    rec, labels = table
    cfg = tiny_config(clip_s=20.0)
    model = sed.build_model(cfg, 3)
    out = sed.save_run(tmp_path / "run", model, cfg, labels, prior=np.array([0.5, 0.25, 0.25]),
                       history=pd.DataFrame({"epoch": [1]}), metrics={"val_auc": 0.5})
    assert {"model.pt", "config.json", "labels.json", "model.onnx", "metrics.json", "history.csv"} <= {
        p.name for p in out.iterdir()}
    saved = sed.run.read_json(out / "config.json")
    assert saved["init"] == "random" and saved["family"] == "sed" and saved["n_classes"] == 3
    assert sed.is_sed_run(out) and not sed.is_sed_run(tmp_path)
    run = sed.load_run(out)
    assert run.labels == labels and run.config == cfg and np.allclose(run.prior, [0.5, 0.25, 0.25])
    assert all(torch.equal(v, run.model.state_dict()[k]) for k, v in model.state_dict().items())
    minute = _wave(tmp_path / "minute.wav", 60.0)
    by_torch = run.predictor("torch")(minute)
    by_onnx = run.predictor("onnxruntime")(minute)
    assert by_torch.shape == (12, 3)  # 3 clips of 20 s, each pooled into 4 windows of 5 s
    assert np.abs(by_torch - by_onnx).max() <= 1e-4
    short = _wave(tmp_path / "short.wav", 33.0)
    assert run.predictor("torch")(short).shape == (7, 3)
    with pytest.raises(BirdclefError, match="not a SED run"):
        sed.load_run(tmp_path)


def test_openvino_matches_onnx(tmp_path):
    pytest.importorskip("openvino")
    from birdclef.models.sed.export import ExportedSed, export_onnx, export_openvino

    cfg = tiny_config()
    model = sed.build_model(cfg, 4)
    xml = export_openvino(export_onnx(model, cfg, tmp_path / "model.onnx"))
    assert xml is not None and xml.with_suffix(".bin").exists()
    clips = np.random.default_rng(0).standard_normal((3, cfg.clip_samples)).astype(np.float32) * 0.1
    ref = torch_outputs(model, clips)[0]
    got = ExportedSed(xml, cfg, engine="openvino").outputs(clips)[0]
    assert np.abs(ref - got).max() <= 1e-4


def _sessions_table(seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """8 labels × 6 recordings, each label's recordings in 3 sessions of 2 (one recordist, one place)."""
    rows, groups = [], []
    for c in range(8):
        for r in range(6):
            rows.append({"filename": f"c{c}/XC{1000 * c + r}.ogg", "path": "", "primary_label": f"c{c}",
                         "secondary_labels": "", "author": f"a{c}"})
            groups.append(f"session:c{c}-{r // 2}")
    return pd.DataFrame(rows), np.array(groups)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_sed_validation_split_holds_out_whole_sessions_and_keeps_every_label_in_training(seed):
    recordings, groups = _sessions_table()
    train, val = sed.split_recordings(recordings, val_fraction=0.34, seed=seed, groups=groups)
    group_of = dict(zip(recordings["filename"], groups))
    assert len(val) and len(train) + len(val) == len(recordings)
    assert not {group_of[f] for f in train["filename"]} & {group_of[f] for f in val["filename"]}
    assert set(train["primary_label"]) == set(recordings["primary_label"])
    # without groups, one session's two recordings land on both sides for some label
    train_f, val_f = sed.split_recordings(recordings, val_fraction=0.34, seed=seed)
    assert {group_of[f] for f in train_f["filename"]} & {group_of[f] for f in val_f["filename"]}


def test_a_label_whose_only_session_is_held_out_gets_it_back():
    recordings = pd.DataFrame({"filename": [f"r{i}" for i in range(10)], "path": "", "secondary_labels": "",
                               "author": "", "primary_label": ["a"] * 8 + ["b"] * 2})
    groups = np.array([f"s{i}" for i in range(8)] + ["only-b", "only-b"])
    for seed in range(5):
        train, _ = sed.split_recordings(recordings, val_fraction=0.5, seed=seed, groups=groups)
        assert (train["primary_label"] == "b").sum() == 2
    with pytest.raises(ValueError, match="groups for"):
        sed.split_recordings(recordings, val_fraction=0.5, seed=0, groups=groups[:3])


def test_an_engine_error_on_one_file_gives_that_file_its_reason_and_the_rest_go_on(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    from birdclef.errors import InferenceError
    from birdclef.models.sed.export import ExportedSed, export_onnx
    from birdclef.models.sed.family import SedMember, sed_predictions

    cfg = tiny_config()
    exported = ExportedSed(export_onnx(sed.build_model(cfg, 3), cfg, tmp_path / "model.onnx"), cfg)
    good, bad = _wave(tmp_path / "good.wav", 10.0), _wave(tmp_path / "bad.wav", 10.0)

    class Fail(Exception):  # like onnxruntime's own error types: not a RuntimeError
        pass

    session = exported._session
    calls = {"n": 0}

    class Flaky:
        def run(self, names, feeds):
            calls["n"] += 1
            if calls["n"] == 2:
                raise Fail("[ONNXRuntimeError] : 1 : FAIL : bad node")
            return session.run(names, feeds)

    monkeypatch.setattr(exported, "_session", Flaky())
    member = SedMember(tmp_path, ("a", "b", "c"), np.full(3, 1 / 3), exported.predict_file)
    out = sed_predictions([good, bad], [member], n_workers=1)
    assert isinstance(out[str(good)], list) and out[str(good)][0].shape == (2, 3)
    assert isinstance(out[str(bad)], str) and "onnxruntime failed on model.onnx" in out[str(bad)] and "Fail" in out[str(bad)]
    with pytest.raises(InferenceError):
        calls["n"] = 1
        exported.predict_file(good)


def test_openvino_is_compiled_for_f32_inference(tmp_path, monkeypatch):
    import types

    from birdclef.models.sed import export

    seen = {}

    class Core:
        def compile_model(self, path, device, config):
            seen.update(path=path, device=device, config=config)
            return object()

    monkeypatch.setitem(sys.modules, "openvino", types.SimpleNamespace(Core=Core))
    monkeypatch.setattr(export, "openvino_available", lambda: True)
    export.ExportedSed(tmp_path / "model.xml", tiny_config(), engine="openvino", threads=2)
    assert seen["device"] == "CPU" and seen["config"]["INFERENCE_PRECISION_HINT"] == "f32"
    assert seen["config"]["INFERENCE_NUM_THREADS"] == 2
