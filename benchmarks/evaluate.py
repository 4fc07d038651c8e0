"""Helpers of `python -m benchmarks evaluate`: a user's checkpoint as a new row of the profile's tables.

The checkpoint is read safely (`torch.load(weights_only=True)`) to find its ResNet depth; a depth other
than the profile's (an R-50 under the R-18 `tiny` profile) switches the backbone keys of its cells and
scales the time estimate by the FLOP ratio of the two depths (torchvision's GFLOPs per 224 px image).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.experiments import ROWS_BY_KEY
from benchmarks.jobs import RESNET_GFLOPS, Job
from benchmarks.profile import BenchmarkError
from benchmarks.runner import format_duration


def checkpoint_depth(path: Path) -> int:
    """ResNet depth of the query/online backbone in `path` (any layout transfer.convert accepts)."""
    from transfer.checkpoint_io import load_torch_checkpoint  # torch: imported only by `evaluate`
    from transfer.convert import choose_prefix, find_state_dict
    from transfer.errors import TransferError
    from transfer.resnet_layout import SUPPORTED_DEPTHS, infer_depth

    try:
        state_dict = find_state_dict(load_torch_checkpoint(path), str(path))
        prefix = choose_prefix(set(state_dict), str(path))
    except TransferError as exc:
        raise BenchmarkError(str(exc)) from exc
    depth = infer_depth({k[len(prefix) :] for k in state_dict if k.startswith(prefix)})
    if depth is None:
        raise BenchmarkError(
            f"Checkpoint {path}: the weights under prefix {prefix!r} match no ResNet depth "
            f"{SUPPORTED_DEPTHS} (torchvision BasicBlock/Bottleneck layout); only ResNet backbones can be "
            "benchmarked."
        )
    return depth


def measured_cell_seconds(state_jobs: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Mean wall time per task of the finished paper-row cells recorded in state.json."""
    times: dict[str, list[float]] = {}
    for job_id, info in state_jobs.items():
        parts = job_id.split("/")  # cell/<table>/<task>/<row>/seed<k>
        is_paper_cell = len(parts) == 5 and parts[0] == "cell" and parts[3] in ROWS_BY_KEY
        if is_paper_cell and info.get("status") == "done" and info.get("wall_s"):
            times.setdefault(parts[2], []).append(float(info["wall_s"]))
    return {task: sum(v) / len(v) for task, v in times.items()}


def estimate(
    jobs: list[Job],
    state_jobs: dict[str, dict[str, Any]],
    depth: int,
    profile_depth: int,
    parallel: int,
    expected: dict[str, float],
) -> list[str]:
    """Lines stating how long the cells still to run should take, and from what it is estimated: the
    profile's finished cells of each task, else `expected` (the profile's expected_wall_s scaled to this
    machine by the speed probe)."""
    todo = [job for job in jobs if job.kind == "cell" and not job.is_done()]
    if not todo:
        return ["estimate: every cell is already done"]
    measured = measured_cell_seconds(state_jobs)
    ratio = RESNET_GFLOPS[depth] / RESNET_GFLOPS[profile_depth]
    scale = (
        f" x FLOP ratio R-{depth}/R-{profile_depth} = {ratio:.1f} (torchvision GFLOPs "
        f"{RESNET_GFLOPS[depth]} / {RESNET_GFLOPS[profile_depth]} per 224 px image)"
        if depth != profile_depth
        else ""
    )
    known = [job for job in todo if job.cell.task in measured]
    foreseen = [job for job in todo if job.cell.task not in measured and job.duration_key in expected]
    unknown = sorted({job.cell.task for job in todo} - set(measured) - {job.cell.task for job in foreseen})
    lines = []
    if known:
        seconds = sum(measured[job.cell.task] for job in known) * ratio / max(parallel, 1)
        per_task = ", ".join(f"{task} {s:.0f} s" for task, s in sorted(measured.items()))
        lines.append(
            f"estimate: {len(known)} cell(s) ~ {format_duration(seconds)} at {parallel} job(s) at a time "
            f"(mean cell times measured in this profile's state.json: {per_task}){scale}"
        )
    if foreseen:
        seconds = sum(expected[job.duration_key] for job in foreseen) * ratio / max(parallel, 1)
        tasks = ", ".join(sorted({job.cell.task for job in foreseen}))
        lines.append(
            f"estimate: {len(foreseen)} cell(s) of {tasks} ~ {format_duration(seconds)} at {parallel} job(s) "
            f"at a time (the profile's expected_wall_s scaled to this machine by the speed probe){scale}"
        )
    if unknown:
        lines.append(
            f"estimate: no finished cell of {', '.join(unknown)} in this profile's state.json to measure; "
            f"run `reproduce` for those tables first to get an estimate (R-{depth} cells take about "
            f"{ratio:.1f}x an R-{profile_depth} cell)"
        )
    return lines
