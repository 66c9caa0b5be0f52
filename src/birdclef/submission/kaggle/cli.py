"""The command line: ``birdclef kaggle build`` and ``birdclef kaggle resolve``."""
from __future__ import annotations

import json
import os
from pathlib import Path

from birdclef.errors import BirdclefError
from birdclef.params import parse_pairs
from birdclef.submission.kaggle.bundle import build_bundle
from birdclef.submission.kaggle.inputs import DEFAULT_INPUT, INPUT_ENV, resolve_kaggle_inputs
from birdclef.submission.kaggle.wheels import KAGGLE_PYTHON_VERSIONS, WHEEL_CACHE_ENV


def add_cli(sub) -> None:
    """Add ``kaggle build`` and ``kaggle resolve`` to the ``birdclef`` argument parser."""
    k = sub.add_parser("kaggle", help="offline Kaggle submission: build the dataset + kernel bundle")
    ksub = k.add_subparsers(dest="kaggle_command", required=True)
    b = ksub.add_parser("build", help="a trained run → <out>/dataset and <out>/kernel, ready for the kaggle CLI")
    b.add_argument("--run", required=True, help="a trained work_dir (holds model/head.pt)")
    b.add_argument("--out", default="kaggle/build")
    b.add_argument("--user", help="Kaggle username (default $KAGGLE_USERNAME)")
    b.add_argument("--slug", help="dataset slug (default birdclef-<run>-bundle)")
    b.add_argument("--kernel-slug", help="kernel slug (default: from --title, else birdclef-<run>-submission)")
    b.add_argument("--title", help="kernel title")
    b.add_argument("--dataset-title", help="dataset title, 6-50 characters")
    b.add_argument("--competition", help="Kaggle competition slug, e.g. birdclef-2026 (default: the run's data folder "
                   "name when it is birdclef-20xx; otherwise it must be given)")
    b.add_argument("--sample-submission", help="the competition's sample_submission.csv: the run's classes must match "
                   "its columns (default: the one in the run's data folder, when that folder is named after the competition)")
    b.add_argument("--model-source", action="append", default=[], metavar="OWNER/MODEL/FRAMEWORK/VARIATION/VERSION",
                   help="a Kaggle model the kernel attaches (e.g. Perch's weights); repeatable")
    b.add_argument("--license", default="other", help="dataset licence name (default: other)")
    b.add_argument("--python-version", action="append", default=None,
                   help=f"Kaggle Python versions to bundle binary wheels for (default {' '.join(KAGGLE_PYTHON_VERSIONS)})")
    b.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                   help="a submission setting over the run's saved submission config, as `birdclef submit -p` takes it "
                        "(e.g. ensemble_model_dirs=runs/sed/model ensemble_blend=rank); repeatable")
    b.add_argument("--force", action="store_true",
                   help="bundle even when the measured speed says the kernel would pass Kaggle's time limit")
    b.add_argument("--wheel-cache", help=f"where downloaded wheels are kept (default ${WHEEL_CACHE_ENV} or ~/.cache/birdclef/wheels)")
    r = ksub.add_parser("resolve", help="print what the kernel finds under /kaggle/input (as JSON)")
    r.add_argument("--root", help=f"default ${INPUT_ENV} or {DEFAULT_INPUT}")
    r.add_argument("--competition")
    r.add_argument("--model-source", action="append", default=[])


def run_cli(args) -> int:
    if args.kaggle_command == "resolve":
        root = Path(args.root or os.environ.get(INPUT_ENV) or DEFAULT_INPUT)
        if not root.is_dir():
            raise FileNotFoundError(f"{root} is not a folder: run this in a Kaggle kernel, or pass --root "
                                    f"(or set ${INPUT_ENV}) to a folder laid out as /kaggle/input")
        found = resolve_kaggle_inputs(root, competition=args.competition, model_sources=args.model_source)
        print(json.dumps(found, indent=2, default=str))
        missing = ([] if found["competition"] else ["the competition data (taxonomy.csv and sample_submission.csv)"]) + [
            f"model {handle}" for handle, folder in found["models"].items() if folder is None]
        if missing:
            raise BirdclefError(f"not found under {root}: {'; '.join(missing)}")
        return 0
    bundle = build_bundle(
        run_dir=args.run, out_dir=args.out, user=args.user, dataset_slug=args.slug, kernel_slug=args.kernel_slug,
        title=args.title, dataset_title=args.dataset_title, competition=args.competition,
        sample_submission=args.sample_submission,
        model_sources=args.model_source, license_name=args.license,
        python_versions=args.python_version or KAGGLE_PYTHON_VERSIONS, wheel_cache=args.wheel_cache,
        params=parse_pairs(args.param), force=args.force,
    )
    for warning in bundle.warnings:
        print(f"warning: {warning}")
    for row in bundle.budget:
        if row["kaggle_min"] is not None:
            print(f"time: {row['member']:<28} {row['family']:<5} {row['seconds_per_file']:>7.2f} s per file here → "
                  f"~{row['kaggle_min']:.0f} min on Kaggle")
    members = [bundle.marker["model_dir"], *bundle.marker["members"]]
    print(f"ensemble: {len(members)} member(s) {', '.join(f'{m} ({f})' for m, f in zip(members, bundle.marker['families']))}")
    size_mb = sum(f.stat().st_size for f in bundle.dataset_dir.rglob("*") if f.is_file()) / 1e6
    print(f"dataset {bundle.dataset_metadata['id']} ({size_mb:.0f} MB, {len(bundle.marker['wheels'])} wheels) → {bundle.dataset_dir}\n"
          f"kernel  {bundle.kernel_metadata['id']} → {bundle.kernel_dir}\n"
          f"next:   kaggle datasets create -p {bundle.dataset_dir} --dir-mode zip\n"
          f"        kaggle kernels push -p {bundle.kernel_dir}")
    return 0
