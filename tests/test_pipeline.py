"""The stage functions end to end on the tiny demo (melstats backbone: no weights needed)."""
import numpy as np
import pandas as pd
import pytest

from birdclef.config import build_config
from birdclef.data.competition import competition_paths, list_audio, load_taxonomy
from birdclef.errors import CacheMismatchError, ParameterError
from birdclef.features.embeddings import EmbeddingCache, extract
from birdclef.features.preprocess import run_preprocess
from birdclef.models.train import run_training
from birdclef.submission.submit import run_submission


@pytest.fixture(scope="module")
def trained(tiny_demo, tmp_path_factory):
    work = tmp_path_factory.mktemp("run")
    # the seed's CE, no smoothing: on log-mel statistics (they shift with loudness) and 4-window soundscapes
    # these learn the tiny demo best
    # (2 mixed validation minutes, not 30: they have their own tests in test_valsoundscapes.py, and mixing and
    # embedding 30 was most of this fixture's time)
    config = build_config(data_dir=str(tiny_demo), work_dir=str(work), backbone="melstats", epochs=15, loss="ce",
                          smoothing_kernel=(1.0,), val_soundscapes=2)
    pre = run_preprocess(config=config)
    result = run_training(config=config, progress=False)
    return config, pre, result


@pytest.mark.slow
def test_preprocess_embeds_every_recording_and_finds_speech(trained, tiny_demo):
    config, pre, _ = trained
    n = len(pd.read_csv(tiny_demo / "train.csv"))
    assert len(pre.manifest) == n and len(pre.skipped) == 0
    spoken = {f.removeprefix("train_audio/") for f in pd.read_csv(tiny_demo / "speech.csv")["filename"]}
    with_speech = pre.manifest[pre.manifest["filename"].isin(spoken)]
    assert len(with_speech) and (with_speech["speech_frames"] > 0).mean() >= 0.5
    assert (pre.manifest[~pre.manifest["filename"].isin(spoken)]["speech_frames"] == 0).mean() >= 0.8


@pytest.mark.slow
def test_training_learns_and_saves_artefacts(trained):
    config, _, result = trained
    assert result.metrics["val_auc"] > 0.7
    for name in ("head.pt", "config.json", "metrics.json", "history.csv", "per_class_auc.csv"):
        assert (result.out_dir / name).exists()
    assert len(result.history) == config.epochs


@pytest.mark.slow
def test_submission_is_complete_valid_and_scored(trained, tiny_demo):
    config, _, _ = trained
    result = run_submission(config=config)
    labels = load_taxonomy(tiny_demo / "taxonomy.csv")["primary_label"].tolist()
    sub = pd.read_csv(result.path, dtype={"row_id": str})
    assert list(sub.columns) == ["row_id", *labels]
    stems = [p.stem for p in list_audio(competition_paths(tiny_demo).test_soundscapes)]
    assert sub["row_id"].tolist() == [f"{s}_{e}" for s in stems for e in (5, 10, 15, 20)]
    values = sub[labels].to_numpy()
    assert np.isfinite(values).all() and values.min() >= 0 and values.max() <= 1
    assert result.score is not None and result.score > 0.5


@pytest.mark.slow
def test_rerun_reuses_the_cache(trained, tiny_demo):
    config, _, _ = trained
    files = list_audio(competition_paths(tiny_demo).test_soundscapes)
    _, report = extract(files, config=config, need_speech=False)  # as the submission stage asks
    assert set(report["status"]) == {"cached"}


@pytest.mark.slow
def test_cache_built_under_another_config_is_refused(trained):
    config, _, _ = trained
    cache = EmbeddingCache(config.work_dir, config)
    settings = cache.root / "config.json"
    settings.write_text(settings.read_text().replace('"denoise": true', '"denoise": false'))
    with pytest.raises(CacheMismatchError, match="built under"):
        EmbeddingCache(config.work_dir, config)


@pytest.mark.slow
def test_parallel_extraction_matches_serial(tiny_demo, tmp_path):
    files = sorted((tiny_demo / "train_audio").rglob("*.ogg"))[:8]
    serial, _ = extract(files, config=build_config(work_dir=str(tmp_path / "a"), backbone="melstats", n_workers=1),
                        progress=False)
    parallel, report = extract(files, config=build_config(work_dir=str(tmp_path / "b"), backbone="melstats",
                                                          n_workers=2), progress=False)
    assert list(report["path"]) == [str(f) for f in files] and set(report["status"]) == {"computed"}
    for f in files:
        np.testing.assert_allclose(parallel[str(f)].embeddings, serial[str(f)].embeddings, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(parallel[str(f)].speech, serial[str(f)].speech)


def test_inference_skips_vad_and_training_asks_for_it(tiny_demo, tmp_path):
    f = sorted((tiny_demo / "train_audio").rglob("*.ogg"))[:1]
    config = build_config(work_dir=str(tmp_path), backbone="melstats", n_workers=1)
    quick, _ = extract(f, config=config, need_speech=False, progress=False)
    assert np.isnan(quick[str(f[0])].speech).all()
    cache = EmbeddingCache(config.work_dir, config)
    assert cache.load(f[0]) is not None and cache.load(f[0], need_speech=True) is None
    full, report = extract(f, config=config, progress=False)  # training needs the mask: recomputed
    assert report["status"].tolist() == ["computed"] and full[str(f[0])].has_speech_mask
    np.testing.assert_allclose(full[str(f[0])].embeddings, quick[str(f[0])].embeddings)


# ---------------------------------------------------------------- the notebooks route (birdclef.pipeline)

def _notebook(path, parameters, body):
    import nbformat

    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    nb.cells = [nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]}), nbformat.v4.new_code_cell(body)]
    nbformat.write(nb, str(path))


