"""Where jobs run: local subprocesses (default) or SLURM through submitit (imported only when chosen).

An executor starts a job's command with its environment, stdout+stderr appended to the job's log, and
answers `poll` with the exit code (None while running) and `peak_memory_mb` with the job's peak resident
memory where it knows it. Dependencies are resolved by the runner, so both executors see only jobs whose
inputs exist.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks.jobs import Job


def peak_file(job: Job) -> Path:
    """Where benchmarks.peak_rss writes the job's peak resident memory (beside its log)."""
    return job.log.with_name(job.log.name + ".peak_mb")


def measured_command(job: Job) -> list[str]:
    """The job's command run through benchmarks.peak_rss, which measures its own peak memory."""
    return [sys.executable, "-m", "benchmarks.peak_rss", str(peak_file(job)), "--", *job.argv]


def read_peak_mb(job: Job) -> float | None:
    """The peak written by benchmarks.peak_rss (None when the wrapper itself was killed)."""
    try:
        return float(peak_file(job).read_text())
    except (OSError, ValueError):
        return None


def wrapped_command(job: Job) -> list[str]:
    """The job's measured command with its environment added and output appended to its log, in one argv.

    Self-contained (env(1), sh(1) and the standard-library benchmarks.peak_rss), so a SLURM job runs it
    without importing the rest of this package.
    """
    env = [f"{key}={value}" for key, value in job.env.items()]
    return ["env", *env, f"DENSEBENCH_LOG={job.log}", "/bin/sh", "-c", 'exec "$@" >>"$DENSEBENCH_LOG" 2>&1',
            "sh", *measured_command(job)]  # fmt: skip


class LocalExecutor:
    """Subprocesses on this machine; the runner bounds how many run at once (`--jobs`)."""

    def __init__(self, cwd: Path | None = None, threads_per_job: int | None = None):
        self.cwd = str(cwd or Path.cwd())
        # With several jobs at once, split the CPU threads between them unless the user chose a number.
        self.threads: dict[str, str] = {}
        if threads_per_job and "OMP_NUM_THREADS" not in os.environ:
            self.threads = {"OMP_NUM_THREADS": str(threads_per_job), "MKL_NUM_THREADS": str(threads_per_job)}
        self.jobs: dict[int, Job] = {}  # pid -> job, for its peak-memory file

    def start(self, job: Job) -> subprocess.Popen:
        job.log.parent.mkdir(parents=True, exist_ok=True)
        peak_file(job).unlink(missing_ok=True)
        env = {**os.environ, **self.threads, **job.env}
        with open(job.log, "ab") as stream:
            handle = subprocess.Popen(
                measured_command(job), env=env, cwd=self.cwd, stdout=stream, stderr=subprocess.STDOUT
            )
        self.jobs[handle.pid] = job
        return handle

    def poll(self, handle: subprocess.Popen) -> int | None:
        return handle.poll()

    def peak_memory_mb(self, handle: subprocess.Popen) -> float | None:
        """The job's peak resident memory, measured by benchmarks.peak_rss (see there why a wrapper)."""
        return read_peak_mb(self.jobs[handle.pid])

    def cancel(self, handle: subprocess.Popen) -> None:
        """Terminates a job we started (torchrun forwards the signal to its workers), then waits."""
        if handle.poll() is None:
            handle.terminate()
            try:
                handle.wait(timeout=30)
            except subprocess.TimeoutExpired:
                handle.kill()
                handle.wait()


class SlurmExecutor:
    """Submits each job as one SLURM job with submitit's AutoExecutor (profile key `slurm`)."""

    def __init__(self, folder: Path, parameters: dict[str, Any], cwd: Path | None = None):
        import submitit  # only needed for --executor slurm

        self.cwd = str(cwd or Path.cwd())
        self.executor = submitit.AutoExecutor(folder=str(folder))
        self.parameters = parameters

    def start(self, job: Job) -> tuple[Any, Path, Job]:
        job.log.parent.mkdir(parents=True, exist_ok=True)
        self.executor.update_parameters(name=job.id.replace("/", "-"), **self.parameters)
        call = functools.partial(subprocess.call, wrapped_command(job), cwd=self.cwd)
        return self.executor.submit(call), job.log, job

    def poll(self, handle: tuple[Any, Path, Job]) -> int | None:
        submitted, log, _ = handle
        if not submitted.done():
            return None
        try:
            return int(submitted.result())
        except Exception as exc:  # a SLURM-level failure (node lost, time limit): logged, exit -1
            with open(log, "a") as stream:
                stream.write(f"\nsubmitit: SLURM job {submitted.job_id} failed: {exc}\n")
            return -1

    def peak_memory_mb(self, handle: tuple[Any, Path, Job]) -> float | None:
        """Measured by benchmarks.peak_rss on the node (also in `sacct -j <id> -o MaxRSS`)."""
        return read_peak_mb(handle[2])

    def cancel(self, handle: tuple[Any, Path, Job]) -> None:
        handle[0].cancel(check=False)
