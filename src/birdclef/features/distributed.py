"""The embedding stage on a Dask cluster, for corpora larger than one machine (``Config.cluster``).

Same function, same cache: each task embeds one recording and writes its cache entry (atomic),
so a cluster run and a local run (:func:`birdclef.features.embeddings.extract`) can resume each
other. The workers must see the audio and ``work_dir`` at the same paths (a shared file system);
a worker that does not is refused before any task runs. A file that fails on a worker is returned
with its reason (the preprocess stage lists it in skipped.csv); a worker that dies mid-task costs
only that task, which the scheduler runs again elsewhere (``distributed.scheduler.allowed-failures``
times, then it is skipped with the reason). Optional: ``pip install birdclef[dask]``.
"""
from __future__ import annotations

import functools
import logging
import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pandas as pd

from birdclef.backbones import ModelIdentity, get_backbone
from birdclef.config import Config
from birdclef.errors import BirdclefError
from birdclef.features.embeddings import Embedded, EmbeddingCache, _embed_or_reason

log = logging.getLogger(__name__)

WAIT_FOR_WORKERS_S = 600.0  # how long a run waits for a scheduler's first worker (a batch queue may be slow)
_THREAD = threading.local()  # one backbone per worker thread (an interpreter such as TFLite's is not thread-safe)


class ClusterError(BirdclefError):
    """The Dask cluster cannot be used: Dask missing, scheduler unreachable, no workers, no shared file system."""


@contextmanager
def cluster_client(cluster: str | None) -> Iterator[object | None]:
    """A ``distributed.Client`` for ``Config.cluster`` while the block runs (None: None, this machine).

    ``"local:N"`` starts a LocalCluster of N worker processes of one thread each here and stops it
    after; ``"tcp://host:port"`` (any scheduler address) connects to a running scheduler and waits
    up to :data:`WAIT_FOR_WORKERS_S` for its first worker.
    """
    if cluster is None:
        yield None
        return
    try:
        import distributed
    except ImportError:
        raise ClusterError(f"cluster={cluster!r} needs Dask: pip install 'birdclef[dask]'") from None
    if cluster.startswith("local:"):
        n = int(cluster.removeprefix("local:"))
        with distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None) as lc, \
                distributed.Client(lc) as client:
            yield client
        return
    try:
        client = distributed.Client(cluster, timeout="30s")
    except (OSError, TimeoutError) as err:
        raise ClusterError(f"cannot reach the Dask scheduler at {cluster} ({err}); start one with `dask scheduler` "
                           "(README: more than one machine)") from None
    with client:
        try:
            client.wait_for_workers(1, timeout=WAIT_FOR_WORKERS_S)
        except TimeoutError:
            raise ClusterError(f"the Dask scheduler at {cluster} has no worker after {WAIT_FOR_WORKERS_S:.0f} s; "
                               f"start some with `dask worker {cluster} --nthreads 1`") from None
        yield client


def embed_to_cache(path: str, config: Config, model: ModelIdentity, need_speech: bool = True,
                   score_columns: np.ndarray | None = None) -> tuple[str, Embedded | str]:
    """Run on a worker: embed one recording into the shared cache → (path, Embedded or why it was skipped).

    An entry another run finished meanwhile is read, not recomputed. The cache folder is opened with
    the client's ``model`` identity (the weights are not hashed again per task)."""
    state = getattr(_THREAD, "state", None)
    if state is None or state[0] != (config, model):
        cache = EmbeddingCache(config.work_dir, config, model=model)
        state = ((config, model), cache, get_backbone(config.backbone, model_path=config.backbone_path))
        _THREAD.state = state
    _, cache, backbone = state
    hit = cache.load(path, need_speech=need_speech, score_columns=score_columns)
    if hit is not None:
        return path, hit
    result = _embed_or_reason(Path(path), backbone, config, need_speech, score_columns)
    if isinstance(result, Embedded):
        cache.save(path, result)
    return path, result


def _sees(marker: str) -> bool:
    return os.path.isfile(marker)


def check_workers(client, cache: EmbeddingCache) -> int:
    """The number of workers, each of which sees ``cache``'s folder at the same path (else ClusterError)."""
    marker = str(cache.folder / "model.json")  # written by the client when it opened the cache
    seen = client.run(_sees, marker)
    blind = sorted(w for w, ok in seen.items() if not ok)
    if blind:
        raise ClusterError(f"Dask worker(s) {', '.join(blind)} do not see {marker}: every worker needs data_dir and "
                           "work_dir on a shared file system at the same paths (README: more than one machine)")
    return len(seen)


def embed_on_cluster(paths: list[Path], *, client, config: Config, cache: EmbeddingCache, need_speech: bool = True,
                     score_columns: np.ndarray | None = None) -> Iterator[tuple[str, Embedded | str]]:
    """Embed ``paths`` on ``client``'s workers → (path, Embedded or the reason it was skipped), as they finish.

    A task that raised on its worker, or whose workers kept dying (KilledWorker), is a skipped
    file with the reason; a task cancelled (the scheduler lost) stops the run with ClusterError."""
    from distributed import as_completed

    check_workers(client, cache)
    futures = client.map(embed_to_cache, [str(p) for p in paths], config=config, model=cache.model,
                         need_speech=need_speech, score_columns=score_columns, pure=False)
    names = {f.key: str(p) for f, p in zip(futures, paths)}
    for fut in as_completed(futures):
        path = names[fut.key]
        if fut.status == "finished":
            yield fut.result()
        elif fut.status == "error":
            err = fut.exception()
            kind = type(err).__name__
            reason = (f"its Dask workers died while embedding it ({err})" if kind == "KilledWorker"
                      else f"failed on a Dask worker: {kind}: {err}")
            yield path, reason
        else:
            raise ClusterError(f"the Dask task for {path} was {fut.status} (scheduler or client lost?); rerun: "
                               "finished files are cached")
        fut.release()  # its result leaves the worker's memory


def cluster_embedder(client, config: Config):
    """What :func:`birdclef.features.embeddings.extract` takes as ``remote`` to embed on ``client``'s
    workers (:func:`embed_on_cluster`); None for no client (this machine)."""
    return None if client is None else functools.partial(embed_on_cluster, client=client, config=config)


def extract_on_cluster(paths: Iterable[str | Path], *, config: Config, client, progress: bool = True) -> pd.DataFrame:
    """Embed every path on ``client``'s cluster → report (path, status, reason), in input order
    (:func:`birdclef.features.embeddings.extract` with ``client``)."""
    from birdclef.features.embeddings import extract

    _, report = extract(paths, config=config, remote=cluster_embedder(client, config), progress=progress,
                        desc="cluster embedding")
    return report
