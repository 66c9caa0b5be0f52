"""SED inference speed on one CPU core: × real time per model size and engine, cold and warm.

    OMP_NUM_THREADS=1 python benchmarks/sed_speed.py [--models efficientnet_b0,...] [--repeats 5]

For each timm backbone (random weights: speed does not depend on them) a run folder is saved
(ONNX, and OpenVINO IR when openvino is installed), then one 60-s soundscape is predicted as a
submission does — decode, resample to 32 kHz, mel front end (torch), network, 12 windows in one
batch — with torch, ONNX Runtime and OpenVINO, each on one thread. *Cold*: load the model
(session creation, compilation) and predict the first file; *warm*: the minimum over
``--repeats`` predictions of a loaded model (other processes share this machine: the minimum is
the least disturbed). Writes benchmarks/sed_speed.md with the Kaggle budget: 600 one-minute
files, 4 single-thread workers, 90 minutes.
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
MODELS = "mobilenetv3_large_100,efficientnet_b0,regnety_008,hgnetv2_b0,tf_efficientnetv2_s,eca_nfnet_l0"
KAGGLE_FILES, KAGGLE_CORES, KAGGLE_MIN = 600, 4, 90
KAGGLE_RESERVED_MIN = 10  # start-up, decoding, writing the CSV, margin


def _minute(path: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    sf.write(path, (0.05 * rng.standard_normal(60 * 32_000)).astype(np.float32), 32_000, format="OGG",
             subtype="VORBIS")
    return path


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=MODELS)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "sed_speed.md"))
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    import torch

    torch.set_num_threads(1)
    from birdclef.data import audio
    from birdclef.models.sed import build_model, build_sed_config, load_run, save_run
    from birdclef.models.sed.export import openvino_available

    tmp = Path(tempfile.mkdtemp(prefix="birdclef-sed-speed-"))
    minute = _minute(tmp / "minute.ogg")
    load_start = os.getloadavg()
    engines = ["torch", "onnxruntime"] + (["openvino"] if openvino_available() else [])

    def decode():
        x, sr = audio.read_audio(minute)
        return audio.resample(x, sr, 32_000)

    t_decode = _best(decode, args.repeats)
    rows = []
    for name in args.models.split(","):
        cfg = build_sed_config(backbone=name)
        model = build_model(cfg, 206)  # BirdCLEF 2025's class count
        n_params = sum(p.numel() for p in model.parameters()) / 1e6
        t = time.perf_counter()
        run_dir = save_run(tmp / name, model, cfg, [f"c{i}" for i in range(206)], openvino=True)
        t_export = time.perf_counter() - t
        onnx_mb = (run_dir / "model.onnx").stat().st_size / 2**20
        for engine in engines:
            t = time.perf_counter()
            run = load_run(run_dir)
            predict = run.predictor(engine, threads=1)
            prob = predict(minute)
            cold = time.perf_counter() - t
            assert prob.shape == (12, 206)
            warm = _best(lambda: predict(minute), args.repeats)
            # the network alone (mel → logits), to tell it from decoding and the front end
            clips = np.zeros((12, cfg.clip_samples), np.float32) + 0.01
            if engine == "torch":
                mel = run.model.frontend(torch.from_numpy(clips))
                with torch.inference_mode():
                    net = _best(lambda: run.model.forward_mel(mel), args.repeats)
                front = _best(lambda: run.model.frontend(torch.from_numpy(clips)), args.repeats)
            else:
                mel = predict.mel(clips)
                net = _best(lambda: predict.outputs_from_mel(mel), args.repeats)
                front = _best(lambda: predict.mel(clips), args.repeats)
            rows.append({"model": name, "params_m": n_params, "onnx_mb": onnx_mb, "engine": engine,
                         "cold_s": cold, "warm_s": warm, "net_s": net, "front_s": front, "export_s": t_export})
            print(f"{name:>22} {engine:>12}: cold {cold:.2f} s, warm {warm:.3f} s/file "
                  f"({60 / warm:.0f}× real time; network {net:.3f} s, mel {front:.3f} s)", flush=True)
    load_end = os.getloadavg()
    budget_s = (KAGGLE_MIN - KAGGLE_RESERVED_MIN) * 60
    lines = [
        "# SED inference speed on one CPU core", "",
        f"`OMP_NUM_THREADS=1 python benchmarks/sed_speed.py` — {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {time.strftime('%Y-%m-%d')}. Load average {load_start[0]:.1f} at the start, "
        f"{load_end[0]:.1f} at the end (other agents' test runs share the 2 cores): every time is the minimum of "
        f"{args.repeats} repeats. Random weights (speed does not depend on them), 206 classes, 5-s clips at 32 kHz, "
        "128 mels (n_fft 2048, hop 512): one 60-s soundscape = 12 clips in one batch, one thread per engine.", "",
        f"Per file: decode + resample {t_decode * 1000:.0f} ms (shared by every model of an ensemble); "
        "*warm* = decode + mel + network + window pooling; *network* = mel → logits alone.", "",
        "| backbone | params (M) | ONNX (MB) | engine | cold (s) | warm (s / file) | × real time | network (ms) "
        "| mel (ms) |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| `{r['model']}` | {r['params_m']:.1f} | {r['onnx_mb']:.0f} | {r['engine']} | {r['cold_s']:.2f} | "
                     f"{r['warm_s']:.3f} | {60 / r['warm_s']:,.0f} | {r['net_s'] * 1000:,.0f} | {r['front_s'] * 1000:,.0f} |")
    lines += [
        "", f"## Kaggle budget: {KAGGLE_FILES} one-minute files, {KAGGLE_CORES} single-thread workers, "
        f"{KAGGLE_MIN} min", "",
        f"Per model and file: mel + network with the fastest engine (decoding is paid once per file, not per model); "
        f"{KAGGLE_RESERVED_MIN} min kept for start-up, decoding and margin, so {KAGGLE_MIN - KAGGLE_RESERVED_MIN} min "
        f"for the models. Assumes Kaggle's cores as fast as this machine's; measure on Kaggle before trusting the last "
        "column to the model.", "",
        "| backbone | fastest engine | per model (s / file) | minutes per model (600 files / 4 cores) | "
        "models that fit |", "|---|---|---:|---:|---:|",
    ]
    for name in args.models.split(","):
        mine = [r for r in rows if r["model"] == name]
        best = min(mine, key=lambda r: r["warm_s"])
        per_file = best["net_s"] + best["front_s"]
        minutes = KAGGLE_FILES * per_file / KAGGLE_CORES / 60
        lines.append(f"| `{name}` | {best['engine']} | {per_file:.3f} | {minutes:.1f} | {int(budget_s / 60 // minutes)} |")
    lines += ["", "Read the last column as an upper bound: Kaggle's cores may be slower than these, larger inputs "
              "(more mels, 10/20-s clips with context, overlapping windows, test-time shifts) multiply the network's "
              "cost, and every model's session is held by each of the 4 workers (memory: about 4 × its ONNX size "
              "plus activations). The mel front end is computed per model here; an ensemble whose members share "
              "the front-end settings could compute it once per file."]
    if "openvino" not in engines:
        lines += ["", "OpenVINO is not installed here (`pip install -e \".[openvino]\"`): its rows are missing."]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
