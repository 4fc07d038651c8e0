"""Paper-style tables (wide CSV + Markdown), bar charts and a summary from the long results.

Rows are the initialisations a table shows (the paper's six plus evaluated custom checkpoints; for an
ablation, the pretraining variants), columns its metrics (labelled unambiguously), each cell the mean
+- std over seeds, with the paper's value and its source flag (readme / derived / recalled) beside it.
Deltas to the paper are computed only for the unscaled `paper` profile run as the protocol: a scaled
profile, or an unscaled one whose jobs depart from `paper.yaml` (benchmarks.protocol_check), says so in
its Markdown and shows the paper's values for orientation only. With >= 3 seeds per row, differences to
the table's reference row (random init; the main run for ablations) and to the best row are marked only
where a two-sided t-test gives p < 0.05: paired over the seeds both rows ran, Welch's when they share
fewer than 3 (benchmarks.stats). The summary takes a difference's direction from what the test compared.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure  # the object API renders with Agg, no GUI backend involved

from benchmarks.atomic import atomic_write, atomic_write_text
from benchmarks.collect import write_csv
from benchmarks.experiments import ROWS, TABLES, Row, Table
from benchmarks.matrix import TableView
from benchmarks.stats import ALPHA, MIN_SEEDS, difference, row_tests, significant

SOURCES = {
    "readme": "official DenseCL/MoCo README",
    "derived": "derived from a gain stated in the paper's abstract",
    "recalled": "transcribed from the paper without a second source",
}
MARK_REFERENCE = "†"  # differs significantly from the table's reference row
MARK_BEST = "‡"  # differs significantly from the best row of the column


@dataclass(frozen=True)
class ReportContext:
    """What the report says about the run: profile name, whether it is scaled (or an unscaled profile
    departing from the paper's protocol, `protocol_changes`), its description."""

    profile: str
    scaled: bool
    description: str = ""
    protocol_changes: tuple[str, ...] = ()

    @property
    def why_not_comparable(self) -> str:
        return "departs from the paper's protocol" if self.protocol_changes else "scaled profile"


def _reference_lookup(
    reference: pd.DataFrame, table: Table, rows: tuple[Row, ...]
) -> dict[tuple[str, str, str], tuple[float, str]]:
    """(task, row key, metric) of the paper's rows -> (paper value, source)."""
    found = {}
    ref = reference[reference["table"] == table.name]
    for task in table.tasks:
        for metric in task.metrics:
            hits = ref[(ref["task"] == metric.reference_task) & (ref["metric"] == metric.name)]
            for _, hit in hits.iterrows():
                for row in rows:
                    if row.is_paper_row and (row.method, row.pretrain_data) == (
                        hit["init"],
                        hit["pretrain_data"],
                    ):
                        found[(task.name, row.key, metric.name)] = (float(hit["value"]), str(hit["source"]))
    return found


def wide_table(
    long: pd.DataFrame,
    reference: pd.DataFrame,
    table: Table,
    scaled: bool,
    rows: tuple[Row, ...] = ROWS,
    with_paper: bool = True,
) -> pd.DataFrame:
    """One row per initialisation; per metric: mean, std, n, paper, paper source, delta (unscaled only),
    p-values (stats.compare_p) vs the reference row and vs the best row (NaN where not tested), and the
    difference to the reference row that the test looked at (stats.difference: paired over the shared
    seeds when the test is paired), which gives a significant difference its direction.

    Custom rows without any result in this table are left out.
    """
    ref = _reference_lookup(reference, table, rows) if with_paper else {}
    ours = long[long["task"].isin([task.name for task in table.tasks])]
    records: dict[str, dict[str, object]] = {
        row.key: {"row": row.key, "init": row.method, "pretrain_data": row.pretrain_data, "label": row.label}
        for row in rows
    }
    for task in table.tasks:
        for metric in task.metrics:
            mine = ours[(ours["task"] == task.name) & (ours["metric"] == metric.name)]
            by_row = {
                key: dict(zip(trials["seed"].astype(int), trials["value"].astype(float)))
                for key, trials in mine.groupby("row")
            }  # row key -> {seed: value}
            values = {row.key: by_row.get(row.key, {}) for row in rows}
            _, tests = row_tests(values, table.reference_row)
            for row in rows:
                trial = list(values[row.key].values())
                mean = sum(trial) / len(trial) if trial else math.nan
                paper, source = ref.get((task.name, row.key, metric.name), (math.nan, ""))
                p_reference, p_best = tests.get(row.key, (math.nan, math.nan))
                tested_diff = (
                    math.nan
                    if row.key == table.reference_row
                    else difference(values[row.key], values.get(table.reference_row, {}))
                )
                records[row.key] |= {
                    f"{metric.label} | mean": mean,
                    f"{metric.label} | std": float(pd.Series(trial).std()) if len(trial) > 1 else math.nan,
                    f"{metric.label} | n": len(trial),
                    f"{metric.label} | paper": paper,
                    f"{metric.label} | paper source": source,
                    f"{metric.label} | delta vs paper": math.nan if scaled else mean - paper,
                    f"{metric.label} | p vs reference": p_reference,
                    f"{metric.label} | p vs best": p_best,
                    f"{metric.label} | diff vs reference": tested_diff,
                }
    custom_empty = {
        row.key
        for row in rows
        if row.method == "custom"
        and all(records[row.key][f"{task.primary.label} | n"] == 0 for task in table.tasks)
    }
    return pd.DataFrame.from_records([r for key, r in records.items() if key not in custom_empty])


def _fmt(value: float, std: float = math.nan) -> str:
    if math.isnan(value):
        return "—"
    return f"{value:.1f} ± {std:.1f}" if not math.isnan(std) else f"{value:.1f}"


def _marks(rec: pd.Series, label: str) -> str:
    marks = ""
    if significant(rec[f"{label} | p vs reference"]):
        marks += MARK_REFERENCE
    if significant(rec[f"{label} | p vs best"]):
        marks += MARK_BEST
    return f" {marks}" if marks else ""


def _reference_label(table: Table, wide: pd.DataFrame) -> str:
    hit = wide[wide["row"] == table.reference_row]
    return str(hit["label"].iloc[0]) if len(hit) else table.reference_row


def markdown(table: Table, wide: pd.DataFrame, context: ReportContext, view: TableView | None = None) -> str:
    """The table laid out like the paper, with the paper's value (and delta when comparable) beside ours,
    significance marks, and for an ablation its values and the paper's finding."""
    lines = [f"# {table.title} (profile `{context.profile}`)", ""]
    if context.protocol_changes:
        lines += [
            f"> **Profile `{context.profile}` departs from the paper's protocol** in: "
            f"{'; '.join(f'`{change}`' for change in context.protocol_changes)}. These numbers are **not "
            "comparable** to the paper's; the paper's values are shown for orientation only and no deltas "
            "are computed.",
            "",
        ]
    elif context.scaled:
        lines += [
            f"> **Scaled profile `{context.profile}`**: {context.description} These numbers are **not "
            "comparable** to the paper's (different data, backbone and schedule); the paper's values are "
            "shown for orientation only and no deltas are computed.",
            "",
        ]
    if view is not None and view.ablation is not None:
        lines += [
            f"Pretraining variants of the main DenseCL (COCO) run, `{view.ablation.parameter}` changed: "
            f"{view.note}",
            "",
            f"> **The paper's finding** (Sec. 4.3; no reference values are stored): {view.ablation.finding}",
            "",
        ]
    header = ["Initialisation"]
    for task in table.tasks:
        lines.append(f"- `{task.name}`: {task.title}")
        for metric in task.metrics:
            has_paper = wide[f"{metric.label} | paper"].notna().any()
            header += [metric.label] + (["paper"] if has_paper else [])
            header += ["Δ vs paper"] if has_paper and not context.scaled else []
        header.append(f"seeds ({task.name})")
    rule = ["---"] + ["---:"] * (len(header) - 1)
    lines += ["", "| " + " | ".join(header) + " |", "| " + " | ".join(rule) + " |"]
    for _, rec in wide.iterrows():
        cells = [rec["label"]]
        for task in table.tasks:
            for metric in task.metrics:
                key = metric.label
                cells.append(_fmt(rec[f"{key} | mean"], rec[f"{key} | std"]) + _marks(rec, key))
                if wide[f"{key} | paper"].notna().any():
                    paper = rec[f"{key} | paper"]
                    cells.append("" if math.isnan(paper) else f"{paper:.1f} ({rec[f'{key} | paper source']})")
                    if not context.scaled:
                        delta = rec[f"{key} | delta vs paper"]
                        cells.append("" if math.isnan(delta) else f"{delta:+.1f}")
            cells.append(str(rec[f"{task.primary.label} | n"]))
        lines.append("| " + " | ".join(cells) + " |")
    n_max = max((int(wide[f"{t.primary.label} | n"].max()) for t in table.tasks), default=0)
    lines += [
        "",
        "Ours: mean ± std over seeds (sample std, n = the seeds column; no ± with one seed); "
        "— = not run or not finished.",
        f"Significance: two-sided paired t-test (scipy.stats.ttest_rel) on the per-seed differences over the "
        f"seeds both rows ran (a seed fixes data order, augmentation and head initialisation for every row); "
        f"Welch's t-test when fewer than {MIN_SEEDS} are shared; p < {ALPHA}, only with ≥ {MIN_SEEDS} seeds "
        f"per row: {MARK_REFERENCE} = differs from {_reference_label(table, wide)}, {MARK_BEST} = differs "
        "from the row with the highest mean in that column; no mark = not significant or not tested.",
    ]
    if n_max < MIN_SEEDS:
        lines.append(
            f"Here at most {n_max} seed(s) per row: **no difference is tested** (run --seeds {MIN_SEEDS})."
        )
    if any(wide[f"{m.label} | paper"].notna().any() for t in table.tasks for m in t.metrics):
        lines.append("Paper value sources: " + "; ".join(f"`{k}` = {v}" for k, v in SOURCES.items()) + ".")
    return "\n".join(lines) + "\n"


def bar_chart(table: Table, wide: pd.DataFrame, path: Path, context: ReportContext) -> None:
    """One panel per task: bars per initialisation for every metric, std as error bars (PNG, atomic)."""
    fig = Figure(figsize=(6.5 * len(table.tasks), 4.2))
    axes = fig.subplots(1, len(table.tasks), squeeze=False)
    for ax, task in zip(axes[0], table.tasks):
        present = wide[wide[f"{task.primary.label} | n"] > 0]
        width = 0.8 / max(len(present), 1)
        show_paper = not context.scaled and any(
            present[f"{m.label} | paper"].notna().any() for m in task.metrics
        )
        for i, (_, rec) in enumerate(present.iterrows()):
            xs = [j + (i - (len(present) - 1) / 2) * width for j in range(len(task.metrics))]
            means = [rec[f"{m.label} | mean"] for m in task.metrics]
            stds = [
                0.0 if math.isnan(rec[f"{m.label} | std"]) else rec[f"{m.label} | std"] for m in task.metrics
            ]
            ax.bar(xs, means, width, yerr=stds, capsize=2, label=rec["label"])
            if show_paper:
                ax.scatter(
                    xs,
                    [rec[f"{m.label} | paper"] for m in task.metrics],
                    marker="x",
                    color="black",
                    zorder=3,
                    label="paper" if i == 0 else None,
                )
        ax.set_xticks(range(len(task.metrics)), [m.name for m in task.metrics])
        ax.set_title(task.title, fontsize=8)
        ax.set_ylabel("score (%)")
        if present.empty:
            ax.text(0.5, 0.5, "no finished cells", ha="center", va="center", transform=ax.transAxes)
        else:
            ax.legend(fontsize=7)
    note = f" ({context.why_not_comparable}: not comparable to the paper)" if context.scaled else ""
    fig.suptitle(f"{table.title}, profile {context.profile}{note}", fontsize=9)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))


