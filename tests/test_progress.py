"""Long work shows its progress: files per second and the time left, for the cache read and the embedding."""
import re

import pandas as pd

from birdclef.config import build_config
from birdclef.features import embeddings
from birdclef.features.embeddings import EmbeddingCache, extract
from birdclef.models.examples import build_examples

RATE = re.compile(r"\d+/\d+ \[[0-9:]+<[0-9:?]+, +[0-9.?]+ ?(file/s|s/file|recording/s|s/recording)\]")


def test_embedding_and_reading_the_cache_show_files_per_second_and_time_left(tiny_demo, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BIRDCLEF_PROGRESS", "text")
    monkeypatch.setattr(embeddings, "SCAN_BAR_MIN", 3)  # in a real run: from 500 files
    files = sorted((tiny_demo / "train_audio").rglob("*.ogg"))[:3]
    config = build_config(work_dir=str(tmp_path), backbone="melstats", n_workers=1, vad=False)
    extract(files, config=config, desc="train recordings")
    first = capsys.readouterr().err
    assert "train recordings: 100%" in first and "3/3" in first and RATE.search(first), first
    extract(files, config=config, desc="train recordings")  # every file cached: only the cache read shows
    second = capsys.readouterr().err
    assert "train recordings: reading the cache: 100%" in second and RATE.search(second), second
    assert "train recordings: 100%" not in second
    manifest = pd.DataFrame({"filename": [f.name for f in files], "primary_label": ["a", "b", "a"],
                             "secondary_labels": "", "path": [str(f) for f in files]})
    build_examples(manifest, EmbeddingCache(tmp_path, config), ["a", "b"], config, progress=True)
    assert re.search(r"training examples: 100%.*3/3", capsys.readouterr().err)
