"""Paper-style tables (wide CSV + Markdown), bar charts and a summary from the long results.

Rows are the paper's initialisations, columns its metrics (labelled unambiguously), each cell the mean
+- std over seeds, with the paper's value and its source flag (readme / derived / recalled) beside it.
Deltas to the paper are computed only for the unscaled `paper` profile: a scaled profile says so in
its Markdown and shows the paper's values for orientation only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure  # the object API renders with Agg, no GUI backend involved

from benchmarks.atomic import atomic_write, atomic_write_text
from benchmarks.collect import write_csv
from benchmarks.experiments import ROWS, TABLES, Table

SOURCES = {
    "readme": "official DenseCL/MoCo README",
    "derived": "derived from a gain stated in the paper's abstract",
    "recalled": "transcribed from the paper without a second source",
}


@dataclass(frozen=True)
class ReportContext:
    """What the report says about the run: profile name, whether it is scaled, its description."""

    profile: str
    scaled: bool
    description: str = ""


def _reference_lookup(
    reference: pd.DataFrame, table: Table
) -> dict[tuple[str, str, str, str], tuple[float, str]]:
    """(task, row key, metric) of our matrix -> (paper value, source)."""
    found = {}
    ref = reference[reference["table"] == table.name]
    for task in table.tasks:
        for metric in task.metrics:
            hits = ref[(ref["task"] == metric.reference_task) & (ref["metric"] == metric.name)]
            for _, hit in hits.iterrows():
                for row in ROWS:
                    if row.method == hit["init"] and row.pretrain_data == hit["pretrain_data"]:
                        found[(task.name, row.key, metric.name)] = (float(hit["value"]), str(hit["source"]))
    return found


def wide_table(long: pd.DataFrame, reference: pd.DataFrame, table: Table, scaled: bool) -> pd.DataFrame:
    """One row per initialisation; per metric: mean, std, n, paper, paper source, delta (unscaled only)."""
    ref = _reference_lookup(reference, table)
    ours = long[long["table"] == table.name]
    records = []
    for row in ROWS:
        record: dict[str, object] = {
            "row": row.key,
            "init": row.method,
            "pretrain_data": row.pretrain_data,
            "label": row.label,
        }
        mine = ours[(ours["init"] == row.method) & (ours["pretrain_data"] == row.pretrain_data)]
        for task in table.tasks:
            for metric in task.metrics:
                values = mine[(mine["task"] == task.name) & (mine["metric"] == metric.name)]["value"]
                mean = float(values.mean()) if len(values) else math.nan
                paper, source = ref.get((task.name, row.key, metric.name), (math.nan, ""))
                record[f"{metric.label} | mean"] = mean
                record[f"{metric.label} | std"] = float(values.std()) if len(values) > 1 else math.nan
                record[f"{metric.label} | n"] = len(values)
                record[f"{metric.label} | paper"] = paper
                record[f"{metric.label} | paper source"] = source
                record[f"{metric.label} | delta vs paper"] = math.nan if scaled else mean - paper
        records.append(record)
    return pd.DataFrame.from_records(records)


def _fmt(value: float, std: float = math.nan) -> str:
    if math.isnan(value):
        return "—"
    return f"{value:.1f} ± {std:.1f}" if not math.isnan(std) else f"{value:.1f}"


def markdown(table: Table, wide: pd.DataFrame, context: ReportContext) -> str:
    """The table laid out like the paper, with the paper's value (and delta when comparable) beside ours."""
    lines = [f"# {table.title} (profile `{context.profile}`)", ""]
    if context.scaled:
        lines += [
            f"> **Scaled profile `{context.profile}`**: {context.description} These numbers are **not "
            "comparable** to the paper's (different data, backbone and schedule); the paper's values are "
            "shown for orientation only and no deltas are computed.",
            "",
        ]
    header, rule = ["Initialisation"], ["---"]
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
                cells.append(_fmt(rec[f"{key} | mean"], rec[f"{key} | std"]))
                if wide[f"{key} | paper"].notna().any():
                    paper = rec[f"{key} | paper"]
                    cells.append("" if math.isnan(paper) else f"{paper:.1f} ({rec[f'{key} | paper source']})")
                    if not context.scaled:
                        delta = rec[f"{key} | delta vs paper"]
                        cells.append("" if math.isnan(delta) else f"{delta:+.1f}")
            cells.append(str(rec[f"{task.primary.label} | n"]))
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Ours: mean ± std over seeds (sample std; no ± with one seed); — = not run or not finished.",
        "Paper value sources: " + "; ".join(f"`{k}` = {v}" for k, v in SOURCES.items()) + ".",
    ]
    return "\n".join(lines) + "\n"


