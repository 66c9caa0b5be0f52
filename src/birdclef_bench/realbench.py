"""The real-audio benchmark: every modelling choice measured on held-out real recordings.

    python -m birdclef_bench --dataset realdev [--realdev DIR] [--splits 0 1 2] [--seeds 0 1 2]

For each split, :func:`birdclef_bench.heldout.make_heldout_task` holds whole recording sessions out of
``DIR`` (default ``$BIRDCLEF_REALDEV`` or ``../shared/realdev`` beside this checkout) and builds
test soundscapes from them like the competition's (sparse faint calls over a real bed; see
:class:`birdclef_bench.heldout.TaskSettings`; ``--construction dense --holdout file`` is the earlier,
leakier and denser task). ``--lockbox`` adds the lockbox split, whose sessions no other split
holds out: report it last, and choose nothing on it. Every variant trains and submits through the ordinary stage functions for each
split × seed; the score is the competition metric on the test soundscapes over all classes,
over the classes the backbone knows (*mapped*) and over the others (*unmapped*). The reference
row is the backbone's raw zero-shot score on the same windows (its own logits on raw audio, the
highest frame of each 5-s window; unmapped classes constant, i.e. AUC 0.5).
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from birdclef.config import Config, build_config
from birdclef.data.competition import competition_paths, list_audio, load_taxonomy
from birdclef.data.metric import read_solution, score
from birdclef.errors import SchemaError
from birdclef.features.embeddings import extract
from birdclef.features.zeroshot import load_zero_shot
from birdclef.io import write_csv
from birdclef.models import valsoundscapes
from birdclef.postprocess import smooth_windows
from birdclef.submission.submit import build_submission
from birdclef.workdir import ModelFolder, RunLayout
from birdclef_bench.density import load_occupancy, occupancy_stats
from birdclef_bench.heldout import LOCKBOX, TaskSettings, make_heldout_task, make_regime_task

CHAIN_BEFORE_BOOST = ("blend", "site_prior", "smoothing")  # the post-processing chain before the file boost
# per-taxon smoothing as the top teams used it: narrow for birds (and mammals), wide for frogs and insects
TAXON_KERNELS = ("Aves:0.25/0.5/0.25", "Amphibia:0.1/0.2/0.4/0.2/0.1", "Insecta:0.1/0.2/0.4/0.2/0.1",
                 "Mammalia:0.25/0.5/0.25")
# the noisy student (issue 20): two soft rounds, target = blended probability ** 2, each window's sum capped at 0.75
NOISY_STUDENT = dict(pseudo_rounds=2, pseudo_targets="soft", pseudo_power=2.0, pseudo_cap=0.75)
# name → (what changes, parameters over the default recipe)
REAL_VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "default": ("the default recipe", {}),
    "head-only": ("no zero-shot blend (the head alone)", dict(zero_shot_weight=0.0)),
    "blend-0.5": ("one fixed blend weight 0.5 for every mapped class", dict(zero_shot_weight=0.5)),
    "no-refit": ("the head that submits never sees the validation fold", dict(refit=False)),
    "clean": ("weak-label cleaning: half of each recording's segments retrained as background",
              dict(segment_cleaning=0.5)),
    "clean-relative": ("cleaning relative to each recording's best segment (below 0.5 × its highest probability)",
                       dict(cleaning_mode="relative", segment_cleaning=0.5)),
    "no-smooth": ("no smoothing across windows", dict(smoothing_kernel=(1.0,))),
    # the chain up to smoothing: the post-processing grid (birdclef_bench.postgrid) starts from its submission
    "pre-smooth": ("blend and site prior only (no smoothing, no file boost)", dict(postprocess=("blend", "site_prior"))),
    "smooth-soft": ("gentle smoothing (0.1, 0.8, 0.1), the default since issue 31", dict(smoothing_kernel=(0.1, 0.8, 0.1))),
    "smooth-k3": ("smoothing (0.25, 0.5, 0.25), the default before issue 31", dict(smoothing_kernel=(0.25, 0.5, 0.25))),
    "smooth5": ("wider smoothing (0.1, 0.2, 0.4, 0.2, 0.1)", dict(smoothing_kernel=(0.1, 0.2, 0.4, 0.2, 0.1))),
    "backbone-only": ("the backbone's logits alone on mapped classes (blend weight 1), smoothed", dict(zero_shot_weight=1.0)),
    "max-pool": ("a window's segment probabilities pooled by max, not mean", dict(window_pool="max")),
    "tta": ("test-time shifts −2.5, 0, +2.5 s (one BirdNET hop)", dict(tta_shifts_s=(-2.5, 0.0, 2.5))),
    "select-soundscapes": ("the validation soundscapes pick the epoch and the blend weights", dict(val_select="soundscapes")),
    "group-recording": ("validation folds keep recordings, not sessions, apart", dict(group_by="recording")),
    "ce": ("single-label cross-entropy instead of BCE", dict(loss="ce")),
    "no-vad": ("no speech removal", dict(vad=False)),
    "denoise": ("noisereduce + RMS normalisation before the backbone", dict(denoise=True, rms_normalise=True)),
    "seed-recipe": ("the public recipe this project started from: YAMNet, CE, 1-s segments, no post-processing",
                    dict(recipe="seed")),
    "vad-0.5": ("Silero's own speech threshold 0.5 and shortest speech 0.25 s", dict(vad_threshold=0.5,
                                                                                 vad_min_speech_s=0.25)),
    # post-processing steps of the BirdCLEF top teams (issue 20), each after blend, site prior and smoothing
    "no-file-boost": ("the chain before the file boost: blend, site prior, smoothing", dict(postprocess=CHAIN_BEFORE_BOOST)),
    "file-boost-0.3": ("each window raised toward its file's maximum: p·0.7 + 0.3·max",
                       dict(postprocess=(*CHAIN_BEFORE_BOOST, "file_boost"), file_boost_alpha=0.3, file_boost_power=0.0)),
    "file-boost-0.6": ("each window raised toward its file's maximum: p·0.4 + 0.6·max",
                       dict(postprocess=(*CHAIN_BEFORE_BOOST, "file_boost"), file_boost_alpha=0.6, file_boost_power=0.0)),
    "file-boost-mult": ("each window scaled by its file's maximum: p·max (the default since issue 20)",
                        dict(postprocess=(*CHAIN_BEFORE_BOOST, "file_boost"), file_boost_power=1.0)),
    "file-boost-smooth5": ("the file boost (p·max) after the wider smoothing (0.1, 0.2, 0.4, 0.2, 0.1)",
                           dict(postprocess=(*CHAIN_BEFORE_BOOST, "file_boost"), file_boost_power=1.0,
                                smoothing_kernel=(0.1, 0.2, 0.4, 0.2, 0.1))),
    "genus-0.1": ("each class takes 0.1 of its genus-mates' mean", dict(postprocess=(*CHAIN_BEFORE_BOOST, "genus_smoothing"),
                                                                       genus_weight=0.1)),
    "genus-0.3": ("each class takes 0.3 of its genus-mates' mean", dict(postprocess=(*CHAIN_BEFORE_BOOST, "genus_smoothing"),
                                                                       genus_weight=0.3)),
    "taxon-smooth": ("smoothing per taxon: birds (0.25, 0.5, 0.25), frogs (0.1, 0.2, 0.4, 0.2, 0.1)",
                     dict(postprocess=("blend", "site_prior", "taxon_smoothing"),
                          taxon_smoothing_kernels=TAXON_KERNELS)),
    # the per-class rank blend (1st place 2026) after the logit blend, and the context model as the last step.
    # They reuse the default's heads: their fields are "submission" fields (the context model is fitted on
    # the reused folder's saved validation soundscapes); run `default` first so its heads are the ones reused
    "rank-blend-0.2": ("per mapped class, head ranks · 0.8 + backbone ranks · 0.2 over every test window, after "
                       "the logit blend", dict(postprocess=("blend", "rank_blend", *CHAIN_BEFORE_BOOST[1:], "file_boost"),
                                               rank_blend_weight=0.2)),
    "rank-blend-0.5": ("the same at 0.5 / 0.5", dict(postprocess=("blend", "rank_blend", *CHAIN_BEFORE_BOOST[1:], "file_boost"),
                                                     rank_blend_weight=0.5)),
    "rank-only-0.2": ("the rank blend at 0.2 in place of the logit blend",
                      dict(postprocess=("rank_blend", *CHAIN_BEFORE_BOOST[1:], "file_boost"), rank_blend_weight=0.2)),
    "context": ("a bidirectional GRU over each file's windows as the last step (trained on the validation "
                "soundscapes)", dict(postprocess=(*CHAIN_BEFORE_BOOST, "file_boost", "context"))),
    "rank-blend-0.2-context": ("the rank blend at 0.2 and the context model",
                               dict(postprocess=("blend", "rank_blend", *CHAIN_BEFORE_BOOST[1:], "file_boost", "context"),
                                    rank_blend_weight=0.2)),
    # noisy student on the task's unlabelled pool (issue 20; build the tasks with --pool-share, and compare with
    # `default` built with the same pool: both train on the same labelled recordings)
    "noisy-student": ("2 soft rounds on the pool: every window, target = blended probability², sum capped at 0.75",
                      dict(NOISY_STUDENT)),
    "noisy-student-p1": ("the noisy student with target = the blended probability (power 1), sum capped at 0.75",
                         dict(NOISY_STUDENT, pseudo_power=1.0)),
    "noisy-student-share": ("the noisy student with half of each batch from the pool (separate samplers)",
                            dict(NOISY_STUDENT, pseudo_share=0.5)),
    "noisy-student-mixup": ("the noisy student with a pool window mixed into each focal crop (λ 0.3, target union)",
                            dict(NOISY_STUDENT, pseudo_mixup=0.3)),
}
# the blend's evidence settings and its guard (issue 31; birdclef.features.zeroshot.BlendPrior): training fields, so
# each trains its own head
BLEND_VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "blend-prior-1": ("unmeasured classes and the shrinkage target: the backbone alone (blend_prior_weight 1)",
                      dict(blend_prior_weight=1.0)),
    "blend-prior-0.5": ("a prior halfway between head and backbone (blend_prior_weight 0.5)", dict(blend_prior_weight=0.5)),
    "blend-pairs-0": ("the shared weight is the pooled optimum, not shrunk toward the prior", dict(blend_prior_pairs=0.0)),
    "blend-pairs-30": ("the pooled optimum counts as much as the prior at 30 (class, recording) pairs",
                       dict(blend_prior_pairs=30.0)),
    "blend-no-lean": ("no lean on the backbone for classes the head trained on few recordings of",
                      dict(blend_train_recordings=0.0)),
    "blend-pool-trained": ("the pooled curve only over classes the fold's head trained on", dict(blend_pool_untrained=False)),
    "no-blend-guard": ("no guard against a finished blend below the backbone", dict(blend_guard=False)),
}
REAL_VARIANTS |= BLEND_VARIANTS


def yamnet_path() -> str | None:
    """$BIRDCLEF_YAMNET, else the YAMNet model beside this checkout (../shared/models), else None."""
    local = Path(__file__).resolve().parents[3] / "shared" / "models" / "yamnet.tflite"
    return os.environ.get("BIRDCLEF_YAMNET") or (str(local) if local.exists() else None)


def mean_sd(values: pd.Series, digits: int = 3, *, signed: bool = False) -> str:
    """'mean ± sd' of the non-NaN values ('–' when none; sd 0 for one value)."""
    values = values.dropna()
    if values.empty:
        return "–"
    sd = values.std(ddof=1) if len(values) > 1 else 0.0
    return f"{values.mean():{'+' if signed else ''}.{digits}f} ± {sd:.{digits}f}"


REFERENCE_ROWS = {
    "zero-shot": "**reference**: the backbone's own logits on raw audio, no training",
    "zero-shot-smoothed": "the same, smoothed across windows as the default recipe smooths",
}


def default_realdev() -> Path | None:
    """$BIRDCLEF_REALDEV, else ../shared/realdev beside this checkout, else None."""
    env = os.environ.get("BIRDCLEF_REALDEV")
    local = Path(__file__).resolve().parents[3] / "shared" / "realdev"
    if env:
        return Path(env)
    return local if (local / "taxonomy.csv").exists() else None


def subset_scores(solution: pd.DataFrame, submission: pd.DataFrame, mapped: dict[str, bool],
                  ignore: pd.DataFrame | None = None) -> dict[str, float]:
    """{"all", "mapped", "unmapped"}: the competition metric over all classes and each subset (NaN
    where a subset has no class with a positive), the ``ignore`` cells left out."""
    out = {}
    for name, keep in (("all", lambda c: True), ("mapped", lambda c: mapped.get(c, False)),
                       ("unmapped", lambda c: not mapped.get(c, False))):
        cols = ["row_id", *[c for c in solution.columns[1:] if keep(c)]]
        try:
            out[name] = score(solution[cols], submission[cols], ignore=ignore)
        except SchemaError:  # no positive among these classes
            out[name] = float("nan")
    return out


class RealBenchmark:
    """Held-out tasks of one source folder, one shared embedding cache, many runs."""

    def __init__(self, out: Path, source: Path, *, splits: list[int], base: dict[str, Any],
                 settings: TaskSettings | None = None, per_class: int = 0, trained: dict[str, Path] | None = None
                 ) -> None:
        """``per_class`` > 0: the few-recording regime (:func:`birdclef_bench.heldout.make_regime_task`) of each
        split's task, trained on about that many recordings per species, tested on the same minutes.
        ``trained``: a head folder per (split, training recordings, training settings) shared with other
        benchmarks (another construction of the same splits trains on the same recordings: its heads are reused)."""
        self.out, self.base = out, base
        self.settings = settings or TaskSettings()
        self.tag = self.settings.tag
        built = {s: make_heldout_task(source, out / "tasks" / self.tag / split_name(s), split=s, settings=self.settings)
                 for s in splits}
        self.stats = {s: t.stats for s, t in built.items()}
        self.regime = str(per_class) if per_class else "all"
        if per_class:
            built = {s: make_regime_task(t, out / "tasks" / self.tag / f"{split_name(s)}-r{per_class}",
                                         per_class=per_class, split=s) for s, t in built.items()}
        self.regime_stats = {s: t.stats for s, t in built.items()}
        self.tasks = {s: t.data_dir for s, t in built.items()}
        self.cache = RunLayout(out)  # its embeddings, shared by every split: train_audio links resolve to one place
        self.cache.embeddings.mkdir(parents=True, exist_ok=True)
        self.trained: dict[str, Path] = {} if trained is None else trained  # (split, recordings, settings) → model folder
        self._preprocessed: set[Path] = set()  # shared folders preprocessed by this benchmark

    def _shared(self, split: int, config: Config) -> RunLayout:
        """The split's preprocessed work folder for ``config``'s embedding settings, preprocessed once per
        benchmark (from the cache when nothing changed: a recording whose file changed, e.g. a data folder
        copied afresh with new modification times, is embedded again rather than missing from a stale manifest)."""
        from birdclef.features.preprocess import run_preprocess

        shared = RunLayout(self.out / "shared" / f"{self.label}-{split_name(split)}-{config.embedding_key()}")
        if shared.root not in self._preprocessed:
            if not shared.embeddings.exists():
                shared.link_caches(self.cache, preprocess=False)
            run_preprocess(config=build_config(**{**config.to_dict(), "work_dir": str(shared.root)}))
            self._preprocessed.add(shared.root)
        return shared

    @property
    def label(self) -> str:
        """The construction's tag, and ``-r<k>`` in a few-recording regime: names its run folders."""
        return self.tag + ("" if self.regime == "all" else f"-r{self.regime}")

    def training_key(self, split: int) -> str:
        """A hash of the split's ``train.csv``: constructions and regimes that train on the same recordings
        share a head."""
        return hashlib.sha1((self.tasks[split] / "train.csv").read_bytes()).hexdigest()[:12]

    def config(self, name: str, params: dict[str, Any], split: int, seed: int) -> Config:
        work = self.out / "runs" / f"{name}-{self.label}-{split_name(split)}-s{seed}"
        if params.get("recipe") == "seed":
            params = {**params, "backbone_path": yamnet_path()}
        config = build_config(**{**self.base, **params, "data_dir": str(self.tasks[split]), "seed": seed,
                                 "work_dir": str(work), "run_name": name, "runs_table": str(RunLayout(self.out).runs)})
        RunLayout(work).link_caches(self._shared(split, config))
        return config

    def mapped(self, split: int) -> dict[str, bool]:
        """{label: the default backbone knows it}, the same for every variant (YAMNet's runs included)."""
        return mapped_classes(self.tasks[split], self.base)

    def run(self, name: str, params: dict[str, Any], split: int, seed: int) -> dict[str, Any]:
        from birdclef.submission.submit import run_submission

        t0 = time.perf_counter()
        config = self.config(name, params, split, seed)
        # variants that differ only in post-processing (blend weight, smoothing) reuse the trained head
        model_dir = trained_model(config, self.trained, scope=[split, self.training_key(split)])
        fit_context(config, model_dir)
        result = run_submission(config=config, model_dir=model_dir)
        solution, ignore = read_solution(competition_paths(config.data_dir).solution)
        metrics = json.loads(ModelFolder(model_dir).metrics.read_text())
        return {"variant": name, "construction": self.tag, "regime": self.regime, "split": split, "seed": seed,
                **subset_scores(solution, result.submission, self.mapped(split), ignore),
                "val_auc": metrics.get("val_auc", np.nan),
                # the validation scores a choice could be made on (see spearman_table)
                "val_labelled": metrics.get("val_labelled_auc", metrics.get("val_auc", np.nan)),
                "val_blend": metrics.get("val_auc_blend", np.nan),
                "val_mix_head": metrics.get("val_mix_auc_head", np.nan),
                "val_mix": valsoundscapes.saved_score(model_dir, config),
                # the blend's evidence and its guard (issue 31)
                "blend_shared_weight": metrics.get("blend_shared_weight", np.nan),
                "guard_finished": metrics.get("guard_finished_auc", np.nan),
                "guard_backbone": metrics.get("guard_backbone_auc", np.nan),
                "guard_fallback": metrics.get("guard_fallback", np.nan),
                "seconds": time.perf_counter() - t0, "model_dir": str(model_dir), "data_dir": str(config.data_dir),
                "submission": str(RunLayout.of(config).submission)}

    def zero_shot_rows(self, split: int) -> list[dict[str, Any]]:
        """The backbone's own logits on raw audio (no cleaning), max over each window's frames; and the
        same smoothed across windows as the default recipe smooths (to tell its share of a gain)."""
        config = build_config(**{**self.base, "data_dir": str(self.tasks[split]), "denoise": False,
                                 "rms_normalise": False, "work_dir": str(self.out / "zero_shot")})
        RunLayout.of(config).link_caches(self.cache, preprocess=False)
        paths = competition_paths(config.data_dir)
        taxonomy = load_taxonomy(paths.taxonomy)
        zs = load_zero_shot(config, taxonomy)
        if zs is None:
            raise SystemExit(f"backbone {config.backbone} has no species scores: no zero-shot reference")
        files = list_audio(paths.test_soundscapes)
        embedded, _ = extract(files, config=config, progress=False, need_speech=False, score_columns=zs.score_columns)
        probs = {Path(p).stem: 1 / (1 + np.exp(-zs.window_logits(e, config.window_s))) for p, e in embedded.items()}
        labels = taxonomy["primary_label"].tolist()
        for p in probs.values():
            p[:, ~zs.mapped] = 0.5
        solution, ignore = read_solution(paths.solution)
        mapped = dict(zip(labels, zs.mapped))
        smoothed = {stem: smooth_windows(p, build_config().smoothing_kernel) for stem, p in probs.items()}
        write_csv(build_submission(probs, labels, config.window_s),  # the post-processing grid's raw reference
                  self.out / "zero_shot" / f"{self.tag}-{split_name(split)}.csv")
        return [{"variant": name, "construction": self.tag, "regime": "–", "split": split, "seed": -1,
                 **subset_scores(solution, build_submission(p, labels, config.window_s), mapped, ignore)}
                for name, p in (("zero-shot", probs), ("zero-shot-smoothed", smoothed))]


