"""The rows and tables of one profile, resolved once: paper rows, ablation variants and custom rows.

The paper's tables show the six paper rows (and the custom rows of `python -m benchmarks evaluate`);
each ablation table (paper Sec. 4.3) shows one row per value of its pretraining key. The value the main
DenseCL (COCO) run already uses (read from its pretraining config plus the profile's overrides) is that
run itself, so it is never pretrained twice; every other value is a pretraining run of its own, the
main run's config with one key changed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

from benchmarks.experiments import ABLATIONS_BY_NAME, ALL_TABLES, ROWS, ROWS_BY_KEY, Ablation, Row, Table
from benchmarks.profile import BenchmarkError, PretrainRun, Profile, overrides_argv


@dataclass(frozen=True)
class TableView:
    """A table as this profile shows it: its rows in order, and for an ablation the values' context."""

    table: Table
    rows: tuple[Row, ...]
    ablation: Ablation | None = None
    note: str = ""  # ablation: the values of this profile next to the paper's


def pretrain_value(run: PretrainRun, key: str) -> tuple[Any, int]:
    """Value of pretraining `key` (e.g. MODEL.DENSECL.LAMBDA) in `run`, and its DATA.IMAGE_SIZE."""
    from pretrain.config import load_cfg  # fvcore/yacs: imported only when an ablation is resolved
    from pretrain.errors import PretrainError

    try:
        cfg = load_cfg(run.config, overrides_argv(run.overrides))
    except PretrainError as exc:
        raise BenchmarkError(f"Pretrain run {run.key} ({run.config}) cannot be read: {exc}") from exc
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node, int(cfg.DATA.IMAGE_SIZE)


class Matrix:
    """Every row (by key) and table view of `profile`; `custom` are the rows of evaluated checkpoints."""

    def __init__(self, profile: Profile, custom: tuple[Row, ...] = ()):
        self.profile = profile
        self.custom = custom
        clash = [r.key for r in custom if r.key in ROWS_BY_KEY]
        if clash:
            raise BenchmarkError(f"Custom rows {clash} reuse the name of a paper row; pick another --name.")

    def _ablation_view(self, ablation: Ablation) -> TableView:
        base_row = ROWS_BY_KEY[ablation.base_row]
        run = self.profile.pretrain_runs.get(ablation.base_row)
        if run is None:
            raise BenchmarkError(
                f"Profile {self.profile.source} has no pretrain run {ablation.base_row!r}, the base of "
                f"{ablation.table.name}; add pretrain.runs.{ablation.base_row} or leave the table out."
            )
        base_value, image_size = pretrain_value(run, ablation.parameter)
        values = list(self.profile.ablation_values[ablation.table.name])
        if base_value not in values:
            values.append(base_value)  # the main run always stands in its ablation: it is the reference
            if not ablation.choices:
                values.sort()
        rows = []
        for value in values:
            label = f"{ablation.symbol} = {value}"
            if value == base_value:
                rows.append(replace(base_row, label=f"{label} (main {base_row.label} run)"))
            else:
                rows.append(
                    replace(
                        base_row,
                        label=label,
                        variant=ablation.variant(value),
                        pretrain_overrides=((ablation.parameter, value),),
                    )
                )
        ours = ", ".join(map(str, values))
        paper = ", ".join(map(str, ablation.paper_values))
        note = (
            f"{ablation.symbol} ∈ {{{ours}}} with {image_size} px pretraining crops (main run: "
            f"{ablation.symbol} = {base_value}); the paper: {ablation.symbol} ∈ {{{paper}}} at 224 px."
        )
        return TableView(ablation.table, tuple(rows), ablation, note)

    @cached_property
    def views(self) -> dict[str, TableView]:
        """Table name -> view. Ablations whose base run is missing from the profile are left out."""
        views = {
            name: TableView(table, (*ROWS, *self.custom))
            for name, table in ALL_TABLES.items()
            if name not in ABLATIONS_BY_NAME
        }
        for name, ablation in ABLATIONS_BY_NAME.items():
            if ablation.base_row in self.profile.pretrain_runs:
                views[name] = self._ablation_view(ablation)
        return views

    def view(self, name: str) -> TableView:
        if name not in self.views:
            return self._ablation_view(ABLATIONS_BY_NAME[name])  # raises the missing-base-run error
        return self.views[name]

    @cached_property
    def rows(self) -> dict[str, Row]:
        """Every row key of the profile -> its row (paper rows, ablation variants, custom rows)."""
        rows = {row.key: row for row in (*ROWS, *self.custom)}
        for view in self.views.values():
            for row in view.rows:
                rows.setdefault(row.key, row)
        return rows

    def pretrain_run(self, row: Row) -> PretrainRun | None:
        """The pretraining run producing `row`'s weights; None for user-supplied checkpoints."""
        base = self.profile.pretrain_runs.get(row.base_key)
        if base is None or row.method == "custom":
            return None
        if not row.pretrain_overrides:
            return base
        return PretrainRun(row.key, base.config, {**base.overrides, **dict(row.pretrain_overrides)})
