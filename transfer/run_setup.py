"""Per-process setup of a fine-tuning run: loggers, what ran (environment, arguments, config), seeding.

Records what Detectron2's `default_setup` records, as plain text: `default_setup` highlights the config
dumps with pygments whenever that is importable (it comes with pytest), which puts terminal colour codes
into every `log.txt`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from detectron2.utils import comm
from detectron2.utils.collect_env import collect_env_info
from detectron2.utils.env import seed_all_rng
from detectron2.utils.logger import setup_logger

from transfer.checkpoint_io import write_atomic


def setup_run(cfg, args) -> None:
    """Loggers of detectron2 and fvcore into OUTPUT_DIR/log.txt, the run's record, OUTPUT_DIR/config.yaml,
    RNG seeds (SEED + rank; SEED < 0 = random)."""
    output_dir = Path(cfg.OUTPUT_DIR)
    rank = comm.get_rank()
    if comm.is_main_process():
        output_dir.mkdir(parents=True, exist_ok=True)
    setup_logger(str(output_dir), distributed_rank=rank, name="fvcore")
    logger = setup_logger(str(output_dir), distributed_rank=rank)
    logger.info(f"Rank of current process: {rank}. World size: {comm.get_world_size()}")
    logger.info("Environment info:\n" + collect_env_info())
    logger.info(f"Command line arguments: {args}")
    if args.config_file:
        logger.info(f"Contents of {args.config_file}:\n{Path(args.config_file).read_text()}")
    if comm.is_main_process():
        dump = cfg.dump()
        logger.info(f"Running with full config:\n{dump}")
        write_atomic(output_dir / "config.yaml", lambda f: f.write(dump.encode()))
        logger.info(f"Full config saved to {output_dir / 'config.yaml'}")
    seed_all_rng(None if cfg.SEED < 0 else cfg.SEED + rank)
    if not args.eval_only:
        torch.backends.cudnn.benchmark = cfg.CUDNN_BENCHMARK
