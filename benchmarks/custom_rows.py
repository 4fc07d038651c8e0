"""Rows for checkpoints the user brings (`python -m benchmarks evaluate`), kept in custom_rows.json.

`output/<profile>/custom_rows.json` maps NAME -> {checkpoint, sha256, depth, added_at}; it is rewritten
atomically. `report` reads it so the rows stay in every rebuilt table. A NAME is bound to one checkpoint
(by sha256): a different file under the same NAME is refused unless the user forces it, which also deletes
the converted weights and cells made from the old file.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from benchmarks.atomic import atomic_write_json, remove_atomic
from benchmarks.experiments import TABLE_OF_TASK, Row
from benchmarks.profile import BenchmarkError

CUSTOM_ROWS_FILE = "custom_rows.json"
NAME_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")  # a directory name and a CSV value, no spaces


def custom_row(name: str, record: dict[str, Any]) -> Row:
    """The table row of one registered checkpoint."""
    return Row(
        "custom",
        "unknown",
        f"{name} (custom)",
        variant=name,
        checkpoint=str(record["checkpoint"]),
        depth=int(record["depth"]),
    )


class CustomRows:
    """The registry of one profile's output directory."""

    def __init__(self, output_dir: Path):
        self.output_dir = Path(output_dir)
        self.path = self.output_dir / CUSTOM_ROWS_FILE
        self.records: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            try:
                self.records = json.loads(self.path.read_text())["rows"]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise BenchmarkError(
                    f"{self.path} is not a valid custom-row registry ({exc}); expected "
                    '{"rows": {NAME: {"checkpoint", "sha256", "depth", "added_at"}}}. Fix or delete it, then '
                    "run `evaluate` again for each of your checkpoints."
                ) from exc

    def rows(self) -> tuple[Row, ...]:
        return tuple(custom_row(name, record) for name, record in self.records.items())

    def check(self, name: str, checkpoint: Path, sha256: str, taken: set[str], force: bool) -> bool:
        """Validates NAME for `checkpoint`; True when it replaces another checkpoint (only with `force`).

        `taken` are the row keys of the profile (paper rows, ablation variants) a NAME may not shadow.
        """
        if not NAME_PATTERN.fullmatch(name):
            raise BenchmarkError(
                f"--name {name!r} is not a safe identifier: it names directories and CSV rows, so it must "
                "start with a letter and use only letters, digits, '_', '.', '-' (at most 64), e.g. "
                "--name byol_r50_ep300."
            )
        if name in taken:
            raise BenchmarkError(
                f"--name {name!r} is a built-in row of this profile; pick another name for your checkpoint."
            )
        old = self.records.get(name)
        if old is None or old["sha256"] == sha256:
            return False
        if not force:
            raise BenchmarkError(
                f"--name {name!r} already holds {old['checkpoint']} (sha256 {old['sha256'][:12]}...), not "
                f"{checkpoint} (sha256 {sha256[:12]}...). Pick another --name, or pass --force to replace it "
                "(its converted weights and finished cells are deleted and redone)."
            )
        return True

    def register(
        self, name: str, checkpoint: Path, sha256: str, depth: int, added_at: str, replace: bool
    ) -> list[Path]:
        """Binds NAME to `checkpoint` (after `check`); with `replace`, deletes the outputs of the old one
        and returns them. Rewrites the registry only when something changed (a re-run is a no-op)."""
        removed = self._delete_outputs(name) if replace else []
        old = self.records.get(name)
        record = {"checkpoint": str(checkpoint.resolve()), "sha256": sha256, "depth": depth}
        if old is None or replace or any(old.get(k) != v for k, v in record.items()):
            self.records[name] = record | {"added_at": old["added_at"] if old and not replace else added_at}
            atomic_write_json(self.path, {"rows": self.records})
        return removed

    def _delete_outputs(self, name: str) -> list[Path]:
        """Converted weights and every cell directory of NAME (made from the checkpoint being replaced)."""
        homes = {(table.name, task) for task, table in TABLE_OF_TASK.items()}
        paths = [self.output_dir / "weights" / f"{name}.pkl"]
        paths += [self.output_dir / table / task / name for table, task in sorted(homes)]
        removed = [p for p in paths if p.exists()]
        for path in removed:
            remove_atomic(path)
        return removed
