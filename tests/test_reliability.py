"""Bad input never crashes a run, never loses a row, and every skip is reported."""
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import badinput
import numpy as np
import pandas as pd
import pytest

from birdclef.config import build_config
from birdclef.data.competition import TRAIN_COLUMNS, competition_paths, load_taxonomy, load_train_metadata
from birdclef.errors import BirdclefError, SchemaError
from birdclef.features.preprocess import run_preprocess
from birdclef.models.train import run_training
from birdclef.report.eda import recording_table
from birdclef.submission.submit import run_submission


@pytest.fixture(scope="module")
def bad_root(tiny_demo, tmp_path_factory):
    root = tmp_path_factory.mktemp("bad") / "data"
    shutil.copytree(tiny_demo, root)
    kinds = badinput.build_train_corpus(root)
    test_kinds = badinput.build_test_corpus(root)
    return root, kinds, test_kinds


@pytest.fixture(scope="module")
def bad_run(bad_root, tmp_path_factory):
    root, kinds, test_kinds = bad_root
    # 2 mixed validation minutes, not 30: the bad recordings are what this run is about
    config = build_config(data_dir=str(root), work_dir=str(tmp_path_factory.mktemp("badrun")), backbone="melstats",
                          epochs=4, val_soundscapes=2)
    pre = run_preprocess(config=config)
    run_training(config=config, progress=False)
    return config, pre


def test_corpus_covers_the_required_kinds(bad_root):
    _, kinds, test_kinds = bad_root
    assert len(kinds) + len(test_kinds) + 3 >= 20  # + schema, 3-hour and unreadable-strict kinds below


@pytest.mark.slow
def test_training_skips_unusable_recordings_with_reasons_and_uses_odd_ones(bad_run, bad_root, capsys):
    config, pre = bad_run
    _, kinds, _ = bad_root
    skipped = pd.read_csv(Path(config.work_dir) / "preprocess" / "skipped.csv")
    assert set(skipped.columns) == {"filename", "reason"} and skipped["reason"].str.len().gt(0).all()
    used = set(pre.manifest["filename"])
    for kind, (name, expect) in kinds.items():
        if expect == "skip":
            assert name in set(skipped["filename"]), kind
            assert name not in used, kind
        elif expect == "use":
            assert name in used, kind
        else:  # the duplicate: one row used, the repeat skipped
            assert name in used and (skipped["filename"] == name).sum() == 1, kind


@pytest.mark.slow
def test_every_train_row_is_used_or_reported(bad_run, bad_root):
    config, pre = bad_run
    root, _, _ = bad_root
    rows = len(pd.read_csv(root / "train.csv"))
    skipped = pd.read_csv(Path(config.work_dir) / "preprocess" / "skipped.csv")
    assert len(pre.manifest) + len(skipped) == rows


def test_eda_skips_the_same_files(bad_root):
    root, kinds, _ = bad_root
    recordings, skipped = recording_table(competition_paths(root))
    for kind, (name, expect) in kinds.items():
        if expect == "skip":
            assert name in set(skipped["filename"]) and name not in set(recordings["filename"]), kind


@pytest.mark.slow
def test_submission_never_drops_a_window(bad_run, bad_root):
    config, _ = bad_run
    root, _, test_kinds = bad_root
    with pytest.warns(UserWarning, match="unreadable"):
        result = run_submission(config=config)
    counts = result.submission["row_id"].str.rsplit("_", n=1).str[0].value_counts()
    for kind, (stem, rows) in test_kinds.items():
        assert counts[stem] == rows, kind
    assert len(result.submission) == sum(r for _, r in test_kinds.values())
    assert set(result.fallbacks["path"].map(lambda p: Path(p).stem)) == {"H04_zero", "H05_text"}
    labels = load_taxonomy(root / "taxonomy.csv")["primary_label"].tolist()
    prior_rows = result.submission[result.submission["row_id"].str.startswith("H04_zero")][labels].to_numpy()
    assert np.allclose(prior_rows.sum(1), 1.0)  # the training prior, a distribution over classes


@pytest.mark.slow
def test_strict_submission_raises_on_unreadable_soundscape(bad_run):
    config, _ = bad_run
    with pytest.raises(BirdclefError, match="strict"):
        run_submission(config=build_config(**{**config.to_dict(), "strict": True}))


@pytest.mark.parametrize("column", ["primary_label", "filename", "secondary_labels"])
def test_renamed_train_column_is_one_clear_error(tmp_path, column):
    tax = load_taxonomy(Path(__file__).parent / "fixtures" / "taxonomy_2025.csv")
    pd.DataFrame(columns=[c if c != column else column.upper() for c in TRAIN_COLUMNS]).to_csv(
        tmp_path / "train.csv", index=False)
    with pytest.raises(SchemaError, match=rf"train\.csv.*{column}.*Fix"):
        load_train_metadata(tmp_path / "train.csv", tax)


def test_taxonomy_without_labels_is_a_clear_error(tmp_path):
    (tmp_path / "taxonomy.csv").write_text("label,name\na,b\n")
    with pytest.raises(SchemaError, match=r"taxonomy\.csv.*primary_label"):
        load_taxonomy(tmp_path / "taxonomy.csv")


RUNNER = textwrap.dedent("""
    import sys
    from birdclef.config import build_config
    from birdclef.{module} import {func}
    config = build_config(data_dir=sys.argv[1], work_dir=sys.argv[2], backbone="melstats", epochs=int(sys.argv[3]),
                          val_soundscapes=int(sys.argv[4]))
    {func}(config=config)
""")


