"""Fine-tune and evaluate a (converted) ResNet in Detectron2 on one benchmark task.

`python -m transfer.train_net --config-file transfer/configs/<name>.yaml [--num-gpus N --num-machines M
--machine-rank R --dist-url U --resume --eval-only] [KEY VALUE ...]`

Datasets are read from $DETECTRON2_DATASETS, which must be set before this process starts. Writes
`OUTPUT_DIR/config.yaml` (the config that ran, after the device, SyncBN and LR-scaling rewrites),
`OUTPUT_DIR/metrics.json` (fields: transfer/README.md "Fine-tune") only once the run finished, and
Detectron2's per-iteration event stream to `OUTPUT_DIR/train_events.jsonl`. Bad input: one `error:`
paragraph, exit 2.
"""

import json
import logging
import os
import sys
import time
from pathlib import Path

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.data import DatasetMapper, build_detection_test_loader, build_detection_train_loader
from detectron2.engine import DefaultTrainer, default_argument_parser, launch
from detectron2.projects.deeplab import build_lr_scheduler as build_poly_aware_lr_scheduler
from detectron2.utils import comm
from detectron2.utils.events import CommonMetricPrinter, JSONWriter, TensorboardXWriter
from detectron2.utils.logger import setup_logger
from torch.multiprocessing import ProcessRaisedException

import transfer.modeling  # noqa: F401  (registers Res5ROIHeadsExtraNorm, the dilated ResNet, FCNHead, segmentor)
from transfer.bad_images import skipped_images
from transfer.checkpoint_io import write_atomic
from transfer.config import add_transfer_config
from transfer.data import SemSegDatasetMapper, check_datasets  # registers the VOC 2012 sem-seg datasets
from transfer.data.guarded_mapper import guard_mapper
from transfer.errors import TransferError
from transfer.optimizer import build_fused_sgd
from transfer.run_setup import setup_run
from transfer.runtime import (
    autocast_training_on_cpu,
    fall_back_to_bn,
    scale_learning_rate,
    select_device,
)
from transfer.tasks import SEM_SEG_TASKS, build_task_evaluator, check_task, per_class_metrics, task_metrics
from transfer.wandb_logging import WandbWriter, import_wandb, start_run
from transfer.weights import resolve_weights

logger = logging.getLogger("transfer.train_net")
# How a traceback names a TransferError: the message follows it on the traceback's last line(s).
_TRANSFER_ERROR_LINE = f"{TransferError.__module__}.{TransferError.__qualname__}: "


class Trainer(DefaultTrainer):
    """DefaultTrainer with the task's evaluator, the sem-seg mapper, the poly LR schedule, Detectron2's SGD
    fused (transfer.optimizer) and, given a `wandb_run`, a W&B writer beside the JSON and TensorBoard ones."""

    def __init__(self, cfg, wandb_run=None):
        self.wandb_run = wandb_run  # read by build_writers, which DefaultTrainer.__init__ calls
        super().__init__(cfg)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference")
        return build_task_evaluator(cfg.TRANSFER.TASK, dataset_name, output_folder)

    @staticmethod
    def _mapper(cfg, is_train: bool):
        """The task's mapper (sem-seg or Detectron2's detection one), guarded against unreadable files."""
        sem_seg = cfg.TRANSFER.TASK in SEM_SEG_TASKS
        mapper = SemSegDatasetMapper(cfg, is_train) if sem_seg else DatasetMapper(cfg, is_train)
        return guard_mapper(cfg, mapper, is_train)

    @classmethod
    def build_train_loader(cls, cfg):
        return build_detection_train_loader(cfg, mapper=cls._mapper(cfg, is_train=True))

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        return build_detection_test_loader(cfg, dataset_name, mapper=cls._mapper(cfg, is_train=False))

    def build_writers(self):
        """Detectron2's writers, but the event stream goes to train_events.jsonl: OUTPUT_DIR/metrics.json
        is the final result (fields: transfer/README.md "Fine-tune") and must not exist before the run
        finished."""
        writers = [
            CommonMetricPrinter(self.max_iter),
            JSONWriter(os.path.join(self.cfg.OUTPUT_DIR, "train_events.jsonl")),
            TensorboardXWriter(self.cfg.OUTPUT_DIR),
        ]
        return writers + ([WandbWriter(self.wandb_run)] if self.wandb_run is not None else [])

    @classmethod
    def build_model(cls, cfg):
        model = super().build_model(cfg)
        autocast_training_on_cpu(model, cfg)
        return model

    @classmethod
    def build_optimizer(cls, cfg, model):
        return build_fused_sgd(cfg, model)

    @classmethod
    def build_lr_scheduler(cls, cfg, optimizer):
        return build_poly_aware_lr_scheduler(cfg, optimizer)  # WarmupPolyLR, else Detectron2's schedulers


def build_cfg(args):
    """Defaults + add_transfer_config + --config-file + KEY VALUE overrides (not frozen)."""
    if not args.config_file:
        raise TransferError("--config-file is required, e.g. transfer/configs/pascal_voc_R_50_C4_24k.yaml.")
    if not Path(args.config_file).is_file():
        raise TransferError(
            f"Config file {args.config_file} does not exist; see transfer/configs/ for the names."
        )
    cfg = get_cfg()
    add_transfer_config(cfg)
    try:
        cfg.merge_from_file(args.config_file)
        cfg.merge_from_list(args.opts)
    except (KeyError, ValueError, AssertionError) as exc:
        raise TransferError(
            f"Bad config {args.config_file} or override {args.opts}: {exc}. Keys must exist in Detectron2's "
            "defaults or transfer/config.py and values must keep the default's type."
        ) from exc
    check_task(cfg.TRANSFER.TASK)
    return cfg


