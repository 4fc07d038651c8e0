"""`python -m benchmarks`: what reproduce, evaluate, plan, report, make-data and check-data do (their
arguments and help are in `benchmarks.cli_args`)."""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import functools
import os
import shlex
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from benchmarks.atomic import atomic_write_json
from benchmarks.cli_args import build_parser
from benchmarks.custom_rows import CustomRows
from benchmarks.jobs import (
    MAKE_DATA_STAMPS,
    CommandBuilder,
    Job,
    Selection,
    build_graph,
    log_to_wandb,
    make_data_stamp,
    preflight,
)
from benchmarks.matrix import Matrix
from benchmarks.profile import BenchmarkError, Profile, load_profile

REFERENCE_CSV = Path(__file__).resolve().parents[1] / "results" / "paper_reference.csv"
echo = functools.partial(print, flush=True)


def effective_gpus(requested: int, executor: str) -> int:
    """GPUs per job: the request on SLURM (compute nodes decide); locally only when CUDA is present."""
    if requested <= 1 or executor == "slurm":
        return max(requested, 1)
    import torch

    available = torch.cuda.device_count()
    if available < requested:
        echo(
            f"warning: {requested} GPUs per job requested, {available} CUDA device(s) here; using "
            f"{max(available, 1)} process(es) per job (batch-size scaling is logged by each job)"
        )
    return max(min(requested, available), 1)


def _selection(args: argparse.Namespace) -> Selection:
    return Selection(tables=args.tables, rows=args.rows, seeds=args.seeds)


def _matrix(profile: Profile) -> Matrix:
    """The profile's rows and tables, with the custom rows registered by `evaluate`."""
    return Matrix(profile, CustomRows(profile.output_dir).rows())


def _resolve_launch(args: argparse.Namespace, profile: Profile) -> None:
    """Fills --executor and --num-gpus when not given: local with the profile's GPUs, except that a dry run
    (`plan`) plans like the last run recorded in state.json. Its commands (GPU count, launcher) then equal
    that run's, so they are not reported stale because this machine, e.g. a GPU-less login node, has no
    GPUs."""
    from benchmarks.runner import StateFile

    recorded = StateFile(profile.output_dir / "state.json").launch if args.dry_run else {}
    if args.executor is None:
        args.executor = recorded.get("executor", "local")
    if args.num_gpus is None:
        args.num_gpus = recorded.get("num_gpus", profile.num_gpus)


def _graph(args: argparse.Namespace, profile: Profile, matrix: Matrix) -> list[Job]:
    commands = CommandBuilder(num_gpus=effective_gpus(args.num_gpus, args.executor))
    jobs = build_graph(profile, _selection(args), commands, matrix)
    return log_to_wandb(jobs, args.wandb, profile.name) if args.wandb else jobs


def print_plan(profile: Profile, jobs: list[Job]) -> None:
    """Every job with its status, command, log and marker (the caller refuses what preflight found after
    it)."""
    from benchmarks.runner import StateFile, stale_jobs, stale_warning

    stale = stale_jobs(jobs, StateFile(profile.output_dir / "state.json").jobs)
    label = (
        " [off the paper's protocol]" if profile.protocol_changes else " [scaled]" if profile.scaled else ""
    )
    echo(f"profile {profile.name} ({profile.source}){label}")
    _say_protocol_changes(profile)
    echo(f"DETECTRON2_DATASETS={jobs[0].env['DETECTRON2_DATASETS'] if jobs else profile.data_root_spec}")
    done = sum(job.is_done() for job in jobs)
    echo(f"{len(jobs)} jobs, {done} done, {len(jobs) - done} to run")
    for line in stale_warning(stale, jobs):
        echo(line)
    for job in jobs:
        status = "done" if job.is_done() else "todo"
        if job.id in stale:
            status += f", stale: {stale[job.id]}" if job.is_done() else f", stale checkpoint: {stale[job.id]}"
        echo(f"\n[{status}] {job.id}" + (f"  (after {', '.join(job.deps)})" if job.deps else ""))
        echo(f"  {shlex.join(job.argv)}")
        echo(f"  log: {job.log}   done when: {job.marker}")


