"""Run by test_pretrain_ddp.py under torchrun (2 processes): after DDP wraps a DenseCL model that every
process built with its own seed, and after one training step, the queues must be equal on every process.
Exits 1 (and names the buffer) when they are not."""

import sys

import torch
from pretrain_testutils import tiny_cfg

from pretrain import dist
from pretrain.engine import seed_everything
from pretrain.methods import build_model


def differing_queues(model: torch.nn.Module) -> list[str]:
    names = []
    for name, buffer in dist.unwrap(model).named_buffers():
        if name.startswith("queue_") and not torch.equal(dist.all_gather(buffer[None])[0], buffer):
            names.append(name)  # rank 0's copy differs from this process's
    return names


def main() -> int:
    dist.init_distributed("cpu")
    seed_everything(0 + dist.get_rank())  # as pretrain.engine.Trainer: one seed per process
    model = dist.wrap_ddp(build_model(tiny_cfg(**{"MODEL.DENSECL.GRID_SIZE": 2})), torch.device("cpu"))
    after_wrap = differing_queues(model)
    views = torch.randn(2, 4, 3, 64, 64, generator=torch.Generator().manual_seed(dist.get_rank()))
    model(views[0], views[1])["loss"].backward()
    after_step = differing_queues(model)
    rank = dist.get_rank()
    dist.destroy()
    if after_wrap or after_step:
        print(f"rank {rank}: queues differ from rank 0's after the wrap {after_wrap}, a step {after_step}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