def prepare(args) -> None:
    """Checks run once in the launching process: config, datasets on disk, MODEL.WEIGHTS, wandb.

    Resolves MODEL.WEIGHTS (a raw checkpoint is converted) into args.opts; raises TransferError."""
    cfg = build_cfg(args)
    import_wandb(cfg, TransferError)  # WANDB.PROJECT without wandb installed: fail before any process starts
    args.weights_given = cfg.MODEL.WEIGHTS
    if not (args.resume and Path(cfg.OUTPUT_DIR, "last_checkpoint").is_file()):  # else MODEL.WEIGHTS unused
        weights, note = resolve_weights(cfg)
        if note:
            print(note)
        args.opts = [*args.opts, "MODEL.WEIGHTS", weights]
    check_datasets(list(cfg.DATASETS.TEST) + ([] if args.eval_only else list(cfg.DATASETS.TRAIN)))


def setup(args):
    """Final config of this process: rewrites for device/world size/batch, logged, dumped, frozen."""
    cfg = build_cfg(args)
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="transfer")
    select_device(cfg)
    fall_back_to_bn(cfg, comm.get_world_size())
    lr_scaling = scale_learning_rate(cfg)
    cfg.freeze()
    setup_run(cfg, args)  # detectron2/fvcore logging, config.yaml dump, seeding
    return cfg, lr_scaling


def write_metrics(cfg, args, results: dict, iters: int, wall_s: float, lr_scaling: dict) -> dict[str, float]:
    """OUTPUT_DIR/metrics.json (transfer/README.md "Fine-tune"; `per_class` beside it), written atomically;
    returns the task's metrics."""
    metrics = task_metrics(cfg.TRANSFER.TASK, results)
    skipped = skipped_images(Path(cfg.OUTPUT_DIR))
    if skipped:
        logger.warning(
            f"{len(skipped)} unreadable training images were skipped (TRANSFER.SKIP_BAD_IMAGES), listed in "
            f"{cfg.OUTPUT_DIR}/bad_images*.txt"
        )
    record = {
        "task": cfg.TRANSFER.TASK,
        "metrics": metrics,
        "per_class": per_class_metrics(results),
        "iters": iters,
        "wall_s": round(wall_s, 3),
        "ims_per_batch": cfg.SOLVER.IMS_PER_BATCH,
        "base_lr": cfg.SOLVER.BASE_LR,
        "weights": args.weights_given,
        "config_file": args.config_file,
        "lr_scaling": lr_scaling,
        "eval_only": bool(args.eval_only),
        "skipped_images": len(skipped),  # TRANSFER.SKIP_BAD_IMAGES
    }
    path = Path(cfg.OUTPUT_DIR) / "metrics.json"
    write_atomic(path, lambda f: f.write(json.dumps(record, indent=2).encode()))
    logger.info(f"Wrote {path}: {metrics}")
    return metrics


def main(args):
    cfg, lr_scaling = setup(args)
    if comm.is_main_process():  # a metrics.json present means "this run finished"
        Path(cfg.OUTPUT_DIR, "metrics.json").unlink(missing_ok=True)
    start = time.perf_counter()
    wandb_run = start_run(cfg, cfg.TRANSFER.TASK, TransferError) if comm.is_main_process() else None
    if args.eval_only:
        model = Trainer.build_model(cfg)
        DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume
        )
        results, iters = Trainer.test(cfg, model), 0
    else:
        trainer = Trainer(cfg, wandb_run)
        trainer.resume_or_load(resume=args.resume)
        if args.resume and trainer.checkpointer.has_checkpoint():
            logger.info(
                f"Resumed from {trainer.checkpointer.get_checkpoint_file()} (model, optimizer, scheduler): "
                f"continuing at iteration {trainer.start_iter} of {cfg.SOLVER.MAX_ITER}; MODEL.WEIGHTS unused"
            )
        elif args.resume:
            logger.info(
                f"--resume: no checkpoint in {cfg.OUTPUT_DIR}, starting from MODEL.WEIGHTS at iteration 0"
            )
        trainer.train()
        results, iters = trainer._last_eval_results, cfg.SOLVER.MAX_ITER  # set by the final EvalHook
    if comm.is_main_process():
        metrics = write_metrics(cfg, args, results, iters, time.perf_counter() - start, lr_scaling)
        if wandb_run is not None:  # started on the main process only
            wandb_run.summary.update(metrics)
            wandb_run.finish()
    return results


def error_paragraph(exc: Exception) -> str | None:
    """The message of the TransferError behind `exc`, None if there is none.

    A TransferError raised in a DataLoader worker comes back as a TransferError whose message is the
    worker's traceback text, one raised in a `--num-gpus` child process as a ProcessRaisedException
    holding the child's; the original message ends either text."""
    text = str(exc)
    if _TRANSFER_ERROR_LINE in text:
        message = text.rsplit(_TRANSFER_ERROR_LINE, 1)[1].strip()
        return None if "Traceback (most recent call last)" in message else message
    return text if isinstance(exc, TransferError) else None


def cli(argv: list[str] | None = None) -> int:
    args = default_argument_parser().parse_args(argv)
    try:
        prepare(args)
        launch(
            main,
            args.num_gpus,
            num_machines=args.num_machines,
            machine_rank=args.machine_rank,
            dist_url=args.dist_url,
            args=(args,),
        )
    except (TransferError, ProcessRaisedException) as exc:
        message = error_paragraph(exc)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(cli())
