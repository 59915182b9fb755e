"""The estimator's quality beside each estimate of a table whose spec asks for it (``TableSpec.quality``).

It reads what ``mgmvae.evaluation.likelihood.evaluate_log_likelihood`` records in each run's metric
section (dotted keys of ``runs.load_run_metrics``): ``estimator.samples`` (K), ``estimator.pairs``,
``estimator.proposal_scale``, ``quality.normalised``, ``quality.ess_floor`` and, per estimate,
``quality.<key>.ess_mean``, ``.ess_under_floor`` and ``.reliable``. Over seeds: ESS and the fraction
under the floor are averaged; an estimate is unreliable when it is on any seed.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from mgmvae.tables.spec import DASH

UNRELIABLE = "†"


def _values(runs: pd.DataFrame, key: str) -> pd.Series:
    return runs.loc[runs["key"] == key, "value"]


def _joined(values: pd.Series, text=lambda v: f"{v:g}") -> str:
    return "/".join(text(v) for v in sorted(values.unique())) or DASH


def settings(runs: pd.DataFrame) -> tuple[dict[str, Any], dict[str, str]]:
    """One model's estimator settings: CSV fields and lead cells (K, pairs, normalised density)."""
    fields = {
        "samples": _joined(_values(runs, "estimator.samples")),
        "pairs": _joined(_values(runs, "estimator.pairs")),
        "proposal_scale": _joined(_values(runs, "estimator.proposal_scale")),
        "normalised": _joined(_values(runs, "quality.normalised"), lambda v: "yes" if v else "no"),
        "ess_floor": _joined(_values(runs, "quality.ess_floor")),
    }
    cells = {"K": fields["samples"], "Pairs": fields["pairs"], "Normalised": fields["normalised"]}
    return fields, cells


def estimate(runs: pd.DataFrame, key: str, label: str) -> tuple[dict[str, Any], dict[str, str], bool]:
    """One estimate's quality for one model: CSV fields, cells (ESS, < floor) and whether it is unreliable."""
    ess = _values(runs, f"quality.{key}.ess_mean").mean()
    under = _values(runs, f"quality.{key}.ess_under_floor").mean()
    reliable = _values(runs, f"quality.{key}.reliable")
    unreliable = bool(len(reliable)) and not reliable.all()
    fields = {f"{label} ess": ess, f"{label} under floor": under, f"{label} reliable": not unreliable}
    cells = {"ESS": DASH if math.isnan(ess) else f"{ess:.1f}", "< floor": DASH if math.isnan(under) else f"{under:.0%}"}
    return fields, cells, unreliable


def notes(frame: pd.DataFrame) -> list[str]:
    """What the quality columns mean, the floor and proposal, and a warning for non-normalised densities."""
    floor = _joined(_values(frame, "quality.ess_floor"))
    scale = _joined(_values(frame, "estimator.proposal_scale"))
    proposal = "the model's posteriors" if scale == "1" else f"the model's posteriors widened ×{scale}"
    out = [
        f"ESS: Kish's effective sample size (Σw)²/Σw² of a pair's K importance weights, mean over pairs and seeds; "
        f"< floor: the pairs with ESS under {floor}. {UNRELIABLE}: unreliable, over half the pairs under the floor "
        "(on some seed): the estimate still climbs with K (`python -m mgmvae.likelihood_sweep`). "
        f"Proposal: {proposal}. The estimator draws from them under every evaluation protocol: one table for all."
    ]
    if (_values(frame, "quality.normalised") == 0).any():
        out.append(
            "Normalised no: a Bernoulli likelihood on grey levels is not a density on [0, 1]; its numbers are not "
            "log-densities and do not compare with a normalised model's."
        )
    return out
