"""benchmarks.peak_rss: the wrapper that measures a job's own peak memory ends exactly as its command."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _wrapped(tmp_path, code: str) -> subprocess.Popen:
    out = tmp_path / "peak_mb"
    argv = [sys.executable, "-m", "benchmarks.peak_rss", str(out), "--", sys.executable, "-c", code]
    return subprocess.Popen(argv, cwd=REPO)


def test_exit_code_passes_through_and_the_peak_is_written(tmp_path):
    run = _wrapped(
        tmp_path, "b = bytearray(200 * 2**20); b[::4096] = b'x' * len(b[::4096]); raise SystemExit(3)"
    )
    assert run.wait(timeout=60) == 3
    assert 200 <= float((tmp_path / "peak_mb").read_text()) < 400


def test_sigterm_reaches_the_command_and_the_wrapper_ends_by_it(tmp_path):
    pid_file = tmp_path / "pid"
    run = _wrapped(
        tmp_path, f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    )
    deadline = time.monotonic() + 30
    while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    run.send_signal(signal.SIGTERM)
    assert run.wait(timeout=30) == -signal.SIGTERM
    try:
        os.kill(int(pid_file.read_text()), 0)
        alive = True
    except ProcessLookupError:
        alive = False
    assert not alive, "the command outlived its wrapper"
