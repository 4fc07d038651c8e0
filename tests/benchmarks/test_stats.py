"""Paired and Welch t-tests against slow, obviously-correct references; the report's significance marks."""

import math
from pathlib import Path

import pandas as pd
import pytest

from benchmarks.collect import LONG_COLUMNS, read_reference
from benchmarks.experiments import ALL_TABLES
from benchmarks.report import ReportContext, markdown, summarise, wide_table
from benchmarks.stats import compare_p, difference, paired_p, row_tests, significant, welch_p

REFERENCE = read_reference(Path(__file__).resolve().parents[2] / "results" / "paper_reference.csv")
AP = "AP (VOC, COCO-style 0.50:0.95, 11-point)"


def _t_pdf(x: float, df: float) -> float:
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    return math.exp(log_c - (df + 1) / 2 * math.log1p(x * x / df))


def _reference_welch_p(a: list[float], b: list[float]) -> float:
    """Textbook Welch: t = (ma - mb) / sqrt(va/na + vb/nb), Welch-Satterthwaite df, and the two-sided tail
    2 * integral_|t|^inf of the Student-t density by Simpson's rule (substitution x = |t| + u / (1 - u))."""
    na, nb = len(a), len(b)
    ma, mb = sum(a) / na, sum(b) / nb
    va = sum((x - ma) ** 2 for x in a) / (na - 1)
    vb = sum((x - mb) ** 2 for x in b) / (nb - 1)
    se2 = va / na + vb / nb
    t = abs(ma - mb) / math.sqrt(se2)
    df = se2**2 / ((va / na) ** 2 / (na - 1) + (vb / nb) ** 2 / (nb - 1))
    return _two_sided_tail(t, df)


def _reference_paired_p(a: list[float], b: list[float]) -> float:
    """Textbook paired t-test: d = a - b, t = mean(d) / (sd(d) / sqrt(n)), n - 1 degrees of freedom."""
    d = [x - y for x, y in zip(a, b)]
    n = len(d)
    md = sum(d) / n
    sd = math.sqrt(sum((x - md) ** 2 for x in d) / (n - 1))
    return _two_sided_tail(abs(md) / (sd / math.sqrt(n)), n - 1)


def _two_sided_tail(t: float, df: float) -> float:
    steps = 20000

    def f(u: float) -> float:
        return 0.0 if u >= 1 else _t_pdf(t + u / (1 - u), df) / (1 - u) ** 2

    h = 1 / steps
    total = f(0) + f(1) + sum((4 if i % 2 else 2) * f(i * h) for i in range(1, steps))
    return 2 * total * h / 3


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ([30.1, 31.0, 29.4], [10.2, 12.5, 9.1]),
        ([55.2, 56.1, 54.8, 55.9, 56.4], [54.9, 55.0, 55.6, 54.1, 55.3]),
        ([1.0, 2.0, 3.0, 4.0], [2.5, 2.9, 3.1]),
        ([40.0, 40.5, 39.0], [41.0, 45.0, 37.0, 43.0, 39.5, 44.0]),  # very unequal variances
    ],
)
def test_welch_matches_textbook_reference(a, b):
    assert welch_p(a, b) == pytest.approx(_reference_welch_p(a, b), rel=1e-4)
    assert welch_p(a, b) == pytest.approx(welch_p(b, a))  # two-sided


def _seeds(values: list[float], first: int = 0) -> dict[int, float]:
    return {first + i: v for i, v in enumerate(values)}


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ([30.1, 31.0, 29.4], [10.2, 12.5, 9.1]),
        ([55.2, 56.1, 54.8, 55.9, 56.4], [54.9, 55.0, 55.6, 54.1, 55.3]),
        ([18.5, 17.1, 21.9], [17.3, 16.4, 20.8]),  # a large shared seed effect, a small steady gain
    ],
)
def test_paired_matches_textbook_reference(a, b):
    assert paired_p(_seeds(a), _seeds(b)) == pytest.approx(_reference_paired_p(a, b), rel=1e-4)
    assert paired_p(_seeds(a), _seeds(b)) == pytest.approx(paired_p(_seeds(b), _seeds(a)))


