"""Per-run metrics files into one long frame: one row per (run, metric, key).

Each run writes one JSON file::

    {"study": s, "dataset": d, "model": m, "seed": k, "modalities": [m0, m1], "metrics": <evaluate_model output>}

and an ablation run adds ``"variant": v`` (the column ``variant``; None for the other runs).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

COLUMNS = ["study", "dataset", "model", "variant", "seed", "m0", "m1", "metric", "key", "value", "method", "k"]


def _run_rows(run: dict[str, Any]) -> list[dict[str, Any]]:
    m0, m1 = run["modalities"][:2]  # Tables 1–3 read the first two of M ≥ 2
    base = {k: run[k] for k in ("study", "dataset", "model")} | {"variant": run.get("variant")}
    base |= {"seed": int(run["seed"]), "m0": m0, "m1": m1}
    rows = []
    for metric, values in run["metrics"].items():
        extra = {"method": values.get("method"), "k": values.get("k")} if metric == "clustering" else {}
        for key, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "k":
                rows.append(base | extra | {"metric": metric, "key": key, "value": float(value)})
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
