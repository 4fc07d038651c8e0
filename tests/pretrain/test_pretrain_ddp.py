"""Two-process DDP on CPU (gloo) through torchrun: shuffle-BN, gathered queues, one set of outputs."""

import json
import os
import socket
import subprocess
import sys

import pytest
import torch


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_torchrun_two_processes(tiny_root, tmp_path):
    out = tmp_path / "ddp"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
        "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
        "-m", "pretrain.train_net",
        "MODEL.ARCH", "resnet18", "MODEL.HIDDEN_DIM", "32", "MODEL.FEAT_DIM", "16", "MODEL.QUEUE_SIZE", "12",
        "MODEL.DENSECL.GRID_SIZE", "2", "DATA.ROOT", str(tiny_root), "DATA.DATASET", "coco",
        "DATA.IMAGE_SIZE", "64", "DATA.NUM_WORKERS", "0", "SOLVER.BATCH_SIZE", "4", "SOLVER.MAX_ITERS", "4",
        "SOLVER.LOG_PERIOD", "1", "OUTPUT_DIR", str(out),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240, cwd=os.getcwd())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    log = (out / "log.txt").read_text()
    assert "on cpu x 2" in log and "(2 per process)" in log
    final = torch.load(out / "model_final.pth", weights_only=True)["state_dict"]
    # 4 steps x 4 keys gathered from both processes = 16 keys through a queue of 12: pointer 16 % 12
    assert int(final["queue_global.ptr"]) == 4 and int(final["queue_dense.ptr"]) == 4
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in records] == [1, 2, 3, 4]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in records)


@pytest.mark.slow
def test_queues_are_equal_on_every_process():
    """Each process seeds differently, so each fills its queues with its own random keys; DDP must copy
    rank 0's once, and the gathered enqueues then keep them equal (tests/pretrain/ddp_queue_check.py)."""
    script = os.path.join(os.path.dirname(__file__), "ddp_queue_check.py")
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
        "--master_addr", "127.0.0.1", "--master_port", str(free_port()), script,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240, cwd=os.getcwd())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
