"""The embedding stage on a Dask cluster, for corpora larger than one machine.

Same function, same cache: each task embeds one recording and writes its cache entry (atomic),
so a cluster run and a local run (``birdclef.features.embeddings.extract``) can resume each other. The
workers must see the audio and the cache folder at the same paths (a shared file system).
Optional: ``pip install birdclef[dask]``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import pandas as pd

from birdclef.backbones import get_backbone
from birdclef.config import Config
from birdclef.features.embeddings import Embedded, EmbeddingCache, _embed_or_reason
from birdclef.progress import tqdm

_BACKBONES: dict[tuple[str, str | None], object] = {}


def embed_to_cache(path: str, config: Config) -> tuple[str, str, str]:
    """Run on a worker: embed one recording into the shared cache → (path, status, reason)."""
    cache = EmbeddingCache(config.work_dir, config)
    if cache.load(path) is not None:
        return path, "cached", ""
    key = (config.backbone, config.backbone_path)
    if key not in _BACKBONES:  # one backbone per worker process, reused across tasks
        _BACKBONES[key] = get_backbone(config.backbone, model_path=config.backbone_path)
    result = _embed_or_reason(Path(path), _BACKBONES[key], config)
    if isinstance(result, Embedded):
        cache.save(path, result)
        return path, "computed", ""
    return path, "skipped", result


def extract_on_cluster(paths: Iterable[str | Path], *, config: Config, client, progress: bool = True) -> pd.DataFrame:
    """Embed every path on ``client``'s cluster → report (path, status, reason), in input order."""
    from distributed import as_completed

    EmbeddingCache(config.work_dir, config)  # writes (or checks) the cache's config before any task
    paths = [str(p) for p in paths]
    futures = client.map(embed_to_cache, paths, config=config, pure=False)
    done = {}
    for fut in tqdm(as_completed(futures), total=len(futures), desc="cluster embedding", disable=not progress):
        path, status, reason = fut.result()
        done[path] = (status, reason)
    return pd.DataFrame([(p, *done[p]) for p in paths], columns=["path", "status", "reason"])
