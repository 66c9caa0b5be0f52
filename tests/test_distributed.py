"""The extraction function on a Dask LocalCluster writes the same cache as a local run."""
import numpy as np
import pytest

from birdclef.config import build_config
from birdclef.features.embeddings import extract

distributed = pytest.importorskip("distributed")


@pytest.mark.slow
def test_local_cluster_writes_the_same_cache(tiny_demo, tmp_path):
    from birdclef.features.distributed import extract_on_cluster

    files = sorted((tiny_demo / "train_audio").rglob("*.ogg"))[:6] + [tiny_demo / "train_audio" / "missing.ogg"]
    config = build_config(work_dir=str(tmp_path / "run"), backbone="melstats", n_workers=1)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        report = extract_on_cluster(files, config=config, client=client, progress=False)
    assert list(report["status"]) == ["computed"] * 6 + ["skipped"]
    assert "not a file" in report["reason"].iloc[-1]
    cached, local_report = extract(files[:6], config=config, progress=False)  # served from the cluster's cache
    assert set(local_report["status"]) == {"cached"}
    fresh, _ = extract(files[:6], config=build_config(work_dir=str(tmp_path / "local"), backbone="melstats",
                                                      n_workers=1), progress=False)
    for f in files[:6]:
        np.testing.assert_allclose(cached[str(f)].embeddings, fresh[str(f)].embeddings, atol=2e-3)