def cmd_reproduce(args: argparse.Namespace) -> int:
    profile = load_profile(args.profile, args.set)
    _resolve_launch(args, profile)
    matrix = _matrix(profile)
    jobs = _graph(args, profile, matrix)
    problems = preflight(profile, _selection(args), matrix)
    if args.dry_run:
        print_plan(profile, jobs)
        _print_estimate(profile, jobs, args.jobs, _expected_here(args, profile, jobs))
        _refuse(profile, problems)  # a plan shows what would run, then why it cannot
        return 0
    _refuse(profile, problems)
    _say_protocol_changes(profile)
    return _execute(args, profile, jobs, _expected_here(args, profile, jobs))


def _say_protocol_changes(profile: Profile) -> None:
    if profile.protocol_changes:
        echo(
            f"profile {profile.name} departs from the paper's protocol (the report computes no deltas to the "
            "paper) in: " + "; ".join(profile.protocol_changes)
        )


def _refuse(profile: Profile, problems: list[str]) -> None:
    """Stops a run that preflight found pointless, before the speed probe or any job spends time on it;
    after a dry run's plan, makes it exit non-zero with the same message."""
    if problems:
        raise BenchmarkError(f"Profile {profile.name} cannot run: " + " ".join(problems))


def _print_estimate(profile: Profile, jobs: list[Job], parallel: int, expected: dict[str, float]) -> None:
    """The last line of a dry run: how long the jobs still to run should take on this machine."""
    from benchmarks.runner import StateFile, format_duration, job_seconds

    todo = [job for job in jobs if not job.is_done()]
    if not todo:
        return
    recorded = StateFile(profile.output_dir / "state.json").jobs
    seconds = job_seconds({job.id: job for job in jobs}, recorded, expected)
    if seconds is None:
        echo(
            "\nestimate: none (the profile sets no expected_wall_s and state.json holds no finished job of "
            "this graph)"
        )
        return
    left = format_duration(sum(seconds(job) for job in todo) / parallel)
    echo(
        f"\nestimate: {len(todo)} job(s) to run ~ {left} at {parallel} job(s) at a time (jobs of a kind "
        "already finished in state.json count at their mean, the others at the profile's expectation)"
    )


def cmd_evaluate(args: argparse.Namespace) -> int:
    from benchmarks.custom_rows import custom_row
    from benchmarks.evaluate import checkpoint_depth, estimate
    from benchmarks.experiments import ABLATIONS_BY_NAME
    from benchmarks.runner import OutputLock, StateFile, now_iso
    from pretrain.checkpoint import file_sha256

    profile = load_profile(args.profile, args.set)
    _resolve_launch(args, profile)
    checkpoint = Path(args.checkpoint)
    if not checkpoint.is_file():
        raise BenchmarkError(
            f"--checkpoint {checkpoint} is not a file; pass a ResNet checkpoint (.pth, .pth.tar, .ckpt: "
            "ours, official DenseCL/MoCo releases, torchvision state dicts)."
        )
    ablations = [t for t in _selection(args).table_names if t in ABLATIONS_BY_NAME]
    if ablations:
        raise BenchmarkError(
            f"--tables {','.join(ablations)}: ablation tables compare pretraining variants of DenseCL "
            "(COCO), not user checkpoints; choose from 1,2,3,table_linear."
        )
    registry = CustomRows(profile.output_dir)
    sha256, depth = file_sha256(checkpoint), checkpoint_depth(checkpoint)
    replace = registry.check(args.name, checkpoint, sha256, set(Matrix(profile).rows), args.force)
    record = {"checkpoint": str(checkpoint.resolve()), "depth": depth}
    others = tuple(row for row in registry.rows() if row.key != args.name)
    matrix = Matrix(profile, (*others, custom_row(args.name, record)))
    args.rows = (args.name,)
    problems = preflight(profile, _selection(args), matrix)
    if not args.dry_run:
        _refuse(profile, problems)
    echo(f"{args.name}: ResNet-{depth} checkpoint {checkpoint} (sha256 {sha256[:12]}...)")
    if depth != profile.backbone_depth:
        echo(
            f"{args.name}: the {profile.name} profile fine-tunes R-{profile.backbone_depth}; this row's "
            f"cells switch to R-{depth} (MODEL.RESNETS.DEPTH {depth}, RES2_OUT_CHANNELS "
            f"{64 if depth < 50 else 256}; MODEL.ARCH resnet{depth} for linear_cls)"
        )
    if replace:
        echo(f"--force: {args.name} now means this checkpoint; the old one's weights and cells are redone")
    if not args.dry_run:
        with OutputLock(profile.output_dir):  # not while another run trains into what --force deletes
            removed = registry.register(args.name, checkpoint, sha256, depth, now_iso(), replace)
        for path in removed:
            echo(f"  removed {path}")
    jobs = _graph(args, profile, matrix)
    state = StateFile(profile.output_dir / "state.json")
    expected = _expected_here(args, profile, jobs)
    for line in estimate(jobs, state.jobs, depth, profile.backbone_depth, args.jobs, expected):
        echo(line)
    if args.dry_run:
        print_plan(profile, jobs)
        _refuse(profile, problems)
        return 0
    return _execute(args, profile, jobs, expected)


