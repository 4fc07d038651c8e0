"""Pretraining CLI.

`python -m pretrain.train_net --config-file pretrain/configs/<recipe>.yaml [--resume] [KEY VALUE ...]`

One process: `python -m pretrain.train_net ...`. One node, 8 GPUs: `torchrun --nproc_per_node 8 -m
pretrain.train_net ...`. Several nodes: torchrun with --nnodes/--node_rank/--master_addr on each node, or
`srun` (SLURM variables are read when torchrun's are absent). SOLVER.BATCH_SIZE is the total batch.
"""

import argparse
import os
import sys

import torch

from . import dist
from .config import load_cfg
from .errors import PretrainError


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", default="", metavar="FILE", help="recipe YAML (pretrain/configs/)")
    parser.add_argument("--resume", action="store_true", help="continue from OUTPUT_DIR/checkpoint_last.pth")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return parser.parse_args(argv)


def set_cpu_threads() -> None:
    """Without CUDA, share the cores between the local processes unless OMP_NUM_THREADS says otherwise."""
    if torch.cuda.is_available():
        return
    local = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    threads = int(os.environ.get("OMP_NUM_THREADS", 0)) or max(1, (os.cpu_count() or 1) // local)
    torch.set_num_threads(threads)


def user_message(error: PretrainError) -> str:
    """The one-paragraph message, without the worker traceback a DataLoader worker wraps around it."""
    text = str(error)
    marker = f"{PretrainError.__name__}: "
    return text.rsplit(marker, 1)[1].strip() if "Traceback" in text and marker in text else text


def main(argv=None) -> int:
    args = parse_args(argv)
    set_cpu_threads()
    try:
        from .engine import Trainer

        cfg = load_cfg(args.config_file, args.opts)
        Trainer(cfg, resume=args.resume).train()
    except PretrainError as e:
        print(f"error: {user_message(e)}", file=sys.stderr)
        return 2
    finally:
        dist.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
