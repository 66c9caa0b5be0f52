"""SED quality beside the MLP default: from scratch, distilled from BirdNET, noisy student, blended.

    python benchmarks/sed_quality.py --out /tmp/sed-quality [--dataset demo|realdev] [--seeds 0 1 2]
        [--variants mlp,sed-scratch,sed-distill,sed-student,blend] [--epochs 20] [--backbone efficientnet_b0]
        [--construction sparse-session|dense-file|...] [--pool-share 0.3] [--student-epoch-size N|teacher]

``demo``: the default demo dataset (12 classes × 8 recordings, 6 test soundscapes with hidden
truth, 4 train soundscapes whose truth guards the noisy student). ``realdev``: held-out split 0
of ../shared/realdev (:func:`birdclef_bench.heldout.make_heldout_task`), built as ``--construction``
says (:class:`birdclef_bench.heldout.TaskSettings`): ``sparse-session`` (default; whole recording
sessions held out, sparse competition-like minutes, the ignored cells left out of the score) or
``dense-file`` (the earlier task: one recording per species held out into singles and mixtures, the
one the 2026-11-29 realdev table used). ``--pool-share`` (sparse-session only; the real-audio
benchmark's noisy student uses 0.3) sets that share of the training sessions aside as an unlabelled
pool of one-minute ``train_soundscapes`` without truth.

Per seed: the MLP default through the ordinary stages (BirdNET embeddings, cached and shared);
SED models (random init, ``--backbone``) trained on every train recording for ``--epochs`` with
EMA and no validation fold, their window probabilities smoothed as the MLP default smooths
((0.25, 0.5, 0.25)); ``sed-distill`` adds the cosine loss toward BirdNET's cached embeddings (and
the KL toward its logits for mapped classes); ``sed-student`` is one noisy-student round on top
of ``sed-distill``: the train soundscapes (the demo's, or realdev's pool) soft-labelled by the
sed-distill model, then a student trained from scratch on the recordings plus those windows. It is
guarded by the train-soundscape score where they have truth (the demo); the pool has none and these
runs have no validation fold, so on realdev exactly one round runs unguarded (the test soundscapes
never guard). ``--student-epoch-size`` sets the student's clips per epoch (default: one per
recording and soundscape window; ``teacher``: as many as the teacher's epoch, half of them pool
windows, for the same compute). ``blend`` is the mean of
the MLP's and ``sed-distill``'s probabilities. Score: the competition metric on the test
soundscapes (all classes; on realdev also the classes BirdNET knows / does not know).
Rows are merged into ``<out>/rows.csv`` (a later run with other variants or seeds adds to them;
keyed by task, variant and seed); the Markdown table of this task's rows replaces this task's
section of ``--md`` (default benchmarks/sed_quality.md).
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
    "sed-student": "sed-distill + 1 noisy-student round on train soundscapes (guarded where they have truth)",
    "blend": "mean of the MLP's and sed-distill's window probabilities",
}


def _scores(solution: pd.DataFrame, probs: dict[str, np.ndarray], labels: list[str], mapped: dict[str, bool],
            ignore: pd.DataFrame | None) -> dict:
    from birdclef.submission.submit import build_submission
    from birdclef_bench.realbench import subset_scores

    return subset_scores(solution, build_submission(probs, labels), mapped, ignore)


def _no_guard(model, result) -> float:
    """Every round kept: for train soundscapes without truth and runs without a validation fold."""
    return 0.0


def _task(args) -> tuple[str, Path]:
    """(this run's task tag, its data folder)."""
    if args.dataset == "demo":
        if args.pool_share:
            raise SystemExit("--pool-share is for --dataset realdev (the demo has its own train soundscapes)")
        from birdclef.data.demo import make_demo_dataset

        data = Path(args.out) / "data"
        if not (data / "solution.csv").exists():
            make_demo_dataset(data)
        return "demo", data
    from birdclef_bench.heldout import TaskSettings, make_heldout_task
    from birdclef_bench.realbench import default_realdev

    construction, _, holdout = args.construction.partition("-")
    try:
        settings = TaskSettings(construction=construction, holdout=holdout, pool_share=args.pool_share)
    except ValueError as err:
        raise SystemExit(f"--construction / --pool-share: {err}") from None
    tag = f"realdev-{settings.tag}"
    return tag, make_heldout_task(default_realdev(), Path(args.out) / f"task-{settings.tag}-s0", split=0,
                                  settings=settings).data_dir


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="/tmp/sed-quality")
    ap.add_argument("--dataset", choices=("demo", "realdev"), default="demo")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--variants", default="mlp,sed-scratch,sed-distill,blend")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--backbone", default="efficientnet_b0")
    ap.add_argument("--epoch-size", type=int, default=None, help="clips per SED epoch (default: one per recording)")
    ap.add_argument("--construction", default="sparse-session",
                    help="realdev task, <construction>-<holdout>: sparse-session or dense-file (the earlier one)")
    ap.add_argument("--pool-share", type=float, default=0.0,
                    help="realdev, sparse-session: share of the training sessions set aside as unlabelled train "
                         "soundscapes (the noisy student's pool); 0: none")
    ap.add_argument("--student-epoch-size", default=None,
                    help="sed-student's clips per epoch: a number, or 'teacher' (the teacher's epoch size); "
                         "default: one per recording and soundscape window")
    ap.add_argument("--md", default=str(REPO / "benchmarks" / "sed_quality.md"))
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    from birdclef.config import build_config
    from birdclef.data.competition import competition_paths, list_audio, load_taxonomy
    from birdclef.data.metric import read_solution
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
    task, data = _task(args)
    paths = competition_paths(data)
    taxonomy = load_taxonomy(paths.taxonomy)
    labels = taxonomy["primary_label"].tolist()
    solution, ignore = read_solution(paths.solution)
    tests = list_audio(paths.test_soundscapes)
    train_sc = list_audio(paths.train_soundscapes)
    train_truth = (pd.read_csv(data / "train_soundscapes_solution.csv", dtype={"row_id": str})
                   if (data / "train_soundscapes_solution.csv").exists() else None)
    variants = args.variants.split(",")
    if "sed-student" in variants and not train_sc:
        raise SystemExit(f"sed-student needs train soundscapes; {data} has none (realdev: pass --pool-share)")
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
            rows.append({"variant": "mlp", "seed": seed, **_scores(solution, probs["mlp"], labels, mapped, ignore),
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
            rows.append({"variant": name, "seed": seed, **_scores(solution, probs[name], labels, mapped, ignore),
                         "minutes": (time.perf_counter() - t1) / 60,
                         "sec_per_epoch": float(result.history["seconds"].mean())})
            print(rows[-1], flush=True)
            sed.save_run(out / f"{name}-s{seed}", result.model, cfg, labels, history=result.history,
                         metrics=result.metrics, onnx=False)
        if "sed-student" in variants:
            t1 = time.perf_counter()
            result, clips, cfg = results["sed-distill"]
            # with no truth on the train soundscapes (realdev's pool) and no validation fold, nothing
            # out of sample can guard: one round, kept as it comes
            guard = (sed.soundscape_guard(train_sc, train_truth, labels, cfg) if train_truth is not None
                     else _no_guard)
            size = args.student_epoch_size
            size = (cfg.epoch_size if size is None else (cfg.epoch_size or len(clips)) if size == "teacher"
                    else int(size))
            kept, table = sed.noisy_student(result, clips, cfg.replace(student_rounds=1, epoch_size=size), train_sc,
                                            guard=guard, progress=True)
            table["guarded"] = train_truth is not None
            table.to_csv(out / f"student-rounds-{task}-s{seed}.csv", index=False)
            probs["sed-student"] = {f.stem: smooth_windows(sed.predict_file(kept.model, cfg, f), SMOOTH) for f in tests}
            rows.append({"variant": "sed-student", "seed": seed,
                         **_scores(solution, probs["sed-student"], labels, mapped, ignore),
                         "minutes": (time.perf_counter() - t1) / 60, "rounds_kept": int(table["kept"].sum()) - 1})
            print(rows[-1], table.to_string(), flush=True)
        if "blend" in variants:
            blend = {s: (probs["mlp"][s] + probs["sed-distill"][s]) / 2 for s in probs["mlp"]}
            rows.append({"variant": "blend", "seed": seed, **_scores(solution, blend, labels, mapped, ignore)})
        _merge_rows(out / "rows.csv", rows, task)
    merged = _merge_rows(out / "rows.csv", rows, task)
    write_table(merged[merged["task"] == task], args, task, len(tests))


def _merge_rows(path: Path, rows: list[dict], task: str) -> pd.DataFrame:
    """This run's rows merged into ``path`` (an earlier run's other tasks, variants and seeds kept) → all rows.
    Rows written before tasks were named are taken as the dataset's (``demo`` or ``realdev``: the earlier task)."""
    table = pd.DataFrame(rows).assign(task=task)
    if path.exists():
        before = pd.read_csv(path)
        if "task" not in before:
            before = before.assign(task=task.split("-")[0])
        table = pd.concat([before, table], ignore_index=True)
    table = table.drop_duplicates(["task", "variant", "seed"], keep="last").reset_index(drop=True)
    table.to_csv(path, index=False)
    return table


def write_table(rows: pd.DataFrame, args, task: str, n_tests: int) -> None:
    from birdclef_bench.experiments import mean_sd

    mlp = rows[rows["variant"] == "mlp"].set_index("seed")["all"]
    lines = [("| variant | what | seeds | test macro AUC (all) | vs MLP (paired by seed) | mapped | unmapped "
              "| minutes per run (2 shared cores) |"), "|---|---|---|---|---|---|---|---|"]
    for name, g in rows.groupby("variant", sort=False):
        gain = (mean_sd(pd.Series(g["all"].to_numpy() - mlp.reindex(g["seed"]).to_numpy()), signed=True)
                if name != "mlp" and not mlp.empty else "–")
        minutes = mean_sd(g["minutes"], 1) if "minutes" in g and g["minutes"].notna().any() else "–"
        lines.append(f"| `{name}` | {WHAT.get(name, '')} | {g['seed'].nunique()} | {mean_sd(g['all'])} | {gain} | "
                     f"{mean_sd(g['mapped'])} | {mean_sd(g['unmapped'])} | {minutes} |")
    options = (f" --construction {args.construction}" + (f" --pool-share {args.pool_share:g}" if args.pool_share else "")
               if args.dataset == "realdev" else "")
    if args.student_epoch_size is not None:
        options += f" --student-epoch-size {args.student_epoch_size}"
    # the 2026-11-29 sections are headed "## demo:" and "## realdev:" (the latter dense-file)
    title = args.dataset if task in ("demo", "realdev-dense-file") else task
    header = (f"## {title}: `python benchmarks/sed_quality.py --dataset {args.dataset}{options} --seeds "
              f"{' '.join(map(str, sorted(rows['seed'].unique())))} --epochs {args.epochs} --backbone {args.backbone}`")
    text = "\n".join([header, "", f"{n_tests} test soundscapes; mean ± sd over seeds; {time.strftime('%Y-%m-%d')}.",
                      "", *lines, ""])
    md = Path(args.md)
    previous = md.read_text() if md.exists() else "# SED models vs the MLP default\n\n"
    marker = f"## {title}:"
    if marker in previous:  # replace this dataset's section, keep the others
        head, _, rest = previous.partition(marker)
        tail = rest.split("\n## ", 1)
        previous = head + ("## " + tail[1] if len(tail) > 1 else "")
    md.write_text(previous.rstrip("\n") + "\n\n" + text)
    print(text)


if __name__ == "__main__":
    main()
