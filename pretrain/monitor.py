"""Run monitoring on rank 0: log file, metrics.jsonl, TensorBoard scalars and a tqdm bar with ETA."""

import json
import logging
import sys
from pathlib import Path

from tqdm import tqdm

from .checkpoint import write_text_atomic

METRICS = "metrics.jsonl"


def setup_logging(out_dir: Path, is_main: bool) -> logging.Logger:
    """`pretrain` logger to stdout and OUTPUT_DIR/log.txt on rank 0; warnings only on other ranks."""
    logger = logging.getLogger("pretrain")
    logger.setLevel(logging.INFO if is_main else logging.WARNING)
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    fmt = logging.Formatter("[%(asctime)s %(name)s] %(message)s", "%m/%d %H:%M:%S")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
    if is_main:
        handlers.append(logging.FileHandler(out_dir / "log.txt"))
    for handler in handlers:
        handler.setFormatter(fmt)
        logger.addHandler(handler)
    return logger


def drop_records_after(path: Path, iteration: int) -> None:
    """On resume, forget records of iterations after the checkpoint (a killed run had logged them)."""
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    kept = [line for line in lines if line.strip() and json.loads(line)["iter"] <= iteration]
    if len(kept) != len(lines):
        write_text_atomic(path, "".join(kept))


class Monitor:
    """Writes one record per logged iteration; a no-op on processes other than rank 0.

    Losses are noisy from one step to the next (each batch draws new crops), so a record holds the mean of
    every value over the steps since the previous record (Detectron2 logs smoothed values the same way):
    a curve of window means shows whether training makes progress, single steps do not.
    """

    def __init__(self, out_dir: Path, is_main: bool, start_iter: int, max_iter: int, wandb_run=None):
        self.enabled = is_main
        self.wandb_run = wandb_run  # transfer.wandb_logging.start_run's run, or None
        self.window: dict[str, list[float]] = {}
        if not is_main:
            return
        from torch.utils.tensorboard import SummaryWriter

        drop_records_after(out_dir / METRICS, start_iter)
        self.metrics = open(out_dir / METRICS, "a")  # noqa: SIM115 (closed in close())
        self.tb = SummaryWriter(str(out_dir / "tensorboard"), purge_step=start_iter + 1)
        self.bar = tqdm(total=max_iter, initial=start_iter, desc="pretrain", unit="it", dynamic_ncols=True)

    def step(self, values: dict[str, float]) -> None:
        """One optimisation step's values (losses, lr), accumulated until the next `window_mean`."""
        for key, value in values.items():
            self.window.setdefault(key, []).append(value)
        if self.enabled:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{values['loss']:.4f}")

    def window_mean(self) -> dict[str, float]:
        """Mean of every value over the steps since the last call; starts a new window."""
        means = {key: sum(v) / len(v) for key, v in self.window.items()}
        self.window = {}
        return means

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        self.metrics.write(json.dumps(record) + "\n")
        self.metrics.flush()
        for key, value in record.items():
            if key not in ("iter", "epoch"):
                self.tb.add_scalar(key, value, record["iter"])
        if self.wandb_run is not None:
            self.wandb_run.log({k: v for k, v in record.items() if k != "iter"}, step=record["iter"])

    def close(self, exit_code: int = 0) -> None:
        """Flush and close the outputs; `exit_code` 1 marks the W&B run failed (training raised)."""
        if self.enabled:
            self.bar.close()
            self.tb.close()
            self.metrics.close()
        if self.wandb_run is not None:
            self.wandb_run.finish(exit_code=exit_code)
