"""SED quality beside the MLP default: from scratch, distilled from BirdNET, noisy student, blended.

    python benchmarks/sed_quality.py --out /tmp/sed-quality [--dataset demo|realdev] [--seeds 0 1 2]
        [--variants mlp,sed-scratch,sed-distill,sed-student,blend] [--epochs 20] [--backbone efficientnet_b0]

``demo``: the default demo dataset (12 classes × 8 recordings, 6 test soundscapes with hidden
truth, 4 train soundscapes whose truth guards the noisy student). ``realdev``: held-out split 0
of ../shared/realdev (:func:`birdclef_bench.heldout.make_heldout_task`: one recording per species held
out into one-minute test soundscapes, singles and mixtures over real background).

Per seed: the MLP default through the ordinary stages (BirdNET embeddings, cached and shared);
SED models (random init, ``--backbone``) trained on every train recording for ``--epochs`` with
EMA and no validation fold, their window probabilities smoothed as the MLP default smooths
((0.25, 0.5, 0.25)); ``sed-distill`` adds the cosine loss toward BirdNET's cached embeddings (and
the KL toward its logits for mapped classes); ``sed-student`` is one noisy-student round on top
of ``sed-distill`` guarded by the train-soundscape score (demo only); ``blend`` is the mean of
the MLP's and ``sed-distill``'s probabilities. Score: the competition metric on the test
soundscapes (all classes; on realdev also the classes BirdNET knows / does not know).
Rows are merged into ``<out>/rows.csv`` (a later run with other variants or seeds adds to them);
the Markdown table of all of them replaces this dataset's section of ``--md`` (default
benchmarks/sed_quality.md).
"""
from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
SMOOTH = (0.25, 0.5, 0.25)
WHAT = {
    "mlp": "MLP default recipe on BirdNET embeddings (refit, zero-shot blend, smoothing)",
    "sed-scratch": "SED from scratch (random init), labels only",
    "sed-distill": "SED + distillation toward BirdNET's cached embeddings (cosine, projected) and logits",
    "sed-student": "sed-distill + 1 noisy-student round on train soundscapes (guarded)",
    "blend": "mean of the MLP's and sed-distill's window probabilities",
}


def _scores(solution: pd.DataFrame, probs: dict[str, np.ndarray], labels: list[str], mapped: dict[str, bool]) -> dict:
    from birdclef.submission.submit import build_submission
    from birdclef_bench.realbench import subset_scores

    return subset_scores(solution, build_submission(probs, labels), mapped)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="/tmp/sed-quality")
    ap.add_argument("--dataset", choices=("demo", "realdev"), default="demo")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--variants", default="mlp,sed-scratch,sed-distill,blend")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--backbone", default="efficientnet_b0")
    ap.add_argument("--epoch-size", type=int, default=None, help="clips per SED epoch (default: one per recording)")
    ap.add_argument("--md", default=str(REPO / "benchmarks" / "sed_quality.md"))
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    from birdclef.config import build_config
    from birdclef.data.competition import competition_paths, list_audio, load_taxonomy
    from birdclef.features.embeddings import EmbeddingCache
    from birdclef.features.preprocess import run_preprocess
    from birdclef.features.zeroshot import load_zero_shot
    from birdclef.models import sed
    from birdclef.models.train import run_training
    from birdclef.postprocess import smooth_windows
    from birdclef.submission.submit import run_submission
    from birdclef.workdir import RunLayout

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.dataset == "demo":
        from birdclef.data.demo import make_demo_dataset

        data = out / "data"
        if not (data / "solution.csv").exists():
            make_demo_dataset(data)
    else:
        from birdclef_bench.heldout import make_heldout_task
        from birdclef_bench.realbench import default_realdev

        data = make_heldout_task(default_realdev(), out / "task-s0", split=0).data_dir
    paths = competition_paths(data)
    taxonomy = load_taxonomy(paths.taxonomy)
    labels = taxonomy["primary_label"].tolist()
    solution = pd.read_csv(paths.solution, dtype={"row_id": str})
    tests = list_audio(paths.test_soundscapes)
    train_sc = list_audio(paths.train_soundscapes)
    train_truth = (pd.read_csv(data / "train_soundscapes_solution.csv", dtype={"row_id": str})
                   if (data / "train_soundscapes_solution.csv").exists() else None)
    variants = args.variants.split(",")
    shared = RunLayout(out)  # one embedding cache for every seed
    rows = []
    for seed in args.seeds:
        t0 = time.perf_counter()
        work = out / f"mlp-s{seed}"
        RunLayout(work).link_caches(shared, preprocess=False)
        config = build_config(data_dir=str(data), work_dir=str(work), seed=seed, n_workers=0)
        run_preprocess(config=config)
        zero_shot = load_zero_shot(config, taxonomy)
        mapped = dict(zip(labels, np.zeros(len(labels), bool) if zero_shot is None else zero_shot.mapped))
        probs: dict[str, dict[str, np.ndarray]] = {}
        if "mlp" in variants or "blend" in variants:
            run_training(config=config, progress=False)
            sub = run_submission(config=config)
            frame = sub.submission
            probs["mlp"] = {}
            for f in tests:
                part = frame[frame["row_id"].str.rsplit("_", n=1).str[0] == f.stem]
                probs["mlp"][f.stem] = part[labels].to_numpy(np.float32)
            rows.append({"variant": "mlp", "seed": seed, **_scores(solution, probs["mlp"], labels, mapped),
                         "minutes": (time.perf_counter() - t0) / 60})
            print(rows[-1], flush=True)
        recordings, _ = sed.recordings_table(data)
        teacher = None
        if any(v in variants for v in ("sed-distill", "sed-student", "blend")):
            teacher = sed.Teacher.from_cache(recordings["path"], EmbeddingCache(work, config), frame_s=3.0,
                                             n_classes=len(labels), zero_shot=zero_shot)
        base = sed.build_sed_config(backbone=args.backbone, epochs=args.epochs, seed=seed, batch_size=16,
                                    ema_decay=0.99, epoch_size=args.epoch_size)
        settings = {"sed-scratch": base,
                    "sed-distill": base.replace(distill_embedding_weight=1.0,
                                                distill_logit_weight=1.0 if teacher is not None and teacher.has_logits
                                                else 0.0)}
        results = {}
        for name in ("sed-scratch", "sed-distill"):
            if name not in variants and not (name == "sed-distill" and ({"blend", "sed-student"} & set(variants))):
                continue
            t1 = time.perf_counter()
            cfg = settings[name]
            clips = sed.SedClips(recordings, labels, cfg, teacher=teacher if name == "sed-distill" else None)
            result = sed.train_sed(clips, cfg, progress=True, desc=f"{name} seed {seed}")
            results[name] = (result, clips, cfg)
            probs[name] = {f.stem: smooth_windows(sed.predict_file(result.model, cfg, f), SMOOTH) for f in tests}
            rows.append({"variant": name, "seed": seed, **_scores(solution, probs[name], labels, mapped),
                         "minutes": (time.perf_counter() - t1) / 60,
                         "sec_per_epoch": float(result.history["seconds"].mean())})
            print(rows[-1], flush=True)
            sed.save_run(out / f"{name}-s{seed}", result.model, cfg, labels, history=result.history,
                         metrics=result.metrics, onnx=False)
        if "sed-student" in variants and train_sc and train_truth is not None:
            t1 = time.perf_counter()
            result, clips, cfg = results["sed-distill"]
            guard = sed.soundscape_guard(train_sc, train_truth, labels, cfg)
            kept, table = sed.noisy_student(result, clips, cfg.replace(student_rounds=1), train_sc, guard=guard,
                                            progress=True)
            table.to_csv(out / f"student-rounds-s{seed}.csv", index=False)
            probs["sed-student"] = {f.stem: smooth_windows(sed.predict_file(kept.model, cfg, f), SMOOTH) for f in tests}
            rows.append({"variant": "sed-student", "seed": seed,
                         **_scores(solution, probs["sed-student"], labels, mapped),
                         "minutes": (time.perf_counter() - t1) / 60, "rounds_kept": int(table["kept"].sum()) - 1})
            print(rows[-1], table.to_string(), flush=True)
        if "blend" in variants:
            blend = {s: (probs["mlp"][s] + probs["sed-distill"][s]) / 2 for s in probs["mlp"]}
            rows.append({"variant": "blend", "seed": seed, **_scores(solution, blend, labels, mapped)})
        _merge_rows(out / "rows.csv", rows)
    write_table(_merge_rows(out / "rows.csv", rows), args, len(tests))


