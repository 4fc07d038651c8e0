"""Collects every finished cell's metrics.json into one long table (one row per metric value).

Cells are found on disk (`output/<profile>/<table>/<task>/<row>/seed<k>/metrics.json`), so a report can
be rebuilt from whatever exists, including seeds or rows beyond the profile's defaults. Job information
(git revision, finish time) comes from `state.json` when the runner recorded it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks.atomic import atomic_write
from benchmarks.experiments import ROWS_BY_KEY, TABLE_OF_TASK, TASKS, Row
from benchmarks.profile import BenchmarkError

LONG_COLUMNS = [
    "profile", "table", "task", "dataset", "row", "init", "pretrain_data", "seed", "metric", "value",
    "config", "checkpoint", "git_rev", "iters", "wall_s", "finished_at",
    "ims_per_batch", "base_lr",  # effective batch and (linearly scaled) learning rate of the fine-tuning
]  # fmt: skip


def _read_metrics(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
        if not isinstance(data.get("metrics"), dict):
            raise ValueError("no 'metrics' mapping")
    except (OSError, ValueError) as exc:
        raise BenchmarkError(
            f"Cell result {path} is not a valid metrics.json ({exc}); expected the file written by "
            "transfer.train_net. Delete it (and its directory) and run `reproduce` again to redo the cell."
        ) from exc
    return data


def collect(
    profile: str,
    output_dir: Path,
    state_jobs: dict[str, dict[str, Any]] | None = None,
    git_rev: str = "unknown",
    rows: Mapping[str, Row] | None = None,
) -> pd.DataFrame:
    """Long results of every finished cell under `output_dir`, sorted like the paper's tables.

    `rows` are the row keys to collect (default the paper's six; `Matrix.rows` adds ablation variants and
    custom rows); `table` is the table owning the task (the cell's directory), `row` the row key.
    """
    state_jobs = state_jobs or {}
    rows = rows if rows is not None else ROWS_BY_KEY
    records = []
    for path in sorted(Path(output_dir).glob("table*/*/*/seed*/metrics.json")):
        run_dir = path.parent
        table, task_name, row_key = run_dir.parts[-4], run_dir.parts[-3], run_dir.parts[-2]
        seed_text = run_dir.name.removeprefix("seed")
        if task_name not in TASKS or TABLE_OF_TASK[task_name].name != table or row_key not in rows:
            continue
        if not seed_text.isdigit():
            continue
        data = _read_metrics(path)
        row, task = rows[row_key], TASKS[task_name]
        job = state_jobs.get(f"cell/{table}/{task_name}/{row_key}/{run_dir.name}", {})
        finished = job.get("finished_at") or datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat(
            timespec="seconds"
        )
        dumped = run_dir / "config.yaml"
        for metric, value in data["metrics"].items():
            records.append({
                "profile": profile, "table": table, "task": task_name, "dataset": task.dataset,
                "row": row_key, "init": row.method, "pretrain_data": row.pretrain_data,
                "seed": int(seed_text), "metric": metric, "value": float(value),
                "config": str(dumped) if dumped.exists() else data.get("config_file", ""),
                "checkpoint": data.get("weights", ""), "git_rev": job.get("git_rev", git_rev),
                "iters": data.get("iters"), "wall_s": data.get("wall_s"), "finished_at": finished,
                "ims_per_batch": data.get("ims_per_batch"), "base_lr": data.get("base_lr"),
            })  # fmt: skip
    return pd.DataFrame.from_records(records, columns=LONG_COLUMNS)


def write_csv(df: pd.DataFrame, path: Path) -> None:
    """Writes a DataFrame as CSV atomically."""
    atomic_write(path, lambda tmp: df.to_csv(tmp, index=False))


def read_reference(path: Path) -> pd.DataFrame:
    """results/paper_reference.csv: table, task, dataset, init, pretrain_data, ..., metric, value, source."""
    try:
        return pd.read_csv(path)
    except (OSError, pd.errors.ParserError) as exc:
        raise BenchmarkError(
            f"Paper reference {path} could not be read ({exc}); it is committed data in the repository: "
            "restore it with git (results/paper_reference.csv)."
        ) from exc
