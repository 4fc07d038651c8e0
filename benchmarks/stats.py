"""Significance of a difference between two rows of a table: a two-sided t-test over seeds.

A fine-tuning seed fixes the data order, the augmentations and the initialisation of the new layers, and
every row of a table runs the same seeds: trials of two rows with the same seed are paired (common random
numbers), and the seed effect they share is large (a seed can move every row of a column by several
points). So two rows are compared with the paired t-test on their per-seed differences over the seeds
both ran, even when one row ran more seeds; when fewer than `MIN_SEEDS` seeds are shared, with the
unequal-variance Welch (1947) t-test on all their trials, which treats them as independent samples. A
difference counts as significant at p < `ALPHA`; its direction is that of `difference`, the quantity the
test looked at (with extra seeds in one row, the means over all seeds can point the other way).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from scipy import stats

MIN_SEEDS = 3  # fewer trials (shared seeds) per row: no test (the std of 2 values says too little)
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


def paired_p(a: Mapping[int, float], b: Mapping[int, float]) -> float:
    """Two-sided p-value of the paired t-test on a[seed] - b[seed] over the seeds in both; NaN when < 2.

    When every difference is the same (t undefined), the limit is used: p = 1 for 0, 0 otherwise.
    """
    shared = sorted(set(a) & set(b))
    if len(shared) < 2:
        return math.nan
    diffs = [a[s] - b[s] for s in shared]
    if _variance(diffs) == 0.0:
        return 1.0 if math.isclose(diffs[0], 0.0, abs_tol=1e-12) else 0.0
    return float(stats.ttest_rel([a[s] for s in shared], [b[s] for s in shared]).pvalue)


def _variance(values: Sequence[float]) -> float:
    mean = sum(values) / len(values)
    return sum((v - mean) ** 2 for v in values) / (len(values) - 1)


def _is_paired(a: Mapping[int, float], b: Mapping[int, float]) -> bool:
    """Whether compare_p pairs the rows: they share >= MIN_SEEDS seeds."""
    return len(set(a) & set(b)) >= MIN_SEEDS


def compare_p(a: Mapping[int, float], b: Mapping[int, float]) -> float:
    """p-value of row a vs row b (seed -> value): paired over >= MIN_SEEDS shared seeds, else Welch when
    both rows have >= MIN_SEEDS trials, else NaN (not tested)."""
    if _is_paired(a, b):
        return paired_p(a, b)
    if len(a) >= MIN_SEEDS and len(b) >= MIN_SEEDS:
        return welch_p(list(a.values()), list(b.values()))
    return math.nan


def difference(a: Mapping[int, float], b: Mapping[int, float]) -> float:
    """a - b as compare_p tests it, so that its sign is the direction of a significant p: the mean
    per-seed difference over the shared seeds when the test is paired, else mean(a) - mean(b) (NaN when
    a row has no trials). With extra seeds in one row the two can differ even in sign."""
    if _is_paired(a, b):
        shared = set(a) & set(b)
        return sum(a[s] - b[s] for s in shared) / len(shared)
    if not a or not b:
        return math.nan
    return sum(a.values()) / len(a) - sum(b.values()) / len(b)


def significant(p: float) -> bool:
    """True only for a tested comparison (p not NaN, see compare_p) with p < ALPHA."""
    return p < ALPHA  # NaN compares False: untested is never significant


def row_tests(
    values: dict[str, Mapping[int, float]], reference: str
) -> tuple[str | None, dict[str, tuple[float, float]]]:
    """p-values (compare_p) of every row against the `reference` row and against the best row.

    `values` maps row key -> {seed: value}. Non-finite values (Detectron2 reports NaN AP for a model that
    predicted nothing) are left out, as the tables' pandas means leave them out; rows without a finite
    trial are skipped. Returns the best row's key (highest mean) and, per row, (p vs reference, p vs best);
    NaN where not tested or the row itself.
    """
    finite = {key: {seed: x for seed, x in v.items() if math.isfinite(x)} for key, v in values.items()}
    done = {key: v for key, v in finite.items() if v}
    if not done:
        return None, {}
    best = max(done, key=lambda key: sum(done[key].values()) / len(done[key]))

    def p(key: str, other: str) -> float:
        if key == other or other not in done:
            return math.nan
        return compare_p(done[key], done[other])

    return best, {key: (p(key, reference), p(key, best)) for key in done}
