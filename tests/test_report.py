"""The tables the notebooks show instead of raw dumps: validation scores, skip lists, the config's changes."""
import pandas as pd
import pytest

from birdclef.config import build_config, config_diff
from birdclef.report.tables import show, validation_scores


def test_validation_scores_side_by_side():
    metrics = {"val_auc": 0.8, "val_focal_auc": 0.82, "val_soundscape_auc": 0.77, "val_combined_auc": 0.8,
               "best_epoch": 12}
    table = validation_scores(metrics)
    assert table["macro ROC-AUC"].tolist() == [0.82, 0.77, 0.8]
    assert [i.split(" ")[0] for i in table.index] == ["focal", "labelled", "combined"]
    # a run that keeps the combined score as val_auc
    older = validation_scores({"val_auc": 0.79, "val_focal_auc": 0.82, "val_soundscape_auc": 0.77})
    assert older["macro ROC-AUC"].tolist() == [0.82, 0.77, 0.79]
    whole = validation_scores({**metrics, "val_soundscape_files_auc_head": 0.7,
                               "val_soundscape_files_auc_finished": 0.72, "context_val_auc_before": 0.71,
                               "context_val_auc_after": 0.73})
    assert whole["macro ROC-AUC"].tolist() == [0.82, 0.77, 0.8, 0.7, 0.72, 0.71, 0.73]
    assert "whole files" in whole.index[3] and "after" in whole.index[-1]
    # no labelled soundscapes: no combined score to show
    assert validation_scores({"val_auc": 0.9}).empty


def test_show_prints_one_line_for_an_empty_table(capsys):
    show(pd.DataFrame(columns=["filename", "reason"]), empty="no file skipped")
    assert capsys.readouterr().out == "no file skipped\n"


def test_config_diff_lists_only_what_differs_from_the_defaults():
    config = build_config(work_dir="/tmp/run", backbone="melstats", dropout=0.5, hidden_sizes="64,32")
    table = config_diff(config)
    assert {"work_dir", "backbone", "dropout", "hidden_sizes"} <= set(table.index)
    assert "epochs" not in table.index and "learning_rate" not in table.index
    assert table.loc["dropout", "value"] == 0.5 and table.loc["dropout", "default"] == pytest.approx(0.3)
    assert table.loc["hidden_sizes", "value"] == (64, 32) and table.loc["dropout", "stage"] == "training"
    assert table.loc["dropout", "section"] == "head" and table.loc["backbone", "section"] == "embedding"
    assert len(table) < 20  # a few rows, not the 50-field dump
