"""Interrupted runs resume: 02_preprocess killed (SIGKILL) mid-file or mid-write of a cache entry reruns
without redoing a finished file and ends with the cache an uninterrupted run writes; 03_train killed
while writing an epoch's checkpoint resumes after the last whole one and ends as an uninterrupted run.

The kill is made deterministic inside the killed process: its runner wraps the function at the point
named (the backbone call of the n-th file, the n-th cache entry's write, the checkpoint write of epoch
n) so that it kills its own process with SIGKILL there; nothing in the package knows about it.
"""
import logging
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from birdclef.config import build_config
from birdclef.features import embeddings
from birdclef.features.embeddings import EmbeddingCache
from birdclef.features.preprocess import run_preprocess
from birdclef.models import train as train_module
from birdclef.models.train import run_training

SETTINGS = dict(backbone="melstats", vad=False, denoise=False, n_workers=1, epochs=6, refit=False, val_soundscapes=0)

RUNNER = textwrap.dedent("""
    import io, os, signal, sys
    import numpy as np
    import torch
    from birdclef.config import build_config
    from birdclef.features import embeddings
    data_dir, work_dir, point, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    config = build_config(data_dir=data_dir, work_dir=work_dir, **{settings!r})
    calls = [0]

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    if point == "mid-file":  # in the n-th file, after decoding, before its embedding exists
        real_backbone = embeddings.run_backbone
        def run_backbone(backbone, frames):
            calls[0] += 1
            if calls[0] == n:
                die()
            return real_backbone(backbone, frames)
        embeddings.run_backbone = run_backbone
    elif point == "mid-write":  # half of the n-th cache entry written to disk
        real_savez = np.savez
        def savez(fh, **arrays):
            calls[0] += 1
            if calls[0] == n:
                buf = io.BytesIO()
                real_savez(buf, **arrays)
                fh.write(buf.getvalue()[: len(buf.getvalue()) // 2])
                fh.flush()
                os.fsync(fh.fileno())
                die()
            return real_savez(fh, **arrays)
        np.savez = savez
    elif point == "checkpoint":  # half of epoch n's checkpoint written to disk
        real_save = torch.save
        def save(obj, f, *args, **kwargs):
            if isinstance(obj, dict) and len(obj.get("history", [])) == n and ".checkpoint.pt." in str(f):
                buf = io.BytesIO()
                real_save(obj, buf)
                with open(f, "wb") as fh:
                    fh.write(buf.getvalue()[: len(buf.getvalue()) // 2])
                    fh.flush()
                    os.fsync(fh.fileno())
                die()
            return real_save(obj, f, *args, **kwargs)
        torch.save = save
    if point == "checkpoint":
        from birdclef.models.train import run_training
        run_training(config=config, progress=False)
    else:
        from birdclef.features.preprocess import run_preprocess
        run_preprocess(config=config)
    print("finished without being killed")
""").format(settings=SETTINGS)