def summarise(table: Table, wide: pd.DataFrame) -> list[str]:
    """Per task: the best row on the primary metric, and which rows differ from the reference row (random
    init; the main run for ablations) by the t-test of stats.compare_p, or why nothing was tested.

    A tested row shows Δ, the difference the test looked at (stats.difference), which also decides
    "beats" or "below": with extra seeds in one row, the means over all seeds can point the other way."""
    lines = []
    for task in table.tasks:
        metric = task.primary.label
        key = f"{metric} | mean"
        done = wide[wide[key].notna()]
        if done.empty:
            lines.append(f"{table.name} {task.name}: no finished cells")
            continue
        best = done.loc[done[key].idxmax()]
        text = f"{table.name} {task.name}: best {best['label']} ({task.primary.name} {best[key]:.1f})"
        reference = done[done["row"] == table.reference_row]
        name = "random init" if table.reference_row == "random" else "the main run"
        if reference.empty:
            lines.append(text + f"; {name} not run")
            continue
        others = done[done["row"] != table.reference_row]
        if others.empty:
            lines.append(text + f"; only {name} finished")
            continue
        base = float(reference[key].iloc[0])
        untested = [r for _, r in others.iterrows() if math.isnan(r[f"{metric} | p vs reference"])]
        if len(untested) == len(others):
            single = int(done[f"{metric} | n"].max()) == 1
            why = "single seed: not tested" if single else f"not tested (needs >= {MIN_SEEDS} seeds per row)"
            lines.append(text + f"; vs {name} ({base:.1f}): {why}")
            continue
        groups: dict[str, list[str]] = {}
        for _, r in others.iterrows():
            p, diff = r[f"{metric} | p vs reference"], r[f"{metric} | diff vs reference"]
            entry = f"{r['label']} {r[key]:.1f} (Δ {diff:+.1f})"
            if math.isnan(p):
                group, entry = f"not tested (< {MIN_SEEDS} seeds)", f"{r['label']} {r[key]:.1f}"
            elif significant(p):
                group = f"beats {name}" if diff > 0 else f"significantly below {name}"
            else:
                group = f"not significantly different from {name}"
            groups.setdefault(group, []).append(entry)
        verdicts = "; ".join(f"{group}: {', '.join(labels)}" for group, labels in groups.items())
        lines.append(
            text + f"; vs {name} ({base:.1f}), t-test over seeds at p < {ALPHA} (Δ = the tested difference: "
            f"mean per-seed difference over the shared seeds, of the means when < {MIN_SEEDS} are shared): "
            f"{verdicts}"
        )
    return lines


