"""Runs a job graph resumably: skips finished jobs, isolates failures, records everything in state.json.

A job is done iff its marker exists, so a finished step is never recomputed and an interrupted run
continues where it stopped (the graph builder adds `--resume` where a checkpoint was left). A failing
job is recorded with its log path and error tail; the jobs depending on it are skipped, the others go
on. `output/<profile>/state.json` is rewritten atomically after every change.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.atomic import atomic_write_json
from benchmarks.jobs import Job
from benchmarks.profile import BenchmarkError

TAIL_LINES = 20  # lines of a failed job's log kept in state.json


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
    """argv without what does not change a job's result: `--resume` and `WANDB.* value` pairs."""
    kept, skip_value = [], False
    for arg in argv:
        if skip_value:
            skip_value = False
        elif arg.startswith("WANDB."):
            skip_value = True
        elif arg != "--resume":
            kept.append(arg)
    return kept


def is_stale(job: Job, record: dict[str, Any]) -> bool:
    """True when a finished job was made by another command than the current one (profile changed)."""
    recorded = record.get("argv")
    if recorded is None:
        return False
    return _what_it_computes(recorded) != _what_it_computes(job.argv)


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
        self.data: dict[str, Any] = {"jobs": {}}
        if self.path.exists():
            try:
                self.data = json.loads(self.path.read_text())
            except json.JSONDecodeError as exc:
                raise BenchmarkError(
                    f"State file {self.path} is not valid JSON ({exc}). It only records history (job "
                    "markers decide what is done): delete it and run the same command again."
                ) from exc

    @property
    def jobs(self) -> dict[str, dict[str, Any]]:
        return self.data["jobs"]

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
    """Schedules `jobs` (dependency order) on `executor`, at most `max_parallel` at a time."""

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
    ):
        self.jobs = {job.id: job for job in jobs}
        self.state = state
        self.executor = executor
        self.max_parallel = max(1, max_parallel)
        self.echo = echo
        self.poll_interval = poll_interval
        self.git_rev = git_rev if git_rev is not None else git_revision()
        self.expected = dict(expected or {})  # duration key -> seconds expected here, before any is measured
        self.status: dict[str, str] = {}
        self.running: dict[str, tuple[Any, float]] = {}  # job id -> (executor handle, start time)
        self.log_start: dict[str, int] = {}  # job id -> size of its log when it started this time
        self.started = time.monotonic()

    def run(self) -> RunResult:
        """Runs until every job is done, failed or skipped; Ctrl-C/SIGTERM stops the running jobs."""
        stale = []
        for job in self.jobs.values():
            self.status[job.id] = "done" if job.is_done() else "pending"
            record = self.state.jobs.get(job.id, {})
            if self.status[job.id] == "done" and record.get("status") != "done":
                self.state.update(job.id, status="done", log=str(job.log), marker=str(job.marker))
            if self.status[job.id] == "done" and is_stale(job, record):
                stale.append(job.id)
        if stale:
            self.echo(
                f"warning: {len(stale)} finished job(s) were made with another command than the profile now "
                f"gives (e.g. {stale[0]}); they are kept. Delete their output directories to redo them."
            )
        previous = signal.signal(signal.SIGTERM, _raise_interrupt) if _main_thread() else None
        try:
            self._loop()
        except KeyboardInterrupt:
            for job_id, (handle, _) in list(self.running.items()):
                self.executor.cancel(handle)
                self.state.update(job_id, status="interrupted", finished_at=now_iso())
            self.echo(
                f"interrupted: {len(self.running)} running job(s) stopped; run the same command to resume"
            )
            raise
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        return RunResult({job_id: s for job_id, s in self.status.items()})

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
            started_at=now_iso(),
            error_tail="",
            returncode=None,
        )
        self.log_start[job.id] = job.log.stat().st_size if job.log.exists() else 0
        try:
            handle = self.executor.start(job)
        except OSError as exc:
            self._fail(job, None, f"could not start {job.argv[0]}: {exc}", 0.0)
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