def _killed_run(data_dir: Path, work_dir: Path, point: str, n: int) -> None:
    run = subprocess.run([sys.executable, "-c", RUNNER, str(data_dir), str(work_dir), point, str(n)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == -signal.SIGKILL, (run.returncode, run.stdout[-2000:], run.stderr[-2000:])


def _config(data_dir: Path, work_dir: Path):
    return build_config(data_dir=str(data_dir), work_dir=str(work_dir), **SETTINGS)


def _entries(config) -> dict[str, dict[str, np.ndarray]]:
    """Every cache entry of the config's cache folder → its arrays (temporary files left out: never read)."""
    folder = EmbeddingCache(config.work_dir, config).folder
    out = {}
    for f in sorted(folder.glob("*.npz")):
        if not f.name.startswith("."):
            with np.load(f) as z:
                out[f.name] = {k: z[k] for k in z.files}
    return out


@pytest.fixture(scope="module")
def uninterrupted(tiny_demo, tmp_path_factory):
    """The preprocess stage run once without a kill: its config and cache entries."""
    config = _config(tiny_demo, tmp_path_factory.mktemp("resume") / "clean")
    pre = run_preprocess(config=config)
    return config, pre, _entries(config)


def _counting_embed(monkeypatch) -> list[str]:
    embedded = []
    real = embeddings.embed_recording

    def embed_recording(path, **kwargs):
        embedded.append(str(path))
        return real(path, **kwargs)

    monkeypatch.setattr(embeddings, "embed_recording", embed_recording)
    return embedded


@pytest.mark.slow
@pytest.mark.parametrize("point, n", [("mid-file", 6), ("mid-write", 6), ("mid-write", 21)])
def test_preprocess_killed_mid_file_or_mid_write_resumes_without_redoing_finished_files(
        tiny_demo, tmp_path, monkeypatch, uninterrupted, point, n):
    # entry 21 is the first train soundscape's (after the 20 recordings): the kill lands in the later phase
    clean_config, clean_pre, clean_entries = uninterrupted
    work = tmp_path / "killed"
    _killed_run(tiny_demo, work, point, n)
    config = _config(tiny_demo, work)
    finished = _entries(config)
    assert len(finished) == n - 1  # the files before the kill, each whole; the one in progress left no entry
    assert all(clean_entries[name].keys() == arrays.keys() for name, arrays in finished.items())
    temporaries = [f.name for f in EmbeddingCache(config.work_dir, config).folder.glob(".*")]
    assert len(temporaries) == (1 if point == "mid-write" else 0)  # the half-written file keeps its temporary name

    embedded = _counting_embed(monkeypatch)
    pre = run_preprocess(config=config)
    assert len(embedded) == len(clean_entries) - (n - 1)  # only what was not finished is embedded
    assert not set(embedded) & {str(p) for p in pre.manifest["path"][pre.manifest["status"] == "cached"]}
    assert (pre.manifest["status"] == "cached").sum() == min(n - 1, len(pre.manifest))
    after = _entries(config)
    assert after.keys() == clean_entries.keys()
    for name, arrays in clean_entries.items():
        for key, value in arrays.items():
            np.testing.assert_array_equal(after[name][key], value, err_msg=f"{name}:{key}")
    columns = [c for c in clean_pre.manifest.columns if c != "status"]
    pd.testing.assert_frame_equal(pre.manifest[columns], clean_pre.manifest[columns])
    assert pre.skipped.equals(clean_pre.skipped)


def test_a_damaged_cache_entry_is_recomputed_not_trusted(tiny_demo, tmp_path, caplog):
    config = _config(tiny_demo, tmp_path / "run")
    audio = sorted((tiny_demo / "train_audio").rglob("*.ogg"))[:2]
    embedded, _ = embeddings.extract(audio, config=config, progress=False)
    cache = EmbeddingCache(config.work_dir, config)
    whole = cache.entry(audio[0]).read_bytes()
    for damaged in (whole[: len(whole) // 2], b"", b"PK\x03\x04"):  # cut short, empty, a zip header alone
        cache.entry(audio[0]).write_bytes(damaged)
        with caplog.at_level(logging.WARNING, logger="birdclef.features.embeddings"):
            assert cache.load(audio[0]) is None
        assert any("unreadable" in r.getMessage() for r in caplog.records)
        caplog.clear()
        again, report = embeddings.extract(audio, config=config, progress=False)
        assert list(report["status"]) == ["computed", "cached"]
        np.testing.assert_array_equal(again[str(audio[0])].embeddings, embedded[str(audio[0])].embeddings)


@pytest.mark.slow
def test_training_killed_while_writing_a_checkpoint_resumes_after_the_last_whole_epoch(
        tiny_demo, tmp_path, monkeypatch, caplog, uninterrupted):
    clean_config, _, _ = uninterrupted
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    shutil.copytree(clean_config.work_dir, killed)  # the same embeddings (keyed by the audio files, not work_dir)
    shutil.copytree(clean_config.work_dir, whole)
    _killed_run(tiny_demo, killed, "checkpoint", 4)
    ckpt = killed / "model" / "checkpoint.pt"
    assert len(torch.load(ckpt, map_location="cpu", weights_only=True)["history"]) == 3  # epoch 4's never replaced it

    epochs = []
    real_batches = train_module.epoch_batches

    def epoch_batches(*args, **kwargs):
        epochs.append(1)
        return real_batches(*args, **kwargs)

    monkeypatch.setattr(train_module, "epoch_batches", epoch_batches)
    with caplog.at_level(logging.INFO, logger="birdclef.models.train"):
        resumed = run_training(config=_config(tiny_demo, killed), progress=False)
    assert len(epochs) == SETTINGS["epochs"] - 3  # epochs 4..6 only
    assert any("resuming training" in r.getMessage() and "after epoch 3" in r.getMessage() for r in caplog.records)
    epochs.clear()
    reference = run_training(config=_config(tiny_demo, whole), progress=False)
    assert len(epochs) == SETTINGS["epochs"]
    assert list(resumed.history["epoch"]) == list(range(1, SETTINGS["epochs"] + 1))
    for column in ("train_loss", "val_loss", "val_auc"):
        np.testing.assert_allclose(resumed.history[column], reference.history[column], rtol=1e-4, atol=1e-6)
    for key, value in reference.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[key], value, rtol=1e-4, atol=1e-5)
