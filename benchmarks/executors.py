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

RU_MAXRSS_PER_MB = 1024 * 1024 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux


def wrapped_command(job: Job) -> list[str]:
    """The job's command with its environment added and output appended to its log, in one argv.

    Self-contained (env(1) and sh(1) only), so a SLURM job runs it without importing this package.
    """
    env = [f"{key}={value}" for key, value in job.env.items()]
    return ["env", *env, f"DENSEBENCH_LOG={job.log}", "/bin/sh", "-c", 'exec "$@" >>"$DENSEBENCH_LOG" 2>&1',
            "sh", *job.argv]  # fmt: skip


class LocalExecutor:
    """Subprocesses on this machine; the runner bounds how many run at once (`--jobs`)."""

    def __init__(self, cwd: Path | None = None, threads_per_job: int | None = None):
        self.cwd = str(cwd or Path.cwd())
        # With several jobs at once, split the CPU threads between them unless the user chose a number.
        self.threads: dict[str, str] = {}
        if threads_per_job and "OMP_NUM_THREADS" not in os.environ:
            self.threads = {"OMP_NUM_THREADS": str(threads_per_job), "MKL_NUM_THREADS": str(threads_per_job)}
        self.peak_mb: dict[int, float] = {}  # pid -> peak RSS of the job's largest process

    def start(self, job: Job) -> subprocess.Popen:
        job.log.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.threads, **job.env}
        with open(job.log, "ab") as stream:
            return subprocess.Popen(job.argv, env=env, cwd=self.cwd, stdout=stream, stderr=subprocess.STDOUT)

    def poll(self, handle: subprocess.Popen) -> int | None:
        """Reaps the job with wait4 to read its resource usage.

        The max RSS covers the job's waited-for children and starts at this process's own (the kernel
        keeps the high-water mark of the image an exec replaces): the runner is ~30 MB, so it is the job's.
        """
        if handle.returncode is None:
            pid, status, usage = os.wait4(handle.pid, os.WNOHANG)
            if pid == 0:
                return None
            handle.returncode = os.waitstatus_to_exitcode(status)
            self.peak_mb[handle.pid] = usage.ru_maxrss / RU_MAXRSS_PER_MB
        return handle.returncode

    def peak_memory_mb(self, handle: subprocess.Popen) -> float | None:
        return self.peak_mb.get(handle.pid)

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

    def start(self, job: Job) -> tuple[Any, Path]:
        job.log.parent.mkdir(parents=True, exist_ok=True)
        self.executor.update_parameters(name=job.id.replace("/", "-"), **self.parameters)
        call = functools.partial(subprocess.call, wrapped_command(job), cwd=self.cwd)
        return self.executor.submit(call), job.log

    def poll(self, handle: tuple[Any, Path]) -> int | None:
        submitted, log = handle
        if not submitted.done():
            return None
        try:
            return int(submitted.result())
        except Exception as exc:  # a SLURM-level failure (node lost, time limit): logged, exit -1
            with open(log, "a") as stream:
                stream.write(f"\nsubmitit: SLURM job {submitted.job_id} failed: {exc}\n")
            return -1

    def peak_memory_mb(self, handle: tuple[Any, Path]) -> None:
        """Not tracked on SLURM (`sacct -j <id> -o MaxRSS` has it)."""
        return None

    def cancel(self, handle: tuple[Any, Path]) -> None:
        handle[0].cancel(check=False)
