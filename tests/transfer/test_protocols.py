"""The configs of transfer/configs/ hold the paper's protocols: the values below are the paper's (DenseCL
Sec. 4.2 and the MoCo detection / mmseg FCN configs it follows), not copied from the configs. Each config
is loaded the way `python -m transfer.train_net` loads it (`build_cfg`, before the run-time rewrites)."""

from argparse import Namespace
from functools import reduce

import pytest
from transfer_testutils import CONFIGS

from transfer.train_net import build_cfg

# Detection heads and norms: SyncBN everywhere, no frozen stage, precise BN.
DETECTION = {
    "MODEL.META_ARCHITECTURE": "GeneralizedRCNN",
    "MODEL.BACKBONE.FREEZE_AT": 0,
    "MODEL.RESNETS.DEPTH": 50,
    "MODEL.RESNETS.NORM": "SyncBN",
    "TEST.PRECISE_BN.ENABLED": True,
    "SOLVER.IMS_PER_BATCH": 16,
    "SOLVER.BASE_LR": 0.02,
    "TRANSFER.REFERENCE_IMS_PER_BATCH": 16,
    "SOLVER.WEIGHT_DECAY": 1e-4,  # not in the paper: Detectron2's default, kept by MoCo's detection/
}
# FCN "r50-d8" of mmsegmentation: dilated res4/res5, SyncBN, FCN head + auxiliary head, SGD + poly.
FCN_D8 = {
    "MODEL.RESNETS.DEPTH": 50,
    "MODEL.RESNETS.RES4_DILATION": 2,
    "MODEL.RESNETS.RES5_DILATION": 4,
    "MODEL.RESNETS.NORM": "SyncBN",
    "MODEL.SEM_SEG_HEAD.NAME": "FCNHead",
    "MODEL.SEM_SEG_HEAD.IN_FEATURES": ["res5"],
    "MODEL.SEM_SEG_HEAD.NORM": "SyncBN",
    "MODEL.SEM_SEG_HEAD.NUM_CONVS": 2,
    "MODEL.SEM_SEG_HEAD.CONVS_DIM": 512,
    "MODEL.SEM_SEG_HEAD.CONCAT_INPUT": True,
    "MODEL.SEM_SEG_HEAD.DROPOUT": 0.1,
    "MODEL.SEM_SEG_HEAD.AUX_IN_FEATURE": "res4",
    "MODEL.SEM_SEG_HEAD.AUX_CONVS_DIM": 256,
    "MODEL.SEM_SEG_HEAD.AUX_LOSS_WEIGHT": 0.4,
    "MODEL.SEM_SEG_HEAD.LOSS_AVG_NON_IGNORE": False,  # mmseg CrossEntropyLoss: mean over every pixel
    "SOLVER.BASE_LR": 0.01,
    "SOLVER.MOMENTUM": 0.9,
    "SOLVER.WEIGHT_DECAY": 5e-4,
    "SOLVER.LR_SCHEDULER_NAME": "WarmupPolyLR",
    "SOLVER.POLY_LR_POWER": 0.9,
    "INPUT.CROP.ENABLED": True,
}
PROTOCOLS = {
    "pascal_voc_R_50_C4_24k": DETECTION
    | {
        "TRANSFER.TASK": "voc_det",
        "MODEL.ROI_HEADS.NAME": "Res5ROIHeadsExtraNorm",
        "MODEL.ROI_HEADS.NUM_CLASSES": 20,
        "MODEL.MASK_ON": False,
        "SOLVER.MAX_ITER": 24000,
        "SOLVER.STEPS": [18000, 22000],
        "SOLVER.WARMUP_ITERS": 100,
        "DATASETS.TRAIN": ["voc_2007_trainval", "voc_2012_trainval"],
        "DATASETS.TEST": ["voc_2007_test"],
        "INPUT.MIN_SIZE_TRAIN": list(range(480, 801, 32)),
        "INPUT.MIN_SIZE_TEST": 800,
    },
    "coco_R_50_FPN_1x_syncbn": DETECTION
    | {
        "TRANSFER.TASK": "coco_det_inst",
        "MODEL.BACKBONE.NAME": "build_resnet_fpn_backbone",
        "MODEL.MASK_ON": True,
        "MODEL.ROI_HEADS.NUM_CLASSES": 80,
        "MODEL.FPN.NORM": "SyncBN",
        "MODEL.ROI_BOX_HEAD.NAME": "FastRCNNConvFCHead",
        "MODEL.ROI_BOX_HEAD.NUM_CONV": 4,
        "MODEL.ROI_BOX_HEAD.NUM_FC": 1,
        "MODEL.ROI_BOX_HEAD.NORM": "SyncBN",
        "MODEL.ROI_MASK_HEAD.NORM": "SyncBN",
        "SOLVER.MAX_ITER": 90000,
        "SOLVER.STEPS": [60000, 80000],
        "DATASETS.TRAIN": ["coco_2017_train"],
        "DATASETS.TEST": ["coco_2017_val"],
        "INPUT.MIN_SIZE_TRAIN": list(range(640, 801, 32)),
    },
    "fcn_R_50_d8_voc12aug_20k": FCN_D8
    | {
        "TRANSFER.TASK": "voc_sem_seg",
        "MODEL.SEM_SEG_HEAD.NUM_CLASSES": 21,
        "INPUT.CROP.SIZE": [512, 512],
        "SOLVER.MAX_ITER": 20000,
        "SOLVER.IMS_PER_BATCH": 16,
        "TRANSFER.REFERENCE_IMS_PER_BATCH": 16,
        "DATASETS.TRAIN": ["voc_2012_sem_seg_train_aug"],
        "DATASETS.TEST": ["voc_2012_sem_seg_val"],
    },
    "fcn_R_50_d8_cityscapes_40k": FCN_D8
    | {
        "TRANSFER.TASK": "cityscapes_sem_seg",
        "MODEL.SEM_SEG_HEAD.NUM_CLASSES": 19,
        "INPUT.CROP.SIZE": [769, 769],
        "SOLVER.MAX_ITER": 40000,
        "SOLVER.IMS_PER_BATCH": 8,
        "TRANSFER.REFERENCE_IMS_PER_BATCH": 8,
        "DATASETS.TRAIN": ["cityscapes_fine_sem_seg_train"],
        "DATASETS.TEST": ["cityscapes_fine_sem_seg_val"],
        "TEST.SEM_SEG.MODE": "slide",
    },
}
# Self-supervised (torchvision-layout) weights: transfer/README.md "Convert".
SSL_INPUT = {
    "INPUT.FORMAT": "RGB",
    "MODEL.PIXEL_MEAN": [123.675, 116.28, 103.53],
    "MODEL.PIXEL_STD": [58.395, 57.12, 57.375],
    "MODEL.RESNETS.STRIDE_IN_1X1": False,
}


