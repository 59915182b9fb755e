"""The probe-sensitivity measurement: accuracies per C on a hand-built case, its summary, and the
study's probe settings it reads."""

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from mgmvae import paths
from mgmvae.evaluation.probe_sensitivity import column_accuracies, study_sensitivity, summary
from mgmvae.model_file import save_trained
from mgmvae.registry import build_model, resolve
from tests.conftest import TOY_SETTINGS, synthetic_paired


def test_column_accuracies_per_c():
    """Two well-separated classes: every C classifies the clean test set; only a weak C lets a
    shifted test set (the unimodal columns' situation) cross the boundary."""
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 200)
    z = np.c_[np.where(y == 1, 3.0, -3.0) + rng.normal(0, 0.5, 400), rng.normal(0, 1, 400)]
    z, y = torch.from_numpy(z), torch.from_numpy(y)
    acc = column_accuracies((z, y), {"clean": (z, y), "flipped": (-z, y)}, c=1.0, seed=0)
    assert acc == {"clean": 1.0, "flipped": 0.0}


def test_summary_range_and_cv_pick():
    frame = pd.DataFrame(
        [
            {"model": "m", "column": "a", "C": c, "accuracy": acc, "cv_pick": c == 1.0}
            for c, acc in ((0.01, 40.0), (1.0, 70.0), (100.0, 75.0))
        ]
    )
    row = summary(frame).iloc[0]
    assert (row["low"], row["high"], row["range"]) == (40.0, 75.0, 35.0)
    assert row["cv_pick"] == 70.0 and row["C_picked"] == pytest.approx(1.0)


def test_the_grid_and_the_folds_are_the_studys_unless_given(tmp_path):
    """40 training pairs hold 4 of each class: the study's 7 folds are refused, 4 given folds fit."""
    where = paths.study_at(tmp_path / "s")
    data = synthetic_paired(n_train=40, n_test=20)
    data.save(paths.data_file(where, "toy"))
    torch.manual_seed(0)
    model = build_model("mvae", data.shapes, TOY_SETTINGS)
    run = dict(dataset="toy", seed=0, variant=None, settings=TOY_SETTINGS, config_hash="toy", history=[])
    save_trained(paths.model_file(paths.run_dir(where, "toy", "mvae", 0)), model, resolve("mvae"), **run)
    evaluation = {"probe_c_grid": [0.1, 10.0], "probe_folds": 7}
    paths.study_config(where).write_text(yaml.safe_dump({"evaluation": evaluation}))
    study = paths.study_dir(where)
    with pytest.raises(ValueError, match="7-fold"):
        study_sensitivity(study, "toy", 0, None, None)
    frame = study_sensitivity(study, "toy", 0, None, 4)
    assert sorted(set(frame["C"])) == [0.1, 10.0] and set(frame["column"]) == {"a", "b", "joint"}
    assert frame["cv_pick"].sum() == 3 and set(frame["model"]) == {"mvae"}  # one C picked, for each column
    assert sorted(set(study_sensitivity(study, "toy", 0, [1.0], 4)["C"])) == [1.0]