def bar_chart(table: Table, wide: pd.DataFrame, path: Path, context: ReportContext) -> None:
    """One panel per task: bars per initialisation for every metric, std as error bars (PNG, atomic)."""
    fig = Figure(figsize=(6.5 * len(table.tasks), 4.2))
    axes = fig.subplots(1, len(table.tasks), squeeze=False)
    for ax, task in zip(axes[0], table.tasks):
        present = wide[wide[f"{task.primary.label} | n"] > 0]
        width = 0.8 / max(len(present), 1)
        for i, (_, rec) in enumerate(present.iterrows()):
            xs = [j + (i - (len(present) - 1) / 2) * width for j in range(len(task.metrics))]
            means = [rec[f"{m.label} | mean"] for m in task.metrics]
            stds = [
                0.0 if math.isnan(rec[f"{m.label} | std"]) else rec[f"{m.label} | std"] for m in task.metrics
            ]
            ax.bar(xs, means, width, yerr=stds, capsize=2, label=rec["label"])
            if not context.scaled:
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
    note = " (scaled profile: not comparable to the paper)" if context.scaled else ""
    fig.suptitle(f"{table.title}, profile {context.profile}{note}", fontsize=9)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))


def summarise(table: Table, wide: pd.DataFrame) -> list[str]:
    """Per task: the best row on the primary metric, and whether every pretrained init beats random."""
    lines = []
    for task in table.tasks:
        key = f"{task.primary.label} | mean"
        done = wide[wide[key].notna()]
        if done.empty:
            lines.append(f"{table.name} {task.name}: no finished cells")
            continue
        best = done.loc[done[key].idxmax()]
        text = f"{table.name} {task.name}: best {best['label']} ({task.primary.name} {best[key]:.1f})"
        random = done[done["row"] == "random"]
        if random.empty:
            lines.append(text + "; random init not run")
            continue
        baseline = float(random[key].iloc[0])
        pretrained = done[done["row"] != "random"]
        if pretrained.empty:
            lines.append(text + "; no pretrained init finished")
            continue
        losers = [f"{r['label']} {r[key]:.1f}" for _, r in pretrained.iterrows() if r[key] <= baseline]
        verdict = "yes" if not losers else f"NO ({', '.join(losers)} <= random {baseline:.1f})"
        lines.append(text + f"; every pretrained init beats random ({baseline:.1f}): {verdict}")
    return lines


def build_report(
    long: pd.DataFrame, reference: pd.DataFrame, results_dir: Path, context: ReportContext
) -> list[str]:
    """Writes results.csv and, per table with results, tableN.{csv,md,png}; returns the summary lines."""
    results_dir = Path(results_dir)
    write_csv(long, results_dir / "results.csv")
    summary = []
    for table in TABLES:
        if not (long["table"] == table.name).any():
            continue
        wide = wide_table(long, reference, table, context.scaled)
        write_csv(wide.round(4), results_dir / f"{table.name}.csv")
        atomic_write_text(results_dir / f"{table.name}.md", markdown(table, wide, context))
        bar_chart(table, wide, results_dir / f"{table.name}.png", context)
        summary += summarise(table, wide)
    if summary:
        scaled = f" (scaled profile {context.profile}: not comparable to the paper)" if context.scaled else ""
        atomic_write_text(
            results_dir / "summary.md", f"# Summary{scaled}\n\n" + "\n".join(f"- {s}" for s in summary) + "\n"
        )
    return summary
