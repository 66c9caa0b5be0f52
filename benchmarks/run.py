"""Throughput benchmark: × real time of each stage on 60-s soundscapes, cold and cached, peak RSS.

    python benchmarks/run.py [--backbones melstats,birdnet,yamnet] [--n-soundscapes 8]

Writes benchmarks/results.md (and prints it). Speeds are ratios (audio seconds per wall second),
so they compare across machines; the machine's cores are recorded beside them.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SOUNDSCAPE_S = 60.0


def ratio(seconds: float, audio_s: float = SOUNDSCAPE_S) -> float:
    return audio_s / seconds


def timed(fn, *args, repeat: int = 3, **kwargs) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def model_path(name: str) -> str | None:
    """The weights a backbone needs here (only YAMNet needs a file; see birdclef_bench.experiments)."""
    from birdclef_bench.experiments import yamnet_path

    return yamnet_path() if name == "yamnet" else None


def stage_rows(soundscape: Path, backbones: list[str]) -> list[tuple[str, float]]:
    import torch

    from birdclef.backbones import get_backbone
    from birdclef.data import audio
    from birdclef.features.speech import speech_intervals

    torch.set_num_threads(1)  # per-core figures
    rows = []
    t, (x, sr) = timed(audio.read_audio, soundscape)
    rows.append(("decode (OGG, soundfile)", ratio(t)))
    for to in (16000, 48000):
        t, _ = timed(audio.resample, x, sr, to)
        rows.append((f"resample 32→{to // 1000} kHz", ratio(t)))
    x16 = audio.resample(x, sr, 16000)
    for rate, sig in ((16000, x16), (32000, x)):
        t, _ = timed(audio.denoise, sig, rate)
        rows.append((f"denoise (noisereduce, {rate // 1000} kHz)", ratio(t)))
    speech_intervals(x16, 16000)
    t, _ = timed(speech_intervals, x16, 16000)
    rows.append(("VAD (Silero, 16 kHz)", ratio(t)))

    def chain(rate: int, clean: bool, vad: bool) -> None:
        y, r = audio.read_audio(soundscape)
        y = audio.resample(y, r, rate)
        if clean:
            y = audio.rms_normalise(audio.denoise(y, rate))
        if vad:
            speech_intervals(y, rate, threshold=0.9, min_speech_s=0.5)

    # 16 kHz: YAMNet's chain (denoise + RMS); 48 kHz: BirdNET's, raw since the real-audio benchmark,
    # and the denoised one it replaced
    for rate, clean in ((16000, True), (48000, False), (48000, True)):
        steps = "decode → resample" + (" → denoise → RMS" if clean else " (raw)")
        for vad in (False, True):
            t, _ = timed(chain, rate, clean, vad)
            rows.append((f"preprocessing chain at {rate // 1000} kHz: {steps}"
                         + (" → VAD (training)" if vad else " (inference)"), ratio(t)))
    for name in backbones:
        try:
            bb = get_backbone(name, model_path=model_path(name))
        except Exception as err:  # a backbone without weights here is reported, not fatal
            rows.append((f"embed: {name} (unavailable: {type(err).__name__})", float("nan")))
            continue
        sig = audio.resample(x, sr, bb.spec.sample_rate_hz)
        frames = audio.frame(sig, window_samples=bb.spec.window_samples,
                             hop_samples=int(bb.spec.hop_s * bb.spec.sample_rate_hz))
        bb.embed(frames[:2])
        t, _ = timed(bb.embed, frames, repeat=2)
        rows.append((f"embed: {name} ({len(frames)} × {bb.spec.window_s:g}-s windows)", ratio(t)))
    from birdclef.models.head import HeadMeta, MLPHead, predict

    meta = HeadMeta(1024, tuple(str(i) for i in range(206)), (512, 256), 0.3, "ce", 1, "x")
    head = MLPHead(1024, 206).eval()
    feats = np.random.default_rng(0).standard_normal((60, 1, 1024)).astype(np.float32)
    t, _ = timed(predict, head, meta, feats, repeat=5)
    rows.append(("head inference (60 segments × 206 classes)", ratio(t)))
    return rows


E2E = textwrap.dedent("""
    import resource, sys, time, warnings
    warnings.simplefilter("ignore")
    from birdclef.config import resume_config
    from birdclef.submission.submit import run_submission
    data, work, model_dir = sys.argv[1:4]
    config = resume_config(model_dir + "/config.json", data_dir=data, work_dir=work)
    t0 = time.perf_counter()
    run_submission(config=config, model_dir=model_dir, out_path=work + "/submission.csv")
    wall = time.perf_counter() - t0
    peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    print("RESULT", wall, peak / 1024)
