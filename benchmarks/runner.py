"""Runs a job graph resumably: skips finished jobs, isolates failures, records everything in state.json.

A job is done iff its marker exists, so a finished step is never recomputed and an interrupted run
continues where it stopped (the graph builder adds `--resume` where a checkpoint was left). A failing
job is recorded with its log path and error tail; the jobs depending on it are skipped, the others go
on. `output/<profile>/state.json` is rewritten atomically after every change.

A finished job is stale when the graph would no longer compute it this way: its command or dataset root
changed, or a job it depends on is stale, not done, or finished after it started (`stale_jobs`). Stale
jobs are kept with a warning naming them and what to delete, or deleted and redone with `redo_stale`.
An interrupted job whose checkpoint is stale in the same sense is never resumed: it fails with that
message (its checkpoint kept) unless `redo_stale` deletes it and runs the job from scratch.
One runner at a time holds `output/<profile>/.lock` (`OutputLock`), so two runs never share state.json.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.atomic import atomic_write_json, remove_atomic
from benchmarks.jobs import Job
from benchmarks.profile import BenchmarkError

TAIL_LINES = 20  # lines of a failed job's log kept in state.json
# Variables of a job's environment that change no result (the dataset root, DETECTRON2_DATASETS, does).
NO_EFFECT_ENV = frozenset({"PYTHONUNBUFFERED", "OMP_NUM_THREADS", "MKL_NUM_THREADS"})


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def git_revision(cwd: Path | None = None) -> str:
    """`git rev-parse --short HEAD`, suffixed `-dirty` with uncommitted changes; "unknown" outside git."""
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{rev}-dirty" if dirty else rev


def _what_it_computes(argv: list[str]) -> list[str]:
    """argv without what does not change a job's result: the interpreter (argv[0]; another virtualenv
    path runs the same code), `--resume` and `WANDB.* value` pairs. The GPU count of a torchrun launch
    (`--nproc_per_node N`) is kept: it changes the per-GPU batch, hence BatchNorm statistics."""
    kept, skip_value = [], False
    for arg in argv[1:]:
        if skip_value:
            skip_value = False
        elif arg.startswith("WANDB."):
            skip_value = True
        elif arg != "--resume":
            kept.append(arg)
    return kept


def result_env(job: Job) -> dict[str, str]:
    """The variables of the job's environment that change its result (recorded in state.json)."""
    return {key: value for key, value in sorted(job.env.items()) if key not in NO_EFFECT_ENV}


def changed_inputs(job: Job, record: dict[str, Any]) -> str | None:
    """Why the finished job's recorded command or environment differs from what the graph gives now."""
    recorded = record.get("argv")
    if recorded is not None and _what_it_computes(recorded) != _what_it_computes(job.argv):
        return "made by another command than the profile now gives"
    env, now = record.get("env"), result_env(job)
    if env is not None and env != now:
        changed = sorted(key for key in {*env, *now} if env.get(key) != now.get(key))
        return f"made with another {', '.join(changed)}"
    return None


def _started_before(dep_record: dict[str, Any], record: dict[str, Any]) -> bool:
    """True when a dependency finished after the job started: the job read its older output."""
    finished, started = dep_record.get("finished_at"), record.get("started_at")
    if not finished or not started:
        return False
    return datetime.fromisoformat(finished) > datetime.fromisoformat(started)


def resumable(job: Job) -> bool:
    """An unfinished job whose earlier run left a checkpoint: the graph gave it `--resume`."""
    return not job.is_done() and "--resume" in job.argv


