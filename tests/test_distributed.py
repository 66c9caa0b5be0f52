"""The embedding stage on a Dask cluster (Config.cluster): the same cache, outputs and submission as a local run."""
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from birdclef.cli import main
from birdclef.config import build_config
from birdclef.errors import ParameterError
from birdclef.features.embeddings import EmbeddingCache, extract

distributed = pytest.importorskip("distributed")


@pytest.mark.parametrize("value", ["local:1", "local:16", "tcp://127.0.0.1:8786", "tcp://scheduler", "tls://[::1]:8786",
                                   "tcp://node-3.cluster.example:8786"])
def test_cluster_takes_a_local_cluster_or_a_scheduler_address(value):
    assert build_config(backbone="melstats", cluster=value).cluster == value
    # changes no result: not in what a checkpoint or the embedding cache is keyed by
    assert build_config(backbone="melstats", cluster=value).training_dict() == build_config(backbone="melstats").training_dict()


@pytest.mark.parametrize("value", ["local", "local:0", "local:-2", "localhost:8786", "127.0.0.1:8786", "tcp://",
                                   "http://host:8786", "tcp://host:port"])
def test_a_cluster_that_is_neither_is_refused_naming_the_forms(value):
    with pytest.raises(ValueError, match=r'cluster=.* is not valid: expected none .*"local:N".*tcp://'):
        build_config(backbone="melstats", cluster=value)


def test_the_preprocess_command_takes_cluster_as_an_option_or_a_parameter(tmp_path, capsys):
    where = ["--data-dir", str(tmp_path / "data"), "--work-dir", str(tmp_path / "run")]
    assert main(["preprocess", *where, "--cluster", "local:0"]) == 1
    assert "cluster='local:0' is not valid" in capsys.readouterr().err
    assert main(["preprocess", *where, "-p", "cluster=tcp:/x"]) == 1
    assert "cluster='tcp:/x' is not valid" in capsys.readouterr().err
    assert main(["preprocess", *where, "--cluster", "local:2", "-p", "cluster=local:3"]) == 1
    assert "--cluster local:2 and -p cluster=local:3 disagree" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_a_local_cluster_writes_the_same_cache_and_reports_a_bad_file(tiny_demo, tmp_path):
    from birdclef.features.distributed import cluster_client, extract_on_cluster

    files = sorted((tiny_demo / "train_audio").rglob("*.ogg"))[:6] + [tiny_demo / "train_audio" / "missing.ogg"]
    config = build_config(work_dir=str(tmp_path / "run"), backbone="melstats", cluster="local:2")
    with cluster_client(config.cluster) as client:
        assert len(client.scheduler_info()["workers"]) == 2
        report = extract_on_cluster(files, config=config, client=client, progress=False)
    assert list(report["status"]) == ["computed"] * 6 + ["skipped"]
    assert "not a file" in report["reason"].iloc[-1]
    cached, local_report = extract(files[:6], config=config, progress=False)  # served from the cluster's cache
    assert set(local_report["status"]) == {"cached"}
    fresh, _ = extract(files[:6], config=build_config(work_dir=str(tmp_path / "local"), backbone="melstats",
                                                      n_workers=1), progress=False)
    for f in files[:6]:
        np.testing.assert_allclose(cached[str(f)].embeddings, fresh[str(f)].embeddings, atol=1e-5)


# A worker plugin, loaded into every worker with --preload: the first task any worker starts kills that
# worker's process (SIGKILL, as the kernel's OOM killer would), once: the nanny starts a new one, and the
# scheduler runs the task again
KILLER = '''
import os, signal
from distributed import WorkerPlugin

MARK = {mark!r}

class KillOnce(WorkerPlugin):
    def transition(self, key, start, finish, **kwargs):
        if finish == "executing" and str(key).startswith("embed_to_cache"):
            try:
                os.close(os.open(MARK, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                return
            os.kill(os.getpid(), signal.SIGKILL)

async def dask_setup(worker):
    await worker.plugin_add(KillOnce(), name="kill-once")
'''


