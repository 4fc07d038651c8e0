"""How fast this machine trains a small ResNet, measured in about ten seconds before a run starts.

`python -m benchmarks.speed_probe [--threads N]` prints one JSON line: `probe_s` (seconds of the fastest
of five training steps of ResNet-18 on 16 images of 64 px, forward + backward, bfloat16 autocast where the
CPU has it natively, as the scaled profiles train), the device, and whether bfloat16 was native.

A profile's `expected_wall_s` holds each job kind's wall time measured on one machine next to that
machine's `probe_s`; the runner scales them by this machine's probe to give an ETA before any job of a
kind has finished (`expected_from_probe`). The probe runs in a subprocess so the runner never imports torch.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

PROBE_BATCH = 16
PROBE_SIZE = 64
PROBE_STEPS = 5


def measure(threads: int) -> dict[str, Any]:
    """Fastest of PROBE_STEPS training steps after a warm-up step (CPU, or CUDA when present): the minimum is
    the least disturbed by other processes and frequency changes."""
    import torch
    import torchvision

    from transfer.runtime import cpu_has_native_bf16

    torch.set_num_threads(threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    bf16 = device == "cpu" and cpu_has_native_bf16()
    model = torchvision.models.resnet18(num_classes=128).to(device)
    images = torch.randn(PROBE_BATCH, 3, PROBE_SIZE, PROBE_SIZE, device=device)  # (B, 3, 64, 64)
    times = []
    for _ in range(PROBE_STEPS + 1):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(images).float().square().mean()
        loss.backward()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return {"probe_s": min(times[1:]), "device": device, "bf16_native": bf16}


@dataclass(frozen=True)
class Expectation:
    """Expected wall seconds per job kind on this machine, and the two probes they were scaled by."""

    seconds: dict[str, float]  # job duration key (Job.duration_key) -> seconds
    probe_s: float  # this machine
    reference_probe_s: float  # the machine the profile's expected_wall_s were measured on
    calibration: str  # which of them: "fp32" (the top level) or "bfloat16"


def expected_from_probe(
    expected: dict[str, Any], threads: int, timeout_s: float = 120.0
) -> Expectation | None:
    """Scales a profile's `expected_wall_s` (job duration key -> seconds, plus that machine's `probe_s`) by
    this machine's probe over the reference's. A CPU with native bfloat16 uses the `bfloat16` calibration
    where the profile has one: its jobs train under autocast, which speeds them up unlike the probe.

    None when the profile has no expectations, the probe fails, or the jobs would run on a GPU (the
    expectations are CPU timings)."""
    if not float(expected.get("probe_s") or 0) > 0:
        return None
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    try:
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.speed_probe", "--threads", str(threads)],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=env,
            check=True,
        ).stdout
        probe = json.loads(out.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None
    if probe.get("device") != "cpu":
        return None
    calibration = "bfloat16" if probe.get("bf16_native") and "bfloat16" in expected else "fp32"
    reference = expected["bfloat16"] if calibration == "bfloat16" else expected
    ratio = float(probe["probe_s"]) / reference["probe_s"]
    seconds = {key: float(s) * ratio for key, s in reference.items() if key not in ("probe_s", "bfloat16")}
    return Expectation(seconds, float(probe["probe_s"]), reference["probe_s"], calibration)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (as each job of the run gets)")
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.threads)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
