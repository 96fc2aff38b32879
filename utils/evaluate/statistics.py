"""Spread and comparisons of per-case scores: mean, median, bootstrap 95 % intervals, paired tests, rank correlation."""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

BOOTSTRAP_SAMPLES = 10_000
BOOTSTRAP_SEED = 0  # fixed, so that a rerun prints the same interval


def finite(values: Sequence[float | None]) -> np.ndarray:
    """The defined values (None and NaN left out) as float64."""
    return np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=np.float64)


def bootstrap_interval(values: Sequence[float], samples: int = BOOTSTRAP_SAMPLES, seed: int = BOOTSTRAP_SEED,
                       level: float = 0.95) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean of `values` (cases resampled with replacement); None below 2 cases."""
    data = np.sort(finite(values))  # sorted: the same cases in any order give the same interval
    if data.size < 2:
        return None
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(samples, data.size))].mean(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


def describe(values: Sequence[float | None]) -> dict[str, Any]:
    """{'cases', 'mean', 'median', 'ci95'} over the defined values; None where a statistic is undefined."""
    data = finite(values)
    if data.size == 0:
        return {"cases": 0, "mean": None, "median": None, "ci95": None}
    interval = bootstrap_interval(data)
    return {"cases": int(data.size), "mean": float(data.mean()), "median": float(np.median(data)),
            "ci95": list(interval) if interval else None}


def paired_comparison(first: Sequence[float], second: Sequence[float]) -> dict[str, Any]:
    """first - second over the same cases: mean difference, its bootstrap 95 % interval, Wilcoxon signed-rank p.

    A case undefined in either list is left out of both; p is None when fewer than 2 cases differ.
    """
    pairs = [(a, b) for a, b in zip(first, second, strict=True)
             if a is not None and b is not None and not math.isnan(a) and not math.isnan(b)]
    differences = np.asarray([a - b for a, b in pairs], dtype=np.float64)
    result: dict[str, Any] = {"cases": int(differences.size), "mean_difference": None, "ci95": None, "p_value": None,
                              "test": "Wilcoxon signed-rank, two-sided (zero differences dropped)"}
    if differences.size == 0:
        return result
    result["mean_difference"] = float(differences.mean())
    interval = bootstrap_interval(differences)
    result["ci95"] = list(interval) if interval else None
    if np.count_nonzero(differences) >= 2:
        from scipy.stats import wilcoxon

        result["p_value"] = float(wilcoxon(differences, zero_method="wilcox").pvalue)
    return result


def rank_correlation(first: Sequence[float | None], second: Sequence[float | None]) -> dict[str, Any]:
    """Spearman's rank correlation over the cases defined in both, with its p-value; None below 3 cases."""
    pairs = [(a, b) for a, b in zip(first, second, strict=True)
             if a is not None and b is not None and not math.isnan(a) and not math.isnan(b)]
    result: dict[str, Any] = {"cases": len(pairs), "spearman": None, "p_value": None}
    if len(pairs) < 3 or len({a for a, _ in pairs}) < 2 or len({b for _, b in pairs}) < 2:
        return result
    from scipy.stats import spearmanr

    outcome = spearmanr([a for a, _ in pairs], [b for _, b in pairs])
    result.update(spearman=float(outcome.statistic), p_value=float(outcome.pvalue))
    return result


def number(value: float | None, digits: int = 4) -> str:
    """A score as text, '-' where undefined."""
    return "-" if value is None else f"{value:.{digits}f}"


def interval_text(interval: Sequence[float] | None, sign: bool = False) -> str:
    """'[0.1234, 0.5678]' ('[+0.0012, +0.0345]' with `sign`), '-' where undefined."""
    if not interval:
        return "-"
    spec = "+.4f" if sign else ".4f"
    return f"[{interval[0]:{spec}}, {interval[1]:{spec}}]"


def spread_text(stats: dict[str, Any]) -> str:
    """One line of `describe`'s record: mean, median, 95 % interval and the number of cases."""
    return (f"mean {number(stats['mean'])}  median {number(stats['median'])}  95% CI {interval_text(stats['ci95'])}  "
            f"({stats['cases']} cases)")
