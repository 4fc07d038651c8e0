"""PASCAL VOC detection evaluation with each class's AP, not only the means.

The numbers are Detectron2's: its `voc_eval` (VOC07 11-point AP on VOC2007, area under the curve on 2012)
per class at IoU 0.50, 0.55, ..., 0.95, from the detections its `PascalVOCDetectionEvaluator` collects.
AP is the mean over classes and thresholds, AP50 / AP75 the class means at 0.50 / 0.75, as Detectron2
reports them; `AP-<class>` (0.50:0.95) and `AP50-<class>` are added beside them, the per-class view the
paper's VOC numbers hide and users ask for.
"""

from __future__ import annotations

import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
from detectron2.evaluation import PascalVOCDetectionEvaluator
from detectron2.evaluation.pascal_voc_evaluation import voc_eval
from detectron2.utils import comm

IOU_THRESHOLDS = tuple(t / 100 for t in range(50, 100, 5))  # COCO-style 0.50:0.05:0.95


class VOCDetectionEvaluator(PascalVOCDetectionEvaluator):
    """`PascalVOCDetectionEvaluator` whose result also holds AP-<class> and AP50-<class> (percent)."""

    def evaluate(self):
        gathered = comm.gather(self._predictions, dst=0)  # one {class id: detection lines} per rank
        if not comm.is_main_process():
            return None
        detections = defaultdict(list)
        for per_rank in gathered:
            for class_id, lines in per_rank.items():
                detections[class_id].extend(lines)
        ap = self._ap_per_class(detections)  # (classes, thresholds)
        ap_per_iou = ap.mean(axis=0)
        at_50, at_75 = IOU_THRESHOLDS.index(0.5), IOU_THRESHOLDS.index(0.75)
        bbox = {
            "AP": float(ap_per_iou.mean()),
            "AP50": float(ap_per_iou[at_50]),
            "AP75": float(ap_per_iou[at_75]),
        }
        for name, row in zip(self._class_names, ap):
            bbox[f"AP-{name}"] = float(row.mean())
            bbox[f"AP50-{name}"] = float(row[at_50])
        return {"bbox": bbox}

    def _ap_per_class(self, detections: dict[int, list[str]]) -> np.ndarray:
        """AP in percent, (num classes, len(IOU_THRESHOLDS)), from voc_eval on one file per class."""
        ap = np.zeros((len(self._class_names), len(IOU_THRESHOLDS)))
        with tempfile.TemporaryDirectory(prefix="voc_eval_") as tmp:
            template = str(Path(tmp) / "{}.txt")  # voc_eval reads template.format(class name)
            for c, name in enumerate(self._class_names):
                Path(template.format(name)).write_text("\n".join(detections.get(c, [])))
                for j, iou in enumerate(IOU_THRESHOLDS):
                    _, _, class_ap = voc_eval(
                        template,
                        self._anno_file_template,
                        self._image_set_path,
                        name,
                        ovthresh=iou,
                        use_07_metric=self._is_2007,
                    )
                    ap[c, j] = 100.0 * class_ap
        return ap