def test_each_notebook_gets_the_typed_parameters_it_declares(tmp_path):
    import json

    from birdclef.pipeline import NotebookError, notebook_parameters, run_notebooks

    src = tmp_path / "nb"
    src.mkdir()
    dump = "import json, pathlib\npathlib.Path(work_dir, '{}.json').write_text(json.dumps({}))"
    _notebook(src / "a.ipynb", "data_dir = None\nwork_dir = None\ndenoise = None  # a: comment\nsmoothing_kernel = None\n"
              "examples_per_class = 1",
              dump.format("a", "dict(denoise=denoise, kernel=smoothing_kernel, n=examples_per_class, "
                               "epochs='epochs' in globals())"))
    _notebook(src / "b.ipynb", "data_dir = None\nwork_dir = None\nepochs: int = 1",
              dump.format("b", "dict(epochs=epochs, denoise='denoise' in globals())"))
    _notebook(src / "c.ipynb", "data_dir = None\nwork_dir = None", "raise ValueError('no taxonomy.csv')")
    assert notebook_parameters(src / "b.ipynb") == ("data_dir", "work_dir", "epochs")
    work = tmp_path / "run"
    run_notebooks(data_dir=tmp_path, work_dir=work, notebooks=("a", "b"), source_dir=src,
                  parameters={"denoise": "no", "smoothing_kernel": "0.25,0.5,0.25", "epochs": "3", "examples_per_class": 2})
    assert json.loads((work / "a.json").read_text()) == {"denoise": False, "kernel": [0.25, 0.5, 0.25], "n": 2,
                                                        "epochs": False}
    assert json.loads((work / "b.json").read_text()) == {"epochs": 3, "denoise": False}
    with pytest.raises(NotebookError, match=r"^c failed in cell \[3\]: ValueError: no taxonomy.csv \(the executed notebook: .*c.ipynb\)$"):
        run_notebooks(data_dir=tmp_path, work_dir=work, notebooks=("c",), source_dir=src)
    with pytest.raises(ParameterError, match=r"unknown parameter\(s\) \['dropout'\] for notebook\(s\) a, b \(dropout: Config"):
        run_notebooks(data_dir=tmp_path, work_dir=work, notebooks=("a", "b"), source_dir=src, parameters={"dropout": 0.1})


def test_absolute_paths_resolves_path_parameters_from_the_callers_folder(tmp_path):
    from birdclef.pipeline import absolute_paths

    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "yamnet.tflite").write_bytes(b"")
    given = {"data_dir": "data", "work_dir": "../runs/x", "backbone_path": "models/yamnet.tflite",
             "ensemble_model_dirs": ["a/model", str(tmp_path / "b")], "runs_table": None, "model_dir": "m",
             "output_path": "out/sub.csv", "test_dir": "", "epochs": 3, "run_name": "data"}
    assert absolute_paths(given, cwd=tmp_path) == {
        **given, "data_dir": str(tmp_path / "data"), "work_dir": str(tmp_path.parent / "runs" / "x"),
        "backbone_path": str(tmp_path / "models" / "yamnet.tflite"),
        "ensemble_model_dirs": [str(tmp_path / "a" / "model"), str(tmp_path / "b")], "model_dir": str(tmp_path / "m"),
        "output_path": str(tmp_path / "out" / "sub.csv")}
    # a TF-Hub handle is no file here: left as it is
    assert absolute_paths({"backbone_path": "google/yamnet/1"}, cwd=tmp_path) == {"backbone_path": "google/yamnet/1"}


def test_notebooks_take_relative_paths_from_the_callers_folder(tmp_path, monkeypatch):
    import json

    from birdclef.pipeline import run_notebooks

    src = tmp_path / "nb"
    src.mkdir()
    _notebook(src / "a.ipynb", "data_dir = None\nwork_dir = None\nensemble_model_dirs = None\nbackbone = None",
              "import json, os, pathlib\npathlib.Path(work_dir, 'a.json').write_text(json.dumps(dict(data_dir=data_dir, "
              "work_dir=work_dir, ensemble=ensemble_model_dirs, cwd=os.getcwd())))")
    here = tmp_path / "caller"
    here.mkdir()
    monkeypatch.chdir(here)
    run_notebooks(data_dir="data", work_dir="runs/real", notebooks=("a",), source_dir=src,
                  parameters={"ensemble_model_dirs": "runs/b/model", "backbone": "melstats"})
    seen = json.loads((here / "runs" / "real" / "a.json").read_text())
    assert seen == {"data_dir": str(here / "data"), "work_dir": str(here / "runs" / "real"),
                    "ensemble": [str(here / "runs" / "b" / "model")], "cwd": str(src)}
    assert (here / "runs" / "real" / "notebooks" / "a.ipynb").is_file()  # the executed notebook beside its artefacts


def test_progress_bars_are_text_in_headless_runs_and_widgets_otherwise(monkeypatch, capsys):
    import tqdm.auto
    import tqdm.std

    from birdclef.progress import ENV
    from birdclef.progress import tqdm as bar

    monkeypatch.delenv(ENV, raising=False)
    assert type(bar(range(1), disable=True)) is tqdm.auto.tqdm
    monkeypatch.setenv(ENV, "text")
    b = bar(range(3), desc="files")
    assert type(b) is tqdm.std.tqdm
    list(b)
    assert "files: 100%" in capsys.readouterr().err
