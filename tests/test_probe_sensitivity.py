"""The probe-sensitivity measurement: accuracies per C on a hand-built case, and its summary."""

import numpy as np
import pandas as pd
import pytest

from mgmvae.evaluation.probe_sensitivity import column_accuracies, summary


def test_column_accuracies_per_c():
    """Two well-separated classes: every C classifies the clean test set; only a weak C lets a
    shifted test set (the unimodal columns' situation) cross the boundary."""
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 200)
    z = np.c_[np.where(y == 1, 3.0, -3.0) + rng.normal(0, 0.5, 400), rng.normal(0, 1, 400)]
    tests = {"clean": (z, y), "flipped": (-z, y)}
    acc = column_accuracies((z, y), tests, c=1.0, seed=0)
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