def _threads_per_job(args: argparse.Namespace) -> int:
    """Torch threads of each local job: the cores shared among the jobs run at once."""
    return max(1, (os.cpu_count() or 1) // args.jobs)


def _expected_here(args: argparse.Namespace, profile: Profile, jobs: list[Job]) -> dict[str, float]:
    """The profile's expected job durations scaled to this CPU by the speed probe, run with the threads
    each local job gets (local runs with jobs left to run only)."""
    from benchmarks.speed_probe import expected_from_probe

    if args.executor == "slurm" or not profile.expected_wall_s or all(job.is_done() for job in jobs):
        return {}
    expectation = expected_from_probe(profile.expected_wall_s, _threads_per_job(args))
    if expectation is None:
        return {}
    here, there = expectation.probe_s, expectation.reference_probe_s
    echo(
        f"speed probe: {here:.2f} s per ResNet-18 step here, {there:.2f} s where {profile.name}'s "
        f"expected_wall_s ({expectation.calibration}) were measured; estimates scale them by "
        f"{here / there:.2f} until jobs of a kind have finished here"
    )
    return expectation.seconds


def _execute(
    args: argparse.Namespace,
    profile: Profile,
    jobs: list[Job],
    expected: dict[str, float],
) -> int:
    """Runs the graph (resumable; the caller has refused a profile with preflight problems), rebuilds the
    report, prints failures; exit code 0 iff all done.
    `expected`: job duration key -> seconds expected here (`_expected_here`), for the ETA."""
    from benchmarks.executors import LocalExecutor, SlurmExecutor
    from benchmarks.runner import Runner, StateFile

    threads = _threads_per_job(args)
    if args.executor == "slurm":
        executor = SlurmExecutor(profile.output_dir / "slurm", profile.slurm)
    else:
        executor = LocalExecutor(threads_per_job=threads if args.jobs > 1 else None)
    state = StateFile(profile.output_dir / "state.json")
    logs = profile.output_dir / "logs"
    echo(f"profile {profile.name}: {len(jobs)} jobs, state in {state.path}, logs in {logs}")
    redo = args.redo_stale
    launch = {"executor": args.executor, "num_gpus": args.num_gpus}
    runner = Runner(jobs, state, executor, args.jobs, echo=echo, expected=expected, redo_stale=redo)
    result = runner.run(launch)
    _report(profile)
    peaks = {job.id: state.jobs.get(job.id, {}).get("peak_rss_mb") for job in jobs}
    measured = {job_id: mb for job_id, mb in peaks.items() if mb is not None}
    if measured:
        largest = max(measured, key=measured.get)
        echo(f"peak memory: {measured[largest] / 1024:.1f} GB resident, the largest job ({largest})")
    for job_id in result.ids("failed"):
        info = state.jobs[job_id]
        echo(f"\nFAILED {job_id}: log {info.get('log')}\n{info.get('error_tail', '')}")
    if not result.ok:
        failed, skipped = len(result.ids("failed")), len(result.ids("skipped"))
        echo(
            f"\n{failed} job(s) failed, {skipped} skipped; fix the cause and run the same command again "
            "(finished jobs are not recomputed)"
        )
    return 0 if result.ok else 1


def _report(profile: Profile) -> list[str]:
    from benchmarks.collect import collect, read_reference
    from benchmarks.report import ReportContext, build_report
    from benchmarks.runner import StateFile, git_revision

    state = StateFile(profile.output_dir / "state.json")
    matrix = _matrix(profile)
    long = collect(profile.name, profile.output_dir, state.jobs, git_revision(), matrix.rows)
    context = ReportContext(profile.name, profile.scaled, profile.description, profile.protocol_changes)
    views = list(matrix.views.values())
    summary = build_report(long, read_reference(REFERENCE_CSV), profile.results_dir, context, views)
    if long.empty:
        echo(f"no finished cells under {profile.output_dir}; nothing to report")
        return []
    echo(
        f"\nresults in {profile.results_dir}/ (results.csv, <table>.csv|md|png)"
        + (f" - {context.why_not_comparable}: numbers not comparable to the paper" if profile.scaled else "")
    )
    for line in summary:
        echo(f"  {line}")
    return summary


def cmd_report(args: argparse.Namespace) -> int:
    _report(load_profile(args.profile, args.set))
    return 0


@contextlib.contextmanager
def _exclusive(lock_path: Path, holder: str) -> Iterator[None]:
    """Holds an exclusive `flock` on `lock_path`, first saying so when it has to wait for `holder`."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            echo(f"waiting for {holder} to finish ({lock_path})")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def cmd_make_data(args: argparse.Namespace) -> int:
    from benchmarks.synthetic import SyntheticDataError, generate

    root = Path(args.root or f"datasets/synthetic-{args.profile}")
    start = time.monotonic()
    with _exclusive(root.parent / f".{root.name}.make-data.lock", f"another make-data writing {root}"):
        # A stamp marks a runner's data/make job done: none may outlive data that a regeneration (another
        # --seed or --profile) is replacing, should that be interrupted.
        for stamp in root.glob(MAKE_DATA_STAMPS):
            stamp.unlink()
        try:
            manifest = generate(root, args.profile, args.seed)
        except SyntheticDataError as exc:
            raise BenchmarkError(str(exc)) from exc
        wall = time.monotonic() - start
        atomic_write_json(
            root / make_data_stamp(args.profile, args.seed),
            {"profile": args.profile, "seed": args.seed, "wall_s": round(wall, 2)},
        )
    echo(f"synthetic-{args.profile} (seed {args.seed}) ready in {root} after {wall:.1f}s")
    for dataset, splits in manifest.get("counts", {}).items():
        echo(f"  {dataset}: " + ", ".join(f"{split} {count}" for split, count in splits.items()))
    return 0


def cmd_check_data(args: argparse.Namespace) -> int:
    from benchmarks.datacheck import DataCheckError, check_root, format_report

    if args.root:
        root = Path(args.root)
    else:
        profile = load_profile(args.profile or "tiny", args.set)
        if profile.data_root is None:
            raise BenchmarkError(
                f"Profile {profile.name} reads {profile.data_root_spec!r}, which is unset; "
                "export DETECTRON2_DATASETS=/path/to/datasets or pass --root DIR."
            )
        root = profile.data_root
    try:
        problems = check_root(root, datasets=args.datasets)
    except DataCheckError as exc:
        raise BenchmarkError(str(exc)) from exc
    echo(format_report(problems))
    return 1 if problems else 0


COMMANDS = {
    "reproduce": cmd_reproduce,
    "evaluate": cmd_evaluate,
    "plan": cmd_reproduce,  # with dry_run set by the parser
    "report": cmd_report,
    "make-data": cmd_make_data,
    "check-data": cmd_check_data,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except BenchmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
