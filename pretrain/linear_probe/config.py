"""Default linear-classification configuration (yacs). Configs in pretrain/configs/linear_*.yaml override it.

Defaults are the MoCo / DenseCL linear protocol (He et al., CVPR 2020, Sec. 4.1 "Linear
Classification Protocol"; Chen et al., arXiv 2003.04297): frozen ResNet-50, global-average-pooled C5 ->
one fully connected layer; SGD LR 30, momentum 0.9, no weight decay, batch 256, 100 epochs, LR x0.1 at
epochs 60 and 80. The kNN monitor follows Wu et al., CVPR 2018 (InstDisc), Sec. 3.4: k = 20, tau = 0.07.
"""

from fvcore.common.config import CfgNode as CN  # noqa: N817 (yacs CfgNode + `_BASE_` inheritance)

from pretrain.config import merge_config
from pretrain.errors import PretrainError

FEATURE_NORMS = ("none", "batchnorm")

_C = CN()

_C.MODEL = CN()
_C.MODEL.ARCH = "resnet50"  # torchvision ResNet name: resnet18 | resnet34 | resnet50 | resnet101 | resnet152
# Backbone weights: any checkpoint `python -m transfer.convert` accepts (pretrain model_final.pth, MoCo
# .pth.tar, DenseCL .pth, torchvision state dict), or a Detectron2 .pkl it wrote; "" = random init.
_C.MODEL.WEIGHTS = ""

# Normalisation of the pooled C5 features before the linear layer: "none" (MoCo / DenseCL protocol) or
# "batchnorm" (BatchNorm1d without affine parameters, as the MAE linear probe, He et al. CVPR 2022, App. A.3):
# standardises each feature dimension, so one LR fits backbones whose features differ in offset and spread
# (random init vs supervised vs self-supervised; scaled profiles use it, the paper protocol does not).
_C.MODEL.FEATURE_NORM = "none"

_C.DATA = CN()
_C.DATA.ROOT = ""  # dataset root; "" = $DETECTRON2_DATASETS, else ./datasets
_C.DATA.DATASET = "imagenet"  # folder under ROOT holding the splits as ImageFolder (<split>/<class>/*.jpg)
_C.DATA.TRAIN_SPLIT = "train"  # split the classifier and the kNN memory bank are built from
_C.DATA.VAL_SPLIT = "val"  # split top-1 / top-5 / kNN top-1 are reported on
_C.DATA.IMAGE_SIZE = 224  # crop size: RandomResizedCrop (train) and CenterCrop (eval)
_C.DATA.RESIZE_SIZE = 0  # eval shorter-side resize; 0 = round(IMAGE_SIZE * 256 / 224), i.e. 256 at 224
_C.DATA.NUM_WORKERS = 8  # DataLoader worker processes (0 = load in the main process)
_C.DATA.MEAN = [0.485, 0.456, 0.406]  # RGB normalisation mean (ImageNet, 0-1 scale)
_C.DATA.STD = [0.229, 0.224, 0.225]  # RGB normalisation std (ImageNet, 0-1 scale)

_C.SOLVER = CN()
_C.SOLVER.EPOCHS = 100  # passes over the train split
_C.SOLVER.BATCH_SIZE = 256  # images per SGD step
_C.SOLVER.BASE_LR = 30.0  # LR of the linear layer (MoCo: 30; the pooled features are not normalised)
_C.SOLVER.STEPS = [60, 80]  # epochs at which the LR is multiplied by GAMMA
_C.SOLVER.GAMMA = 0.1  # step-schedule decay factor
_C.SOLVER.MOMENTUM = 0.9  # SGD momentum
_C.SOLVER.WEIGHT_DECAY = 0.0  # SGD weight decay of the linear layer (MoCo: 0)
_C.SOLVER.LOG_PERIOD = 50  # iterations between log lines (the end of every epoch is always logged)

_C.KNN = CN()
_C.KNN.K = 20  # neighbours voting per query
_C.KNN.TEMPERATURE = 0.07  # vote weight exp(cosine / TEMPERATURE)
_C.KNN.CHUNK_SIZE = 256  # query images per similarity block (bounds memory: CHUNK x train images)

_C.TRAIN = CN()
_C.TRAIN.DEVICE = "auto"  # "auto" (CUDA when available) | "cuda" | "cpu"
_C.TRAIN.AMP = True  # bfloat16 autocast of the frozen backbone's forward (CUDA only; ignored on CPU)

_C.SEED = 0  # seeds python, numpy, torch (random init, data order, augmentation)
_C.OUTPUT_DIR = "output/linear_eval"  # config.yaml, log.txt, metrics.json


def get_linear_cfg() -> CN:
    """A fresh copy of the defaults."""
    return _C.clone()


def load_linear_cfg(config_file: str | None, opts: list[str]) -> CN:
    """Defaults <- YAML (with `_BASE_` inheritance) <- `KEY VALUE` overrides; checked and frozen."""
    cfg = merge_config(
        get_linear_cfg(),
        config_file,
        opts,
        "pretrain/linear_probe/config.py",
        "pretrain/configs/linear_*.yaml",
    )
    _check(cfg)
    cfg.freeze()
    return cfg


def _check(cfg: CN) -> None:
    positive = {
        "DATA.IMAGE_SIZE": cfg.DATA.IMAGE_SIZE,
        "SOLVER.EPOCHS": cfg.SOLVER.EPOCHS,
        "SOLVER.BATCH_SIZE": cfg.SOLVER.BATCH_SIZE,
        "SOLVER.LOG_PERIOD": cfg.SOLVER.LOG_PERIOD,
        "KNN.K": cfg.KNN.K,
        "KNN.CHUNK_SIZE": cfg.KNN.CHUNK_SIZE,
    }
    bad = [f"{key} = {value}" for key, value in positive.items() if value < 1]
    if cfg.MODEL.FEATURE_NORM not in FEATURE_NORMS:
        bad.append(
            f"MODEL.FEATURE_NORM = {cfg.MODEL.FEATURE_NORM!r} (expected one of {', '.join(FEATURE_NORMS)})"
        )
    if cfg.KNN.TEMPERATURE <= 0:
        bad.append(f"KNN.TEMPERATURE = {cfg.KNN.TEMPERATURE}")
    if cfg.DATA.RESIZE_SIZE and cfg.DATA.RESIZE_SIZE < cfg.DATA.IMAGE_SIZE:
        bad.append(f"DATA.RESIZE_SIZE = {cfg.DATA.RESIZE_SIZE} < DATA.IMAGE_SIZE = {cfg.DATA.IMAGE_SIZE}")
    if bad:
        raise PretrainError(
            f"invalid linear-classification config: {'; '.join(bad)}. Sizes, counts and the temperature "
            "must be positive, the eval resize at least the crop, names known; fix the YAML or the override."
        )


def resize_size(cfg: CN) -> int:
    """Shorter side before the eval center crop: DATA.RESIZE_SIZE, else the 256/224 ratio of the protocol."""
    return cfg.DATA.RESIZE_SIZE or round(cfg.DATA.IMAGE_SIZE * 256 / 224)
