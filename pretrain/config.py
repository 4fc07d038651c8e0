"""Default pretraining configuration (yacs). Recipes in pretrain/configs/ override it via `_BASE_`.

Defaults are the DenseCL / MoCo-v2 ImageNet protocol (DenseCL Sec. 4.1, MoCo-v2): ResNet-50, batch 256,
SGD 0.03.
"""

import os
from pathlib import Path

import yaml
from fvcore.common.config import CfgNode as CN  # noqa: N817 (yacs CfgNode + `_BASE_` inheritance)

from transfer.wandb_logging import add_wandb_config

from .errors import PretrainError

_C = CN()

_C.MODEL = CN()
_C.MODEL.METHOD = "densecl"  # "densecl" | "mocov2" | "supervised"
_C.MODEL.ARCH = "resnet50"  # torchvision ResNet name: resnet18 | resnet34 | resnet50 | resnet101 | resnet152
_C.MODEL.FEAT_DIM = 128  # output width of the global and dense projection heads
_C.MODEL.HIDDEN_DIM = 2048  # hidden width of both projection heads; 0 = the backbone's C5 width
# global projection head's FC layers: "kaiming" (normal, fan_in, zero bias: the DenseCL authors' code, for
# DenseCL and MoCo-v2) | "pytorch" (nn.Linear default: facebookresearch/moco)
_C.MODEL.HEAD_INIT = "kaiming"
_C.MODEL.QUEUE_SIZE = 65536  # K, negatives per queue (DenseCL keeps two queues of this size)
_C.MODEL.MOMENTUM = 0.999  # EMA coefficient m of the key encoder
_C.MODEL.TEMPERATURE = 0.2  # InfoNCE temperature tau (MoCo-v2: 0.2)
_C.MODEL.SHUFFLE_BN = True  # shuffle keys across BN groups: processes under DDP, sub-batches on one process
# One process: BN statistics over this many sub-batches of the batch (in both encoders), so a query and its
# shuffled key are mostly normalised with different samples, as on SHUFFLE_BN_SPLITS GPUs (MoCo Sec. 3.3).
# 1 = BN over the whole batch (the leak MoCo warns about). Ignored under DDP (each process is a sub-batch).
_C.MODEL.SHUFFLE_BN_SPLITS = 8

_C.MODEL.DENSECL = CN()
_C.MODEL.DENSECL.LAMBDA = 0.5  # weight of the dense loss: (1 - lambda) * global + lambda * dense
_C.MODEL.DENSECL.GRID_SIZE = 7  # S, the dense grid is S x S (7 = native C5 size at 224 px)
_C.MODEL.DENSECL.LAMBDA_WARMUP_ITERS = 0  # lambda held at 0 for this many iterations (paper option)
# positive key cell per query cell: "feature" = argmax cosine of backbone features (paper Sec. 3.3) |
# "geometry" = the key cell showing the same image point, through the known crops and flips (ablation)
_C.MODEL.DENSECL.MATCHING = "feature"

_C.DATA = CN()
_C.DATA.ROOT = ""  # dataset root in Detectron2 layout; "" = $DETECTRON2_DATASETS, else ./datasets
_C.DATA.DATASET = "imagenet"  # "imagenet" = ROOT/imagenet/train ImageFolder; "coco" = ROOT/coco/train2017
_C.DATA.IMAGE_SIZE = 224  # crop size of every view
_C.DATA.NUM_WORKERS = 8  # DataLoader worker processes per training process (0 = load in the main process)
_C.DATA.MEAN = [0.485, 0.456, 0.406]  # RGB normalisation mean (ImageNet, 0-1 scale)
_C.DATA.STD = [0.229, 0.224, 0.225]  # RGB normalisation std (ImageNet, 0-1 scale)
_C.DATA.BLUR_KERNEL_FRACTION = 0.1  # Gaussian blur kernel = this fraction of IMAGE_SIZE, made odd
_C.DATA.BLUR_SIGMA = [0.1, 2.0]  # Gaussian blur sigma range for BLUR_REFERENCE_SIZE px crops (MoCo-v2)
_C.DATA.BLUR_REFERENCE_SIZE = 224  # sigma scales by IMAGE_SIZE / this (0 = use BLUR_SIGMA as is)
# True: an unreadable image is replaced by the next readable one and listed in OUTPUT_DIR/bad_images.txt
# (pretrain/bad_images.py); False: it stops the run with its path
_C.DATA.SKIP_BAD_IMAGES = False
_C.DATA.MAX_BAD_IMAGES = 100  # with SKIP_BAD_IMAGES, more distinct unreadable files than this stop the run

