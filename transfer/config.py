"""Config keys the transfer package adds to Detectron2's defaults (`add_transfer_config`)."""

from detectron2.config import CfgNode

from transfer.wandb_logging import add_wandb_config


def add_transfer_config(cfg: CfgNode) -> None:
    """Add the keys used by our models, data pipeline and trainer, each with its default."""
    cfg.TRANSFER = CfgNode()
    # Which benchmark task the config is: "voc_det" | "coco_det_inst" | "voc_sem_seg" |
    # "cityscapes_sem_seg". Selects the evaluator, the train mapper and the metric names.
    cfg.TRANSFER.TASK = ""
    # The total batch the protocol's BASE_LR was tuned for (the paper's). When SOLVER.IMS_PER_BATCH
    # differs, BASE_LR is scaled linearly (Goyal et al., 2017); 0 turns the scaling off.
    cfg.TRANSFER.REFERENCE_IMS_PER_BATCH = 0
    # With that scaling, also stretch the schedule (MAX_ITER, STEPS, WARMUP_ITERS, CHECKPOINT_PERIOD,
    # TEST.EVAL_PERIOD) by reference / batch, so the run sees the protocol's number of epochs, as Goyal et
    # al. do and Detectron2's SOLVER.REFERENCE_WORLD_SIZE does. Off: the iterations stay as configured, so
    # a smaller batch trains on fewer images than the protocol (logged and recorded in metrics.json).
    cfg.TRANSFER.SCALE_SCHEDULE = False
    # bfloat16 autocast of the training forward pass on CPU, where the CPU has native bfloat16
    # (AVX512-BF16 / AMX; else fp32, logged). Evaluation stays fp32. Detectron2's SOLVER.AMP is CUDA only.
    cfg.TRANSFER.AMP_CPU = False
    # An unreadable training image (truncated, undecodable, missing, size unlike its annotation) is listed
    # in OUTPUT_DIR/bad_images.txt and replaced by another image instead of stopping the run; more than
    # MAX_BAD_IMAGES distinct files stop it (transfer/data/guarded_mapper.py). Evaluation never skips.
    cfg.TRANSFER.SKIP_BAD_IMAGES = False
    cfg.TRANSFER.MAX_BAD_IMAGES = 100
    # WANDB.PROJECT/ENTITY/GROUP/NAME: W&B logging of the training scalars and final metrics, off by default
    add_wandb_config(cfg)

    # Dilated ResNet for FCN "d8" (transfer/modeling/dilated_resnet.py): dilation of res4; res5's is
    # MODEL.RESNETS.RES5_DILATION. A dilated stage keeps stride 1.
    cfg.MODEL.RESNETS.RES4_DILATION = 1
    # mmseg's `contract_dilation`: the first block of a dilated stage uses half the dilation.
    cfg.MODEL.RESNETS.CONTRACT_DILATION = True

    # FCN head (transfer/modeling/fcn_head.py); IN_FEATURES, CONVS_DIM, NORM, NUM_CLASSES,
    # IGNORE_VALUE and LOSS_WEIGHT are Detectron2's MODEL.SEM_SEG_HEAD keys.
    cfg.MODEL.SEM_SEG_HEAD.NUM_CONVS = 2  # 3x3 conv + norm + ReLU layers of the decode head
    cfg.MODEL.SEM_SEG_HEAD.CONCAT_INPUT = True  # concat the head input with the conv output + 3x3 conv
    cfg.MODEL.SEM_SEG_HEAD.DROPOUT = 0.1  # Dropout2d before the 1x1 classifier (both heads)
    cfg.MODEL.SEM_SEG_HEAD.AUX_IN_FEATURE = "res4"  # auxiliary FCN head input; "" disables it
    cfg.MODEL.SEM_SEG_HEAD.AUX_CONVS_DIM = 256  # channels of the auxiliary head's single 3x3 conv
    cfg.MODEL.SEM_SEG_HEAD.AUX_LOSS_WEIGHT = 0.4  # weight of the auxiliary cross-entropy
    # Cross-entropy averaged over the labelled pixels only (Detectron2's sem-seg heads, mmseg's later
    # `avg_non_ignore=True`). False: over every pixel, ignored ones counting 0, as mmseg's CrossEntropyLoss
    # did for the paper's FCN runs (its default), so padding and boundaries shrink the gradient.
    cfg.MODEL.SEM_SEG_HEAD.LOSS_AVG_NON_IGNORE = False

    # Semantic-segmentation inference (transfer/modeling/segmentor.py): "whole" runs the resized image
    # at once; "slide" averages logits of CROP_SIZE windows placed every STRIDE pixels (mmseg).
    cfg.TEST.SEM_SEG = CfgNode()
    cfg.TEST.SEM_SEG.MODE = "whole"
    cfg.TEST.SEM_SEG.CROP_SIZE = []  # (h, w) of a sliding window; [] = INPUT.CROP.SIZE
    cfg.TEST.SEM_SEG.STRIDE = []  # (h, w) step between windows; [] = 2/3 of the window (769 -> 513)

    # Semantic-segmentation training crop: retry a crop until no class covers more than this fraction
    # (mmseg RandomCrop cat_max_ratio); 1.0 disables. Crop size is INPUT.CROP.SIZE.
    cfg.INPUT.CROP.SINGLE_CATEGORY_MAX_AREA = 0.75
    # mmseg's PhotoMetricDistortion of semantic-segmentation training images (brightness, contrast,
    # saturation, hue; transfer/data/photometric.py). The FCN configs turn it on; detection ignores it.
    cfg.INPUT.PHOTOMETRIC_DISTORTION = False

    # Poly schedule (Detectron2 DeepLab project's WarmupPolyLR): lr = base * (1 - it/max)^POWER, held at
    # no less than base * CONSTANT_ENDING.
    cfg.SOLVER.POLY_LR_POWER = 0.9
    cfg.SOLVER.POLY_LR_CONSTANT_ENDING = 0.0