def test_pairing_removes_the_shared_seed_effect():
    gain = [18.5, 17.1, 21.9], [17.3, 16.4, 20.8]  # every seed +0.7..1.2, seeds spread by 4.8 points
    assert compare_p(_seeds(gain[0]), _seeds(gain[1])) < 0.05 < welch_p(*gain)
    assert compare_p(_seeds(gain[0]), _seeds(gain[1], first=3)) == pytest.approx(welch_p(*gain))  # no pairs


def test_edge_cases_and_minimum_seeds():
    assert math.isnan(welch_p([1.0], [2.0, 3.0]))
    assert welch_p([5.0, 5.0, 5.0], [5.0, 5.0, 5.0]) == 1.0  # deterministic runs, equal: no difference
    assert welch_p([5.0, 5.0, 5.0], [6.0, 6.0, 6.0]) == 0.0  # deterministic runs, different: the limit
    assert paired_p(_seeds([5.0, 6.0, 7.0]), _seeds([5.0, 6.0, 7.0])) == 1.0
    assert paired_p(_seeds([6.0, 7.0, 8.0]), _seeds([5.0, 6.0, 7.0])) == 0.0  # the same gain on every seed
    assert math.isnan(paired_p(_seeds([1.0, 2.0]), _seeds([3.0, 4.0], first=1)))  # one shared seed
    assert not significant(compare_p(_seeds([30.0, 31.0]), _seeds([10.0, 11.0])))  # 2 seeds: not tested
    assert significant(compare_p(_seeds([30.0, 31.0, 29.0]), _seeds([10.0, 11.0, 9.0])))
    assert not significant(compare_p(_seeds([30.0, 31.0, 29.0]), _seeds([30.5, 29.5, 31.0])))


def _long(values: dict[tuple[str, str], list[float]]) -> pd.DataFrame:
    base = {c: "" for c in LONG_COLUMNS} | {"profile": "tiny", "table": "table1", "task": "voc_det"}
    records = [
        base | {"row": "random" if init == "random" else f"{init}_{data}", "init": init,
                "pretrain_data": data, "seed": seed, "metric": "AP", "value": v}
        for (init, data), vs in values.items() for seed, v in enumerate(vs)
    ]  # fmt: skip
    return pd.DataFrame(records, columns=LONG_COLUMNS)


THREE_SEEDS = _long({
    ("random", "none"): [10.0, 11.0, 9.0],
    ("supervised", "imagenet"): [20.0, 20.5, 19.5],  # beats random, significantly below the best
    ("densecl", "coco"): [30.0, 31.0, 29.0],  # the best
    ("mocov2", "coco"): [30.5, 29.5, 31.0],  # beats random, tied with the best
    ("mocov2", "imagenet"): [10.5, 9.0, 11.5],  # tied with random
})  # fmt: skip


def test_markdown_marks_only_significant_differences():
    table = ALL_TABLES["table1"]
    wide = wide_table(THREE_SEEDS, REFERENCE, table, scaled=True)
    text = markdown(table, wide, ReportContext("tiny", True, "Scaled."))
    assert "| Random init | 10.0 ± 1.0 ‡ | 32.8 (recalled) |" in text
    assert "| Supervised (ImageNet) | 20.0 ± 0.5 †‡ |" in text
    assert "| MoCo-v2 (COCO) | 30.3 ± 0.8 † |" in text
    assert "| DenseCL (COCO) | 30.0 ± 1.0 † |" in text
    assert "| MoCo-v2 (ImageNet) | 10.3 ± 1.3 ‡ |" in text
    assert "paired t-test" in text and "† = differs from Random init" in text
    p = wide.set_index("row").loc["supervised_imagenet", f"{AP} | p vs reference"]
    assert p == pytest.approx(_reference_paired_p([20.0, 20.5, 19.5], [10.0, 11.0, 9.0]), rel=1e-4)