def _merge_rows(path: Path, rows: list[dict]) -> pd.DataFrame:
    """This run's rows merged into ``path`` (an earlier run's other variants and seeds kept) → all rows."""
    table = pd.DataFrame(rows)
    if path.exists():
        table = pd.concat([pd.read_csv(path), table], ignore_index=True)
    table = table.drop_duplicates(["variant", "seed"], keep="last").reset_index(drop=True)
    table.to_csv(path, index=False)
    return table


def write_table(rows: pd.DataFrame, args, n_tests: int) -> None:
    from birdclef_bench.experiments import mean_sd

    mlp = rows[rows["variant"] == "mlp"].set_index("seed")["all"]
    lines = [f"| variant | what | seeds | test macro AUC (all) | vs MLP (paired by seed) | mapped | unmapped "
             "| minutes per run (2 shared cores) |", "|---|---|---|---|---|---|---|---|"]
    for name, g in rows.groupby("variant", sort=False):
        gain = (mean_sd(pd.Series(g["all"].to_numpy() - mlp.reindex(g["seed"]).to_numpy()), signed=True)
                if name != "mlp" and not mlp.empty else "–")
        minutes = mean_sd(g["minutes"], 1) if "minutes" in g and g["minutes"].notna().any() else "–"
        lines.append(f"| `{name}` | {WHAT.get(name, '')} | {g['seed'].nunique()} | {mean_sd(g['all'])} | {gain} | "
                     f"{mean_sd(g['mapped'])} | {mean_sd(g['unmapped'])} | {minutes} |")
    header = (f"## {args.dataset}: `python benchmarks/sed_quality.py --dataset {args.dataset} --seeds "
              f"{' '.join(map(str, sorted(rows['seed'].unique())))} --epochs {args.epochs} --backbone {args.backbone}`")
    text = "\n".join([header, "", f"{n_tests} test soundscapes; mean ± sd over seeds; "
                      f"{time.strftime('%Y-%m-%d')}.", "", *lines, ""])
    md = Path(args.md)
    previous = md.read_text() if md.exists() else "# SED models vs the MLP default\n\n"
    marker = f"## {args.dataset}:"
    if marker in previous:  # replace this dataset's section, keep the others
        head, _, rest = previous.partition(marker)
        tail = rest.split("\n## ", 1)
        previous = head + ("## " + tail[1] if len(tail) > 1 else "")
    md.write_text(previous.rstrip("\n") + "\n\n" + text)
    print(text)


if __name__ == "__main__":
    main()