def _has_results(view: TableView, wide: pd.DataFrame) -> bool:
    """An ablation needs a finished variant (the main run alone is Table 1's); other tables any row."""
    done = wide[sum(wide[f"{t.primary.label} | n"] for t in view.table.tasks) > 0]
    if view.ablation is not None:
        done = done[done["row"] != view.table.reference_row]
    return not done.empty


def build_report(
    long: pd.DataFrame,
    reference: pd.DataFrame,
    results_dir: Path,
    context: ReportContext,
    views: list[TableView] | None = None,
) -> list[str]:
    """Writes results.csv and, per table with results, <table>.{csv,md,png}; returns the summary lines.

    `views` are the tables to consider (default: Tables 1-3 with the paper's rows; the CLI passes every
    table of the profile's `Matrix`). What an earlier report wrote for results that no longer exist (cells
    deleted to redo them) is removed, so no file shows numbers the run directories do not hold."""
    results_dir = Path(results_dir)
    views = views if views is not None else [TableView(t, ROWS) for t in TABLES]
    if long.empty:
        (results_dir / "results.csv").unlink(missing_ok=True)
    else:
        write_csv(long, results_dir / "results.csv")
    summary = []
    for view in views:
        table = view.table
        wide = pd.DataFrame()
        if not long.empty:
            wide = wide_table(
                long, reference, table, context.scaled, view.rows, with_paper=view.ablation is None
            )
        if wide.empty or not _has_results(view, wide):
            for suffix in (".csv", ".md", ".png"):
                (results_dir / f"{table.name}{suffix}").unlink(missing_ok=True)
            continue
        write_csv(wide.round(4), results_dir / f"{table.name}.csv")
        atomic_write_text(results_dir / f"{table.name}.md", markdown(table, wide, context, view))
        bar_chart(table, wide, results_dir / f"{table.name}.png", context)
        summary += summarise(table, wide)
    if summary:
        scaled = (
            f" (profile {context.profile}, {context.why_not_comparable}: not comparable to the paper)"
            if context.scaled
            else ""
        )
        atomic_write_text(
            results_dir / "summary.md", f"# Summary{scaled}\n\n" + "\n".join(f"- {s}" for s in summary) + "\n"
        )
    else:
        (results_dir / "summary.md").unlink(missing_ok=True)
    return summary
