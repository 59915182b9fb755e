"""Seed statistics of one cell: mean, sample std, 95% Student-t interval; the paired test; best/second marks."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats


def isnan(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def ci95_halfwidth(values: Iterable[float]) -> float:
    """Half-width of the 95% Student-t interval of the mean: t_{0.975, n-1} · s / √n; NaN for n < 2."""
    v = [float(x) for x in values]
    n = len(v)
    if n < 2:
        return math.nan
    return float(stats.t.ppf(0.975, n - 1) * pd.Series(v).std(ddof=1) / math.sqrt(n))


def t_interval(values: Iterable[float]) -> tuple[float, float]:
    """(low, high) of the 95% t-interval: seaborn's ``errorbar`` for the bar charts."""
    v = np.asarray(list(values), dtype=float)
    half = ci95_halfwidth(v)
    return float(v.mean() - half), float(v.mean() + half)


def seed_stats(values: Iterable[float]) -> dict[str, float]:
    """{"mean", "std" (ddof=1), "n", "ci95" (half-width), "low", "high"} of per-seed values."""
    v = [float(x) for x in values]
    n = len(v)
    mean = sum(v) / n if n else math.nan
    std = float(pd.Series(v).std(ddof=1)) if n >= 2 else math.nan
    half = ci95_halfwidth(v)
    return {"mean": mean, "std": std, "n": n, "ci95": half, "low": mean - half, "high": mean + half}


def paired_test(ours: Mapping[int, float], theirs: Mapping[int, float]) -> dict[str, Any] | None:
    """Paired t-test (scipy.stats.ttest_rel) over the seeds both mappings have.

    Returns {"t", "p", "n", "seeds"}, or None with fewer than two common seeds. ``p`` is NaN when
    the differences are all zero (the test is undefined).
    """
    seeds = sorted(set(ours) & set(theirs))
    if len(seeds) < 2:
        return None
    a = [float(ours[s]) for s in seeds]
    b = [float(theirs[s]) for s in seeds]
    if a == b:
        return {"t": math.nan, "p": math.nan, "n": len(seeds), "seeds": seeds}
    result = stats.ttest_rel(a, b)
    return {"t": float(result.statistic), "p": float(result.pvalue), "n": len(seeds), "seeds": seeds}


def rank_marks(means: Mapping[str, float], decimals: int = 2) -> dict[str, str]:
    """{model: "best" | "second"} by mean as printed (ties share a mark); {} with under two models."""
    valid = {m: round(v, decimals) for m, v in means.items() if not isnan(v)}
    if len(valid) < 2:
        return {}
    levels = sorted(set(valid.values()), reverse=True)
    marks = {m: "best" for m, v in valid.items() if v == levels[0]}
    if len(levels) > 1:
        marks |= {m: "second" for m, v in valid.items() if v == levels[1]}
    return marks