def mapped_classes(data_dir: str | Path, base: dict[str, Any] | None = None) -> dict[str, bool]:
    """{label: the backbone of ``base`` (default: the default recipe's) knows it} for a task folder."""
    taxonomy = load_taxonomy(competition_paths(data_dir).taxonomy)
    zs = load_zero_shot(build_config(**{**(base or {}), "data_dir": str(data_dir)}), taxonomy)
    flags = np.zeros(len(taxonomy), bool) if zs is None else zs.mapped
    return dict(zip(taxonomy["primary_label"], flags))


def fit_context(config: Config, model_dir: Path) -> None:
    """A reused head's folder gets the context model its submission's chain names (trained on the folder's saved
    validation soundscapes; kept while its fingerprint matches): variants that add the step reuse the head."""
    if "context" in config.postprocess:
        from birdclef.models.context import train_context

        train_context(ModelFolder(model_dir), config)


def trained_model(config: Config, trained: dict[str, Path], *, scope: Any = None) -> Path:
    """The model folder of ``config``: trained now, or the one ``trained`` already holds for the same
    training settings within ``scope`` (a split), so variants that change only the post-processing
    score the same head. With pseudo-label rounds the submission's settings train too: the teacher's
    targets are post-processed predictions."""
    from birdclef.config import SUBMISSION_FIELDS
    from birdclef.models.train import run_training

    settings = config.training_dict()
    if config.pseudo_rounds:
        settings |= {k: v for k, v in config.to_dict().items() if k in SUBMISSION_FIELDS}
    key = json.dumps([scope, settings], sort_keys=True, default=str)
    if key not in trained:
        run_training(config=config, progress=False)
        trained[key] = RunLayout.of(config).model_dir
    return trained[key]


