"""Per-run metrics files into one long frame: one row per (run, metric, key).

Each run writes one JSON file per evaluation protocol::

    {"study": s, "dataset": d, "model": m, "seed": k, "modalities": [m0, m1], "protocol": p,
     "protocol_setting": ps, "metrics": <evaluate_model output>}

``protocol`` is the protocol the run was evaluated under (``mean`` or ``sample``), ``protocol_setting``
the study's setting it came from (``mean``, ``sample`` or ``reference``: each model its own); both
None in a file that does not record them. An ablation run adds ``"variant": v`` (the column
``variant``; None for the other runs). Nested numbers get dotted keys (``quality.joint.ess_mean``);
booleans count as 1 and 0.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

COLUMNS = [
    "study",
    "dataset",
    "model",
    "variant",
    "seed",
    "protocol",
    "protocol_setting",
    "m0",
    "m1",
    "metric",
    "key",
    "value",
    "method",
    "k",
]


def _numbers(values: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, float]]:
    """(dotted key, number) for every number in a metric's section, nested sections included."""
    for key, value in values.items():
        if isinstance(value, Mapping):
            yield from _numbers(value, f"{prefix}{key}.")
        elif isinstance(value, (int, float)) and f"{prefix}{key}" != "k":  # clustering's k: a column
            yield f"{prefix}{key}", float(value)


def _run_rows(run: dict[str, Any]) -> list[dict[str, Any]]:
    m0, m1 = run["modalities"][:2]  # Tables 1–3 read the first two of M ≥ 2
    base = {k: run[k] for k in ("study", "dataset", "model")} | {"variant": run.get("variant")}
    protocol = run.get("protocol")
    base |= {"seed": int(run["seed"]), "protocol": protocol, "protocol_setting": run.get("protocol_setting", protocol)}
    base |= {"m0": m0, "m1": m1}
    rows = []
    for metric, values in run["metrics"].items():
        extra = {"method": values.get("method"), "k": values.get("k")} if metric == "clustering" else {}
        rows += [base | extra | {"metric": metric, "key": key, "value": value} for key, value in _numbers(values)]
    return rows


def load_run_metrics(paths: Iterable[str | Path]) -> pd.DataFrame:
    """Long table, one row per (run, metric, key): columns ``COLUMNS``; values are fractions."""
    rows = []
    for path in paths:
        try:
            rows += _run_rows(json.loads(Path(path).read_text()))
        except (KeyError, ValueError, TypeError) as error:
            raise ValueError(f"{path}: not a per-run metrics file ({error!r})") from error
    return pd.DataFrame(rows, columns=COLUMNS)
