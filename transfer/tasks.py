"""The four benchmark tasks: evaluator per task and the metric names written to metrics.json.

Metric names (README.md "Metrics, labelled"): voc_det AP (COCO-style 0.50:0.95 averaged over IoU
thresholds, VOC07 11-point), AP50, AP75; coco_det_inst APb* (boxes) and APm* (masks); semantic
segmentation mIoU, mAcc, pAcc. All in percent, as Detectron2 reports them. Per-class values (AP-<class>,
AP50-<class> for VOC; AP-<class> for COCO boxes and masks; IoU-<class>, ACC-<class> for segmentation) go
beside them.
"""

import logging
import math

from detectron2.evaluation import COCOEvaluator, SemSegEvaluator

from transfer.data.sem_seg_mapper import load_label_array
from transfer.errors import TransferError
from transfer.voc_evaluation import VOCDetectionEvaluator

# task -> {our metric name: (Detectron2 result group, Detectron2 metric name)}
TASK_METRICS = {
    "voc_det": {"AP": ("bbox", "AP"), "AP50": ("bbox", "AP50"), "AP75": ("bbox", "AP75")},
    "coco_det_inst": {
        "APb": ("bbox", "AP"),
        "APb50": ("bbox", "AP50"),
        "APb75": ("bbox", "AP75"),
        "APm": ("segm", "AP"),
        "APm50": ("segm", "AP50"),
        "APm75": ("segm", "AP75"),
    },
    "voc_sem_seg": {"mIoU": ("sem_seg", "mIoU"), "mAcc": ("sem_seg", "mACC"), "pAcc": ("sem_seg", "pACC")},
    "cityscapes_sem_seg": {
        "mIoU": ("sem_seg", "mIoU"),
        "mAcc": ("sem_seg", "mACC"),
        "pAcc": ("sem_seg", "pACC"),
    },
}
PER_CLASS_PREFIXES = ("AP-", "AP50-", "IoU-", "ACC-")  # Detectron2's per-class result keys (+ ours, AP50-)
SEM_SEG_TASKS = ("voc_sem_seg", "cityscapes_sem_seg")
DETECTION_TASKS = ("voc_det", "coco_det_inst")

logger = logging.getLogger(__name__)


def check_task(task: str) -> str:
    if task not in TASK_METRICS:
        raise TransferError(
            f"TRANSFER.TASK is {task!r}; expected one of {', '.join(TASK_METRICS)}. Start from a config in "
            "transfer/configs/, which sets it."
        )
    return task


def build_task_evaluator(task: str, dataset_name: str, output_dir: str):
    """VOCDetectionEvaluator | COCOEvaluator (bbox+segm, pure-Python COCOeval) | SemSegEvaluator."""
    if task == "voc_det":
        return VOCDetectionEvaluator(dataset_name)
    if task == "coco_det_inst":
        return COCOEvaluator(dataset_name, tasks=("bbox", "segm"), output_dir=output_dir, use_fast_impl=False)
    return SemSegEvaluator(
        dataset_name, distributed=True, output_dir=output_dir, sem_seg_loading_fn=load_label_array
    )


def task_metrics(task: str, results: dict) -> dict[str, float]:
    """Our metric names from Detectron2's results of one test dataset ({"bbox": {"AP": ...}, ...})."""
    metrics = {}
    for name, (group, key) in TASK_METRICS[task].items():
        value = results.get(group, {}).get(key)
        if value is None:
            raise TransferError(f"Evaluation of task {task} returned no {group}/{key}; results: {results}")
        value = float(value)
        if math.isnan(value) and task in DETECTION_TASKS:
            # COCOEvaluator reports NaN when the model made no detection at all; its AP is 0.
            logger.warning(
                f"{group}/{key} is NaN (no detections above MODEL.ROI_HEADS.SCORE_THRESH_TEST): recorded as 0"
            )
            value = 0.0
        metrics[name] = value
    return metrics


def per_class_metrics(results: dict) -> dict[str, float | None]:
    """Every per-class value of Detectron2's results as "<group>/<key>" (e.g. "bbox/AP50-cat",
    "sem_seg/IoU-road"); None where it is NaN (a class absent from the test set)."""
    return {
        f"{group}/{key}": None if math.isnan(float(value)) else float(value)
        for group, values in results.items()
        for key, value in values.items()
        if key.startswith(PER_CLASS_PREFIXES)
    }
