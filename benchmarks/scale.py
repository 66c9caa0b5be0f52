"""Competition-size runs on this machine (issue 32, item 2): a generated dataset of the real size, and each
stage's wall time, CPU time, peak RSS and disk at n recordings / soundscapes.

    python benchmarks/scale.py dataset ROOT --recordings 30000 --soundscapes 10000
    python benchmarks/scale.py fill-cache --data-dir ROOT --work-dir WORK   # BirdNET-shaped cache entries
    python benchmarks/scale.py stage preprocess --data-dir ROOT --work-dir WORK [-p key=value ...]
    python benchmarks/scale.py per-file --backbone birdnet --files 12       # the real embedding cost

``dataset`` writes the competition's layout cheaply: taxonomy.csv (206 classes: 170 bird species from
BirdNET's list, so zero-shot maps them as on the real data, and 36 others), train.csv with the 13
columns of 2025 and 1 to 500 recordings per class (a long-tailed spread like the real one), and
train_audio/ + train_soundscapes/ whose files are hard links to a small pool of generated OGG files of
real lengths (focal: 3–300 s, median 25 s; soundscapes: 60 s), so a 30k-recording folder takes a few MB.
Hard links, not symlinks: the embedding cache keys an entry by the path it resolves to.

``fill-cache`` writes what 02_preprocess with BirdNET would cache for every file (1024-d embeddings
every 2.5 s, the logits of the mapped classes, the speech mask), class-structured so a head learns:
the stages after the embedding run at full size without hours of BirdNET. ``stage`` runs one stage in a
child process and prints one JSON line (wall s, CPU s, peak RSS of the child and its workers, disk of
the work folder). ``per-file`` embeds a few pool files for real and prints the CPU seconds per file and
per audio minute. Results: benchmarks/scale.md.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

N_CLASSES = 206  # BirdCLEF 2025
N_BIRDS = 170  # classes with a BirdNET species (the rest: insects, amphibians, mammals it does not know)
POOL_FOCAL = 32
POOL_SOUNDSCAPES = 4
TRAIN_COLUMNS = ["primary_label", "secondary_labels", "type", "filename", "collection", "rating", "url", "latitude",
                 "longitude", "scientific_name", "common_name", "author", "license"]


def class_counts(n: int, rng: np.random.Generator, n_classes: int = N_CLASSES, cap: int = 500) -> np.ndarray:
    """(n_classes,) recordings per class, each in [1, cap], summing to n: long-tailed (log-normal weights)."""
    if not n_classes <= n <= n_classes * cap:
        raise ValueError(f"{n} recordings cannot give {n_classes} classes 1..{cap} each")
    w = np.sort(rng.lognormal(0.0, 1.6, n_classes))[::-1]
    lo, hi = 0.0, float(n) / w.min()
    for _ in range(100):  # the scale at which the clipped counts sum to n
        s = (lo + hi) / 2
        counts = np.clip(np.round(w * s), 1, cap).astype(int)
        lo, hi = (s, hi) if counts.sum() < n else (lo, s)
    counts = np.clip(np.round(w * hi), 1, cap).astype(int)
    i = 0
    while counts.sum() != n:  # round off the last few, one class at a time
        step = 1 if counts.sum() < n else -1
        j = i % n_classes
        if 1 <= counts[j] + step <= cap:
            counts[j] += step
        i += 1
    return counts


def _tone_file(path: Path, seconds: float, sr: int, rng: np.random.Generator) -> None:
    import soundfile as sf

    t = np.arange(int(seconds * sr)) / sr
    f0 = rng.uniform(1500, 6000)
    x = 0.05 * rng.standard_normal(len(t)) + 0.2 * np.sin(2 * np.pi * (f0 + 400 * np.sin(2 * np.pi * 3 * t)) * t) \
        * (np.sin(2 * np.pi * 0.5 * t) > 0)
    with sf.SoundFile(path, "w", sr, 1, format="OGG", subtype="VORBIS") as out:
        for i in range(0, len(x), sr):  # in blocks: libsndfile's Vorbis encoder crashes on one long write
            out.write(x[i:i + sr].astype(np.float32))


def make_dataset(root: Path, *, recordings: int, soundscapes: int, seed: int = 0) -> dict:
    from birdclef.backbones import labels_reader

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    pool = root / "_pool"
    pool.mkdir(exist_ok=True)
    durations = np.clip(rng.lognormal(np.log(25.0), 0.9, POOL_FOCAL), 3.0, 300.0)
    focal = []
    for i, d in enumerate(durations):
        p = pool / f"focal{i:02d}.ogg"
        if not p.exists():
            _tone_file(p, float(d), 32000, rng)
        focal.append(p)
    scapes = []
    for i in range(POOL_SOUNDSCAPES):
        p = pool / f"soundscape{i}.ogg"
        if not p.exists():
            _tone_file(p, 60.0, 32000, rng)
        scapes.append(p)
    birds = [s for s in labels_reader("birdnet")() if s[0]]
    picked = [birds[i] for i in sorted(rng.choice(len(birds), N_BIRDS, replace=False))]
    taxonomy = pd.DataFrame({
        "primary_label": [f"sp{i:03d}" for i in range(N_CLASSES)],
        "inat_taxon_id": [""] * N_BIRDS + [str(100000 + i) for i in range(N_CLASSES - N_BIRDS)],
        "scientific_name": [b[0] for b in picked] + [f"Genus{i} species{i}" for i in range(N_CLASSES - N_BIRDS)],
        "common_name": [b[1] for b in picked] + [f"Other {i}" for i in range(N_CLASSES - N_BIRDS)],
        "class_name": ["Aves"] * N_BIRDS + ["Insecta", "Amphibia", "Mammalia"] * 12,
    })
    taxonomy.to_csv(root / "taxonomy.csv", index=False)
    counts = class_counts(recordings, rng)
    labels = np.repeat(taxonomy["primary_label"].to_numpy(), counts)
    n_authors = max(10, recordings // 6)
    author_of = np.minimum(rng.zipf(1.6, recordings), n_authors) - 1
    places = rng.uniform([-30, -80], [15, -35], (n_authors, 2))  # each recordist at one place, a little spread
    ids = rng.choice(10 ** 6, recordings, replace=False)
    sci = dict(zip(taxonomy["primary_label"], taxonomy["scientific_name"]))
    common = dict(zip(taxonomy["primary_label"], taxonomy["common_name"]))
    rows, audio = [], root / "train_audio"
    for k, (label, author, xc) in enumerate(zip(labels, author_of, ids)):
        collection = ("XC", "iNat", "CSA")[k % 3]
        name = f"{label}/{collection}{xc}.ogg"
        second = rng.choice(taxonomy["primary_label"], rng.integers(0, 3)).tolist() if rng.random() < 0.2 else []
        rows.append({"primary_label": label, "secondary_labels": str(second), "type": "['song']", "filename": name,
                     "collection": collection, "rating": float(rng.integers(0, 6)),
                     "url": f"https://xeno-canto.org/{xc}", "latitude": round(places[author, 0] + rng.normal(0, .05), 4),
                     "longitude": round(places[author, 1] + rng.normal(0, .05), 4), "scientific_name": sci[label],
                     "common_name": common[label], "author": f"Recordist {author}", "license": "cc-by-nc-sa 4.0"})
        target = audio / name
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(focal[k % len(focal)], target)
    pd.DataFrame(rows, columns=TRAIN_COLUMNS).to_csv(root / "train.csv", index=False)
    folder = root / "train_soundscapes"
    folder.mkdir(exist_ok=True)
    for k in range(soundscapes):  # H<site>_<date>_<time>.ogg, the competition's names
        site, day, minute = k % 20, (k // 20) % 300, k // 6000
        name = f"H{site:02d}_2024{1 + day // 28:02d}{1 + day % 28:02d}_{(minute * 10) // 60:02d}{(minute * 10) % 60:02d}00.ogg"
        if not (folder / name).exists():
            os.link(scapes[k % len(scapes)], folder / name)
    (root / "test_soundscapes").mkdir(exist_ok=True)
    return {"recordings": recordings, "soundscapes": soundscapes, "classes": N_CLASSES,
            "per_class_min_median_max": [int(counts.min()), int(np.median(counts)), int(counts.max())],
            "pool_audio_min": round(float(durations.sum()) / 60, 1)}


def fill_cache(data_dir: Path, work_dir: Path, *, seed: int = 0) -> dict:
    """BirdNET-shaped cache entries for every train recording and soundscape of ``data_dir`` (none recomputed)."""
    from birdclef.backbones import backbone_spec
    from birdclef.config import build_config
    from birdclef.data import audio
    from birdclef.data.competition import load_taxonomy
    from birdclef.features.embeddings import Embedded, EmbeddingCache
    from birdclef.features.zeroshot import load_zero_shot

    config = build_config(data_dir=str(data_dir), work_dir=str(work_dir), backbone="birdnet")
    spec = backbone_spec("birdnet")
    cache = EmbeddingCache(work_dir, config)
    taxonomy = load_taxonomy(data_dir / "taxonomy.csv")
    columns = np.unique(load_zero_shot(config, taxonomy).score_columns)
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((len(taxonomy), spec.embedding_dim)).astype(np.float32)
    index = {c: i for i, c in enumerate(taxonomy["primary_label"])}
    meta = pd.read_csv(data_dir / "train.csv")
    files = [(data_dir / "train_audio" / f, index[c]) for f, c in zip(meta["filename"], meta["primary_label"])]
    files += [(p, None) for p in sorted((data_dir / "train_soundscapes").glob("*.ogg"))]
    hop = int(round(config.hop_s * spec.sample_rate_hz))
    lengths = {}
    t0 = time.perf_counter()
    for k, (path, c) in enumerate(files):
        inode = path.stat().st_ino
        if inode not in lengths:
            lengths[inode] = audio.audio_info(path).duration_s
        duration = lengths[inode]
        n = audio.n_frames(int(round(duration * spec.sample_rate_hz)), hop)
        r = np.random.default_rng(k)
        base = centres[c] if c is not None else 0.0
        emb = (0.7 * base + r.standard_normal((n, spec.embedding_dim))).astype(np.float16).astype(np.float32)
        logits = r.normal(-4, 1, (n, len(columns))).astype(np.float16).astype(np.float32)
        cache.save(path, Embedded(emb, np.arange(n) * config.hop_s, np.zeros(n, np.float32), duration, logits, columns))
    return {"entries": len(files), "seconds": round(time.perf_counter() - t0, 1)}


def disk_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


STAGE_CODE = {
    "preprocess": "from birdclef.features.preprocess import run_preprocess as run",
    "train": "from birdclef.models.train import run_training as run",
    "submit": "from birdclef.submission.submit import run_submission as run",
}


def run_stage(stage: str, data_dir: Path, work_dir: Path, params: dict) -> dict:
    """One stage in a child process → wall s, CPU s (child and its pool workers), peak RSS MiB, work_dir MiB."""
    code = (f"import json, sys\nfrom birdclef.config import stage_config\n{STAGE_CODE[stage]}\n"
            f"params = json.loads(sys.argv[1])\nrun(config=stage_config({stage!r}, **params))\n")
    params = {"data_dir": str(data_dir), "work_dir": str(work_dir), **params}
    env = {**os.environ, "BIRDCLEF_PROGRESS": "text"}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code, json.dumps(params)], env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if status:
        raise SystemExit(f"{stage} failed (status {status})")
    return {"stage": stage, "wall_s": round(wall, 1), "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
            "peak_rss_mib": round(usage.ru_maxrss / 1024), "work_dir_mib": round(disk_bytes(work_dir) / 2 ** 20),
            "params": {k: v for k, v in params.items() if k not in ("data_dir", "work_dir")}}


def per_file(backbone: str, n_files: int, data_dir: Path, vad: bool) -> dict:
    """Embed ``n_files`` distinct pool files for real in one process → CPU s per file and per audio minute."""
    from birdclef.backbones import get_backbone
    from birdclef.config import build_config
    from birdclef.features.embeddings import embed_recording

    files = sorted((data_dir / "_pool").glob("focal*.ogg"))[:n_files]
    config = build_config(backbone=backbone, vad=vad, work_dir="/tmp/unused")
    model = get_backbone(backbone)
    embed_recording(files[0], backbone=model, config=config)  # warm: the first call builds the interpreter
    cpu0, t0, audio_s = time.process_time(), time.perf_counter(), 0.0
    for f in files:
        audio_s += embed_recording(f, backbone=model, config=config).duration_s
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
    return {"backbone": backbone, "vad": vad, "files": len(files), "audio_min": round(audio_s / 60, 2),
            "cpu_s_per_file": round(cpu / len(files), 3), "cpu_s_per_audio_min": round(cpu / (audio_s / 60), 3),
            "wall_s": round(wall, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("dataset")
    d.add_argument("root", type=Path)
    d.add_argument("--recordings", type=int, required=True)
    d.add_argument("--soundscapes", type=int, default=0)
    d.add_argument("--seed", type=int, default=0)
    f = sub.add_parser("fill-cache")
    f.add_argument("--data-dir", type=Path, required=True)
    f.add_argument("--work-dir", type=Path, required=True)
    s = sub.add_parser("stage")
    s.add_argument("stage", choices=sorted(STAGE_CODE))
    s.add_argument("--data-dir", type=Path, required=True)
    s.add_argument("--work-dir", type=Path, required=True)
    s.add_argument("-p", action="append", default=[], metavar="KEY=VALUE")
    s.add_argument("--tag", default="", help="a label kept with the result (e.g. the dataset size)")
    s.add_argument("--append", type=Path, help="also append the JSON line to this file")
    p = sub.add_parser("per-file")
    p.add_argument("--backbone", default="birdnet")
    p.add_argument("--files", type=int, default=12)
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--vad", choices=["on", "off"], default="on")
    args = parser.parse_args(argv)
    if args.command == "dataset":
        out = make_dataset(args.root, recordings=args.recordings, soundscapes=args.soundscapes, seed=args.seed)
    elif args.command == "fill-cache":
        out = fill_cache(args.data_dir, args.work_dir)
    elif args.command == "stage":
        params = dict(pair.split("=", 1) for pair in args.p)
        out = {"tag": args.tag, **run_stage(args.stage, args.data_dir.resolve(), args.work_dir.resolve(), params)}
        if args.append:
            with open(args.append, "a") as fh:
                fh.write(json.dumps(out) + "\n")
    else:
        out = per_file(args.backbone, args.files, args.data_dir, args.vad == "on")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