def _load(name: str):
    return build_cfg(Namespace(config_file=str(CONFIGS / f"{name}.yaml"), opts=[]))


def _value(cfg, key: str):
    value = reduce(getattr, key.split("."), cfg)
    return list(value) if isinstance(value, tuple) else value


def test_every_config_file_is_pinned():
    pinned = {f"{name}{suffix}.yaml" for name in PROTOCOLS for suffix in ("", "_ssl")}
    assert {p.name for p in CONFIGS.glob("*.yaml") if not p.name.startswith("Base-")} == pinned


@pytest.mark.parametrize("name", sorted(PROTOCOLS))
@pytest.mark.parametrize("suffix", ["", "_ssl"])
def test_config_holds_the_papers_protocol(name, suffix):
    cfg = _load(name + suffix)
    found = {key: _value(cfg, key) for key in PROTOCOLS[name]}
    assert found == PROTOCOLS[name]


@pytest.mark.parametrize("name", sorted(PROTOCOLS))
def test_ssl_config_differs_only_by_the_torchvision_input(name):
    ssl, caffe2 = _load(f"{name}_ssl"), _load(name)
    assert {key: _value(ssl, key) for key in SSL_INPUT} == SSL_INPUT
    assert _value(caffe2, "INPUT.FORMAT") == "BGR"
    caffe2.merge_from_list([item for key, value in SSL_INPUT.items() for item in (key, value)])
    assert caffe2 == ssl


@pytest.mark.parametrize("name", ["fcn_R_50_d8_voc12aug_20k", "fcn_R_50_d8_cityscapes_40k"])
def test_poly_schedule_ends_at_1e_4(name):
    cfg = _load(name)
    final_lr = cfg.SOLVER.BASE_LR * cfg.SOLVER.POLY_LR_CONSTANT_ENDING  # WarmupPolyLR's floor
    assert final_lr == pytest.approx(1e-4)