""")


def end_to_end(data: Path, work: Path, model_dir: Path) -> tuple[float, float]:
    out = subprocess.run([sys.executable, "-c", E2E, str(data), str(work), str(model_dir)],
                         capture_output=True, text=True, check=True)
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT")][-1]
    wall, peak = map(float, line.split()[1:])
    return wall, peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbones", default="melstats,birdnet,yamnet")
    ap.add_argument("--n-soundscapes", type=int, default=8)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results.md"))
    args = ap.parse_args()
    backbones = [b for b in args.backbones.split(",") if b]

    from birdclef.config import build_config
    from birdclef.data.demo import make_demo_dataset
    from birdclef.features.preprocess import run_preprocess
    from birdclef.models.train import run_training
    from birdclef.workdir import RunLayout

    tmp = Path(tempfile.mkdtemp(prefix="birdclef-bench-"))
    data = tmp / "data"
    make_demo_dataset(data, n_classes=12, recordings_per_class=4, n_train_soundscapes=1,
                      n_test_soundscapes=args.n_soundscapes, speech_fraction=0.25, seed=0)
    soundscape = sorted((data / "test_soundscapes").glob("*.ogg"))[0]
    rows = stage_rows(soundscape, backbones)
    audio_s = args.n_soundscapes * SOUNDSCAPE_S
    e2e = []
    for name in backbones:
        path = model_path(name)
        if name == "yamnet" and path is None:
            continue
        try:
            config = build_config(data_dir=str(data), work_dir=str(tmp / name), backbone=name, backbone_path=path,
                                  epochs=5)
            run_preprocess(config=config)
            run_training(config=config, progress=False)
        except Exception as err:
            print(f"skipping end-to-end for {name}: {err}")
            continue
        trained = RunLayout(tmp / name).model_dir
        cold, peak_cold = end_to_end(data, tmp / f"{name}-e2e", trained)
        warm, peak_warm = end_to_end(data, tmp / f"{name}-e2e", trained)
        e2e.append((name, ratio(cold, audio_s), ratio(warm, audio_s), cold / warm, max(peak_cold, peak_warm),
                    700 * SOUNDSCAPE_S / ratio(cold, audio_s) / 60))
    cores = os.cpu_count()
    lines = [
        "# Benchmark results", "",
        f"Machine: {platform.machine()}, {cores} cores, Python {platform.python_version()}; "
        f"{time.strftime('%Y-%m-%d')}. Generated by `python benchmarks/run.py`.", "",
        "## Stages, one core, one 60-s soundscape (× real time, higher is faster)", "",
        "| stage | × real time |", "|---|---:|",
        *[f"| {name} | {r:,.0f} |" for name, r in rows], "",
        f"## End-to-end submission stage ({args.n_soundscapes} × 60-s soundscapes, all {cores} cores)", "",
        "decode → resample → each backbone's own cleaning (BirdNET: none, raw audio; YAMNet and melstats: denoise + RMS) "
        "→ embed (BirdNET: its species logits in the same pass) → head → zero-shot blend → smoothing → validated CSV "
        "(no VAD: its mask is unused at inference); cold = empty cache, cached = rerun; peak RSS of the largest "
        "process (parent or worker).", "",
        "| backbone | cold × real time | cached × real time | cached speed-up | peak RSS (MiB) | 700 soundscapes, cold (min) |",
        "|---|---:|---:|---:|---:|---:|",
        *[f"| {n} | {c:,.0f} | {w:,.0f} | {s:,.1f}× | {p:,.0f} | {m:,.1f} |" for n, c, w, s, p, m in e2e], "",
    ]
    text = "\n".join(lines)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