def _start(module, func, root, work, epochs=3, val_soundscapes=30):
    code = RUNNER.format(module=module, func=func)
    return subprocess.Popen([sys.executable, "-c", code, str(root), str(work), str(epochs), str(val_soundscapes)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of ``pid`` and its living descendants (pool workers included)."""
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))
    tree, todo = set(), [pid]
    while todo:
        p = todo.pop()
        tree.add(p)
        todo += [c for c, (parent, _) in stats.items() if parent == p and c not in tree]
    return sum(stats[p][1] for p in tree if p in stats)


def _kill_when(proc, ready, cpu_s=120, wall_s=1800):
    """SIGKILL ``proc`` once ``ready()`` (a file it writes) holds. It fails when the process dies first, or has
    spent ``cpu_s`` CPU seconds without getting there: on a loaded machine it gets less of a core, not more work,
    so its CPU time, not the clock, says it is stuck (``wall_s`` only catches one that hangs without computing)."""
    t0 = checked = time.time()
    while not ready():
        assert proc.poll() is None, proc.stdout.read()
        if time.time() - checked > 1.0:  # reading /proc is not free: once a second
            spent, checked = _tree_cpu_s(proc.pid), time.time()
            assert spent < cpu_s, f"not ready after {spent:.0f} CPU seconds"
            assert checked - t0 < wall_s, f"not ready after {wall_s} s with {spent:.0f} CPU seconds"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


def _pool_workers() -> set[int]:
    out = subprocess.run(["pgrep", "-f", "multiprocessing.spawn"], capture_output=True, text=True).stdout
    return {int(p) for p in out.split()}


@pytest.mark.slow
def test_kill_during_extraction_then_rerun_resumes(tiny_demo, tmp_path):
    work = tmp_path / "run"
    workers_before = _pool_workers()
    proc = _start("features.preprocess", "run_preprocess", tiny_demo, work)
    entries = lambda: list((work / "embeddings").glob("*/model-*/*.npz")) if (work / "embeddings").exists() else []  # noqa
    _kill_when(proc, lambda: len([e for e in entries() if not e.name.startswith(".")]) >= 3)
    done_before = {e.name for e in entries() if not e.name.startswith(".")}
    time.sleep(2.5)  # the pool's workers notice the parent is gone and exit
    orphans = [p for p in _pool_workers() - workers_before if _parent(p) == 1]
    assert not orphans, f"worker processes {orphans} outlived their killed parent"
    config = build_config(data_dir=str(tiny_demo), work_dir=str(work), backbone="melstats")
    pre = run_preprocess(config=config)
    n = len(pd.read_csv(tiny_demo / "train.csv"))
    assert len(pre.manifest) == n and len(pre.skipped) == 0
    assert (pre.manifest["status"] == "cached").sum() >= len(done_before) >= 3
    assert (pre.manifest["status"] == "computed").sum() >= 1


@pytest.mark.slow
def test_kill_during_training_then_rerun_resumes(tiny_demo, embedded_demo, tmp_path):
    from birdclef.workdir import RunLayout

    work = tmp_path / "run"
    # the session's preprocessed tiny demo (training reads it, it is no part of what is killed) and 2 validation
    # minutes, not 30: mixing them before the first epoch was most of the time before the kill. 80 epochs, not
    # 400: the kill comes within a 50-ms poll of the first checkpoint (an epoch takes longer than that), and
    # the rerun's remaining epochs (0.5 s each on a loaded machine) were most of the rest
    epochs = 80
    RunLayout(work).link_caches(RunLayout(embedded_demo))
    config = build_config(data_dir=str(tiny_demo), work_dir=str(work), backbone="melstats", epochs=epochs,
                          val_soundscapes=2)
    ckpt = work / "model" / "checkpoint.pt"
    proc = _start("models.train", "run_training", tiny_demo, work, epochs=epochs, val_soundscapes=2)
    _kill_when(proc, ckpt.exists)
    import torch

    finished = len(torch.load(ckpt, weights_only=True)["history"])
    assert 1 <= finished < epochs
    result = run_training(config=config, progress=False)
    assert len(result.history) == epochs
    assert list(result.history["epoch"]) == list(range(1, epochs + 1))


@pytest.mark.slow
def test_three_hour_recording_is_streamed_in_bounded_memory(tmp_path):
    long = badinput.write_long_file(tmp_path / "three_hours.wav")
    code = textwrap.dedent(f"""
        from pathlib import Path
        from birdclef.config import build_config
        from birdclef.features.embeddings import extract
        config = build_config(work_dir={str(tmp_path / 'run')!r}, backbone="melstats", denoise=False, vad=False)
        out, report = extract([{str(long)!r}], config=config, progress=False)
        e = next(iter(out.values()))
        # VmHWM: this process's own peak (ru_maxrss would carry the forking pytest's over exec)
        hwm = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmHWM"))
        print(len(e.starts_s), round(e.duration_s), int(hwm.split()[1]) // 1024)
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    frames, duration, peak_mb = map(int, res.stdout.split()[-3:])
    assert duration == 3 * 3600 and frames == 3 * 3600
    # the whole file at 32 kHz would be 1.4 GB of float32 on top of the ~0.6 GB interpreter
    assert peak_mb < 1200, f"peak RSS {peak_mb} MB"
