"""One runner per output directory: a second one exits at once naming the holder, `plan` needs no lock,
and the lock of a killed run is gone with its process."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fake_jobs import settings

import benchmarks.__main__ as cli
from benchmarks.executors import LocalExecutor
from benchmarks.jobs import Job
from benchmarks.profile import BenchmarkError
from benchmarks.runner import OutputLock, Runner, StateFile

REPO = Path(__file__).resolve().parents[2]

# A job that signals it started, then waits for a release file before writing its marker.
WAITING_JOB = """
import pathlib, sys, time
pathlib.Path(sys.argv[1]).touch()
while not pathlib.Path(sys.argv[2]).exists():
    time.sleep(0.05)
pathlib.Path(sys.argv[3]).write_text("ok")
"""
# A runner running that job, in a process of its own.
FIRST_RUN = """
import sys
from pathlib import Path
from benchmarks.executors import LocalExecutor
from benchmarks.jobs import Job
from benchmarks.runner import Runner, StateFile
out, script = Path(sys.argv[1]), sys.argv[2]
argv = [sys.executable, "-c", script, str(out / "started"), str(out / "release"), str(out / "a.done")]
job = Job("cell/a", "cell", argv, out / "a.done", out / "logs" / "a.log")
assert Runner([job], StateFile(out / "state.json"), LocalExecutor(), echo=print).run().ok
"""
# A process that takes the lock and keeps it until killed.
HOLD = """
import sys, time
from benchmarks.runner import OutputLock
OutputLock(sys.argv[1]).__enter__()
print("held", flush=True)
time.sleep(60)
"""


def _wait_for(path: Path, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while not path.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert path.exists(), proc.communicate(timeout=10)


def test_second_runner_exits_at_once_while_the_first_holds_the_output(tmp_path):
    out = tmp_path / "out"
    first = subprocess.Popen([sys.executable, "-c", FIRST_RUN, str(out), WAITING_JOB], cwd=REPO, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        _wait_for(out / "started", first)
        before = (out / "state.json").read_bytes()
        job = Job(
            "cell/b", "cell", [sys.executable, "-c", "raise SystemExit(1)"], out / "b.done", out / "b.log"
        )
        with pytest.raises(BenchmarkError) as error:
            Runner([job], StateFile(out / "state.json"), LocalExecutor(), echo=lambda _: None).run()
        message = str(error.value)
        assert f"{out} is in use by another run: pid {first.pid}" in message
        assert f"kill {first.pid}" in message and "Wait for it to finish" in message
        assert (out / "state.json").read_bytes() == before and not job.log.exists()  # nothing touched
    finally:
        (out / "release").touch()
        output, _ = first.communicate(timeout=60)
    assert first.returncode == 0, output
    assert (
        Runner([], StateFile(out / "state.json"), LocalExecutor(), echo=lambda _: None).run().ok
    )  # released


def test_lock_of_a_killed_run_is_released_with_its_process(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], cwd=REPO, text=True,
                              stdout=subprocess.PIPE)  # fmt: skip
    assert holder.stdout.readline() == "held\n"
    with pytest.raises(BenchmarkError, match=f"pid {holder.pid}"):
        OutputLock(tmp_path).__enter__()
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=30)
    with OutputLock(tmp_path):
        pass


def test_plan_needs_no_lock(tmp_path, capsys):
    with OutputLock(tmp_path / "out"):
        assert cli.main(["plan", "--profile", "smoke", "--tables", "1", "--set", *settings(tmp_path)]) == 0
    assert "jobs, 0 done" in capsys.readouterr().out