def split_name(split: int) -> str:
    return "lockbox" if split == LOCKBOX else f"s{split}"


def real_table(results: pd.DataFrame) -> str:
    """Markdown: per construction and variant, mean ± sd over splits × seeds of all / mapped /
    unmapped, and the paired gains over the raw zero-shot score of the same construction and split
    (all, mapped) and over the zero-shot score smoothed as the default smooths (mapped: what
    training adds where the backbone already knows the species)."""
    if "construction" not in results:
        results = results.assign(construction="dense-file")
    lines = ["| construction | variant | what changes | runs | all classes | mapped | unmapped | vs zero-shot: all "
             "| vs zero-shot: mapped | vs zero-shot smoothed: mapped |", "|---|---|---|---|---|---|---|---|---|---|"]
    for construction, c in results.groupby("construction", sort=False):
        ref = c[c["variant"] == "zero-shot"].set_index("split")
        smoothed = c[c["variant"] == "zero-shot-smoothed"].set_index("split")
        for name, g in c.groupby("variant", sort=False):
            what = REFERENCE_ROWS.get(name) or REAL_VARIANTS.get(name, ("", {}))[0]
            cells = []
            for base, key in ((ref, "all"), (ref, "mapped"), (smoothed, "mapped")):
                if name in REFERENCE_ROWS or base.empty:
                    cells.append("–")
                else:
                    cells.append(mean_sd(pd.Series(g[key].to_numpy() - base.loc[g["split"], key].to_numpy()), signed=True))
            runs = f"{g['split'].nunique()} splits" + ("" if name in REFERENCE_ROWS else f" × {g['seed'].nunique()} seeds")
            lines.append(f"| {construction} | `{name}` | {what} | {runs} | {mean_sd(g['all'])} | {mean_sd(g['mapped'])} | "
                         f"{mean_sd(g['unmapped'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired_table(results: pd.DataFrame, base: str = "default") -> str:
    """Markdown: per construction and variant, its gain over ``base`` paired by split × seed (mean ± sd) on
    all / mapped / unmapped classes, and in how many of those runs it scored higher on all classes."""
    if "construction" not in results:
        results = results.assign(construction="dense-file")
    runs = results[results["seed"] >= 0]
    ids = ["regime", "split", "seed"] if "regime" in runs else ["split", "seed"]  # a run: its regime, split and seed
    lines = [f"| construction | variant | runs | vs {base}: all | vs {base}: mapped | vs {base}: unmapped | better (all) |",
             "|---|---|---|---|---|---|---|"]
    for construction, c in runs.groupby("construction", sort=False):
        ref = c[c["variant"] == base].set_index(ids)
        for name, g in c.groupby("variant", sort=False):
            if name == base or ref.empty:
                continue
            g = g.set_index(ids)
            both = g.index.intersection(ref.index)
            diff = {k: pd.Series(g.loc[both, k].to_numpy() - ref.loc[both, k].to_numpy()) for k in ("all", "mapped",
                                                                                                 "unmapped")}
            lines.append(f"| {construction} | `{name}` | {len(both)} | " + " | ".join(
                mean_sd(diff[k], 4, signed=True) for k in ("all", "mapped", "unmapped"))
                + f" | {int((diff['all'] > 0).sum())}/{len(both)} |")
    return "\n".join(lines)


def split_table(results: pd.DataFrame, variant: str = "default") -> str:
    """Markdown: per construction and split, the variant's mean ± sd over seeds beside the raw zero-shot score."""
    if "construction" not in results:
        results = results.assign(construction="dense-file")
    lines = ["| construction | split | zero-shot: all | default: all | zero-shot: mapped | default: mapped | default: unmapped |",
             "|---|---|---|---|---|---|---|"]
    for (construction, split), g in results.groupby(["construction", "split"], sort=False):
        z, d = g[g["variant"] == "zero-shot"], g[g["variant"] == variant]
        lines.append(f"| {construction} | {split_name(int(split))} | {mean_sd(z['all'])} | {mean_sd(d['all'])} | "
                     f"{mean_sd(z['mapped'])} | {mean_sd(d['mapped'])} | {mean_sd(d['unmapped'])} |")
    return "\n".join(lines)


VAL_SCORES = {
    "val_labelled": "focal validation recordings (+ labelled soundscape windows): the head, at the chosen epoch",
    "val_blend": "the same rows, mapped classes, head blended with the backbone (cross-fitted weights)",
    "val_mix_head": "validation soundscapes mixed from the validation fold: the head alone",
    "val_mix": "validation soundscapes after the variant's post-processing (blend, smoothing)",
}


def spearman_table(results: pd.DataFrame, target: str = "all") -> str:
    """Markdown: for each validation score, Spearman's ρ between it and the held-out ``target`` score over
    the variants — of the variants' means over every split × seed, and the mean ± sd of ρ computed within
    each (construction, split, seed) — with how many variants it ranked."""
    from scipy.stats import spearmanr

    runs = results[results["seed"] >= 0]
    lines = ["| validation score | what it scores | variants | ρ of the means | ρ within a split × seed |",
             "|---|---|---|---|---|"]
    for col, what in VAL_SCORES.items():
        if col not in runs or runs[col].isna().all():
            continue
        means = runs.groupby(["construction", "variant"])[[col, target]].mean().dropna()
        rho_means = spearmanr(means[col], means[target]).statistic if len(means) >= 3 else float("nan")
        within = [spearmanr(g[col], g[target]).statistic for _, g in runs.dropna(subset=[col, target])
                  .groupby(["construction", "split", "seed"]) if len(g) >= 3 and g[col].nunique() > 1]
        lines.append(f"| `{col}` | {what} | {len(means)} | {rho_means:.2f} | {mean_sd(pd.Series(within), 2)} |")
    return "\n".join(lines)


def task_table(stats: dict[str, dict[int, dict]], reference: dict[str, float] | None = None) -> str:
    """Markdown: what each construction's test soundscapes look like, per split; with ``reference``
    (:func:`birdclef_bench.density.occupancy_stats`) the real labelled minutes' own figures last."""
    lines = ["| construction | split | soundscapes | held-out recordings | species | positive windows | files without "
             "a target | windows per present species (median) | median positive run (windows) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for tag, per_split in stats.items():
        for split, st in per_split.items():
            lines.append(f"| {tag} | {split_name(split)} | {st['n_soundscapes']} | {st['n_held_out']} | {st['n_species']} | "
                         f"{st['positive_share']:.0%} | {st['empty_file_share']:.0%} | "
                         f"{st.get('median_windows', float('nan')):.1f} | {st['median_run']:.1f} |")
    if reference:
        lines.append(f"| real labelled minutes (`occupancy_1min.csv`, pooled) | – | {reference.get('n_chunks', '–')} | – | – | "
                     f"{reference['positive_share']:.0%} | {reference['empty_file_share']:.0%} | "
                     f"{reference['median_windows']:.1f} | {reference['median_run']:.1f} |")
    return "\n".join(lines)


def regime_table(results: pd.DataFrame, variant: str = "default") -> str:
    """Markdown: per construction and training regime (recordings per species), ``variant`` beside the raw
    zero-shot score of the same construction (and its smoothed form) on all / mapped / unmapped classes,
    mean ± sd over splits × seeds, and the mapped gain paired by split: it *holds* where the mean gain is
    at least minus its sd."""
    lines = [f"| construction | recordings per species | runs | {variant}: all | {variant}: mapped | {variant}: unmapped | "
             "zero-shot: all | zero-shot: mapped | zero-shot smoothed: mapped | "
             f"{variant} − zero-shot: mapped | holds |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    order = {"1": 0, "2": 1, "4": 2, "all": 9}
    runs = results[results["variant"] == variant]
    for construction, c in results.groupby("construction", sort=False):
        z = c[c["variant"] == "zero-shot"].set_index("split")
        zs = c[c["variant"] == "zero-shot-smoothed"]
        d_all = runs[runs["construction"] == construction]
        for regime in sorted(d_all["regime"].astype(str).unique(), key=lambda r: order.get(r, int(r) if r.isdigit() else 99)):
            g = d_all[d_all["regime"].astype(str) == regime]
            zz = z.loc[z.index.intersection(g["split"].unique())]
            gain = pd.Series(g["mapped"].to_numpy() - z.loc[g["split"], "mapped"].to_numpy()) if len(z) else pd.Series([], dtype=float)
            sd = gain.std(ddof=1) if len(gain) > 1 else 0.0
            holds = "–" if gain.empty else ("yes" if gain.mean() >= -sd else f"**no** ({gain.mean():+.3f})")
            lines.append(f"| {construction} | {regime} | {g['split'].nunique()} splits × {g['seed'].nunique()} seeds | "
                         f"{mean_sd(g['all'])} | {mean_sd(g['mapped'])} | {mean_sd(g['unmapped'])} | {mean_sd(zz['all'])} | "
                         f"{mean_sd(zz['mapped'])} | {mean_sd(zs[zs['split'].isin(g['split'])]['mapped'])} | "
                         f"{mean_sd(gain, signed=True)} | {holds} |")
    return "\n".join(lines)


def run_real(out: Path, source: Path, *, splits: list[int], seeds: list[int], names: list[str], epochs: int,
             settings: list[TaskSettings] | None = None, lockbox: bool = False, regimes: list[int] | None = None,
             params: dict[str, Any] | None = None) -> str:
    """Every construction of ``settings`` (default: the sparse session task) × training regime (``regimes``:
    recordings per species, 0 = all; default all) × split × seed × variant, then, with ``lockbox``, the lockbox
    split of the first construction (the default variant only, every recording): its table comes last and
    no choice is made on it. Constructions of one split train on the same recordings: each head is trained
    once and scored on every construction's test minutes. ``params``: settings every run takes over its
    recipe's (e.g. fewer validation soundscapes to save time), said in the output."""
    settings = settings or [TaskSettings()]
    regimes = regimes or [0]
    rows, stats, n_test = [], {}, 0
    csv = out / "comparison.csv"
    trained: dict[str, Path] = {}
    benches = {}
    for task in settings:
        for k in regimes:
            benches[task.tag, k] = RealBenchmark(out, source, splits=splits, base=dict(epochs=epochs, n_workers=0, **(params or {})),
                                                 settings=task, per_class=k, trained=trained)
        bench = benches[task.tag, regimes[0]]
        stats[bench.tag] = bench.stats
        n_test += sum(st["n_soundscapes"] for st in bench.stats.values())
        rows += [row for s in splits for row in bench.zero_shot_rows(s)]
        pd.DataFrame(rows).to_csv(csv, index=False)
    for seed in seeds:  # every regime, split and variant of one seed before the next seed
        for k in regimes:
            for split in splits:
                for name in names:
                    for task in settings:
                        bench = benches[task.tag, k]
                        row = bench.run(name, REAL_VARIANTS[name][1], split, seed)
                        rows.append(row)
                        pd.DataFrame(rows).to_csv(csv, index=False)  # partial results survive a stop
                        print(f"{bench.label} {name:>18} split {split} seed {seed}: all {row['all']:.4f} mapped "
                              f"{row['mapped']:.4f} unmapped {row['unmapped']:.4f} ({row['seconds']:.0f} s)", flush=True)
    results = pd.DataFrame(rows)
    lock_rows = []
    if lockbox:
        bench = RealBenchmark(out, source, splits=[LOCKBOX], base=dict(epochs=epochs, n_workers=0, **(params or {})), settings=settings[0])
        stats[bench.tag] |= bench.stats
        lock_rows = bench.zero_shot_rows(LOCKBOX) + [bench.run("default", {}, LOCKBOX, seed) for seed in seeds]
    lock = pd.DataFrame(lock_rows)
    pd.concat([results, lock], ignore_index=True).to_csv(csv, index=False)
    reference = None
    density = [t for t in settings if t.construction == "density"]
    if density:
        chunks = load_occupancy(density[0].occupancy_path())
        reference = {**occupancy_stats(chunks), "n_chunks": len(chunks)}
    text = [f"Real-audio benchmark ({source}): splits {splits}, seeds {seeds}, {epochs} epochs"
            f"{''.join(f', {k}={v}' for k, v in (params or {}).items())}; {n_test} test "
            "soundscapes in all; mean ± sd over splits × seeds; gains paired with the same split's zero-shot score.",
            "", "Test soundscapes:", "", task_table(stats, reference), ""]
    if len(regimes) > 1 or regimes != [0]:
        text += ["Per training regime (recordings per species), the default beside raw zero-shot:", "",
                 regime_table(results), ""]
    if len(regimes) > 1:  # the tables below: one regime (every recording when it ran)
        results = results[results["regime"].isin(["all" if 0 in regimes else str(regimes[-1]), "–"])]
    text += [real_table(results), "",
             "Paired with the default recipe (same split × seed):", "", paired_table(results), "",
             "Per split (the default recipe, mean ± sd over seeds):", "", split_table(results), "",
             "How well each validation score ranks the variants as the held-out test does (Spearman's ρ):", "",
             spearman_table(results)]
    if "pre-smooth" in names:
        from birdclef_bench.postgrid import grid_spearman, grid_table, run_grid

        grid = run_grid(out, pd.DataFrame(rows))
        text += ["", "Post-processing grid (smoothing × file boost on each run's blended scores and on raw zero-shot; "
                 "`postprocess_grid.csv`), mapped classes:", "", grid_table(grid), "",
                 "All classes:", "", grid_table(grid, key="all"), "",
                 "How well the validation soundscapes rank the grid points as the held-out test does (Spearman's ρ):", "",
                 grid_spearman(grid)]
    if len(lock):
        text += ["", "**Lockbox** (sessions no other split holds out; no default was chosen on it; the default "
                 "recipe only):", "", real_table(lock)]
    (out / "comparison.md").write_text("\n".join(text) + "\n")
    return "\n".join(text)
