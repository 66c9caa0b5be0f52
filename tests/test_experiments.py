"""The quality benchmark's variants resolve to valid configs, and its tables read right."""
import numpy as np
import pandas as pd
import pytest

from birdclef.config import build_config
from birdclef_bench.experiments import VARIANTS, comparison_table, invalid_variants, main, rounds_table


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_variant_is_a_valid_config(name):
    params = {k: v for k, v in VARIANTS[name][1].items() if k != "ensemble_folds"}
    config = build_config(**{"recipe": "seed", **params})
    assert config.backbone == ("birdnet" if config.recipe == "default" else "yamnet")


def test_comparison_table_gives_mean_spread_and_paired_gain():
    results = pd.DataFrame({"variant": ["seed", "bce", "seed", "bce"], "seed": [0, 0, 1, 1],
                            "test_score": [0.90, 0.95, 0.92, 0.95], "val_auc": [0.8, 0.8, 0.8, 0.8],
                            "soundscape_score": [np.nan] * 4})
    table = comparison_table(results).splitlines()
    assert table[0].startswith("| variant |") and len(table) == 4
    assert "0.910 ± 0.014" in table[2] and "| – |" in table[2]
    assert "+0.040 ± 0.014 | 2/2 |" in table[3]


def test_comparison_table_pairs_with_default_without_a_seed_row():
    results = pd.DataFrame({"variant": ["default", "genus-0.1"] * 3, "seed": [0, 0, 1, 1, 2, 2],
                            "test_score": [0.90, 0.91, 0.92, 0.91, 0.93, 0.95], "val_auc": [0.8] * 6,
                            "soundscape_score": [np.nan] * 6})
    table = comparison_table(results).splitlines()
    assert "gain over default" in table[0]
    assert "+0.007 ± 0.015 | 2/3 |" in table[3]


def test_rounds_table_counts_kept_seeds():
    rounds = pd.DataFrame({"variant": ["p"] * 4, "seed": [0, 0, 1, 1], "round": [0, 1, 0, 1], "n_windows": [0, 40, 0, 42],
                           "precision": [np.nan, 0.2, np.nan, 0.3], "guard": [0.9, 0.91, 0.9, 0.89],
                           "test_score": [0.93, 0.94, 0.93, 0.92], "kept": [True, True, True, False]})
    lines = rounds_table(rounds).splitlines()
    assert "| `p` | 1 | 41 | 0.25 ± 0.07 |" in lines[3] and lines[3].endswith("1/2 seeds |")


def test_unknown_variants_are_refused():
    with pytest.raises(SystemExit, match="unknown variant"):
        main(["--variants", "seed,magic", "--out", "unused"])


def test_variants_a_backbone_cannot_run_are_refused_before_any_work(tmp_path):
    # BirdNET's frames are 2.5 s apart: 1-s test-time shifts cannot be taken
    base = dict(recipe="seed", backbone="birdnet", backbone_path=None, epochs=2, n_workers=1)
    invalid = invalid_variants(["seed", "tta", "improved+tta", "improved"], base)
    assert set(invalid) == {"tta", "improved+tta"} and "hop_s=2.5" in invalid["tta"]
    with pytest.raises(SystemExit, match="not valid for this backbone"):
        main(["--variants", "seed,tta", "--backbone", "birdnet", "--out", str(tmp_path / "q")])
    assert not (tmp_path / "q").exists()


def test_every_variant_by_default_leaves_out_those_the_backbone_cannot_run(tmp_path, monkeypatch, capsys):
    import birdclef_bench.experiments as experiments

    class Stop(Exception):
        pass

    def stop(out, *, base, dataset):
        raise Stop

    monkeypatch.setattr(experiments, "Benchmark", stop)
    with pytest.raises(Stop):  # no SystemExit: BirdNET's run goes on without the 1-s shifts
        main(["--backbone", "birdnet", "--out", str(tmp_path / "q")])
    assert "left out" in capsys.readouterr().out


def test_realdev_flags_reach_the_run_and_regimes_are_refused_elsewhere(tmp_path, monkeypatch):
    import birdclef_bench.realbench as realbench

    seen = {}

    def fake_run_real(out, source, **kw):
        seen.update(kw)
        return "ok"

    monkeypatch.setattr(realbench, "run_real", fake_run_real)
    (tmp_path / "taxonomy.csv").write_text("primary_label\n")
    main(["--dataset", "realdev", "--realdev", str(tmp_path), "--out", str(tmp_path / "o"), "--variants",
          "default,pre-smooth", "--construction", "sparse-session", "density-session", "--n-soundscapes", "40",
          "--val-soundscapes", "10", "--regimes", "1", "4", "0"])
    assert seen["regimes"] == [1, 4, 0] and seen["params"] == {"val_soundscapes": 10}
    assert [(t.construction, t.n_soundscapes) for t in seen["settings"]] == [("sparse", 40), ("density", 40)]
    with pytest.raises(SystemExit, match="--regimes is for --dataset realdev"):
        main(["--regimes", "1", "--out", str(tmp_path / "q")])


def test_realdev_runs_take_the_settings_given_with_param_and_refuse_a_malformed_one():
    import argparse

    from birdclef_bench.experiments import real_params

    args = argparse.Namespace(val_soundscapes=10, param=["val_density=real", " epochs = 3"])
    assert real_params(args) == {"val_soundscapes": 10, "val_density": "real", "epochs": "3"}
    assert real_params(argparse.Namespace(val_soundscapes=None, param=[])) == {}
    for bad in ("val_density", "=real"):
        with pytest.raises(SystemExit, match="expected KEY=VALUE"):
            real_params(argparse.Namespace(val_soundscapes=None, param=[bad]))