def _start(argv: list[str], log: Path) -> subprocess.Popen:
    bin_dir = Path(sys.executable).parent
    with open(log, "wb") as out:
        return subprocess.Popen([str(bin_dir / "dask"), *argv], stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture
def scheduler_and_workers(tmp_path):
    """A `dask scheduler` and a `dask worker` process with two worker processes (one thread each) on
    loopback, started as a user would; the first task kills its worker once → (address, kill mark)."""
    mark = tmp_path / "killed-once"
    (tmp_path / "killer.py").write_text(KILLER.format(mark=str(mark)))
    info = tmp_path / "scheduler.json"
    procs = [_start(["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file", str(info)],
                    tmp_path / "scheduler.log")]
    try:
        for _ in range(600):
            if info.exists() or procs[0].poll() is not None:
                break
            time.sleep(0.1)
        assert info.exists(), (tmp_path / "scheduler.log").read_text()
        procs.append(_start(["worker", "--scheduler-file", str(info), "--host", "127.0.0.1", "--nworkers", "2",
                             "--nthreads", "1", "--no-dashboard", "--local-directory", str(tmp_path / "dask-worker"),
                             "--preload", str(tmp_path / "killer.py")], tmp_path / "worker.log"))
        import json

        yield json.loads(info.read_text())["address"], mark
    finally:
        for proc in reversed(procs):
            _stop(proc)


@pytest.mark.slow
def test_a_scheduler_and_workers_started_apart_give_the_local_runs_embeddings_and_submission(
        tiny_demo, tmp_path, scheduler_and_workers, monkeypatch):
    address, killed = scheduler_and_workers
    data = tmp_path / "data"
    shutil.copytree(tiny_demo, data)
    broken = "cineup1/broken.ogg"  # a file no decoder reads: skipped on a worker with its reason, as here
    (data / "train_audio" / broken).write_bytes(b"OggS not really")
    meta = pd.read_csv(data / "train.csv")
    pd.concat([meta, meta.iloc[[0]].assign(filename=broken, primary_label="cineup1")]).to_csv(data / "train.csv", index=False)
    monkeypatch.chdir(tmp_path)
    settings = ["-p", "backbone=melstats", "-p", "loss=ce", "-p", "smoothing_kernel=1.0"]
    runs = {}
    for name, where in (("cluster", ["--cluster", address]), ("local", ["-p", "n_workers=1"])):
        work = ["--data-dir", "data", "--work-dir", name]
        assert main(["preprocess", *work, *where, *settings]) == 0
        assert main(["train", *work, "-p", "epochs=3", "-p", "val_soundscapes=0"]) == 0
        assert main(["submit", *work]) == 0
        runs[name] = tmp_path / name
    assert killed.exists()  # a worker died mid-task; its task ran again elsewhere and nothing was lost
    cluster, local = runs["cluster"], runs["local"]
    manifests = [pd.read_csv(r / "preprocess" / "manifest.csv").drop(columns=["status"]) for r in (cluster, local)]
    pd.testing.assert_frame_equal(*manifests)
    skipped = pd.read_csv(cluster / "preprocess" / "skipped.csv")
    assert skipped["filename"].tolist() == [broken] and skipped["reason"].str.contains("broken.ogg").all()
    assert skipped["reason"].tolist() == pd.read_csv(local / "preprocess" / "skipped.csv")["reason"].tolist()
    config = build_config(data_dir=str(data), work_dir=str(local), backbone="melstats")
    soundscapes = sorted((data / "train_soundscapes").glob("*.ogg"))
    files = [Path(p) for p in manifests[0]["path"]] + soundscapes
    assert len(soundscapes) and len(files) == len(meta) + len(soundscapes)
    caches = [EmbeddingCache(run, config) for run in (cluster, local)]
    for f in files:  # the focal recordings and the train soundscapes, each in the cluster's cache as in the local one
        a, b = (cache.load(f) for cache in caches)
        np.testing.assert_allclose(a.embeddings, b.embeddings, atol=1e-5)
        np.testing.assert_array_equal(a.speech, b.speech)
    subs = [pd.read_csv(r / "submission.csv", dtype={"row_id": str}) for r in (cluster, local)]
    assert subs[0]["row_id"].tolist() == subs[1]["row_id"].tolist()
    np.testing.assert_allclose(subs[0].iloc[:, 1:].to_numpy(), subs[1].iloc[:, 1:].to_numpy(), atol=1e-5)
    # either resumes the other: a local rerun over the cluster's work folder embeds nothing again
    _, report = extract(files, config=build_config(data_dir=str(data), work_dir=str(cluster), backbone="melstats",
                                                   n_workers=1), progress=False)
    assert set(report["status"]) == {"cached"}
