"""Is an unscaled profile still the paper's protocol? Deltas to the paper's numbers are only honest then.

A profile that says `scaled: false` (the shipped `paper.yaml`, a copy of it, or `paper` with `--set`
overrides) is compared with `paper.yaml` job by job: each pretraining run's config and its effective yacs
overrides (the common ones merged with the run's own), each fine-tuning task's config and overrides (the
`transfer` ones merged with the task's), the linear evaluation, and whether the data is generated. Seeds,
rows, GPUs, output paths and SLURM settings do not change what a cell measures and are not compared.
"""

from __future__ import annotations

from typing import Any

_NOT_SET = object()
_SEED_KEYS = {"SEED"}  # which seed a run uses is the trials' business, not the protocol's


def _section(raw: dict[str, Any], *path: str) -> dict[str, Any]:
    for key in path:
        raw = raw.get(key) or {}
    return dict(raw)


def _effective_jobs(raw: dict[str, Any]) -> dict[str, tuple[Any, dict[str, Any]]]:
    """Profile entry (e.g. `tasks.voc_det`) -> (config file, effective yacs overrides)."""
    jobs = {}
    common_pre = _section(raw, "pretrain", "overrides")
    for key, spec in _section(raw, "pretrain", "runs").items():
        overrides = {**common_pre, **_section(spec or {}, "overrides")}
        jobs[f"pretrain.runs.{key}"] = (
            (spec or {}).get("config"),
            {k: v for k, v in overrides.items() if k not in _SEED_KEYS},
        )
    common_tr = _section(raw, "transfer", "overrides")
    for task, spec in _section(raw, "tasks").items():
        jobs[f"tasks.{task}"] = (
            (spec or {}).get("config"),
            {**common_tr, **_section(spec or {}, "overrides")},
        )
    if raw.get("linear_eval"):
        jobs["linear_eval"] = (raw["linear_eval"].get("config"), _section(raw, "linear_eval", "overrides"))
    return jobs


def protocol_changes(raw: dict[str, Any], paper_raw: dict[str, Any]) -> list[str]:
    """Where the merged profile `raw` departs from the paper's (`paper_raw`, the merged `paper.yaml`), as
    readable items such as `tasks.voc_det SOLVER.MAX_ITER=1000 (paper: the config's value)`; empty when
    every job it runs is the paper's."""
    mine, paper = _effective_jobs(raw), _effective_jobs(paper_raw)
    changes = []
    if (raw.get("data") or {}).get("synthetic"):
        changes.append(f"data.synthetic={raw['data']['synthetic']} (paper: the real datasets)")
    for entry, (config, overrides) in mine.items():
        if entry not in paper:
            changes.append(f"{entry} (not a job of the paper's profile)")
            continue
        paper_config, paper_overrides = paper[entry]
        if config != paper_config:
            changes.append(f"{entry}.config={config} (paper: {paper_config})")
        for key in sorted(set(overrides) | set(paper_overrides)):
            value, reference = overrides.get(key, _NOT_SET), paper_overrides.get(key, _NOT_SET)
            if value != reference:
                shown = "the config's value" if value is _NOT_SET else value
                expected = "the config's value" if reference is _NOT_SET else reference
                changes.append(f"{entry} {key}={shown} (paper: {expected})")
    return changes