def test_summary_says_beats_random_only_where_significant():
    (line,) = summarise(
        ALL_TABLES["table1"], wide_table(THREE_SEEDS, REFERENCE, ALL_TABLES["table1"], scaled=True)
    )
    assert line.startswith(
        "table1 voc_det: best MoCo-v2 (COCO) (AP 30.3); vs random init (10.0), "
        "t-test over seeds at p < 0.05 (Δ = the tested difference: mean per-seed difference over the "
        "shared seeds, of the means when < 3 are shared): "
    )
    assert (
        "beats random init: Supervised (ImageNet) 20.0 (Δ +10.0), MoCo-v2 (COCO) 30.3 (Δ +20.3), "
        "DenseCL (COCO) 30.0 (Δ +20.0)"
    ) in line
    assert "not significantly different from random init: MoCo-v2 (ImageNet) 10.3 (Δ +0.3)" in line


def test_direction_and_delta_come_from_the_paired_seeds():
    """Random init ran 5 seeds, MoCo-v2 3: MoCo-v2 is ahead on every shared seed (the paired test is
    significant) although its mean is below random init's mean over all 5 seeds."""
    long = _long({("random", "none"): [17.0, 16.0, 15.0, 21.0, 22.0], ("mocov2", "coco"): [17.6, 16.5, 15.7]})
    wide = wide_table(long, REFERENCE, ALL_TABLES["table1"], scaled=True)
    moco = wide.set_index("row").loc["mocov2_coco"]
    assert moco[f"{AP} | mean"] < wide.set_index("row").loc["random", f"{AP} | mean"]
    assert moco[f"{AP} | diff vs reference"] == pytest.approx(0.6)
    assert significant(moco[f"{AP} | p vs reference"])
    (line,) = summarise(ALL_TABLES["table1"], wide)
    assert "beats random init: MoCo-v2 (COCO) 16.6 (Δ +0.6)" in line and "below" not in line


def test_difference_is_what_compare_p_tests():
    ahead, five_seeds = _seeds([17.6, 16.5, 15.7]), _seeds([17.0, 16.0, 15.0, 21.0, 22.0])
    assert difference(ahead, five_seeds) == pytest.approx(0.6)  # paired over seeds 0-2
    unpaired = _seeds([1.0, 2.0, 3.0], first=3)  # no shared seed: Welch, the difference of the means
    assert difference(_seeds([3.0, 4.0, 5.0]), unpaired) == pytest.approx(2.0)
    assert math.isnan(difference(_seeds([1.0]), {}))


def test_markdown_says_when_nothing_is_tested():
    one_seed = THREE_SEEDS[THREE_SEEDS["seed"] == 0]
    wide = wide_table(one_seed, REFERENCE, ALL_TABLES["table1"], scaled=True)
    text = markdown(ALL_TABLES["table1"], wide, ReportContext("tiny", True))
    assert "no difference is tested" in text and "†" not in text.split("Significance")[0]


def test_a_nan_trial_is_left_out_of_the_tests_not_spread_over_the_row():
    """Detectron2 reports NaN AP when a model predicts nothing; it must not become the "best" row."""
    values = {
        "random": {0: 10.0, 1: 11.0, 2: 12.0},
        "mocov2_coco": {0: math.nan, 1: 30.0, 2: 31.0, 3: 29.0},
        "densecl_coco": {0: math.nan},
    }
    best, tests = row_tests(values, "random")
    assert best == "mocov2_coco" and set(tests) == {"random", "mocov2_coco"}
    assert tests["random"][1] == pytest.approx(welch_p([10.0, 11.0, 12.0], [30.0, 31.0, 29.0]))
