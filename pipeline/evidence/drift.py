"""Drift of one feature, live values against the version's held-out reference, by the tests Evidently picks by
default (its `get_stattest` rules, 2026):

- numbers: the two-sample Kolmogorov-Smirnov test when the reference has at most 1,000 rows, else the
  Wasserstein distance normed by the reference's standard deviation (Evidently tests numbers of at most 5
  distinct values as categories; here they stay numbers, service/models/reference.py says why);
- categories (strings, classes answered): Pearson's chi-squared test of the live counts against the
  reference's shares when the reference has at most 1,000 rows, else the Jensen-Shannon distance.

A test gives a p-value (drift below ALPHA) or a distance (drift above DISTANCE_THRESHOLD, as Evidently's 0.1).
Unlike Evidently, the p-value threshold is divided by the number of features tested (Bonferroni): a table of
64 pixels tested at 0.05 each would call about three of them drifted when nothing moved. Categories the
reference never saw are counted together, and every category gets half a count in the reference, so a new
category is a large statistic, not an infinite one.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.models.reference import OTHER, category

ALPHA = 0.05
DISTANCE_THRESHOLD = 0.1
LARGE_REFERENCE = 1000
TESTS = {
    "ks": "Kolmogorov-Smirnov",
    "wasserstein": "Wasserstein distance (normed)",
    "chi2": "chi-squared",
    "jensenshannon": "Jensen-Shannon distance",
}


@dataclass(frozen=True)
class Drift:
    feature: str
    test: str  # a key of TESTS
    statistic: float
    p_value: float | None  # the tests that give one; the distances give none
    threshold: float  # the p-value below which (or the distance above which) the feature drifted
    outside: float | None  # numbers: the share of live values outside the held-out range
    live_rows: int

    @property
    def drifted(self) -> bool:
        if self.p_value is not None:
            return self.p_value < self.threshold
        return self.statistic > self.threshold

    @property
    def strength(self) -> float:
        """For ranking: how far past (or short of) its threshold the feature is, comparable across tests."""
        if self.p_value is not None:
            return float(-np.log10(max(self.p_value, 1e-300)) + np.log10(self.threshold))
        return float(np.log10(max(self.statistic, 1e-12) / self.threshold))


def test(feature: str, described: dict[str, Any], live: np.ndarray, n_tests: int = 1) -> Drift:
    """Drift of `live` values against the feature's reference description (service.models.reference.describe)."""
    alpha = ALPHA / max(1, n_tests)
    large = described["rows"] > LARGE_REFERENCE
    if described["kind"] == "number":
        values = np.asarray(live, dtype=np.float64)
        values = values[np.isfinite(values)]
        reference = np.asarray(described["sample"], dtype=np.float64)
        outside = (
            float(np.mean((values < described["low"]) | (values > described["high"])))
            if len(values)
            else None
        )
        if large:
            return Drift(
                feature,
                "wasserstein",
                _wasserstein_normed(reference, values),
                None,
                DISTANCE_THRESHOLD,
                outside,
                len(values),
            )
        statistic, p_value = _ks(reference, values)
        return Drift(feature, "ks", statistic, p_value, alpha, outside, len(values))
    counts = described["counts"]
    live_counts = Counter(category(v) for v in live)
    keys = list(counts)
    observed = [live_counts.pop(key, 0) for key in keys]
    if live_counts:  # categories the reference never saw (or folded into OTHER)
        if OTHER not in counts:
            keys.append(OTHER)
            observed.append(0)
        observed[keys.index(OTHER)] += sum(live_counts.values())
    expected = np.array([counts.get(key, 0) for key in keys], dtype=np.float64) + 0.5
    observed_array = np.array(observed, dtype=np.float64)
    if large:
        return Drift(
            feature,
            "jensenshannon",
            _jensen_shannon(expected, observed_array),
            None,
            DISTANCE_THRESHOLD,
            None,
            len(live),
        )
    statistic, p_value = _chi2(expected, observed_array)
    return Drift(feature, "chi2", statistic, p_value, alpha, None, len(live))


def _ks(reference: np.ndarray, live: np.ndarray) -> tuple[float, float]:
    from scipy import stats

    if len(live) == 0 or len(reference) == 0:
        return 0.0, 1.0
    result = stats.ks_2samp(reference, live)
    return float(result.statistic), float(result.pvalue)


def _wasserstein_normed(reference: np.ndarray, live: np.ndarray) -> float:
    from scipy import stats

    if len(live) == 0:
        return 0.0
    scale = float(np.std(reference)) or 0.001  # Evidently's floor for a constant reference
    return float(stats.wasserstein_distance(reference, live) / scale)


def _chi2(expected_counts: np.ndarray, observed: np.ndarray) -> tuple[float, float]:
    from scipy import stats

    n = observed.sum()
    if n == 0 or len(observed) < 2:
        return 0.0, 1.0
    expected = expected_counts / expected_counts.sum() * n
    result = stats.chisquare(observed, expected)
    return float(result.statistic), float(result.pvalue)


def _jensen_shannon(expected_counts: np.ndarray, observed: np.ndarray) -> float:
    from scipy.spatial import distance

    if observed.sum() == 0:
        return 0.0
    return float(distance.jensenshannon(expected_counts / expected_counts.sum(), observed / observed.sum()))
