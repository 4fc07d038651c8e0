"""Every torch.distributed call of the package lives here; all helpers are identities on one process.

Initialisation reads the torchrun environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT) or, when
started by `srun` without torchrun, the SLURM environment (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID),
the way DINO's `init_distributed_mode` does.
"""

import logging
import os
import subprocess
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from .errors import PretrainError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits in the job."""

    rank: int
    world_size: int
    local_rank: int


def _slurm_master_addr() -> str:
    nodelist = os.environ.get("SLURM_JOB_NODELIST", "")
    try:
        out = subprocess.run(
            ["scontrol", "show", "hostnames", nodelist], check=True, capture_output=True, text=True
        )
    except (OSError, subprocess.CalledProcessError) as e:
        raise PretrainError(
            f"SLURM job with nodelist {nodelist!r}: could not resolve the master node with `scontrol show "
            f"hostnames` ({e}). Set MASTER_ADDR (and MASTER_PORT) in the job script, or launch with torchrun."
        ) from e
    return out.stdout.split()[0]


def read_env() -> DistEnv:
    """The job geometry from torchrun or SLURM variables; (0, 1, 0) for a plain `python` run."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return DistEnv(
            int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0))
        )
    if int(os.environ.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in os.environ:
        os.environ.setdefault("MASTER_ADDR", _slurm_master_addr())
        os.environ.setdefault("MASTER_PORT", "29500")
        return DistEnv(
            int(os.environ["SLURM_PROCID"]),
            int(os.environ["SLURM_NTASKS"]),
            int(os.environ.get("SLURM_LOCALID", 0)),
        )
    return DistEnv(0, 1, 0)


def init_distributed(device_type: str) -> DistEnv:
    """Join the process group when the environment has more than one process (NCCL on CUDA, else gloo)."""
    env = read_env()
    if env.world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(env.local_rank)
        dist.init_process_group(backend=backend, rank=env.rank, world_size=env.world_size)
        logger.info("process group %s: rank %d of %d", backend, env.rank, env.world_size)
    return env


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def destroy() -> None:
    if is_distributed():
        dist.destroy_process_group()


@torch.no_grad()
def all_gather(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate `tensor` (same shape on every process) along dim 0 in rank order; no gradient."""
    if not is_distributed():
        return tensor
    # before empty_like, which keeps a channels_last layout: received buffers must match the sent one's
    tensor = tensor.contiguous()
    parts = [torch.empty_like(tensor) for _ in range(get_world_size())]
    dist.all_gather(parts, tensor)
    return torch.cat(parts, dim=0)


def all_reduce_mean(values: dict[str, float]) -> dict[str, float]:
    """Average scalar logging values over processes."""
    if not is_distributed() or not values:
        return values
    t = torch.tensor(list(values.values()), dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return {k: v / get_world_size() for k, v in zip(values, t.tolist())}


@torch.no_grad()
def batch_shuffle(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Shuffle-BN (MoCo Sec. 3.3): this process's slice of a global permutation of all processes' batches.

    Returns the local shuffled batch and the index that undoes it; (x, None) on one process.
    """
    if not is_distributed():
        return x, None
    x_all = all_gather(x)  # (N * world, ...)
    perm = torch.randperm(x_all.shape[0], device=x.device)
    dist.broadcast(perm, src=0)
    idx_unshuffle = torch.argsort(perm)
    n = x.shape[0]
    return x_all[perm[get_rank() * n : (get_rank() + 1) * n]], idx_unshuffle


@torch.no_grad()
def batch_unshuffle(x: torch.Tensor, idx_unshuffle: torch.Tensor | None) -> torch.Tensor:
    """Undo `batch_shuffle` for an output computed on the shuffled batch (on one process: undo
    `split_bn.shuffle_sub_batches`)."""
    if idx_unshuffle is None:
        return x
    x_all = all_gather(x)
    n = x.shape[0]
    return x_all[idx_unshuffle[get_rank() * n : (get_rank() + 1) * n]]


def maybe_convert_sync_bn(model: nn.Module, requested: bool) -> nn.Module:
    """SyncBatchNorm when requested and distributed; plain BatchNorm (with a log line) on one process."""
    if not requested:
        return model
    if not is_distributed():
        logger.warning("SyncBN requested but not distributed: using BatchNorm")
        return model
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


def wrap_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    """DistributedDataParallel when distributed, the module itself otherwise.

    Buffers (queues, BN statistics) are copied from rank 0 once, when DDP wraps the model; every process
    seeds differently, so each filled its queues with its own random keys. After that the queues stay
    identical because every process enqueues the same gathered keys, and broadcasting 65,536 x 128 queues
    before each forward (MoCo's default) would only cost bandwidth.
    """
    if not is_distributed():
        return model
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids, forward_sync_buffers=False)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
