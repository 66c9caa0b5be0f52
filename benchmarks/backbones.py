"""Local score per backbone on the demo, same head and settings:

    python benchmarks/backbones.py [--backbones melstats,birdnet,yamnet] [--seeds 0,1,2]

Writes benchmarks/backbones.md. YAMNet needs $BIRDCLEF_YAMNET or ../shared/models/yamnet.tflite.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path

from run import REPO, model_path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbones", default="melstats,birdnet,yamnet")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--data-dir", default=None, help="an existing demo folder (default: generate one)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "backbones.md"))
    args = ap.parse_args()
    warnings.simplefilter("ignore")

    from birdclef.config import build_config
    from birdclef.data.demo import make_demo_dataset
    from birdclef.features.preprocess import run_preprocess
    from birdclef.models.train import run_training
    from birdclef.submission.submit import run_submission

    tmp = Path(tempfile.mkdtemp(prefix="birdclef-backbones-"))
    data = Path(args.data_dir) if args.data_dir else tmp / "data"
    if not args.data_dir:
        make_demo_dataset(data)
    rows = []
    for name in args.backbones.split(","):
        path = model_path(name)
        if name == "yamnet" and path is None:
            print("yamnet: no model file here; skipped")
            continue
        scores, vals = [], []
        t0 = time.perf_counter()
        for seed in [int(s) for s in args.seeds.split(",")]:
            # one work_dir per backbone: the embedding cache is shared across seeds, only the head differs
            config = build_config(data_dir=str(data), work_dir=str(tmp / name), backbone=name,
                                  backbone_path=path, seed=seed)
            run_preprocess(config=config)
            res = run_training(config=config, progress=False)
            sub = run_submission(config=config)
            scores.append(sub.score)
            vals.append(res.metrics["val_auc"])
        rows.append((name, statistics.mean(scores), statistics.pstdev(scores), statistics.mean(vals),
                     time.perf_counter() - t0))
    lines = ["# Local score per backbone (demo data, same head: seed training settings)", "",
             f"Seeds {args.seeds}; test = the demo's 6 test soundscapes (competition metric); "
             "val = held-out recordings (segments).", "",
             "| backbone | test macro AUC (mean ± sd) | val macro AUC | wall (s, all seeds) |", "|---|---:|---:|---:|",
             *[f"| {n} | {m:.3f} ± {s:.3f} | {v:.3f} | {w:.0f} |" for n, m, s, v, w in rows], ""]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