def stale_jobs(jobs: list[Job], records: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Finished or resumable jobs the graph would no longer compute this way, job id -> why, in graph order.

    Such a job is stale when its own command or result environment changed since it (last) started
    (`_what_it_computes`, `result_env`), or a dependency is stale, not done (it runs again), or finished
    after the job started. A resumable job is judged like a finished one: resuming would continue a run of
    the old inputs. `jobs` is in dependency order, so one pass carries staleness to every dependant.
    Records without `argv`, `env` or timestamps (older state files) count as unchanged in what they lack.
    """
    in_graph = {job.id for job in jobs}
    done = {job.id for job in jobs if job.is_done()}
    stale: dict[str, str] = {}
    for job in jobs:
        if job.id not in done and not resumable(job):
            continue
        record = records.get(job.id, {})
        reason = changed_inputs(job, record)
        for dep in job.deps:
            if reason is not None:
                break
            if dep in stale:
                reason = f"needs {dep}, which is stale"
            elif dep in in_graph and dep not in done:
                reason = f"needs {dep}, which is not done and runs again"
            elif dep in done and _started_before(records.get(dep, {}), record):
                reason = f"needs {dep}, which finished after it started"
        if reason is not None:
            stale[job.id] = reason
    return stale


def stale_warning(stale: dict[str, str], jobs: list[Job]) -> list[str]:
    """The warning listing the stale jobs, why, and what to delete to redo them (empty when none):
    finished ones are kept, interrupted ones are not resumed."""
    by_id = {job.id: job for job in jobs}
    finished = {job_id: why for job_id, why in stale.items() if by_id[job_id].is_done()}
    interrupted = {job_id: why for job_id, why in stale.items() if job_id not in finished}
    lines = []
    if finished:
        lines += [
            f"warning: {len(finished)} finished job(s) no longer match what the profile computes now; they "
            "are kept, so the tables would mix their old results with new ones:",
            *(f"  {job_id}: {why} (delete {by_id[job_id].output})" for job_id, why in finished.items()),
        ]
    if interrupted:
        lines += [
            f"error: {len(interrupted)} interrupted job(s) left a checkpoint made from other inputs than the "
            "profile now gives; resuming would continue that old run, so they fail (checkpoint kept) and "
            "whatever needs them is skipped:",
            *(f"  {job_id}: {why} (delete {by_id[job_id].output})" for job_id, why in interrupted.items()),
        ]
    if lines:
        lines.append(
            "Add --redo-stale to reproduce (or evaluate) to delete and redo exactly these jobs from scratch, "
            "or delete the paths listed yourself and run it again."
        )
    return lines


class OutputLock:
    """Exclusive use of an output directory by one run: a non-blocking `flock` on `<directory>/.lock`.

    The file records the holder (pid, command, start) for the message a second run gets. The kernel
    releases the lock when the holder's process ends, however it ends, so a crashed run leaves no stale
    lock. Read-only commands (`plan`, `--dry-run`) do not take it.
    """

    def __init__(self, directory: Path):
        self.path = Path(directory) / ".lock"
        self._fd: int | None = None

    def __enter__(self) -> OutputLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise BenchmarkError(self._in_use()) from None
        holder = {"pid": os.getpid(), "command": shlex.join(sys.orig_argv), "since": now_iso()}
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps(holder) + "\n").encode())
        self._fd = fd
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the lock; the file stays (unlinking it would race a new holder)
            self._fd = None

    def _in_use(self) -> str:
        try:
            holder = json.loads(self.path.read_text())
            who = f"pid {holder['pid']} (`{holder['command']}`, since {holder['since']})"
            stop = f"stop it (kill {holder['pid']})"
        except (OSError, ValueError, KeyError, TypeError):
            who, stop = "another process", "stop it"
        return (
            f"{self.path.parent} is in use by another run: {who} holds {self.path}. Two runs on one output "
            "directory would overwrite each other's state.json and start the same jobs twice. Wait for it "
            f"to finish, or {stop} if it should not run, then run this command again; `plan` works meanwhile."
        )


def log_tail(path: Path, start: int = 0, lines: int = TAIL_LINES) -> str:
    """The last lines a job wrote to its log from byte `start` on (logs are appended across runs)."""
    try:
        with open(path, "rb") as stream:
            stream.seek(start)
            text = stream.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class StateFile:
    """`state.json`: per job id its status, log, timings, exit code and error tail (atomic writes)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.data: dict[str, Any] = self._read()

    def _read(self) -> dict[str, Any]:
        if not self.path.exists():
            return {"jobs": {}}
        try:
            return json.loads(self.path.read_text())
        except json.JSONDecodeError as exc:
            raise BenchmarkError(
                f"State file {self.path} is not valid JSON ({exc}). Job markers decide what is done, so "
                "deleting it and running the same command again redoes nothing; but it also records the "
                "command each job ran with, so stale jobs made before the deletion can no longer be told."
            ) from exc

    def reload(self) -> None:
        """Reads the file again: what another run wrote before this one took the output lock."""
        self.data = self._read()

    @property
    def jobs(self) -> dict[str, dict[str, Any]]:
        return self.data["jobs"]

    @property
    def launch(self) -> dict[str, Any]:
        """How the last run started its jobs: {"executor": "local" | "slurm", "num_gpus": N} (or {})."""
        return self.data.get("launch") or {}

    def update(self, job_id: str, **fields: Any) -> None:
        self.jobs.setdefault(job_id, {}).update(fields)
        self.data["updated_at"] = now_iso()
        atomic_write_json(self.path, self.data)


@dataclass
class RunResult:
    """Final status of every job of the graph."""

    status: dict[str, str] = field(default_factory=dict)  # job id -> done | failed | skipped

    def ids(self, status: str) -> list[str]:
        return [job_id for job_id, s in self.status.items() if s == status]

    @property
    def ok(self) -> bool:
        return all(s == "done" for s in self.status.values())


def format_duration(seconds: float) -> str:
    seconds = int(seconds)
    return (
        f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
        if seconds >= 3600
        else f"{seconds // 60}m{seconds % 60:02d}s"
    )


def job_seconds(
    jobs: dict[str, Job], state_jobs: dict[str, dict[str, Any]], expected: dict[str, float]
) -> Callable[[Job], float] | None:
    """How long a job should take: the mean wall time of the finished jobs of its duration key in
    state.json (this and earlier runs), else `expected` (the profile's expectation for this machine), else
    the mean of every finished job. None when nothing is known yet."""
    durations: dict[str, list[float]] = {}
    for job_id, info in state_jobs.items():
        if info.get("status") == "done" and info.get("wall_s") and job_id in jobs:
            durations.setdefault(jobs[job_id].duration_key, []).append(info["wall_s"])
    known = {**expected, **{key: sum(v) / len(v) for key, v in durations.items()}}
    if not known:
        return None
    measured = [s for v in durations.values() for s in v]
    fallback = sum(measured) / len(measured) if measured else sum(known.values()) / len(known)
    return lambda job: known.get(job.duration_key, fallback)


class Runner:
    """Schedules `jobs` (dependency order) on `executor`, at most `max_parallel` at a time, holding the
    output lock of the state file's directory; `redo_stale` deletes and reruns the stale jobs."""

    def __init__(
        self,
        jobs: list[Job],
        state: StateFile,
        executor: Any,
        max_parallel: int = 1,
        echo: Callable[[str], None] = print,
        poll_interval: float = 0.2,
        git_rev: str | None = None,
        expected: dict[str, float] | None = None,
        redo_stale: bool = False,
    ):
        self.jobs = {job.id: job for job in jobs}
        self.state = state
        self.executor = executor
        self.max_parallel = max(1, max_parallel)
        self.echo = echo
        self.poll_interval = poll_interval
        self.git_rev = git_rev if git_rev is not None else git_revision()
        self.expected = dict(expected or {})  # duration key -> seconds expected here, before any is measured
        self.redo_stale = redo_stale
        self.status: dict[str, str] = {}
        self.running: dict[str, tuple[Any, float]] = {}  # job id -> (executor handle, start time)
        self.log_start: dict[str, int] = {}  # job id -> size of its log when it started this time
        self.started = time.monotonic()

    def run(self, launch: dict[str, Any] | None = None) -> RunResult:
        """Runs until every job is done, failed or skipped; Ctrl-C/SIGTERM stops the running jobs.
        `launch` (executor, GPUs per job) is recorded in state.json for `plan`. Raises BenchmarkError at
        once when another run holds the output lock."""
        with OutputLock(self.state.path.parent):
            self.state.reload()
            if launch:
                self.state.data["launch"] = launch
                atomic_write_json(self.state.path, self.state.data)
            return self._run_locked()

    def _run_locked(self) -> RunResult:
        for job in self.jobs.values():
            self.status[job.id] = "done" if job.is_done() else "pending"
            if self.status[job.id] == "done" and self.state.jobs.get(job.id, {}).get("status") != "done":
                self.state.update(job.id, status="done", log=str(job.log), marker=str(job.marker))
        self._handle_stale()
        previous = signal.signal(signal.SIGTERM, _raise_interrupt) if _main_thread() else None
        try:
            self._loop()
        except BaseException as exc:  # Ctrl-C, SIGTERM, or an executor error (e.g. sbatch refused)
            for job_id, (handle, _) in list(self.running.items()):
                self.executor.cancel(handle)  # never leave a SLURM job running that nothing tracks
                self.state.update(job_id, status="interrupted", finished_at=now_iso())
            cause = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"stopped by {exc!r}"
            self.echo(f"{cause}: {len(self.running)} running job(s) stopped; run the same command to resume")
            raise
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        return RunResult({job_id: s for job_id, s in self.status.items()})

    def _handle_stale(self) -> None:
        """Warns about the stale jobs and fails the stale resumable ones (`stale_jobs`), or with
        `redo_stale` deletes their output and runs them again from scratch (the `--resume` the graph
        builder added for a now deleted checkpoint is dropped)."""
        stale = stale_jobs(list(self.jobs.values()), self.state.jobs)
        if not self.redo_stale:
            for line in stale_warning(stale, list(self.jobs.values())):
                self.echo(line)
            for job_id, reason in stale.items():
                job = self.jobs[job_id]
                if resumable(job):
                    self.status[job_id] = "failed"
                    self.state.update(
                        job_id,
                        status="failed",
                        error_tail=f"not resumed: its checkpoint is stale ({reason}); --redo-stale restarts "
                        f"it from scratch, or delete {job.output}",
                    )
            return
        for job_id, reason in stale.items():
            job = self.jobs[job_id]
            remove_atomic(job.output)
            self.jobs[job_id] = replace(job, argv=[arg for arg in job.argv if arg != "--resume"])
            self.status[job_id] = "pending"
            self.echo(f"redo {job_id} ({reason}): deleted {job.output}")

    def _loop(self) -> None:
        self._progress("start")
        while True:
            self._skip_blocked()
            for job in self.jobs.values():
                if len(self.running) >= self.max_parallel:
                    break
                if self.status[job.id] == "pending" and all(self.status.get(d) == "done" for d in job.deps):
                    self._start(job)
            if not self.running:
                break
            time.sleep(self.poll_interval)
            for job_id, (handle, start) in list(self.running.items()):
                code = self.executor.poll(handle)
                if code is not None:
                    del self.running[job_id]
                    peak_mb = self.executor.peak_memory_mb(handle)
                    self._finish(self.jobs[job_id], code, time.monotonic() - start, peak_mb)

    def _skip_blocked(self) -> None:
        for job in self.jobs.values():  # dependency order: one pass propagates skips transitively
            if self.status[job.id] != "pending":
                continue
            blocked = [
                d for d in job.deps if self.status.get(d, "missing") in {"failed", "skipped", "missing"}
            ]
            if blocked:
                self.status[job.id] = "skipped"
                self.state.update(
                    job.id,
                    status="skipped",
                    log=str(job.log),
                    error_tail=f"skipped: dependency {blocked[0]} did not finish",
                )
                self._progress(f"skipped {job.id} (needs {blocked[0]})")

    def _start(self, job: Job) -> None:
        self.state.update(
            job.id,
            status="running",
            log=str(job.log),
            argv=job.argv,
            env=result_env(job),
            started_at=now_iso(),
            error_tail="",
            returncode=None,
        )
        self.log_start[job.id] = job.log.stat().st_size if job.log.exists() else 0
        try:
            handle = self.executor.start(job)
        except Exception as exc:  # a missing interpreter (OSError), submitit's refused sbatch, ...
            self._fail(job, None, f"could not start {job.argv[0]}: {exc!r}", 0.0)
            return
        self.running[job.id] = (handle, time.monotonic())
        self.status[job.id] = "running"
        self._progress(f"start   {job.id}")

    def _finish(self, job: Job, code: int, wall_s: float, peak_mb: float | None) -> None:
        if code == 0 and job.is_done():
            for pattern in job.cleanup:
                for path in pattern.parent.glob(pattern.name):
                    path.unlink()
            self.status[job.id] = "done"
            self.state.update(
                job.id,
                status="done",
                returncode=0,
                finished_at=now_iso(),
                wall_s=round(wall_s, 2),
                peak_rss_mb=None if peak_mb is None else round(peak_mb),
                git_rev=self.git_rev,
                marker=str(job.marker),
            )
            memory = "" if peak_mb is None else f", {peak_mb / 1024:.1f} GB"
            self._progress(f"done    {job.id} ({wall_s:.1f}s{memory})")
            return
        reason = f"exit code {code}" if code != 0 else f"exit code 0 but {job.marker} was not written"
        tail = log_tail(job.log, self.log_start.get(job.id, 0))
        self._fail(job, code, f"{reason}; log: {job.log}\n{tail}", wall_s)

    def _fail(self, job: Job, code: int | None, tail: str, wall_s: float) -> None:
        self.status[job.id] = "failed"
        self.state.update(
            job.id,
            status="failed",
            returncode=code,
            finished_at=now_iso(),
            wall_s=round(wall_s, 2),
            error_tail=tail,
        )
        self._progress(f"FAILED  {job.id} (log: {job.log})")

    def _eta(self) -> str:
        """Expected duration of the pending jobs plus what the running ones have left, over the
        parallelism (see `job_seconds`)."""
        seconds = job_seconds(self.jobs, self.state.jobs, self.expected)
        if seconds is None:
            return "?"
        left = sum(seconds(j) for j in self.jobs.values() if self.status[j.id] == "pending")
        now = time.monotonic()
        left += sum(max(seconds(self.jobs[i]) - (now - s), 0) for i, (_, s) in self.running.items())
        return format_duration(left / self.max_parallel)

    def _progress(self, event: str) -> None:
        counts = {
            s: sum(1 for v in self.status.values() if v == s)
            for s in ("done", "running", "failed", "pending")
        }
        skipped = sum(1 for v in self.status.values() if v == "skipped")
        elapsed = format_duration(time.monotonic() - self.started)
        self.echo(
            f"[{datetime.now():%H:%M:%S}] {event:<60} | {counts['done']}/{len(self.status)} done, "
            f"{counts['running']} running, {counts['failed']} failed"
            + (f", {skipped} skipped" if skipped else "")
            + f", {counts['pending']} pending | {elapsed} elapsed, ETA {self._eta()}"
        )


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()
