"""Linear-probe and kNN classification of a frozen ResNet backbone (MoCo / DenseCL linear protocol).

`python -m pretrain.linear_eval --config-file pretrain/configs/linear_R50_in1k.yaml [KEY VALUE ...]`

MODEL.WEIGHTS: any checkpoint `python -m transfer.convert` accepts, or the Detectron2 .pkl it wrote;
empty = random init. Reads <DATA.ROOT>/<DATA.DATASET>/{train,val}/<class>/*.jpg and writes
OUTPUT_DIR/config.yaml, OUTPUT_DIR/log.txt and, only once finished, OUTPUT_DIR/metrics.json
({"task": "linear_cls", "metrics": {"top1", "top5", "knn_top1"}, ...}, percentages). An existing
metrics.json means the run is done: the command exits 0 without recomputing (delete it to re-run).
Bad input: one `error:` paragraph, exit 2.
"""

import argparse
import json
import sys
import time
from pathlib import Path

from transfer.errors import TransferError

from .checkpoint import write_text_atomic
from .errors import PretrainError
from .linear_probe.config import load_linear_cfg
from .monitor import setup_logging
from .train_net import set_cpu_threads, user_message

METRICS = "metrics.json"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m pretrain.linear_eval",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config-file", default="", metavar="FILE", help="pretrain/configs/linear_*.yaml")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return parser.parse_args(argv)


def run(cfg, config_file: str) -> Path:
    """Train and evaluate; write OUTPUT_DIR/metrics.json atomically at the end and return its path."""
    from .linear_probe.engine import LinearEvaluation

    out_dir = Path(cfg.OUTPUT_DIR)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / "config.yaml", cfg.dump())
    logger = setup_logging(out_dir, is_main=True)
    start = time.perf_counter()
    metrics, iters = LinearEvaluation(cfg).run()
    record = {
        "task": "linear_cls",
        "metrics": {name: round(value, 4) for name, value in metrics.items()},
        "weights": cfg.MODEL.WEIGHTS,
        "config_file": config_file,
        "iters": iters,
        "wall_s": round(time.perf_counter() - start, 3),
        "ims_per_batch": cfg.SOLVER.BATCH_SIZE,
        "base_lr": cfg.SOLVER.BASE_LR,
    }
    path = out_dir / METRICS
    write_text_atomic(path, json.dumps(record, indent=2) + "\n")
    logger.info("wrote %s", path)
    return path


def main(argv=None) -> int:
    args = parse_args(argv)
    set_cpu_threads()
    try:
        cfg = load_linear_cfg(args.config_file, args.opts)
        done = Path(cfg.OUTPUT_DIR) / METRICS
        if done.is_file():
            print(f"{done} exists: this linear evaluation has finished, nothing to do (delete it to re-run).")
            return 0
        run(cfg, args.config_file)
    except PretrainError as e:
        print(f"error: {user_message(e)}", file=sys.stderr)
        return 2
    except TransferError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
