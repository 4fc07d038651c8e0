"""Significance of a difference between two rows of a table: Welch's two-sided t-test over seeds.

Fine-tuning trials of two initialisations are independent samples with possibly different variances, so
the unequal-variance (Welch, 1947) t-test is the right one; it is run only when both rows have at least
`MIN_SEEDS` trials, and a difference counts as significant at p < `ALPHA`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from scipy import stats

MIN_SEEDS = 3  # fewer trials per row: no test (the sample std of 2 values says too little)
ALPHA = 0.05  # two-sided significance level


def welch_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value of Welch's t-test for mean(a) != mean(b); NaN when a row has < 2 trials.

    When both samples have zero variance (deterministic runs), t is undefined; the limit is used:
    p = 1 for equal means, 0 otherwise.
    """
    if len(a) < 2 or len(b) < 2:
        return math.nan
    if _variance(a) == 0.0 and _variance(b) == 0.0:
        return 1.0 if math.isclose(sum(a) / len(a), sum(b) / len(b)) else 0.0
    return float(stats.ttest_ind(list(a), list(b), equal_var=False).pvalue)


def _variance(values: Sequence[float]) -> float:
    mean = sum(values) / len(values)
    return sum((v - mean) ** 2 for v in values) / (len(values) - 1)


def testable(a: Sequence[float], b: Sequence[float]) -> bool:
    """Both rows have enough trials for the test."""
    return len(a) >= MIN_SEEDS and len(b) >= MIN_SEEDS


def significant(a: Sequence[float], b: Sequence[float]) -> bool:
    """True only when both rows have >= MIN_SEEDS trials and Welch's test gives p < ALPHA."""
    return testable(a, b) and welch_p(a, b) < ALPHA


def row_tests(
    values: dict[str, Sequence[float]], reference: str
) -> tuple[str | None, dict[str, tuple[float, float]]]:
    """Welch p-values of every row against the `reference` row and against the best row (highest mean).

    `values` maps row key -> its trials (rows without trials are skipped). Returns the best row's key and,
    per row, (p vs reference, p vs best); NaN where a side has < MIN_SEEDS trials or is the row itself.
    """
    done = {key: list(v) for key, v in values.items() if len(v)}
    if not done:
        return None, {}
    best = max(done, key=lambda key: sum(done[key]) / len(done[key]))

    def p(key: str, other: str) -> float:
        if key == other or other not in done or not testable(done[key], done[other]):
            return math.nan
        return welch_p(done[key], done[other])

    return best, {key: (p(key, reference), p(key, best)) for key in done}