_C.SOLVER = CN()
_C.SOLVER.EPOCHS = 200  # training length in epochs (ignored when MAX_ITERS > 0)
_C.SOLVER.MAX_ITERS = 0  # 0 = EPOCHS * iterations per epoch; > 0 overrides (scaled runs, tests)
_C.SOLVER.BATCH_SIZE = 256  # TOTAL batch over all processes (must divide by the number of processes)
_C.SOLVER.BASE_LR = 0.03  # learning rate at REFERENCE_BATCH_SIZE (or as is when that is 0)
_C.SOLVER.REFERENCE_BATCH_SIZE = 0  # > 0: linear scaling lr = BASE_LR * BATCH_SIZE / this (logged)
_C.SOLVER.LR_SCHEDULER = "cosine"  # "cosine" (per iteration to 0, no warm-up) | "step" (x GAMMA at STEPS)
_C.SOLVER.STEPS = [30, 60]  # epochs at which the "step" schedule multiplies the LR by GAMMA
_C.SOLVER.GAMMA = 0.1  # decay factor of the "step" schedule
_C.SOLVER.OPTIMIZER = "sgd"  # "sgd" (MoCo-v2 / DenseCL / torchvision) | "lars" (short schedules; optim.py)
_C.SOLVER.MOMENTUM = 0.9  # SGD / LARS momentum
_C.SOLVER.LARS_TRUST_COEFFICIENT = 0.001  # LARS: each weight tensor steps lr x this x its norm
_C.SOLVER.WEIGHT_DECAY = 1e-4  # SGD / LARS weight decay (all parameters, as the official code)
_C.SOLVER.CHECKPOINT_PERIOD = 10  # keep checkpoint_epoch_XXXX.pth every this many epochs (0 = never)
_C.SOLVER.CHECKPOINT_ITERS = (
    0  # also refresh checkpoint_last.pth every this many iterations (0 = epochs only)
)
# Skip a periodic checkpoint_last.pth refresh (epoch end, CHECKPOINT_ITERS) less than this many seconds after
# the previous write: an interruption then repeats at most this much training. 0 = refresh every time; for
# schedules of many short epochs (scaled profiles).
_C.SOLVER.LAST_CHECKPOINT_MIN_SECONDS = 0
_C.SOLVER.LOG_PERIOD = 20  # iterations between metrics.jsonl / TensorBoard records

_C.TRAIN = CN()
_C.TRAIN.DEVICE = "auto"  # "auto" (CUDA when available) | "cuda" | "cpu"
_C.TRAIN.AMP = True  # mixed precision autocast on CUDA
# bfloat16 autocast on CPU too, where the CPU computes bfloat16 natively (AVX512-BF16 / AMX; else fp32 and a
# log line). Off by default (fp32 is the reference); the tiny profile turns it on: an R-18 step at 64 px,
# batch 32, 1 thread: forward + backward 0.21 s fp32 vs 0.12 s bfloat16 on an AVX512-BF16 EPYC.
_C.TRAIN.AMP_CPU = False
_C.TRAIN.AMP_DTYPE = "bfloat16"  # "bfloat16" | "float16" (float16 uses a gradient scaler)
_C.TRAIN.CHANNELS_LAST = True  # channels_last memory format (CUDA only)
_C.TRAIN.SYNC_BN = False  # SyncBatchNorm in the query encoder (DDP only; BN on one process)

add_wandb_config(_C)  # WANDB.PROJECT/ENTITY/GROUP/NAME: W&B logging of the metrics.jsonl records (off)

_C.SEED = 0  # seeds python, numpy, torch and the data order
_C.OUTPUT_DIR = "output/pretrain"  # config.yaml, metrics.jsonl, log.txt, checkpoints, TensorBoard


def get_cfg() -> CN:
    """A fresh copy of the defaults."""
    return _C.clone()


def merge_config(cfg: CN, config_file: str | None, opts: list[str], schema: str, example: str) -> CN:
    """cfg <- YAML (with `_BASE_` inheritance) <- `KEY VALUE` overrides, in place; bad input is a
    PretrainError naming the file or override, the module defining the keys (`schema`) and an `example`
    config to start from."""
    if config_file:
        if not Path(config_file).is_file():
            raise PretrainError(
                f"config file {config_file} does not exist; pass one of {example} "
                f"(or your own YAML with `_BASE_: <one of them>`)."
            )
        cfg.set_new_allowed(False)
        try:
            cfg.merge_from_file(config_file)
        except yaml.YAMLError as e:
            raise PretrainError(f"config file {config_file} is not valid YAML ({e}); fix the syntax.") from e
        except (KeyError, ValueError, AssertionError, OSError) as e:
            raise PretrainError(
                f"config file {config_file} is invalid: {e}. Keys must exist in {schema}."
            ) from e
    if len(opts) % 2:
        raise PretrainError(f"overrides must be KEY VALUE pairs, got an odd list: {opts}.")
    try:
        cfg.merge_from_list(opts)
    except (KeyError, ValueError, AssertionError) as e:
        raise PretrainError(f"bad override in {opts}: {e}. Keys must exist in {schema}.") from e
    return cfg


def load_cfg(config_file: str | None, opts: list[str]) -> CN:
    """Defaults <- YAML (with `_BASE_` inheritance) <- `KEY VALUE` overrides; frozen."""
    cfg = merge_config(get_cfg(), config_file, opts, "pretrain/config.py", "pretrain/configs/*.yaml")
    if cfg.SOLVER.LOG_PERIOD < 1 or cfg.SOLVER.CHECKPOINT_ITERS < 0:
        raise PretrainError(
            f"SOLVER.LOG_PERIOD must be >= 1 and SOLVER.CHECKPOINT_ITERS >= 0 (0: none), got "
            f"{cfg.SOLVER.LOG_PERIOD} and {cfg.SOLVER.CHECKPOINT_ITERS} from {config_file or 'the defaults'}"
            f" with overrides {opts}; fix the value there."
        )
    cfg.freeze()
    return cfg


def dataset_root(cfg: CN) -> Path:
    """DATA.ROOT, else $DETECTRON2_DATASETS, else ./datasets (Detectron2's own default)."""
    return Path(cfg.DATA.ROOT or os.environ.get("DETECTRON2_DATASETS", "datasets")).expanduser()
