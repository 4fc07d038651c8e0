"""`python -m benchmarks.peak_rss OUT -- CMD...`: run CMD and write its peak resident memory (MiB) to OUT.

Why a wrapper: Linux starts a process's max-RSS count at the high-water mark of the memory image its exec
replaced. A job started straight from the runner (which imports torch, Detectron2 and pandas: ~0.6 GB)
therefore never reads less than the runner itself, whatever it used. This wrapper is a fresh, small Python
process, so the `wait4` usage of the command it starts is the command's own: the largest of its process and
its waited-for descendants (DataLoader workers, torchrun's workers). Standard library only.

SIGTERM (the runner's cancel) is passed on to the command; SIGINT is left to the command, which the
terminal's Ctrl-C reaches directly (same process group). The wrapper ends the way the command did (same
exit code, or the same signal), so the runner sees no difference.
"""

import os
import signal
import subprocess
import sys

RU_MAXRSS_PER_MB = 1024 * 1024 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux


def run_measured(out: str, command: list[str]) -> int:
    """Run `command`, write its peak RSS in MiB to `out` (atomically), return its wait status."""
    child = subprocess.Popen(command)
    signal.signal(signal.SIGTERM, lambda received, _frame: child.send_signal(received))
    signal.signal(signal.SIGINT, lambda _received, _frame: None)  # keep waiting for the command's own end
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)  # reaped here: keep Popen from waiting again
    tmp = f"{out}.tmp"
    with open(tmp, "w") as stream:
        stream.write(f"{usage.ru_maxrss / RU_MAXRSS_PER_MB:.1f}\n")
    os.replace(tmp, out)
    return status


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[1] != "--":
        sys.exit("usage: python -m benchmarks.peak_rss OUT -- CMD [ARG ...]")
    status = run_measured(argv[0], argv[2:])
    if os.WIFSIGNALED(status):  # end by the same signal, with its default action
        signal.signal(os.WTERMSIG(status), signal.SIG_DFL)
        os.kill(os.getpid(), os.WTERMSIG(status))
    sys.exit(os.waitstatus_to_exitcode(status))


if __name__ == "__main__":
    main(sys.argv[1:])
