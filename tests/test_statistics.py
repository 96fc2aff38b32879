"""Spread and comparisons of per-case scores, against values worked out by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest

from utils.evaluate.statistics import bootstrap_interval, describe, paired_comparison, rank_correlation


def test_describe_leaves_out_undefined_cases_and_brackets_the_mean() -> None:
    stats = describe([0.2, None, 0.4, float("nan"), 0.9])
    assert stats["cases"] == 3
    assert stats["mean"] == pytest.approx(0.5) and stats["median"] == pytest.approx(0.4)
    low, high = stats["ci95"]
    assert 0.2 <= low < 0.5 < high <= 0.9  # a resampled mean lies between the smallest and largest case


def test_bootstrap_interval_is_seeded_and_needs_two_cases() -> None:
    values = list(np.linspace(0, 1, 11))
    assert bootstrap_interval(values) == bootstrap_interval(values[::-1])  # seeded, and blind to the case order
    assert bootstrap_interval([0.7]) is None and describe([0.7])["ci95"] is None
    low, high = bootstrap_interval([0.5, 0.5, 0.5])
    assert low == high == pytest.approx(0.5)  # no spread, no interval width
    # The mean of 11 evenly spaced values has standard error sd/sqrt(n); the interval is close to +-1.96 of it.
    se = np.std(values) / math.sqrt(len(values))
    low, high = bootstrap_interval(values)
    assert high - low == pytest.approx(2 * 1.96 * se, rel=0.1)


def test_paired_comparison_differences_and_wilcoxon() -> None:
    first = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
    second = [0.8, 0.6, 0.4, 0.2, 0.0, None]  # the last case is undefined in one and left out of both
    result = paired_comparison(first, second)
    assert result["cases"] == 5
    assert result["mean_difference"] == pytest.approx((0.1 + 0.2 + 0.3 + 0.4 + 0.5) / 5)
    # All five differences positive: the exact two-sided Wilcoxon p is 2 / 2**5.
    assert result["p_value"] == pytest.approx(2 / 32)
    assert paired_comparison([0.5], [0.5])["p_value"] is None


def test_rank_correlation_is_spearman() -> None:
    assert rank_correlation([1, 2, 3, 4], [10, 20, 30, 40])["spearman"] == pytest.approx(1.0)
    assert rank_correlation([1, 2, 3, 4], [4, 3, 2, 1])["spearman"] == pytest.approx(-1.0)
    # ranks (1,2,3,4) vs (1,3,2,4): 1 - 6*sum(d^2)/(n(n^2-1)) = 1 - 6*2/60 = 0.8
    assert rank_correlation([1, 2, 3, 4, None], [1, 30, 20, 40, 5])["spearman"] == pytest.approx(0.8)
    assert rank_correlation([1, 2], [1, 2])["spearman"] is None
